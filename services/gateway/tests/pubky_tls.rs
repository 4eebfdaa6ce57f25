//! Pubky TLS end to end, the way the published SDK connects.
//!
//! The homeserver packet is published with `hs-pkarr-publish` on a local 3-node Mainline
//! testnet (127.0.0.1 only). The client side reproduces what pkarr's `reqwest-builder`
//! (used by the SDK) does, without reqwest: resolve the host name's first HTTPS endpoint
//! through pkarr (its DNS resolver does `resolve_https_endpoint` + `to_socket_addrs`), then
//! TLS with `rustls::ClientConfig::from(pkarr_client)` (the exact config the SDK passes to
//! `use_preconfigured_tls`: pkarr's raw-public-key `CertVerifier`, ring, no ALPN), server
//! name = URL host, then HTTP/1.1.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hs_gateway::{serve_plain, serve_pubky_tls};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mainline::Testnet;
use pkarr::dns::rdata::SVCB;
use pkarr::{Client, Keypair, SignedPacket};
use pkarr_publish::packet::PacketSpec;
use pkarr_publish::{DhtConfig, Publisher};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const DHT_TIMEOUT: Duration = Duration::from_millis(150);
/// Hang guard for network steps (not a timing assertion).
const GUARD: Duration = Duration::from_secs(20);

async fn testnet() -> Testnet {
    tokio::task::spawn_blocking(|| Testnet::builder(3).build().expect("local testnet"))
        .await
        .expect("testnet thread")
}

/// The homeserver side: publishes its packet (port = where the TLS server listens).
async fn publish_homeserver(net: &Testnet, keypair: &Keypair, tls_port: u16) {
    let publisher =
        Publisher::new(&DhtConfig::local(&net.bootstrap, DHT_TIMEOUT)).expect("publisher");
    let spec = PacketSpec {
        public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls_port,
        icann: None,
    };
    tokio::time::timeout(GUARD, publisher.publish_homeserver(keypair, &spec))
        .await
        .expect("guard")
        .expect("publish homeserver packet");
}

/// The client's pkarr client, configured like the SDK in a test (interop doc §5).
fn sdk_pkarr_client(net: &Testnet) -> Client {
    Client::builder()
        .no_default_network()
        .bootstrap(&net.bootstrap)
        .dht_report_policy(pkarr::dht::ReportPolicy::testnet())
        .dht_request_timeout(DHT_TIMEOUT)
        .build()
        .expect("pkarr client")
}

struct Server {
    port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(keypair: Keypair, app: Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_pubky_tls(listener, &keypair, app, async {
                let _ = rx.await;
            })
            .await
        });
        Server {
            port,
            shutdown: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(GUARD, self.task)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server result");
    }
}

/// Connects to `host` exactly like the SDK's reqwest client built from a pkarr client.
async fn connect(client: &Client, host: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let endpoint = tokio::time::timeout(GUARD, client.resolve_https_endpoint(host))
        .await
        .expect("guard")
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let addr = *endpoint
        .to_socket_addrs()
        .first()
        .expect("endpoint has a socket address");
    let tcp = TcpStream::connect(addr).await?;
    let config = rustls::ClientConfig::from(client.clone());
    let name = ServerName::try_from(host.to_string()).expect("server name");
    tokio::time::timeout(
        GUARD,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("guard")
}

async fn send(
    stream: TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> hyper::Response<hyper::body::Incoming> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(connection.with_upgrades());
    let request = hyper::Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    sender.send_request(request).await.expect("response")
}

async fn get_text(client: &Client, host: &str, path: &str) -> (StatusCode, String) {
    let stream = connect(client, host).await.expect("connect");
    let response = send(stream, host, path).await;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from the homeserver" }))
        .route(
            "/host",
            get(|headers: HeaderMap| async move {
                headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route("/ws", get(echo_ws))
}

async fn echo_ws(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Text(_)) && socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

/// A user packet whose `_pubky` record points at `homeserver` (what `signup` publishes).
async fn publish_user_pointing_at(client: &Client, homeserver: &Keypair) -> Keypair {
    let user = Keypair::random();
    let target = homeserver.to_z32();
    let packet = SignedPacket::builder()
        .https(
            "_pubky".try_into().expect("name"),
            SVCB::new(0, target.as_str().try_into().expect("name")),
            3600,
        )
        .sign(&user)
        .expect("user packet");
    client.publish(&packet).await.expect("publish user packet");
    user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_style_client_gets_200_from_the_published_homeserver() {
    let net = testnet().await;
    let homeserver = Keypair::random();
    let server = Server::start(homeserver.clone(), app()).await;
    publish_homeserver(&net, &homeserver, server.port).await;
    let client = sdk_pkarr_client(&net);
    let hs_host = homeserver.to_z32();

    // TLS 1.3, no ALPN (HTTP/1.1), and the raw public key is the homeserver key.
    let stream = connect(&client, &hs_host).await.expect("handshake");
    let (_, session) = stream.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(session.alpn_protocol(), None);
    let presented = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .expect("server presented a key");
    assert_eq!(
        presented.as_ref(),
        homeserver.public_key().to_public_key_der().as_bytes()
    );
    let response = send(stream, &hs_host, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"hello from the homeserver");

    assert_eq!(
        get_text(&client, &hs_host, "/peer").await,
        (StatusCode::OK, "127.0.0.1".to_string())
    );

    // Storage requests go to `_pubky.<user>`: SNI and Host name the user, the endpoint
    // (and the expected key) come from following the user's `_pubky` record.
    let user = publish_user_pointing_at(&client, &homeserver).await;
    let user_host = format!("_pubky.{}", user.to_z32());
    assert_eq!(
        get_text(&client, &user_host, "/host").await,
        (StatusCode::OK, user_host.clone())
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_expecting_a_different_key_fails_the_handshake() {
    let net = testnet().await;
    let homeserver = Keypair::random();
    let server = Server::start(homeserver.clone(), app()).await;
    // Another key's packet points at our server's address: a client that wants *that* key
    // (stale record, spoofed record, wrong port) must not accept our server.
    let other = Keypair::random();
    publish_homeserver(&net, &other, server.port).await;
    let client = sdk_pkarr_client(&net);

    let error = connect(&client, &other.to_z32())
        .await
        .expect_err("handshake must fail");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_presenting_another_key_than_published_fails_the_handshake() {
    let net = testnet().await;
    let published = Keypair::random();
    let impostor = Keypair::random();
    let server = Server::start(impostor, app()).await;
    publish_homeserver(&net, &published, server.port).await;
    let client = sdk_pkarr_client(&net);

    let error = connect(&client, &published.to_z32())
        .await
        .expect_err("handshake must fail");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_client_is_refused() {
    let net = testnet().await;
    let homeserver = Keypair::random();
    let server = Server::start(homeserver.clone(), app()).await;
    publish_homeserver(&net, &homeserver, server.port).await;
    let client = sdk_pkarr_client(&net);
    let endpoint = client
        .resolve_https_endpoint(&homeserver.to_z32())
        .await
        .expect("endpoint");

    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls12")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(pkarr::extra::tls::CertVerifier::from(
        client.clone(),
    )))
    .with_no_client_auth();
    let tcp = TcpStream::connect(endpoint.to_socket_addrs()[0])
        .await
        .expect("tcp");
    let name = ServerName::try_from(homeserver.to_z32()).expect("name");
    let result = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    // (pkarr's own `to_rpk_rustls_server_config` would complete this handshake.)
    let error = result.expect_err("TLS 1.2 must not be negotiated");
    assert!(error.to_string().contains("ProtocolVersion"), "{error}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_works_over_pubky_tls() {
    let net = testnet().await;
    let homeserver = Keypair::random();
    let server = Server::start(homeserver.clone(), app()).await;
    publish_homeserver(&net, &homeserver, server.port).await;
    let client = sdk_pkarr_client(&net);
    let host = homeserver.to_z32();

    let stream = connect(&client, &host).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(connection.with_upgrades());
    let request = hyper::Request::get("/ws")
        .header(header::HOST, &host)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upgraded = hyper::upgrade::on(response).await.expect("upgraded");
    let mut io = TokioIo::new(upgraded);

    // One masked text frame "hello" (RFC 6455 §5.2), echoed back unmasked.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    io.write_all(&frame).await.expect("write frame");
    let mut echo = [0u8; 7];
    tokio::time::timeout(GUARD, io.read_exact(&mut echo))
        .await
        .expect("guard")
        .expect("read echo");
    assert_eq!(&echo, b"\x81\x05hello");

    drop(io);
    server.stop().await;
}

type Chunks = Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>;

async fn stream_chunks(State(chunks): State<Chunks>) -> Response {
    let receiver = chunks.lock().expect("lock").take();
    match receiver {
        Some(receiver) => Body::from_stream(ReceiverStream::new(receiver).map(Ok::<_, Infallible>))
            .into_response(),
        None => StatusCode::GONE.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_finishes_streams_in_flight() {
    let net = testnet().await;
    let homeserver = Keypair::random();
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(4);
    let chunks: Chunks = Arc::new(Mutex::new(Some(chunk_rx)));
    let streaming = Router::new()
        .route("/stream", get(stream_chunks))
        .with_state(chunks);
    let server = Server::start(homeserver.clone(), streaming).await;
    let port = server.port;
    publish_homeserver(&net, &homeserver, port).await;
    let client = sdk_pkarr_client(&net);
    let host = homeserver.to_z32();

    let stream = connect(&client, &host).await.expect("connect");
    let mut body = send(stream, &host, "/stream").await.into_body();

    // The first chunk arrives while the response is still open (streaming, not buffered).
    chunk_tx
        .send(Bytes::from_static(b"event: one\n\n"))
        .await
        .expect("send");
    let first = tokio::time::timeout(GUARD, body.frame())
        .await
        .expect("guard")
        .expect("frame")
        .expect("frame ok")
        .into_data()
        .expect("data");
    assert_eq!(&first[..], b"event: one\n\n");

    // Shut down: the listener closes…
    let Server { shutdown, task, .. } = server;
    shutdown.expect("sender").send(()).expect("signal");
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections must be refused after shutdown");
    assert!(
        !task.is_finished(),
        "the in-flight stream keeps the server draining"
    );

    // …and the in-flight response still completes.
    chunk_tx
        .send(Bytes::from_static(b"event: two\n\n"))
        .await
        .expect("send");
    drop(chunk_tx);
    let mut rest = Vec::new();
    while let Some(frame) = tokio::time::timeout(GUARD, body.frame())
        .await
        .expect("guard")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            rest.extend_from_slice(&data);
        }
    }
    assert_eq!(rest, b"event: two\n\n");

    tokio::time::timeout(GUARD, task)
        .await
        .expect("server finishes after the stream")
        .expect("task")
        .expect("result");
}

#[tokio::test]
async fn plain_http_listener_serves_the_same_router_and_stops() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_plain(listener, app(), async {
        let _ = rx.await;
    }));

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    for (path, expected) in [("/", "hello from the homeserver"), ("/peer", "127.0.0.1")] {
        let response = sender
            .send_request(
                hyper::Request::get(path)
                    .header(header::HOST, "localhost")
                    .body(Empty::<Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], expected.as_bytes());
    }
    drop(sender);

    tx.send(()).expect("signal");
    tokio::time::timeout(GUARD, task)
        .await
        .expect("stops")
        .expect("task")
        .expect("result");
}
