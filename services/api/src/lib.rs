//! What every HTTP service of the homeserver shares: the application state, the one
//! error type, the request extractors (tenant, session) and the write path's "append,
//! then wait until projected" step.
//!
//! The write-api, read-api and events services each build their router on top of this;
//! `homeserver all` merges those routers in one process, the split deployment runs
//! them as separate processes behind the gateway.

pub mod bandwidth;
pub mod cors;
pub mod error;
pub mod health;
pub mod metrics;
pub mod pending;
pub mod rate_limit;
pub mod reads;
pub mod session;
pub mod state;
pub mod tenant;
pub mod writer;

pub use error::ApiError;
pub use session::{MaybeSession, Session, SessionKind};
pub use state::{AppState, RootSigner, ServerConfig, SignupMode};
pub use tenant::StorageTarget;

/// Microseconds since the Unix epoch: the time unit of events.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-08-01T12:00:00.123456Z`: how event
/// times are shown on stream lines and in version lists.
pub fn rfc3339(ts_us: u64) -> String {
    i64::try_from(ts_us)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| ts_us.to_string())
}

/// Seconds since the Unix epoch: the time unit of grants and bearer tokens.
pub fn now_secs() -> u64 {
    now_micros() / 1_000_000
}

/// Liveness: the process answers. Readiness, which also probes the dependencies, is
/// [`health::readyz`].
#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, description = "the process is alive", content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The health routes of every client-facing listener in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, health::readyz))]
pub struct ApiDoc;

/// The metrics listener's route, for the admin API's document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health::metrics))]
pub struct MetricsApiDoc;
