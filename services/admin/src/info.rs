//! `GET /info`: what an operator checks first — who this server is, where it is
//! announced, how many users and tokens it has, and how much storage they use.

use crate::AdminConfig;
use api::{ApiError, AppState};
use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use std::sync::Arc;

/// The reference's field names (spec §8).
#[derive(Serialize)]
pub(crate) struct Info {
    num_users: i64,
    num_disabled_users: i64,
    /// Accounted storage of every user (content plus per-entry overhead), in whole MB
    /// (1 MB = 1,048,576 bytes), rounded down.
    total_disk_used_mb: i64,
    num_signup_codes: i64,
    num_unused_signup_codes: i64,
    public_key: String,
    pkarr_pubky_address: Option<String>,
    pkarr_icann_domain: Option<String>,
    version: &'static str,
}

#[utoipa::path(get, path = "/info", operation_id = "admin_info", tag = "admin", responses((status = 200, description = "counts and settings", content_type = "application/json"), (status = 401, description = "no or a wrong admin password")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Extension(config): Extension<Arc<AdminConfig>>,
) -> Result<Json<Info>, ApiError> {
    let stats = state.store.server_stats().await?;
    Ok(Json(Info {
        num_users: stats.num_users,
        num_disabled_users: stats.num_disabled_users,
        total_disk_used_mb: stats.used_bytes / (1024 * 1024),
        num_signup_codes: stats.num_signup_tokens,
        num_unused_signup_codes: stats.num_unused_signup_tokens,
        public_key: state.config.public_key.to_z32(),
        pkarr_pubky_address: config.pkarr_pubky_address.clone(),
        pkarr_icann_domain: config.pkarr_icann_domain.clone(),
        version: env!("CARGO_PKG_VERSION"),
    }))
}
