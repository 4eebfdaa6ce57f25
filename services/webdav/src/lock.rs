//! Storage locks as WebDAV sees them: `LOCK`/`UNLOCK` on `/dav/` are the very locks of
//! `/storage/` (events projected into `entry_locks`, see `write_api`'s lock module), so
//! a lock taken one way holds the other way, on every instance. They are exclusive
//! write locks on files; folder operations honour the locks of the files under them.

use crate::if_header;
use crate::path::DavTarget;
use api::tenant::{Addressing, StorageTarget};
use api::{ApiError, AppState, now_micros};
use axum::http::{HeaderMap, StatusCode};
use domain::PublicKey;
use domain::lock::LockToken;

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

/// A folder operation on `dir` may go ahead only if every live lock at or under it is
/// among the submitted tokens: 423 otherwise.
pub async fn check_tree(
    state: &AppState,
    owner: &PublicKey,
    dir: &str,
    presented: &[LockToken],
) -> Result<(), ApiError> {
    let live = state
        .store
        .live_locks_under(owner, dir, now_micros())
        .await?;
    if live
        .iter()
        .all(|hash| presented.iter().any(|token| token.hash() == *hash))
    {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::LOCKED, domain::lock::LOCKED))
    }
}

/// The file a `LOCK`/`UNLOCK` names: a collection cannot be locked (400, the
/// storage locks' text), a missing path can (nothing is created, as on `/storage/`).
pub async fn file_target(state: &AppState, target: &DavTarget) -> Result<StorageTarget, ApiError> {
    let path = match crate::resource::resolve(state, target).await? {
        crate::resource::Resource::Collection(_) => target.dir_form(),
        _ => target.file_form().to_string(),
    };
    Ok(StorageTarget {
        owner: target.owner.clone(),
        path: domain::EntryPath::parse_canonical(&path)
            .map_err(|e| ApiError::bad_request(format!("Invalid WebDAV path: {e}")))?,
        addressing: Addressing::Path,
    })
}

pub const IF_FAILED: &str = "The If header's conditions are not met";

/// Evaluates the `If` header (RFC 4918 §10.4) for a change of `target`: true when
/// one of its lists holds for its resource (the request's, or the tagged one), each
/// condition judged on the resource's current entity tag and live lock; 412 when
/// none does. No header is no condition. Which lock a write needs is the storage
/// lock check's, afterwards; this only makes a false condition fail as §10.4 asks.
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
    for group in &tagged {
        let resource = match &group.resource {
            None => Some(target.clone()),
            Some(url) => axum::http::HeaderValue::from_str(url)
                .ok()
                .and_then(|value| crate::path::destination(Some(&value)).ok())
                .filter(|tagged| tagged.owner == target.owner),
        };
        let Some(resource) = resource else { continue };
        let path = resource.file_form().to_string();
        let etag = state
            .store
            .entry(&resource.owner, &path)
            .await?
            .map(|entry| blobs::BlobHash(entry.content_hash).etag());
        let lock = state
            .store
            .live_lock(&resource.owner, &path, now_micros())
            .await?;
        let holds = |condition: &if_header::Condition| {
            let value = match &condition.subject {
                if_header::Subject::ETag(tag) => {
                    etag.as_deref() == Some(tag.trim_start_matches("W/"))
                }
                if_header::Subject::Token(token) => {
                    let tokens = domain::lock::if_tokens([format!("<{token}>").as_str()]);
                    match (tokens.first(), lock) {
                        (Some(token), Some(live)) => token.hash() == live,
                        _ => false,
                    }
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
