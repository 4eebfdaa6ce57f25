//! Who is asking: the REST sessions, presented the ways WebDAV clients can.
//!
//! File managers, rclone and cadaver speak HTTP Basic and nothing else, so besides
//! `Authorization: Bearer <token>` and the session cookie, Basic credentials whose
//! *password* is the session's bearer token are accepted (the user name is ignored:
//! the token alone says whose session it is; clients put the public key there). Basic
//! is accepted on `/dav` only. Every credential resolves to the very same `Session` the
//! REST routes use, so capabilities, revocation and expiry are the REST ones.

use crate::path;
use api::session::{bearer_session, cookie_session, token_session};
use api::{ApiError, AppState, Session};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use domain::secret::BearerToken;

/// The request's session: Bearer, else Basic with the token as password, else the
/// cookie of the drive the URL names.
pub async fn session(
    state: &AppState,
    headers: &HeaderMap,
    uri_path: &str,
) -> Result<Option<Session>, ApiError> {
    if let Some(session) = bearer_session(headers, state).await? {
        return Ok(Some(session));
    }
    if let Some(token) = basic_token(headers)
        && let Some(session) = token_session(&token, state).await?
    {
        return Ok(Some(session));
    }
    match path::cookie_owner(uri_path) {
        Some(owner) => cookie_session(headers, &owner, state).await,
        None => Ok(None),
    }
}

/// The bearer token in the password half of `Authorization: Basic`, if well-formed.
fn basic_token(headers: &HeaderMap) -> Option<BearerToken> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    BearerToken::parse(password)
}

/// 401 with the Basic challenge that makes WebDAV clients ask for credentials.
pub fn unauthorized() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Unauthorized",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"pubky\""),
    );
    response
}
