//! Readiness with a dependency gone: the homeserver reaches NATS and Postgres through
//! loopback TCP proxies that the test cuts and restores. While one is cut, `/readyz`
//! is 503 naming it and writes get 503 with `Retry-After`, leaving nothing behind;
//! once it is back, the same process recovers by itself.

use crate::common;
use crate::metrics::{sample, scrape};

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// A TCP proxy to one dependency. Cut, it closes every proxied connection and closes
/// each new one at once (so clients fail fast instead of hanging).
struct Proxy {
    cut: Arc<AtomicBool>,
    /// Bumped on every cut: proxied connections end when it changes.
    generation: watch::Sender<u64>,
}

impl Proxy {
    /// Proxies the `host:port` of `url` and rewrites `url` to go through the proxy.
    fn start(url: &mut String) -> Proxy {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, target) = match authority.rsplit_once('@') {
            Some((user, hostport)) => (format!("{user}@"), hostport.to_string()),
            None => (String::new(), authority.to_string()),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        *url = format!("{scheme}://{userinfo}{addr}{tail}");

        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let proxy = Proxy {
            cut: cut.clone(),
            generation: generation.clone(),
        };
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut changed = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = changed.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Polls `/readyz` until its status is `want` (bounded); returns the last answer.
async fn readyz_until(server: &common::TestServer, want: StatusCode) -> reqwest::Response {
    let mut last = None;
    for _ in 0..120 {
        let response = server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .expect("/readyz answers");
        if response.status() == want {
            return response;
        }
        last = Some(response.status());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("/readyz never became {want}; last {last:?}");
}

/// A PUT that must be refused with 503 and `Retry-After`.
async fn put_refused(server: &common::TestServer, user: &common::TestUser, path: &str) {
    let asked = std::time::Instant::now();
    let put = server
        .http
        .put(server.storage(user, path))
        .bearer_auth(&user.token)
        .body("during the outage")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        put.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
        Some("2")
    );
    // Answered, not left hanging until a client gives up (the bound is generous: the
    // server waits at most `store::ACQUIRE_TIMEOUT` for Postgres).
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the 503 took {:?}",
        asked.elapsed()
    );
}

/// A PUT that must succeed, visible within the projection wait (201: the projector
/// retries at least every second, so it is following again), and then be readable.
async fn put_succeeds(server: &common::TestServer, user: &common::TestUser, path: &str) {
    let put = server
        .http
        .put(server.storage(user, path))
        .bearer_auth(&user.token)
        .body("after the outage")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    for _ in 0..120 {
        let get = server
            .http
            .get(server.storage(user, path))
            .send()
            .await
            .unwrap();
        if get.status() == StatusCode::OK {
            assert_eq!(get.text().await.unwrap(), "after the outage");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{path} never became readable");
}

/// The log's head, read over a direct connection (not through the proxy).
async fn log_head(env: &testkit::TestEnv) -> domain::EventSeq {
    let log = log::EventLog::connect(env.log.clone()).await.expect("log");
    log.head().await.expect("head")
}

#[tokio::test]
async fn without_nats_or_postgres_the_server_is_not_ready_and_recovers_without_restart() {
    let mut proxies = None;
    let server = common::start_with(|c| {
        c.metrics_listen = Some(([127, 0, 0, 1], 0).into());
        let postgres = Proxy::start(&mut c.database_url);
        let nats = Proxy::start(&mut c.nats_url);
        proxies = Some((postgres, nats));
    })
    .await;
    let (postgres, nats) = proxies.expect("proxies");
    let metrics = server.server.metrics_addr.expect("metrics listener");
    let user = server.user().await;

    let ready = readyz_until(&server, StatusCode::OK).await;
    assert_eq!(ready.text().await.unwrap(), "ready\n");

    for (name, proxy) in [("nats", &nats), ("postgres", &postgres)] {
        let head = log_head(&server.env).await;

        proxy.cut();
        let not_ready = readyz_until(&server, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(
            not_ready
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
        assert_eq!(
            not_ready.text().await.unwrap(),
            format!("not ready: {name} unavailable\n")
        );
        let text = scrape(&server.http, metrics).await;
        assert_eq!(
            sample(&text, "dependency_up", &[("dependency", name)]),
            Some(0.0),
            "{text}"
        );
        put_refused(&server, &user, &format!("/pub/outage/{name}.txt")).await;

        proxy.restore();
        readyz_until(&server, StatusCode::OK).await;
        let text = scrape(&server.http, metrics).await;
        assert_eq!(
            sample(&text, "dependency_up", &[("dependency", name)]),
            Some(1.0),
            "{text}"
        );
        // Nothing half-written: the refused write appended no event and left no file.
        assert_eq!(
            log_head(&server.env).await,
            head,
            "no event during the {name} outage"
        );
        let get = server
            .http
            .get(server.storage(&user, &format!("/pub/outage/{name}.txt")))
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), StatusCode::NOT_FOUND);

        put_succeeds(&server, &user, &format!("/pub/after/{name}.txt")).await;
    }
}
