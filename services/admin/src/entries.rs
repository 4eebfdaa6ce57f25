//! `DELETE /webdav/{user}/{path}`: the operator deletes one entry.
//!
//! The write-api's own delete does the work (`write_api::operator_delete`): the same
//! `FileDeleted` event, quota accounting and feed entry as a user's `DELETE`, minus the
//! session and the user's `allowed_write_paths`, which restrict the user, not the
//! operator. A disabled user's entries can be deleted too (deletes are allowed for
//! disabled users anyway). The full WebDAV server of the reference (`/dav/`) is not
//! implemented; only this route of it.

use crate::users::parse_user;
use api::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::response::Response;
use domain::EntryPath;

#[utoipa::path(delete, path = "/webdav/{user}/{path}", operation_id = "delete_entry", tag = "admin", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)")), responses((status = 204, description = "deleted"), (status = 401, description = "no or a wrong admin password"), (status = 404, description = "no such file")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path((user, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = parse_user(&user)?;
    let path = EntryPath::normalize(&format!("/{path}"))
        .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}")))?;
    if path.is_dir() {
        return Err(ApiError::bad_request("Target path must be a file"));
    }
    let response =
        write_api::operator_delete(&state, user.clone(), path.clone(), crate::request_id()).await?;
    tracing::info!(user = %user.to_z32(), path = path.as_str(), "operator deleted an entry");
    Ok(response)
}
