//! The homeserver on the S3 blob store, against a real S3 API server of the test's own
//! (moto's server, `testkit::s3`): files written, read in ranges, deleted; and the S3
//! server killed in the middle of an upload.
//!
//! The write order (blob first, event after, see crates/blobs) promises that a failed
//! blob upload leaves no entry that points at a missing blob. Here the S3 server is
//! SIGKILLed while the body streams: the client gets 503 with `Retry-After`, the log
//! has no new event, nothing is listed or readable, and once S3 is back the same write
//! succeeds without restarting anything. A server that stops answering without
//! closing its connections (SIGSTOP) gets 503 after the blob store's timeouts, not a
//! hang.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use reqwest::StatusCode;
use tokio::sync::Mutex;

use crate::common::{TestServer, TestUser, start_with};

async fn on_s3(s3: &testkit::s3::S3Server) -> TestServer {
    let blobs = testkit::s3::fresh_bucket(&s3.url()).await;
    start_with(move |config| config.blobs = Some(blobs)).await
}

async fn get(s: &TestServer, u: &TestUser, path: &str) -> reqwest::Response {
    s.http.get(s.storage(u, path)).send().await.expect("GET")
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 4099) as u8).collect()
}

#[tokio::test]
async fn files_live_in_s3() {
    let s3 = testkit::s3::S3Server::start().await;
    let s = on_s3(&s3).await;
    let u = s.user().await;

    let data = content(9 * 1024 * 1024 + 5);
    let r = s
        .http
        .put(s.storage(&u, "/pub/app/big.bin"))
        .bearer_auth(&u.token)
        .body(data.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = get(&s, &u, "/pub/app/big.bin").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.expect("body") == data);
    let r = s
        .http
        .get(s.storage(&u, "/pub/app/big.bin"))
        .header("range", "bytes=8388600-8388615")
        .send()
        .await
        .expect("GET range");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 8388600-8388615/{}", data.len())
    );
    assert!(r.bytes().await.expect("body") == data[8_388_600..=8_388_615]);

    s.put_ok(&u, "/pub/app/small.txt", "hello s3").await;
    assert_eq!(
        get(&s, &u, "/pub/app/small.txt")
            .await
            .text()
            .await
            .unwrap(),
        "hello s3"
    );
    s.delete_ok(&u, "/pub/app/small.txt").await;
    assert_eq!(
        get(&s, &u, "/pub/app/small.txt").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn s3_killed_mid_upload_answers_503_and_leaves_nothing_visible() {
    let s3 = Arc::new(Mutex::new(testkit::s3::S3Server::start().await));
    let url = s3.lock().await.url();
    let s = {
        let blobs = testkit::s3::fresh_bucket(&url).await;
        start_with(move |config| config.blobs = Some(blobs)).await
    };
    let u = s.user().await;
    s.put_ok(&u, "/pub/app/before.txt", "written before the crash")
        .await;
    let head = s.server.state.log.head().await.expect("log head");

    // 12 MiB in pieces of 3: the first 8 MiB multipart part goes out to S3 with the
    // third piece; then the S3 server is killed before the body is complete.
    let data = content(12 * 1024 * 1024);
    let pieces: Vec<Vec<u8>> = data.chunks(3 * 1024 * 1024).map(<[u8]>::to_vec).collect();
    let killer = s3.clone();
    let body = stream::iter(pieces.into_iter().enumerate()).then(move |(i, piece)| {
        let killer = killer.clone();
        async move {
            if i == 3 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                killer.lock().await.kill();
            }
            Ok::<_, Infallible>(piece)
        }
    });
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        s.http
            .put(s.storage(&u, "/pub/app/crash.bin"))
            .bearer_auth(&u.token)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    )
    .await
    .expect("answered, not hung")
    .expect("PUT");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));

    // No event, no entry: nothing points at the blob that was never stored.
    assert_eq!(s.server.state.log.head().await.expect("log head"), head);
    assert_eq!(
        get(&s, &u, "/pub/app/crash.bin").await.status(),
        StatusCode::NOT_FOUND
    );
    let listing = get(&s, &u, "/pub/app/").await.text().await.unwrap();
    assert!(listing.contains("before.txt"), "{listing}");
    assert!(!listing.contains("crash.bin"), "{listing}");

    // S3 back (empty, as a wiped store): the same write succeeds, no restart needed.
    s3.lock().await.restart().await;
    let Some(blobs::BlobStoreConfig::S3 { bucket, .. }) = &s.config.blobs else {
        unreachable!("configured above")
    };
    testkit::s3::create_bucket(&url, bucket).await;
    let r = s
        .http
        .put(s.storage(&u, "/pub/app/crash.bin"))
        .bearer_auth(&u.token)
        .body(data.clone())
        .send()
        .await
        .expect("PUT again");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = get(&s, &u, "/pub/app/crash.bin").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.expect("body") == data);
}

/// S3 frozen (SIGSTOP: connections open, nothing answered): a write and a read that
/// need it answer 503 with `Retry-After` once the blob store's timeout passes, instead
/// of waiting as long as the server is gone; thawed, both succeed with nothing lost.
#[tokio::test]
async fn s3_that_stops_answering_gets_503_not_a_hang() {
    let s3 = testkit::s3::S3Server::start().await;
    let s = {
        let blobs = testkit::s3::fresh_bucket(&s3.url()).await;
        start_with(move |config| config.blobs = Some(blobs)).await
    };
    let u = s.user().await;
    s.put_ok(&u, "/pub/app/before.txt", "written before the freeze")
        .await;
    let head = s.server.state.log.head().await.expect("log head");

    s3.freeze(true);
    let bounded = |request: reqwest::RequestBuilder| async move {
        tokio::time::timeout(Duration::from_secs(60), request.send())
            .await
            .expect("answered, not hung")
            .expect("request")
    };
    let put = bounded(
        s.http
            .put(s.storage(&u, "/pub/app/frozen.txt"))
            .bearer_auth(&u.token)
            .body("written during the freeze"),
    )
    .await;
    assert_eq!(put.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(put.headers().contains_key("retry-after"));
    let read = bounded(s.http.get(s.storage(&u, "/pub/app/before.txt"))).await;
    assert_eq!(read.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(read.headers().contains_key("retry-after"));
    assert_eq!(
        s.server.state.log.head().await.expect("log head"),
        head,
        "a refused write appends nothing"
    );

    s3.freeze(false);
    let before = get(&s, &u, "/pub/app/before.txt").await;
    assert_eq!(before.status(), StatusCode::OK);
    assert_eq!(before.text().await.unwrap(), "written before the freeze");
    s.put_ok(&u, "/pub/app/frozen.txt", "written after the thaw")
        .await;
    let after = get(&s, &u, "/pub/app/frozen.txt").await;
    assert_eq!(after.text().await.unwrap(), "written after the thaw");
}
