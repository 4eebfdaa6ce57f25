//! Fault drills under a steady write load, shared by the docker-compose run
//! (`it::compose_e2e`) and the drills on processes of this machine (`it::pg_restart`).
//!
//! Each drill: writers (one user each) PUT new files through a gateway's plain HTTP
//! listener; after two seconds the fault is injected, the load runs on, the fault is
//! healed, and the load stops once every writer's last write succeeded (at most a
//! minute after the window). Then every acknowledged write (201 or 202) must read back
//! with its bytes, and every file must appear exactly once in the event feed. A
//! [`Row`] has per drill: writes acknowledged, lost, duplicated, the statuses clients
//! saw, how long writes failed (first failure to the last failure before writes
//! succeeded again), and the slowest write.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use tokio::sync::Mutex;

/// A deployment reached through its gateway.
pub struct Stack {
    pub gateway: String,
    pub http: reqwest::Client,
}

/// A signed-up user with a session cookie.
pub struct Writer {
    pub z32: String,
    pub cookie: String,
}

/// One write attempt: what was sent and what came back.
struct Attempt {
    path: String,
    body: String,
    status: Option<StatusCode>,
    at: Instant,
    took: Duration,
}

impl Stack {
    /// A path-addressed storage URL through the gateway.
    pub fn storage(&self, w: &Writer, path: &str) -> String {
        format!("{}/storage/{}{path}", self.gateway, w.z32)
    }

    pub async fn signup(&self) -> Writer {
        let user = pubky::Keypair::random();
        let caps = pubky::Capabilities::from(vec![pubky::Capability::root()]);
        let token = pubky::AuthToken::sign(&user, caps).serialize();
        let r = self
            .http
            .post(format!("{}/signup", self.gateway))
            .header("host", "localhost")
            .body(token)
            .send()
            .await
            .expect("signup");
        assert_eq!(r.status(), StatusCode::OK, "signup");
        let z32 = user.public_key().z32();
        let cookie = r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next().filter(|pair| pair.starts_with(&z32)))
            .expect("session cookie")
            .to_string();
        Writer { z32, cookie }
    }

    pub async fn put(&self, w: &Writer, path: &str, body: &str) -> Option<StatusCode> {
        self.http
            .put(self.storage(w, path))
            .header("cookie", &w.cookie)
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()
            .map(|r| r.status())
    }

    /// A read, retried for up to 30 s while the answer is a 5xx (a dependency still
    /// recovering is not a lost write).
    pub async fn get(&self, w: &Writer, path: &str) -> (StatusCode, String) {
        self.get_within(w, path, false).await
    }

    /// [`Self::get`]; with `accepted` (a write answered 202: in the log, not yet
    /// visible) a 404 is retried as well, for the projector to catch up.
    pub async fn get_within(&self, w: &Writer, path: &str, accepted: bool) -> (StatusCode, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.http.get(self.storage(w, path)).send().await;
            if let Ok(r) = r {
                let status = r.status();
                let pending =
                    status.is_server_error() || (accepted && status == StatusCode::NOT_FOUND);
                if !pending || Instant::now() > deadline {
                    return (status, r.text().await.unwrap_or_default());
                }
            }
            assert!(Instant::now() < deadline, "GET {path}: no answer for 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every `PUT` line of the whole event feed, counted per file URL.
    pub async fn feed_counts(&self) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        let mut cursor = String::new();
        loop {
            let text = self
                .http
                .get(format!(
                    "{}/events/?limit=1000&cursor={cursor}",
                    self.gateway
                ))
                .send()
                .await
                .expect("feed")
                .text()
                .await
                .expect("feed body");
            let mut lines = 0;
            for line in text.lines() {
                if let Some(url) = line.strip_prefix("PUT ") {
                    *counts.entry(url.to_string()).or_default() += 1;
                    lines += 1;
                } else if let Some(c) = line.strip_prefix("cursor: ") {
                    cursor = c.to_string();
                }
            }
            if lines == 0 {
                return counts;
            }
        }
    }
}

#[derive(Default)]
pub struct Row {
    pub drill: String,
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub statuses: BTreeMap<String, usize>,
    pub failing: Option<Duration>,
    pub slowest: Duration,
    pub recovered: bool,
    /// The first lost writes, each with what was wrong with it.
    pub lost_examples: Vec<String>,
}

/// Runs the write load for `total`, injecting `fault` after 2 s and `heal` (if any)
/// `fault_for` later.
pub async fn drill(
    stack: &Arc<Stack>,
    writers: &Arc<Vec<Writer>>,
    name: &str,
    fault: impl Future<Output = ()>,
    heal: impl Future<Output = ()>,
    fault_for: Duration,
    total: Duration,
) -> Row {
    let attempts = Arc::new(Mutex::new(Vec::<(usize, Attempt)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..writers.len() {
        let (stack, writers, attempts, stop) = (
            stack.clone(),
            writers.clone(),
            attempts.clone(),
            stop.clone(),
        );
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/pub/e2e/{name}/{i}-{n}.txt");
                let body = format!("{name} writer {i} write {n}");
                let sent = Instant::now();
                let status = stack.put(&writers[i], &path, &body).await;
                let failed = !matches!(status, Some(s) if s.is_success());
                attempts.lock().await.push((
                    i,
                    Attempt {
                        path,
                        body,
                        status,
                        at: Instant::now(),
                        took: sent.elapsed(),
                    },
                ));
                n += 1;
                if failed {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fault_at = Instant::now();
    fault.await;
    tokio::time::sleep(fault_for).await;
    heal.await;
    tokio::time::sleep(total.saturating_sub(started.elapsed())).await;
    // The load goes on until every writer's last write succeeded (at most a minute
    // more): the table shows how long recovery took, not only whether it was done by
    // the end of the window.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let recent = attempts.lock().await;
        let mut last = vec![None; writers.len()];
        for (i, a) in recent.iter() {
            last[*i] = Some(matches!(a.status, Some(s) if s.is_success()));
        }
        drop(recent);
        if last.iter().all(|ok| *ok == Some(true)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }

    let attempts = std::mem::take(&mut *attempts.lock().await);
    let mut row = Row {
        drill: name.to_string(),
        ..Row::default()
    };
    let mut first_fail = None;
    let mut last_fail = None;
    for (_, a) in &attempts {
        let key = a
            .status
            .map(|s| s.as_u16().to_string())
            .unwrap_or_else(|| "timeout".into());
        *row.statuses.entry(key).or_default() += 1;
        if !matches!(a.status, Some(s) if s.is_success()) && a.at >= fault_at {
            first_fail.get_or_insert(a.at);
            last_fail = Some(a.at);
        }
    }
    row.failing = first_fail.zip(last_fail).map(|(f, l)| l - f);
    row.slowest = attempts
        .iter()
        .map(|(_, a)| a.took)
        .max()
        .unwrap_or_default();
    row.recovered = attempts
        .iter()
        .rev()
        .take(writers.len())
        .all(|(_, a)| matches!(a.status, Some(s) if s.is_success()));

    // Every acknowledged write reads back; every file is in the feed once.
    let acknowledged: Vec<_> = attempts
        .iter()
        .filter(|(_, a)| matches!(a.status, Some(s) if s.is_success()))
        .collect();
    row.acknowledged = acknowledged.len();
    let reads = futures::stream::iter(acknowledged)
        .map(|(i, a)| async move {
            let accepted = a.status == Some(StatusCode::ACCEPTED);
            let read = stack.get_within(&writers[*i], &a.path, accepted).await;
            (*i, a, read)
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    // After the reads: by then every acknowledged write is projected, or lost.
    let feed = stack.feed_counts().await;
    for (i, a, (status, body)) in reads {
        let url = format!("pubky://{}{}", writers[i].z32, a.path);
        let in_feed = feed.contains_key(&url);
        if status != StatusCode::OK || body != a.body || !in_feed {
            row.lost += 1;
            // What kind of loss it is, for the report: the read, the bytes or the feed.
            row.lost_examples.push(format!(
                "{url} (acknowledged {:?}): read {status}, bytes {}, in feed {in_feed}",
                a.status.map(|s| s.as_u16()),
                if body == a.body { "equal" } else { "differ" },
            ));
        }
    }
    row.duplicated = feed
        .iter()
        .filter(|(url, n)| url.contains(&format!("/pub/e2e/{name}/")) && **n > 1)
        .count();
    row
}

/// The drills as a Markdown table, as the README shows them.
pub fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| drill | acknowledged | lost | duplicated | statuses seen | writes failing for | slowest write | recovered |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let statuses: Vec<String> = r.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} s | {} |",
            r.drill,
            r.acknowledged,
            r.lost,
            r.duplicated,
            statuses.join(" "),
            r.failing
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "never".into()),
            r.slowest.as_secs_f64(),
            if r.recovered { "yes" } else { "NO" },
        );
    }
}

/// What every drill must show: nothing acknowledged lost or doubled, and writes back.
pub fn assert_held(rows: &[Row]) {
    for r in rows {
        assert_eq!(
            r.lost,
            0,
            "{}: acknowledged writes lost: {:#?}",
            r.drill,
            &r.lost_examples[..r.lost_examples.len().min(10)]
        );
        assert_eq!(r.duplicated, 0, "{}: duplicated", r.drill);
        assert!(r.recovered, "{}: writes did not recover", r.drill);
    }
}
