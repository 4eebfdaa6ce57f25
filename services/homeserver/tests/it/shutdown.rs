//! Graceful shutdown: a live SSE stream ends with a frame that gives its resume cursor
//! (instead of holding the drain open), and a client that reconnects to the restarted
//! server with that cursor as `Last-Event-ID` continues exactly after it.

use crate::common;

use reqwest::StatusCode;

/// The `id:` values of the complete frames in `text`.
fn ids(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn shutdown_ends_live_streams_with_a_resumable_cursor() {
    let server = common::start().await;
    let user = server.user().await;
    for name in ["one", "two"] {
        let put = server
            .http
            .put(server.storage(&user, &format!("/pub/shutdown/{name}.txt")))
            .bearer_auth(&user.token)
            .body(name)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
    }
    let stream_url = format!("/events-stream?user={}&live=true", user.z32());
    let mut stream = server
        .http
        .get(server.url(&stream_url))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut received = String::new();
    for _ in 0..20 {
        if ids(&received).len() >= 2 {
            break;
        }
        let chunk = stream.chunk().await.unwrap().expect("a frame");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    let sent = ids(&received);
    assert_eq!(sent.len(), 2, "{received}");
    let last = sent[1];

    // Shut down while the stream is open: it must end by itself (the restart waits for
    // the drain), and its last frame names the cursor.
    let reader = tokio::spawn(async move {
        let mut rest = String::new();
        while let Some(chunk) = stream.chunk().await.expect("the stream ends cleanly") {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    });
    let server = server.restart().await;
    let rest = reader.await.unwrap();
    assert_eq!(
        rest,
        format!(
            ": server shutting down; resume with Last-Event-ID: {last}\nretry: 2000\nid: {last}\n\n"
        )
    );

    // Resume on the restarted server: only what came after the cursor.
    let put = server
        .http
        .put(server.storage(&user, "/pub/shutdown/three.txt"))
        .bearer_auth(&user.token)
        .body("three")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let mut resumed = server
        .http
        .get(server.url(&stream_url))
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let mut text = String::new();
    for _ in 0..20 {
        if !ids(&text).is_empty() {
            break;
        }
        let chunk = resumed.chunk().await.unwrap().expect("a frame");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        text.contains("/pub/shutdown/three.txt") && !text.contains("/pub/shutdown/one.txt"),
        "{text}"
    );
    assert_eq!(ids(&text).len(), 1, "{text}");
    assert!(ids(&text)[0] > last);
}
