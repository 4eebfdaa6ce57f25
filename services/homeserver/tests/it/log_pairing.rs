//! The log and its projections belong together: projections served with a new, a
//! re-created, or a wiped stream refuse writes with a 503 that names both logs and the
//! way out, and never acknowledge a write they would not project.

use crate::common;
use domain::EventSeq;
use reqwest::StatusCode;
use std::time::Duration;

/// A PUT that must be refused because of the mismatch: 503, the long `Retry-After`,
/// and a text that says what is wrong and how to recover.
async fn assert_write_refused(
    server: &common::TestServer,
    user: &common::TestUser,
    why: &str,
) -> String {
    let response = server
        .http
        .put(server.storage(user, "/pub/after.txt"))
        .bearer_auth(&user.token)
        .body("after")
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("60")
    );
    let text = response.text().await.expect("body");
    assert!(
        text.contains("the event log does not match its projections"),
        "{text}"
    );
    assert!(text.contains(why), "expected {why:?} in: {text}");
    assert!(text.contains("homeserver reseed"), "{text}");
    text
}

async fn head_of(config: &log::LogConfig) -> EventSeq {
    log::EventLog::connect(config.clone())
        .await
        .expect("log")
        .head()
        .await
        .expect("head")
}

/// Deletes the stream of `config` (tests only: the production stream denies nothing
/// but message deletes and purges; deleting the stream itself stays possible, which
/// is exactly the accident these tests are about).
pub async fn delete_stream(config: &log::LogConfig) {
    let client = async_nats::connect(&config.url).await.expect("nats");
    async_nats::jetstream::new(client)
        .delete_stream(&config.stream)
        .await
        .expect("delete stream");
}

#[tokio::test]
async fn a_new_stream_refuses_writes_and_keeps_serving_reads() {
    let server = common::start().await;
    let user = server.user().await;
    server.put_ok(&user, "/pub/before.txt", "before").await;
    let old_stream = server.config.nats_stream.clone();

    // The same database, served with a stream that has never seen it (a mistyped
    // `nats_stream`, a new NATS cluster).
    let new_stream = format!("N{}", server.env.id);
    let server = server
        .restart_with(|c| {
            c.nats_stream = new_stream.clone();
            c.nats_subject_prefix = format!("n{}", c.nats_subject_prefix);
        })
        .await;

    let text = assert_write_refused(&server, &user, "another stream").await;
    assert!(
        text.contains(&old_stream) && text.contains(&new_stream),
        "{text}"
    );
    // A signup is a write too: refused, not a 200 whose session nobody will ever see.
    let (status, _) = server.try_cookie_signup().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Nothing reached the new log.
    assert_eq!(head_of(&server.config.log_config()).await, EventSeq(0));
    // Reads of the projections are still served.
    let read = server
        .http
        .get(server.storage(&user, "/pub/before.txt"))
        .send()
        .await
        .expect("GET");
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.text().await.expect("body"), "before");
    // And the operator sees why the server is not ready.
    let ready = server
        .http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready = ready.text().await.expect("body");
    assert!(ready.contains("does not match its projections"), "{ready}");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_recreated_stream_is_refused_even_when_it_has_grown() {
    let server = common::start().await;
    let user = server.user().await;
    server.put_ok(&user, "/pub/a.txt", "a").await;
    server.put_ok(&user, "/pub/b.txt", "b").await;
    // The projections learn the log's first event at a pairing check (at most
    // `pairing::RECHECK` after it was written); a re-created stream is then told apart
    // by its first event, the case this test is about.
    let store = store::Store::connect(&server.env.database_url, 1)
        .await
        .expect("store");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store
        .recorded_log()
        .await
        .expect("recorded log")
        .is_none_or(|recorded| recorded.identity.first.is_none())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first event is recorded within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let config = server.config.log_config();
    let stopped = server.stop().await;

    // The stream deleted and made again, and written to by someone else meanwhile:
    // its sequences overlap the projections' checkpoint.
    delete_stream(&config).await;
    let log = log::EventLog::connect(config.clone()).await.expect("log");
    for _ in 0..8 {
        let other = domain::Keypair::random();
        log.append(
            &common::signup_event(&other, Default::default()),
            log::Expected::LastSeq(EventSeq(0)),
        )
        .await
        .expect("append");
    }
    let before = log.head().await.expect("head");

    let server = stopped.start().await;
    assert_write_refused(&server, &user, "re-created").await;
    let (status, _) = server.try_cookie_signup().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(log.head().await.expect("head"), before, "nothing appended");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_nats_server_that_lost_its_data_is_noticed_without_a_restart() {
    let mut nats = testkit::nats::NatsServer::start().await;
    let url = nats.url();
    let server = common::start_with(|c| c.nats_url = url).await;
    let user = server.user().await;
    server.put_ok(&user, "/pub/kept.txt", "kept").await;

    nats.wipe().await;
    // Until the client has reconnected and checked, writes fail as in an outage; then
    // they are refused for the mismatch. Never a 2xx: there is no log to hold them.
    let mut refused = None;
    for _ in 0..120 {
        let response = server
            .http
            .put(server.storage(&user, "/pub/lost.txt"))
            .bearer_auth(&user.token)
            .body("lost")
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = response.text().await.expect("body");
        if text.contains("does not match its projections") {
            refused = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let text = refused.expect("the mismatch is noticed within 30 s");
    assert!(text.contains("no longer exists"), "{text}");
    assert_write_refused(&server, &user, "no longer exists").await;
    server.server.shutdown().await;
}
