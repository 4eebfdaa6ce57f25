//! The workloads, run in this order against one server: signups, the small-object
//! write mix, reads, listings of one large directory (deep and shallow), `/events/`
//! catch-up over the whole history, live SSE delivery latency, and one large blob up
//! and down.
//!
//! Every write is checked: after its 2xx the same URL is read back unauthenticated
//! and must return the same bytes, so a server cannot look fast by acknowledging
//! work it has not made visible. Failures are counted, never hidden, and the
//! throughput figures count only verified writes.
//!
//! The load is closed-loop (each of `concurrency` workers sends its next request when
//! the previous one finished), like wrk in the reference figures of TARGETS.md; the
//! SSE writer is open-loop at a fixed rate, since delivery latency is only meaningful
//! at a known offered load.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use pubky_common::crypto::PublicKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{self, Kind, User, Zipf};
use crate::stats::{Latency, Sampler, WorkloadResult, histogram, record};

/// Sizes and durations of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    pub mode: String,
    /// Users signed up for the write mix.
    pub users: usize,
    pub signup_concurrency: usize,
    /// Workers of the closed-loop workloads (connections).
    pub concurrency: usize,
    pub write_secs: u64,
    pub read_secs: u64,
    /// One write in this many is a blob of 100 KiB..`blob_max_kib` (log-uniform).
    pub blob_one_in: u32,
    pub blob_max_kib: u64,
    /// Entries in the large directory that is listed.
    pub list_entries: usize,
    pub list_concurrency: usize,
    pub list_secs: u64,
    pub list_page: usize,
    /// The `/events/` history is filled up to at least this many events.
    pub history: u64,
    pub subscribers: usize,
    pub sse_writers: usize,
    pub sse_writes_per_sec: u64,
    pub sse_secs: u64,
    pub big_blob_mib: u64,
}

impl Params {
    pub fn quick() -> Params {
        Params {
            mode: "quick".into(),
            users: 200,
            signup_concurrency: 16,
            concurrency: 64,
            write_secs: 10,
            read_secs: 10,
            blob_one_in: 500,
            blob_max_kib: 10 * 1024,
            list_entries: 2_000,
            list_concurrency: 8,
            list_secs: 5,
            list_page: 100,
            history: 10_000,
            subscribers: 200,
            sse_writers: 10,
            sse_writes_per_sec: 50,
            sse_secs: 5,
            big_blob_mib: 64,
        }
    }

    /// The workloads of TARGETS.md as far as a 2-core machine running server,
    /// Postgres, NATS and load generator at once allows in a bounded time.
    pub fn full() -> Params {
        Params {
            mode: "full".into(),
            users: 1_000,
            signup_concurrency: 16,
            concurrency: 64,
            write_secs: 30,
            read_secs: 30,
            blob_one_in: 500,
            blob_max_kib: 10 * 1024,
            list_entries: 10_000,
            list_concurrency: 8,
            list_secs: 15,
            list_page: 100,
            history: 100_000,
            subscribers: 1_000,
            sse_writers: 10,
            sse_writes_per_sec: 100,
            sse_secs: 10,
            big_blob_mib: 256,
        }
    }
}

/// The server under test, as the workloads see it.
pub struct Target<'a> {
    pub base: String,
    pub homeserver: PublicKey,
    pub http: reqwest::Client,
    pub sampler: &'a Sampler,
}

impl Target<'_> {
    fn url(&self, user: &str, path: &str) -> String {
        format!("{}/storage/{user}{path}", self.base)
    }
}

/// A small object written and verified, kept for the read workload.
#[derive(Clone)]
struct Written {
    url: String,
    body: Bytes,
}

#[derive(Default)]
struct Counters {
    errors: u64,
    ryw: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.errors += other.errors;
        self.ryw += other.ryw;
    }
}

/// PUT `body` to `url`, then GET it back; the PUT's latency if both succeeded.
async fn put_checked(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Bytes,
    counters: &mut Counters,
) -> Option<Duration> {
    let start = Instant::now();
    let resp = http
        .put(url)
        .bearer_auth(token)
        .body(body.clone())
        .send()
        .await;
    match resp {
        Ok(resp) if resp.status().is_success() => {
            let _ = resp.bytes().await;
        }
        Ok(resp) => {
            counters.errors += 1;
            let _ = resp.bytes().await;
            return None;
        }
        Err(_) => {
            counters.errors += 1;
            return None;
        }
    }
    let elapsed = start.elapsed();
    match http.get(url).send().await {
        Ok(resp) if resp.status() == reqwest::StatusCode::OK => match resp.bytes().await {
            Ok(read) if read == body => Some(elapsed),
            _ => {
                counters.ryw += 1;
                None
            }
        },
        _ => {
            counters.ryw += 1;
            None
        }
    }
}

fn result(
    name: &str,
    description: &str,
    unit: &str,
    ops: u64,
    elapsed: Duration,
    latency: &Histogram<u64>,
    counters: &Counters,
) -> WorkloadResult {
    let seconds = elapsed.as_secs_f64();
    WorkloadResult {
        name: name.into(),
        description: description.into(),
        ops,
        unit: unit.into(),
        seconds: round(seconds),
        per_second: round(ops as f64 / seconds.max(1e-9)),
        latency: Latency::of(latency),
        errors: counters.errors,
        read_your_writes_failures: counters.ryw,
        ..WorkloadResult::default()
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs every workload against `target`, printing one line per workload.
pub async fn run_all(target: &Target<'_>, params: &Params) -> Result<Vec<WorkloadResult>> {
    let mut results = Vec::new();
    let mut events = 0u64;

    let idle = target.sampler.reset();
    let (users, mut r) = signups(target, params).await?;
    r.memory = target.sampler.read(idle);
    report(&mut results, r);

    let idle = target.sampler.reset();
    let (mut small, mut blobs, written) = write_mix(target, params, &users).await;
    small.memory = target.sampler.read(idle);
    blobs.memory = small.memory.clone();
    events += small.ops + blobs.ops;
    report(&mut results, small);
    report(&mut results, blobs);

    let idle = target.sampler.reset();
    let mut r = reads(target, params, &written).await;
    r.memory = target.sampler.read(idle);
    report(&mut results, r);

    let lister = users
        .last()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no users"))?;
    let idle = target.sampler.reset();
    let (mut r, deep_expected, shallow_expected) = list_populate(target, params, &lister).await;
    r.memory = target.sampler.read(idle);
    events += r.ops;
    report(&mut results, r);
    for (shallow, expected) in [(false, deep_expected), (true, shallow_expected)] {
        let idle = target.sampler.reset();
        let mut r = listing(target, params, &lister, shallow, expected).await;
        r.memory = target.sampler.read(idle);
        report(&mut results, r);
    }

    if events < params.history {
        let idle = target.sampler.reset();
        let mut r = fill_history(target, params, &users, params.history - events).await;
        r.memory = target.sampler.read(idle);
        events += r.ops;
        report(&mut results, r);
    }
    let idle = target.sampler.reset();
    let mut r = catch_up(target, events).await;
    r.memory = target.sampler.read(idle);
    report(&mut results, r);

    let idle = target.sampler.reset();
    let mut r = sse_latency(target, params).await?;
    r.memory = target.sampler.read(idle);
    report(&mut results, r);

    let owner = users
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no users"))?;
    let (up, down) = big_blob(target, params, &owner).await;
    report(&mut results, up);
    report(&mut results, down);
    Ok(results)
}

fn report(results: &mut Vec<WorkloadResult>, r: WorkloadResult) {
    println!(
        "  {:<16} {:>10.1} {}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}  ryw-failures {}  server peak RSS {:.1} MiB",
        r.name,
        r.per_second,
        r.unit,
        r.latency.p50_ms,
        r.latency.p99_ms,
        r.errors,
        r.read_your_writes_failures,
        r.memory.server_peak_rss_mib
    );
    results.push(r);
}

/// Signs up `params.users` accounts (signup grant, then session grant).
async fn signups(target: &Target<'_>, params: &Params) -> Result<(Vec<User>, WorkloadResult)> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..params.signup_concurrency {
        let (http, base, hs, next) = (
            target.http.clone(),
            target.base.clone(),
            target.homeserver.clone(),
            next.clone(),
        );
        let total = params.users as u64;
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut users = Vec::new();
            let mut counters = Counters::default();
            let mut last_error = None;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                match client::signup(&http, &base, &hs).await {
                    Ok(user) => {
                        record(&mut h, t.elapsed());
                        users.push(user);
                    }
                    Err(e) => {
                        counters.errors += 1;
                        last_error = Some(e);
                    }
                }
            }
            (h, users, counters, last_error)
        }));
    }
    let mut h = histogram();
    let mut users = Vec::new();
    let mut counters = Counters::default();
    let mut last_error = None;
    for task in tasks {
        let (th, tu, tc, te) = task.await?;
        let _ = h.add(&th);
        users.extend(tu);
        counters.add(&tc);
        last_error = te.or(last_error);
    }
    if users.len() < params.users / 2 {
        bail!(
            "only {} of {} signups succeeded; last error: {:?}",
            users.len(),
            params.users,
            last_error
        );
    }
    let r = result(
        "signup",
        "grant signup + grant session (two signed JWS exchanges) per user",
        "users",
        users.len() as u64,
        start.elapsed(),
        &h,
        &counters,
    );
    Ok((users, r))
}

/// The small-object mix over Zipf-chosen users, with occasional blobs.
async fn write_mix(
    target: &Target<'_>,
    params: &Params,
    users: &[User],
) -> (WorkloadResult, WorkloadResult, Vec<Written>) {
    let users = Arc::new(users.to_vec());
    let zipf = Arc::new(Zipf::new(users.len()));
    let ids = Arc::new(AtomicU64::new(1));
    let deadline = Instant::now() + Duration::from_secs(params.write_secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..params.concurrency {
        let (http, users, zipf, ids) = (
            target.http.clone(),
            users.clone(),
            zipf.clone(),
            ids.clone(),
        );
        let base = target.base.clone();
        let (blob_one_in, blob_max_kib, workers) =
            (params.blob_one_in, params.blob_max_kib, params.concurrency);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(worker as u64);
            let (mut small, mut blobs) = (histogram(), histogram());
            let mut counters = Counters::default();
            let mut written = Vec::new();
            let mut blob_bytes = 0u64;
            while Instant::now() < deadline {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let ui = zipf.sample(&mut rng);
                let user = &users[ui];
                if rng.gen_ratio(1, blob_one_in) {
                    // log-uniform 100 KiB .. max
                    let lo = (100.0f64 * 1024.0).ln();
                    let hi = (blob_max_kib.max(101) as f64 * 1024.0).ln();
                    let len = rng.gen_range(lo..hi).exp() as usize;
                    let body = Bytes::from(client::blob_bytes(len, id));
                    let url = format!("{base}/storage/{}/pub/pubky.app/blobs/{id:013X}", user.z32);
                    if let Some(t) =
                        put_checked(&http, &url, &user.token, body, &mut counters).await
                    {
                        record(&mut blobs, t);
                        blob_bytes += len as u64;
                    }
                    continue;
                }
                let mut kind = Kind::pick(&mut rng);
                // One profile per user, overwritten: only the worker that owns the
                // user writes it, so the read-back cannot race another worker.
                if matches!(kind, Kind::Profile) && ui % workers != worker {
                    kind = Kind::Post;
                }
                let body = Bytes::from(client::json_body(kind.size(), id));
                let url = format!("{base}/storage/{}{}", user.z32, kind.path(id));
                if let Some(t) =
                    put_checked(&http, &url, &user.token, body.clone(), &mut counters).await
                {
                    record(&mut small, t);
                    if !matches!(kind, Kind::Profile) && written.len() < 50_000 {
                        written.push(Written { url, body });
                    }
                }
            }
            (small, blobs, counters, written, blob_bytes)
        }));
    }
    let (mut small, mut blobs) = (histogram(), histogram());
    let mut counters = Counters::default();
    let mut written = Vec::new();
    let mut blob_bytes = 0;
    for task in tasks {
        let Ok((s, b, c, w, bb)) = task.await else {
            counters.errors += 1;
            continue;
        };
        let _ = small.add(&s);
        let _ = blobs.add(&b);
        counters.add(&c);
        written.extend(w);
        blob_bytes += bb;
    }
    let elapsed = start.elapsed();
    let small_r = result(
        "write_small",
        "PUT of small JSON (posts 130 B, tags 150 B, follows 30 B, file meta 200 B, profiles 300 B), Zipf over users, each read back after its 2xx",
        "writes",
        small.len(),
        elapsed,
        &small,
        &counters,
    );
    let mut blob_r = result(
        "write_blobs",
        "the occasional blobs of the same run (100 KiB..10 MiB, log-uniform), each read back",
        "writes",
        blobs.len(),
        elapsed,
        &blobs,
        &Counters::default(),
    );
    blob_r.extra.insert(
        "mb_per_second".into(),
        round(blob_bytes as f64 / 1e6 / elapsed.as_secs_f64()),
    );
    (small_r, blob_r, written)
}

/// GETs of the objects written before, uniformly chosen, bodies compared.
async fn reads(target: &Target<'_>, params: &Params, written: &[Written]) -> WorkloadResult {
    let written = Arc::new(written.to_vec());
    let deadline = Instant::now() + Duration::from_secs(params.read_secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..params.concurrency {
        let (http, written) = (target.http.clone(), written.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1_000 + worker as u64);
            let mut h = histogram();
            let mut counters = Counters::default();
            while !written.is_empty() && Instant::now() < deadline {
                let w = &written[rng.gen_range(0..written.len())];
                let t = Instant::now();
                match http.get(&w.url).send().await {
                    Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                        match resp.bytes().await {
                            Ok(body) if body == w.body => record(&mut h, t.elapsed()),
                            _ => counters.errors += 1,
                        }
                    }
                    _ => counters.errors += 1,
                }
            }
            (h, counters)
        }));
    }
    let mut h = histogram();
    let mut counters = Counters::default();
    for task in tasks {
        match task.await {
            Ok((th, tc)) => {
                let _ = h.add(&th);
                counters.add(&tc);
            }
            Err(_) => counters.errors += 1,
        }
    }
    result(
        "read_small",
        "GET of the small objects written above, body compared",
        "reads",
        h.len(),
        start.elapsed(),
        &h,
        &counters,
    )
}

const LIST_DIR: &str = "/pub/bench.list/";

/// The path of entry `i` of the large directory: nine in ten directly in it, the
/// rest in 100 subdirectories (so shallow and deep listings differ).
fn list_path(i: usize) -> String {
    if i % 10 == 9 {
        format!("{LIST_DIR}d{:03}/{i:08}", (i / 10) % 100)
    } else {
        format!("{LIST_DIR}{i:08}")
    }
}

/// Writes the large directory of one user (all writes to one user: the hot-user case).
async fn list_populate(
    target: &Target<'_>,
    params: &Params,
    user: &User,
) -> (WorkloadResult, u64, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let total = params.list_entries as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, next, user) = (target.http.clone(), next.clone(), user.clone());
        let base = target.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut counters = Counters::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let url = format!("{base}/storage/{}{}", user.z32, list_path(i as usize));
                let body = Bytes::from(client::json_body(Kind::Follow.size(), i));
                if let Some(t) = put_checked(&http, &url, &user.token, body, &mut counters).await {
                    record(&mut h, t);
                }
            }
            (h, counters)
        }));
    }
    let mut h = histogram();
    let mut counters = Counters::default();
    for task in tasks {
        match task.await {
            Ok((th, tc)) => {
                let _ = h.add(&th);
                counters.add(&tc);
            }
            Err(_) => counters.errors += 1,
        }
    }
    let deep = params.list_entries as u64;
    let shallow: HashSet<String> = (0..params.list_entries)
        .map(|i| {
            let rest = &list_path(i)[LIST_DIR.len()..];
            match rest.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => rest.to_string(),
            }
        })
        .collect();
    let r = result(
        "write_one_user",
        "PUT of 30 B entries into one user's large directory, 32 writers, each read back",
        "writes",
        h.len(),
        start.elapsed(),
        &h,
        &counters,
    );
    (r, deep, shallow.len() as u64)
}

/// Complete paged traversals of the large directory by several clients at once.
async fn listing(
    target: &Target<'_>,
    params: &Params,
    user: &User,
    shallow: bool,
    expected: u64,
) -> WorkloadResult {
    let url = target.url(&user.z32, LIST_DIR);
    let deadline = Instant::now() + Duration::from_secs(params.list_secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..params.list_concurrency {
        let (http, url) = (target.http.clone(), url.clone());
        let page = params.list_page;
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut counters = Counters::default();
            let mut entries = 0u64;
            let mut traversals = 0u64;
            'outer: while Instant::now() < deadline {
                let mut cursor: Option<String> = None;
                let mut seen = 0u64;
                // Bounded: a correct server ends after expected/page + 1 pages.
                for _ in 0..(expected as usize / page + 3) {
                    let mut req = http.get(&url).query(&[("limit", page.to_string())]);
                    if shallow {
                        req = req.query(&[("shallow", "true")]);
                    }
                    if let Some(c) = &cursor {
                        req = req.query(&[("cursor", c)]);
                    }
                    let t = Instant::now();
                    let body = match req.send().await {
                        Ok(resp) if resp.status().is_success() => match resp.text().await {
                            Ok(body) => body,
                            Err(_) => {
                                counters.errors += 1;
                                continue 'outer;
                            }
                        },
                        _ => {
                            counters.errors += 1;
                            continue 'outer;
                        }
                    };
                    record(&mut h, t.elapsed());
                    let lines: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
                    seen += lines.len() as u64;
                    entries += lines.len() as u64;
                    if lines.len() < page {
                        break;
                    }
                    cursor = lines.last().map(|l| l.to_string());
                }
                if seen == expected {
                    traversals += 1;
                } else {
                    counters.errors += 1;
                }
            }
            (h, counters, entries, traversals)
        }));
    }
    let mut h = histogram();
    let mut counters = Counters::default();
    let (mut entries, mut traversals) = (0, 0);
    for task in tasks {
        match task.await {
            Ok((th, tc, te, tt)) => {
                let _ = h.add(&th);
                counters.add(&tc);
                entries += te;
                traversals += tt;
            }
            Err(_) => counters.errors += 1,
        }
    }
    let elapsed = start.elapsed();
    let (name, what) = if shallow {
        ("list_shallow", "shallow")
    } else {
        ("list_deep", "deep")
    };
    let mut r = result(
        name,
        &format!(
            "complete {what} listings of a {}-entry directory, {} per page, {} clients; every traversal must return {expected} entries",
            params.list_entries, params.list_page, params.list_concurrency
        ),
        "pages",
        h.len(),
        elapsed,
        &h,
        &counters,
    );
    r.extra.insert(
        "entries_per_second".into(),
        round(entries as f64 / elapsed.as_secs_f64()),
    );
    r.extra.insert("traversals".into(), traversals as f64);
    r
}

/// More small writes (posts of Zipf-chosen users) until the history has `count` more
/// events.
async fn fill_history(
    target: &Target<'_>,
    params: &Params,
    users: &[User],
    count: u64,
) -> WorkloadResult {
    let users = Arc::new(users.to_vec());
    let zipf = Arc::new(Zipf::new(users.len()));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..params.concurrency {
        let (http, users, zipf, next) = (
            target.http.clone(),
            users.clone(),
            zipf.clone(),
            next.clone(),
        );
        let base = target.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(2_000 + worker as u64);
            let mut h = histogram();
            let mut counters = Counters::default();
            // Failed writes are retried with a new id, bounded by 2x the count.
            for _ in 0..count * 2 {
                if next.load(Ordering::Relaxed) >= count {
                    break;
                }
                let id = 1_000_000_000 + next.load(Ordering::Relaxed) * 1_000 + worker as u64;
                let user = &users[zipf.sample(&mut rng)];
                let url = format!("{base}/storage/{}{}", user.z32, Kind::Post.path(id));
                let body = Bytes::from(client::json_body(Kind::Post.size(), id));
                if let Some(t) = put_checked(&http, &url, &user.token, body, &mut counters).await {
                    record(&mut h, t);
                    next.fetch_add(1, Ordering::Relaxed);
                }
            }
            (h, counters)
        }));
    }
    let mut h = histogram();
    let mut counters = Counters::default();
    for task in tasks {
        match task.await {
            Ok((th, tc)) => {
                let _ = h.add(&th);
                counters.add(&tc);
            }
            Err(_) => counters.errors += 1,
        }
    }
    result(
        "write_fill",
        "more 130 B posts (same as write_small) until the event history is large enough",
        "writes",
        h.len(),
        start.elapsed(),
        &h,
        &counters,
    )
}

/// Reads the whole `/events/` feed from the start, 1000 per page, one client.
async fn catch_up(target: &Target<'_>, expected_at_least: u64) -> WorkloadResult {
    let mut h = histogram();
    let mut counters = Counters::default();
    let mut cursor = "0".to_string();
    let mut events = 0u64;
    let start = Instant::now();
    // Bounded: a correct server needs expected/1000 + 1 pages.
    for _ in 0..(expected_at_least / 1_000 + 1_000) {
        let t = Instant::now();
        let body = match target
            .http
            .get(format!("{}/events/", target.base))
            .query(&[("cursor", cursor.as_str()), ("limit", "1000")])
            .send()
            .await
        {
            Ok(resp) if resp.status().is_success() => match resp.text().await {
                Ok(body) => body,
                Err(_) => {
                    counters.errors += 1;
                    break;
                }
            },
            _ => {
                counters.errors += 1;
                break;
            }
        };
        record(&mut h, t.elapsed());
        let mut page_events = 0;
        let mut next = None;
        for line in body.lines() {
            if let Some(c) = line.strip_prefix("cursor: ") {
                next = Some(c.trim().to_string());
            } else if line.starts_with("PUT ") || line.starts_with("DEL ") {
                page_events += 1;
            }
        }
        events += page_events;
        match next {
            Some(c) if page_events > 0 => cursor = c,
            _ => break,
        }
    }
    if events < expected_at_least {
        counters.errors += expected_at_least - events;
    }
    let elapsed = start.elapsed();
    let mut r = result(
        "events_catch_up",
        &format!(
            "GET /events/ from cursor 0 to the end, limit 1000, one client (history of at least {expected_at_least} events)"
        ),
        "events",
        events,
        elapsed,
        &h,
        &counters,
    );
    r.extra.insert("pages".into(), h.len() as f64);
    r
}

/// Live SSE delivery: `subscribers` streams, each following the same writer users;
/// latency from sending the PUT to the event's arrival at each subscriber.
async fn sse_latency(target: &Target<'_>, params: &Params) -> Result<WorkloadResult> {
    let mut writers = Vec::new();
    for _ in 0..params.sse_writers {
        writers.push(client::signup(&target.http, &target.base, &target.homeserver).await?);
    }
    let total_writes = params.sse_writes_per_sec * params.sse_secs;
    let mut query: Vec<(&str, String)> = writers.iter().map(|w| ("user", w.z32.clone())).collect();
    query.push(("live", "true".into()));
    // Streams stay open for the whole workload: no request timeout on this client.
    let stream_http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let sent: Arc<RwLock<HashMap<String, Instant>>> = Arc::new(RwLock::new(HashMap::new()));
    let connected = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for _ in 0..params.subscribers {
        let (http, sent, connected) = (stream_http.clone(), sent.clone(), connected.clone());
        let req = http
            .get(format!("{}/events-stream", target.base))
            .query(&query);
        subs.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut received = 0u64;
            let Ok(mut resp) = req.send().await else {
                return (h, received, false);
            };
            if !resp.status().is_success() {
                return (h, received, false);
            }
            connected.fetch_add(1, Ordering::Relaxed);
            let mut buf = Vec::new();
            while received < total_writes {
                let Ok(Some(chunk)) = resp.chunk().await else {
                    return (h, received, false);
                };
                let now = Instant::now();
                buf.extend_from_slice(&chunk);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let Some(url) = line.strip_prefix(b"data: pubky://") else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(url).trim_end().to_string();
                    let at = sent.read().ok().and_then(|m| m.get(&key).copied());
                    if let Some(at) = at {
                        record(&mut h, now.saturating_duration_since(at));
                        received += 1;
                    }
                }
            }
            (h, received, true)
        }));
    }
    // Bounded wait until every stream is open (failed ones are counted below).
    let open_deadline = Instant::now() + Duration::from_secs(30);
    while (connected.load(Ordering::Relaxed) as usize) < params.subscribers
        && Instant::now() < open_deadline
        && !subs.iter().all(|s| s.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the servers register the live subscriptions after answering the headers.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / params.sse_writes_per_sec as f64,
    ));
    let mut puts = Vec::new();
    for seq in 0..total_writes {
        tick.tick().await;
        let writer = writers[seq as usize % writers.len()].clone();
        let path = format!("/pub/bench.sse/{seq:08}");
        let url = target.url(&writer.z32, &path);
        if let Ok(mut map) = sent.write() {
            map.insert(format!("{}{}", writer.z32, path), Instant::now());
        }
        let http = target.http.clone();
        puts.push(tokio::spawn(async move {
            let mut counters = Counters::default();
            let body = Bytes::from(client::json_body(Kind::Post.size(), seq));
            put_checked(&http, &url, &writer.token, body, &mut counters).await;
            counters
        }));
    }
    let mut counters = Counters::default();
    for put in puts {
        match put.await {
            Ok(c) => counters.add(&c),
            Err(_) => counters.errors += 1,
        }
    }
    let write_secs = start.elapsed().as_secs_f64();
    // Deliveries still in flight: bounded wait, then the stragglers are cut off.
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while !subs.iter().all(|s| s.is_finished()) && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut h = histogram();
    let mut delivered = 0u64;
    let mut dropped_streams = 0u64;
    for sub in subs {
        if !sub.is_finished() {
            sub.abort();
            dropped_streams += 1;
            continue;
        }
        match sub.await {
            Ok((sh, received, ok)) => {
                let _ = h.add(&sh);
                delivered += received;
                if !ok {
                    dropped_streams += 1;
                }
            }
            Err(_) => dropped_streams += 1,
        }
    }
    let expected = total_writes * params.subscribers as u64;
    counters.errors += expected.saturating_sub(delivered);
    let elapsed = start.elapsed();
    let mut r = result(
        "sse_live",
        &format!(
            "{} live SSE subscribers following the same {} users; {} writes/s for {} s; latency from PUT sent to event received",
            params.subscribers, params.sse_writers, params.sse_writes_per_sec, params.sse_secs
        ),
        "deliveries",
        delivered,
        elapsed,
        &h,
        &counters,
    );
    r.extra.insert(
        "writes_per_second".into(),
        round(total_writes as f64 / write_secs),
    );
    r.extra
        .insert("streams_cut_or_incomplete".into(), dropped_streams as f64);
    r.extra
        .insert("expected_deliveries".into(), expected as f64);
    Ok(r)
}

/// One large blob up, then down (streamed, hashed, compared).
async fn big_blob(
    target: &Target<'_>,
    params: &Params,
    user: &User,
) -> (WorkloadResult, WorkloadResult) {
    let len = (params.big_blob_mib * 1024 * 1024) as usize;
    let data = Bytes::from(client::blob_bytes(len, 7));
    let hash = pubky_common::crypto::hash(&data);
    let url = target.url(&user.z32, "/pub/pubky.app/blobs/big.bin");
    let mb = len as f64 / 1e6;

    let idle = target.sampler.reset();
    let mut counters = Counters::default();
    let mut h = histogram();
    let start = Instant::now();
    match target
        .http
        .put(&url)
        .bearer_auth(&user.token)
        .body(data)
        .timeout(Duration::from_secs(600))
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => record(&mut h, start.elapsed()),
        _ => counters.errors += 1,
    }
    let elapsed = start.elapsed();
    let mut up = result(
        "blob_upload",
        &format!("PUT of one {} MiB blob", params.big_blob_mib),
        "uploads",
        h.len(),
        elapsed,
        &h,
        &counters,
    );
    up.extra
        .insert("mb_per_second".into(), round(mb / elapsed.as_secs_f64()));
    up.memory = target.sampler.read(idle);

    let idle = target.sampler.reset();
    let mut counters = Counters::default();
    let mut h = histogram();
    let start = Instant::now();
    let mut hasher = pubky_common::crypto::Hasher::new();
    let mut got = 0usize;
    match target
        .http
        .get(&url)
        .timeout(Duration::from_secs(600))
        .send()
        .await
    {
        Ok(mut resp) if resp.status().is_success() => loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    got += chunk.len();
                    hasher.update(&chunk);
                }
                Ok(None) => break,
                Err(_) => {
                    counters.errors += 1;
                    break;
                }
            }
        },
        _ => counters.errors += 1,
    }
    let elapsed = start.elapsed();
    if got == len && hasher.finalize() == hash {
        record(&mut h, elapsed);
    } else {
        counters.ryw += 1;
    }
    let mut down = result(
        "blob_download",
        &format!(
            "GET of the same {} MiB blob, streamed and hashed",
            params.big_blob_mib
        ),
        "downloads",
        h.len(),
        elapsed,
        &h,
        &counters,
    );
    down.extra.insert(
        "mb_per_second".into(),
        round(got as f64 / 1e6 / elapsed.as_secs_f64()),
    );
    down.memory = target.sampler.read(idle);
    (up, down)
}
