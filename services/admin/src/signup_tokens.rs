//! Signup tokens: minting (`GET|POST /generate_signup_token`) and listing
//! (`GET /signup_tokens`).
//!
//! Minting is `write_api::mint_signup_token`, the one place a token is made: one
//! `SignupTokenMinted` operator event holding the token's SHA-256, never its text. So
//! the text exists only in the mint's answer, and the listing shows each token's
//! `token_hash` (hex) where the reference shows the token itself — a deliberate
//! difference: a leaked listing (or log) must not be a bag of usable invitations.

use crate::limits::LimitsPatch;
use api::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use domain::event::UserLimits;
use serde::Serialize;
use store::admin::TokenState;

/// Default and largest page of the listing.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `GET /generate_signup_token`: a token with the server's default limits, as text.
#[utoipa::path(get, path = "/generate_signup_token", operation_id = "generate_signup_token", tag = "admin", responses((status = 200, description = "a new signup token", content_type = "text/plain"), (status = 401, description = "no or a wrong admin password")))]
pub(crate) async fn generate(State(state): State<AppState>) -> Result<Response, ApiError> {
    mint(&state, UserLimits::default()).await
}

/// `POST /generate_signup_token` with a JSON body of limits (the quota fields, see
/// `limits`; absent or `null` = the server default): the account it admits gets them.
#[utoipa::path(post, path = "/generate_signup_token", operation_id = "generate_signup_token_with_limits", tag = "admin", request_body(content = serde_json::Value, description = "the limits of the user it signs up", content_type = "application/json"), responses((status = 200, description = "a new signup token", content_type = "text/plain"), (status = 400, description = "invalid limits"), (status = 401, description = "no or a wrong admin password")))]
pub(crate) async fn generate_with_limits(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let limits = LimitsPatch::parse(&body)?.apply(&UserLimits::default());
    mint(&state, limits).await
}

async fn mint(state: &AppState, limits: UserLimits) -> Result<Response, ApiError> {
    let token = write_api::mint_signup_token(state, limits, crate::request_id()).await?;
    tracing::info!("operator minted a signup token");
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        token,
    )
        .into_response())
}

#[derive(Serialize)]
pub(crate) struct Page {
    items: Vec<Item>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Item {
    /// SHA-256 of the token text, hex.
    token_hash: String,
    created_at: String,
    used_at: Option<String>,
    used_by: Option<String>,
}

fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `GET /signup_tokens?limit&cursor&state=all|used|unused`: oldest first.
#[utoipa::path(get, path = "/signup_tokens", operation_id = "list_signup_tokens", tag = "admin", responses((status = 200, description = "the signup tokens", content_type = "application/json"), (status = 401, description = "no or a wrong admin password")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page>, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    let mut wanted = TokenState::All;
    for (key, value) in url_pairs(query.as_deref()) {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|l| *l > 0)
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid limit: {value}")))?
                    .min(MAX_LIMIT);
            }
            "cursor" if value.is_empty() => {}
            "cursor" => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&value, &mut hash)
                    .map_err(|_| ApiError::bad_request(format!("Invalid cursor: {value}")))?;
                cursor = Some(hash);
            }
            "state" => {
                wanted = match value.as_str() {
                    "all" | "" => TokenState::All,
                    "used" => TokenState::Used,
                    "unused" => TokenState::Unused,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid state: {value} (all, used or unused)"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    let rows = state
        .store
        .signup_tokens_page(wanted, cursor, limit)
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| hex::encode(r.token_hash)))
        .flatten();
    Ok(Json(Page {
        items: rows
            .into_iter()
            .map(|r| Item {
                token_hash: hex::encode(r.token_hash),
                created_at: rfc3339(r.created_us),
                used_at: r.used_us.map(rfc3339),
                used_by: r.used_by,
            })
            .collect(),
        next_cursor,
    }))
}

fn url_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}
