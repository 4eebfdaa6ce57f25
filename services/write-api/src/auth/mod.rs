//! The authentication endpoints (spec §3.2–3.4, §4): grant auth, legacy cookie auth and
//! the signup policy, one file each.
//!
//! Every state change here is one account event appended to the user's account subject
//! with the user's projected `acct_seq` as the expected last sequence. That is what makes
//! the single-use rules hold across instances and restarts without any shared memory:
//! PoP nonces and AuthToken ids travel *in* the event and are projected into
//! `used_nonces`, so a handler reads the user row first, then checks the nonce, then
//! appends — if anyone appended for that user in between, the log refuses the append
//! and the handler re-reads ([`retry`]). Every request that uses up a nonce or token id
//! records it in its one event, including both signups (`UserSignedUp` carries the
//! cookie session of `POST /signup` and the PoP nonce of `POST /auth/grant/signup`)
//! and proof logout (`GrantRevoked` carries its PoP nonce). The one rule that crosses users (a signup token
//! is consumed once) is guarded by a Postgres advisory lock instead (see [`signup`]).
//!
//! Handlers verify with the pure `domain` functions, passing the capability parser in
//! as a predicate, and never put a secret in an event: only SHA-256 digests of bearer
//! tokens, cookie secrets and signup tokens.

pub(crate) mod account;
pub(crate) mod cookie;
pub(crate) mod grant;
pub(crate) mod signup;

use api::writer::{CommitError, Committed, MAX_ATTEMPTS, too_much_contention};
use api::{ApiError, AppState};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use domain::event::Change;
use domain::{Capabilities, Capability, Event, PublicKey};
use log::Expected;

pub use signup::mint_signup_token;

/// The routes of this module, to be merged into the write-api router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/grant/signup", post(grant::signup))
        .route(
            "/auth/grant/session",
            post(grant::create_session)
                .get(grant::get_session)
                .delete(grant::delete_session),
        )
        .route("/auth/grant/sessions", get(grant::list_sessions))
        .route("/auth/grant/session/{gid}", delete(grant::revoke_session))
        .route("/signup", post(cookie::signup))
        .route(
            "/session",
            post(cookie::signin)
                .get(cookie::get_session)
                .delete(cookie::signout),
        )
        .route("/signup_tokens/{token}", get(signup::token_status))
        .route("/account", delete(account::delete_account))
}

/// Runs `attempt` until it does not lose a race with another writer of the same user
/// (`Ok(None)` means "lost, re-read and try again"), at most [`MAX_ATTEMPTS`] times.
///
/// (A closure returning a future rather than an async closure: the futures of async
/// closures are not provably `Send` for axum handlers yet.)
pub(crate) async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, ApiError>>,
{
    for _ in 0..MAX_ATTEMPTS {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
    Err(too_much_contention())
}

/// Appends one event of `user`; `None` when the expected sequence was stale.
pub(crate) async fn append(
    state: &AppState,
    user: &PublicKey,
    change: Change,
    expected: Expected,
) -> Result<Option<Committed>, ApiError> {
    let request_id = uuid::Uuid::now_v7().to_string();
    let event = Event::new(user.clone(), api::now_micros(), request_id, change);
    match state.commit(&event, expected).await {
        Ok(committed) => Ok(Some(committed)),
        Err(CommitError::Conflict) => Ok(None),
        Err(CommitError::Api(e)) => Err(e),
    }
}

/// The capability parser's verdict on one grant entry.
pub(crate) fn is_capability(entry: &str) -> bool {
    entry.parse::<Capability>().is_ok()
}

/// A capability list in its canonical rendering (`:wr` → `:rw`), as stored and answered.
pub(crate) fn render_capabilities(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|entry| entry.parse::<Capability>().ok())
        .map(|cap| cap.to_string())
        .collect()
}

/// Stored capability strings were validated on the way in; anything else grants nothing.
pub(crate) fn parse_stored(list: &str) -> Capabilities {
    list.parse().unwrap_or_default()
}

pub(crate) fn conflict_user_exists() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "User already exists")
}

pub(crate) fn nonce_already_used() -> ApiError {
    ApiError::unauthorized("PoP nonce already used")
}

pub(crate) fn no_session() -> ApiError {
    ApiError::unauthorized("No authenticated session found")
}

pub(crate) fn root_required() -> ApiError {
    ApiError::forbidden("Root capability required")
}
