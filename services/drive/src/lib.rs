//! `/drive`: a small web file explorer for a user's own files, served by the
//! homeserver itself (off by default, `drive_web_explorer`).
//!
//! The page is three static files compiled into the binary (`assets/`): the HTML, one
//! script and one stylesheet, all same-origin, with no external URL anywhere. Everything
//! it does goes through the public REST API with the user's bearer token (listings,
//! reads, uploads, deletes under `/storage/`, history under `/versions/`, the signed
//! root under `/merkle/`), so it needs no route, state or authorization of its own and
//! can be served by any process that has the client router: `homeserver all` and the
//! gateway of a split deployment.
//!
//! Headers are the reference explorer's (`Content-Security-Policy`, `nosniff`,
//! `no-cache`), with a stricter policy: the reference inlines its script and style and
//! so must allow `'unsafe-inline'`; serving them as files lets the policy forbid inline
//! code, so a file name that slipped into the markup could never run as a script.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the page may load from and talk to: only this server. `blob:` images are the
/// previews the script builds from authenticated reads.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; \
style-src 'self'; script-src 'self'; connect-src 'self'; form-action 'none'; \
frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const HTML: &str = include_str!("../assets/drive.html");
const SCRIPT: &str = include_str!("../assets/drive.js");
const STYLE: &str = include_str!("../assets/drive.css");

/// The explorer's routes, to merge into a client-facing router (any state).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/drive", get(page))
        .route("/drive/drive.js", get(script))
        .route("/drive/drive.css", get(style))
}

/// The explorer's routes in the OpenAPI document (`homeserver::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(page, script, style))]
pub struct ApiDoc;

/// The page (only with `drive_web_explorer`).
#[utoipa::path(get, path = "/drive", operation_id = "drive_page", tag = "drive", params(("user" = Option<String>, Query, description = "a public key to fill in")), responses((status = 200, description = "the web drive", content_type = "text/html")))]
async fn page() -> Response {
    asset("text/html; charset=utf-8", HTML)
}

#[utoipa::path(get, path = "/drive/drive.js", operation_id = "drive_script", tag = "drive", responses((status = 200, description = "its script", content_type = "text/javascript")))]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[utoipa::path(get, path = "/drive/drive.css", operation_id = "drive_style", tag = "drive", responses((status = 200, description = "its style", content_type = "text/css")))]
async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a server upgrade never leaves an old script running
    // against a newer page.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every URL the page loads is one of its own routes: no other origin, no path the
    /// router does not serve.
    #[test]
    fn the_page_loads_only_its_own_assets() {
        for text in [HTML, SCRIPT, STYLE] {
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn")
            );
        }
        for attribute in ["src=\"", "href=\""] {
            for reference in HTML.split(attribute).skip(1) {
                let url = reference.split('"').next().unwrap_or_default();
                assert!(
                    ["/drive/drive.js", "/drive/drive.css", "data:,"].contains(&url),
                    "unexpected URL in the page: {url}"
                );
            }
        }
    }

    /// The script builds the DOM with `textContent` only: no markup from data.
    #[test]
    fn the_script_never_parses_markup() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "drive.js uses {sink}");
        }
    }
}
