//! `PROPPATCH` (RFC 4918 §9.2): dead properties, set and removed all or nothing in one
//! `props_patched` event. Live properties (the `DAV:` namespace) are computed from the
//! storage and cannot be set: such a request changes nothing (403 for them, 424 for
//! the others, in the multistatus).

use crate::path::{Access, DavTarget, authorize};
use crate::propfind::multistatus;
use crate::resource::{self, Resource};
use crate::write::append_folder_event;
use crate::xml::{self, DAV_NS, PropChange, escape};
use api::{ApiError, AppState, Session};
use axum::http::HeaderMap;
use axum::response::Response;
use domain::event::{self, Change};

pub async fn proppatch(
    state: &AppState,
    session: &Session,
    target: &DavTarget,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    authorize(session, target, Access::Write)?;
    let changes = xml::propertyupdate(body)?;
    let path = match resource::resolve(state, target).await? {
        Resource::Missing => return Err(ApiError::not_found()),
        Resource::File(entry) => entry.path,
        Resource::Collection(dir) => dir,
    };
    let href = escape(&target.href(&path));
    if changes.iter().any(|c| c.name.ns == DAV_NS) {
        let mut forbidden = String::new();
        let mut failed = String::new();
        for change in &changes {
            match change.name.ns == DAV_NS {
                true => forbidden.push_str(&change.name.element("")),
                false => failed.push_str(&change.name.element("")),
            }
        }
        return Ok(answer(
            &href,
            &[
                (forbidden, "403 Forbidden"),
                (failed, "424 Failed Dependency"),
            ],
        ));
    }
    crate::lock::check_if(state, target, headers).await?;
    let presented = crate::lock::presented(headers)?;
    let props: Vec<event::PropChange> = changes
        .iter()
        .map(|PropChange { name, xml }| event::PropChange {
            ns: name.ns.clone(),
            name: name.name.clone(),
            xml: xml.clone(),
        })
        .collect();
    if !props.is_empty() {
        let (path, presented, props) = (&path, &presented, &props);
        append_folder_event(state, &target.owner, |_| async move {
            crate::lock::check_path(state, &target.owner, path, presented, false).await?;
            let change = Change::PropsPatched {
                path: path.clone(),
                props: props.clone(),
            };
            Ok((change, ()))
        })
        .await?;
    }
    let names: String = changes.iter().map(|c| c.name.element("")).collect();
    Ok(answer(&href, &[(names, "200 OK")]))
}

fn answer(href: &str, groups: &[(String, &str)]) -> Response {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>{href}</D:href>"#
    );
    for (props, status) in groups {
        if !props.is_empty() {
            out.push_str(&format!(
                "<D:propstat><D:prop>{props}</D:prop><D:status>HTTP/1.1 {status}</D:status></D:propstat>"
            ));
        }
    }
    out.push_str("</D:response></D:multistatus>");
    multistatus(out)
}
