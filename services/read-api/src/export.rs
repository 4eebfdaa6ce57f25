//! `GET /export/<user>?tree=pub|priv[&cursor=<path>][&limit=N][&root=<hex>]`: one page
//! of a user's account archive (`docs/export.md`, `domain::archive`).
//!
//! Why pages: a 100,000-entry user must never be one long request or one transaction.
//! Each page is read in one short snapshot (`store::export`) and streamed: blobs go out
//! chunk by chunk as the file reads do, so memory stays bounded whatever the file sizes.
//! A page is itself an archive (magic, tree record, entries, end record) whose end record
//! names the next cursor; the first page (no cursor) carries the tree's nodes. A client
//! that resumes passes `root=` (the root of its first page): if the tree moved since, the
//! pages would not add up to one verifiable copy, so that is 409 and the client starts
//! again.
//!
//! The private tree is authorized exactly as a storage read of `/priv/` (401 anonymous,
//! 403 another user or a capability that does not cover it), before the user is looked
//! up; the public tree is public, as its files are.

use crate::merkle::{finish, owner, requested_tree, signed_root};
use api::{ApiError, AppState, MaybeSession};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use blobs::{BlobHash, BlobStore};
use domain::archive::{self, EndRecord, EntryRecord, TreeRecord};
use futures::{Stream, StreamExt};
use percent_encoding::percent_decode_str;
use std::io;
use store::export::{ExportEntry, ExportPage, PageQuery};

/// Entries per page unless the client asks for fewer (or more, up to [`MAX_LIMIT`]).
pub const DEFAULT_LIMIT: u32 = 1000;
pub const MAX_LIMIT: u32 = 10_000;
/// A page ends after the entry that reaches this many content bytes: a page of large
/// files stays a request of seconds, not minutes.
pub const PAGE_BYTES: u64 = 64 * 1024 * 1024;

/// The media type of archives and pages.
pub const CONTENT_TYPE: &str = "application/vnd.pubky.archive";

pub fn router() -> Router<AppState> {
    Router::new().route("/export/{owner}", get(export))
}

struct Params {
    private: bool,
    cursor: Option<String>,
    limit: u32,
    root: Option<String>,
}

fn params(query: Option<&str>) -> Result<Params, ApiError> {
    let private = requested_tree(query)?.unwrap_or(false);
    let decoded = |name: &str| -> Result<Option<String>, ApiError> {
        crate::merkle::query_param(query, name)
            .map(|v| {
                percent_decode_str(&v.replace('+', " "))
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| ApiError::bad_request(format!("`{name}` is not valid UTF-8")))
            })
            .transpose()
    };
    let limit = match crate::merkle::query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("`limit` must be 1 to {MAX_LIMIT}")))?,
    };
    let root = decoded("root")?;
    if root
        .as_deref()
        .is_some_and(|r| r.len() != 64 || !r.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::bad_request("`root` is 64 hex digits"));
    }
    Ok(Params {
        private,
        cursor: decoded("cursor")?,
        limit,
        root,
    })
}

/// `GET /export/<user>`: one page, streamed.
#[utoipa::path(get, path = "/export/{user}", tag = "export", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("tree" = Option<String>, Query, description = "`pub` (default) or `priv` (the user only)"), ("cursor" = Option<String>, Query), ("root" = Option<String>, Query, description = "the root the export began at"), ("limit" = Option<u32>, Query)), responses((status = 200, description = "one page of the account archive (docs/export.md); `Pubky-Export-Next` names the next cursor", content_type = "application/vnd.pubky.archive"), (status = 401, description = "the private tree without a session"), (status = 403, description = "the private tree of another user"), (status = 404, description = "unknown user"), (status = 409, description = "the tree changed since the export began")))]
#[tracing::instrument(skip_all, fields(user = %segment))]
pub(crate) async fn export(
    State(state): State<AppState>,
    session: MaybeSession,
    Path(segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match params(query.as_deref()) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let private = params.private;
    let result = async {
        let (owner, state) = owner(&state, &segment, &session, private, "/priv/").await?;
        let query = PageQuery {
            private,
            cursor: params.cursor.as_deref(),
            limit: params.limit,
            max_bytes: PAGE_BYTES,
            with_nodes: params.cursor.is_none(),
        };
        let page = state
            .store
            .export_page(&owner.to_z32(), &query)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let current = domain::merkle::root_hex(page.root.root);
        if params
            .root
            .as_deref()
            .is_some_and(|r| !r.eq_ignore_ascii_case(&current))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "The tree changed since the export began: export it again from the start",
            ));
        }
        let signed = signed_root(&state, &owner, private, page.root);
        let record = tree_record(&signed, page.nodes.len() as u64, params.cursor.clone())?;
        state.metrics.export_page(
            page.entries.len() as u64,
            page.entries.iter().map(|e| e.size).sum(),
        );
        let next = page.next.clone();
        let body = Body::from_stream(page_stream(state.blobs.clone(), record, page));
        let mut response = (
            [
                (header::CONTENT_TYPE, CONTENT_TYPE),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response();
        if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
            response.headers_mut().insert("pubky-export-next", next);
        }
        Ok::<_, ApiError>(response)
    }
    .await;
    // Both trees' pages are `no-store`; the private tree's refusals vary by credentials.
    finish(result, private)
}

/// The tree record of a page from the signed root `signed` (`merkle::signed_root`).
pub fn tree_record(
    signed: &serde_json::Value,
    nodes: u64,
    cursor: Option<String>,
) -> Result<TreeRecord, ApiError> {
    let text = |name: &str| signed[name].as_str().unwrap_or_default().to_owned();
    Ok(TreeRecord {
        kind: "tree".into(),
        user: text("user"),
        tree: text("tree"),
        root: text("root"),
        seq: signed["seq"].as_u64().unwrap_or(0),
        statement: text("statement"),
        signature: signed["signature"].as_str().map(str::to_owned),
        signer: text("signer"),
        nodes,
        cursor,
    })
}

/// The bytes of one page: magic, tree record, node frames, then each entry's record,
/// content and `\n`, then the end record. A blob that cannot be read ends the stream
/// with an error, so the client sees a cut page (never a wrong one) and asks again.
pub fn page_stream(
    blobs: BlobStore,
    record: TreeRecord,
    page: ExportPage,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let ExportPage {
        nodes,
        entries,
        next,
        ..
    } = page;
    let mut head = format!("{}\n", archive::MAGIC).into_bytes();
    head.extend(archive::record_line(&record));
    for node in &nodes {
        head.extend(archive::node_frame(node));
    }
    let end = archive::record_line(&EndRecord::new(entries.len() as u64, next));
    let entries = futures::stream::iter(entries)
        .then(move |entry| entry_stream(blobs.clone(), entry))
        .flatten();
    futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(entries)
        .chain(futures::stream::once(async move { Ok(Bytes::from(end)) }))
}

/// One entry: its record, its content from the blob store, `\n`.
async fn entry_stream(
    blobs: BlobStore,
    entry: ExportEntry,
) -> futures::stream::BoxStream<'static, io::Result<Bytes>> {
    let record = archive::record_line(&EntryRecord::new(
        &entry.path,
        &entry.content_hash,
        entry.size,
        &entry.content_type,
    ));
    let head = futures::stream::once(async move { Ok(Bytes::from(record)) });
    let tail = futures::stream::once(async { Ok(Bytes::from_static(b"\n")) });
    match blobs.get(&BlobHash(entry.content_hash), None).await {
        Ok(content) if content.total_size() == entry.size => {
            head.chain(content).chain(tail).boxed()
        }
        Ok(_) | Err(_) => {
            tracing::error!(path = %entry.path, "export: the entry's blob is missing or has another size");
            let error = io::Error::other(format!("blob of {} unavailable", entry.path));
            head.chain(futures::stream::once(async move { Err(error) }))
                .boxed()
        }
    }
}
