//! Signup policy (spec §3.2): who may create an account, shared by `POST /signup` and
//! `POST /auth/grant/signup`, plus the signup-token status route and minting.
//!
//! Creating a user is one `UserSignedUp` event appended with the expected sequence 0 on
//! the new user's account subject, so the log itself settles "User already exists"
//! races between instances. Whatever else the signup request does travels in that same
//! event ([`Opening`]): the cookie session of `POST /signup`, the PoP nonce of
//! `POST /auth/grant/signup` — one request, one event. Consuming a signup token is the one rule that spans
//! users (two *different* new users could present the same token), which the log's
//! per-subject check cannot see; a Postgres advisory lock on the token hash, held
//! while checking, appending and waiting for the projection, serializes those.

use std::time::Duration;

use api::{ApiError, AppState, SignupMode};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, SecondsFormat};
use domain::event::{Change, CookieSessionStart, Digest, UserLimits};
use domain::signup_token::SignupToken;
use domain::{EventSeq, PublicKey};
use log::Expected;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{append, conflict_user_exists, nonce_already_used};

/// How long a token consumer keeps the token locked waiting for its signup to become
/// visible, beyond the normal projection wait, so the next consumer sees it used.
const TOKEN_VISIBILITY_WAIT: Duration = Duration::from_secs(30);

/// The `?signup_token=` of both signup routes.
#[derive(Debug, Deserialize)]
pub(crate) struct SignupQuery {
    signup_token: Option<String>,
}

impl SignupQuery {
    /// A malformed value is refused before the body is looked at, in every mode.
    pub(crate) fn token(&self) -> Result<Option<SignupToken>, ApiError> {
        self.signup_token
            .as_deref()
            .map(|t| SignupToken::parse(t).map_err(|e| ApiError::bad_request(e.to_string())))
            .transpose()
    }
}

/// SHA-256 of the token text: the only form events and tables hold.
pub(crate) fn token_hash(token: &SignupToken) -> [u8; 32] {
    Sha256::digest(token.as_str().as_bytes()).into()
}

/// What a signup request starts besides the account, recorded in its `UserSignedUp`.
#[derive(Debug, Default)]
pub(crate) struct Opening {
    /// `POST /signup`: the cookie session opened with the account.
    pub(crate) cookie_session: Option<CookieSessionStart>,
    /// `POST /auth/grant/signup`: the PoP nonce, used up by the signup.
    pub(crate) pop_nonce: Option<String>,
}

/// Creates `user` under the server's signup policy; returns the `UserSignedUp` sequence.
/// Check order (spec §3.4 step 7, §3.2): a used PoP nonce (401), then exists (409), then
/// token missing (400), unknown (401), used (401). The nonce is checked here, under the
/// user lock, so a replay racing the original on this instance sees it used.
#[tracing::instrument(skip_all, fields(user = %user.to_z32(), event_seq = tracing::field::Empty))]
pub(crate) async fn create_user(
    state: &AppState,
    user: &PublicKey,
    token: Option<SignupToken>,
    opening: Opening,
) -> Result<EventSeq, ApiError> {
    let _guard = state.lock_user(user).await;
    if let Some(nonce) = &opening.pop_nonce
        && state.store.nonce_used(nonce).await?
    {
        return Err(nonce_already_used());
    }
    if state.store.user(user).await?.is_some() {
        return Err(conflict_user_exists());
    }
    let Opening {
        cookie_session,
        pop_nonce,
    } = opening;
    let token = match state.config.signup_mode {
        SignupMode::Open => None,
        SignupMode::TokenRequired => {
            Some(token.ok_or_else(|| ApiError::bad_request("Token required"))?)
        }
    };
    let Some(token) = token else {
        let change = Change::UserSignedUp {
            signup_token: None,
            limits: UserLimits::default(),
            cookie_session,
            pop_nonce,
        };
        return append_signup(state, user, change).await;
    };

    let hash = token_hash(&token);
    let lock = state.store.lock_signup_token(&hash).await?;
    let row = state
        .store
        .signup_token(&hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("Invalid token"))?;
    if row.used_by.is_some() {
        return Err(ApiError::unauthorized("Token already used"));
    }
    let change = Change::UserSignedUp {
        signup_token: Some(Digest(hash)),
        limits: row.limits,
        cookie_session,
        pop_nonce,
    };
    let seq = append_signup(state, user, change).await?;
    // The next holder of the lock must see the token as used.
    if !state.progress.wait_for(seq, TOKEN_VISIBILITY_WAIT).await {
        tracing::warn!(
            seq = seq.0,
            "signup token released before its use was projected"
        );
    }
    lock.release().await?;
    Ok(seq)
}

/// Appends a signup expecting an empty subject (or one that ends with the deletion of the
/// key's previous account): losing that race means the user exists.
async fn append_signup(
    state: &AppState,
    user: &PublicKey,
    change: Change,
) -> Result<EventSeq, ApiError> {
    // A key whose account was deleted signs up after its `account_deleted` event.
    let after = state.store.deleted_account_seq(user).await?;
    let expected = Expected::LastSeq(after.unwrap_or(EventSeq(0)));
    match append(state, user, change, expected).await? {
        Some(committed) => Ok(committed.seq),
        None => Err(conflict_user_exists()),
    }
}

#[derive(serde::Serialize)]
struct TokenStatus {
    status: &'static str,
    created_at: String,
}

/// `GET /signup_tokens/{token}`: whether a token can still be used.
#[utoipa::path(get, path = "/signup_tokens/{token}", tag = "auth", params(("token" = String, Path)), responses((status = 200, description = "`valid` or `used`", content_type = "application/json"), (status = 400, description = "not a signup token"), (status = 404, description = "unknown token")))]
#[tracing::instrument(skip_all)]
pub(crate) async fn token_status(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if state.config.signup_mode != SignupMode::TokenRequired {
        return Err(ApiError::bad_request("Signup tokens not required"));
    }
    let token = SignupToken::parse(&token).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let row = state
        .store
        .signup_token(&token_hash(&token))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Token not found"))?;
    let created_at = DateTime::from_timestamp_micros(row.created_us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let status = if row.used_by.is_some() {
        "used"
    } else {
        "valid"
    };
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(TokenStatus { status, created_at }),
    ))
}

/// Mints a signup token carrying `limits` (copied onto the user it admits) and returns
/// its text — the only time the text exists; the log keeps its SHA-256. For the admin
/// API, whose `request_id` marks the event as an operator action.
#[tracing::instrument(skip_all, fields(event_seq = tracing::field::Empty))]
pub async fn mint_signup_token(
    state: &AppState,
    limits: UserLimits,
    request_id: String,
) -> Result<String, ApiError> {
    let token = SignupToken::generate(rand::random());
    let change = Change::SignupTokenMinted {
        token_hash: Digest(token_hash(&token)),
        limits,
    };
    let event = domain::Event::new(
        state.config.public_key.clone(),
        api::now_micros(),
        request_id,
        change,
    );
    // Operator events have no expected sequence, so they never lose a race.
    match state.commit(&event, Expected::Any).await {
        Ok(_) => Ok(token.as_str().to_owned()),
        Err(api::writer::CommitError::Api(e)) => Err(e),
        Err(api::writer::CommitError::Conflict) => Err(api::writer::too_much_contention()),
    }
}
