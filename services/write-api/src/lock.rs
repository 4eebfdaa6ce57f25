//! `LOCK` and `UNLOCK` on `/storage/<user>/<path>` (feature `webdav-locks`), and the
//! lock check of `PUT`/`DELETE`.
//!
//! Why locks are events: a lock must hold against writes that arrive through any
//! write-api instance and survive restarts, which is exactly what the log and its
//! projection already give file writes. A lock event travels on the user's file
//! subject and is appended with the same expected-sequence check as a `PUT`, so a lock
//! and a write racing each other through two instances are ordered by the log: the
//! loser's append fails, it re-reads the state (now with the other's change) and
//! decides again. No lock is held in memory anywhere, and nothing needs a clock shared
//! beyond the lock's end time, which each event carries.
//!
//! The wire rules (texts, statuses, timeouts, token syntax, which locks conflict and
//! which guard a write) are in `domain::lock`. `/storage/` takes exclusive locks of
//! depth 0 on files, as the reference; WebDAV takes shared and folder locks through
//! [`acquire`], [`refresh`] and [`release`], and every write here honours them all.

use crate::storage::existing_user;
use api::tenant::{self, Addressing, StorageTarget};
use api::writer::{CommitError, MAX_ATTEMPTS, too_much_contention};
use api::{ApiError, AppState, MaybeSession, Session, now_micros};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use domain::event::{Change, Digest};
use domain::lock::{self, LockToken, WriteUnderLock};
use domain::{Event, PublicKey};
use log::Expected;
use store::locks::LockRow;
use store::users::UserRow;

/// Methods served on `/storage/<user>/<path>`, for the `Allow` header of a 405.
pub const STORAGE_METHODS: &str = "GET, HEAD, PUT, DELETE, LOCK, UNLOCK";

/// What `/storage/<user>/<path>` answers to a method that is not `GET`, `HEAD`, `PUT`
/// or `DELETE`: `LOCK`, `UNLOCK`, or a 405 naming the methods it has (body not read).
#[tracing::instrument(skip_all, fields(method = %method, event_seq))]
pub async fn storage_other_methods(
    State(state): State<AppState>,
    session: MaybeSession,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match method.as_str() {
        "LOCK" => lock(&state, session, &uri, &headers, body).await,
        "UNLOCK" => unlock(&state, session, &uri, &headers).await,
        _ => return method_not_allowed(STORAGE_METHODS),
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Ok(target) = tenant::path_addressed(uri.path()) {
        tenant::add_cache_headers(&mut response, &target.path, Addressing::Path);
    }
    response
}

/// A 405 with its `Allow` header.
pub fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The checks `LOCK` and `UNLOCK` share, in the reference's order: a session (401),
/// then [`checked`].
async fn checked_target(
    state: &AppState,
    MaybeSession(session): MaybeSession,
    uri: &Uri,
) -> Result<(StorageTarget, Session, UserRow), ApiError> {
    let target = tenant::path_addressed(uri.path())?;
    let session = session.ok_or_else(|| ApiError::unauthorized("Unauthorized"))?;
    let user = checked(state, &session, &target).await?;
    Ok((target, session, user))
}

/// A file path (400), write permission (403), an existing owner (404).
async fn checked(
    state: &AppState,
    session: &Session,
    target: &StorageTarget,
) -> Result<UserRow, ApiError> {
    if target.path.is_dir() {
        return Err(ApiError::bad_request("Target path must be a file"));
    }
    domain::authorization::authorize_write(session.view(), &target.owner, &target.path)?;
    existing_user(state, &target.owner).await
}

fn if_tokens(headers: &HeaderMap) -> Vec<LockToken> {
    lock::if_tokens(
        headers
            .get_all("if")
            .iter()
            .filter_map(|value| value.to_str().ok()),
    )
}

/// `LOCK` on `/storage/`: an exclusive lock of depth 0 on a file, or the refresh of
/// the lock rooted at the path when the `If` header names one.
async fn lock(
    state: &AppState,
    session: MaybeSession,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (target, _, user) = checked_target(state, session, uri).await?;
    if user.disabled {
        return Err(ApiError::forbidden("User is disabled"));
    }
    let (lockroot, path) = (uri.path(), target.path.as_str());
    let lifetime = lock::timeout_secs(headers.get("timeout").and_then(|value| value.to_str().ok()));
    let presented = if_tokens(headers);
    if !presented.is_empty() {
        // A refresh; its body, if any, is not read.
        let (_, token) = refresh(state, &target.owner, path, &presented, lifetime, false).await?;
        return Ok(lock_response(&token, lifetime, lockroot, false));
    }
    let body = axum::body::to_bytes(body, lock::MAX_LOCKINFO_BYTES)
        .await
        .map_err(|_| lockinfo_too_large())?;
    if !lock::lockinfo_supported(&body) {
        return Err(ApiError::bad_request(lock::ONLY_EXCLUSIVE_WRITE));
    }
    let token = new_token();
    let exclusive = NewLock {
        path,
        shared: false,
        deep: false,
        lock_owner: None,
    };
    acquire(state, &target.owner, &exclusive, &token, lifetime).await?;
    Ok(lock_response(&token, lifetime, lockroot, true))
}

/// A fresh lock token (a random UUID).
pub fn new_token() -> LockToken {
    LockToken::from_uuid(&uuid::Uuid::new_v4().to_string())
}

/// The 413 of a `lockinfo` body over [`lock::MAX_LOCKINFO_BYTES`].
pub fn lockinfo_too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, lock::LOCKINFO_TOO_LARGE)
}

fn lock_response(token: &LockToken, lifetime: u64, lockroot: &str, created: bool) -> Response {
    lock_answer(
        lock::lock_discovery_xml(token, lifetime, lockroot),
        token,
        lifetime,
        created,
    )
}

/// A `LOCK` answer (here and over WebDAV): 200 with the lock discovery `body`, the
/// `Timeout`, and the `Lock-Token` when the lock is new.
pub fn lock_answer(body: String, token: &LockToken, lifetime: u64, created: bool) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("Second-{lifetime}")) {
        headers.insert("timeout", value);
    }
    if created && let Ok(value) = HeaderValue::from_str(&token.header_value()) {
        headers.insert("lock-token", value);
    }
    response
}

fn expiry(now_us: u64, lifetime_secs: u64) -> u64 {
    now_us.saturating_add(lifetime_secs.saturating_mul(1_000_000))
}

/// A lock to take: its root (a file, or a folder ending with `/`), scope and depth,
/// and the `DAV:owner` element discovery shows.
#[derive(Debug, Clone)]
pub struct NewLock<'a> {
    pub path: &'a str,
    pub shared: bool,
    pub deep: bool,
    pub lock_owner: Option<String>,
}

/// Appends `lock_acquired` if no live lock conflicting with `lock` is held at the
/// user's current version (423 otherwise).
pub async fn acquire(
    state: &AppState,
    owner: &PublicKey,
    lock: &NewLock<'_>,
    token: &LockToken,
    lifetime: u64,
) -> Result<(), ApiError> {
    append_lock_change(state, owner, move |now| async move {
        let held = state.store.live_locks_around(owner, lock.path, now).await?;
        if held
            .iter()
            .any(|other| other.conflicts_with(lock.path, lock.shared, lock.deep))
        {
            return Err(locked());
        }
        let change = Change::LockAcquired {
            path: lock.path.to_string(),
            token_hash: Digest(token.hash()),
            expires_us: expiry(now, lifetime),
            shared: lock.shared,
            deep: lock.deep,
            lock_owner: lock.lock_owner.clone(),
        };
        Ok((change, ()))
    })
    .await
}

/// Appends `lock_refreshed` for the live lock whose token is among `presented` and
/// which is rooted at `path` or, with `covering` (WebDAV), applies to it (RFC 4918
/// §9.10.2: a lock is refreshed through any resource it covers); 412 when there is
/// none. Returns the lock and its token.
pub async fn refresh(
    state: &AppState,
    owner: &PublicKey,
    path: &str,
    presented: &[LockToken],
    lifetime: u64,
    covering: bool,
) -> Result<(LockRow, LockToken), ApiError> {
    append_lock_change(state, owner, move |now| async move {
        let rows = state.store.locks_around(owner, path, now).await?;
        let found = rows.into_iter().find_map(|row| {
            let applies = match covering {
                true => row.lock.covers(path),
                false => row.lock.path == path,
            };
            if !applies {
                return None;
            }
            let token = presented.iter().find(|t| t.hash() == row.lock.token_hash)?;
            Some((row, token.clone()))
        });
        let Some((mut row, token)) = found else {
            return Err(not_the_live_lock());
        };
        row.expires_us = expiry(now, lifetime);
        let change = Change::LockRefreshed {
            path: row.lock.path.clone(),
            token_hash: Digest(token.hash()),
            expires_us: row.expires_us,
        };
        Ok((change, (row, token)))
    })
    .await
}

/// Appends `lock_released` for the lock rooted at `path` with `token`, expired or not;
/// 409 [`lock::NO_SUCH_LOCK`] when there is none.
pub async fn release(
    state: &AppState,
    owner: &PublicKey,
    path: &str,
    token: &LockToken,
) -> Result<(), ApiError> {
    append_lock_change(state, owner, move |_| async move {
        if !state.store.lock_exists(owner, path, &token.hash()).await? {
            return Err(ApiError::new(StatusCode::CONFLICT, lock::NO_SUCH_LOCK));
        }
        let change = Change::LockReleased {
            path: path.to_string(),
            token_hash: Digest(token.hash()),
        };
        Ok((change, ()))
    })
    .await
}

/// `UNLOCK` on `/storage/`: ends the path's lock with the `Lock-Token` given, expired
/// or not. A disabled owner may still unlock.
async fn unlock(
    state: &AppState,
    session: MaybeSession,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (target, ..) = checked_target(state, session, uri).await?;
    let token = lock::lock_token_header(
        headers
            .get("lock-token")
            .and_then(|value| value.to_str().ok()),
    )
    .ok_or_else(|| ApiError::bad_request(lock::BAD_LOCK_TOKEN))?;
    release(state, &target.owner, target.path.as_str(), &token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether a `DELETE` of `target` may go ahead under the locks guarding it, given the
/// tokens of its `If` headers: 423 when it is locked and no token was given, 412 when
/// the tokens name none of the guarding locks. Called after each read of the user's
/// row, so the decision holds for the version the write's event is appended after.
pub(crate) async fn check_delete(
    state: &AppState,
    target: &StorageTarget,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let path = target.path.as_str();
    let held = state
        .store
        .live_locks_around(&target.owner, path, now_micros())
        .await?;
    let guards: Vec<[u8; 32]> = lock::guarding(&held, path, true)
        .into_iter()
        .map(|lock| lock.token_hash)
        .collect();
    check_write_against(&guards, headers)
}

/// Whether a write may go ahead under the locks whose token hashes are `guards`
/// (read with the other checks of a write, `store::write_checks`).
pub(crate) fn check_write_against(
    guards: &[[u8; 32]],
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match lock::write_under_locks(guards, &if_tokens(headers)) {
        WriteUnderLock::Proceed => Ok(()),
        WriteUnderLock::Locked => Err(locked()),
        WriteUnderLock::NotTheLiveLock => Err(not_the_live_lock()),
    }
}

/// Appends the lock event `decide` returns for the user's current state, under the
/// user's write lock, re-reading and re-deciding when another write raced it; returns
/// what `decide` returned beside the change. `decide` gets the event's time.
async fn append_lock_change<T, Decided>(
    state: &AppState,
    owner: &PublicKey,
    decide: impl Fn(u64) -> Decided,
) -> Result<T, ApiError>
where
    Decided: std::future::Future<Output = Result<(Change, T), ApiError>>,
{
    let _queue = state.lock_user(owner).await;
    let request_id = uuid::Uuid::now_v7().to_string();
    for _ in 0..MAX_ATTEMPTS {
        let user = existing_user(state, owner).await?;
        crate::storage::check_not_moved(&user)?;
        let now = now_micros();
        let (change, out) = decide(now).await?;
        let event = Event::new(owner.clone(), now, request_id.clone(), change);
        match state
            .commit(&event, expected_after(state, &user, owner))
            .await
        {
            Ok(_) => return Ok(out),
            Err(CommitError::Conflict) => continue,
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(too_much_contention())
}

/// The sequence a lock event is appended after: the user's projected file sequence, or
/// this process's own file writes not projected yet (`api::pending`), which change no
/// lock, so the lock state read from the projection still holds at that sequence.
fn expected_after(state: &AppState, user: &UserRow, owner: &PublicKey) -> Expected {
    let overlay = state.pending.overlay(owner, user.file_seq);
    Expected::LastSeq(overlay.expected(user.file_seq))
}

/// 423 [`lock::LOCKED`].
pub fn locked() -> ApiError {
    ApiError::new(StatusCode::LOCKED, lock::LOCKED)
}

/// 412 [`lock::IF_NOT_LIVE`].
pub fn not_the_live_lock() -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_FAILED, lock::IF_NOT_LIVE)
}
