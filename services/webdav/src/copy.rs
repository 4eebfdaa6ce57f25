//! `COPY` and `MOVE` (RFC 4918 §9.8, §9.9): one `tree_copied` event each, however
//! many files a folder holds, so a move is never half-done on the log.
//!
//! Everything is decided against the user's projected state at the sequence the event
//! is appended after (`write::append_folder_event`): the source and destination as
//! they are, the locks on both (a `MOVE` changes its source, so the source's locks
//! count; the destination's always do, including a folder lock above it), the write-path limits and the quota. Files
//! are content-addressed, so a copy stores no bytes: the new entries name the same
//! blobs.

use crate::path::{self, Access, DavTarget, authorize};
use crate::resource::{self, Resource};
use crate::write::{SCAFFOLDING, append_folder_event, require_parent};
use api::{ApiError, AppState, Session};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::EntryPath;
use domain::event::Change;
use store::projection::ENTRY_OVERHEAD_BYTES;

pub async fn copy_or_move(
    state: &AppState,
    session: &Session,
    source: &DavTarget,
    headers: &HeaderMap,
    moved: bool,
) -> Result<Response, ApiError> {
    let dest = path::destination(headers.get("destination"))?;
    authorize(
        session,
        source,
        if moved { Access::Write } else { Access::Read },
    )?;
    authorize(session, &dest, Access::Write)?;
    if dest.is_scaffolding() || (moved && source.is_scaffolding()) {
        return Err(ApiError::forbidden(SCAFFOLDING));
    }
    let overwrite = match headers.get("overwrite").map(|v| v.as_bytes()) {
        None | Some(b"T") | Some(b"t") => true,
        Some(b"F") | Some(b"f") => false,
        Some(_) => return Err(ApiError::bad_request("Overwrite must be T or F")),
    };
    let depth = headers
        .get("depth")
        .map(|v| v.to_str().unwrap_or("?").trim());
    let (from, to, is_dir) = match resource::resolve(state, source).await? {
        Resource::Missing => return Err(ApiError::not_found()),
        Resource::File(entry) => (entry.path, dest.file_form().to_string(), false),
        Resource::Collection(dir) => (dir, dest.dir_form(), true),
    };
    let shallow = match (depth, is_dir, moved) {
        (None, ..) => false,
        (Some(d), ..) if d.eq_ignore_ascii_case("infinity") => false,
        (Some("0"), true, false) => true,
        (Some("0"), false, _) => false,
        _ => {
            return Err(ApiError::bad_request(
                "Depth must be infinity (or 0 for a COPY)",
            ));
        }
    };
    let (from_file, to_file) = (from.trim_end_matches('/'), to.trim_end_matches('/'));
    if from_file == to_file {
        return Err(ApiError::forbidden("Source and destination are the same"));
    }
    if to_file.starts_with(&format!("{from_file}/")) {
        return Err(ApiError::forbidden(
            "A collection cannot be copied or moved into itself",
        ));
    }
    if from_file.starts_with(&format!("{to_file}/")) {
        return Err(ApiError::forbidden(
            "A collection cannot be replaced by something inside it",
        ));
    }
    require_parent(state, &dest).await?;
    let to_path = entry_path(&to)?;
    let from_path = entry_path(&from)?;
    let presented = crate::lock::presented(headers)?;
    let dest_dir = format!("{to_file}/");
    let (visible, existed) = append_folder_event(state, &source.owner, |user| {
        let (from, to, presented) = (&from, &to, &presented);
        let (to_path, from_path, dest_dir) = (&to_path, &from_path, &dest_dir);
        let dest = &dest;
        async move {
            write_api::check_allowed_path(&user, to_path)?;
            if moved {
                write_api::check_allowed_path(&user, from_path)?;
                crate::lock::check_tree(state, &source.owner, from, presented).await?;
            }
            // The source as the event will find it.
            let still = match resource::resolve(state, source).await? {
                Resource::File(entry) => entry.path == *from,
                Resource::Collection(dir) => dir == *from,
                Resource::Missing => false,
            };
            if !still {
                return Err(ApiError::not_found());
            }
            let exists = resource::resolve(state, dest).await?.exists();
            if exists && !overwrite {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "The destination exists and Overwrite is F",
                ));
            }
            // What the destination replaces, and the folder it lands in, may be locked
            // whether or not something is there yet.
            crate::lock::check_tree(state, &source.owner, to, presented).await?;
            if let Some(limit) = write_api::quota_bytes(state, &user) {
                let adds = match shallow {
                    true => 0,
                    false => usage(state, &source.owner, from).await?,
                };
                let frees =
                    usage(state, &source.owner, dest_dir).await? + if moved { adds } else { 0 };
                if adds > 0 && user.used_bytes + adds - frees > limit {
                    return Err(write_api::quota_exceeded());
                }
            }
            let change = Change::TreeCopied {
                from: from.clone(),
                to: to.clone(),
                moved,
                shallow,
            };
            Ok((change, exists))
        }
    })
    .await?;
    Ok(match (visible, existed) {
        (false, _) => StatusCode::ACCEPTED,
        (true, true) => StatusCode::NO_CONTENT,
        (true, false) => StatusCode::CREATED,
    }
    .into_response())
}

fn entry_path(path: &str) -> Result<EntryPath, ApiError> {
    EntryPath::parse_canonical(path)
        .map_err(|e| ApiError::bad_request(format!("Invalid WebDAV path: {e}")))
}

/// The quota bytes of the files at `path` and, for a folder, under it (with the
/// per-entry overhead).
async fn usage(state: &AppState, owner: &domain::PublicKey, path: &str) -> Result<i64, ApiError> {
    let (files, bytes) = state.store.tree_usage(owner, path).await?;
    Ok(bytes + files * ENTRY_OVERHEAD_BYTES)
}
