//! The write side: authentication endpoints and `PUT`/`DELETE` of files. Every
//! successful request here appends exactly one event to the log.

mod auth;
mod storage;

pub use auth::mint_signup_token;
pub use storage::{delete_legacy, delete_storage, operator_delete, put_legacy, put_storage};

use api::AppState;
use axum::Router;
use axum::routing::put;

/// The authentication routes (grant auth, legacy cookie auth, signup tokens); see the
/// `auth` module.
pub fn auth_router() -> Router<AppState> {
    auth::router()
}

/// The write-api on its own (split deployment): authentication and path-addressed
/// writes.
pub fn router() -> Router<AppState> {
    auth_router().route("/storage/{*rest}", put(put_storage).delete(delete_storage))
}
