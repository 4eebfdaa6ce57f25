//! `hs-bench soak`: `homeserver all` under a steady mixed load for a long time (30
//! minutes by default), its memory, open files and threads sampled every 10 seconds.
//!
//! What it answers is not speed but whether anything accumulates: a cache without a
//! bound, a task or a file descriptor that outlives its request, a subscriber that is
//! never dropped. So the load is steady and bounded in data (each user overwrites and
//! deletes within a fixed set of paths, so the data set stops growing after a few
//! minutes) and includes what opens resources: SSE subscribers that reconnect every
//! minute, listings, deletes, and a 1 MiB upload now and then. The verdict compares the
//! last sample with the one at the end of the warm-up (a fifth of the run): RSS within
//! 15 %, open files and threads within a few of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{self, Kind, User};
use crate::server::{Env, Server};
use crate::stats::status_kib;

/// Distinct paths per user and kind: overwritten again and again, so the data stops
/// growing once each has been written.
const PATHS_PER_KIND: u64 = 200;
const USERS: usize = 16;
const SSE_SUBSCRIBERS: usize = 8;

#[derive(Serialize, Clone)]
pub struct Sample {
    pub secs: u64,
    pub rss_mib: f64,
    pub open_files: usize,
    pub threads: u64,
    pub ops: u64,
    pub errors: u64,
}

#[derive(Serialize)]
pub struct SoakReport {
    pub minutes: u64,
    pub offered_per_sec: u64,
    pub samples: Vec<Sample>,
    pub rss_growth_pct: f64,
    pub open_files_growth: i64,
    pub threads_growth: i64,
    pub flat: bool,
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn count(&self, ok: bool) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One operation of the mix: mostly small writes and reads, some listings and
/// deletes, a 1 MiB upload in a hundred.
async fn one_op(
    http: &reqwest::Client,
    base: &str,
    user: &User,
    rng: &mut rand::rngs::StdRng,
) -> bool {
    let kind = Kind::pick(rng);
    let id = rng.gen_range(0..PATHS_PER_KIND);
    let storage = format!("{base}/storage/{}", user.z32);
    let url = format!("{storage}{}", kind.path(id));
    let roll = rng.gen_range(0..100);
    let request = if roll < 45 {
        http.put(&url)
            .bearer_auth(&user.token)
            .body(client::json_body(kind.size(), rng.r#gen()))
    } else if roll < 80 {
        http.get(&url)
    } else if roll < 90 {
        http.get(format!("{storage}/pub/pubky.app/posts/?limit=50"))
    } else if roll < 99 {
        http.delete(&url).bearer_auth(&user.token)
    } else {
        http.put(format!("{storage}/pub/soak/big-{}", id % 4))
            .bearer_auth(&user.token)
            .body(client::blob_bytes(1024 * 1024, rng.r#gen()))
    };
    match request.send().await {
        Ok(r) => {
            // A read or delete of a path not written yet (or deleted) is a 404: fine.
            let ok = r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND;
            ok && r.bytes().await.is_ok()
        }
        Err(_) => false,
    }
}

pub async fn run(
    env: &Env,
    binary: &std::path::Path,
    minutes: u64,
    rate: u64,
) -> Result<SoakReport> {
    let server = Server::start_ours(env, binary).await?;
    let pid = server.pid();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut users = Vec::new();
    for _ in 0..USERS {
        users.push(client::signup(&http, &server.base, &server.public_key).await?);
    }
    let users = Arc::new(users);
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();

    // Writers and readers: USERS tasks, each paced to its share of `rate`.
    let interval = Duration::from_secs_f64(USERS as f64 / rate.max(1) as f64);
    for (i, user) in users.iter().cloned().enumerate() {
        let (http, base, counters, stop) = (
            http.clone(),
            server.base.clone(),
            counters.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                counters.count(one_op(&http, &base, &user, &mut rng).await);
            }
        }));
    }
    // SSE subscribers that hang up after a minute and come back: every connection a
    // server keeps must be released when the client goes.
    for i in 0..SSE_SUBSCRIBERS {
        let (http, base, users, counters, stop) = (
            http.clone(),
            server.base.clone(),
            users.clone(),
            counters.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let user = &users[i % users.len()];
                let url = format!("{base}/events-stream?user={}&live=true", user.z32);
                let ok = match http.get(&url).timeout(Duration::from_secs(61)).send().await {
                    Ok(mut r) if r.status().is_success() => {
                        let until = Instant::now() + Duration::from_secs(60);
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            match tokio::time::timeout(Duration::from_secs(1), r.chunk()).await {
                                Ok(Ok(Some(_))) | Err(_) => {}
                                Ok(_) => break,
                            }
                        }
                        true
                    }
                    _ => false,
                };
                counters.count(ok);
                if !ok {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }

    let started = Instant::now();
    let total = Duration::from_secs(minutes * 60);
    let mut samples = Vec::new();
    println!(
        "soak: {minutes} min, {rate} ops/s offered, {USERS} users, {SSE_SUBSCRIBERS} SSE subscribers; pid {pid}"
    );
    println!(
        "  {:>6} {:>9} {:>6} {:>8} {:>9} {:>7}",
        "min", "RSS MiB", "files", "threads", "ops", "errors"
    );
    loop {
        let sample = Sample {
            secs: started.elapsed().as_secs(),
            rss_mib: status_kib(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0,
            open_files: open_files(pid),
            threads: status_kib(pid, "Threads").unwrap_or(0),
            ops: counters.ops.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
        };
        if sample.secs % 60 < 10 {
            println!(
                "  {:>6.1} {:>9.1} {:>6} {:>8} {:>9} {:>7}",
                sample.secs as f64 / 60.0,
                sample.rss_mib,
                sample.open_files,
                sample.threads,
                sample.ops,
                sample.errors
            );
        }
        samples.push(sample);
        if started.elapsed() >= total {
            break;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(70), task).await;
    }
    server.stop(env).await?;

    let warm = &samples[samples.len() / 5];
    let last = &samples[samples.len() - 1];
    let rss_growth_pct = (last.rss_mib / warm.rss_mib.max(1.0) - 1.0) * 100.0;
    let open_files_growth = last.open_files as i64 - warm.open_files as i64;
    let threads_growth = last.threads as i64 - warm.threads as i64;
    let flat = rss_growth_pct <= 15.0 && open_files_growth <= 8 && threads_growth <= 4;
    Ok(SoakReport {
        minutes,
        offered_per_sec: rate,
        samples,
        rss_growth_pct: (rss_growth_pct * 10.0).round() / 10.0,
        open_files_growth,
        threads_growth,
        flat,
    })
}
