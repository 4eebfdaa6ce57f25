//! `homeserver move` between two `homeserver all` processes (own databases, streams and
//! blobs) on a local Mainline DHT, checked with the published SDK (docs/move.md): a
//! user of a few hundred files moves from A to B while an app keeps writing; and the
//! command killed with `kill -9` in the middle of the copy resumes when run again.

use crate::common::sdk::{Dht, client_id, sdk_key};
use crate::common::{self};
use crate::mirror_process::spawn_all_with;
use futures::StreamExt;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::process::Child;

/// A `homeserver all` on `dht`, open signups; its process, plain HTTP URL and key.
async fn spawn_on(
    dht: &Dht,
    env: &testkit::TestEnv,
    data: &Path,
) -> (Child, String, domain::PublicKey) {
    spawn_at(dht, env, data, "127.0.0.1:0").await
}

/// [`spawn_on`] with the plain HTTP listener at `listen` (a restart keeps the URL).
async fn spawn_at(
    dht: &Dht,
    env: &testkit::TestEnv,
    data: &Path,
    listen: &str,
) -> (Child, String, domain::PublicKey) {
    let bootstrap = dht.bootstrap().join(",");
    let vars = [
        ("PUBKY_DHT_BOOTSTRAP", bootstrap.as_str()),
        ("HOMESERVER_DHT_REQUEST_TIMEOUT_MS", "200"),
        ("HOMESERVER_SIGNUP_MODE", "open"),
        ("HOMESERVER_HTTP_LISTEN", listen),
    ];
    let (child, url, _) = spawn_all_with(env, data, &vars).await;
    let key = std::fs::read_to_string(data.join("public_key")).expect("public_key file");
    let key = domain::PublicKey::try_from(key.trim()).expect("a key");
    (child, url, key)
}

/// `homeserver move` for the user whose secret key is in `secret`.
fn move_command(dht: &Dht, secret: &Path, from: &str, to: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"));
    command
        .args([
            "move",
            "--from",
            from,
            "--to",
            to,
            "--step-timeout-secs",
            "900",
        ])
        .arg("--secret-key")
        .arg(secret)
        .env("PUBKY_DHT_BOOTSTRAP", dht.bootstrap().join(","))
        .env("HOMESERVER_DHT_REQUEST_TIMEOUT_MS", "200")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The user's files at `base` as `path -> bytes`, read over HTTP (`token` for `/priv/`).
async fn files_at(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    token: &str,
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for tree in ["/pub/", "/priv/"] {
        let mut cursor = String::new();
        loop {
            let url = format!("{base}/storage/{user}{tree}?shallow=false&limit=500{cursor}");
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            if r.status() == StatusCode::NOT_FOUND {
                break;
            }
            assert_eq!(r.status(), StatusCode::OK);
            let listing = r.text().await.unwrap();
            let urls: Vec<String> = listing.lines().map(str::to_owned).collect();
            for url in &urls {
                let path = url.split_once(&format!("{user}/")).unwrap().1;
                let body = http
                    .get(format!("{base}/storage/{user}/{path}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                out.insert(format!("/{path}"), body.to_vec());
            }
            match urls.last() {
                Some(last) if urls.len() == 500 => cursor = format!("&cursor={last}"),
                _ => break,
            }
        }
    }
    out
}

/// A user on A with `files` files (a fifth private, every 50th 256 KiB, the first
/// `big` 10 MiB), whose PKARR record names A; their secret key written to a file.
async fn user_with_files(
    dht: &Dht,
    env_a: &testkit::TestEnv,
    url_a: &str,
    key_a: &domain::PublicKey,
    (files, big): (usize, usize),
    dir: &Path,
) -> (domain::Keypair, String, std::path::PathBuf) {
    let (user, token) = common::user_via_log(env_a).await;
    let token = token.as_str().to_owned();
    let z32 = user.public_key().to_z32();
    let mut dht_config =
        pkarr_publish::DhtConfig::local(&dht.bootstrap(), Duration::from_millis(200));
    dht_config.bind = Some(std::net::Ipv4Addr::LOCALHOST);
    let publisher = pkarr_publish::Publisher::new(&dht_config).unwrap();
    publisher
        .publish_user_homeserver(&user, key_a)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    futures::stream::iter(0..files)
        .map(|n| {
            let (http, token) = (http.clone(), token.clone());
            let tree = if n % 5 == 0 { "priv" } else { "pub" };
            let url = format!("{url_a}/storage/{z32}/{tree}/bulk/{n:06}.bin");
            let body = if n < big {
                (0..10 * 1024 * 1024)
                    .map(|b| ((b * 7 + n) % 251) as u8)
                    .collect()
            } else if n % 50 == 0 {
                vec![n as u8; 256 * 1024]
            } else {
                format!("file {n}").repeat(n % 7 + 1).into_bytes()
            };
            async move {
                let r = http
                    .put(url)
                    .bearer_auth(token)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let secret = dir.join("secret");
    std::fs::write(&secret, hex::encode(user.secret_key())).unwrap();
    (user, token, secret)
}

/// The lines of the whole public feed at `base`.
async fn feed_lines(http: &reqwest::Client, base: &str) -> Vec<String> {
    let (mut lines, mut cursor) = (Vec::new(), 0u64);
    loop {
        let page = http
            .get(format!("{base}/events/?limit=1000&cursor={cursor}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let page: Vec<String> = page.lines().map(str::to_owned).collect();
        match page.last().and_then(|l| l.strip_prefix("cursor: ")) {
            Some(next) if page.len() > 1 => cursor = next.parse().unwrap(),
            _ => return lines,
        }
        lines.extend(page[..page.len() - 1].iter().cloned());
    }
}

#[tokio::test]
async fn a_user_moves_from_a_to_b_while_an_app_writes_and_the_sdk_follows() {
    move_while_an_app_writes(300, 0).await;
}

/// The acceptance scenario at scale, measured (README, "Moving a user"):
/// `MOVE_BENCH_FILES=10000 cargo test -p homeserver --test it -- --ignored --nocapture
/// move_bench` (three of the files 10 MiB).
#[tokio::test]
#[ignore = "a benchmark: run explicitly"]
async fn move_bench() {
    let files = std::env::var("MOVE_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    move_while_an_app_writes(files, 3).await;
}

/// A user of `files` files (`big` of them 10 MiB) moves from A to B while an app writes
/// (see the module docs); every check a user would make afterwards.
async fn move_while_an_app_writes(files: usize, big: usize) {
    let dht = Dht::start().await;
    let (env_a, env_b) = (testkit::TestEnv::new().await, testkit::TestEnv::new().await);
    let dir = tempfile::tempdir().unwrap();
    let (a, url_a, key_a) = spawn_on(&dht, &env_a, &dir.path().join("a")).await;
    let (b, url_b, key_b) = spawn_on(&dht, &env_b, &dir.path().join("b")).await;
    let pids = (a.id().unwrap(), b.id().unwrap());
    let idle = (
        crate::exit_bench::rss(pids.0).0,
        crate::exit_bench::rss(pids.1).0,
    );
    let started = Instant::now();
    let (user, token_a, secret) =
        user_with_files(&dht, &env_a, &url_a, &key_a, (files, big), dir.path()).await;
    eprintln!(
        "{files} files written to A in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let z32 = user.public_key().to_z32();
    let pubky = dht.sdk();
    let resolved = pubky.get_homeserver_of(&sdk_key(&user.public_key())).await;
    assert_eq!(
        resolved.unwrap(),
        Some(sdk_key(&key_a)),
        "the user starts on A"
    );

    let stale_session = pubky
        .signer(pubky::Keypair::from_secret(&user.secret_key()))
        .signin(client_id("move.test.stale"))
        .await
        .expect("SDK signin at A");

    // The app: writes one file after another to A while it takes them; once A answers
    // 410 naming B, the same write again on B (signing in through the SDK, which
    // resolves the user anew) until B takes it, then a few more on B.
    let app = {
        let (dht_sdk, user, url_a, z32, token_a, key_b) = (
            dht.sdk(),
            user.clone(),
            url_a.clone(),
            z32.clone(),
            token_a.clone(),
            key_b.clone(),
        );
        let bootstrap = dht.bootstrap();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut on_a = Vec::new();
            let mut n = 0usize;
            let refused = loop {
                let path = format!("/pub/app/live/{n:05}.txt");
                let r = http
                    .put(format!("{url_a}/storage/{z32}{path}"))
                    .bearer_auth(&token_a)
                    .body(format!("write {n}"))
                    .send()
                    .await
                    .unwrap();
                match r.status() {
                    StatusCode::CREATED => on_a.push(path),
                    StatusCode::GONE => {
                        assert_eq!(r.headers()["pubky-moved-to"], key_b.to_z32().as_str());
                        break path;
                    }
                    other => panic!("A answered {other} to a write"),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            drop(dht_sdk);
            // The retry on B, through the SDK (a fresh one: no cached record).
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut on_b = Vec::new();
            let mut pending: Vec<(String, String)> = vec![(refused, format!("write {n}"))];
            for m in 1..=3 {
                pending.push((
                    format!("/pub/app/live/{:05}.txt", n + m),
                    format!("write {}", n + m),
                ));
            }
            while !pending.is_empty() {
                assert!(Instant::now() < deadline, "B never took the app's writes");
                let sdk = crate::common::sdk::sdk_on(&bootstrap);
                let signer = sdk.signer(pubky::Keypair::from_secret(&user.secret_key()));
                let Ok(session) = signer.signin(client_id("move.test.app")).await else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                while let Some((path, body)) = pending.first().cloned() {
                    match session.storage().put(path.as_str(), body).await {
                        Ok(_) => {
                            on_b.push(pending.remove(0));
                        }
                        Err(_) => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            (on_a, on_b)
        })
    };

    // The move, while the app writes; each step's time, each process's peak RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut command = move_command(&dht, &secret, &url_a, &url_b).spawn().unwrap();
    let peak_of_command = crate::exit_bench::peak_rss(command.id().unwrap());
    let mut steps = tokio::io::BufReader::new(command.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    while let Ok(Some(line)) = steps.next_line().await {
        if line.starts_with("done: ") {
            eprintln!("{line} after {:.1} s", started.elapsed().as_secs_f64());
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let output = command.wait_with_output().await.unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "homeserver move: {stdout}\n{stderr}"
    );
    let (a_now, b_now) = (
        crate::exit_bench::rss(pids.0),
        crate::exit_bench::rss(pids.1),
    );
    eprintln!(
        "move: {:.1} s; peak RSS: the command {:.0} MiB, A {:.0} MiB (idle {:.0}), B {:.0} MiB (idle {:.0})",
        took.as_secs_f64(),
        peak_of_command.await.unwrap(),
        a_now.1,
        idle.0,
        b_now.1,
        idle.1
    );
    assert!(stdout.contains("moved "), "{stdout}");
    let (on_a, on_b) = app.await.unwrap();
    assert!(!on_a.is_empty(), "the app wrote to A during the move");

    // The SDK resolves the user to B.
    let pubky_after = dht.sdk();
    let user_key = sdk_key(&user.public_key());
    let resolved = pubky_after.get_homeserver_of(&user_key).await;
    assert_eq!(resolved.unwrap(), Some(sdk_key(&key_b)));
    // A client that resolved the user before the move (a stale PKARR cache) and
    // writes through its session at A: the moved status naming B, never a 2xx.
    let stale = stale_session
        .storage()
        .put("/pub/app/stale.txt", "stale")
        .await;
    let refused = stale.expect_err("a write to A after the move").to_string();
    assert!(
        refused.contains("410") && refused.contains(&key_b.to_z32()),
        "{refused}"
    );
    drop(pubky);

    // Every file A had, and every write A acknowledged, is on B with the same bytes;
    // B also has the app's retried writes, and nothing else.
    let http = reqwest::Client::new();
    let before = files_at(&http, &url_a, &z32, &token_a).await;
    assert_eq!(before.len(), files + on_a.len());
    for path in &on_a {
        assert!(before.contains_key(path), "{path} acknowledged by A");
    }
    let signer = pubky_after.signer(pubky::Keypair::from_secret(&user.secret_key()));
    let session = signer
        .signin_blocking(client_id("move.test.reader"))
        .await
        .expect("SDK signin at B");
    let mut expected = before.clone();
    for (path, body) in &on_b {
        expected.insert(path.clone(), body.clone().into_bytes());
    }
    let mut read = 0;
    for (path, bytes) in &expected {
        let got = if path.starts_with("/pub/") {
            pubky_after
                .public_storage()
                .get(format!("pubky://{z32}{path}"))
                .await
        } else {
            session.storage().get(path.as_str()).await
        };
        let got = got.unwrap_or_else(|e| panic!("SDK GET {path} from B: {e}"));
        assert_eq!(&got.bytes().await.unwrap()[..], &bytes[..], "{path}");
        read += 1;
    }
    assert_eq!(read, expected.len());
    eprintln!(
        "moved {} files; A acknowledged {} writes of the app during the move, B took {} after it\n{stdout}",
        expected.len(),
        on_a.len(),
        on_b.len()
    );

    // B's feed: every path put once, one MOVED line, after the copy.
    let lines = feed_lines(&http, &url_b).await;
    let mut seen = std::collections::HashSet::new();
    for line in lines.iter().filter(|l| l.contains(&z32)) {
        assert!(seen.insert(line.clone()), "duplicate on B's feed: {line}");
    }
    let moved = format!("MOVED pubky://{z32}/pub/ {}", key_b.to_z32());
    assert!(seen.contains(&moved), "{lines:?}");
    let lines_a = feed_lines(&http, &url_a).await;
    assert_eq!(lines_a.iter().filter(|l| **l == moved).count(), 1);
}

/// A bearer session with every capability for `user`, who has an account on `env`'s
/// homeserver, appended to its log (as signing in there).
async fn session_via_log(env: &testkit::TestEnv, user: &domain::Keypair) -> String {
    let store = store::Store::connect(&env.database_url, 2).await.unwrap();
    let log = log::EventLog::connect(env.log.clone()).await.unwrap();
    let row = store
        .user(&user.public_key())
        .await
        .unwrap()
        .expect("an account");
    let token = domain::secret::BearerToken::from_random(rand::random());
    let seq = log
        .append(
            &common::session_event(user, &["/:rw"], &token),
            log::Expected::LastSeq(row.acct_seq),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.checkpoint("main").await.unwrap() < seq {
        assert!(Instant::now() < deadline, "the projector catches up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.as_str().to_owned()
}

/// What is killed with `kill -9` in the middle of the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The command: run again, it resumes from its state file.
    Command,
    /// A or B: restarted on the same port and data; the command waits and goes on.
    A,
    B,
}

/// `kill -9` of `victim` once the command has asked B to mirror, then the move goes on
/// (run again, or the server restarted) and ends equal, each file copied once.
async fn kill_9_in_the_middle_of_the_copy(victim: Victim) {
    const FILES: usize = 800;
    let dht = Dht::start().await;
    let (env_a, env_b) = (testkit::TestEnv::new().await, testkit::TestEnv::new().await);
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let listen = || format!("127.0.0.1:{}", testkit::free_port());
    let (listen_a, listen_b) = (listen(), listen());
    let (mut a, url_a, key_a) = spawn_at(&dht, &env_a, &data_a, &listen_a).await;
    let (mut b, url_b, key_b) = spawn_at(&dht, &env_b, &data_b, &listen_b).await;
    let (user, token_a, secret) =
        user_with_files(&dht, &env_a, &url_a, &key_a, (FILES, 0), dir.path()).await;
    let z32 = user.public_key().to_z32();
    let state_file = dir.path().join("secret.move.json");

    let mut first = move_command(&dht, &secret, &url_a, &url_b).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = std::fs::read_to_string(&state_file).unwrap_or_default();
        if state.contains("\"mirroring\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the command never asked B to mirror"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and B has part of the files.
    let http = reqwest::Client::new();
    let copied = loop {
        let status = http.get(format!("{url_b}/mirror/{z32}")).send().await;
        let entries = match status {
            Ok(r) if r.status() == StatusCode::OK => {
                r.json::<serde_json::Value>().await.unwrap()["entries"].as_u64()
            }
            _ => None,
        };
        if let Some(entries) = entries.filter(|e| *e >= 20) {
            break entries;
        }
        assert!(Instant::now() < deadline, "B never started copying");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        copied < FILES as u64,
        "killed in the middle: {copied} of {FILES}"
    );
    let victim_process = match victim {
        Victim::Command => &mut first,
        Victim::A => &mut a,
        Victim::B => &mut b,
    };
    victim_process.start_kill().unwrap();
    victim_process.wait().await.unwrap();
    eprintln!("{victim:?} killed with {copied} of {FILES} files on B");

    let output = match victim {
        Victim::Command => {
            let state = std::fs::read_to_string(&state_file).unwrap();
            assert!(
                !state.contains("\"sealed\""),
                "killed before the seal: {state}"
            );
            move_command(&dht, &secret, &url_a, &url_b)
                .output()
                .await
                .unwrap()
        }
        Victim::A | Victim::B => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if victim == Victim::A {
                a = spawn_at(&dht, &env_a, &data_a, &listen_a).await.0;
            } else {
                b = spawn_at(&dht, &env_b, &data_b, &listen_b).await.0;
            }
            first.wait_with_output().await.unwrap()
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    if victim == Victim::Command {
        for step in ["joined", "room", "mirroring"] {
            assert!(
                !stderr.contains(&format!("done: {step}\n")),
                "{step} again: {stderr}"
            );
        }
    }
    for step in ["copied", "sealed", "promoted", "published", "revoked"] {
        assert!(
            stderr.contains(&format!("done: {step}")),
            "{step}: {stderr}"
        );
    }
    let resolved = dht
        .sdk()
        .get_homeserver_of(&sdk_key(&user.public_key()))
        .await;
    assert_eq!(resolved.unwrap(), Some(sdk_key(&key_b)));

    // Equal: every file with its bytes, and each public one put once on B's feed.
    let token_b = session_via_log(&env_b, &user).await;
    let on_a = files_at(&http, &url_a, &z32, &token_a).await;
    let on_b = files_at(&http, &url_b, &z32, &token_b).await;
    assert_eq!(on_a.len(), FILES);
    assert!(on_a == on_b, "B's files differ from A's");
    let lines = feed_lines(&http, &url_b).await;
    let puts = lines
        .iter()
        .filter(|l| l.starts_with(&format!("PUT pubky://{z32}/")))
        .count();
    let public = on_a.keys().filter(|p| p.starts_with("/pub/")).count();
    assert_eq!(puts, public, "each file copied once across the kill");
    drop((a, b));
}

#[tokio::test]
async fn kill_9_of_the_move_command_in_the_middle_of_the_copy_then_run_again_resumes() {
    kill_9_in_the_middle_of_the_copy(Victim::Command).await;
}

#[tokio::test]
async fn kill_9_of_a_in_the_middle_of_the_copy_the_move_goes_on_once_a_is_back() {
    kill_9_in_the_middle_of_the_copy(Victim::A).await;
}

#[tokio::test]
async fn kill_9_of_b_in_the_middle_of_the_copy_the_move_goes_on_once_b_is_back() {
    kill_9_in_the_middle_of_the_copy(Victim::B).await;
}

#[tokio::test]
async fn a_user_moves_twice_a_to_b_to_c_and_each_feed_says_so_once() {
    let dht = Dht::start().await;
    let envs = [
        testkit::TestEnv::new().await,
        testkit::TestEnv::new().await,
        testkit::TestEnv::new().await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for (env, name) in envs.iter().zip(["a", "b", "c"]) {
        servers.push(spawn_on(&dht, env, &dir.path().join(name)).await);
    }
    let [(_, url_a, key_a), (_, url_b, key_b), (_, url_c, key_c)] = &servers[..] else {
        unreachable!()
    };
    let (user, token_a, secret) =
        user_with_files(&dht, &envs[0], url_a, key_a, (120, 0), dir.path()).await;
    let z32 = user.public_key().to_z32();

    for (from, to, state) in [(url_a, url_b, "ab.json"), (url_b, url_c, "bc.json")] {
        let output = move_command(&dht, &secret, from, to)
            .arg("--state-file")
            .arg(dir.path().join(state))
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "move from {from} to {to}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let resolved = dht
        .sdk()
        .get_homeserver_of(&sdk_key(&user.public_key()))
        .await;
    assert_eq!(resolved.unwrap(), Some(sdk_key(key_c)));

    // C holds A's files; B refuses writes naming C, as A does naming B.
    let http = reqwest::Client::new();
    let token_c = session_via_log(&envs[2], &user).await;
    let on_a = files_at(&http, url_a, &z32, &token_a).await;
    assert_eq!(on_a.len(), 120);
    assert!(on_a == files_at(&http, url_c, &z32, &token_c).await);
    let token_b = session_via_log(&envs[1], &user).await;
    for (url, token, to) in [(url_a, &token_a, key_b), (url_b, &token_b, key_c)] {
        let r = http
            .put(format!("{url}/storage/{z32}/pub/late.txt"))
            .bearer_auth(token)
            .body("late")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::GONE);
        assert_eq!(r.headers()["pubky-moved-to"], to.to_z32().as_str());
    }
    let r = http
        .put(format!("{url_c}/storage/{z32}/pub/late.txt"))
        .bearer_auth(&token_c)
        .body("late")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // The MOVED lines: A's names B; B's arrival names B, its departure C; C's names C.
    let moved = |to: &domain::PublicKey| format!("MOVED pubky://{z32}/pub/ {}", to.to_z32());
    for (url, expected) in [
        (url_a, vec![moved(key_b)]),
        (url_b, vec![moved(key_b), moved(key_c)]),
        (url_c, vec![moved(key_c)]),
    ] {
        let lines = feed_lines(&http, url).await;
        let found: Vec<&String> = lines.iter().filter(|l| l.starts_with("MOVED ")).collect();
        assert_eq!(found, expected.iter().collect::<Vec<_>>(), "{url}");
    }
}
