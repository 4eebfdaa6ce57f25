//! The gateway's two listeners: Pubky TLS and plain HTTP.
//!
//! **Why two.** The published native SDK never speaks plain HTTP to a homeserver: it
//! resolves the homeserver key's pkarr packet and opens TLS to the `.` endpoint, accepting
//! the server only if it presents *the homeserver's Ed25519 key itself* as an RFC 7250 raw
//! public key ("Pubky TLS"; `reference/pubky-sdk-interop.md` §2.3). No certificate
//! authority is involved: the key is the identity, and the pkarr packet signed with it says
//! where to connect. Browsers cannot do that, so the same application is also served over
//! plain HTTP, meant to sit behind an ordinary CA-TLS reverse proxy for the ICANN domain
//! (or to be used directly on `localhost` in development, advertised through SvcParam
//! 65280). Both listeners serve the very same [`Router`]; only the transport differs.
//!
//! **Pubky TLS details** (what the SDK's verifier, pkarr's `CertVerifier`, expects):
//! * TLS 1.3 only. Raw public keys are a TLS 1.3 feature in rustls; pkarr's ready-made
//!   `Keypair::to_rpk_rustls_server_config` also enables TLS 1.2, so we build the same
//!   config from its `to_rpk_certified_key` with the version list pinned to 1.3.
//! * Ed25519 only: the only key we have, and the only scheme the verifier accepts.
//! * SNI ignored: clients send `<homeserver z32>` or `_pubky.<user z32>` as server name;
//!   the answer is the same key for every name.
//! * No ALPN: the SDK offers none, so the connection is HTTP/1.1. We serve HTTP/1.1 only
//!   (with upgrades, so WebSockets work; SSE is just a long streaming response).
//!
//! **Connection handling.** Each accepted socket is handled in its own task: the TLS
//! handshake has a deadline (a silent client must not pin a task forever), then hyper
//! serves the router with header-read timeouts and keep-alive. On shutdown the listener is
//! closed first (new connections are refused), every live connection is asked to finish
//! its in-flight request and close, and after a grace period whatever remains (e.g. an
//! endless SSE stream that the application did not end itself) is dropped. Upgraded
//! connections (WebSockets) are owned by the application's tasks from the moment of the
//! upgrade and must watch the application's own shutdown signal.
//!
//! Both listeners attach [`ConnectInfo<SocketAddr>`] with the peer address to every
//! request, so handlers and middleware see the same thing on either listener.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pkarr::Keypair;
use rustls::ServerConfig;
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{Instrument, debug, info, info_span, warn};

/// Limits of the Pubky TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsServeOptions {
    /// Deadline for a client to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for a client to send a request's headers once it started one.
    pub header_read_timeout: Duration,
    /// How long in-flight connections may continue after shutdown was requested.
    pub shutdown_grace: Duration,
}

impl Default for TlsServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The rustls server configuration of Pubky TLS for `keypair`: TLS 1.3, RFC 7250 raw public
/// key (the Ed25519 key itself), any SNI, no client authentication, no ALPN.
///
/// # Errors
///
/// Only if the ring provider rejects TLS 1.3, which it does not.
pub fn pubky_tls_server_config(keypair: &Keypair) -> Result<Arc<ServerConfig>, rustls::Error> {
    let resolver = AlwaysResolvesServerRawPublicKeys::new(Arc::new(keypair.to_rpk_certified_key()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(config))
}

/// Serves `app` over Pubky TLS with the homeserver `keypair` on `listener` until `shutdown`
/// completes, then drains connections (see the module docs) and returns.
///
/// # Errors
///
/// Building the TLS configuration failed. Accept errors are logged and retried, never
/// returned: a full file-descriptor table must not take the homeserver down.
pub async fn serve_pubky_tls(
    listener: TcpListener,
    keypair: &Keypair,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let config = pubky_tls_server_config(keypair).map_err(io::Error::other)?;
    serve_tls_with(listener, config, app, shutdown, TlsServeOptions::default()).await;
    Ok(())
}

/// [`serve_pubky_tls`] with an explicit server configuration and limits.
pub async fn serve_tls_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
    options: TlsServeOptions,
) {
    let local = listener.local_addr().ok();
    let span = info_span!("pubky_tls", addr = ?local);
    async move {
        let acceptor = TlsAcceptor::from(config);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        info!("listening for Pubky TLS");

        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = joined {
                        warn!(%error, "a connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(
                            serve_connection(
                                stream,
                                peer,
                                acceptor.clone(),
                                app.clone(),
                                stop_rx.clone(),
                                options,
                            )
                            .instrument(info_span!("conn", %peer)),
                        );
                    }
                    Err(error) => accept_error(error).await,
                },
            }
        }

        // Stop accepting first: from here on, connects are refused by the OS.
        drop(listener);
        let _ = stop_tx.send(true);
        info!(
            connections = connections.len(),
            "shutting down Pubky TLS; draining connections"
        );
        let drained = tokio::time::timeout(options.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                remaining = connections.len(),
                grace = ?options.shutdown_grace,
                "connections still open after the grace period; closing them"
            );
            connections.shutdown().await;
        }
        info!("Pubky TLS stopped");
    }
    .instrument(span)
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
    options: TlsServeOptions,
) {
    let _ = stream.set_nodelay(true);
    let tls = tokio::select! {
        () = stopped(&mut stop) => return,
        handshake = tokio::time::timeout(options.handshake_timeout, acceptor.accept(stream)) => {
            match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!("TLS handshake timed out");
                    return;
                }
            }
        }
    };

    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // `Router` is always ready and infallible (`Error = Infallible`).
        app.clone().oneshot(request)
    });

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    tokio::pin!(connection);

    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%error, "connection ended with an error");
    }
}

/// Resolves once shutdown was requested (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Errors of `accept` are about one connection (reset before accept) or about resources
/// (too many open files); in both cases keep serving, pausing briefly in the latter.
async fn accept_error(error: io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused => {
            debug!(%error, "connection failed before accept");
        }
        _ => {
            warn!(%error, "accept failed; pausing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Serves `app` over plain HTTP (for a reverse proxy or local browser development) until
/// `shutdown` completes, then lets in-flight requests finish (for at most
/// [`TlsServeOptions::default`]'s grace period, like the TLS listener) and returns.
///
/// # Errors
///
/// The underlying `axum::serve` failed.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr().ok();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopped_tx.send(());
    });
    info!(addr = ?local, "listening for plain HTTP");

    let grace = TlsServeOptions::default().shutdown_grace;
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async {
            // Only start the clock once shutdown has begun.
            if stopped_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            warn!(addr = ?local, ?grace, "plain HTTP connections still open after the grace period; leaving them");
            Ok(())
        }
    }
}
