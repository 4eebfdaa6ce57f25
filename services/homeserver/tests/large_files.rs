//! Large files through the real binary: a 256 MiB body is streamed up and down without
//! either side holding it in memory.
//!
//! `homeserver all` runs as a child process (so its memory is measured on its own); a
//! user and a bearer session are made by appending events to the log, as the auth
//! endpoints would. The body is produced chunk by chunk (`reqwest::Body::wrap_stream`),
//! read back as a stream and hashed with BLAKE3 on the fly; the hash must equal the hash
//! of what was sent. A `Range` request for the last MiB must return exactly those bytes.
//!
//! Peak RSS (`VmHWM` in `/proc/<pid>/status`) of the child, and of this test process,
//! must grow by far less than the body (< 64 MiB): the server streams to and from the
//! blob store instead of buffering. Figures and throughput are printed (`--nocapture`).

mod common;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use reqwest::StatusCode;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const MIB: u64 = 1024 * 1024;
const CHUNKS: u64 = 256;
const SIZE: u64 = CHUNKS * MIB;
const MAX_GROWTH_KIB: u64 = 64 * 1024;

/// Peak resident set size of process `pid` (`self` for this one), in KiB.
fn vm_hwm_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Deterministic content: one pseudo-random MiB, with chunk `i` distinguished by its
/// index in the first 8 bytes.
struct Content {
    base: Vec<u8>,
}

impl Content {
    fn new() -> Self {
        let mut base = vec![0u8; MIB as usize];
        StdRng::seed_from_u64(0x1a29e).fill_bytes(&mut base);
        Content { base }
    }

    fn chunk(&self, i: u64) -> Vec<u8> {
        let mut chunk = self.base.clone();
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        chunk
    }
}

/// Starts `homeserver all`; returns it with its plain HTTP base URL.
async fn spawn_all(env: &testkit::TestEnv, data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .arg("all")
        .env("DATABASE_URL", &env.database_url)
        .env("NATS_URL", &env.nats_url)
        .env("HOMESERVER_NATS_STREAM", &env.log.stream)
        .env("HOMESERVER_NATS_SUBJECT_PREFIX", &env.log.subject_prefix)
        .env("HOMESERVER_DATA_DIR", data)
        .env("HOMESERVER_HTTP_LISTEN", "127.0.0.1:0")
        .env("HOMESERVER_TLS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn homeserver");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.trim().strip_prefix("plain HTTP:") {
                return rest.trim().to_string();
            }
        }
        panic!("homeserver exited before printing its HTTP address");
    })
    .await
    .expect("homeserver starts");
    // Keep draining stdout so that the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

fn mb_per_s(elapsed: Duration) -> f64 {
    SIZE as f64 / MIB as f64 / elapsed.as_secs_f64()
}

#[tokio::test]
async fn a_256_mib_file_streams_up_and_down_in_bounded_memory() {
    tokio::time::timeout(Duration::from_secs(600), run())
        .await
        .expect("large file test finishes within 10 minutes");
}

async fn run() {
    let env = testkit::TestEnv::new().await;
    let data = tempfile::tempdir().unwrap();
    let (child, url) = spawn_all(&env, data.path()).await;
    let pid = child.id().expect("child pid").to_string();
    let (user, token) = common::user_via_log(&env).await;
    let http = reqwest::Client::new();
    let file_url = format!(
        "{url}/storage/{}/pub/large/blob.bin",
        user.public_key().to_z32()
    );

    let content = std::sync::Arc::new(Content::new());
    let mut sent = blake3::Hasher::new();
    for i in 0..CHUNKS {
        sent.update(&content.chunk(i));
    }
    let sent = sent.finalize();

    let child_before = vm_hwm_kib(&pid);
    let self_before = vm_hwm_kib("self");

    // Upload, generated chunk by chunk.
    let source = content.clone();
    let body =
        futures::stream::iter(0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(source.chunk(i)));
    let started = Instant::now();
    let put = http
        .put(&file_url)
        .bearer_auth(token.as_str())
        .header("content-length", SIZE)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("PUT");
    let upload = started.elapsed();
    let status = put.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        put.text().await.unwrap_or_default()
    );
    let child_after_upload = vm_hwm_kib(&pid);

    // Download, hashed as it streams.
    let started = Instant::now();
    let get = http.get(&file_url).send().await.expect("GET");
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.headers()["content-length"], SIZE.to_string().as_str());
    let mut received = blake3::Hasher::new();
    let mut len = 0u64;
    let mut stream = get.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("body chunk");
        len += chunk.len() as u64;
        received.update(&chunk);
    }
    let download = started.elapsed();
    assert_eq!(len, SIZE, "downloaded length");
    assert_eq!(received.finalize(), sent, "downloaded content hash");

    // The last MiB by range.
    let start = SIZE - MIB;
    let ranged = http
        .get(&file_url)
        .header("range", format!("bytes={start}-{}", SIZE - 1))
        .send()
        .await
        .expect("GET range");
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes {start}-{}/{SIZE}", SIZE - 1).as_str()
    );
    let tail = ranged.bytes().await.expect("range body");
    assert!(
        tail[..] == content.chunk(CHUNKS - 1)[..],
        "the range holds the last MiB"
    );

    let child_after = vm_hwm_kib(&pid);
    let self_after = vm_hwm_kib("self");
    println!(
        "child VmHWM: {child_before} KiB before, {child_after_upload} KiB after upload, \
         {child_after} KiB at the end (growth {} KiB)",
        child_after - child_before
    );
    println!(
        "test process VmHWM: {self_before} KiB before, {self_after} KiB after (growth {} KiB)",
        self_after - self_before
    );
    println!(
        "upload {:.2?} ({:.1} MiB/s), download {:.2?} ({:.1} MiB/s)",
        upload,
        mb_per_s(upload),
        download,
        mb_per_s(download)
    );
    assert!(
        child_after - child_before < MAX_GROWTH_KIB,
        "server peak RSS grew by {} KiB",
        child_after - child_before
    );
    assert!(
        self_after - self_before < MAX_GROWTH_KIB,
        "test process peak RSS grew by {} KiB",
        self_after - self_before
    );
    drop(child);
}
