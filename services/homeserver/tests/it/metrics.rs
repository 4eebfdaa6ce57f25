//! The metrics listener after a scripted workload: exact counter values, and no key,
//! path or secret in any label.

use crate::common;

use reqwest::StatusCode;
use reqwest::header::COOKIE;

/// The value of the sample `name` whose labels are exactly `labels` plus `service`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let pairs: Vec<(&str, &str)> = rest
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        let matches = pairs.len() == labels.len() + 1
            && labels.iter().all(|l| pairs.contains(l))
            && pairs.iter().any(|(k, _)| *k == "service");
        matches.then(|| value.parse().ok()).flatten()
    })
}

pub async fn scrape(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics text")
}

#[tokio::test]
async fn a_scripted_workload_shows_in_the_metrics_with_exact_values() {
    let server = common::start_with(|c| c.metrics_listen = Some(([127, 0, 0, 1], 0).into())).await;
    let metrics = server.server.metrics_addr.expect("metrics listener");
    let http = &server.http;

    // Signup over HTTP (one account event), and a user made directly in the log (two
    // account events this process projects but did not append).
    let (alice, cookie) = server.cookie_signup().await;
    let bob = server.user().await;

    let a = format!("/storage/{alice}/pub/metrics/a.txt");
    let put = http
        .put(server.url(&a))
        .header(COOKIE, &cookie)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let legacy = http
        .put(server.url("/pub/metrics/b.txt"))
        .header("pubky-host", &alice)
        .header(COOKIE, &cookie)
        .body("world!")
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), StatusCode::CREATED);
    let put = http
        .put(server.storage(&bob, "/pub/metrics/c.txt"))
        .bearer_auth(&bob.token)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let get = http.get(server.url(&a)).send().await.unwrap();
    assert_eq!(get.text().await.unwrap(), "hello");
    let get = http
        .get(server.url("/pub/metrics/b.txt"))
        .header("pubky-host", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "world!");
    let delete = http
        .delete(server.url(&a))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let gone = http.get(server.url(&a)).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // A live SSE stream, held open while scraping: read until both of alice's
    // remaining history events arrived (PUT a, PUT b, DEL a).
    let mut stream = http
        .get(server.url(&format!("/events-stream?user={alice}&live=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut received = String::new();
    for _ in 0..20 {
        if received.matches("\n\n").count() >= 3 {
            break;
        }
        let chunk = stream.chunk().await.unwrap().expect("a frame");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(received.matches("\n\n").count(), 3, "{received}");

    let text = scrape(http, metrics).await;
    let value = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    let requests = |route: &str, method: &str, status: &str| {
        value(
            "http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    let storage = "/storage/{*rest}";
    assert_eq!(requests("/signup", "POST", "200"), Some(1.0), "{text}");
    assert_eq!(requests(storage, "PUT", "201"), Some(2.0), "{text}");
    assert_eq!(requests("(fallback)", "PUT", "201"), Some(1.0), "{text}");
    assert_eq!(requests(storage, "GET", "200"), Some(1.0), "{text}");
    assert_eq!(requests("(fallback)", "GET", "200"), Some(1.0), "{text}");
    assert_eq!(requests(storage, "DELETE", "204"), Some(1.0), "{text}");
    assert_eq!(requests(storage, "GET", "404"), Some(1.0), "{text}");
    assert_eq!(
        value(
            "http_request_duration_seconds_count",
            &[("route", storage), ("method", "PUT")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value("signup_count_total", &[]), Some(1.0), "{text}");
    // Appended here: alice's signup, three PUTs and one DELETE.
    assert_eq!(
        value("events_appended_total", &[("family", "account")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("events_appended_total", &[("family", "files")]),
        Some(4.0),
        "{text}"
    );
    // Projected: those five and bob's two account events.
    assert_eq!(value("events_projected_total", &[]), Some(7.0), "{text}");
    assert_eq!(value("projector_lag_events", &[]), Some(0.0), "{text}");
    assert_eq!(value("projector_lag_seconds", &[]), Some(0.0), "{text}");
    assert_eq!(value("blob_bytes_written_total", &[]), Some(14.0), "{text}");
    assert_eq!(value("blob_bytes_read_total", &[]), Some(11.0), "{text}");
    // As quotas count it: alice's b.txt (6) and bob's c.txt (3), each with the
    // per-entry overhead; a.txt was deleted.
    let used = 9 + 2 * store::projection::ENTRY_OVERHEAD_BYTES;
    assert_eq!(
        value("storage_used_bytes", &[]),
        Some(used as f64),
        "{text}"
    );
    assert_eq!(
        value("event_stream_active_connections", &[("transport", "sse")]),
        Some(1.0),
        "{text}"
    );
    for dependency in ["postgres", "nats"] {
        assert_eq!(
            value("dependency_up", &[("dependency", dependency)]),
            Some(1.0),
            "{text}"
        );
    }
    let storage_requests = |mode: &str, header: &str, auth: &str| {
        value(
            "storage_request_count_total",
            &[
                ("addressing_mode", mode),
                ("pubky_host_header", header),
                ("pubky_host_query", "false"),
                ("auth_method", auth),
            ],
        )
    };
    assert_eq!(
        storage_requests("path", "absent", "cookie"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        storage_requests("path", "absent", "none"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        storage_requests("path", "absent", "grant"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        storage_requests("legacy", "matching", "cookie"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        storage_requests("legacy", "matching", "none"),
        Some(1.0),
        "{text}"
    );

    // Never a key, a path or a secret in a label.
    let cookie_secret = cookie.split_once('=').map(|(_, v)| v).unwrap_or_default();
    for secret in [
        alice.as_str(),
        bob.z32().as_str(),
        bob.token.as_str(),
        cookie_secret,
        "/pub/",
        "metrics/",
    ] {
        assert!(!text.contains(secret), "{secret:?} appears in:\n{text}");
    }

    // The stream's count goes when the stream does (the server notices the closed
    // connection at the latest on its next keep-alive).
    drop(stream);
    let mut open = None;
    for _ in 0..40 {
        let text = scrape(http, metrics).await;
        open = sample(
            &text,
            "event_stream_active_connections",
            &[("transport", "sse")],
        );
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(open, Some(0.0));
}
