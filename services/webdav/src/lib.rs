//! WebDAV (RFC 4918) on a user's drive: `/dav/<user>/<path>` is the storage path
//! `<path>` of `<user>`, the very file REST serves at `/storage/<user>/<path>`.
//!
//! Why the protocol is written here and not taken from a WebDAV crate (`dav-server`):
//! such a crate drives a file system trait one file at a time. A `COPY` or `MOVE` of a
//! folder becomes one write per file, which on our log is many events (half a move is a
//! state a crash can leave behind) where it must be one; its lock system lives in the
//! memory of one process, where ours are events every instance honours; and it would
//! sit beside, not inside, the write path that checks quotas, write-path limits,
//! collisions, `If-Match` and locks against the projected state at the appended
//! sequence. What is left to write is the wire format (XML bodies and multistatus
//! answers), which is small; quick-xml reads the bodies.
//!
//! Every request is authenticated first (Bearer, Basic with the bearer token as
//! password, or the session cookie; see `auth`), then its path is parsed and authorized
//! with the REST rules (`path`). Reads and writes of files go through the read-api and
//! write-api functions the REST routes use, so both ways in behave the same.
//!
//! The routes sit outside the REST CORS layer: that layer answers every `OPTIONS`
//! itself, and WebDAV clients need `OPTIONS` to reach the server (`DAV:` header).
//! Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered here.

mod auth;
mod copy;
mod doc;
mod if_header;
mod lock;
mod operator;
pub mod path;
mod propfind;
mod proppatch;
mod resource;
mod write;
mod xml;

use crate::path::{Access, DavTarget, authorize};
use crate::resource::Resource;
use api::tenant::{Addressing, StorageTarget};
use api::{ApiError, AppState, MaybeSession, Session};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use domain::EntryPath;
use std::net::SocketAddr;

pub use operator::serve_operator;

/// The grant id of the operator's requests on a drive (`/dav` on the admin listener):
/// no grant has it (real ids are at most 22 characters of base64url).
pub const OPERATOR_GRANT: &str = "operator (admin WebDAV)";

/// The methods `/dav/` serves (the `Allow` header).
pub const METHODS: &str =
    "OPTIONS, GET, HEAD, PROPFIND, PROPPATCH, PUT, DELETE, MKCOL, COPY, MOVE, LOCK, UNLOCK";

/// The WebDAV routes of the client listeners (plain HTTP and Pubky TLS). A bare
/// `/dav` names no drive and is not WebDAV's (it falls to legacy storage, as in the
/// reference).
pub fn router() -> Router<AppState> {
    Router::new().route("/dav/{*rest}", any(handle))
}

/// This crate's route in the OpenAPI document (`homeserver::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(doc::get, doc::head, doc::put, doc::delete, doc::options))]
pub struct ApiDoc;

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let origin = request.headers().contains_key(header::ORIGIN);
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight();
    }
    let mut response = serve(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if origin {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "dav, allow, etag, last-modified, content-length, content-type, lock-token, ms-author-via",
            ),
        );
    }
    response
}

fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, METHODS),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "authorization, content-type, depth, destination, overwrite, if, lock-token, timeout",
        ),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn serve(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let Some(session) = auth::session(state, &parts.headers, parts.uri.path()).await? else {
        return Ok(auth::unauthorized());
    };
    let target = path::parse(parts.uri.path())?;
    dispatch(state, session, target, parts, body).await
}

/// A request of `session` on `target`, by method.
async fn dispatch(
    state: &AppState,
    session: Session,
    target: DavTarget,
    parts: axum::http::request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    // A malformed `If` header is refused whatever the method.
    lock::presented(&parts.headers)?;
    match parts.method.as_str() {
        "OPTIONS" => Ok(options()),
        "PROPFIND" => {
            authorize(&session, &target, Access::Read)?;
            let body = read_body(body, propfind::MAX_BODY_BYTES).await?;
            propfind::propfind(state, &target, &parts.headers, &body).await
        }
        "GET" | "HEAD" => {
            authorize(&session, &target, Access::Read)?;
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            get(state, session, peer, &parts, &target).await
        }
        "PROPPATCH" => {
            let body = read_body(body, propfind::MAX_BODY_BYTES).await?;
            proppatch::proppatch(state, &session, &target, &parts.headers, &body).await
        }
        "PUT" => write::put(state, &session, &target, &parts.headers, body).await,
        "DELETE" => write::delete(state, &session, &target, &parts.headers).await,
        "MKCOL" => {
            let body = read_body(body, propfind::MAX_BODY_BYTES).await?;
            write::mkcol(state, &session, &target, &parts.headers, &body).await
        }
        "COPY" => copy::copy_or_move(state, &session, &target, &parts.headers, false).await,
        "MOVE" => copy::copy_or_move(state, &session, &target, &parts.headers, true).await,
        "LOCK" => {
            authorize(&session, &target, Access::Write)?;
            lock::lock(state, &target, &parts.headers, body).await
        }
        "UNLOCK" => {
            authorize(&session, &target, Access::Write)?;
            lock::unlock(state, &target, &parts.headers).await
        }
        _ => Ok(method_not_allowed()),
    }
}

/// A request body of at most `limit` bytes, else 413.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"))
}

pub(crate) fn options() -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    // Class 2: LOCK and UNLOCK (exclusive and shared write locks, on files and on
    // collections of depth 0 or infinity).
    headers.insert("dav", HeaderValue::from_static("1, 2"));
    headers.insert("ms-author-via", HeaderValue::from_static("DAV"));
    headers.insert(header::ALLOW, HeaderValue::from_static(METHODS));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

fn method_not_allowed() -> Response {
    write_api::method_not_allowed(METHODS)
}

/// `GET`/`HEAD`: a file as REST serves it; a collection as a small HTML index.
async fn get(
    state: &AppState,
    session: Session,
    peer: Option<std::net::IpAddr>,
    parts: &axum::http::request::Parts,
    target: &DavTarget,
) -> Result<Response, ApiError> {
    match resource::resolve(state, target).await? {
        Resource::Missing => Err(ApiError::not_found()),
        Resource::File(entry) => {
            let path = EntryPath::parse_canonical(&entry.path)
                .map_err(|e| ApiError::bad_request(format!("Invalid WebDAV path: {e}")))?;
            let storage = StorageTarget {
                owner: target.owner.clone(),
                path,
                addressing: Addressing::Path,
            };
            Ok(read_api::read(
                state,
                MaybeSession(Some(session)),
                peer,
                &parts.method,
                &parts.uri,
                &parts.headers,
                storage,
            )
            .await)
        }
        Resource::Collection(dir) => {
            let mut html = format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Index of {0}</title></head><body><h1>Index of {0}</h1><ul>",
                xml::escape(&dir)
            );
            for child in state.store.dav_children(&target.owner, &dir).await? {
                let path = match &child {
                    store::dav::DavChild::File(entry) => entry.path.as_str(),
                    store::dav::DavChild::Collection(path) => path.as_str(),
                };
                let name = &path[dir.len()..];
                html.push_str(&format!(
                    "<li><a href=\"{}\">{}</a></li>",
                    xml::escape(&target.href(path)),
                    xml::escape(name)
                ));
            }
            html.push_str("</ul></body></html>");
            let body = match parts.method {
                Method::HEAD => String::new(),
                _ => html,
            };
            Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
        }
    }
}
