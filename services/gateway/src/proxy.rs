//! The split deployment's router: forwards each request to the service that owns it.
//!
//! `homeserver all` composes the services' routers in-process; split, each service is
//! its own process and the gateway routes by method and path: `PUT`/`DELETE` and the
//! authentication endpoints to the write-api, the event feeds to the events service,
//! everything else (reads) to the read-api. Bodies stream both ways (uploads of any
//! size, SSE), so the gateway holds no more than a chunk per connection.
//!
//! WebSocket upgrades (`/events-ws`) are forwarded too: the upgrade request goes to the
//! events service, and once both sides switched protocols the gateway copies bytes
//! between the two upgraded connections until either closes.

use api::health::{Dependency, Health};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;

/// Base URLs (`http://host:port`) of the services behind the gateway.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub write_api: String,
    pub read_api: String,
    pub events: String,
}

/// The gateway router's state (opaque: routes given to [`router`] take any state).
#[derive(Clone)]
pub struct Proxy {
    upstreams: Arc<Upstreams>,
    client: Client<HttpConnector, Body>,
}

/// A router that forwards every request to its service. `/healthz` and `/readyz` are
/// the gateway's own, and so are the routes of `own` (static pages such as `/drive`,
/// which need no service behind them); `health` is normally [`health`] of the same
/// upstreams.
pub fn router(upstreams: Upstreams, health: Health, own: Router<Proxy>) -> Router {
    let proxy = Proxy {
        upstreams: Arc::new(upstreams),
        client: client(),
    };
    let metrics = health.metrics().clone();
    own.route("/healthz", axum::routing::get(api::healthz))
        .route(
            "/readyz",
            axum::routing::get(move || async move { health.readiness().await }),
        )
        .fallback(forward)
        .with_state(proxy)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            api::metrics::track_http,
        ))
}

fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

type Probe = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

/// The gateway's readiness: each upstream service answers its own `/readyz` with 200
/// (so the gateway is ready only when the services behind it are).
pub fn health(upstreams: &Upstreams, metrics: api::metrics::Metrics) -> Health {
    let client = client();
    let probe = |name: &'static str, base: &str| {
        let client = client.clone();
        let url = format!("{base}/readyz");
        Dependency::Custom {
            name,
            probe: Arc::new(move || -> Probe {
                let client = client.clone();
                let url = url.clone();
                Box::pin(async move {
                    let Ok(uri) = url.parse::<Uri>() else {
                        return false;
                    };
                    let request = axum::http::Request::builder().uri(uri).body(Body::empty());
                    match request {
                        Ok(request) => client
                            .request(request)
                            .await
                            .is_ok_and(|r| r.status() == StatusCode::OK),
                        Err(_) => false,
                    }
                })
            }),
        }
    };
    Health::new(
        metrics,
        vec![
            probe("write-api", &upstreams.write_api),
            probe("read-api", &upstreams.read_api),
            probe("events", &upstreams.events),
        ],
    )
}

/// Which service owns a request.
fn upstream_of<'a>(upstreams: &'a Upstreams, method: &Method, path: &str) -> &'a str {
    let auth = path.starts_with("/auth/")
        || path == "/signup"
        || path == "/session"
        || path.starts_with("/signup_tokens/");
    if path.starts_with("/events/") || path == "/events-stream" || path == "/events-ws" {
        &upstreams.events
    } else if path.starts_with("/merkle/") || path.starts_with("/versions/") {
        // Merkle reads, including the diff's POST of wanted node hashes; version
        // history (whatever the method: the read-api answers 405, not the write-api).
        &upstreams.read_api
    } else if auth
        || path == "/dav"
        || path.starts_with("/dav/")
        || matches!(*method, Method::PUT | Method::DELETE | Method::POST)
        || matches!(method.as_str(), "LOCK" | "UNLOCK")
    {
        &upstreams.write_api
    } else {
        &upstreams.read_api
    }
}

async fn forward(State(proxy): State<Proxy>, mut request: Request) -> Response {
    let base = upstream_of(&proxy.upstreams, request.method(), request.uri().path());
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let Ok(uri) = format!("{base}{path_and_query}").parse::<Uri>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // The original Host stays: legacy requests name their owner in it.
    let host = request.headers().get(header::HOST).cloned();
    *request.uri_mut() = uri;
    if let Some(host) = host {
        request.headers_mut().insert(header::HOST, host);
    }
    let client_upgrade = asks_for_upgrade(&request).then(|| hyper::upgrade::on(&mut request));
    match proxy.client.request(request).await {
        Ok(mut response) => {
            if let Some(client_upgrade) = client_upgrade
                && response.status() == StatusCode::SWITCHING_PROTOCOLS
            {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(splice(client_upgrade, upstream_upgrade));
            }
            response.map(Body::new)
        }
        Err(e) => {
            tracing::warn!(error = %e, upstream = base, "upstream unavailable");
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            response
        }
    }
}

/// An HTTP/1.1 protocol upgrade request (`Connection: upgrade` plus `Upgrade`).
fn asks_for_upgrade(request: &Request) -> bool {
    let connection_upgrade = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && request.headers().contains_key(header::UPGRADE)
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%error, "upgraded connection ended with an error");
            }
        }
        Err(error) => tracing::warn!(%error, "protocol upgrade failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_to_the_service_that_owns_them() {
        let u = Upstreams {
            write_api: "w".into(),
            read_api: "r".into(),
            events: "e".into(),
        };
        assert_eq!(upstream_of(&u, &Method::PUT, "/storage/k/pub/a"), "w");
        assert_eq!(upstream_of(&u, &Method::DELETE, "/pub/a"), "w");
        let lock = Method::from_bytes(b"LOCK").unwrap();
        let unlock = Method::from_bytes(b"UNLOCK").unwrap();
        assert_eq!(upstream_of(&u, &lock, "/storage/k/pub/a"), "w");
        assert_eq!(upstream_of(&u, &unlock, "/storage/k/pub/a"), "w");
        assert_eq!(upstream_of(&u, &Method::GET, "/storage/k/pub/a"), "r");
        assert_eq!(upstream_of(&u, &Method::HEAD, "/pub/a"), "r");
        assert_eq!(upstream_of(&u, &Method::GET, "/info"), "r");
        assert_eq!(upstream_of(&u, &Method::GET, "/auth/grant/session"), "w");
        assert_eq!(upstream_of(&u, &Method::GET, "/session"), "w");
        assert_eq!(upstream_of(&u, &Method::GET, "/signup_tokens/X"), "w");
        assert_eq!(upstream_of(&u, &Method::GET, "/events/"), "e");
        assert_eq!(upstream_of(&u, &Method::GET, "/events-stream"), "e");
        // The diff round is a POST, and still a read.
        assert_eq!(upstream_of(&u, &Method::POST, "/merkle/k/nodes"), "r");
        assert_eq!(upstream_of(&u, &Method::GET, "/merkle/k/root"), "r");
        assert_eq!(upstream_of(&u, &Method::GET, "/versions/k/pub/a"), "r");
        // WebDAV, reads included, is served by the write-api.
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(upstream_of(&u, &propfind, "/dav/k/pub/"), "w");
        assert_eq!(upstream_of(&u, &Method::GET, "/dav/k/pub/a"), "w");
        assert_eq!(upstream_of(&u, &Method::HEAD, "/versions/k/pub/a"), "r");
        assert_eq!(upstream_of(&u, &Method::PUT, "/versions/k/pub/a"), "r");
    }
}
