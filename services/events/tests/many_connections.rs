//! ~2,000 concurrent idle live SSE connections on one instance: memory per connection.
//!
//! Clients are raw TCP sockets in the same process (no HTTP client state), so the RSS
//! growth measured is the server's per-connection cost plus a socket and a small buffer
//! on the client side: an upper bound for the server alone.

mod common;

use common::{Env, key};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 2000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn open(addr: std::net::SocketAddr, query: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /events-stream?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 256];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte))
            .await
            .expect("headers in time")
            .expect("read");
        assert!(n > 0, "closed before headers");
        head.extend_from_slice(&byte[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_live_streams() {
    let env = Env::start().await;
    let users: Vec<_> = (0..10u8).map(|i| key(50 + i).public_key()).collect();
    for user in &users {
        env.signup(user).await;
        env.put(user, "/pub/x").await;
    }
    env.settle().await;
    // Cursors at the head: no history to send, the connections are idle.
    let head = env.log.head().await.expect("head").0;
    let queries: Vec<String> = users
        .iter()
        .map(|u| format!("user={}:{head}&live=true", u.to_z32()))
        .collect();

    // Warm up allocator arenas, the pool and the runtime before measuring.
    let mut warm = Vec::new();
    for i in 0..100 {
        warm.push(open(env.addr, &queries[i % queries.len()]).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib();
    let started = Instant::now();
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for chunk in (0..CONNECTIONS).collect::<Vec<_>>().chunks(100) {
        let opened = futures::future::join_all(
            chunk
                .iter()
                .map(|i| open(env.addr, &queries[i % queries.len()])),
        )
        .await;
        connections.extend(opened);
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    let subscribers = env.fanout.subscribers();
    let per_connection = (after.saturating_sub(before) as f64) * 1024.0 / CONNECTIONS as f64;
    println!(
        "{CONNECTIONS} idle live SSE connections opened in {opened_in:?}; fan-out subscribers: \
         {subscribers}; RSS {before} KiB -> {after} KiB: {:.1} KiB per connection \
         (server + client socket)",
        per_connection / 1024.0
    );
    assert!(subscribers >= CONNECTIONS);
    assert!(
        per_connection < 64.0 * 1024.0,
        "{per_connection} bytes per connection"
    );

    // They are live: one write reaches a connection of that user.
    env.put(&users[0], "/pub/live").await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), connections[0].read(&mut buf))
        .await
        .expect("live event in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.contains("/pub/live"), "{text}");
    drop(connections);
    drop(warm);
}
