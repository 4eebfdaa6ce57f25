//! The admin WebDAV: `/dav` on the admin listener (the reference's), every user's
//! drive as one tree for the operator's file manager (`webdav::serve_operator`).
//!
//! WebDAV clients speak HTTP Basic, not `X-Admin-Password`, so this route takes the
//! reference's credentials instead: `Authorization: Basic base64("admin:" + password)`
//! (the user name must be `admin`), compared like the header ([`crate::auth`]). It is
//! served outside the admin API's CORS layer, which answers every `OPTIONS` itself (the
//! reference's bug: its admin WebDAV never shows clients a `DAV` header).

use crate::auth::Expected;
use api::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use base64::Engine;

/// `/dav/` (the list of drives) and `/dav/<user>/<path>`.
pub fn router(expected: Expected) -> Router<AppState> {
    Router::new()
        .route("/dav/", any(serve))
        .route("/dav/{*rest}", any(serve))
        .layer(Extension(expected))
}

/// The operator's WebDAV. The same methods as a user's (`/dav/{user}/{path}` in the
/// client document); here `/dav/` lists every user's drive.
#[utoipa::path(get, path = "/dav/", operation_id = "admin_dav_root", tag = "admin", description = "The operator's WebDAV (PROPFIND, GET, OPTIONS here; every method of the user WebDAV on /dav/{user}/{path}), with HTTP Basic `admin:<admin_password>` instead of X-Admin-Password.", responses((status = 200, description = "an index of every user's drive"), (status = 207, description = "PROPFIND: one collection per user"), (status = 401, description = "no or wrong credentials; `WWW-Authenticate: Basic`")))]
async fn serve(
    State(state): State<AppState>,
    Extension(expected): Extension<Expected>,
    request: Request,
) -> Response {
    if !authorized(&expected, request.headers()) {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Unauthorized",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        return response;
    }
    webdav::serve_operator(&state, request).await
}

fn authorized(expected: &Expected, headers: &axum::http::HeaderMap) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    match decoded.split(|&b| b == b':').next() {
        Some(b"admin") => expected.matches(&decoded[b"admin:".len().min(decoded.len())..]),
        _ => false,
    }
}
