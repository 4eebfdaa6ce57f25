//! The operator's WebDAV, `/dav` on the admin listener: every user's drive under
//! `/dav/<user>/`, and `/dav/` listing the users.
//!
//! The admin crate authenticates the operator (HTTP Basic `admin:<admin_password>`, as
//! the reference); here each request on a drive runs as its owner holding every
//! capability, through the same dispatch as the users' WebDAV. So the operator's writes
//! are ordinary writes of that drive: the same events, quotas, collisions and locks
//! (the operator cannot break a user's lock by writing around it; the admin API's
//! `DELETE /webdav/…` is the operator's delete that ignores them).

use crate::path::{self, MOUNT};
use crate::propfind::{self, Depth};
use crate::xml::escape;
use api::{ApiError, AppState, Session, SessionKind};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::capability::{Capabilities, Capability};

/// An authenticated operator request on `/dav/…`.
pub async fn serve_operator(state: &AppState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let uri_path = parts.uri.path().to_string();
    let result = if matches!(uri_path.as_str(), "/dav" | "/dav/") {
        users(state, &parts.method, &parts.headers).await
    } else {
        match path::parse(&uri_path) {
            Ok(target) => {
                let session = Session {
                    user: target.owner.clone(),
                    capabilities: Capabilities::from(vec![Capability::root()]),
                    kind: SessionKind::Grant {
                        grant_id: crate::OPERATOR_GRANT.to_string(),
                    },
                };
                crate::dispatch(state, session, target, parts, body).await
            }
            Err(e) => Err(e),
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `/dav/`: one collection per user.
async fn users(
    state: &AppState,
    method: &Method,
    headers: &axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let users = state.store.user_keys().await?;
    match method.as_str() {
        "OPTIONS" => Ok(crate::options()),
        "PROPFIND" => {
            let depth = propfind::depth(headers)?;
            if depth == Depth::Infinity {
                return Ok(propfind::finite_depth());
            }
            let collection = |href: &str| {
                format!(
                    "<D:response><D:href>{}</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>",
                    escape(href)
                )
            };
            let mut out = String::from(
                r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">"#,
            );
            out.push_str(&collection(&format!("{MOUNT}/")));
            if depth == Depth::One {
                for user in &users {
                    out.push_str(&collection(&path::href(user, "/")));
                }
            }
            out.push_str("</D:multistatus>");
            Ok(propfind::multistatus(out))
        }
        "GET" | "HEAD" => {
            let mut html = String::from(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Index of /dav/</title></head><body><h1>Index of /dav/</h1><ul>",
            );
            for user in &users {
                let href = path::href(user, "/");
                html.push_str(&format!("<li><a href=\"{0}\">{0}</a></li>", escape(&href)));
            }
            html.push_str("</ul></body></html>");
            Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The list of drives cannot be changed",
        )),
    }
}
