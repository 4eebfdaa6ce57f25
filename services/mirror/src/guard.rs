//! The mirror is read-only: a middleware on the client-facing router that refuses
//! writes to a mirrored user and names the primary on every answer about that user.
//!
//! Status of a refused write: **409 Conflict** (the request conflicts with the state of
//! the user here: a read-only copy), with the `Pubky-Mirror-Primary` header and a text
//! that names the primary, so a client or a person knows where to write instead. Not
//! 403, which the SDK and apps read as "this session lacks a capability", nor a
//! redirect, which a client would follow with a body it may not be able to resend.
//!
//! The same guard answers for users who moved away from this homeserver (docs/move.md):
//! their writes get **410 Gone** naming the homeserver they moved to
//! (`Pubky-Moved-To`), their reads are served with that header for the grace period
//! after the move, and 410 afterwards. The guard works from a set refreshed every few
//! seconds; the write path checks the move again on the state it appends after, so a
//! write racing the seal is refused too (`write_api::check_not_moved`).

use crate::MirrorSet;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Names the primary homeserver (z32 key) on every answer about a mirrored user.
pub const PRIMARY_HEADER: HeaderName = HeaderName::from_static("pubky-mirror-primary");

/// The text of a refused write.
pub fn refusal_text(user: &str, primary: &str) -> String {
    format!("{user} is mirrored here read-only: write to its primary homeserver {primary}")
}

/// The user a request is about: the owner of a storage, WebDAV, version, Merkle or
/// export path, else the legacy tenant (`pubky-host`, `Host`).
fn subject(request: &Request) -> Option<String> {
    let path = request.uri().path();
    for prefix in ["/storage/", "/dav/", "/versions/", "/merkle/", "/export/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let owner = rest.split('/').next()?;
            return domain::tenant::parse_storage_owner(owner)
                .ok()
                .map(|k| k.to_z32());
        }
    }
    if path.starts_with("/pub/") || path.starts_with("/priv/") {
        return api::tenant::legacy_owner_opt(request.uri(), request.headers()).map(|k| k.to_z32());
    }
    None
}

/// Whether a request changes storage: every method but the reading ones on storage
/// paths (`PUT`, `DELETE`, `LOCK`, `UNLOCK`) and WebDAV paths (`MKCOL`, `COPY`,
/// `MOVE`, `PROPPATCH`, … too).
fn is_write(request: &Request) -> bool {
    let path = request.uri().path();
    let storage = ["/storage/", "/dav/", "/pub/", "/priv/"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    let reading = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || request.method().as_str() == "PROPFIND";
    storage && !reading
}

pub async fn guard(State(set): State<MirrorSet>, request: Request, next: Next) -> Response {
    let Some(user) = subject(&request) else {
        return next.run(request).await;
    };
    if let Some((to, since_us)) = set.moved_to(&user) {
        let grace = u64::try_from(set.move_grace().as_micros()).unwrap_or(u64::MAX);
        let over = api::now_micros().saturating_sub(since_us) > grace;
        if is_write(&request) || over {
            return api::ApiError::Moved { user, to }.into_response();
        }
        let value = HeaderValue::from_str(&to).ok();
        let mut response = next.run(request).await;
        if let Some(value) = value {
            response
                .headers_mut()
                .insert(api::error::MOVED_TO_HEADER, value);
        }
        return response;
    }
    let Some(primary) = set.primary_of(&user) else {
        return next.run(request).await;
    };
    let value = HeaderValue::from_str(&primary).ok();
    let mut response = if is_write(&request) {
        (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            refusal_text(&user, &primary),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    if let Some(value) = value {
        response.headers_mut().insert(PRIMARY_HEADER, value);
    }
    response
}
