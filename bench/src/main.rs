//! `hs-bench`: the load generator of `make bench` and `make bench-compare`.
//!
//! `run` measures our homeserver; `compare` measures ours and then the reference
//! (crates.io `pubky-homeserver` 0.17.1, installed into `.tools/` by the Makefile)
//! with the same workloads in the same run, and prints each figure with the ratio
//! ours/reference. Both servers are separate processes on their own fresh databases
//! in the Postgres of `DATABASE_URL` (ours also on its own JetStream stream in
//! `NATS_URL`), so the load generator, Postgres and NATS share the machine with
//! whichever server is measured, as in the reference figures of TARGETS.md.
//! Results go to stdout and, as JSON, to `bench-results/tmp/` (or `--out`).

mod client;
mod server;
mod soak;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use server::{Env, Kind, Server};
use stats::{Pids, Sampler, WorkloadResult};
use workloads::{Params, Target};

#[derive(Parser)]
#[command(about = "Homeserver benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark our homeserver.
    Run(Options),
    /// Benchmark our homeserver, then the reference, and compare.
    Compare(Options),
    /// Our homeserver under a steady mixed load for a long time: memory, open files
    /// and threads sampled, flat or not at the end.
    Soak(SoakOptions),
}

#[derive(Args, Clone)]
struct SoakOptions {
    /// How long the load runs.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Operations per second offered (writes, reads, listings, deletes, 1 MiB uploads).
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Our homeserver binary.
    #[arg(long, default_value = "target/release/homeserver")]
    ours_bin: PathBuf,
    /// Where the JSON result goes (default bench-results/tmp/soak-<time>.json).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "NATS_URL")]
    nats_url: String,
}

#[derive(Args, Clone)]
struct Options {
    /// The real workloads (several minutes per server); the default is the quick mode.
    #[arg(long)]
    full: bool,
    /// Our homeserver binary.
    #[arg(long, default_value = "target/release/homeserver")]
    ours_bin: PathBuf,
    /// The reference homeserver binary.
    #[arg(
        long,
        default_value = ".tools/pubky-homeserver-0.17.1/bin/pubky-homeserver"
    )]
    reference_bin: PathBuf,
    /// Where the JSON results go (default bench-results/tmp/<mode>-<command>-<time>.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Postgres to create the benchmark databases in (a role that may CREATE DATABASE).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// NATS with JetStream for our homeserver.
    #[arg(long, env = "NATS_URL")]
    nats_url: String,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_gib: f64,
    kernel: String,
}

#[derive(Serialize)]
struct ServerRun {
    server: String,
    version: String,
    workloads: Vec<WorkloadResult>,
}

#[derive(Serialize)]
struct Report {
    command: String,
    started_unix: u64,
    machine: Machine,
    params: Params,
    runs: Vec<ServerRun>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (compare, options) = match cli.command {
        Command::Run(o) => (false, o),
        Command::Compare(o) => (true, o),
        Command::Soak(o) => return soak(o).await,
    };
    let params = if options.full {
        Params::full()
    } else {
        Params::quick()
    };
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let work_dir = PathBuf::from("bench-results/tmp");
    std::fs::create_dir_all(&work_dir)?;

    let mut kinds = vec![Kind::Ours];
    if compare {
        anyhow::ensure!(
            options.reference_bin.exists(),
            "no reference homeserver at {} (make bench-compare installs it)",
            options.reference_bin.display()
        );
        kinds.push(Kind::Reference);
    }
    anyhow::ensure!(
        options.ours_bin.exists(),
        "no homeserver binary at {} (cargo build --release -p homeserver)",
        options.ours_bin.display()
    );

    println!("starting a local Mainline testnet (loopback only)");
    let dht = server::local_dht().await?;
    let env = Env::new(&options.database_url, &options.nats_url, &dht, &work_dir);
    let machine = machine();
    println!(
        "machine: {} CPUs ({}), {:.1} GiB RAM; mode {}",
        machine.cpus, machine.cpu_model, machine.memory_gib, params.mode
    );

    let mut runs = Vec::new();
    for kind in kinds {
        println!("\n== {} homeserver ==", kind.label());
        let server = match kind {
            Kind::Ours => Server::start_ours(&env, &options.ours_bin).await?,
            Kind::Reference => Server::start_reference(&env, &options.reference_bin).await?,
        };
        let pids = Pids {
            server: server.pid(),
            nats: server::url_port(&env.nats_url)
                .and_then(|p| stats::find_by_port("nats-server", p)),
            postgres: server::url_port(&env.database_url)
                .and_then(|p| stats::find_by_port("postgres", p)),
            database: server.database.clone(),
        };
        println!(
            "  pid {} (NATS pid {:?}, Postgres pid {:?}), {}",
            pids.server, pids.nats, pids.postgres, server.base
        );
        let sampler = Sampler::start(pids);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(256)
            .build()?;
        let target = Target {
            base: server.base.clone(),
            homeserver: server.public_key.clone(),
            http,
            sampler: &sampler,
        };
        let outcome = workloads::run_all(&target, &params).await;
        drop(sampler);
        let log = server.log_path.clone();
        server.stop(&env).await?;
        let workloads = outcome.with_context(|| format!("server log: {}", log.display()))?;
        runs.push(ServerRun {
            server: kind.label().into(),
            version: match kind {
                Kind::Ours => format!("homeserver {} (this workspace)", env!("CARGO_PKG_VERSION")),
                Kind::Reference => "pubky-homeserver 0.17.1 (crates.io)".into(),
            },
            workloads,
        });
    }

    let report = Report {
        command: if compare { "compare" } else { "run" }.into(),
        started_unix,
        machine,
        params,
        runs,
    };
    print_table(&report);
    let out = options.out.unwrap_or_else(|| {
        work_dir.join(format!(
            "{}-{}-{}.json",
            report.params.mode, report.command, started_unix
        ))
    });
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("\nresults: {}", out.display());
    Ok(())
}

async fn soak(options: SoakOptions) -> Result<()> {
    anyhow::ensure!(
        options.ours_bin.exists(),
        "no homeserver binary at {} (cargo build --release -p homeserver)",
        options.ours_bin.display()
    );
    let work_dir = PathBuf::from("bench-results/tmp");
    std::fs::create_dir_all(&work_dir)?;
    let dht = server::local_dht().await?;
    let env = Env::new(&options.database_url, &options.nats_url, &dht, &work_dir);
    let report = soak::run(&env, &options.ours_bin, options.minutes, options.rate).await?;
    println!(
        "soak: RSS {:+.1} % from the end of the warm-up to the end, open files {:+}, \
         threads {:+}: {}",
        report.rss_growth_pct,
        report.open_files_growth,
        report.threads_growth,
        if report.flat { "flat" } else { "NOT flat" }
    );
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = options
        .out
        .unwrap_or_else(|| work_dir.join(format!("soak-{started}.json")));
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("results: {}", out.display());
    anyhow::ensure!(report.flat, "memory, open files or threads grew");
    Ok(())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model,
        memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// One row per figure: ours, the reference (when compared) and ours/reference.
fn print_table(report: &Report) {
    let ours = report.runs.iter().find(|r| r.server == "ours");
    let reference = report.runs.iter().find(|r| r.server == "reference");
    let Some(ours) = ours else { return };
    println!("\n| workload | figure | ours | reference | ours/ref |");
    println!("|---|---|---:|---:|---:|");
    for w in &ours.workloads {
        let r = reference.and_then(|r| r.workloads.iter().find(|x| x.name == w.name));
        for (figure, a, b) in rows(w, r) {
            let (bs, ratio) = match b {
                Some(b) if b != 0.0 => (fmt(b), format!("{:.2}", a / b)),
                Some(b) => (fmt(b), "-".into()),
                None => ("-".into(), "-".into()),
            };
            println!(
                "| {} | {} | {} | {} | {} |",
                w.name,
                figure,
                fmt(a),
                bs,
                ratio
            );
        }
    }
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The figures of one workload: (label, ours, reference).
fn rows(w: &WorkloadResult, r: Option<&WorkloadResult>) -> Vec<(String, f64, Option<f64>)> {
    let mut rows = vec![(
        format!("{}/s", w.unit),
        w.per_second,
        r.map(|r| r.per_second),
    )];
    for (key, value) in &w.extra {
        if key.ends_with("per_second") {
            let label = key.replace("_per_second", "/s").replace("mb/s", "MB/s");
            rows.push((label, *value, r.and_then(|r| r.extra.get(key).copied())));
        }
    }
    rows.push((
        "p50 ms".into(),
        w.latency.p50_ms,
        r.map(|r| r.latency.p50_ms),
    ));
    rows.push((
        "p99 ms".into(),
        w.latency.p99_ms,
        r.map(|r| r.latency.p99_ms),
    ));
    if w.name == "sse_live" {
        rows.push((
            "p99.9 ms".into(),
            w.latency.p999_ms,
            r.map(|r| r.latency.p999_ms),
        ));
    }
    rows.push((
        "errors (incl. read-your-writes)".into(),
        (w.errors + w.read_your_writes_failures) as f64,
        r.map(|r| (r.errors + r.read_your_writes_failures) as f64),
    ));
    rows.push((
        "server peak RSS MiB".into(),
        w.memory.server_peak_rss_mib,
        r.map(|r| r.memory.server_peak_rss_mib),
    ));
    if w.name.starts_with("blob_") {
        rows.push((
            "server RSS above idle MiB".into(),
            w.memory.server_peak_rss_mib - w.memory.server_idle_rss_mib,
            r.map(|r| r.memory.server_peak_rss_mib - r.memory.server_idle_rss_mib),
        ));
    }
    if let Some(pg) = w.memory.postgres_peak_rss_sum_mib {
        rows.push((
            "Postgres backends RSS sum MiB".into(),
            pg,
            r.and_then(|r| r.memory.postgres_peak_rss_sum_mib),
        ));
    }
    // The reference does not use NATS: its NATS figure would be an idle server's.
    if let Some(n) = w.memory.nats_peak_rss_mib
        && (w.name == "write_small" || w.name == "sse_live")
    {
        rows.push(("NATS peak RSS MiB (ours only)".into(), n, None));
    }
    rows
}
