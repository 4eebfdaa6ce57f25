//! Mirroring between two `homeserver all` processes (own databases, streams, blobs):
//! `kill -9` of the mirror B in the middle of the copy, and an outage of the primary A
//! while B follows it (B retries with back-off and catches up once A is back).

use crate::common;
use crate::mirror::{PASSWORD, json, wait_status};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// `homeserver all` with an admin listener; its plain HTTP and admin URLs.
async fn spawn_all(env: &testkit::TestEnv, data: &Path) -> (Child, String, String) {
    spawn_all_at(env, data, None).await
}

/// [`spawn_all`] with the plain HTTP listener at `listen` when given.
async fn spawn_all_at(
    env: &testkit::TestEnv,
    data: &Path,
    listen: Option<&str>,
) -> (Child, String, String) {
    let listen = listen.map(|l| ("HOMESERVER_HTTP_LISTEN", l));
    spawn_all_with(env, data, listen.as_slice()).await
}

/// [`spawn_all`] with more environment variables.
pub(crate) async fn spawn_all_with(
    env: &testkit::TestEnv,
    data: &Path,
    vars: &[(&str, &str)],
) -> (Child, String, String) {
    let mut command = crate::common::split::homeserver_command(env, data);
    command.envs(vars.iter().copied());
    let mut child: Child = command
        .arg("all")
        .env("HOMESERVER_ADMIN_LISTEN", "127.0.0.1:0")
        .env("HOMESERVER_ADMIN_PASSWORD", PASSWORD)
        .env("HOMESERVER_MIRROR_ANTI_ENTROPY_SECS", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut admin) = (None, None);
    while http.is_none() || admin.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("homeserver all starts")
            .unwrap()
            .expect("homeserver all prints its listeners");
        if let Some(url) = line.trim().strip_prefix("plain HTTP: ") {
            http = Some(url.to_owned());
        }
        if let Some(url) = line.trim().strip_prefix("admin API:  ") {
            admin = Some(url.to_owned());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, http.unwrap(), admin.unwrap())
}

#[tokio::test]
async fn kill_9_of_b_in_the_middle_of_the_copy_resumes_and_ends_equal() {
    let (env_a, env_b) = (testkit::TestEnv::new().await, testkit::TestEnv::new().await);
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let (_a, url_a, _) = spawn_all(&env_a, &data_a).await;
    let (mut b, url_b, admin_b) = spawn_all(&env_b, &data_b).await;
    let (user, token) = common::user_via_log(&env_a).await;
    let z32 = user.public_key().to_z32();
    let http = reqwest::Client::new();

    // 600 files of 4 KiB on A.
    const FILES: usize = 600;
    let puts = futures::stream::iter(0..FILES).map(|n| {
        let (http, url_a, z32, token) = (
            http.clone(),
            url_a.clone(),
            z32.clone(),
            token.as_str().to_owned(),
        );
        async move {
            let body = format!("{n:04}").repeat(1024);
            let r = http
                .put(format!("{url_a}/storage/{z32}/pub/bulk/{n:04}.txt"))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    });
    puts.buffer_unordered(8).collect::<Vec<()>>().await;

    let add = http
        .post(format!("{admin_b}/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({ "user": z32, "source": url_a }))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::CREATED);
    // kill -9 once part of the copy is there.
    let partial = wait_status(&url_b, &z32, |s| s["entries"].as_u64().unwrap_or(0) >= 50).await;
    b.start_kill().unwrap();
    b.wait().await.unwrap();
    let copied = partial["entries"].as_u64().unwrap();
    assert!(
        copied < FILES as u64,
        "killed in the middle: {copied} of {FILES}"
    );

    let (_b, url_b, _) = spawn_all(&env_b, &data_b).await;
    let status = wait_status(&url_b, &z32, |s| {
        s["entries"] == FILES && s["state"] == "following"
    })
    .await;
    let on_a = json(&http, &format!("{url_a}/merkle/{z32}/root")).await;
    assert_eq!(status["local_roots"]["pub"], on_a["root"]);
    assert_eq!(status["source_roots"]["pub"], on_a["root"]);

    // Resumed, not started over: every file was appended once on B.
    let mut puts = 0;
    let mut cursor = 0u64;
    loop {
        let page = http
            .get(format!("{url_b}/events/?limit=1000&cursor={cursor}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lines: Vec<&str> = page.lines().collect();
        puts += lines.iter().filter(|l| l.starts_with("PUT ")).count();
        match lines.last().and_then(|l| l.strip_prefix("cursor: ")) {
            Some(next) if lines.len() > 1 => cursor = next.parse().unwrap(),
            _ => break,
        }
    }
    assert_eq!(
        puts, FILES,
        "each file appended exactly once across the kill"
    );
    let sample = http
        .get(format!("{url_b}/storage/{z32}/pub/bulk/0599.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(sample.text().await.unwrap(), "0599".repeat(1024));
}

#[tokio::test]
async fn an_outage_of_the_primary_is_retried_and_followed_once_it_is_back() {
    let (env_a, env_b) = (testkit::TestEnv::new().await, testkit::TestEnv::new().await);
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    // A on a fixed port, so that it comes back where B looks for it.
    let listen = format!("127.0.0.1:{}", testkit::free_port());
    let (mut a, url_a, _) = spawn_all_at(&env_a, &data_a, Some(&listen)).await;
    let (_b, url_b, admin_b) = spawn_all(&env_b, &data_b).await;
    let (user, token) = common::user_via_log(&env_a).await;
    let z32 = user.public_key().to_z32();
    let http = reqwest::Client::new();
    let put = |n: usize| {
        let (http, url_a, z32, token) = (
            http.clone(),
            url_a.clone(),
            z32.clone(),
            token.as_str().to_owned(),
        );
        async move {
            let r = http
                .put(format!("{url_a}/storage/{z32}/pub/f/{n}.txt"))
                .bearer_auth(token)
                .body(format!("file {n}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    };
    for n in 0..5 {
        put(n).await;
    }
    let add = http
        .post(format!("{admin_b}/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({ "user": z32, "source": url_a }))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::CREATED);
    wait_status(&url_b, &z32, |s| {
        s["entries"] == 5 && s["state"] == "following"
    })
    .await;

    // A goes away: B says so and keeps retrying.
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    // (The lag is asked of A at most every 2 s: null once A could not be asked.)
    let down = wait_status(&url_b, &z32, |s| {
        s["state"] == "retrying" && s["lag_events"].is_null()
    })
    .await;
    assert!(down["last_error"].as_str().is_some(), "{down:#}");

    // A is back (same database, log and port) and written to: B follows again.
    let (_a, url_a, _) = spawn_all_at(&env_a, &data_a, Some(&listen)).await;
    put(5).await;
    let status = wait_status(&url_b, &z32, |s| {
        s["entries"] == 6 && s["state"] == "following" && s["lag_events"] == 0
    })
    .await;
    let on_a: Value = json(&http, &format!("{url_a}/merkle/{z32}/root")).await;
    assert_eq!(status["local_roots"]["pub"], on_a["root"]);
    assert!(status["last_error"].is_null());
}

/// The mirror's lag under load (ignored by default; run it with
/// `cargo test -p homeserver --test it -- --ignored --nocapture mirror_lag_bench`,
/// `MIRROR_BENCH_SECS` of writes, default 30): two `homeserver all` processes, an app
/// writing 100 small files a second to A, and a reader of B's live event stream; the
/// lag of a write is the time from A's 201 to the write's line on B's stream.
#[tokio::test]
#[ignore = "a benchmark: run explicitly"]
async fn mirror_lag_bench() {
    let secs: u64 = std::env::var("MIRROR_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let (env_a, env_b) = (testkit::TestEnv::new().await, testkit::TestEnv::new().await);
    let dir = tempfile::tempdir().unwrap();
    let (_a, url_a, _) = spawn_all(&env_a, &dir.path().join("a")).await;
    let (_b, url_b, admin_b) = spawn_all(&env_b, &dir.path().join("b")).await;
    let (user, token) = common::user_via_log(&env_a).await;
    let z32 = user.public_key().to_z32();
    let http = reqwest::Client::new();
    let add = http
        .post(format!("{admin_b}/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({ "user": z32, "source": url_a }))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::CREATED);
    wait_status(&url_b, &z32, |s| s["state"] == "following").await;

    // B's live stream: when each path arrived.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    // MIRROR_BENCH_STREAM=a reads A's own stream instead: the part of the lag that is
    // A's event delivery.
    let watched = match std::env::var("MIRROR_BENCH_STREAM").as_deref() {
        Ok("a") => url_a.clone(),
        _ => url_b.clone(),
    };
    let stream = http
        .get(format!("{watched}/events-stream?user={z32}&live=true"))
        .send()
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut body = stream.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                if let Some(url) = line.trim().strip_prefix("data: pubky://") {
                    let _ = seen_tx.send((url.to_owned(), std::time::Instant::now()));
                }
            }
        }
    });

    // The app: 100 writes a second to A, each one's 201 time recorded.
    let mut acked = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..secs * 100 {
        tick.tick().await;
        let (http, url_a, z32, token) = (
            http.clone(),
            url_a.clone(),
            z32.clone(),
            token.as_str().to_owned(),
        );
        writes.spawn(async move {
            let path = format!("/pub/bench/{n:06}.json");
            let r = http
                .put(format!("{url_a}/storage/{z32}{path}"))
                .bearer_auth(token)
                .body(format!("{{\"n\":{n}}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            (format!("{z32}{path}"), std::time::Instant::now())
        });
    }
    while let Some(done) = writes.join_next().await {
        let (path, at) = done.unwrap();
        acked.insert(path, at);
    }
    let mut lags = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while lags.len() < acked.len() && std::time::Instant::now() < deadline {
        let Ok(Some((path, at))) =
            tokio::time::timeout(Duration::from_secs(10), seen_rx.recv()).await
        else {
            break;
        };
        if let Some(acked_at) = acked.get(&path) {
            lags.push(at.saturating_duration_since(*acked_at));
        }
    }
    assert_eq!(lags.len(), acked.len(), "every write reached B");
    lags.sort();
    let p = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    println!(
        "{} writes at 100/s: mirror lag p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        p(0.5),
        p(0.99),
        lags[lags.len() - 1]
    );
    let status = json(&http, &format!("{url_b}/mirror/{z32}")).await;
    let on_a = json(&http, &format!("{url_a}/merkle/{z32}/root")).await;
    assert_eq!(status["local_roots"]["pub"], on_a["root"]);
}
