//! The docker-compose deployment from outside: a smoke scenario through the gateway,
//! then fault drills under a steady write load. Run by `make e2e-compose`
//! (scripts/e2e-compose.sh), which brings the stack up from nothing first and tears it
//! down after; ignored otherwise (it needs Docker and the running stack).
//!
//! Each drill: writers (one user each) PUT new files through the gateway's plain HTTP
//! listener; after two seconds a fault is injected with Docker (a SIGKILL of the
//! container's process, as a crash: the restart policy brings it back; or two of the
//! three NATS nodes stopped, then started again; or Postgres restarted), the load runs
//! on, the fault is healed, and the load stops once every writer's last write
//! succeeded (at most a minute after the window). No service is restarted by the drill
//! except the one it kills. Then every acknowledged write (201 or 202)
//! must read back with its bytes, and every file must appear exactly once in the event
//! feed. The table has per drill: writes acknowledged, lost, duplicated, the statuses
//! clients saw, and how long writes failed (first failure to the last failure before
//! writes succeeded again), and the slowest write. At the end `homeserver rebuild` replays the whole log and
//! compares it with the live projections.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::Mutex;

const WRITERS: usize = 8;
const PROJECT: &str = "pubky-homeserver";

struct Stack {
    gateway: String,
    http: reqwest::Client,
}

struct Writer {
    z32: String,
    cookie: String,
}

/// One write attempt: what was sent and what came back.
struct Attempt {
    path: String,
    body: String,
    status: Option<StatusCode>,
    at: Instant,
    took: Duration,
}

fn container(service: &str) -> String {
    format!("{PROJECT}_{service}_1")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// SIGKILL of the container's main process from the host: a crash, so the restart
/// policy applies (`docker kill` would count as an operator's stop).
fn kill_9(service: &str) {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &container(service)]);
    let status = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid} ({service})");
}

impl Stack {
    /// A path-addressed storage URL through the gateway.
    fn storage(&self, w: &Writer, path: &str) -> String {
        format!("{}/storage/{}{path}", self.gateway, w.z32)
    }

    async fn signup(&self) -> Writer {
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

    async fn put(&self, w: &Writer, path: &str, body: &str) -> Option<StatusCode> {
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
    async fn get(&self, w: &Writer, path: &str) -> (StatusCode, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.http.get(self.storage(w, path)).send().await;
            if let Ok(r) = r {
                let status = r.status();
                if !status.is_server_error() || Instant::now() > deadline {
                    return (status, r.text().await.unwrap_or_default());
                }
            }
            assert!(Instant::now() < deadline, "GET {path}: no answer for 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every `PUT` line of the whole event feed, counted per file URL.
    async fn feed_counts(&self) -> HashMap<String, u32> {
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
struct Row {
    drill: String,
    acknowledged: usize,
    lost: usize,
    duplicated: usize,
    statuses: BTreeMap<String, usize>,
    failing: Option<Duration>,
    slowest: Duration,
    recovered: bool,
}

/// Runs the write load for `total`, calling `fault` after 2 s and `heal` (if any)
/// `fault_for` later.
async fn drill(
    stack: &Arc<Stack>,
    writers: &Arc<Vec<Writer>>,
    name: &str,
    fault: impl FnOnce(),
    heal: impl FnOnce(),
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
    fault();
    tokio::time::sleep(fault_for).await;
    heal();
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
    let feed = stack.feed_counts().await;
    for (i, a) in &attempts {
        if !matches!(a.status, Some(s) if s.is_success()) {
            continue;
        }
        row.acknowledged += 1;
        let (status, body) = stack.get(&writers[*i], &a.path).await;
        let url = format!("pubky://{}{}", writers[*i].z32, a.path);
        if status != StatusCode::OK || body != a.body || !feed.contains_key(&url) {
            row.lost += 1;
        }
    }
    row.duplicated = feed
        .iter()
        .filter(|(url, n)| url.contains(&format!("/pub/e2e/{name}/")) && **n > 1)
        .count();
    row
}

#[tokio::test]
#[ignore = "needs the docker-compose stack: make e2e-compose"]
async fn compose_e2e() {
    let gateway =
        std::env::var("COMPOSE_GATEWAY").unwrap_or_else(|_| "http://127.0.0.1:6286".into());
    let stack = Arc::new(Stack {
        gateway,
        http: reqwest::Client::new(),
    });

    // Smoke: sign up, write, read, list, delete, feed.
    let w = stack.signup().await;
    assert_eq!(
        stack.put(&w, "/pub/smoke/a.txt", "hello compose").await,
        Some(StatusCode::CREATED)
    );
    assert_eq!(
        stack.get(&w, "/pub/smoke/a.txt").await,
        (StatusCode::OK, "hello compose".to_string())
    );
    let (status, listing) = stack.get(&w, "/pub/smoke/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(listing.contains("/pub/smoke/a.txt"), "{listing}");
    let r = stack
        .http
        .delete(stack.storage(&w, "/pub/smoke/a.txt"))
        .header("cookie", &w.cookie)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        stack.get(&w, "/pub/smoke/a.txt").await.0,
        StatusCode::NOT_FOUND
    );
    println!("smoke: signup, PUT, GET, list, DELETE through the gateway: ok");

    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(stack.signup().await);
    }
    let writers = Arc::new(writers);
    let total = Duration::from_secs(14);
    let mut rows = Vec::new();
    rows.push(
        drill(
            &stack,
            &writers,
            "baseline",
            || {},
            || {},
            Duration::ZERO,
            Duration::from_secs(6),
        )
        .await,
    );
    rows.push(
        drill(
            &stack,
            &writers,
            "kill-9-nats-1",
            || kill_9("nats-1"),
            || {},
            Duration::from_secs(8),
            total,
        )
        .await,
    );
    rows.push(
        drill(
            &stack,
            &writers,
            "stop-nats-2-and-3",
            || {
                docker(&[
                    "stop",
                    "-t",
                    "0",
                    &container("nats-2"),
                    &container("nats-3"),
                ]);
            },
            || {
                docker(&["start", &container("nats-2"), &container("nats-3")]);
            },
            Duration::from_secs(5),
            Duration::from_secs(20),
        )
        .await,
    );
    rows.push(
        drill(
            &stack,
            &writers,
            "kill-9-write-api-1",
            || kill_9("write-api-1"),
            || {},
            Duration::from_secs(8),
            total,
        )
        .await,
    );
    rows.push(
        drill(
            &stack,
            &writers,
            "kill-9-projector",
            || kill_9("projector"),
            || {},
            Duration::from_secs(8),
            total,
        )
        .await,
    );

    rows.push(
        drill(
            &stack,
            &writers,
            "restart-postgres",
            || {
                docker(&["restart", "-t", "0", &container("postgres")]);
            },
            || {},
            Duration::from_secs(8),
            total,
        )
        .await,
    );

    println!();
    println!(
        "| drill | acknowledged | lost | duplicated | statuses seen | writes failing for | slowest write | recovered |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
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
    for r in &rows {
        assert_eq!(r.lost, 0, "{}: acknowledged writes lost", r.drill);
        assert_eq!(r.duplicated, 0, "{}: duplicated", r.drill);
        assert!(r.recovered, "{}: writes did not recover", r.drill);
    }
}
