//! Who is making a request (spec §4.4, §4.6).
//!
//! A bearer token (`Authorization: Bearer <token>`) is looked up by its SHA-256; if it
//! is unknown, expired or its grant revoked, the request simply proceeds anonymously
//! (handlers answer 401/403 as needed) and the legacy cookie named after the request's
//! tenant is tried instead.

use crate::tenant::request_tenant;
use crate::{ApiError, AppState, now_secs};
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};
use domain::secret::{BearerToken, CookieSecret};
use domain::{Capabilities, PublicKey};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKind {
    Grant { grant_id: String },
    Cookie { secret_hash: [u8; 32] },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: PublicKey,
    pub capabilities: Capabilities,
    pub kind: SessionKind,
}

impl Session {
    pub fn view(&self) -> domain::authorization::SessionView<'_> {
        domain::authorization::SessionView {
            user: &self.user,
            capabilities: &self.capabilities,
        }
    }
}

/// The request's session, if it has a valid one.
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(session) = bearer_session(&parts.headers, state).await? {
            return Ok(MaybeSession(Some(session)));
        }
        let Some(tenant) = session_tenant(&parts.uri, &parts.headers) else {
            return Ok(MaybeSession(None));
        };
        Ok(MaybeSession(
            cookie_session(&parts.headers, &tenant, state).await?,
        ))
    }
}

/// Whose cookie a request presents: the tenant of a storage request, or the user a
/// Merkle request (`/merkle/<user>/...`) is about, so the owner's browser session can
/// read its private tree. Only for finding the cookie: the Merkle routes are not
/// storage routes for rate limits and metrics, which use [`request_tenant`].
fn session_tenant(uri: &axum::http::Uri, headers: &HeaderMap) -> Option<PublicKey> {
    match uri.path().strip_prefix("/merkle/") {
        Some(rest) => domain::tenant::parse_storage_owner(rest.split('/').next()?).ok(),
        None => request_tenant(uri, headers),
    }
}

/// The bearer token of the request, if the header has exactly the expected form.
pub fn bearer_token(headers: &HeaderMap) -> Option<BearerToken> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    BearerToken::parse(value.strip_prefix("Bearer ")?)
}

pub async fn bearer_session(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Option<Session>, ApiError> {
    match bearer_token(headers) {
        Some(token) => token_session(&token, state).await,
        None => Ok(None),
    }
}

/// The session of a bearer token however it was presented (`Authorization: Bearer`, or
/// the password of WebDAV's Basic credentials): none when it is unknown, expired or its
/// grant revoked.
pub async fn token_session(
    token: &BearerToken,
    state: &AppState,
) -> Result<Option<Session>, ApiError> {
    let Some(found) = state.store.bearer_session(&token.hash()).await? else {
        return Ok(None);
    };
    let now = now_secs() as i64;
    if found.token_expires_at <= now || found.grant.revoked || found.grant.expires_at <= now {
        return Ok(None);
    }
    let Ok(user) = PublicKey::try_from(found.grant.owner.as_str()) else {
        return Ok(None);
    };
    Ok(Some(Session {
        user,
        capabilities: parse_capabilities(&found.grant.capabilities),
        kind: SessionKind::Grant {
            grant_id: found.grant.grant_id,
        },
    }))
}

/// The cookie session of `tenant`: the cookie named after the tenant's key.
pub async fn cookie_session(
    headers: &HeaderMap,
    tenant: &PublicKey,
    state: &AppState,
) -> Result<Option<Session>, ApiError> {
    let Some(secret) = cookie_secret(headers, tenant) else {
        return Ok(None);
    };
    let secret_hash = secret.hash();
    let Some(found) = state.store.cookie_session(&secret_hash).await? else {
        return Ok(None);
    };
    if found.owner != tenant.to_z32() {
        return Ok(None);
    }
    Ok(Some(Session {
        user: tenant.clone(),
        capabilities: parse_capabilities(&found.capabilities),
        kind: SessionKind::Cookie { secret_hash },
    }))
}

pub fn cookie_secret(headers: &HeaderMap, tenant: &PublicKey) -> Option<CookieSecret> {
    let name = tenant.to_z32();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| CookieSecret::parse(v))
}

/// Stored capability strings were validated when the session was created; anything
/// unparseable (e.g. from a future version) grants nothing rather than failing.
fn parse_capabilities(text: &str) -> Capabilities {
    Capabilities::from_str(text).unwrap_or_else(|_| Capabilities::from(Vec::new()))
}
