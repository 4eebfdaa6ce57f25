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
    /// A dependency (NATS, Postgres, blob store) is down or too slow.
    Unavailable(String),
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
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Client(status, _) => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// How long clients should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 2;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client(status, text) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text,
            )
                .into_response(),
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

impl From<domain::authorization::Denied> for ApiError {
    fn from(denied: domain::authorization::Denied) -> Self {
        let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN);
        ApiError::Client(status, denied.to_string())
    }
}
