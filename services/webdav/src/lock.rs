//! Storage locks as WebDAV sees them: the locks of `/storage/` (events projected into
//! `entry_locks`, see `write_api`'s lock module), honoured by operations on folders.

use crate::if_header;
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
