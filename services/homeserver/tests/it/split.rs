//! The split deployment: projector, write-api and read-api as separate processes.
//! A GET sent to the read-api right after the write-api answered sees the write.

use crate::common;

use common::split::spawn;
use std::time::Duration;

#[tokio::test]
async fn reads_from_another_process_see_every_acknowledged_write() {
    let env = testkit::TestEnv::new().await;
    let data = tempfile::tempdir().unwrap();
    let (_projector, projector_metrics) = spawn(
        "projector",
        &env,
        data.path(),
        &[("HOMESERVER_METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let (_writer, write_url) = spawn("write-api", &env, data.path(), &[]).await;
    let (_reader, read_url) = spawn("read-api", &env, data.path(), &[]).await;
    let (_events, events_url) = spawn("events", &env, data.path(), &[]).await;
    let (_gateway, gateway_url) = spawn(
        "gateway",
        &env,
        data.path(),
        &[
            ("HOMESERVER_GATEWAY_WRITE_API", &write_url),
            ("HOMESERVER_GATEWAY_READ_API", &read_url),
            ("HOMESERVER_GATEWAY_EVENTS", &events_url),
            ("HOMESERVER_DRIVE_WEB_EXPLORER", "true"),
        ],
    )
    .await;

    let (user, token) = common::user_via_log(&env).await;

    let http = reqwest::Client::new();
    let owner = user.public_key().to_z32();
    for i in 0..25 {
        let path = format!("/storage/{owner}/pub/split/{i}.txt");
        let put = http
            .put(format!("{write_url}{path}"))
            .bearer_auth(token.as_str())
            .body(format!("version {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), reqwest::StatusCode::CREATED);
        let get = http.get(format!("{read_url}{path}")).send().await.unwrap();
        assert_eq!(
            get.status(),
            reqwest::StatusCode::OK,
            "write {i} visible at once"
        );
        assert_eq!(get.text().await.unwrap(), format!("version {i}"));
    }
    // The gateway serves the `/drive` page itself (no service behind it owns it).
    let page = http
        .get(format!("{gateway_url}/drive"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert_eq!(
        page.headers()["content-security-policy"],
        drive::CONTENT_SECURITY_POLICY
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>Pubky Drive</title>")
    );
    // The same through the gateway, which forwards by method and path.
    let path = format!("/storage/{owner}/pub/split/via-gateway.txt");
    let put = http
        .put(format!("{gateway_url}{path}"))
        .bearer_auth(token.as_str())
        .body("through the gateway")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), reqwest::StatusCode::CREATED);
    let get = http
        .get(format!("{gateway_url}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "through the gateway");
    // The private Merkle tree through the gateway: the bearer token reaches the read-api
    // (the diff's POST too), and without it the answer is the storage read's 401.
    let private_root = format!("{gateway_url}/merkle/{owner}/root?tree=priv");
    let anonymous = http.get(&private_root).send().await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let signed = http
        .get(&private_root)
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), reqwest::StatusCode::OK);
    let signed: serde_json::Value = signed.json().await.unwrap();
    assert_eq!(signed["tree"], "priv");
    let diff_round = http
        .post(format!("{gateway_url}/merkle/{owner}/nodes?tree=priv"))
        .bearer_auth(token.as_str())
        .body(vec![0u8; 32])
        .send()
        .await
        .unwrap();
    assert_eq!(diff_round.status(), reqwest::StatusCode::OK);
    // A live WebSocket stream through the gateway (an upgraded, spliced connection):
    // the history event first, then a write made after the handshake.
    let ws_url = format!(
        "{}/events-ws?user={owner}&path=/pub/split/&live=true",
        gateway_url.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("WebSocket handshake through the gateway");
    let first = next_json(&mut socket).await;
    assert_eq!(first["path"], "/pub/split/0.txt", "{first}");
    let put = http
        .put(format!("{gateway_url}/storage/{owner}/pub/split/live.txt"))
        .bearer_auth(token.as_str())
        .body("live")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), reqwest::StatusCode::CREATED);
    let mut live = next_json(&mut socket).await;
    while live["path"] != "/pub/split/live.txt" {
        live = next_json(&mut socket).await;
    }
    assert_eq!(live["type"], "PUT");
    socket.close(None).await.ok();

    let feed = http
        .get(format!("{gateway_url}/events/"))
        .send()
        .await
        .unwrap();
    let feed = feed.text().await.unwrap();
    assert!(
        feed.contains(&format!("PUT pubky://{owner}/pub/split/via-gateway.txt")),
        "{feed}"
    );

    let del = http
        .delete(format!("{write_url}/storage/{owner}/pub/split/0.txt"))
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), reqwest::StatusCode::NO_CONTENT);
    let gone = http
        .get(format!("{read_url}/storage/{owner}/pub/split/0.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);

    // Every service, and the gateway (whose readiness is its upstreams'), is ready.
    for base in [&write_url, &read_url, &events_url, &gateway_url] {
        let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), reqwest::StatusCode::OK, "{base}");
        assert_eq!(ready.text().await.unwrap(), "ready\n");
    }
    // The projector's metrics listener: every event of this log projected (the
    // user's two account events, 27 PUTs, one DELETE), nothing left behind.
    let mut text = String::new();
    for _ in 0..40 {
        text = crate::metrics::scrape(&http, projector_metrics_addr(&projector_metrics)).await;
        if crate::metrics::sample(&text, "events_projected_total", &[]) == Some(30.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        crate::metrics::sample(&text, "events_projected_total", &[]),
        Some(30.0),
        "{text}"
    );
    assert_eq!(
        crate::metrics::sample(&text, "projector_lag_events", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(text.contains("service=\"projector\""), "{text}");

    // The gateway is ready only while the services behind it are.
    drop(_reader);
    let mut answer = None;
    for _ in 0..40 {
        let ready = http
            .get(format!("{gateway_url}/readyz"))
            .send()
            .await
            .unwrap();
        if ready.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            answer = Some(ready.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(answer.as_deref(), Some("not ready: read-api unavailable\n"));
}

#[tokio::test]
async fn a_split_service_ends_its_streams_with_their_cursor_and_exits_on_sigterm() {
    let env = testkit::TestEnv::new().await;
    let data = tempfile::tempdir().unwrap();
    let _projector = spawn("projector", &env, data.path(), &[]).await;
    let (_writer, write_url) = spawn("write-api", &env, data.path(), &[]).await;
    let (mut events, events_url) = spawn("events", &env, data.path(), &[]).await;
    let (user, token) = common::user_via_log(&env).await;
    let owner = user.public_key().to_z32();
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{write_url}/storage/{owner}/pub/term.txt"))
        .bearer_auth(token.as_str())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), reqwest::StatusCode::CREATED);
    let mut stream = http
        .get(format!("{events_url}/events-stream?user={owner}&live=true"))
        .send()
        .await
        .unwrap();
    let mut received = String::new();
    for _ in 0..20 {
        if received.contains("\n\n") {
            break;
        }
        let chunk = stream.chunk().await.unwrap().expect("a frame");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    let id = received
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .expect("an id line")
        .to_string();

    let pid = events.id().expect("a pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut rest = String::new();
    while let Some(chunk) = stream.chunk().await.expect("the stream ends cleanly") {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        rest.ends_with(&format!("retry: 2000\nid: {id}\n\n")),
        "{rest:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(60), events.wait())
        .await
        .expect("the service exits after draining")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// `http://host:port/metrics` as printed by a process -> its socket address.
fn projector_metrics_addr(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("a metrics address")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text frame, within 10 s.
async fn next_json(socket: &mut Ws) -> serde_json::Value {
    use futures::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    return serde_json::from_str(&text).expect("a JSON frame");
                }
                Some(Ok(_)) => continue,
                other => panic!("WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a frame within 10 s")
}

#[tokio::test]
async fn the_admin_api_runs_as_a_service_of_its_own() {
    // The rest of the homeserver in this process; the admin API in another one, on the
    // same log and database.
    let s = common::start().await;
    let user = s.user().await;
    let data = tempfile::tempdir().unwrap();
    let (_admin, admin_url) = spawn(
        "admin-api",
        &s.env,
        data.path(),
        &[
            ("HOMESERVER_ADMIN_LISTEN", "127.0.0.1:0"),
            ("HOMESERVER_ADMIN_PASSWORD", "split secret"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{admin_url}/users/{}/disable", user.z32()))
        .header("X-Admin-Password", "split secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // Answered once projected (by this process's projector): the write-api here sees it.
    let r = http
        .put(s.storage(&user, "/pub/after-disable.txt"))
        .bearer_auth(&user.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(r.text().await.unwrap(), "User is disabled");
    let info: serde_json::Value = http
        .get(format!("{admin_url}/info"))
        .header("X-Admin-Password", "split secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            info["num_users"].as_i64(),
            info["num_disabled_users"].as_i64()
        ),
        (Some(1), Some(1))
    );

    // Without a password the service refuses to start, and says why.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .arg("admin-api")
        .env("HOMESERVER_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("HOMESERVER_ADMIN_PASSWORD")
        .env("HOMESERVER_DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("there is no default password"), "{stderr}");
}
