//! `DELETE /account`: a user deletes their whole account in one call.
//!
//! The request appends one `account_deleted` event on the user's account subject, at
//! the account sequence it read, and waits until it is projected; the projection
//! (`store::account_deletion`) removes every file, version, tree, session and grant of
//! the user in one transaction and shows each removed file as a `DEL` line of the event
//! in the feeds. One event, so it cannot stop half-way: the reference's users, who have
//! only per-file deletes, saw those fail part-way on an account of 200 files.
//!
//! Who may: a session of the user with the root capability (`/:rw`; the cookie or
//! bearer of other authenticated routes), or, without a session, a `{grant,pop}` JSON
//! body proving the user's key with a root grant, as `DELETE /auth/grant/session`
//! accepts for logout. The proof form is what lets a user whose sessions are gone ask
//! again: for a key without an account it answers 404 `Not Found`, as the sign-in
//! routes do for a missing user (spec §3.3, §3.4 step 8).

use api::{ApiError, AppState, MaybeSession, now_secs};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use domain::PublicKey;
use domain::event::Change;
use domain::jws::GrantRequest;
use log::Expected;

use super::grant::{refuse_used_nonce, verify_grant, verify_pop};
use super::{append, no_session, retry, root_required};

/// `DELETE /account`: 204 once the deletion is visible.
///
/// Checks, first failure wins: a session without the root capability (403 `Root
/// capability required`); no session and no JSON proof (401 `No authenticated session
/// found`); a proof that does not verify (as `POST /auth/grant/session`: 400/401), is
/// not a root grant (403), or reuses a PoP nonce (401); no account for the key (404
/// `Not Found`).
#[utoipa::path(delete, path = "/account", tag = "auth", request_body(content = serde_json::Value, description = "`{grant, pop}` of a root grant", content_type = "application/json"), responses((status = 204, description = "every file, session and grant of the user removed in one event"), (status = 401, description = "no proof or a used nonce"), (status = 403, description = "not a root grant"), (status = 404, description = "no account for the key")))]
#[tracing::instrument(skip_all, fields(user = tracing::field::Empty, event_seq = tracing::field::Empty))]
pub(crate) async fn delete_account(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (user, pop_nonce) = match session {
        Some(session) => {
            if !session.capabilities.has_root() {
                return Err(root_required());
            }
            (session.user, None)
        }
        None => proven_key(&state, &headers, &body).await?,
    };
    tracing::Span::current().record("user", user.to_z32());
    delete(&state, &user, pop_nonce).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The key a `{grant,pop}` body proves, with the proof's nonce; 401 without one.
async fn proven_key(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(PublicKey, Option<String>), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(no_session());
    }
    let Json(proof) = Json::<GrantRequest>::from_bytes(body)
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let now = now_secs();
    let grant = verify_grant(proof.grant.as_str(), now)?;
    let root = grant
        .caps
        .iter()
        .any(|cap| cap.parse::<domain::Capability>().is_ok_and(|c| c.is_root()));
    if !root {
        return Err(root_required());
    }
    if let Some(stored) = state.store.grant(&grant.jti).await?
        && stored.revoked
    {
        return Err(ApiError::unauthorized("Grant has been revoked"));
    }
    let nonce = verify_pop(state, proof.pop.as_str(), &grant, now)?;
    refuse_used_nonce(state, &nonce).await?;
    Ok((grant.iss, Some(nonce)))
}

/// Appends the `account_deleted` of `user` at the account sequence it read.
async fn delete(
    state: &AppState,
    user: &PublicKey,
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
        // After the user read, as everywhere: a use appended since conflicts below.
        if let Some(nonce) = pop_nonce {
            refuse_used_nonce(state, nonce).await?;
        }
        let change = Change::AccountDeleted {
            pop_nonce: pop_nonce.clone(),
        };
        let expected = Expected::LastSeq(row.acct_seq);
        Ok(append(state, user, change, expected).await?.map(|_| ()))
    })
    .await
}
