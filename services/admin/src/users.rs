//! Users: disable, enable, and the per-user limit overrides (`/users/{user}/…`).
//!
//! Each change is one account event (`UserDisabled`, `UserEnabled`, `LimitsChanged`)
//! appended with the user's projected account sequence as the expected last sequence,
//! like the write-api's account events: a change racing a signup or a session of the
//! same user is refused by the log and re-done on the new state. The write-api reads
//! the projected result on every write (403 `User is disabled`, 507 over the quota,
//! 403 outside the allowed write paths).

use crate::limits::{LimitsPatch, effective_json, overrides_json, user_limits};
use api::writer::{CommitError, MAX_ATTEMPTS, too_much_contention};
use api::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::event::Change;
use domain::{Event, PublicKey};
use log::Expected;
use store::users::UserRow;

/// The `{user}` path segment: a raw z-base-32 key.
pub(crate) fn parse_user(text: &str) -> Result<PublicKey, ApiError> {
    domain::tenant::parse_storage_owner(text)
        .map_err(|_| ApiError::bad_request(format!("Invalid public key: {text}")))
}

async fn existing_user(state: &AppState, user: &PublicKey) -> Result<UserRow, ApiError> {
    state
        .store
        .user(user)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Appends the account event `change(current row)` for `user`, re-reading the row when
/// another writer of the same user got in first. 404 when the user does not exist.
async fn append_account(
    state: &AppState,
    user: &PublicKey,
    change: impl Fn(&UserRow) -> Change,
) -> Result<(), ApiError> {
    let _queue = state.lock_user(user).await;
    let request_id = crate::request_id();
    for _ in 0..MAX_ATTEMPTS {
        let row = existing_user(state, user).await?;
        let event = Event::new(
            user.clone(),
            api::now_micros(),
            request_id.clone(),
            change(&row),
        );
        match state.commit(&event, Expected::LastSeq(row.acct_seq)).await {
            Ok(_) => return Ok(()),
            Err(CommitError::Conflict) => continue,
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(too_much_contention())
}

/// `POST /users/{user}/disable`: 200 `Ok`; the user's writes are refused from now on
/// (reads, deletes and sign-in still work, as in the reference).
#[utoipa::path(post, path = "/users/{user}/disable", operation_id = "disable_user", tag = "admin", params(("user" = String, Path, description = "the user's public key (z-base-32)")), responses((status = 200, description = "disabled"), (status = 401, description = "no or a wrong admin password"), (status = 404, description = "no such user")))]
pub(crate) async fn disable(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<&'static str, ApiError> {
    let user = parse_user(&user)?;
    append_account(&state, &user, |_| Change::UserDisabled).await?;
    tracing::info!(user = %user.to_z32(), "operator disabled a user");
    Ok("Ok")
}

/// `POST /users/{user}/enable`: 200 `Ok`.
#[utoipa::path(post, path = "/users/{user}/enable", operation_id = "enable_user", tag = "admin", params(("user" = String, Path, description = "the user's public key (z-base-32)")), responses((status = 200, description = "enabled"), (status = 401, description = "no or a wrong admin password"), (status = 404, description = "no such user")))]
pub(crate) async fn enable(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<&'static str, ApiError> {
    let user = parse_user(&user)?;
    append_account(&state, &user, |_| Change::UserEnabled).await?;
    tracing::info!(user = %user.to_z32(), "operator enabled a user");
    Ok("Ok")
}

/// `GET /users/{user}/quota`: `{effective, overrides}`.
#[utoipa::path(get, path = "/users/{user}/quota", tag = "admin", params(("user" = String, Path, description = "the user's public key (z-base-32)")), responses((status = 200, description = "the user's limits and usage", content_type = "application/json"), (status = 401, description = "no or a wrong admin password"), (status = 404, description = "no such user")))]
pub(crate) async fn get_quota(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = parse_user(&user)?;
    let row = existing_user(&state, &user).await?;
    Ok(quota_answer(&state, &row))
}

/// `PATCH /users/{user}/quota`: applies the patch (see `limits`), appends one
/// `LimitsChanged` with the complete new overrides, answers like `GET`.
#[utoipa::path(patch, path = "/users/{user}/quota", tag = "admin", params(("user" = String, Path, description = "the user's public key (z-base-32)")), request_body(content = serde_json::Value, content_type = "application/json"), responses((status = 200, description = "the new limits", content_type = "application/json"), (status = 400, description = "invalid limits"), (status = 401, description = "no or a wrong admin password"), (status = 404, description = "no such user")))]
pub(crate) async fn patch_quota(
    State(state): State<AppState>,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = parse_user(&user)?;
    let patch = LimitsPatch::parse(&body)?;
    append_account(&state, &user, |row| Change::LimitsChanged {
        limits: patch.apply(&user_limits(row)),
    })
    .await?;
    tracing::info!(user = %user.to_z32(), "operator changed a user's limits");
    let row = existing_user(&state, &user).await?;
    Ok(quota_answer(&state, &row))
}

fn quota_answer(state: &AppState, row: &UserRow) -> Response {
    let limits = user_limits(row);
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "effective": effective_json(&limits, &state.config),
            "overrides": overrides_json(&limits),
        })),
    )
        .into_response()
}
