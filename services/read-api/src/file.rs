//! Serving one file (its current version, or an earlier one for `/versions/`):
//! validators, conditional requests and byte ranges.
//!
//! The ETag is the quoted standard base64 of the BLAKE3 hash, so it is the same on
//! every instance and after a rebuild. Ranges (RFC 9110 §14) go beyond the reference,
//! which always sends the whole body: large downloads can resume.

use api::tenant::StorageTarget;
use api::{ApiError, AppState};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use blobs::{BlobError, BlobHash};
use std::time::{Duration, UNIX_EPOCH};

/// One stored version of a file, as a response serves it.
#[derive(Debug, Clone)]
pub struct Servable {
    pub hash: BlobHash,
    pub size: u64,
    pub content_type: String,
    pub modified_us: u64,
}

/// The current version of `target`.
pub async fn serve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    target: &StorageTarget,
    bandwidth: Option<std::sync::Arc<api::bandwidth::Bucket>>,
) -> Result<Response, ApiError> {
    if method == Method::HEAD && state.store.user(&target.owner).await?.is_none() {
        return Err(ApiError::not_found());
    }
    let entry = state
        .store
        .entry(&target.owner, target.path.as_str())
        .await?
        .ok_or_else(ApiError::not_found)?;
    let file = Servable {
        hash: BlobHash(entry.content_hash),
        size: entry.size,
        content_type: entry.content_type,
        modified_us: entry.modified_us,
    };
    respond(
        state,
        method,
        headers,
        &file,
        target.path.as_str(),
        bandwidth,
    )
    .await
}

/// Answers a read of `file` (of `path`, for messages): validators, conditional
/// request, range, then the body streamed from the blob store.
pub async fn respond(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    file: &Servable,
    path: &str,
    bandwidth: Option<std::sync::Arc<api::bandwidth::Bucket>>,
) -> Result<Response, ApiError> {
    let hash = file.hash;
    let etag = hash.etag();
    let modified = UNIX_EPOCH + Duration::from_micros(file.modified_us);
    let last_modified = httpdate::fmt_http_date(modified);

    let mut response_headers = HeaderMap::new();
    insert(&mut response_headers, header::ETAG, &etag);
    insert(&mut response_headers, header::LAST_MODIFIED, &last_modified);
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, must-revalidate"),
    );

    if not_modified(headers, &etag, file.modified_us) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }

    insert(
        &mut response_headers,
        header::CONTENT_TYPE,
        &file.content_type,
    );
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let range = match requested_range(headers, file.size) {
        RangeRequest::Whole => None,
        RangeRequest::Range(first, last) => Some((first, last)),
        RangeRequest::Unsatisfiable => {
            insert(
                &mut response_headers,
                header::CONTENT_RANGE,
                &format!("bytes */{}", file.size),
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, response_headers).into_response());
        }
    };
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    if let Some((first, last)) = range {
        insert(
            &mut response_headers,
            header::CONTENT_RANGE,
            &format!("bytes {first}-{last}/{}", file.size),
        );
    }
    let length = range.map_or(file.size, |(first, last)| last - first + 1);
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if method == Method::HEAD {
        return Ok((status, response_headers).into_response());
    }
    let body = match state.blobs.get(&hash, range).await {
        Ok(stream) => {
            // Counted when the body starts; a client that hangs up early is counted
            // in full (the metric is what was served, not what arrived).
            state.metrics.blob_read(length);
            Body::from_stream(api::bandwidth::throttled(stream, bandwidth))
        }
        // Projected but not in the blob store: data loss, not a client error.
        Err(BlobError::NotFound) => {
            return Err(ApiError::Unavailable(format!(
                "blob {} of {} is missing",
                hash.to_hex(),
                path
            )));
        }
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    Ok((status, response_headers, body).into_response())
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// `If-None-Match` (exact comparison of the listed tags) wins over `If-Modified-Since`,
/// which is compared at one-second resolution.
fn not_modified(headers: &HeaderMap, etag: &str, modified_us: u64) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        let value = value.to_str().unwrap_or_default();
        return value.split(',').any(|tag| tag.trim() == etag);
    }
    let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    let since = since
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    since >= modified_us / 1_000_000
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Whole,
    /// Inclusive byte positions.
    Range(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range; anything else (several ranges, other units, garbage) is served
/// whole, as RFC 9110 allows.
fn requested_range(headers: &HeaderMap, size: u64) -> RangeRequest {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
        (Some(first), Some(last)) if first <= last => (first, last.min(size.saturating_sub(1))),
        (Some(first), None) if last.is_empty() => (first, size.saturating_sub(1)),
        (None, Some(suffix)) if first.is_empty() && suffix > 0 => {
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return RangeRequest::Whole,
    };
    if size == 0 || first >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Range(first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> RangeRequest {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        requested_range(&headers, size)
    }

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        assert_eq!(range("bytes=0-0", 10), RangeRequest::Range(0, 0));
        assert_eq!(range("bytes=2-", 10), RangeRequest::Range(2, 9));
        assert_eq!(range("bytes=-3", 10), RangeRequest::Range(7, 9));
        assert_eq!(range("bytes=5-100", 10), RangeRequest::Range(5, 9));
        assert_eq!(range("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(range("bytes=0-1,4-5", 10), RangeRequest::Whole);
        assert_eq!(range("items=0-1", 10), RangeRequest::Whole);
        assert_eq!(range("bytes=5-2", 10), RangeRequest::Whole);
    }

    #[test]
    fn if_none_match_compares_exact_tags() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", \"b\""),
        );
        assert!(not_modified(&headers, "\"b\"", 0));
        assert!(!not_modified(&headers, "\"c\"", 0));
    }
}
