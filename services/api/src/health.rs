//! Liveness, readiness and the metrics listener.
//!
//! * `GET /healthz` (liveness): the process answers. It never looks at dependencies, so
//!   an orchestrator does not restart a healthy process because Postgres is down.
//! * `GET /readyz` (readiness): 200 `ready` when every dependency of this service
//!   answers within [`PROBE_TIMEOUT`] (Postgres: `SELECT 1`; NATS: connected and a
//!   JetStream stream-info request; the gateway: its upstreams' `/readyz`), else 503
//!   with `Retry-After` and a body naming what is down. Each probe also sets
//!   `dependency_up{dependency=…}`. Nothing is cached: when a dependency returns, the
//!   next probe says so, without a restart.
//! * With a read replica (`read_database_url`), `/readyz` also probes it, but a
//!   replica that does not answer leaves the service ready: reads then go to the
//!   primary (see [`crate::reads`]), so taking the service out of rotation would only
//!   lose capacity. The body says so (`ready (degraded: …)`), `dependency_up{dependency=
//!   "postgres_replica"}` is 0, and a warning is logged.
//! * The metrics listener (`metrics_listen`) serves `GET /metrics` (Prometheus text,
//!   unauthenticated, as the reference) next to `/healthz` and `/readyz`, so a process
//!   without a client listener (the projector) can be probed too.

use crate::error::RETRY_AFTER_SECS;
use crate::metrics::Metrics;
use crate::{AppState, now_micros};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long one dependency probe may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Something a service needs in order to do its work.
#[derive(Clone)]
pub enum Dependency {
    Postgres(store::Store),
    Nats(Box<log::EventLog>),
    /// Any other probe, e.g. an upstream service of the gateway; `name` is the label.
    Custom {
        name: &'static str,
        probe: Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>,
    },
}

impl Dependency {
    pub fn name(&self) -> &'static str {
        match self {
            Dependency::Postgres(_) => "postgres",
            Dependency::Nats(_) => "nats",
            Dependency::Custom { name, .. } => name,
        }
    }

    async fn probe(&self) -> bool {
        let answered = match self {
            Dependency::Postgres(store) => tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await,
            Dependency::Nats(log) => {
                // A stream-info request proves JetStream answers, not just the socket.
                let probe = async { log.is_connected() && log.head().await.is_ok() };
                tokio::time::timeout(PROBE_TIMEOUT, probe).await
            }
            Dependency::Custom { probe, .. } => tokio::time::timeout(PROBE_TIMEOUT, probe()).await,
        };
        answered.unwrap_or(false)
    }
}

struct Inner {
    metrics: Metrics,
    dependencies: Vec<Dependency>,
    /// Log and projections whose distance is reported as projector lag.
    projection: Option<(log::EventLog, store::Store)>,
    /// The read replica, probed but not required (see the module docs).
    replica: Option<store::ReadReplica>,
}

/// The `dependency` label of the read replica.
pub const REPLICA: &str = "postgres_replica";

/// The health of one service: its dependencies, and the gauges sampled at scrape.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl Health {
    pub fn new(metrics: Metrics, dependencies: Vec<Dependency>) -> Self {
        Health {
            inner: Arc::new(Inner {
                metrics,
                dependencies,
                projection: None,
                replica: None,
            }),
        }
    }

    /// Also report the projector lag and stored bytes of `log` and `store` at scrape.
    pub fn with_projection(self, log: log::EventLog, store: store::Store) -> Self {
        let inner = Inner {
            metrics: self.inner.metrics.clone(),
            dependencies: self.inner.dependencies.clone(),
            projection: Some((log, store)),
            replica: self.inner.replica.clone(),
        };
        Health {
            inner: Arc::new(inner),
        }
    }

    /// Also probe `replica` (without requiring it) and report its lag at scrape.
    pub fn with_replica(self, replica: store::ReadReplica) -> Self {
        let inner = Inner {
            metrics: self.inner.metrics.clone(),
            dependencies: self.inner.dependencies.clone(),
            projection: self.inner.projection.clone(),
            replica: Some(replica),
        };
        Health {
            inner: Arc::new(inner),
        }
    }

    /// Whether the read replica answers (`None` without one); sets its gauge.
    async fn replica_up(&self) -> Option<bool> {
        let replica = self.inner.replica.as_ref()?;
        // A cluster that is no replica of the primary is not read: down as well.
        let up = !replica.is_foreign()
            && tokio::time::timeout(PROBE_TIMEOUT, replica.store().ping())
                .await
                .unwrap_or(false);
        self.inner.metrics.set_dependency_up(REPLICA, up);
        if !up {
            tracing::warn!("the read replica does not answer: reads go to the primary");
        }
        Some(up)
    }

    /// The usual health of a service with `AppState`: Postgres and NATS, with the
    /// projection gauges.
    pub fn of_state(state: &AppState) -> Self {
        Health::new(
            state.metrics.clone(),
            vec![
                Dependency::Postgres(state.store.clone()),
                Dependency::Nats(Box::new(state.log.clone())),
            ],
        )
        .with_projection(state.log.clone(), state.store.clone())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The names of the dependencies that do not answer (probed concurrently).
    pub async fn unavailable(&self) -> Vec<&'static str> {
        let probes = self.inner.dependencies.iter().map(|d| async move {
            let up = d.probe().await;
            self.inner.metrics.set_dependency_up(d.name(), up);
            (d.name(), up)
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .filter(|(_, up)| !up)
            .map(|(name, _)| name)
            .collect()
    }

    /// Refreshes the gauges that describe shared state: dependency health, projector
    /// lag and stored bytes. A gauge whose source does not answer keeps its last value
    /// (`dependency_up` says why).
    pub async fn sample(&self) {
        let down = self.unavailable().await;
        let Some((log, store)) = &self.inner.projection else {
            return;
        };
        if !down.is_empty() {
            return;
        }
        let sampled = async {
            let head = log.head().await.ok()?;
            let watermark = store.watermark().await.ok()?;
            let lag = head.0.saturating_sub(watermark.0);
            // The age of the oldest unprojected event: how stale a read can be now.
            let seconds = if lag == 0 {
                0.0
            } else {
                let oldest = log.event_at(domain::EventSeq(watermark.0 + 1)).await.ok()?;
                now_micros().saturating_sub(oldest.event.ts) as f64 / 1e6
            };
            let used = store.total_used_bytes().await.ok()?;
            Some((lag, seconds, used))
        };
        if let Ok(Some((lag, seconds, used))) = tokio::time::timeout(PROBE_TIMEOUT, sampled).await {
            self.inner.metrics.set_projector_lag(lag, seconds);
            self.inner.metrics.set_storage_used_bytes(used);
        }
        self.sample_replica_lag(store).await;
    }

    /// `replica_lag_events`: the primary's watermark minus the replica's.
    async fn sample_replica_lag(&self, primary: &store::Store) {
        let Some(replica) = &self.inner.replica else {
            return;
        };
        if self.replica_up().await != Some(true) {
            return;
        }
        let sampled = async {
            let ahead = primary.watermark().await.ok()?;
            let behind = replica.watermark().await.ok()?;
            Some(ahead.0.saturating_sub(behind.0))
        };
        if let Ok(Some(lag)) = tokio::time::timeout(PROBE_TIMEOUT, sampled).await {
            self.inner.metrics.set_replica_lag(lag);
        }
    }

    /// The text of a mismatch between the log and the projections, when this process
    /// found one (`projector::pairing`): not ready until an operator resolves it.
    fn log_mismatch(&self) -> Option<String> {
        self.inner.dependencies.iter().find_map(|d| match d {
            Dependency::Nats(log) => match log.pairing() {
                log::identity::Pairing::Mismatched(text) => Some(text),
                _ => None,
            },
            _ => None,
        })
    }

    /// The `/readyz` answer.
    pub async fn readiness(&self) -> Response {
        if let Some(text) = self.log_mismatch() {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {text}\n"),
            )
                .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::error::LOG_MISMATCH_RETRY_AFTER_SECS),
            );
            return response;
        }
        let (down, replica_up) = tokio::join!(self.unavailable(), self.replica_up());
        if down.is_empty() {
            return match replica_up {
                Some(false) => (
                    StatusCode::OK,
                    format!("ready (degraded: {REPLICA} unavailable, reads go to the primary)\n"),
                )
                    .into_response(),
                _ => (StatusCode::OK, "ready\n").into_response(),
            };
        }
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {} unavailable\n", down.join(", ")),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        response
    }
}

/// `GET /readyz` on the client listeners of the services with `AppState`.
#[utoipa::path(get, path = "/readyz", tag = "server", responses((status = 200, description = "ready: Postgres, NATS and the projections in step"), (status = 503, description = "not ready, and why")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    state.health.readiness().await
}

/// The router of the metrics listener: `/metrics`, `/healthz`, `/readyz`.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(crate::healthz))
        .route(
            "/readyz",
            get(|State(health): State<Health>| async move { health.readiness().await }),
        )
        .with_state(health)
}

#[utoipa::path(get, path = "/metrics", tag = "operations", description = "Prometheus metrics (OpenMetrics text), on the metrics listener (`metrics_listen`), not on the client or admin listeners.", responses((status = 200, description = "the metrics", content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(health): State<Health>) -> Response {
    health.sample().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics().render(),
    )
        .into_response()
}

/// Binds the metrics listener and serves it until `shutdown` resolves. Returns the
/// bound address (the configured port may be 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "metrics listener");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(health))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok((local, task))
}
