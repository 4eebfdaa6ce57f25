//! Legacy cookie auth (spec §3.3, §4.1, §4.3, §4.4, §14.7): deprecated but still used by
//! older clients and e2e suites, so bodies, texts and `Set-Cookie` attributes match the
//! reference byte for byte.
//!
//! An AuthToken may be used once. The reference remembers used tokens in process memory,
//! which neither survives a restart nor is shared by a second instance (spec §11); here
//! the token's replay id travels in the event that opens the session
//! (`CookieSessionCreated`, or the `cookie_session` of a `UserSignedUp`) and is
//! projected into `used_nonces`. Signin checks it after reading the user row, so the
//! append's expected sequence catches a concurrent use on another instance; signup
//! appends expecting an empty subject, so a concurrent second use meets 409.
//!
//! `POST /signup` appends one event: a `UserSignedUp` whose `cookie_session` carries the
//! new session and the token's replay id (one request, one event), so the account and
//! its first session exist together or not at all. `POST /session` appends a
//! `CookieSessionCreated`.

use api::session::cookie_session;
use api::tenant::legacy_owner;
use api::{ApiError, AppState, MaybeSession, SessionKind, now_micros};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use domain::auth_token::{AuthToken, AuthTokenError, ReplayId};
use domain::event::{Change, CookieSessionStart, Digest};
use domain::secret::CookieSecret;
use domain::session_record::CookieSessionRecord;
use domain::{Capabilities, PublicKey};
use log::Expected;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::signup::{Opening, SignupQuery, create_user};
use super::{append, no_session, parse_stored, retry};

/// A cookie session lives a year in the browser (none server-side).
const COOKIE_MAX_AGE_SECS: u64 = 31_536_000;

/// `POST /signup[?signup_token=]`: body = AuthToken; creates the user and a session.
#[utoipa::path(post, path = "/signup", operation_id = "cookie_signup", tag = "auth", params(("signup_token" = Option<String>, Query)), request_body(content = Vec<u8>, description = "an AuthToken", content_type = "application/octet-stream"), responses((status = 200, description = "the session record and its cookie"), (status = 400, description = "a malformed token"), (status = 401, description = "a bad or replayed token, an unknown or used signup token"), (status = 409, description = "the user exists")))]
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty, event_seq = tracing::field::Empty))]
pub(crate) async fn signup(
    State(state): State<AppState>,
    Query(query): Query<SignupQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let signup_token = query.token()?;
    let token = verify_token(&body)?;
    tracing::Span::current().record("user", token.public_key.to_z32());
    refuse_replay(&state, &token).await?;
    let session = NewSession::for_token(&token);
    let opening = Opening {
        cookie_session: Some(session.start()),
        pop_nonce: None,
    };
    create_user(&state, &token.public_key, signup_token, opening).await?;
    Ok(session.respond(&headers, &token.public_key))
}

/// `POST /session`: body = AuthToken of an existing (possibly disabled) user.
#[utoipa::path(post, path = "/session", tag = "auth", request_body(content = Vec<u8>, description = "an AuthToken", content_type = "application/octet-stream"), responses((status = 200, description = "the session record and its cookie"), (status = 401, description = "a bad or replayed token"), (status = 404, description = "no such user")))]
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty, event_seq = tracing::field::Empty))]
pub(crate) async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = verify_token(&body)?;
    tracing::Span::current().record("user", token.public_key.to_z32());
    open_session(&state, &headers, &token).await
}

/// `GET /session`: the cookie session of the request tenant; `created_at` in seconds.
#[utoipa::path(get, path = "/session", operation_id = "get_cookie_session", tag = "auth", responses((status = 200, description = "the cookie session record"), (status = 401, description = "no cookie session")))]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
) -> Result<Response, ApiError> {
    let session = session.ok_or_else(no_session)?;
    let SessionKind::Cookie { secret_hash } = session.kind else {
        return Err(ApiError::unauthorized("Unauthorized"));
    };
    let found = state
        .store
        .cookie_session(&secret_hash)
        .await?
        .ok_or_else(no_session)?;
    let record = CookieSessionRecord {
        public_key: session.user,
        created_at: (found.created_us / 1_000_000).max(0) as u64,
        capabilities: rendered(&parse_stored(&found.capabilities)),
    };
    Ok(octet_stream(record.encode()).into_response())
}

/// `DELETE /session`: ends the tenant's cookie session if the request carries one, and
/// always answers 200 with a removal cookie.
#[utoipa::path(delete, path = "/session", tag = "auth", responses((status = 200, description = "signed out; a removal cookie")))]
#[tracing::instrument(skip_all, fields(event_seq = tracing::field::Empty))]
pub(crate) async fn signout(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = legacy_owner(&uri, &headers)?;
    if let Some(session) = cookie_session(&headers, &tenant, &state).await?
        && let SessionKind::Cookie { secret_hash } = session.kind
    {
        let _guard = state.lock_user(&tenant).await;
        let (state, tenant) = (&state, &tenant);
        retry(|| async move {
            let Some(row) = state.store.user(tenant).await? else {
                return Ok(Some(()));
            };
            let change = Change::CookieSessionEnded {
                secret_hash: Digest(secret_hash),
            };
            let expected = Expected::LastSeq(row.acct_seq);
            Ok(append(state, tenant, change, expected).await?.map(|_| ()))
        })
        .await?;
    }
    let removal = cookie(&headers, &tenant, "", 0, SystemTime::now() - YEAR);
    Ok((StatusCode::OK, [(header::SET_COOKIE, removal)]).into_response())
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn verify_token(body: &[u8]) -> Result<AuthToken, ApiError> {
    AuthToken::verify_with(body, now_micros(), |caps| {
        caps.parse::<Capabilities>().is_ok()
    })
    .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The `used_nonces` id of an AuthToken. The `:`s keep it apart from PoP nonces, which
/// are base64url.
fn replay_key(id: ReplayId) -> String {
    let key = PublicKey::try_from(&id.public_key).map(|k| k.to_z32());
    format!(
        "authtoken:{}:{}",
        id.timestamp_micros,
        key.unwrap_or_default()
    )
}

async fn refuse_replay(state: &AppState, token: &AuthToken) -> Result<(), ApiError> {
    if state
        .store
        .nonce_used(&replay_key(token.replay_id()))
        .await?
    {
        return Err(ApiError::bad_request(
            AuthTokenError::AlreadyUsed.to_string(),
        ));
    }
    Ok(())
}

/// A cookie session about to be opened for an AuthToken: its secret exists only here
/// and in the response; events carry [`NewSession::start`].
struct NewSession {
    secret: CookieSecret,
    capabilities: Capabilities,
    auth_token_id: String,
}

impl NewSession {
    fn for_token(token: &AuthToken) -> Self {
        NewSession {
            secret: CookieSecret::from_random(rand::random()),
            capabilities: parse_stored(&token.capabilities),
            auth_token_id: replay_key(token.replay_id()),
        }
    }

    /// The session as the events record it.
    fn start(&self) -> CookieSessionStart {
        CookieSessionStart {
            secret_hash: Digest(self.secret.hash()),
            capabilities: self.capabilities.to_string(),
            auth_token_id: self.auth_token_id.clone(),
        }
    }

    /// The record (`created_at` in microseconds) and the cookie.
    fn respond(&self, headers: &HeaderMap, user: &PublicKey) -> Response {
        let record = CookieSessionRecord {
            public_key: user.clone(),
            created_at: now_micros(),
            capabilities: rendered(&self.capabilities),
        };
        let expires = SystemTime::now() + Duration::from_secs(COOKIE_MAX_AGE_SECS);
        let cookie = cookie(
            headers,
            user,
            self.secret.as_str(),
            COOKIE_MAX_AGE_SECS,
            expires,
        );
        (
            [(header::SET_COOKIE, cookie)],
            octet_stream(record.encode()),
        )
            .into_response()
    }
}

/// Appends `CookieSessionCreated` for the token's (existing) user and answers with the
/// record and the cookie.
async fn open_session(
    state: &AppState,
    headers: &HeaderMap,
    token: &AuthToken,
) -> Result<Response, ApiError> {
    let user = &token.public_key;
    let session = NewSession::for_token(token);
    let start = session.start();
    let change = Change::CookieSessionCreated {
        secret_hash: start.secret_hash,
        capabilities: start.capabilities,
        auth_token_id: start.auth_token_id,
    };

    let _guard = state.lock_user(user).await;
    let change = &change;
    retry(|| async move {
        let row = state
            .store
            .user(user)
            .await?
            .ok_or_else(ApiError::not_found)?;
        refuse_replay(state, token).await?;
        append(state, user, change.clone(), Expected::LastSeq(row.acct_seq)).await
    })
    .await?;
    Ok(session.respond(headers, user))
}

fn rendered(capabilities: &Capabilities) -> Vec<String> {
    capabilities.iter().map(ToString::to_string).collect()
}

fn octet_stream(body: Vec<u8>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/octet-stream")], body)
}

/// A session cookie in the `cookie` crate's attribute order (§4.4).
fn cookie(
    headers: &HeaderMap,
    user: &PublicKey,
    value: &str,
    max_age: u64,
    expires: SystemTime,
) -> HeaderValue {
    let cross_site = if is_cross_site_host(headers) {
        "; SameSite=None; Secure"
    } else {
        ""
    };
    let text = format!(
        "{}={value}; HttpOnly{cross_site}; Path=/; Max-Age={max_age}; Expires={}",
        user.to_z32(),
        httpdate::fmt_http_date(expires)
    );
    // z32, Crockford and an HTTP date are all visible ASCII.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether the cookie gets `SameSite=None; Secure` (§4.4, §14.7): decided on the `Host`
/// without its port; a pkarr key or a dotted domain does, IPs, `localhost` and other
/// single-label names do not.
fn is_cross_site_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = strip_port(host);
    if host.parse::<IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    host.contains('.') || domain::tenant::parse_host_key(host).is_some()
}

fn strip_port(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn secure_attributes_follow_the_host_without_its_port() {
        let key = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
        for yes in [
            "example.com",
            "example.com:8080",
            "_pubky.8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo",
        ] {
            assert!(is_cross_site_host(&host(yes)), "{yes}");
        }
        let mut with_key = HeaderMap::new();
        with_key.insert(
            header::HOST,
            HeaderValue::from_str(&format!("{key}:6287")).unwrap(),
        );
        assert!(is_cross_site_host(&with_key));
        for no in [
            "localhost",
            "localhost:6286",
            "127.0.0.1:80",
            "[::1]:80",
            "intranet",
        ] {
            assert!(!is_cross_site_host(&host(no)), "{no}");
        }
        assert!(!is_cross_site_host(&HeaderMap::new()));
    }
}
