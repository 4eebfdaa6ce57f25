//! No gaps, no duplicates: concurrent writers for many users while a live SSE client
//! (which reconnects once with `Last-Event-ID`) and a client paging `/events/` both
//! read; the projector is restarted mid-run. Each reader must see every public event
//! exactly once, in cursor order.

use crate::common;

use common::{Env, key, sse_events};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const USERS: u8 = 20;
const WRITERS: usize = 4;
const EVENTS_PER_WRITER: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_exactly_once_across_reconnect_and_projector_restart() {
    let env = Arc::new(Env::start().await);
    let users: Vec<_> = (0..USERS).map(|i| key(100 + i).public_key()).collect();
    for user in &users {
        env.signup(user).await;
    }
    env.settle().await;
    let (total_tx, total_rx) = watch::channel::<Option<usize>>(None);
    let started = Instant::now();

    // Live SSE client over all users.
    let query: String = users
        .iter()
        .map(|u| format!("user={}&", u.to_z32()))
        .collect();
    let sse_reader = {
        let env = env.clone();
        let mut total_rx = total_rx.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen: Vec<u64> = Vec::new();
            let mut reconnects = 0;
            loop {
                let mut request = client.get(env.url(&format!("/events-stream?{query}live=true")));
                if let Some(last) = seen.last() {
                    request = request.header("last-event-id", last.to_string());
                }
                let mut response = request.send().await.expect("sse");
                assert_eq!(response.status(), 200);
                let mut buf = String::new();
                let mut this_connection = 0;
                loop {
                    let done = total_rx.borrow().is_some_and(|t| seen.len() >= t);
                    if done {
                        return (seen, reconnects);
                    }
                    let chunk = tokio::select! {
                        chunk = response.chunk() => chunk.expect("chunk"),
                        _ = total_rx.changed() => continue,
                    };
                    let Some(chunk) = chunk else { break };
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    // Consume complete frames only.
                    if let Some(end) = buf.rfind("\n\n") {
                        let complete: String = buf.drain(..end + 2).collect();
                        for (_, _, cursor) in sse_events(&complete) {
                            seen.push(cursor);
                            this_connection += 1;
                        }
                    }
                    // Drop the connection once, mid-run, and resume by Last-Event-ID.
                    if reconnects == 0 && this_connection >= 300 {
                        break;
                    }
                }
                reconnects += 1;
            }
        })
    };

    // A client paging the public feed.
    let pager = {
        let env = env.clone();
        let total_rx = total_rx.clone();
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut cursors: Vec<u64> = Vec::new();
            loop {
                if total_rx.borrow().is_some_and(|t| seen.len() >= t) {
                    return (seen, cursors);
                }
                let cursor = cursors.last().copied().unwrap_or(0);
                let body = reqwest::get(env.url(&format!("/events/?cursor={cursor}&limit=37")))
                    .await
                    .expect("feed")
                    .text()
                    .await
                    .expect("body");
                if body.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                for line in body.lines() {
                    match line.strip_prefix("cursor: ") {
                        Some(c) => cursors.push(c.parse().expect("cursor")),
                        None => seen.push(line.to_string()),
                    }
                }
            }
        })
    };

    // Writers: public PUT/DEL and private PUTs (which must appear in neither reader).
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let env = env.clone();
        let users = users.clone();
        writers.push(tokio::spawn(async move {
            let mut public = Vec::new();
            for i in 0..EVENTS_PER_WRITER {
                let user = &users[(i * WRITERS + w) % users.len()];
                let z = user.to_z32();
                let (seq, line) = match i % 5 {
                    3 => {
                        env.put(user, &format!("/priv/w{w}/{i}")).await;
                        continue;
                    }
                    4 => {
                        let path = format!("/pub/w{w}/{}", i - 1);
                        (env.del(user, &path).await, format!("DEL pubky://{z}{path}"))
                    }
                    _ => {
                        let path = format!("/pub/w{w}/{i}");
                        (env.put(user, &path).await, format!("PUT pubky://{z}{path}"))
                    }
                };
                public.push((seq.0, line));
            }
            public
        }));
    }
    // Restart the projector while the writers run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.stop_projector().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.start_projector();

    let mut written_events: Vec<(u64, String)> = Vec::new();
    for writer in writers {
        written_events.extend(writer.await.expect("writer"));
    }
    written_events.sort_unstable();
    let expected: Vec<u64> = written_events.iter().map(|(s, _)| *s).collect();
    let expected_lines: Vec<String> = written_events.into_iter().map(|(_, l)| l).collect();
    let written = started.elapsed();
    total_tx.send(Some(expected.len())).expect("readers alive");

    let (sse_seen, reconnects) = tokio::time::timeout(Duration::from_secs(60), sse_reader)
        .await
        .expect("SSE reader finishes")
        .expect("SSE reader");
    let (lines, page_cursors) = tokio::time::timeout(Duration::from_secs(60), pager)
        .await
        .expect("pager finishes")
        .expect("pager");
    println!(
        "{} public events from {WRITERS} writers for {USERS} users written in {written:?}; \
         both readers done after {:?}; SSE reconnects: {reconnects}; feed pages: {}",
        expected.len(),
        started.elapsed(),
        page_cursors.len()
    );
    assert_eq!(reconnects, 1);
    assert_eq!(sse_seen.len(), expected.len(), "SSE count");
    assert_eq!(
        sse_seen, expected,
        "SSE saw every public event once, in order"
    );
    assert_eq!(lines.len(), expected_lines.len(), "feed count");
    assert_eq!(
        lines, expected_lines,
        "the feed served every public event once, in order"
    );
    assert!(page_cursors.windows(2).all(|w| w[0] < w[1]));
    assert!(
        page_cursors
            .iter()
            .all(|c| expected.binary_search(c).is_ok())
    );
    assert_eq!(page_cursors.last(), expected.last());
}
