//! The admin password check (`X-Admin-Password`).
//!
//! Both sides are hashed with BLAKE3 and the digests compared with
//! `constant_time_eq`: the comparison takes the same time wherever the first differing
//! byte is, and hashing first also hides the password's length.

use api::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The header carrying the operator's password (the reference's name).
pub const HEADER: &str = "x-admin-password";

/// The digest of the configured password.
#[derive(Clone)]
pub struct Expected(Arc<[u8; 32]>);

impl Expected {
    pub fn new(password: &str) -> Self {
        Expected(Arc::new(*blake3::hash(password.as_bytes()).as_bytes()))
    }

    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq::constant_time_eq_32(blake3::hash(given).as_bytes(), &self.0)
    }
}

pub async fn require_password(
    State(expected): State<Expected>,
    request: Request,
    next: Next,
) -> Response {
    match request.headers().get(HEADER) {
        None => ApiError::unauthorized("Missing admin password").into_response(),
        Some(given) if expected.matches(given.as_bytes()) => next.run(request).await,
        Some(_) => {
            tracing::warn!("admin request with a wrong password");
            ApiError::unauthorized("Invalid admin password").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_password_matches() {
        let expected = Expected::new("correct horse");
        assert!(expected.matches(b"correct horse"));
        assert!(!expected.matches(b"correct hors"));
        assert!(!expected.matches(b"correct horse "));
        assert!(!expected.matches(b""));
    }
}
