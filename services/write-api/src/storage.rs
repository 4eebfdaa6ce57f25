//! `PUT` and `DELETE` of files (spec §3.5, §5).
//!
//! The body is streamed into the content-addressed blob store first (bounded memory
//! whatever its size); then, under the user's write lock, the user's projected state
//! is re-read, every rule checked against it, and one event appended with that state's
//! sequence as the expected last sequence. A concurrent write elsewhere makes the
//! append fail and the checks run again on the new state: quotas, collisions,
//! `If-Match` and storage locks (`If` header, see `lock`) hold across instances. The
//! answer comes once the projection shows the write, so a following GET sees it.

use api::pending::{Overlay, PendingPath};
use api::tenant::{self, Addressing, StorageTarget};
use api::writer::{CommitError, MAX_ATTEMPTS, too_much_contention};
use api::{ApiError, AppState, MaybeSession, Session, now_micros};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use blobs::{BlobHash, PutError};
use domain::event::Change;
use domain::{EntryPath, Event, PublicKey};
use futures::TryStreamExt;
use log::Expected;
use store::projection::ENTRY_OVERHEAD_BYTES;
use store::users::UserRow;
use store::write_checks::WriteChecks;

#[utoipa::path(put, path = "/storage/{user}/{path}", tag = "storage", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)")), request_body(content = Vec<u8>, description = "the file content", content_type = "application/octet-stream"), responses((status = 201, description = "stored; `ETag` names the content"), (status = 400, description = "invalid path"), (status = 401, description = "no session"), (status = 403, description = "no write access"), (status = 409, description = "a file or directory in the way"), (status = 412, description = "`If-Match` / `If-None-Match` / `If` not met"), (status = 413, description = "over the quota"), (status = 423, description = "locked by another lock token"), (status = 503, description = "a dependency is down; `Retry-After`")))]
#[tracing::instrument(skip_all, fields(event_seq))]
pub async fn put_storage(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(write_path_addressed(&state, session, &uri, &headers, Some(body)).await)
}

#[utoipa::path(delete, path = "/storage/{user}/{path}", tag = "storage", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)")), responses((status = 204, description = "deleted"), (status = 401, description = "no session"), (status = 403, description = "no write access"), (status = 404, description = "no such file"), (status = 423, description = "locked by another lock token")))]
#[tracing::instrument(skip_all, fields(event_seq))]
pub async fn delete_storage(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    respond(write_path_addressed(&state, session, &uri, &headers, None).await)
}

#[utoipa::path(put, path = "/{path}", tag = "storage", params(("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 201, description = "stored"), (status = 401, description = "no session")))]
#[tracing::instrument(skip_all, fields(event_seq))]
pub async fn put_legacy(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(write_legacy(&state, session, &uri, &headers, Some(body)).await)
}

#[utoipa::path(delete, path = "/{path}", tag = "storage", params(("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)")), responses((status = 204, description = "deleted"), (status = 401, description = "no session"), (status = 404, description = "no such file")))]
#[tracing::instrument(skip_all, fields(event_seq))]
pub async fn delete_legacy(
    State(state): State<AppState>,
    session: MaybeSession,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    respond(write_legacy(&state, session, &uri, &headers, None).await)
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn write_path_addressed(
    state: &AppState,
    MaybeSession(session): MaybeSession,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<Body>,
) -> Result<Response, ApiError> {
    // On /storage/ a malformed URL is a 400 before any authentication.
    let target = tenant::path_addressed(uri.path())?;
    let result = async {
        let session = require_session(session)?;
        if target.path.is_dir() {
            return Err(ApiError::bad_request("Target path must be a file"));
        }
        write(state, &session, &target, headers, body).await
    }
    .await;
    let mut response = respond(result);
    tenant::add_cache_headers(&mut response, &target.path, Addressing::Path);
    Ok(response)
}

async fn write_legacy(
    state: &AppState,
    MaybeSession(session): MaybeSession,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<Body>,
) -> Result<Response, ApiError> {
    let result = async {
        // The legacy route checks the session before the tenant and the path.
        let session = require_session(session)?;
        let owner = tenant::legacy_owner(uri, headers)?;
        let path = tenant::legacy_path(uri.path())?;
        if path.is_dir() {
            return Err(ApiError::bad_request(
                "Invalid URL: target path must be a file",
            ));
        }
        let target = StorageTarget {
            owner,
            path,
            addressing: Addressing::Legacy,
        };
        write(state, &session, &target, headers, body).await
    }
    .await;
    let mut response = respond(result);
    // Even a refusal that came before the path was checked must not be cached when
    // it is about private data.
    if let Ok(path) = tenant::legacy_path(uri.path()) {
        tenant::add_cache_headers(&mut response, &path, Addressing::Legacy);
    }
    Ok(response)
}

fn require_session(session: Option<Session>) -> Result<Session, ApiError> {
    session.ok_or_else(|| ApiError::unauthorized("No authenticated session found"))
}

/// A `PUT` (with a body) or `DELETE` of `target` by `session`, whatever route named
/// it: `/storage/`, legacy paths, and WebDAV.
pub async fn write(
    state: &AppState,
    session: &Session,
    target: &StorageTarget,
    headers: &HeaderMap,
    body: Option<Body>,
) -> Result<Response, ApiError> {
    domain::authorization::authorize_write(session.view(), &target.owner, &target.path)?;
    match body {
        Some(body) => put(state, target, headers, body).await,
        None => {
            let request_id = uuid::Uuid::now_v7().to_string();
            delete(state, target, headers, request_id, WritePaths::Enforce).await
        }
    }
}

/// Whether a delete honours the user's `allowed_write_paths`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePaths {
    Enforce,
    /// The operator's delete: write-path limits restrict the user, not the operator.
    Bypass,
}

/// The operator's delete of one entry (admin API): the same event and checks as a
/// user's `DELETE`, without a session and without the user's write-path limits.
/// 204, 404 for an unknown user or entry. `request_id` marks the event as the
/// operator's.
pub async fn operator_delete(
    state: &AppState,
    owner: PublicKey,
    path: EntryPath,
    request_id: String,
) -> Result<Response, ApiError> {
    let target = StorageTarget {
        owner,
        path,
        addressing: Addressing::Path,
    };
    existing_user(state, &target.owner).await?;
    delete(
        state,
        &target,
        &HeaderMap::new(),
        request_id,
        WritePaths::Bypass,
    )
    .await
}

/// The owner's row, or 404 `Not Found`.
pub async fn existing_user(state: &AppState, owner: &PublicKey) -> Result<UserRow, ApiError> {
    state
        .store
        .user(owner)
        .await?
        .ok_or_else(ApiError::not_found)
}

async fn put(
    state: &AppState,
    target: &StorageTarget,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let path = target.path.as_str();
    let ancestors: Vec<String> = target
        .path
        .parent_dirs()
        .filter(|dir| dir.len() > 1)
        .map(|dir| dir.trim_end_matches('/').to_string())
        .collect();
    let checks = write_checks(state, target, &ancestors).await?;
    let mut user = checks.user;
    check_not_moved(&user)?;
    check_not_disabled(&user)?;
    // The same picture as the checks under the lock below: the projection plus this
    // process's unprojected writes of the user.
    let overlay = state.pending.overlay(&target.owner, user.file_seq);
    let previous = overlaid(&overlay, path, checks.entry);
    // Locks are decided before a byte of the body is read, and again below; a new
    // file also needs a lock of its folder's members.
    crate::lock::check_write_against(&checks.locks.of_write(previous.is_none()), headers)?;
    check_preconditions(headers, previous.as_ref().map(|(hash, _)| hash))?;
    user.used_bytes += overlay.used_delta;

    // Early refusal from Content-Length, before reading a byte of the body.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let room = quota_room(state, &user, previous.map(|(_, size)| size));
    let body_limit = state.config.max_body_bytes;
    if let (Some(declared), Some(max)) = (declared, body_limit)
        && declared > max
    {
        return Err(payload_too_large());
    }
    if let (Some(declared), Some(room)) = (declared, room)
        && declared > room
    {
        return Err(quota_exceeded());
    }
    let limit = match (room, body_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Refuse before storing the body when the log cannot take the event anyway.
    state.require_log()?;
    let stream = api::bandwidth::throttled(
        body.into_data_stream().map_err(std::io::Error::other),
        api::bandwidth::write_bucket(state, &user),
    );
    let stored = match state.blobs.put_stream(stream, limit, path).await {
        Ok(stored) => stored,
        Err(PutError::TooLarge { limit }) => {
            return Err(if body_limit == Some(limit) {
                payload_too_large()
            } else {
                quota_exceeded()
            });
        }
        Err(PutError::Body(_)) => return Err(ApiError::bad_request("Stream broken")),
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    state.metrics.blob_written(stored.size);

    let queue = state.lock_user(&target.owner).await;
    let request_id = uuid::Uuid::now_v7().to_string();
    for _ in 0..MAX_ATTEMPTS {
        let checks = write_checks(state, target, &ancestors).await?;
        let mut user = checks.user;
        // Again under the lock: the operator may have disabled the user (or changed
        // the limits checked below) while the body was streaming, and the user may
        // have moved away (the move's event is on the same subject: a write that raced
        // it lost the append and sees it now).
        check_not_moved(&user)?;
        check_not_disabled(&user)?;
        check_allowed_path(&user, &target.path)?;
        let overlay = state.pending.overlay(&target.owner, user.file_seq);
        if overlay.touches_tree_of(path) {
            // A write of this process above or below this path is not projected yet:
            // the collision check needs it visible.
            if let Some(seq) = overlay.last_seq {
                state.wait_visible(seq).await;
            }
            continue;
        }
        let previous = overlaid(&overlay, path, checks.entry);
        crate::lock::check_write_against(&checks.locks.of_write(previous.is_none()), headers)?;
        if checks.collides {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "File/folder path collision",
            ));
        }
        check_preconditions(headers, previous.as_ref().map(|(hash, _)| hash))?;
        user.used_bytes += overlay.used_delta;
        let previous_size = previous.map(|(_, size)| size);
        if quota_room(state, &user, previous_size).is_some_and(|room| stored.size > room) {
            return Err(quota_exceeded());
        }
        let event = Event::new(
            target.owner.clone(),
            now_micros(),
            request_id.clone(),
            Change::FilePut {
                path: path.to_string(),
                content_hash: domain::event::Digest(stored.hash.0),
                size: stored.size,
                content_type: stored.content_type.clone(),
            },
        );
        let expected = Expected::LastSeq(overlay.expected(user.file_seq));
        match state.append(&event, expected).await {
            Ok(seq) => {
                let grown = stored.size as i64
                    - previous_size.map_or(-ENTRY_OVERHEAD_BYTES, |size| size as i64);
                let written = PendingPath::Put {
                    hash: stored.hash.0,
                    size: stored.size,
                };
                state
                    .pending
                    .record(&target.owner, seq, path, written, grown);
                // The next write of this user may go ahead: it sees this one in the
                // overlay. Only this request waits for visibility.
                drop(queue);
                let status = if visible(state, &target.owner, seq).await {
                    StatusCode::CREATED
                } else {
                    StatusCode::ACCEPTED
                };
                let mut response = status.into_response();
                if let Ok(etag) = HeaderValue::from_str(&stored.hash.etag()) {
                    response.headers_mut().insert(header::ETAG, etag);
                }
                return Ok(response);
            }
            Err(CommitError::Conflict) => continue,
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(too_much_contention())
}

/// The content hash and size of `path` as the next write must see it: this process's
/// unprojected write of it if there is one, else the projected entry.
async fn current_version(
    state: &AppState,
    owner: &PublicKey,
    path: &str,
    overlay: &Overlay,
) -> Result<Option<([u8; 32], u64)>, ApiError> {
    let projected = match overlay.path(path) {
        Some(_) => None,
        None => state
            .store
            .entry(owner, path)
            .await?
            .map(|entry| (entry.content_hash, entry.size)),
    };
    Ok(overlaid(overlay, path, projected))
}

/// The content hash and size of `path` as the next write must see it, given its
/// projected entry `projected`.
fn overlaid(
    overlay: &Overlay,
    path: &str,
    projected: Option<([u8; 32], u64)>,
) -> Option<([u8; 32], u64)> {
    match overlay.path(path) {
        Some(PendingPath::Put { hash, size }) => Some((hash, size)),
        Some(PendingPath::Deleted) => None,
        None => projected,
    }
}

/// [`store::write_checks`] of a write of `target`; 404 for an unknown user.
async fn write_checks(
    state: &AppState,
    target: &StorageTarget,
    ancestors: &[String],
) -> Result<WriteChecks, ApiError> {
    state
        .store
        .write_checks(&target.owner, target.path.as_str(), ancestors, now_micros())
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Waits for event `seq` of `owner` to be projected; once it is, the overlay forgets it.
async fn visible(state: &AppState, owner: &PublicKey, seq: domain::EventSeq) -> bool {
    let visible = state.wait_visible(seq).await;
    if visible {
        state.pending.projected(owner, seq);
    }
    visible
}

async fn delete(
    state: &AppState,
    target: &StorageTarget,
    headers: &HeaderMap,
    request_id: String,
    write_paths: WritePaths,
) -> Result<Response, ApiError> {
    let path = target.path.as_str();
    let queue = state.lock_user(&target.owner).await;
    for _ in 0..MAX_ATTEMPTS {
        let user = existing_user(state, &target.owner).await?;
        check_not_moved(&user)?;
        // The operator's delete is not held up by a user's lock.
        if write_paths == WritePaths::Enforce {
            crate::lock::check_delete(state, target, headers).await?;
        }
        let overlay = state.pending.overlay(&target.owner, user.file_seq);
        let (hash, size) = current_version(state, &target.owner, path, &overlay)
            .await?
            .ok_or_else(ApiError::not_found)?;
        if write_paths == WritePaths::Enforce {
            check_allowed_path(&user, &target.path)?;
        }
        check_preconditions(headers, Some(&hash))?;
        let event = Event::new(
            target.owner.clone(),
            now_micros(),
            request_id.clone(),
            Change::FileDeleted {
                path: path.to_string(),
            },
        );
        let expected = Expected::LastSeq(overlay.expected(user.file_seq));
        match state.append(&event, expected).await {
            Ok(seq) => {
                let freed = -(size as i64 + ENTRY_OVERHEAD_BYTES);
                state
                    .pending
                    .record(&target.owner, seq, path, PendingPath::Deleted, freed);
                drop(queue);
                return Ok(if visible(state, &target.owner, seq).await {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::ACCEPTED
                }
                .into_response());
            }
            Err(CommitError::Conflict) => continue,
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(too_much_contention())
}

/// Bytes the user may still add when replacing an entry of `previous_size` (or creating
/// one, which also costs the per-entry overhead); `None` = unlimited.
fn quota_room(state: &AppState, user: &UserRow, previous_size: Option<u64>) -> Option<u64> {
    let limit = quota_bytes(state, user)?;
    let freed = previous_size.map_or(-ENTRY_OVERHEAD_BYTES, |size| size as i64);
    Some((limit - user.used_bytes + freed).max(0) as u64)
}

/// The user's storage quota in bytes (the user's own limit, else the server's
/// default); `None` = unlimited.
pub fn quota_bytes(state: &AppState, user: &UserRow) -> Option<i64> {
    let limit_mb = match user.storage_quota_mb {
        Some(mb) if mb < 0 => return None,
        Some(mb) => mb as u64,
        None => state.config.default_quota_mb?,
    };
    Some(limit_mb.saturating_mul(1024 * 1024) as i64)
}

/// The answer to a write over the user's quota.
pub fn quota_exceeded() -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "Disk space quota exceeded",
    )
}

/// A user who moved to another homeserver is written to there (docs/move.md): 410
/// naming it. Every write checks it on the state it appends after.
pub fn check_not_moved(user: &UserRow) -> Result<(), ApiError> {
    match &user.moved_to {
        Some(to) => Err(ApiError::Moved {
            user: user.pubkey.clone(),
            to: to.clone(),
        }),
        None => Ok(()),
    }
}

/// Disabled users may read, sign in and delete, but not write (spec).
fn check_not_disabled(user: &UserRow) -> Result<(), ApiError> {
    match user.disabled {
        true => Err(ApiError::forbidden("User is disabled")),
        false => Ok(()),
    }
}

/// The operator's write-path limits of the user (`allowed_write_paths`): 403 when
/// `path` (a file, or a folder a WebDAV operation changes as a whole) is outside them.
pub fn check_allowed_path(user: &UserRow, path: &EntryPath) -> Result<(), ApiError> {
    let Some(allowed) = &user.allowed_write_paths else {
        return Ok(());
    };
    let path = path.as_str();
    let permitted = allowed.iter().any(|rule| {
        if rule.ends_with('/') {
            path.starts_with(rule.as_str())
        } else {
            path == rule
        }
    });
    if permitted {
        Ok(())
    } else {
        Err(ApiError::forbidden("Write to this path is not allowed"))
    }
}

/// `If-Match` and `If-None-Match` on writes (beyond the reference): two apps editing
/// one file cannot silently overwrite each other.
fn check_preconditions(headers: &HeaderMap, current: Option<&[u8; 32]>) -> Result<(), ApiError> {
    let current_etag = current.map(|hash| BlobHash(*hash).etag());
    let listed = |name: header::HeaderName| -> Option<Vec<String>> {
        let value = headers.get(name)?.to_str().ok()?;
        Some(value.split(',').map(|t| t.trim().to_string()).collect())
    };
    let failed = || ApiError::new(StatusCode::PRECONDITION_FAILED, "Precondition Failed");
    if let Some(tags) = listed(header::IF_MATCH) {
        let matches = match &current_etag {
            Some(etag) => tags.iter().any(|t| t == "*" || t == etag),
            None => false,
        };
        if !matches {
            return Err(failed());
        }
    }
    if let Some(tags) = listed(header::IF_NONE_MATCH) {
        let matches = match &current_etag {
            Some(etag) => tags.iter().any(|t| t == "*" || t == etag),
            None => false,
        };
        if matches {
            return Err(failed());
        }
    }
    Ok(())
}

fn payload_too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large")
}
