//! The split deployment: projector, write-api and read-api as separate processes.
//! A GET sent to the read-api right after the write-api answered sees the write.

use crate::common;

use common::split::spawn;

#[tokio::test]
async fn reads_from_another_process_see_every_acknowledged_write() {
    let env = testkit::TestEnv::new().await;
    let data = tempfile::tempdir().unwrap();
    let _projector = spawn("projector", &env, data.path(), &[]).await;
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
