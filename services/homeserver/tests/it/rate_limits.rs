//! Request-count rate limits: 429 with `Retry-After`, per user and per IP, whitelists,
//! and one count shared by two instances of the service.
//!
//! Quotas are per day so that no window boundary falls inside the test.

use crate::common;

use api::rate_limit::{RateLimitKey, RateLimitRule};
use reqwest::StatusCode;

fn rule(path: &str, method: Option<&str>, quota: &str, key: RateLimitKey) -> RateLimitRule {
    RateLimitRule {
        path: path.into(),
        method: method.map(Into::into),
        quota: quota.into(),
        key,
        burst: 0,
        whitelist: Vec::new(),
    }
}

/// A second instance of the whole router on the same database and log, as another
/// process behind a load balancer would be.
async fn second_instance(s: &common::TestServer) -> String {
    let state = homeserver::connect(&s.config, &s.keypair)
        .await
        .expect("second instance");
    let fanout = events::Fanout::spawn(
        state.log.clone(),
        state.progress.clone(),
        state.store.clone(),
    );
    let app = homeserver::app::router(state, fanout, &s.config, ::mirror::MirrorSet::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

async fn assert_limited(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in whole seconds");
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    assert_eq!(response.text().await.unwrap(), "Rate limit exceeded");
}

#[tokio::test]
async fn per_user_limits_hold_across_two_instances() {
    let s = common::start_with(|c| {
        c.rate_limits = vec![
            rule("/pub/read/**", Some("GET"), "4r/d", RateLimitKey::User),
            rule("/pub/write/*", Some("PUT"), "2r/d", RateLimitKey::User),
        ]
    })
    .await;
    let other = second_instance(&s).await;
    let (alice, bob) = (s.user().await, s.user().await);
    let read_path = |user: &common::TestUser, base: &str| {
        format!("{base}/storage/{}/pub/read/a.txt", user.z32())
    };
    let first = format!("http://{}", s.server.http_addr);
    // Four reads of alice's data, alternating instances: all answered (404, the file
    // does not exist); the fifth, on either instance, is refused.
    for i in 0..4 {
        let base = if i % 2 == 0 { &first } else { &other };
        let r = s.http.get(read_path(&alice, base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "read {i}");
    }
    assert_limited(s.http.get(read_path(&alice, &first)).send().await.unwrap()).await;
    assert_limited(s.http.get(read_path(&alice, &other)).send().await.unwrap()).await;
    // Another user's tenant has its own count.
    let r = s.http.get(read_path(&bob, &other)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A refused write changes nothing.
    let put = |name: &str| {
        s.http
            .put(s.storage(&alice, &format!("/pub/write/{name}")))
            .bearer_auth(&alice.token)
            .body("x")
            .send()
    };
    assert_eq!(put("1").await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(put("2").await.unwrap().status(), StatusCode::CREATED);
    assert_limited(put("3").await.unwrap()).await;
    let listed = s
        .http
        .get(s.storage(&alice, "/pub/write/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(!listed.contains("/pub/write/3"), "{listed}");
}

#[tokio::test]
async fn per_ip_limits_with_burst_whitelist_and_unextractable_keys() {
    let s = common::start_with(|c| {
        c.rate_limits = vec![
            RateLimitRule {
                burst: 1,
                whitelist: vec!["10.9.9.9".into()],
                ..rule("/events/", None, "2r/d", RateLimitKey::Ip)
            },
            rule("/signup_tokens/*", Some("GET"), "5r/d", RateLimitKey::User),
            rule("/info", None, "1r/d", RateLimitKey::Ip),
        ]
    })
    .await;
    let feed = |ip: &str| {
        s.http
            .get(s.url("/events/"))
            .header("x-forwarded-for", format!("{ip}, 10.0.0.254"))
            .send()
    };
    // Quota 2 plus burst 1: three feed reads per client IP, then 429.
    for i in 0..3 {
        assert_eq!(
            feed("10.0.0.1").await.unwrap().status(),
            StatusCode::OK,
            "{i}"
        );
    }
    assert_limited(feed("10.0.0.1").await.unwrap()).await;
    assert_eq!(feed("10.0.0.2").await.unwrap().status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(feed("10.9.9.9").await.unwrap().status(), StatusCode::OK);
    }
    // A rule keyed by user on a request that names no user: the reference's 400.
    let r = s
        .http
        .get(s.url("/signup_tokens/AAAA-BBBB-CCCC"))
        .header("x-forwarded-for", "10.0.0.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.text().await.unwrap(),
        "Failed to extract key for rate limiting"
    );
    // `/info` is never limited, even by a rule that names it.
    for _ in 0..3 {
        let r = s.http.get(s.url("/info")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// 3 KiB at 1 KiB/s: the bucket holds one second's worth, so the rest takes 2 s.
const BODY: usize = 3 * 1024;
const AT_LEAST: std::time::Duration = std::time::Duration::from_millis(1900);

#[tokio::test]
async fn bandwidth_limits_slow_uploads_and_downloads_instead_of_refusing() {
    let s = common::start_with(|c| {
        c.rate_write = Some("1kb/s".into());
        c.unauthenticated_ip_rate_read = Some("1kb/s".into());
    })
    .await;
    // The writer's override lifts the default write limit; the reader's override
    // limits reads that the server default leaves unlimited.
    let fast_writer = s
        .user_with(
            &["/:rw"],
            domain::event::UserLimits {
                rate_write: Some("unlimited".into()),
                rate_read: Some("1kb/s".into()),
                ..Default::default()
            },
        )
        .await;
    let slow_writer = s.user().await;
    let body = vec![b'x'; BODY];

    let started = std::time::Instant::now();
    let r = s
        .http
        .put(s.storage(&slow_writer, "/pub/slow.bin"))
        .bearer_auth(&slow_writer.token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "slowed, not refused");
    assert!(started.elapsed() >= AT_LEAST, "{:?}", started.elapsed());

    let r = s
        .http
        .put(s.storage(&fast_writer, "/pub/fast.bin"))
        .bearer_auth(&fast_writer.token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Anonymous download: limited per client IP by the server default.
    let started = std::time::Instant::now();
    let got = s
        .http
        .get(s.storage(&fast_writer, "/pub/fast.bin"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), BODY);
    assert!(started.elapsed() >= AT_LEAST, "{:?}", started.elapsed());

    // The signed-in reader's own override applies to their download.
    let started = std::time::Instant::now();
    let got = s
        .http
        .get(s.storage(&slow_writer, "/pub/slow.bin"))
        .bearer_auth(&fast_writer.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == body, "the whole file");
    assert!(started.elapsed() >= AT_LEAST, "{:?}", started.elapsed());
}
