//! The client-facing router of `homeserver all`: every service's routes composed in
//! one process, no proxy hop. Storage routes are shared by two services (reads and
//! writes), so they are assembled here method by method.

use crate::config::Config;
use api::AppState;
use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{MethodRouter, any, get};

/// Methods served on legacy owner-relative paths, for the `Allow` header of a 405
/// (`/storage/…` also has `LOCK`/`UNLOCK`: `write_api::STORAGE_METHODS`).
const LEGACY_METHODS: &str = "GET, HEAD, PUT, DELETE";

pub fn router(
    state: AppState,
    fanout: events::Fanout,
    config: &Config,
    mirrors: mirror::MirrorSet,
) -> Router {
    let storage: MethodRouter<AppState> = get(read_api::get_storage)
        .put(write_api::put_storage)
        .delete(write_api::delete_storage)
        .fallback(write_api::storage_other_methods);
    let routes = Router::new()
        .route("/", get(read_api::root))
        .route("/info", get(read_api::info))
        .route("/storage", any(missing_owner))
        .route("/storage/", any(missing_owner))
        .route("/storage/{*rest}", storage)
        .merge(read_api::merkle::router())
        .merge(read_api::versions::router())
        .merge(read_api::export::router())
        .merge(write_api::auth_router())
        .merge(events::router(fanout))
        .merge(optional_pages(config))
        .merge(mirror::router(mirrors.clone()))
        .fallback(legacy)
        // Mirrored users are read-only here (writes 409, reads name the primary).
        .layer(axum::middleware::from_fn_with_state(
            mirrors.clone(),
            mirror::guard,
        ));
    client_facing(routes, state.clone()).merge(dav(state, mirrors))
}

/// WebDAV (`/dav/<user>/`) with the rate limits and request metrics of the other
/// client-facing routes, but outside their CORS layer, which would answer WebDAV's
/// `OPTIONS` itself (`webdav` handles CORS for its routes); mirrored users are
/// read-only here too.
pub fn dav(state: AppState, mirrors: mirror::MirrorSet) -> Router {
    let routes =
        webdav::router().layer(axum::middleware::from_fn_with_state(mirrors, mirror::guard));
    limited_and_measured(routes, &state).with_state(state)
}

/// Rate limits, then (outside them) request metrics, so 429s are counted.
fn limited_and_measured(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::rate_limit::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            api::metrics::track,
        ))
}

/// The pages this server serves only when configured to: the `/drive` explorer. A
/// disabled page's path falls through to legacy storage, as in the reference.
pub fn optional_pages<S: Clone + Send + Sync + 'static>(config: &Config) -> Router<S> {
    match config.drive_web_explorer {
        true => drive::router(),
        false => Router::new(),
    }
}

/// What every client-facing router gets, in `homeserver all` and in each service of
/// the split deployment: health endpoints, then (from the inside out) rate limits,
/// request metrics (so 429s are counted) and CORS.
pub fn client_facing(routes: Router<AppState>, state: AppState) -> Router {
    let routes = routes
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::health::readyz))
        .route("/openapi.json", get(crate::openapi::openapi_json));
    limited_and_measured(routes, &state)
        .layer(api::cors::layer())
        .with_state(state)
}

async fn missing_owner() -> api::ApiError {
    api::ApiError::bad_request("Missing storage owner or path")
}

async fn method_not_allowed() -> Response {
    write_api::method_not_allowed(LEGACY_METHODS)
}

/// Legacy owner-relative storage (`/<path>`), dispatched by method.
async fn legacy(state: axum::extract::State<AppState>, request: Request) -> Response {
    let method = request.method().clone();
    match method {
        Method::GET | Method::HEAD => call(read_api::get_legacy, state, request).await,
        Method::PUT => call(write_api::put_legacy, state, request).await,
        Method::DELETE => call(write_api::delete_legacy, state, request).await,
        _ => method_not_allowed().await,
    }
}

async fn call<H, T>(
    handler: H,
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
) -> Response
where
    H: axum::handler::Handler<T, AppState>,
{
    handler.call(request, state).await
}
