//! Locks as WebDAV sees them (RFC 4918 §6, §7, §9.10, §9.11): the storage locks of
//! `/storage/` (events projected into `entry_locks`, see `write_api`'s lock module),
//! plus what WebDAV clients ask for beyond them: shared locks, and locks on
//! collections, of depth 0 or infinity. A lock taken one way holds the other way, on
//! every instance: a REST `PUT` under a folder locked here is refused like one of a
//! locked file. The rules (which locks conflict, which guard a change) are in
//! `domain::lock`; this module reads the request and writes the XML.
//!
//! Lock discovery shows no lock token: the server keeps only its SHA-256, and
//! `DAV:locktoken` is optional in an `activelock` (§14.1). The `LOCK` answer names the
//! token the client just got or presented.

use crate::if_header;
use crate::path::DavTarget;
use crate::xml;
use api::{ApiError, AppState, now_micros};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::PublicKey;
use domain::lock::{self as rules, LockToken};
use store::locks::LockRow;

/// The lock tokens the request's `If` headers submit; 400 when a header is malformed.
pub fn presented(headers: &HeaderMap) -> Result<Vec<LockToken>, ApiError> {
    let tagged = if_header::parse(
        headers
            .get_all("if")
            .iter()
            .map(|value| value.to_str().unwrap_or("\u{0}")),
    )?;
    Ok(if_header::lock_tokens(&tagged))
}

/// A change of `root` and of everything under it (a folder's delete, the source of a
/// move, what a copy or move replaces) may go ahead only if, for it and for every lock
/// root under it, a token of a lock guarding it is submitted: 423 otherwise.
pub async fn check_tree(
    state: &AppState,
    owner: &PublicKey,
    root: &str,
    presented: &[LockToken],
) -> Result<(), ApiError> {
    let held = state
        .store
        .live_locks_around(owner, root, now_micros())
        .await?;
    match rules::tree_unlocked(&held, root, presented) {
        true => Ok(()),
        false => Err(write_api::locked()),
    }
}

/// A change of `path` alone (`PROPPATCH`, a file's `PUT` or `DELETE`) may go ahead
/// only if a token of a lock guarding it is submitted (`membership`: the change adds
/// or removes `path` in its folder): 423 otherwise, also when the tokens submitted
/// name other locks (RFC 4918 §7: the `If` header held, the lock was not submitted).
pub async fn check_path(
    state: &AppState,
    owner: &PublicKey,
    path: &str,
    presented: &[LockToken],
    membership: bool,
) -> Result<(), ApiError> {
    let held = state
        .store
        .live_locks_around(owner, path, now_micros())
        .await?;
    let guards = rules::guarding(&held, path, membership);
    match guards.is_empty()
        || guards
            .iter()
            .any(|lock| presented.iter().any(|t| t.hash() == lock.token_hash))
    {
        true => Ok(()),
        false => Err(write_api::locked()),
    }
}

/// Where a lock of `target` is rooted: the collection's path (ending with `/`) when it
/// is one, else the file's path, whether the file exists or not (a lock of an
/// unmapped URL creates nothing, as on `/storage/`).
pub async fn lock_path(state: &AppState, target: &DavTarget) -> Result<String, ApiError> {
    Ok(match crate::resource::resolve(state, target).await? {
        crate::resource::Resource::Collection(dir) => dir,
        _ => target.file_form().to_string(),
    })
}

pub const LOCK_SCAFFOLDING: &str = "The drive and its top folders cannot be locked";
pub const BAD_DEPTH: &str = "Depth must be 0 or infinity";

/// `LOCK`: a new lock (a `lockinfo` body, or none: exclusive), or the refresh of the
/// lock an `If` header names when there is no body. The caller checked write access.
pub async fn lock(
    state: &AppState,
    target: &DavTarget,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if target.is_scaffolding() {
        return Err(ApiError::forbidden(LOCK_SCAFFOLDING));
    }
    let user = write_api::existing_user(state, &target.owner).await?;
    if user.disabled {
        return Err(ApiError::forbidden("User is disabled"));
    }
    let lifetime =
        rules::timeout_secs(headers.get("timeout").and_then(|value| value.to_str().ok()));
    let body = axum::body::to_bytes(body, rules::MAX_LOCKINFO_BYTES)
        .await
        .map_err(|_| write_api::lockinfo_too_large())?;
    let path = lock_path(state, target).await?;
    let presented = presented(headers)?;
    if body.iter().all(u8::is_ascii_whitespace) && !presented.is_empty() {
        let (row, token) =
            write_api::refresh(state, &target.owner, &path, &presented, lifetime, true).await?;
        return Ok(answer(target, &row, &token, lifetime, false));
    }
    let info = xml::lockinfo(&body)?;
    let deep = match headers.get("depth").map(|v| v.to_str().map(str::trim)) {
        None => true,
        Some(Ok("0")) => false,
        Some(Ok(v)) if v.eq_ignore_ascii_case("infinity") => true,
        Some(_) => return Err(ApiError::bad_request(BAD_DEPTH)),
    };
    let new = write_api::NewLock {
        path: &path,
        shared: info.shared,
        // Depth infinity of a file is depth 0: nothing lies under it.
        deep: deep && path.ends_with('/'),
        lock_owner: info.owner,
    };
    let token = write_api::new_token();
    write_api::acquire(state, &target.owner, &new, &token, lifetime).await?;
    let row = LockRow {
        lock: rules::HeldLock {
            path: path.clone(),
            token_hash: token.hash(),
            shared: new.shared,
            deep: new.deep,
        },
        expires_us: 0,
        lock_owner: new.lock_owner,
    };
    Ok(answer(target, &row, &token, lifetime, true))
}

/// The `LOCK` answer: 200, the lock's discovery, `Timeout`, and `Lock-Token` when the
/// lock is new.
fn answer(
    target: &DavTarget,
    row: &LockRow,
    token: &LockToken,
    lifetime: u64,
    created: bool,
) -> Response {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:prop xmlns:D="DAV:"><D:lockdiscovery>{}</D:lockdiscovery></D:prop>"#,
        activelock(&target.owner, row, Some(token), lifetime)
    );
    write_api::lock_answer(body, token, lifetime, created)
}

/// One `DAV:activelock`; the token only when the caller knows it.
fn activelock(
    owner: &PublicKey,
    row: &LockRow,
    token: Option<&LockToken>,
    timeout_secs: u64,
) -> String {
    let lock = &row.lock;
    let scope = if lock.shared { "shared" } else { "exclusive" };
    let depth = if lock.deep { "infinity" } else { "0" };
    let token = token
        .map(|t| {
            format!(
                "<D:locktoken><D:href>{}</D:href></D:locktoken>",
                xml::escape(t.as_str())
            )
        })
        .unwrap_or_default();
    format!(
        "<D:activelock><D:lockscope><D:{scope}/></D:lockscope><D:locktype><D:write/></D:locktype>\
         <D:depth>{depth}</D:depth>{}<D:timeout>Second-{timeout_secs}</D:timeout>{token}\
         <D:lockroot><D:href>{}</D:href></D:lockroot></D:activelock>",
        row.lock_owner.as_deref().unwrap_or(""),
        xml::escape(&crate::path::href(owner, &lock.path)),
    )
}

/// The value of `DAV:lockdiscovery` of `path` (a file, or a folder ending with `/`):
/// every live lock among `rows` that applies to it, with the seconds it has left.
pub fn discovery(owner: &PublicKey, rows: &[LockRow], path: &str, now_us: u64) -> String {
    rows.iter()
        .filter(|row| row.expires_us > now_us && row.lock.covers(path))
        .map(|row| {
            let left = (row.expires_us - now_us).div_ceil(1_000_000);
            activelock(owner, row, None, left)
        })
        .collect()
}

/// `UNLOCK`: ends the lock whose token `Lock-Token` names, if it applies to the
/// request's resource (RFC 4918 §9.11), expired or not: 204; 409 otherwise.
pub async fn unlock(
    state: &AppState,
    target: &DavTarget,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    write_api::existing_user(state, &target.owner).await?;
    let token = rules::lock_token_header(
        headers
            .get("lock-token")
            .and_then(|value| value.to_str().ok()),
    )
    .ok_or_else(|| ApiError::bad_request(rules::BAD_LOCK_TOKEN))?;
    let path = lock_path(state, target).await?;
    let rows = state.store.locks_around(&target.owner, &path, 0).await?;
    let root = rows
        .iter()
        .find(|row| row.lock.token_hash == token.hash() && row.lock.covers(&path))
        .map(|row| row.lock.path.clone())
        // Not found here: `release` answers the 409.
        .unwrap_or(path);
    write_api::release(state, &target.owner, &root, &token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub const IF_FAILED: &str = "The If header's conditions are not met";

/// Evaluates the `If` header (RFC 4918 §10.4) for a change of `target`: true when
/// one of its lists holds for its resource (the request's, or the tagged one), each
/// condition judged on the resource's current entity tag and the live locks that
/// apply to it; 412 when none does. No header is no condition. Which lock a change
/// needs is the lock checks' business, afterwards; this only makes a false condition
/// fail as §10.4 asks.
pub async fn check_if(
    state: &AppState,
    target: &DavTarget,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let tagged = if_header::parse(
        headers
            .get_all("if")
            .iter()
            .map(|value| value.to_str().unwrap_or("\u{0}")),
    )?;
    if tagged.is_empty() {
        return Ok(());
    }
    let now = now_micros();
    for group in &tagged {
        let resource = match &group.resource {
            None => Some(target.clone()),
            Some(url) => HeaderValue::from_str(url)
                .ok()
                .and_then(|value| crate::path::destination(Some(&value)).ok())
                .filter(|tagged| tagged.owner == target.owner),
        };
        let Some(resource) = resource else { continue };
        let file = resource.file_form().to_string();
        let etag = state
            .store
            .entry(&resource.owner, &file)
            .await?
            .map(|entry| blobs::BlobHash(entry.content_hash).etag());
        // The locks that apply to the resource, whether it is a file or a folder.
        let dir = resource.dir_form();
        let locks: Vec<[u8; 32]> = state
            .store
            .live_locks_around(&resource.owner, &file, now)
            .await?
            .into_iter()
            .filter(|lock| lock.covers(&file) || lock.covers(&dir))
            .map(|lock| lock.token_hash)
            .collect();
        let holds = |condition: &if_header::Condition| {
            let value = match &condition.subject {
                if_header::Subject::ETag(tag) => {
                    etag.as_deref() == Some(tag.trim_start_matches("W/"))
                }
                if_header::Subject::Token(token) => {
                    rules::if_tokens([format!("<{token}>").as_str()])
                        .first()
                        .is_some_and(|token| locks.contains(&token.hash()))
                }
            };
            value != condition.not
        };
        if group.lists.iter().any(|list| list.iter().all(holds)) {
            return Ok(());
        }
    }
    Err(ApiError::new(StatusCode::PRECONDITION_FAILED, IF_FAILED))
}
