//! The read side of storage: `GET`/`HEAD` of files, directory listings, `/` and
//! `/info` (spec §3.1, §3.5), plus the Merkle and version-history routes.
//!
//! Everything is served from the projections and the blob store; nothing here appends
//! to the log. Authorization runs before any lookup, so for `/priv/` the answer to an
//! unauthorized request is the same whether the path exists or not.

pub mod export;
mod file;
mod listing;
pub mod merkle;
mod merkle_diff;
pub mod versions;

use api::tenant::{self, Addressing, StorageTarget};
use api::{ApiError, AppState, MaybeSession};
use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;

/// Features advertised by `GET /info`; clients ignore ids they do not know.
pub const FEATURES: &[&str] = &[
    "path-addressed-storage",
    "grant-proof-logout",
    "grant-session-slots",
    "webdav-locks",
];

/// The read-api on its own (split deployment): health, `/info`, path-addressed and
/// legacy reads.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/info", get(info))
        .route("/storage/{*rest}", get(get_storage))
        .merge(merkle::router())
        .merge(versions::router())
        .merge(export::router())
        .fallback(get_legacy)
}

/// The `key=value` pairs of a query string in order, values form-decoded (`+` is a
/// space, then percent-decoding; invalid UTF-8 is replaced), keys as written.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (&str, String)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        (key, value)
    })
}

#[utoipa::path(get, path = "/", operation_id = "server_root", tag = "server", responses((status = 200, description = "`Pubky Homeserver`", content_type = "text/plain")))]
pub async fn root() -> &'static str {
    "Pubky Homeserver"
}

#[utoipa::path(get, path = "/info", tag = "server", responses((status = 200, description = "the features this server has", content_type = "application/json")))]
pub async fn info() -> Response {
    let body = serde_json::json!({ "features": FEATURES }).to_string();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET`/`HEAD /storage/<owner>/<path>`.
#[utoipa::path(get, path = "/storage/{user}/{path}", tag = "storage", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)")), responses((status = 200, description = "the file, or a listing of a directory"), (status = 304, description = "not modified"), (status = 400, description = "invalid path or query"), (status = 401, description = "a private path without a session"), (status = 403, description = "a session without read access"), (status = 404, description = "no such file or directory")))]
pub async fn get_storage(
    State(state): State<AppState>,
    session: MaybeSession,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let target = match tenant::path_addressed(uri.path()) {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    read(&state, session, peer, &method, &uri, &headers, target).await
}

/// `GET`/`HEAD /<path>` with the owner from `pubky-host`, `Host` or the query.
#[utoipa::path(get, path = "/{path}", tag = "storage", params(("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)")), description = "Legacy owner-relative storage: the owner comes from `pubky-host`, `Host` or the `pubky-host` query parameter. PUT and DELETE as on `/storage/{user}/{path}`.", responses((status = 200, description = "the file, or a listing of a directory"), (status = 400, description = "no owner or an invalid path"), (status = 404, description = "no such file or directory")))]
pub async fn get_legacy(
    State(state): State<AppState>,
    session: MaybeSession,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let target = tenant::legacy_owner(&uri, &headers).and_then(|owner| {
        Ok(StorageTarget {
            owner,
            path: tenant::legacy_path(uri.path())?,
            addressing: Addressing::Legacy,
        })
    });
    match target {
        Ok(target) => {
            let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
            read(&state, session, peer, &method, &uri, &headers, target).await
        }
        Err(e) => e.into_response(),
    }
}

/// A read of `target` (authorization, file or listing, validators and cache headers),
/// whatever route named it: `/storage/`, legacy paths, and WebDAV's `GET`/`HEAD`.
pub async fn read(
    state: &AppState,
    MaybeSession(session): MaybeSession,
    peer: Option<std::net::IpAddr>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    target: StorageTarget,
) -> Response {
    let authorized = domain::authorization::authorize_read(
        session.as_ref().map(|s| s.view()),
        &target.owner,
        &target.path,
    );
    // Only an authorized read looks anything up (`api::reads`: the replica once it
    // has the owner's writes).
    let state = &match authorized {
        Ok(()) => state.reading_user(&target.owner).await,
        Err(_) => state.clone(),
    };
    let result = async {
        authorized?;
        if target.path.is_dir() {
            if method == Method::HEAD {
                return Err(ApiError::not_found());
            }
            return listing::list(state, &target, uri.query()).await;
        }
        let reader = session.as_ref().map(|s| &s.user);
        let bucket = if method == Method::GET {
            api::bandwidth::read_bucket(state, reader, headers, peer).await?
        } else {
            None
        };
        file::serve(state, method, headers, &target, bucket).await
    }
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    merkle::add_root_header(state, &target.owner, target.path.as_str(), &mut response).await;
    tenant::add_cache_headers(&mut response, &target.path, target.addressing);
    response
}

/// This service's routes in the OpenAPI document (`homeserver::openapi`), generated
/// from the `#[utoipa::path]` annotations on the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    root,
    info,
    get_storage,
    get_legacy,
    merkle::root,
    merkle::node,
    merkle::nodes,
    merkle::proof,
    merkle_diff::diff,
    versions::versions,
    export::export
))]
pub struct ApiDoc;
