//! The one error type of the HTTP layer.
//!
//! Client errors carry the exact status and plain-text body that the reference server
//! answers (clients compare them). Dependency failures become 503 with `Retry-After`
//! and a generic text: the cause is logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub enum ApiError {
    /// A client error with its exact body text.
    Client(StatusCode, String),
    /// A client error that goes away with time: its exact body text, and the seconds
    /// after which a retry may succeed (`Retry-After`).
    ClientRetry(StatusCode, String, u64),
    /// A dependency (NATS, Postgres, blob store) is down or too slow.
    Unavailable(String),
    /// A write to a user who moved to another homeserver (docs/move.md): 410 Gone,
    /// naming the homeserver in the text and in [`MOVED_TO_HEADER`].
    Moved { user: String, to: String },
}

/// Names the homeserver (z32 key) a user moved to, on answers about that user from the
/// homeserver they left (docs/move.md).
pub const MOVED_TO_HEADER: axum::http::HeaderName =
    axum::http::HeaderName::from_static("pubky-moved-to");

/// The text of a refused write to a user who moved (docs/move.md).
pub fn moved_text(user: &str, to: &str) -> String {
    format!("{user} has moved to the homeserver {to}: write there")
}

impl ApiError {
    pub fn new(status: StatusCode, text: impl Into<String>) -> Self {
        ApiError::Client(status, text.into())
    }
    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, text)
    }
    pub fn unauthorized(text: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, text)
    }
    pub fn forbidden(text: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, text)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }
    pub fn retry_after(status: StatusCode, text: impl Into<String>, secs: u64) -> Self {
        ApiError::ClientRetry(status, text.into(), secs)
    }
    /// Writes refused because the event log is not the one the projections were built
    /// from (`projector::pairing`). Unlike an outage, the text is sent: it names both
    /// logs and the recovery command, and the operator reading a client's error report
    /// needs exactly that. `Retry-After` is long: an operator has to act first.
    pub fn log_mismatch(text: impl Into<String>) -> Self {
        ApiError::ClientRetry(
            StatusCode::SERVICE_UNAVAILABLE,
            text.into(),
            LOG_MISMATCH_RETRY_AFTER_SECS,
        )
    }
    /// The status and text a client sees for a client error; `None` for an outage (its
    /// cause is never sent) and a move (its text names two keys).
    pub fn client_answer(&self) -> Option<(StatusCode, &str)> {
        match self {
            ApiError::Client(status, text) | ApiError::ClientRetry(status, text, _) => {
                Some((*status, text))
            }
            ApiError::Unavailable(_) | ApiError::Moved { .. } => None,
        }
    }
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Client(status, _) | ApiError::ClientRetry(status, _, _) => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Moved { .. } => StatusCode::GONE,
        }
    }
}

/// How long clients should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 2;

/// `Retry-After` of writes refused for a mismatched log ([`ApiError::log_mismatch`]).
pub const LOG_MISMATCH_RETRY_AFTER_SECS: u64 = 60;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client(status, text) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text,
            )
                .into_response(),
            ApiError::ClientRetry(status, text, secs) => (
                status,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    ),
                    (header::RETRY_AFTER, HeaderValue::from(secs)),
                ],
                text,
            )
                .into_response(),
            ApiError::Moved { user, to } => {
                let mut response = (
                    StatusCode::GONE,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    moved_text(&user, &to),
                )
                    .into_response();
                if let Ok(value) = HeaderValue::from_str(&to) {
                    response.headers_mut().insert(MOVED_TO_HEADER, value);
                }
                response
            }
            ApiError::Unavailable(cause) => {
                tracing::error!(%cause, "dependency unavailable");
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "Service temporarily unavailable",
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                response
            }
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<log::LogError> for ApiError {
    fn from(e: log::LogError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<domain::session_slots::SlotRefusal> for ApiError {
    fn from(refusal: domain::session_slots::SlotRefusal) -> Self {
        use domain::session_slots::SlotRefusal;
        let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::CONFLICT);
        match refusal {
            SlotRefusal::LimitReached => ApiError::Client(status, refusal.to_string()),
            SlotRefusal::RateLimited { retry_after_secs } => {
                ApiError::ClientRetry(status, refusal.to_string(), retry_after_secs)
            }
        }
    }
}

impl From<domain::authorization::Denied> for ApiError {
    fn from(denied: domain::authorization::Denied) -> Self {
        let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN);
        ApiError::Client(status, denied.to_string())
    }
}
