//! The write side: authentication endpoints and `PUT`/`DELETE` of files. Every
//! successful request here appends exactly one event to the log.

mod auth;
mod lock;
mod storage;

pub use auth::mint_signup_token;
pub use lock::{
    NewLock, STORAGE_METHODS, acquire, lock_answer, locked, lockinfo_too_large, method_not_allowed,
    new_token, not_the_live_lock, refresh, release, storage_other_methods,
};
pub use storage::{
    check_allowed_path, check_not_moved, delete_legacy, delete_storage, existing_user,
    operator_delete, put_legacy, put_storage, quota_bytes, quota_exceeded, write,
};

use api::AppState;
use axum::Router;
use axum::routing::put;

/// The authentication routes (grant auth, legacy cookie auth, signup tokens); see the
/// `auth` module.
pub fn auth_router() -> Router<AppState> {
    auth::router()
}

/// The write-api on its own (split deployment): authentication, path-addressed
/// writes and storage locks (`LOCK`/`UNLOCK`, see `lock`).
pub fn router() -> Router<AppState> {
    auth_router().route(
        "/storage/{*rest}",
        put(put_storage)
            .delete(delete_storage)
            .fallback(storage_other_methods),
    )
}

/// This service's routes in the OpenAPI document (`homeserver::openapi`), generated
/// from the `#[utoipa::path]` annotations on the handlers. (`LOCK`/`UNLOCK` on
/// `/storage/…` are not HTTP methods OpenAPI 3.1 can describe; the document says so.)
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    storage::put_storage,
    storage::delete_storage,
    storage::put_legacy,
    storage::delete_legacy,
    auth::grant::signup,
    auth::grant::create_session,
    auth::grant::get_session,
    auth::grant::delete_session,
    auth::grant::list_sessions,
    auth::grant::revoke_session,
    auth::cookie::signup,
    auth::cookie::signin,
    auth::cookie::get_session,
    auth::cookie::signout,
    auth::signup::token_status,
    auth::account::delete_account
))]
pub struct ApiDoc;
