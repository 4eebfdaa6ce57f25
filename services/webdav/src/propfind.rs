//! `PROPFIND` (RFC 4918 §9.1): the properties of a file or a collection and, with
//! `Depth: 1`, of its children, as a `207 Multi-Status`.
//!
//! `Depth: infinity` (also what a missing `Depth` means, §10.2) is refused on a
//! collection with 403 and the `DAV:propfind-finite-depth` precondition, as §9.1
//! allows: a walk of a whole drive in one response is unbounded work for the server,
//! and clients walk level by level anyway.

use crate::path::DavTarget;
use crate::resource::{self, Resource};
use crate::xml::{self, DAV_NS, PropFind, PropName, escape};
use api::{ApiError, AppState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::{Duration, UNIX_EPOCH};
use store::dav::DavChild;
use store::entries::EntryRow;

/// Largest PROPFIND body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Zero,
    One,
    Infinity,
}

/// The `Depth` header; absent is `infinity` (RFC 4918 §10.2).
pub fn depth(headers: &HeaderMap) -> Result<Depth, ApiError> {
    match headers.get("depth").map(|v| v.to_str().map(str::trim)) {
        None => Ok(Depth::Infinity),
        Some(Ok("0")) => Ok(Depth::Zero),
        Some(Ok("1")) => Ok(Depth::One),
        Some(Ok(v)) if v.eq_ignore_ascii_case("infinity") => Ok(Depth::Infinity),
        Some(_) => Err(ApiError::bad_request("Depth must be 0, 1 or infinity")),
    }
}

/// The live properties every resource may have, in `allprop` order.
const LIVE: &[&str] = &[
    "resourcetype",
    "displayname",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "creationdate",
    "supportedlock",
    "lockdiscovery",
];

/// `DAV:supportedlock` of every resource: exclusive and shared write locks.
const SUPPORTED_LOCKS: &str = "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>\
<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>";

pub async fn propfind(
    state: &AppState,
    target: &DavTarget,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let depth = depth(headers)?;
    let asked = xml::propfind(body)?;
    let found = resource::resolve(state, target).await?;
    let mut out =
        String::from(r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">"#);
    let children = match &found {
        Resource::Missing => return Err(ApiError::not_found()),
        Resource::Collection(_) if depth == Depth::Infinity => return Ok(finite_depth()),
        Resource::Collection(dir) if depth == Depth::One => {
            state.store.dav_children(&target.owner, dir).await?
        }
        _ => Vec::new(),
    };
    let mut items = vec![match &found {
        Resource::File(entry) => Item::File(entry),
        Resource::Collection(dir) => Item::Collection(dir),
        Resource::Missing => return Err(ApiError::not_found()),
    }];
    items.extend(children.iter().map(|child| match child {
        DavChild::File(entry) => Item::File(entry),
        DavChild::Collection(path) => Item::Collection(path),
    }));
    let paths: Vec<String> = items.iter().map(|item| item.path().to_string()).collect();
    let dead = state.store.dav_props(&target.owner, &paths).await?;
    // The locks of the resource and of its children: rooted above, at or under it.
    let now = api::now_micros();
    let locks = state
        .store
        .locks_around(&target.owner, items[0].path(), now)
        .await?;
    for item in &items {
        let discovery = crate::lock::discovery(&target.owner, &locks, item.path(), now);
        let mine: Vec<(PropName, &str)> = dead
            .iter()
            .filter(|(path, ..)| path == item.path())
            .map(|(_, ns, name, xml)| {
                let name = PropName {
                    ns: ns.clone(),
                    name: name.clone(),
                };
                (name, xml.as_str())
            })
            .collect();
        out.push_str(&response(target, item, &discovery, &asked, &mine));
    }
    out.push_str("</D:multistatus>");
    Ok(multistatus(out))
}

/// A 207 with its XML body.
pub fn multistatus(body: String) -> Response {
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

pub fn finite_depth() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        r#"<?xml version="1.0" encoding="utf-8"?><D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>"#,
    )
        .into_response()
}

/// A resource whose properties are reported.
pub enum Item<'a> {
    File(&'a EntryRow),
    /// Its path, ending with `/`.
    Collection(&'a str),
}

impl Item<'_> {
    fn path(&self) -> &str {
        match self {
            Item::File(entry) => &entry.path,
            Item::Collection(path) => path,
        }
    }

    /// The value of live property `name`, if the resource has it; `discovery` is its
    /// `lockdiscovery` (`lock::discovery`).
    fn live(&self, name: &str, discovery: &str) -> Option<String> {
        let path = self.path();
        match (name, self) {
            ("resourcetype", Item::Collection(_)) => Some("<D:collection/>".into()),
            ("resourcetype", Item::File(_)) => Some(String::new()),
            ("displayname", _) => {
                let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                Some(escape(name))
            }
            ("getcontentlength", Item::File(entry)) => Some(entry.size.to_string()),
            ("getcontenttype", Item::File(entry)) => Some(escape(&entry.content_type)),
            ("getcontenttype", Item::Collection(_)) => Some("httpd/unix-directory".into()),
            ("getetag", Item::File(entry)) => {
                Some(escape(&blobs::BlobHash(entry.content_hash).etag()))
            }
            ("getlastmodified", Item::File(entry)) => Some(httpdate::fmt_http_date(
                UNIX_EPOCH + Duration::from_micros(entry.modified_us),
            )),
            ("creationdate", Item::File(entry)) => i64::try_from(entry.modified_us)
                .ok()
                .and_then(chrono::DateTime::from_timestamp_micros)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            ("supportedlock", _) => Some(SUPPORTED_LOCKS.into()),
            ("lockdiscovery", _) => Some(discovery.into()),
            _ => None,
        }
    }
}

/// One `<D:response>`: the found properties under 200, the others under 404. `dead`
/// are the item's dead properties, each with its element; `discovery` its locks.
fn response(
    target: &DavTarget,
    item: &Item<'_>,
    discovery: &str,
    asked: &PropFind,
    dead: &[(PropName, &str)],
) -> String {
    let mut found = String::new();
    let mut missing = String::new();
    match asked {
        PropFind::AllProp => {
            for name in LIVE {
                if let Some(value) = item.live(name, discovery) {
                    found.push_str(&PropName::dav(name).element(&value));
                }
            }
            for (_, xml) in dead {
                found.push_str(xml);
            }
        }
        PropFind::PropName => {
            for name in LIVE {
                if item.live(name, discovery).is_some() {
                    found.push_str(&PropName::dav(name).element(""));
                }
            }
            for (name, _) in dead {
                found.push_str(&name.element(""));
            }
        }
        PropFind::Prop(names) => {
            for name in names {
                let value = (name.ns == DAV_NS)
                    .then(|| item.live(&name.name, discovery))
                    .flatten();
                let stored = dead.iter().find(|(dead, _)| dead == name);
                match (value, stored) {
                    (Some(value), _) => found.push_str(&name.element(&value)),
                    (None, Some((_, xml))) => found.push_str(xml),
                    (None, None) => missing.push_str(&name.element("")),
                }
            }
        }
    }
    let mut out = format!(
        "<D:response><D:href>{}</D:href>",
        escape(&target.href(item.path()))
    );
    for (props, status) in [(found, "200 OK"), (missing, "404 Not Found")] {
        if !props.is_empty() || (status == "200 OK" && matches!(asked, PropFind::AllProp)) {
            out.push_str(&format!(
                "<D:propstat><D:prop>{props}</D:prop><D:status>HTTP/1.1 {status}</D:status></D:propstat>"
            ));
        }
    }
    out.push_str("</D:response>");
    out
}
