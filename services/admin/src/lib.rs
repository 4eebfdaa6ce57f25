//! The admin API: the operator's HTTP interface, on its own listener (spec §8).
//!
//! It owns the operator's actions — server info, signup tokens, disabling and enabling
//! users, per-user limit overrides, deleting an entry, demo users (when enabled), a stream of every user's
//! events including private paths, and WebDAV over every drive (`dav`) — and nothing else: each action is one event appended
//! with the same `commit()` step as the public services (the answer comes once the
//! projection shows it), and the rules the actions change (quotas, disabled users,
//! write paths) are enforced by the write-api, which reads them from the projection.
//!
//! Every route but `GET /` and `GET /healthz` requires `X-Admin-Password`, compared in
//! constant time ([`auth`]). There is no default password: the caller (the
//! `homeserver` crate) refuses to start the listener without one. The listener is
//! meant for a private network or localhost; it serves plain HTTP.
//!
//! Events written here carry a `request_id` starting with [`REQUEST_ID_PREFIX`], so
//! a reader of the log can tell operator actions from the user's own (the v1 envelope
//! has no actor field, and its schemas forbid extra fields).

mod auth;
mod dav;
mod demo_users;
mod entries;
mod info;
mod limits;
mod signup_tokens;
mod users;

use api::AppState;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use std::sync::Arc;

pub use limits::{Field, LimitsPatch, parse_rate};

/// Prefix of the `request_id` of every event the admin API appends.
pub const REQUEST_ID_PREFIX: &str = "admin-";

/// The text of `GET /` on the admin listener.
pub const ROOT_TEXT: &str = "Homeserver - Admin Endpoint";

/// A fresh request id for one operator action (also the event's `Nats-Msg-Id`).
pub fn request_id() -> String {
    format!("{REQUEST_ID_PREFIX}{}", uuid::Uuid::now_v7())
}

/// What the admin API needs besides the shared [`AppState`].
#[derive(Clone)]
pub struct AdminConfig {
    /// The operator's password. Must not be empty (checked by [`router`]'s caller and
    /// refused by [`AdminConfig::new`]).
    password: String,
    /// `<ip>:<port>` of the Pubky TLS endpoint the PKARR record announces, if any.
    pub pkarr_pubky_address: Option<String>,
    /// The ICANN domain the PKARR record announces, if any.
    pub pkarr_icann_domain: Option<String>,
    /// Serve `POST /generate_demo_user` (`admin_demo_users`, off by default).
    pub demo_users: bool,
    /// `http://<icann_domain>:<port>` of the client listener, for a demo user's
    /// `drive_url`; `None` when the domain is unset or the port is 0.
    pub demo_base_url: Option<String>,
    /// This process's mirrored users (`/mirrors` routes change them at once; the
    /// mirror loop also re-reads its table).
    pub mirrors: mirror::MirrorSet,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("password", &"<redacted>")
            .field("pkarr_pubky_address", &self.pkarr_pubky_address)
            .field("pkarr_icann_domain", &self.pkarr_icann_domain)
            .field("demo_users", &self.demo_users)
            .field("demo_base_url", &self.demo_base_url)
            .finish()
    }
}

/// Refusal to build an admin API without a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the admin API needs a non-empty password")]
pub struct NoPassword;

impl AdminConfig {
    pub fn new(password: &str) -> Result<Self, NoPassword> {
        if password.is_empty() {
            return Err(NoPassword);
        }
        Ok(AdminConfig {
            password: password.to_owned(),
            pkarr_pubky_address: None,
            pkarr_icann_domain: None,
            demo_users: false,
            demo_base_url: None,
            mirrors: mirror::MirrorSet::default(),
        })
    }
}

/// The admin router, ready to serve on its own listener.
pub fn router(state: AppState, fanout: events::Fanout, config: AdminConfig) -> Router {
    let expected = auth::Expected::new(&config.password);
    // Disabled, the demo-user route does not exist (404), as in the reference.
    let demo = match config.demo_users {
        true => Router::new().route("/generate_demo_user", post(demo_users::generate)),
        false => Router::new(),
    };
    let dav = dav::router(expected.clone());
    let protected = Router::new()
        .route("/info", get(info::get))
        .route(
            "/generate_signup_token",
            get(signup_tokens::generate).post(signup_tokens::generate_with_limits),
        )
        .route("/signup_tokens", get(signup_tokens::list))
        .route("/webdav/{user}/{*path}", delete(entries::delete))
        .route("/users/{user}/disable", post(users::disable))
        .route("/users/{user}/enable", post(users::enable))
        .route(
            "/users/{user}/quota",
            get(users::get_quota).patch(users::patch_quota),
        )
        .merge(events::operator_router(fanout))
        .merge(mirror::admin_router(config.mirrors.clone()))
        .merge(demo)
        .layer(Extension(Arc::new(config)))
        .route_layer(axum::middleware::from_fn_with_state(
            expected,
            auth::require_password,
        ));
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(api::healthz))
        .route("/openapi.json", get(openapi_json))
        .merge(protected)
        .layer(api::cors::layer())
        .merge(dav)
        .with_state(state)
}

#[utoipa::path(get, path = "/", operation_id = "admin_root", tag = "admin", responses((status = 200, description = "a greeting", content_type = "text/plain")))]
pub(crate) async fn root() -> &'static str {
    ROOT_TEXT
}

/// The admin listener's routes in the OpenAPI document (`GET /openapi.json` on the
/// admin listener, `schemas/openapi-admin.json`), generated from the handlers'
/// `#[utoipa::path]` annotations; the operator's event stream and the metrics
/// listener's route are merged in by [`openapi`].
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Pubky homeserver admin API",
        description = "The operator's API, on its own listener (`admin_listen`), every route but `/` and `/healthz` behind `X-Admin-Password`."
    ),
    paths(
        root,
        info::get,
        signup_tokens::generate,
        signup_tokens::generate_with_limits,
        signup_tokens::list,
        entries::delete,
        users::disable,
        users::enable,
        users::get_quota,
        users::patch_quota,
        demo_users::generate,
        dav::serve,
        openapi_json
    )
)]
struct ApiDoc;

/// The admin API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut doc = ApiDoc::openapi();
    doc.merge(api::ApiDoc::openapi());
    doc.merge(events::OperatorApiDoc::openapi());
    doc.merge(mirror::AdminApiDoc::openapi());
    doc.merge(api::MetricsApiDoc::openapi());
    // `/readyz` is not on the admin listener.
    doc.paths.paths.remove("/readyz");
    doc
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "admin", responses((status = 200, description = "the admin API's OpenAPI 3.1 document", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}
