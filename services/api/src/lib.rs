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
pub mod rate_limit;
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

/// Seconds since the Unix epoch: the time unit of grants and bearer tokens.
pub fn now_secs() -> u64 {
    now_micros() / 1_000_000
}

/// Liveness: the process answers. Readiness, which also probes the dependencies, is
/// [`health::readyz`].
pub async fn healthz() -> &'static str {
    "ok"
}
