//! `/events-stream` (SSE) and `/events-ws`: parameters, error texts, exact bytes,
//! filters, private-event rules, revocation, resume.

use crate::common;

use common::{Env, key, read_until, sse_events};
use futures::{SinkExt, StreamExt};
use std::time::{Duration, Instant};

async fn sse(env: &Env, query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(env.url(&format!("/events-stream{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

/// The whole body of a (non-live) stream.
async fn body(env: &Env, query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let response = sse(env, query, headers).await;
    let status = response.status().as_u16();
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("stream ends")
        .expect("body");
    (status, text)
}

/// The Merkle root of a tree holding only `path` with the test helper's content.
fn one_entry_root(path: &str) -> String {
    let entry = (path.to_string(), *blake3::hash(path.as_bytes()).as_bytes());
    let mut nodes = domain::merkle::MemStore::default();
    domain::merkle::root_hex(domain::merkle::build(&[entry], &mut nodes))
}

fn cursors(text: &str) -> Vec<u64> {
    sse_events(text).into_iter().map(|(_, _, c)| c).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_and_authorization_errors() {
    let env = Env::start().await;
    let (alice, bob, carol) = (
        key(1).public_key(),
        key(2).public_key(),
        key(3).public_key(),
    );
    env.signup(&alice).await;
    env.signup(&bob).await;
    let (token, _) = env.session(&alice, &["/priv/app/:r", "/pub/:rw"]).await;
    let (bob_token, _) = env.session(&bob, &["/:rw"]).await;
    env.settle().await;
    let (a, b, c) = (alice.to_z32(), bob.to_z32(), carol.to_z32());
    let too_many: String = (0..51u8)
        .map(|i| format!("user={}&", key(10 + i).public_key().to_z32()))
        .collect();
    let fifty_unknown: String = (0..50u8)
        .map(|i| format!("user={}&", key(10 + i).public_key().to_z32()))
        .collect();
    let bearer = format!("Bearer {}", token.as_str());
    let bob_bearer = format!("Bearer {}", bob_token.as_str());
    type Case<'a> = (String, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("no user".into(), String::new(), vec![]),
        ("empty users".into(), "?user=&user=".into(), vec![]),
        ("display-form key".into(), format!("?user=pubky{a}"), vec![]),
        ("bad key".into(), "?user=nope:5".into(), vec![]),
        ("51 users".into(), format!("?{too_many}"), vec![]),
        (
            "50 unknown users".into(),
            format!("?{fifty_unknown}"),
            vec![],
        ),
        ("limit text".into(), format!("?user={a}&limit=x"), vec![]),
        ("limit 0".into(), format!("?user={a}&limit=0"), vec![]),
        (
            "limit too big".into(),
            format!("?user={a}&limit=65536"),
            vec![],
        ),
        (
            "live+reverse".into(),
            format!("?user={a}&live=1&reverse=true"),
            vec![],
        ),
        (
            "path above root".into(),
            format!("?user={a}&path=/pub/../.."),
            vec![],
        ),
        (
            "path outside roots".into(),
            format!("?user={a}&path=/"),
            vec![],
        ),
        (
            "path outside roots 2".into(),
            format!("?user={a}&path=other/"),
            vec![],
        ),
        (
            "private anonymous".into(),
            format!("?user={a}&path=/priv/"),
            vec![],
        ),
        (
            "private two users".into(),
            format!("?user={a}&user={b}&path=/priv/app/"),
            vec![("authorization", bearer.as_str())],
        ),
        (
            "private other user".into(),
            format!("?user={a}&path=/priv/app/"),
            vec![("authorization", bob_bearer.as_str())],
        ),
        (
            "private not covered".into(),
            format!("?user={a}&path=/priv/"),
            vec![("authorization", bearer.as_str())],
        ),
        (
            "private invalid bearer".into(),
            format!("?user={a}&path=/priv/app/"),
            vec![(
                "authorization",
                "Bearer xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            )],
        ),
        ("unknown user".into(), format!("?user={a}&user={c}"), vec![]),
        (
            "unknown user, private, authorized".into(),
            format!("?user={c}&path=/priv/app/"),
            vec![("authorization", bearer.as_str())],
        ),
        ("cursor negative".into(), format!("?user={a}:-100"), vec![]),
        ("cursor text".into(), format!("?user={a}:abc"), vec![]),
        (
            "cursor unknown timestamp".into(),
            format!("?user={a}:ZZZZZZZZZZZZY"),
            vec![],
        ),
        (
            "opt-in line not a boolean".into(),
            format!("?user={a}&merkle_roots=maybe"),
            vec![],
        ),
    ];
    let mut out = String::new();
    for (name, query, headers) in &cases {
        let response = sse(&env, query, headers).await;
        let status = response.status().as_u16();
        // The reference puts these on every answer of the stream route, refusals too.
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-store"),
            "{name}"
        );
        assert_eq!(
            header("vary").as_deref(),
            Some("pubky-host, Authorization, Cookie"),
            "{name}"
        );
        let text = response.text().await.expect("body");
        out.push_str(&format!("{name}: {status} {text}\n"));
    }
    // Keys differ per run only through the fixed seeds, so the snapshot is stable.
    insta::assert_snapshot!("stream_errors", out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_frame_bytes_and_headers() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    env.signup(&alice).await; // 1
    env.put_at(&alice, "/pub/example.txt", 1_785_000_000_123_456)
        .await; // 2
    env.append(
        &alice,
        1_785_000_001_000_000,
        domain::Change::FileDeleted {
            path: "/pub/old.txt".into(),
        },
    )
    .await; // 3
    env.settle().await;
    let user = alice.to_z32();
    let response = sse(&env, &format!("?user={user}"), &[]).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["vary"], "pubky-host, Authorization, Cookie");
    let text = response.text().await.expect("body");
    // The hash line equals the standard padded base64 of the BLAKE3 digest.
    let hash = blake3::hash(b"/pub/example.txt");
    let b64 = events::content_hash_base64(hash.as_bytes());
    assert_eq!(b64.len(), 44);
    assert!(text.contains(&format!("data: content_hash: {b64}\n")));
    // By default the data lines are the reference's and nothing else.
    insta::assert_snapshot!("sse_frames", text);

    // The opt-in lines, each on its own and both (ts, then merkle_root).
    let opted = |query: &'static str| {
        let query = format!("?user={user}&{query}");
        let env = &env;
        async move { sse(env, &query, &[]).await.text().await.expect("body") }
    };
    let both = opted("timestamps=true&merkle_roots=true").await;
    insta::assert_snapshot!("sse_frames_with_extras", both);
    // The root line is the root of the one-entry tree, unchanged by deleting a path
    // that was never there.
    let root = one_entry_root("/pub/example.txt");
    assert_eq!(
        both.matches(&format!("data: merkle_root: {root}\n"))
            .count(),
        2
    );
    let roots_only = opted("merkle_roots=1").await;
    assert!(!roots_only.contains("data: ts: "), "{roots_only}");
    assert_eq!(roots_only.matches("data: merkle_root: ").count(), 2);
    let ts_only = opted("timestamps=yes").await;
    assert!(!ts_only.contains("merkle_root"), "{ts_only}");
    assert_eq!(ts_only.matches("data: ts: ").count(), 2);
    // `id:` is a field, not data, and stays.
    assert_eq!(text.matches("\nid: ").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_order_limit_and_cursors() {
    let env = Env::start().await;
    let (alice, bob) = (key(1).public_key(), key(2).public_key());
    env.signup(&alice).await; // 1
    env.signup(&bob).await; // 2
    env.put(&alice, "/pub/a_b/1").await; // 3
    env.put(&alice, "/pub/aXb/2").await; // 4: `_` must not match X
    env.put(&alice, "/pub/x%").await; // 5
    env.put(&alice, "/pub/x%y").await; // 6
    env.put(&bob, "/pub/a_b/3").await; // 7
    env.put(&alice, "/priv/p").await; // 8: never without a private filter
    env.del(&alice, "/pub/a_b/1").await; // 9
    env.put(&alice, "/pub/a_b0").await; // 10: just past the range of /pub/a_b/
    env.settle().await;
    let (a, b) = (alice.to_z32(), bob.to_z32());
    let q = |s: &str| s.replace("{a}", &a).replace("{b}", &b);

    assert_eq!(
        cursors(&body(&env, &q("?user={a}"), &[]).await.1),
        [3, 4, 5, 6, 9, 10]
    );
    assert_eq!(
        cursors(&body(&env, &q("?user={a}&user={b}"), &[]).await.1),
        [3, 4, 5, 6, 7, 9, 10]
    );
    // Directory prefix (literal `_`), exact file (literal `%`), union, leading `/` added.
    assert_eq!(
        cursors(
            &body(
                &env,
                &q("?user={a}&user={b}&path=pub/a_b/&path=/pub/x%25"),
                &[]
            )
            .await
            .1
        ),
        [3, 5, 7, 9]
    );
    // Normalization: `/pub/a_b/c/..` is the directory `/pub/a_b/`.
    assert_eq!(
        cursors(&body(&env, &q("?user={a}&path=/pub//a_b/c/.."), &[]).await.1),
        [3, 9]
    );
    // Per-user cursors, limit, reverse.
    assert_eq!(
        cursors(&body(&env, &q("?user={a}:5&user={b}:7"), &[]).await.1),
        [6, 9, 10]
    );
    assert_eq!(
        cursors(&body(&env, &q("?user={a}&limit=2"), &[]).await.1),
        [3, 4]
    );
    assert_eq!(
        cursors(
            &body(&env, &q("?user={a}&reverse=true&limit=3"), &[])
                .await
                .1
        ),
        [10, 9, 6]
    );
    assert_eq!(
        cursors(&body(&env, &q("?user={a}:6&reverse=1"), &[]).await.1),
        [5, 4, 3]
    );
    // A cursor beyond every sequence: 200 and an empty, closed stream, even in live
    // mode; digits beyond u64 are no cursor at all (as the reference: 400).
    let (status, text) = body(&env, &q("?user={a}:18446744073709551615&live=true"), &[]).await;
    assert_eq!((status, text.as_str()), (200, ""));
    let forty = "9".repeat(40);
    let (status, text) = body(&env, &q(&format!("?user={{a}}:{forty}")), &[]).await;
    assert_eq!((status, text), (400, format!("Invalid cursor: {forty}")));
    // Last-Event-ID resumes after it for every user of the request.
    assert_eq!(
        cursors(
            &body(&env, &q("?user={a}&user={b}"), &[("last-event-id", "5")])
                .await
                .1
        ),
        [6, 7, 9, 10]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_events_need_one_user_and_a_covering_session() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    env.signup(&alice).await; // 1
    let (token, _) = env.session(&alice, &["/priv/app/:r"]).await; // 2
    env.put(&alice, "/priv/app/1").await; // 3
    env.put(&alice, "/priv/other/2").await; // 4
    env.put(&alice, "/pub/3").await; // 5
    env.settle().await;
    let a = alice.to_z32();
    let bearer = format!("Bearer {}", token.as_str());
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(
        cursors(
            &body(&env, &format!("?user={a}&path=/priv/app/"), &auth)
                .await
                .1
        ),
        [3]
    );
    assert_eq!(
        cursors(
            &body(
                &env,
                &format!("?user={a}&path=/priv/app/&path=/pub/"),
                &auth
            )
            .await
            .1
        ),
        [3, 5]
    );
    // Public streams never carry private events, whatever the credentials.
    assert_eq!(
        cursors(&body(&env, &format!("?user={a}"), &auth).await.1),
        [5]
    );
    let feed = reqwest::get(env.url("/events/"))
        .await
        .expect("feed")
        .text()
        .await
        .expect("body");
    assert!(!feed.contains("/priv/"), "{feed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_closes_a_private_live_stream_but_not_a_public_one() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    env.signup(&alice).await;
    let (token, grant_id) = env.session(&alice, &["/:rw"]).await;
    env.settle().await;
    let a = alice.to_z32();
    let bearer = format!("Bearer {}", token.as_str());
    let started = Instant::now();
    let mut private = sse(
        &env,
        &format!("?user={a}&path=/priv/&live=true"),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(private.status(), 200);
    let mut public = sse(&env, &format!("?user={a}&live=true"), &[]).await;
    // subscribe() returns after the headers, before any event.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    env.put(&alice, "/priv/x").await;
    let mut text = String::new();
    let ended = read_until(&mut private, &mut text, Duration::from_secs(10), |t| {
        sse_events(t).len() == 1
    })
    .await;
    assert!(!ended);
    let revoked_at = Instant::now();
    env.revoke(&alice, &grant_id).await;
    let ended = read_until(&mut private, &mut text, Duration::from_secs(10), |_| false).await;
    assert!(ended, "the private stream must close on revocation");
    println!(
        "private stream closed {:?} after the revocation",
        revoked_at.elapsed()
    );
    // The public stream stays open and keeps delivering.
    env.put(&alice, "/pub/y").await;
    let mut text = String::new();
    let ended = read_until(&mut public, &mut text, Duration::from_secs(10), |t| {
        sse_events(t).len() == 1
    })
    .await;
    assert!(!ended);
    assert!(text.contains("/pub/y"));
    // And the revoked bearer no longer opens a private stream.
    let response = sse(
        &env,
        &format!("?user={a}&path=/priv/&live=true"),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_and_resume() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    env.signup(&alice).await; // 1
    env.put_at(&alice, "/pub/a", 1_785_000_000_000_000).await; // 2
    env.settle().await;
    let a = alice.to_z32();
    let url = format!("ws://{}/events-ws?user={a}&live=true", env.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let first = next_json(&mut socket).await.expect("history event");
    let hash = events::content_hash_base64(blake3::hash(b"/pub/a").as_bytes());
    assert_eq!(
        first,
        serde_json::json!({"type": "PUT", "user": a, "path": "/pub/a", "cursor": 2,
            "content_hash": hash, "ts": "2026-07-25T17:20:00.000000Z",
            "merkle_root": one_entry_root("/pub/a")})
    );
    env.del(&alice, "/pub/a").await; // 3
    let second = next_json(&mut socket).await.expect("live event");
    assert_eq!(
        (second["type"].as_str(), second["cursor"].as_u64()),
        (Some("DEL"), Some(3))
    );
    assert_eq!(second["content_hash"], serde_json::Value::Null);
    let _ = socket.close(None).await;
    // Resume with the last cursor: nothing old again, the next one live.
    let url = format!("ws://{}/events-ws?user={a}:3&live=true", env.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    env.put(&alice, "/pub/b").await; // 4
    let third = next_json(&mut socket).await.expect("resumed");
    assert_eq!(third["cursor"].as_u64(), Some(4));
    // Same validation as SSE, as an HTTP answer to the handshake.
    let bad = format!("ws://{}/events-ws?user={a}&path=/priv/", env.addr);
    match tokio_tungstenite::connect_async(bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("expected 401, got {other:?}"),
    }
    socket
        .send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await
        .ok();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(socket: &mut Ws) -> Result<serde_json::Value, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    return serde_json::from_str::<serde_json::Value>(&t).expect("json");
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_1012_and_the_resume_cursor() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    env.signup(&alice).await; // 1
    env.put(&alice, "/pub/a").await; // 2
    env.settle().await;
    let a = alice.to_z32();
    let url = format!("ws://{}/events-ws?user={a}&live=true", env.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let first = next_json(&mut socket).await.expect("history event");
    assert_eq!(first["cursor"].as_u64(), Some(2));

    env.state.shutdown.cancel();
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed on shutdown")
    .expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1012);
    assert_eq!(
        close.reason.as_str(),
        "server restarting: resume from cursor 2"
    );
}
