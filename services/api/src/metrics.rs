//! Prometheus metrics of one process, and the middleware that counts HTTP requests.
//!
//! One [`Metrics`] per process (held in `AppState`, or by the gateway and the projector
//! directly); every metric carries a constant `service` label naming the process role
//! (`all`, `write-api`, `read-api`, `events`, `projector`, `gateway`). It is served as
//! Prometheus text on a listener of its own (`metrics_listen`, see [`crate::health`]),
//! never on the client-facing ones.
//!
//! Labels never contain a key, a path or a secret: requests are labelled with the
//! router's *route template* (`/storage/{*rest}`) from [`MatchedPath`], never the raw
//! URI, and requests that no route matched (legacy owner-relative storage, which the
//! routers serve as their fallback, or anything the gateway forwards) share the label
//! `(fallback)`. Methods outside the standard set become `other`, so a client cannot
//! grow the label space.
//!
//! Gauges that describe shared state (projector lag, stored bytes, dependency health)
//! are sampled when `/metrics` is scraped (see [`crate::health::Health::sample`]), so
//! a scrape always reports the current values rather than the last periodic sample.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// The route label of requests that no route template matched.
pub const FALLBACK_ROUTE: &str = "(fallback)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    pub route: String,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabels {
    /// `files`, `account` or `operator`: the subject family of the event.
    pub family: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// `sse` or `ws`.
    pub transport: &'static str,
}

/// How a read that could go to the read replica went (see [`crate::reads`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaReadLabels {
    /// `replica` (caught up at once), `replica_waited`, or the primary's
    /// `fallback_lag` (not caught up within `read_replica_wait_ms`),
    /// `fallback_replica_down`, `fallback_log_down` (the target was not learned).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    pub dependency: &'static str,
}

/// The reference server's labels of `storage_request_count` (spec §8).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    /// `path` (`/storage/<owner>/…`) or `legacy` (owner from `pubky-host`/`Host`).
    pub addressing_mode: &'static str,
    /// `absent`, `matching` (names the request's owner) or `other`.
    pub pubky_host_header: &'static str,
    /// Whether the `pubky-host` query parameter was given.
    pub pubky_host_query: &'static str,
    /// The credential the request presented: `none`, `cookie` or `grant` (bearer).
    pub auth_method: &'static str,
}

struct Inner {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpRouteLabels, Histogram>,
    http_in_flight: Gauge,
    events_appended: Family<FamilyLabels, Counter>,
    events_projected: Counter,
    merkle_nodes_collected: Counter,
    projector_lag_events: Gauge,
    projector_lag_seconds: Gauge<f64, AtomicU64>,
    stream_connections: Family<TransportLabels, Gauge>,
    blob_bytes_written: Counter,
    blob_bytes_read: Counter,
    storage_used_bytes: Gauge,
    dependency_up: Family<DependencyLabels, Gauge>,
    signups: Counter,
    export_entries: Counter,
    storage_requests: Family<StorageLabels, Counter>,
    replica_reads: Family<ReplicaReadLabels, Counter>,
    replica_wait_seconds: Histogram,
    replica_lag_events: Gauge,
}

/// The metrics of one process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new("all")
    }
}

impl Metrics {
    /// A fresh registry whose metrics all carry `service="<service>"`.
    pub fn new(service: &'static str) -> Self {
        let mut registry =
            Registry::with_labels(std::iter::once(("service".into(), service.into())));
        let inner = Inner {
            http_requests: Family::default(),
            // 1 ms to ~33 s: storage requests wait for the projection (up to
            // `projection_wait_ms`), uploads can take longer and land in +Inf.
            http_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            http_in_flight: Gauge::default(),
            events_appended: Family::default(),
            events_projected: Counter::default(),
            merkle_nodes_collected: Counter::default(),
            projector_lag_events: Gauge::default(),
            projector_lag_seconds: Gauge::default(),
            stream_connections: Family::default(),
            blob_bytes_written: Counter::default(),
            blob_bytes_read: Counter::default(),
            storage_used_bytes: Gauge::default(),
            dependency_up: Family::default(),
            signups: Counter::default(),
            export_entries: Counter::default(),
            storage_requests: Family::default(),
            replica_reads: Family::default(),
            // 1 ms to ~4 s: replay lag is milliseconds, the wait is bounded (2 s).
            replica_wait_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            replica_lag_events: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            inner.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time until the response head, by route template and method",
            inner.http_duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled now",
            inner.http_in_flight.clone(),
        );
        registry.register(
            "events_appended",
            "Events this process appended to the log, by subject family",
            inner.events_appended.clone(),
        );
        registry.register(
            "events_projected",
            "Events this process's projector applied to Postgres",
            inner.events_projected.clone(),
        );
        registry.register(
            "merkle_nodes_collected",
            "Merkle nodes deleted by this process's periodic garbage collection",
            inner.merkle_nodes_collected.clone(),
        );
        registry.register(
            "projector_lag_events",
            "Log head sequence minus the projection watermark (sampled at scrape)",
            inner.projector_lag_events.clone(),
        );
        registry.register(
            "projector_lag_seconds",
            "Age of the oldest event not yet projected, 0 when caught up (sampled at scrape)",
            inner.projector_lag_seconds.clone(),
        );
        registry.register(
            "event_stream_active_connections",
            "Open live event streams, by transport",
            inner.stream_connections.clone(),
        );
        registry.register(
            "blob_bytes_written",
            "Bytes of uploads stored in the blob store",
            inner.blob_bytes_written.clone(),
        );
        registry.register(
            "blob_bytes_read",
            "Bytes of file bodies served from the blob store",
            inner.blob_bytes_read.clone(),
        );
        registry.register(
            "storage_used_bytes",
            "Bytes counted against user quotas (file sizes plus a per-entry overhead), summed over users (sampled at scrape)",
            inner.storage_used_bytes.clone(),
        );
        registry.register(
            "dependency_up",
            "1 when the dependency answered the last readiness probe, else 0",
            inner.dependency_up.clone(),
        );
        registry.register(
            "signup_count",
            "Accounts created through this process",
            inner.signups.clone(),
        );
        registry.register(
            "export_entries",
            "Files served in account export pages (GET /export/); their bytes count in blob_bytes_read",
            inner.export_entries.clone(),
        );
        registry.register(
            "storage_request_count",
            "Requests that reached a storage route with a resolved owner",
            inner.storage_requests.clone(),
        );
        registry.register(
            "replica_reads",
            "Reads that could go to the read replica, by outcome (replica, replica_waited, fallback_lag, fallback_replica_down, fallback_log_down)",
            inner.replica_reads.clone(),
        );
        registry.register(
            "replica_wait_seconds",
            "How long reads waited for the read replica, until it replayed their writes or they fell back to the primary (reads that waited at all)",
            inner.replica_wait_seconds.clone(),
        );
        registry.register(
            "replica_lag_events",
            "The primary's projection watermark minus the read replica's (sampled at scrape)",
            inner.replica_lag_events.clone(),
        );
        let inner = Inner { registry, ..inner };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }

    pub fn event_appended(&self, event: &domain::Event) {
        let family = match event.change.family() {
            domain::event::SubjectFamily::Files => "files",
            domain::event::SubjectFamily::Account => "account",
            domain::event::SubjectFamily::Operator => "operator",
        };
        self.inner
            .events_appended
            .get_or_create(&FamilyLabels { family })
            .inc();
        if matches!(event.change, domain::event::Change::UserSignedUp { .. }) {
            self.inner.signups.inc();
        }
    }

    /// The counter the projector increments by each batch it commits.
    pub fn events_projected(&self) -> Counter {
        self.inner.events_projected.clone()
    }

    /// The counter the periodic Merkle garbage collection increments by the nodes it
    /// deletes.
    pub fn merkle_nodes_collected(&self) -> Counter {
        self.inner.merkle_nodes_collected.clone()
    }

    pub fn set_projector_lag(&self, events: u64, seconds: f64) {
        self.inner
            .projector_lag_events
            .set(i64::try_from(events).unwrap_or(i64::MAX));
        self.inner.projector_lag_seconds.set(seconds);
    }

    pub fn set_storage_used_bytes(&self, bytes: u64) {
        self.inner
            .storage_used_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn blob_written(&self, bytes: u64) {
        self.inner.blob_bytes_written.inc_by(bytes);
    }

    pub fn blob_read(&self, bytes: u64) {
        self.inner.blob_bytes_read.inc_by(bytes);
    }

    /// One export page of `entries` files and `bytes` of content.
    pub fn export_page(&self, entries: u64, bytes: u64) {
        self.inner.export_entries.inc_by(entries);
        self.inner.blob_bytes_read.inc_by(bytes);
    }

    /// One read that could go to the replica, and how long it waited for it.
    pub fn replica_read(&self, outcome: &'static str, waited: std::time::Duration) {
        self.inner
            .replica_reads
            .get_or_create(&ReplicaReadLabels { outcome })
            .inc();
        if !waited.is_zero() {
            self.inner
                .replica_wait_seconds
                .observe(waited.as_secs_f64());
        }
    }

    pub fn set_replica_lag(&self, events: u64) {
        self.inner
            .replica_lag_events
            .set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    pub fn set_dependency_up(&self, dependency: &'static str, up: bool) {
        self.inner
            .dependency_up
            .get_or_create(&DependencyLabels { dependency })
            .set(i64::from(up));
    }

    /// Counts an open live stream until the returned guard is dropped.
    pub fn stream_opened(&self, transport: &'static str) -> StreamGuard {
        let gauge = self
            .inner
            .stream_connections
            .get_or_create(&TransportLabels { transport })
            .clone();
        gauge.inc();
        StreamGuard(gauge)
    }
}

/// Holds one count of `event_stream_active_connections`.
pub struct StreamGuard(Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware of the API services (`axum::middleware::from_fn_with_state(metrics,
/// track)`, added with `Router::layer` so that the matched route is known): counts
/// every request with its route template and status, times it until the response
/// head, and counts storage requests with the reference's labels.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = route_label(&request);
    if (route == "/storage/{*rest}" || route == FALLBACK_ROUTE)
        && let Some(labels) = storage_labels(request.uri(), request.headers())
    {
        metrics.inner.storage_requests.get_or_create(&labels).inc();
    }
    timed(metrics, route, request, next).await
}

/// [`track`] without the storage count: for the gateway, whose every request is a
/// fallback (forwarded) and which would count storage requests twice.
pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = route_label(&request);
    timed(metrics, route, request, next).await
}

fn route_label(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| FALLBACK_ROUTE.to_string(), |m| m.as_str().to_string())
}

/// Decrements `http_requests_in_flight` even when the request is dropped (the client
/// went away).
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn timed(metrics: Metrics, route: String, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let started = Instant::now();
    metrics.inner.http_in_flight.inc();
    let in_flight = InFlight(metrics.inner.http_in_flight.clone());
    let response = next.run(request).await;
    drop(in_flight);
    let elapsed = started.elapsed().as_secs_f64();
    metrics
        .inner
        .http_duration
        .get_or_create(&HttpRouteLabels {
            route: route.clone(),
            method,
        })
        .observe(elapsed);
    metrics
        .inner
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The reference's `storage_request_count` labels, when the request names an owner.
fn storage_labels(uri: &Uri, headers: &HeaderMap) -> Option<StorageLabels> {
    let owner = crate::tenant::request_tenant(uri, headers)?;
    let addressing_mode = if uri.path().starts_with("/storage/") {
        "path"
    } else {
        "legacy"
    };
    let pubky_host_header = match headers.get("pubky-host").and_then(|v| v.to_str().ok()) {
        None => "absent",
        Some(value) => match domain::tenant::resolve_legacy_tenant(None, Some(value), None) {
            Some(key) if key == owner => "matching",
            _ => "other",
        },
    };
    let pubky_host_query = uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("pubky-host=")));
    let auth_method = if crate::session::bearer_token(headers).is_some() {
        "grant"
    } else if crate::session::cookie_secret(headers, &owner).is_some() {
        "cookie"
    } else {
        "none"
    };
    Some(StorageLabels {
        addressing_mode,
        pubky_host_header,
        pubky_host_query: if pubky_host_query { "true" } else { "false" },
        auth_method,
    })
}
