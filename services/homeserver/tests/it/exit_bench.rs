//! Credible exit between two `homeserver all` processes, each with its own database,
//! stream, blobs and port.
//!
//! - `ten_thousand_files_leave_one_homeserver_for_another` (in `make test`): the
//!   acceptance scenario of part 1, the user's own `homeserver pull` from A and the
//!   operator's `homeserver import` into B, every file read back.
//! - `exit_bench` (ignored; `make bench-exit`, entries from `EXIT_BENCH_ENTRIES`,
//!   default 100,000): a user of that many files (a tenth private, five of 10 MiB)
//!   loaded into A by `homeserver import`, exported from A by `homeserver export` and
//!   page by page over `GET /export/`, imported into B; the roots must be equal. Prints
//!   time, MB/s, the slowest page and the peak RSS of every process.
//! - kill -9 of the target homeserver mid-import, then the same command resumes.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn homeserver(env: &testkit::TestEnv, data: &Path) -> Command {
    crate::common::split::homeserver_command(env, data)
}

/// `homeserver all`, and its plain HTTP URL.
async fn spawn_all(env: &testkit::TestEnv, data: &Path) -> (Child, String) {
    let mut child = homeserver(env, data)
        .arg("all")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("homeserver all starts")
            .unwrap()
            .expect("homeserver all prints its listeners");
        if let Some(url) = line.trim().strip_prefix("plain HTTP: ") {
            // Keep reading: a closed pipe would fail the server's later prints.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, url.to_owned());
        }
    }
}

/// `(VmRSS, VmHWM)` of a process in MiB.
pub(crate) fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The peak RSS (MiB) of process `pid`, sampled until it ends.
pub(crate) fn peak_rss(pid: u32) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        loop {
            let (now, hwm) = rss(pid);
            if now == 0.0 && hwm == 0.0 {
                return peak;
            }
            peak = peak.max(hwm).max(now);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Runs a CLI to completion; its time, peak RSS (MiB) and stdout.
async fn measured(mut command: Command) -> (Duration, f64, String) {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sampler = peak_rss(child.id().unwrap());
    let output = child.wait_with_output().await.unwrap();
    let elapsed = started.elapsed();
    let peak = sampler.await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        elapsed,
        peak,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The content of the benchmark's file `i`: the first five 10 MiB, the rest small JSON.
fn bench_content(i: usize) -> Vec<u8> {
    if i < 5 {
        (0..10 * 1024 * 1024)
            .map(|b| ((b * 7 + i) % 251) as u8)
            .collect()
    } else {
        format!("{{\"post\":{i},\"text\":\"an entry of the exit benchmark\"}}").into_bytes()
    }
}

/// The path of the benchmark's file `i`: every tenth private.
fn bench_path(i: usize) -> String {
    if i % 10 == 9 {
        format!("/priv/bench/{i:07}.json")
    } else {
        format!("/pub/bench/{i:07}.json")
    }
}

/// An archive of `n` files of `user` ([`bench_path`], [`bench_content`]), signed by a
/// key of its own; returns its content bytes.
fn write_archive(user: &str, n: usize, path: &Path) -> u64 {
    use domain::archive::{self, EndRecord, EntryRecord, TreeRecord};
    use domain::merkle::{self, MemStore, Node};
    use std::io::Write;
    let signer = domain::Keypair::random();
    let (content, path_of) = (bench_content, bench_path);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "{}", archive::MAGIC).unwrap();
    let mut total = 0;
    for private in [false, true] {
        let mut items: Vec<(String, usize)> = (0..n)
            .map(|i| (path_of(i), i))
            .filter(|(p, _)| p.starts_with("/priv/") == private)
            .collect();
        items.sort();
        let values: Vec<(String, [u8; 32])> = items
            .iter()
            .map(|(p, i)| (p.clone(), *blake3::hash(&content(*i)).as_bytes()))
            .collect();
        let mut nodes = MemStore::default();
        let root = merkle::build(&values, &mut nodes);
        let statement = merkle::root_statement(user, private, root, 1, 1);
        let record = TreeRecord {
            kind: "tree".into(),
            user: user.into(),
            tree: if private { "priv" } else { "pub" }.into(),
            root: merkle::root_hex(root),
            seq: 1,
            signature: Some(hex::encode(signer.sign(statement.as_bytes()).to_bytes())),
            statement,
            signer: signer.public_key().to_z32(),
            nodes: nodes.nodes.len() as u64,
            cursor: None,
        };
        out.write_all(&archive::record_line(&record)).unwrap();
        for node in nodes.nodes.values() {
            out.write_all(&archive::node_frame(&Node::encode(node)))
                .unwrap();
        }
        for ((path, i), (_, hash)) in items.iter().zip(&values) {
            let bytes = content(*i);
            total += bytes.len() as u64;
            let record = EntryRecord::new(path, hash, bytes.len() as u64, "application/json");
            out.write_all(&archive::record_line(&record)).unwrap();
            out.write_all(&bytes).unwrap();
            out.write_all(b"\n").unwrap();
        }
        out.write_all(&archive::record_line(&EndRecord::new(
            items.len() as u64,
            None,
        )))
        .unwrap();
    }
    out.flush().unwrap();
    total
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

#[tokio::test]
#[ignore = "a benchmark: minutes, run explicitly"]
async fn exit_bench() {
    let entries: usize = std::env::var("EXIT_BENCH_ENTRIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let (env_a, env_b) = (testkit::TestEnv::new().await, testkit::TestEnv::new().await);
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let (mut a, url_a) = spawn_all(&env_a, &data_a).await;
    let (mut b, url_b) = spawn_all(&env_b, &data_b).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (pid_a, pid_b) = (a.id().unwrap(), b.id().unwrap());
    let (idle_a, idle_b) = (rss(pid_a).0, rss(pid_b).0);

    let user = domain::Keypair::random().public_key().to_z32();
    let seed = dir.path().join("seed.archive");
    let bytes = write_archive(&user, entries, &seed);
    println!("{entries} entries, {:.1} MB of content", bytes as f64 / 1e6);

    // Load A (the same command as the import into B; its first figure).
    let mut load = homeserver(&env_a, &data_a);
    load.arg("import").arg(&seed);
    let (load_time, load_rss, _) = measured(load).await;

    // The operator's export from A.
    let exported = dir.path().join("a.archive");
    let mut export = homeserver(&env_a, &data_a);
    export.arg("export").arg(&user).arg("--out").arg(&exported);
    let (export_time, export_rss, _) = measured(export).await;

    // The public tree over HTTP, page by page (1,000 entries or 64 MiB each).
    let http = reqwest::Client::new();
    let (mut cursor, mut root) = (None::<String>, String::new());
    let (mut pages, mut slowest, mut http_bytes) = (0, Duration::ZERO, 0u64);
    let started = Instant::now();
    loop {
        let mut url = format!("{url_a}/export/{user}?tree=pub");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}&root={root}"));
        }
        let t = Instant::now();
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let next = response
            .headers()
            .get("pubky-export-next")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap();
        slowest = slowest.max(t.elapsed());
        http_bytes += body.len() as u64;
        pages += 1;
        if root.is_empty() {
            let line = body.split(|b| *b == b'\n').nth(1).unwrap();
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            root = record["root"].as_str().unwrap().to_owned();
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let http_time = started.elapsed();

    // Import into B.
    let mut import = homeserver(&env_b, &data_b);
    import.arg("import").arg(&exported);
    let (import_time, import_rss, report) = measured(import).await;
    println!("{}", report.trim());

    // `homeserver import` checked both roots against the archive's; the public one
    // is also compared over HTTP, A against B.
    let root_of = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            let body: serde_json::Value = r.json().await.unwrap();
            body["root"].as_str().map(str::to_owned)
        }
    };
    assert_eq!(
        root_of(format!("{url_a}/merkle/{user}/root")).await,
        root_of(format!("{url_b}/merkle/{user}/root")).await,
        "public roots equal"
    );

    // Files read back from B as from A, byte for byte: the five large ones and a
    // sample of the rest.
    for i in (0..5)
        .chain((5..entries).step_by(997))
        .filter(|i| i % 10 != 9)
    {
        let path = format!("/pub/bench/{i:07}.json");
        let get = |url: &str| http.get(format!("{url}/storage/{user}{path}")).send();
        let (from_a, from_b) = (get(&url_a).await.unwrap(), get(&url_b).await.unwrap());
        assert_eq!(from_b.status(), reqwest::StatusCode::OK, "{path}");
        assert_eq!(
            from_a.bytes().await.unwrap(),
            from_b.bytes().await.unwrap(),
            "{path}"
        );
    }

    let (_, hwm_a) = rss(pid_a);
    let (_, hwm_b) = rss(pid_b);
    println!("| step | time | MB/s | peak RSS |");
    println!("|---|---|---|---|");
    println!(
        "| load A (`homeserver import`, {entries} entries) | {:.1} s | {:.1} | {load_rss:.0} MiB |",
        load_time.as_secs_f64(),
        mb_per_s(bytes, load_time)
    );
    println!(
        "| `homeserver export` from A | {:.1} s | {:.1} | {export_rss:.0} MiB |",
        export_time.as_secs_f64(),
        mb_per_s(bytes, export_time)
    );
    println!(
        "| `GET /export/` public tree, {pages} pages | {:.1} s (slowest page {:.2} s) | {:.1} | - |",
        http_time.as_secs_f64(),
        slowest.as_secs_f64(),
        mb_per_s(http_bytes, http_time)
    );
    println!(
        "| `homeserver import` into B | {:.1} s | {:.1} | {import_rss:.0} MiB |",
        import_time.as_secs_f64(),
        mb_per_s(bytes, import_time)
    );
    println!(
        "| server A / B (`homeserver all`) | idle {idle_a:.0} / {idle_b:.0} MiB | | peak {hwm_a:.0} / {hwm_b:.0} MiB (+{:.0} / +{:.0}) |",
        hwm_a - idle_a,
        hwm_b - idle_b
    );
    assert!(slowest < Duration::from_secs(60), "no request over 60 s");
    let _ = (a.start_kill(), b.start_kill());
}

/// `kill -9` of B (a `homeserver all` process) in the middle of an import, and of the
/// importer with it; B started again and the same import command run again: it resumes
/// (skips what B already has) and ends with B's roots equal to the archive's.
#[tokio::test]
async fn an_import_survives_kill_9_of_the_target_homeserver() {
    let env = testkit::TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("b");
    let (mut b, _) = spawn_all(&env, &data).await;
    let user = domain::Keypair::random().public_key().to_z32();
    let archive = dir.path().join("user.archive");
    const FILES: usize = 3000;
    write_archive(&user, FILES, &archive);
    let store = store::Store::connect(&env.database_url, 2).await.unwrap();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM entries WHERE owner = $1")
            .bind(&user)
            .fetch_one(store.pool())
            .await
            .unwrap_or(0)
    };

    let mut importer = homeserver(&env, &data)
        .arg("import")
        .arg(&archive)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count().await < 300 {
        assert!(Instant::now() < deadline, "the import makes progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.start_kill().unwrap(); // SIGKILL
    b.wait().await.unwrap();
    importer.start_kill().unwrap();
    importer.wait().await.unwrap();
    let before = count().await;
    assert!(before < FILES as i64, "killed mid-way: {before} of {FILES}");

    let (_b, _) = spawn_all(&env, &data).await;
    let mut again = homeserver(&env, &data);
    again.arg("import").arg(&archive);
    let (_, _, report) = measured(again).await;
    let skipped: i64 = report
        .split(", ")
        .find_map(|part| part.strip_suffix(" already there"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(skipped >= before, "resumed, not started over: {report}");
    assert!(report.contains("roots equal the archive's"), "{report}");
    assert_eq!(count().await, FILES as i64);
}

/// The acceptance scenario of credible exit, part 1, between two `homeserver all`
/// processes with their own databases, streams, blobs and ports: a user with 10,000
/// files (a tenth private, five of 10 MiB) on A downloads their whole account with
/// their key (`homeserver pull`), the archive is imported into B (`homeserver import
/// --expect-signer` A's key); B's roots equal A's and every file reads back from B with
/// its bytes. The private tree leaves A only for the user: anonymous 401, another user
/// 403.
#[tokio::test]
async fn ten_thousand_files_leave_one_homeserver_for_another() {
    use futures::StreamExt;
    use reqwest::StatusCode;
    const FILES: usize = 10_000;
    let (env_a, env_b) = (testkit::TestEnv::new().await, testkit::TestEnv::new().await);
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let ((_a, url_a), (_b, url_b)) = (
        spawn_all(&env_a, &data_a).await,
        spawn_all(&env_b, &data_b).await,
    );
    let http = reqwest::Client::new();
    let import_into =
        |env: &testkit::TestEnv, data: &Path, archive: &Path, signer: Option<&str>| {
            let mut command = homeserver(env, data);
            command.arg("import").arg(archive);
            if let Some(signer) = signer {
                command.arg("--expect-signer").arg(signer);
            }
            measured(command)
        };

    // The user's account on A, and another user's.
    let user = pubky_common::crypto::Keypair::random();
    let z32 = user.public_key().z32();
    let other = pubky_common::crypto::Keypair::random();
    for (key, files) in [(&user, FILES), (&other, 3)] {
        let seed = dir.path().join(format!("{}.seed", key.public_key().z32()));
        write_archive(&key.public_key().z32(), files, &seed);
        import_into(&env_a, &data_a, &seed, None).await;
    }

    // The private tree is the user's alone.
    let private_export = format!("{url_a}/export/{z32}?tree=priv");
    let anonymous = http.get(&private_export).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let others = homeserver::pull::sign_in(&http, &url_a, &other)
        .await
        .unwrap();
    let foreign = http
        .get(&private_export)
        .bearer_auth(&others)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);

    // The user downloads their account from A with their key ...
    let secret = dir.path().join("secret");
    std::fs::write(&secret, hex::encode(user.secret_key())).unwrap();
    let archive = dir.path().join("mine.archive");
    let mut pull = homeserver(&env_a, &data_a);
    pull.arg("pull")
        .arg("--url")
        .arg(&url_a)
        .arg("--secret-key")
        .arg(&secret)
        .arg("--out")
        .arg(&archive);
    measured(pull).await;

    // ... and B's operator imports it, refusing any signer but A.
    let root_on = |url: &str| {
        let request = http.get(format!("{url}/merkle/{z32}/root"));
        async move {
            let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            (body["root"].clone(), body["signer"].clone())
        }
    };
    let (root_a, signer_a) = root_on(&url_a).await;
    let signer_a = signer_a.as_str().unwrap().to_owned();
    let (_, _, report) = import_into(&env_b, &data_b, &archive, Some(&signer_a)).await;
    assert!(report.contains("roots equal the archive's"), "{report}");
    let (root_b, signer_b) = root_on(&url_b).await;
    assert_eq!(root_a, root_b, "public roots equal");
    assert_ne!(
        signer_a,
        signer_b.as_str().unwrap(),
        "each signed by its own server"
    );

    // Every file, public and private, reads back from B with its bytes.
    let token_b = homeserver::pull::sign_in(&http, &url_b, &user)
        .await
        .unwrap();
    let mismatches: Vec<String> = futures::stream::iter(0..FILES)
        .map(|i| {
            let (path, token) = (bench_path(i), token_b.clone());
            let mut request = http.get(format!("{url_b}/storage/{z32}{path}"));
            if path.starts_with("/priv/") {
                request = request.bearer_auth(token);
            }
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let body = response.bytes().await.unwrap();
                (status != StatusCode::OK || body[..] != bench_content(i)[..])
                    .then(|| format!("{path}: {status}"))
            }
        })
        .buffer_unordered(32)
        .filter_map(|bad| async move { bad })
        .collect()
        .await;
    assert!(
        mismatches.is_empty(),
        "{} differ: {mismatches:?}",
        mismatches.len()
    );
}
