//! Measurements: latency histograms, per-workload results and the memory sampler.
//!
//! Latencies go into HDR histograms (microseconds, 3 significant digits) so p99.9 of a
//! million samples costs a few KiB instead of a sorted vector. Memory is read from
//! `/proc/<pid>/status`: `VmRSS` sampled every 50 ms gives the peak *during* one
//! workload (`VmHWM` only ever grows over a process's life, so it is reported too, as
//! the lifetime peak at the end of the workload).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, from 1 µs to 10 minutes.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, elapsed: Duration) {
    let micros = (elapsed.as_micros() as u64).clamp(1, 600_000_000);
    h.saturating_record(micros);
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            samples: h.len(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// Peak memory of the processes involved, in MiB.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// Highest sampled `VmRSS` of the homeserver process during the workload.
    pub server_peak_rss_mib: f64,
    /// `VmRSS` of the homeserver just before the workload started.
    pub server_idle_rss_mib: f64,
    /// The homeserver's `VmHWM` (lifetime peak) when the workload ended.
    pub server_vmhwm_mib: f64,
    /// Highest sampled `VmRSS` of the NATS server (None: not found).
    pub nats_peak_rss_mib: Option<f64>,
    /// Highest sampled sum of `VmRSS` over the Postgres backends serving this
    /// server's database (other databases of a shared cluster are left out). Shared
    /// buffers are counted once per backend that touched them, so this overstates
    /// real use; it is comparable between the two servers of one run.
    pub postgres_peak_rss_sum_mib: Option<f64>,
}

/// One workload's figures against one server.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadResult {
    pub name: String,
    pub description: String,
    /// Completed operations (requests, pages, events, deliveries: see `unit`).
    pub ops: u64,
    pub unit: String,
    pub seconds: f64,
    pub per_second: f64,
    /// A second rate where one is meaningful (entries/s of listings, MB/s of blobs).
    pub extra: BTreeMap<String, f64>,
    pub latency: Latency,
    /// Non-2xx answers, transport errors, wrong bodies, missing deliveries.
    pub errors: u64,
    /// Writes whose content was not readable (or differed) right after their 2xx.
    pub read_your_writes_failures: u64,
    pub memory: Memory,
}

/// The pids whose memory a run reports.
#[derive(Clone, Debug, Default)]
pub struct Pids {
    pub server: u32,
    pub nats: Option<u32>,
    pub postgres: Option<u32>,
    /// The database whose backends are counted.
    pub database: String,
}

/// Samples memory every 50 ms and keeps the maxima since the last [`Sampler::reset`].
pub struct Sampler {
    server: Arc<AtomicU64>,
    nats: Arc<AtomicU64>,
    postgres: Arc<AtomicU64>,
    pids: Pids,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(pids: Pids) -> Sampler {
        let server = Arc::new(AtomicU64::new(0));
        let nats = Arc::new(AtomicU64::new(0));
        let postgres = Arc::new(AtomicU64::new(0));
        let (s, n, p, pp) = (server.clone(), nats.clone(), postgres.clone(), pids.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                s.fetch_max(
                    status_kib(pp.server, "VmRSS").unwrap_or(0),
                    Ordering::Relaxed,
                );
                if let Some(pid) = pp.nats {
                    n.fetch_max(status_kib(pid, "VmRSS").unwrap_or(0), Ordering::Relaxed);
                }
                if let Some(pid) = pp.postgres {
                    p.fetch_max(backends_rss_kib(pid, &pp.database), Ordering::Relaxed);
                }
            }
        });
        Sampler {
            server,
            nats,
            postgres,
            pids,
            task,
        }
    }

    /// Starts a new measurement window; returns the server's current RSS (MiB).
    pub fn reset(&self) -> f64 {
        let now = status_kib(self.pids.server, "VmRSS").unwrap_or(0);
        self.server.store(now, Ordering::Relaxed);
        self.nats.store(0, Ordering::Relaxed);
        self.postgres.store(0, Ordering::Relaxed);
        mib(now)
    }

    /// The peaks of the window begun by the last `reset`.
    pub fn read(&self, idle_mib: f64) -> Memory {
        // One last sample, so a window shorter than the sampling period is covered.
        let last = status_kib(self.pids.server, "VmRSS").unwrap_or(0);
        self.server.fetch_max(last, Ordering::Relaxed);
        if let Some(pid) = self.pids.nats {
            let last = status_kib(pid, "VmRSS").unwrap_or(0);
            self.nats.fetch_max(last, Ordering::Relaxed);
        }
        if let Some(pid) = self.pids.postgres {
            self.postgres.fetch_max(
                backends_rss_kib(pid, &self.pids.database),
                Ordering::Relaxed,
            );
        }
        Memory {
            server_peak_rss_mib: mib(self.server.load(Ordering::Relaxed)),
            server_idle_rss_mib: idle_mib,
            server_vmhwm_mib: mib(status_kib(self.pids.server, "VmHWM").unwrap_or(0)),
            nats_peak_rss_mib: self
                .pids
                .nats
                .map(|_| mib(self.nats.load(Ordering::Relaxed))),
            postgres_peak_rss_sum_mib: self
                .pids
                .postgres
                .map(|_| mib(self.postgres.load(Ordering::Relaxed))),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `VmRSS` summed over the children of the postmaster `root` whose process title
/// names `database` (backends are titled `postgres: <user> <database> <client> ...`).
fn backends_rss_kib(root: u32, database: &str) -> u64 {
    children(root)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .split_whitespace()
                    .any(|word| word == database)
            })
        })
        .map(|pid| status_kib(pid, "VmRSS").unwrap_or(0))
        .sum()
}

fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| ppid(*pid) == Some(parent))
        .collect()
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after its `)` are fixed.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The process named `comm` whose command line has `-p <port>` (how both
/// `scripts/services.sh` and most init scripts start nats-server and postgres).
pub fn find_by_port(comm: &str, port: u16) -> Option<u32> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(name) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if name.trim() != comm {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let port = port.to_string();
        if args
            .windows(2)
            .any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_resident_set() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS").is_some_and(|kib| kib > 0));
        assert!(status_kib(me, "VmHWM").is_some_and(|kib| kib > 0));
        assert_eq!(status_kib(me, "NoSuchField"), None);
    }

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let l = Latency::of(&h);
        assert_eq!(l.samples, 1000);
        assert!((l.p50_ms - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_ms - 990.0).abs() < 1.0, "{l:?}");
    }
}
