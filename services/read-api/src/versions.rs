//! Version history (docs/merkle.md, "Version history"): the earlier versions of a file,
//! listed and read by sequence, for the configured retention.
//!
//! `GET /versions/<owner>/<path>` lists the path's events newest first (deletions
//! included, so a deleted file's last version can be found and read back);
//! `GET|HEAD /versions/<owner>/<path>?seq=<n>` serves version `n` exactly as a file
//! read serves the current one (same validators, ranges and bandwidth), plus
//! `Pubky-Version`. The log already holds every version and blobs are content-addressed,
//! so nothing is stored for this beyond two columns and an index on `events`.
//! Authorization is a file read's, checked before any lookup, so an unauthorized
//! request for a private path learns nothing about its history.

use crate::file::{self, Servable};
use api::tenant::{self, Addressing, StorageTarget};
use api::{ApiError, AppState, MaybeSession};
use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use blobs::BlobHash;
use domain::EventSeq;
use std::net::SocketAddr;
use store::versions::VersionRow;

/// The sequence of the version a `?seq=` read served.
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("pubky-version");

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new().route("/versions/{*rest}", get(versions))
}

/// The query of a `/versions/` request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    /// Read this version instead of listing.
    seq: Option<EventSeq>,
    limit: Option<u32>,
    /// Exclusive: list the versions older than this sequence.
    cursor: Option<EventSeq>,
}

fn parse(query: &str) -> Result<Params, ApiError> {
    let mut params = Params::default();
    for (key, value) in crate::query_pairs(query) {
        let number = || value.trim().parse::<u64>().ok().filter(|n| *n > 0);
        match key {
            "seq" => {
                params.seq = Some(EventSeq(number().ok_or_else(|| {
                    ApiError::bad_request("Invalid seq: expected the sequence number of a version")
                })?))
            }
            "limit" => {
                let limit = number().ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid limit: expected 1 to {MAX_LIMIT}"))
                })?;
                params.limit = Some(limit.min(u64::from(MAX_LIMIT)) as u32);
            }
            "cursor" if value.is_empty() => {}
            "cursor" => {
                params.cursor = Some(EventSeq(number().ok_or_else(|| {
                    ApiError::bad_request("Invalid cursor: expected a `next_cursor` value")
                })?))
            }
            _ => {}
        }
    }
    Ok(params)
}

/// `GET`/`HEAD /versions/<owner>/<path>[?seq=<n> | ?limit&cursor]`.
#[utoipa::path(get, path = "/versions/{user}/{path}", tag = "versions", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Path, description = "the entry path below the user, starting with pub/ or priv/ (may hold slashes; a trailing slash lists a directory)"), ("seq" = Option<u64>, Query, description = "one version by its event sequence"), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)), responses((status = 200, description = "the version list, or one version's bytes with `?seq`"), (status = 404, description = "no such path or version"), (status = 410, description = "that version has expired")))]
pub(crate) async fn versions(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rest = uri.path().strip_prefix("/versions/").unwrap_or_default();
    let target = match tenant::owner_and_path(rest) {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let result = async {
        domain::authorization::authorize_read(
            session.as_ref().map(|s| s.view()),
            &target.owner,
            &target.path,
        )?;
        let params = parse(uri.query().unwrap_or_default())?;
        if target.path.is_dir() {
            return Err(ApiError::bad_request(
                "Versions are kept for files; this path is a directory",
            ));
        }
        let state = state.reading_user(&target.owner).await;
        // A deleted account's history ends with its deletion: nothing of it is served.
        if state.store.user(&target.owner).await?.is_none() {
            return Err(ApiError::not_found());
        }
        let Some(seq) = params.seq else {
            return list(&state, &target, &params).await;
        };
        let bucket = if method == Method::GET {
            let reader = session.as_ref().map(|s| &s.user);
            let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
            api::bandwidth::read_bucket(&state, reader, &headers, peer).await?
        } else {
            None
        };
        read(&state, &method, &headers, &target, seq, bucket).await
    }
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    tenant::add_cache_headers(&mut response, &target.path, Addressing::Path);
    response
}

async fn list(
    state: &AppState,
    target: &StorageTarget,
    params: &Params,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    let path = target.path.as_str();
    // One more than asked tells whether another page follows.
    let mut rows = state
        .store
        .versions(&target.owner, path, params.cursor, limit + 1)
        .await?;
    if rows.is_empty() && params.cursor.is_none() {
        return Err(ApiError::not_found());
    }
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.seq.0)
    } else {
        None
    };
    let now = api::now_micros();
    let retention = state.config.version_retention;
    let items: Vec<_> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "seq": row.seq.0,
                "op": if row.deleted { "DEL" } else { "PUT" },
                "content_hash": row.content_hash.map(|h| BlobHash(h).to_base64()),
                "content_length": row.content_length,
                "content_type": row.content_type,
                "ts": api::rfc3339(row.created_us),
                "current": row.is_current(),
                "readable": row.readable(now, retention),
            })
        })
        .collect();
    let body = serde_json::json!({
        "owner": target.owner.to_z32(),
        "path": path,
        "retention_secs": retention.as_secs(),
        "versions": items,
        "next_cursor": next_cursor,
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response())
}

async fn read(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    target: &StorageTarget,
    seq: EventSeq,
    bandwidth: Option<std::sync::Arc<api::bandwidth::Bucket>>,
) -> Result<Response, ApiError> {
    let path = target.path.as_str();
    let row = match state.store.version(&target.owner, path, seq).await? {
        Some(row) => row,
        None if !state.store.has_versions(&target.owner, path).await? => {
            return Err(ApiError::not_found());
        }
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Version {seq} is not a version of this path"),
            ));
        }
    };
    let file = servable(state, &row).await?;
    let mut response = file::respond(state, method, headers, &file, path, bandwidth).await?;
    response
        .headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from(seq.0));
    Ok(response)
}

/// What version `row` serves, or why it cannot be read (404 deletion, 410 expired).
async fn servable(state: &AppState, row: &VersionRow) -> Result<Servable, ApiError> {
    let seq = row.seq;
    let (Some(hash), false) = (row.content_hash, row.deleted) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Version {seq} deleted this path; read an earlier version"),
        ));
    };
    let retention = state.config.version_retention;
    if !row.readable(api::now_micros(), retention) {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!(
                "Version {seq} has expired: this server keeps replaced versions for {} s",
                retention.as_secs()
            ),
        ));
    }
    let hash = BlobHash(hash);
    // A replaced version's blob may be gone (GC under an earlier, shorter retention):
    // that is expiry too, not data loss. The current one's is checked when it is read.
    let size = match (row.content_length, row.is_current()) {
        (Some(size), true) => Some(size),
        _ => state
            .blobs
            .size(&hash)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?,
    };
    let size = size.ok_or_else(|| {
        ApiError::new(
            StatusCode::GONE,
            format!("Version {seq} is no longer stored on this server"),
        )
    })?;
    Ok(Servable {
        hash,
        size,
        content_type: row
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        modified_us: row.created_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_text(r: Result<Params, ApiError>) -> String {
        match r {
            Err(ApiError::Client(status, text)) => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                text
            }
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn the_query_selects_a_version_or_a_page() {
        assert_eq!(parse("").unwrap(), Params::default());
        let p = parse("seq=42").unwrap();
        assert_eq!(p.seq, Some(EventSeq(42)));
        let p = parse("limit=5000&cursor=17").unwrap();
        assert_eq!(p.limit, Some(MAX_LIMIT));
        assert_eq!(p.cursor, Some(EventSeq(17)));
        assert_eq!(parse("cursor=").unwrap().cursor, None);
        for bad in ["seq=", "seq=0", "seq=-1", "seq=abc", "seq=1.5"] {
            assert!(error_text(parse(bad)).starts_with("Invalid seq"), "{bad}");
        }
        assert!(error_text(parse("limit=0")).starts_with("Invalid limit"));
        assert!(error_text(parse("cursor=x")).starts_with("Invalid cursor"));
    }
}
