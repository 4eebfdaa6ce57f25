//! Grant auth (spec §3.4, §14.8): the flow the published SDK uses. The user's key signs
//! a grant for a client key; the client proves possession with a PoP per exchange and
//! receives an opaque bearer (3600 s, never past the grant), one live bearer per
//! session slot of the grant (`grant-session-slots`: the client may name a slot with
//! `session_id`; none is the legacy slot). How many slots a grant may fill and how
//! often it may mint is `domain::session_slots`, checked against the grant's projected
//! usage at the same account sequence the event is appended at.
//!
//! The stateless steps of the pipeline are `domain::jws`; what needs the projections
//! (revocation, nonce replay, user existence) runs inside [`retry`], after reading the
//! user row, so a concurrent writer of the same user forces a re-read instead of a
//! double use. Grant ids are chosen by clients, so a `jti` that already belongs to
//! another user is refused with 403 `Grant ID belongs to another user` (the
//! projector would ignore the event anyway; refusing says so instead of handing out a
//! bearer that does not work).

use api::session::{bearer_session, bearer_token};
use api::{ApiError, AppState, MaybeSession, SessionKind, now_secs};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use domain::PublicKey;
use domain::event::{Change, Digest};
use domain::jws::{self, Grant, GrantAuthError, GrantError, GrantRequest};
use domain::secret::BearerToken;
use domain::session_slots;
use log::Expected;
use serde::Serialize;
use store::auth::GrantRow;

use super::signup::{Opening, SignupQuery, create_user};
use super::{
    append, is_capability, no_session, nonce_already_used, render_capabilities, retry,
    root_required,
};

/// Bearer lifetime (s), capped by the grant's own expiry.
const BEARER_LIFETIME_SECS: u64 = 3600;

/// The `session` object of `POST`/`GET /auth/grant/session` (pubky-common
/// `GrantSessionInfo`); keys are raw z32.
#[derive(Serialize)]
pub(crate) struct SessionInfo {
    /// The slot, when the session has one (`grant-session-slots`).
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    homeserver: String,
    pubky: String,
    client_id: String,
    capabilities: Vec<String>,
    grant_id: String,
    token_expires_at: u64,
    grant_expires_at: u64,
    created_at: u64,
}

#[derive(Serialize)]
pub(crate) struct SessionResponse {
    token: String,
    session: SessionInfo,
}

/// One entry of `GET /auth/grant/sessions` (pubky-common `GrantInfo`).
#[derive(Serialize)]
pub(crate) struct GrantInfo {
    grant_id: String,
    client_id: String,
    capabilities: String,
    issued_at: i64,
    expires_at: i64,
}

fn auth_error(e: GrantAuthError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    ApiError::new(status, e.to_string())
}

pub(crate) fn verify_grant(compact: &str, now: u64) -> Result<Grant, ApiError> {
    jws::verify_grant(compact, now, is_capability).map_err(auth_error)
}

pub(crate) fn verify_pop(
    state: &AppState,
    pop: &str,
    grant: &Grant,
    now: u64,
) -> Result<String, ApiError> {
    jws::verify_pop(pop, grant, &state.config.public_key, now)
        .map(|pop| pop.nonce)
        .map_err(auth_error)
}

pub(crate) async fn refuse_used_nonce(state: &AppState, nonce: &str) -> Result<(), ApiError> {
    if state.store.nonce_used(nonce).await? {
        return Err(nonce_already_used());
    }
    Ok(())
}

fn foreign_grant() -> ApiError {
    ApiError::forbidden("Grant ID belongs to another user")
}

/// `POST /auth/grant/signup[?signup_token=]`: create the account a signup grant proves.
///
/// The PoP nonce is checked before the user's existence and recorded in the
/// `UserSignedUp` event, so a replayed signup proof meets `401 PoP nonce already used`
/// (spec §3.4: PoP, then nonce, then user creation).
#[utoipa::path(post, path = "/auth/grant/signup", operation_id = "grant_signup", tag = "auth", request_body(content = serde_json::Value, description = "`{grant, pop}` (and `signup_token` when required)", content_type = "application/json"), responses((status = 201, description = "the user and a grant session"), (status = 400, description = "a malformed grant or token"), (status = 401, description = "a bad proof, a used nonce, an unknown or used signup token"), (status = 409, description = "the user exists")))]
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty))]
pub(crate) async fn signup(
    State(state): State<AppState>,
    Query(query): Query<SignupQuery>,
    Json(body): Json<GrantRequest>,
) -> Result<StatusCode, ApiError> {
    let token = query.token()?;
    let now = now_secs();
    let grant = verify_grant(body.grant.as_str(), now)?;
    tracing::Span::current().record("user", grant.iss.to_z32());
    jws::check_signup_grant(&grant, now, |cap| {
        cap.parse::<domain::Capability>().is_ok_and(|c| c.is_root())
    })
    .map_err(auth_error)?;
    let nonce = verify_pop(&state, body.pop.as_str(), &grant, now)?;
    // `create_user` checks the nonce (under the user lock) before anything else.
    let opening = Opening {
        cookie_session: None,
        pop_nonce: Some(nonce),
    };
    create_user(&state, &grant.iss, token, opening).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /auth/grant/session`: exchange a grant and a fresh PoP for a bearer.
#[utoipa::path(post, path = "/auth/grant/session", tag = "auth", request_body(content = serde_json::Value, description = "`{grant, pop}`", content_type = "application/json"), responses((status = 200, description = "`{token, session}`: the bearer token", content_type = "application/json"), (status = 401, description = "a bad grant or proof"), (status = 404, description = "no such user"), (status = 409, description = "the grant's session slots are full"), (status = 429, description = "session issuance rate")))]
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty, event_seq = tracing::field::Empty))]
pub(crate) async fn create_session(
    State(state): State<AppState>,
    Json(body): Json<GrantRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let now = now_secs();
    let grant = verify_grant(body.grant.as_str(), now)?;
    let user = grant.iss.clone();
    tracing::Span::current().record("user", user.to_z32());
    let pop = body.pop.as_str();
    let token = BearerToken::from_random(rand::random());
    let token_hash = Digest(token.hash());
    let token_expires_at = (now + BEARER_LIFETIME_SECS).min(grant.exp);
    let capabilities = render_capabilities(&grant.caps);
    let session_id = body.session_id.map(|id| id.as_str().to_owned());

    let _guard = state.lock_user(&user).await;
    let (state_ref, grant_ref, user_ref, slot) = (&state, &grant, &user, session_id.as_deref());
    retry(|| async move {
        let (state, grant, user) = (state_ref, grant_ref, user_ref);
        if let Some(stored) = state.store.grant(&grant.jti).await? {
            if stored.revoked {
                return Err(ApiError::unauthorized("Grant has been revoked"));
            }
            if stored.owner != user.to_z32() {
                return Err(foreign_grant());
            }
        }
        let nonce = verify_pop(state, pop, grant, now)?;
        // Read the user before the nonce: anything appended after this read makes the
        // append below conflict, anything before it is visible to the nonce check.
        let row = state
            .store
            .user(user)
            .await?
            .ok_or_else(ApiError::not_found)?;
        refuse_used_nonce(state, &nonce).await?;
        let usage = state
            .store
            .grant_slot_usage(&grant.jti, slot, now as i64)
            .await?;
        session_slots::check(&state.config.grant_session_slots, &usage, api::now_micros())?;
        let change = Change::GrantSessionCreated {
            grant_id: grant.jti.clone(),
            client_id: grant.client_id.clone(),
            client_key: grant.cnf.clone(),
            capabilities: render_capabilities(&grant.caps),
            grant_issued_at: grant.iat,
            grant_expires_at: grant.exp,
            token_hash,
            token_expires_at,
            pop_nonce: nonce,
            session_id: slot.map(str::to_owned),
        };
        append(state, user, change, Expected::LastSeq(row.acct_seq)).await
    })
    .await?;

    // Another user may have claimed the same jti concurrently on their own subject; the
    // projector then kept their grant and ignored ours.
    let stored = state.store.grant(&grant.jti).await?;
    if stored.is_some_and(|g| g.owner != user.to_z32()) {
        return Err(foreign_grant());
    }
    Ok(Json(SessionResponse {
        token: token.as_str().to_owned(),
        session: SessionInfo {
            session_id,
            homeserver: state.config.public_key.to_z32(),
            pubky: user.to_z32(),
            client_id: grant.client_id,
            capabilities,
            grant_id: grant.jti,
            token_expires_at,
            grant_expires_at: grant.exp,
            created_at: now,
        },
    }))
}

/// `GET /auth/grant/session`: the bearer's session. A cookie session is not one (401
/// `Unauthorized`).
#[utoipa::path(get, path = "/auth/grant/session", operation_id = "get_grant_session", tag = "auth", responses((status = 200, description = "the bearer's session", content_type = "application/json"), (status = 401, description = "no bearer session")))]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    headers: HeaderMap,
) -> Result<Json<SessionInfo>, ApiError> {
    let session = session.ok_or_else(no_session)?;
    let (SessionKind::Grant { .. }, Some(token)) = (&session.kind, bearer_token(&headers)) else {
        return Err(ApiError::unauthorized("Unauthorized"));
    };
    let found = state
        .store
        .bearer_session(&token.hash())
        .await?
        .ok_or_else(no_session)?;
    let grant = found.grant;
    Ok(Json(SessionInfo {
        session_id: found.session_id,
        homeserver: state.config.public_key.to_z32(),
        pubky: grant.owner,
        client_id: grant.client_id,
        capabilities: split_list(&grant.capabilities),
        grant_id: grant.grant_id,
        token_expires_at: found.token_expires_at.max(0) as u64,
        grant_expires_at: grant.expires_at.max(0) as u64,
        created_at: (grant.created_us / 1_000_000).max(0) as u64,
    }))
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `DELETE /auth/grant/session`: revoke the bearer's grant, or (`grant-proof-logout`,
/// no valid bearer, `Content-Type: application/json`) the grant a `{grant,pop}` body
/// proves. Always 200 otherwise; a body of another type is ignored.
///
/// A logout proof's PoP nonce is recorded in its `GrantRevoked`, so a replayed proof
/// meets `401 PoP nonce already used` (§14 item 8). A fresh proof for a grant that is
/// already revoked still appends a `GrantRevoked` (a no-op for the projections) to
/// record its nonce.
#[utoipa::path(delete, path = "/auth/grant/session", operation_id = "delete_grant_session", tag = "auth", responses((status = 204, description = "the grant is revoked"), (status = 401, description = "no bearer session or a used nonce")))]
#[tracing::instrument(skip_all, fields(event_seq = tracing::field::Empty))]
pub(crate) async fn delete_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    if let Some(session) = bearer_session(&headers, &state).await? {
        if let SessionKind::Grant { grant_id } = &session.kind {
            revoke(&state, &session.user, grant_id, None).await?;
        }
        return Ok(StatusCode::OK);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Ok(StatusCode::OK);
    }
    let Json(proof) = Json::<GrantRequest>::from_bytes(&body)
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let now = now_secs();
    // An expired grant is one this server no longer knows: nothing to revoke.
    let grant = match jws::verify_grant(proof.grant.as_str(), now, is_capability) {
        Err(GrantAuthError::Grant(GrantError::Expired)) => return Err(ApiError::not_found()),
        other => other.map_err(auth_error)?,
    };
    let stored = state.store.grant(&grant.jti).await?;
    if stored.is_none_or(|g| g.owner != grant.iss.to_z32()) {
        return Err(ApiError::not_found());
    }
    let nonce = verify_pop(&state, proof.pop.as_str(), &grant, now)?;
    // Fails early without taking the user lock; `revoke` checks again after reading the
    // user row, which is what makes a concurrent replay lose.
    refuse_used_nonce(&state, &nonce).await?;
    revoke(&state, &grant.iss, &grant.jti, Some(nonce)).await?;
    Ok(StatusCode::OK)
}

/// `GET /auth/grant/sessions`: the caller's live grants; needs the root capability.
#[utoipa::path(get, path = "/auth/grant/sessions", tag = "auth", responses((status = 200, description = "the caller's live grants", content_type = "application/json"), (status = 401, description = "no session"), (status = 403, description = "not a root grant")))]
#[tracing::instrument(skip_all)]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
) -> Result<Json<Vec<GrantInfo>>, ApiError> {
    let session = session.ok_or_else(no_session)?;
    if !session.capabilities.has_root() {
        return Err(root_required());
    }
    let grants = state
        .store
        .active_grants(&session.user, now_secs() as i64)
        .await?;
    Ok(Json(grants.into_iter().map(grant_info).collect()))
}

fn grant_info(row: GrantRow) -> GrantInfo {
    GrantInfo {
        grant_id: row.grant_id,
        client_id: row.client_id,
        capabilities: row.capabilities,
        issued_at: row.issued_at,
        expires_at: row.expires_at,
    }
}

/// `DELETE /auth/grant/session/{gid}`: revoke one of the caller's grants (root only).
#[utoipa::path(delete, path = "/auth/grant/session/{gid}", tag = "auth", params(("gid" = String, Path, description = "the grant id")), responses((status = 204, description = "revoked"), (status = 401, description = "no session"), (status = 403, description = "not a root grant"), (status = 404, description = "no such grant of the caller")))]
#[tracing::instrument(skip_all, fields(event_seq = tracing::field::Empty))]
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    Path(gid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session = session.ok_or_else(no_session)?;
    if !session.capabilities.has_root() {
        return Err(root_required());
    }
    if !jws::is_random_id(&gid) {
        return Err(ApiError::bad_request("Invalid grant ID format"));
    }
    let grant = state
        .store
        .grant(&gid)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if grant.owner != session.user.to_z32() {
        return Err(ApiError::forbidden(
            "Grant does not belong to authenticated user",
        ));
    }
    revoke(&state, &session.user, &gid, None).await?;
    Ok(StatusCode::OK)
}

/// Appends `GrantRevoked` unless the grant is already revoked (idempotent). With the
/// `pop_nonce` of a proof logout it refuses a used nonce and always appends, so the
/// nonce is recorded even when the grant was already revoked.
async fn revoke(
    state: &AppState,
    user: &PublicKey,
    grant_id: &str,
    pop_nonce: Option<String>,
) -> Result<(), ApiError> {
    let _guard = state.lock_user(user).await;
    let pop_nonce = &pop_nonce;
    retry(|| async move {
        let row = state
            .store
            .user(user)
            .await?
            .ok_or_else(ApiError::not_found)?;
        // After the user read, as in `create_session`: a use appended since makes the
        // append below conflict, one appended before is visible here.
        if let Some(nonce) = pop_nonce {
            refuse_used_nonce(state, nonce).await?;
        }
        let live = state
            .store
            .grant(grant_id)
            .await?
            .is_some_and(|g| !g.revoked);
        if !live && pop_nonce.is_none() {
            return Ok(Some(()));
        }
        let change = Change::GrantRevoked {
            grant_id: grant_id.to_owned(),
            pop_nonce: pop_nonce.clone(),
        };
        let expected = Expected::LastSeq(row.acct_seq);
        Ok(append(state, user, change, expected).await?.map(|_| ()))
    })
    .await
}
