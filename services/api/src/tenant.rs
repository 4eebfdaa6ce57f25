//! Which drive and which path a storage request is about (spec §2).
//!
//! Path-addressed requests name the owner in the URL (`/storage/<owner>/<path>`) and
//! ignore `Host` and `pubky-host`; legacy owner-relative requests (`/<path>`) take the
//! owner from `pubky-host`, `Host` or the `pubky-host` query parameter.

use crate::ApiError;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::Response;
use domain::tenant::{parse_storage_owner, resolve_legacy_tenant};
use domain::{EntryPath, PublicKey};
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `/storage/<owner>/<path>`
    Path,
    /// `/<path>` with the owner from headers or the query.
    Legacy,
}

/// The owner and normalized path of a storage request.
#[derive(Debug, Clone)]
pub struct StorageTarget {
    pub owner: PublicKey,
    pub path: EntryPath,
    pub addressing: Addressing,
}

/// Parses `/storage/<owner>/<path>` with the reference's exact 400 texts.
pub fn path_addressed(uri_path: &str) -> Result<StorageTarget, ApiError> {
    owner_and_path(uri_path.strip_prefix("/storage/").unwrap_or_default())
}

/// Parses `<owner>/<path>`, the part of a path-addressed URL after its route prefix
/// (`/storage/`, `/versions/`), with the reference's texts.
pub fn owner_and_path(rest: &str) -> Result<StorageTarget, ApiError> {
    let rest = Some(rest)
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| ApiError::bad_request("Missing storage owner or path"))?;
    let (owner, path) = rest
        .split_once('/')
        .filter(|(_, path)| !path.is_empty())
        .ok_or_else(|| ApiError::bad_request("Missing storage path"))?;
    let owner = parse_storage_owner(owner)
        .map_err(|_| ApiError::bad_request("Invalid storage owner public key"))?;
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("Storage path is not valid UTF-8"))?;
    let path = EntryPath::normalize(&format!("/{decoded}"))
        .map_err(|e| ApiError::bad_request(format!("Invalid storage path: {e}")))?;
    Ok(StorageTarget {
        owner,
        path,
        addressing: Addressing::Path,
    })
}

/// The owner of a legacy request, or 400 `Missing request tenant`.
pub fn legacy_owner(uri: &Uri, headers: &HeaderMap) -> Result<PublicKey, ApiError> {
    legacy_owner_opt(uri, headers).ok_or_else(|| ApiError::bad_request("Missing request tenant"))
}

pub fn legacy_owner_opt(uri: &Uri, headers: &HeaderMap) -> Option<PublicKey> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let pubky_host = headers.get("pubky-host").and_then(|v| v.to_str().ok());
    resolve_legacy_tenant(host, pubky_host, uri.query())
}

/// The normalized path of a legacy request (`Invalid URL: <reason>` on failure).
pub fn legacy_path(uri_path: &str) -> Result<EntryPath, ApiError> {
    let decoded = percent_decode_str(uri_path)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("Invalid URL: path is not valid UTF-8"))?;
    EntryPath::normalize(&decoded).map_err(|e| ApiError::bad_request(format!("Invalid URL: {e}")))
}

/// The drive a request is about, for finding its cookie: the path owner of
/// path-addressed requests (storage and version history), else the legacy tenant.
pub fn request_tenant(uri: &Uri, headers: &HeaderMap) -> Option<PublicKey> {
    let path = uri.path();
    match path
        .strip_prefix("/storage/")
        .or_else(|| path.strip_prefix("/versions/"))
    {
        Some(rest) => parse_storage_owner(rest.split('/').next()?).ok(),
        None => legacy_owner_opt(uri, headers),
    }
}

/// Private data must never be cached by shared caches, and its validators are not
/// exposed on errors; legacy responses vary with the header that chose the owner. Applies
/// to every storage response, reads and writes, successes and refusals alike.
pub fn add_cache_headers(response: &mut Response, path: &EntryPath, addressing: Addressing) {
    let headers = response.headers_mut();
    if path.is_private() {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let vary = match addressing {
            Addressing::Path => "Authorization, Cookie",
            Addressing::Legacy => "pubky-host, Authorization, Cookie",
        };
        headers.insert(header::VARY, HeaderValue::from_static(vary));
        if response.status().as_u16() >= 400 {
            let headers = response.headers_mut();
            headers.remove(header::ETAG);
            headers.remove(header::LAST_MODIFIED);
        }
    } else if addressing == Addressing::Legacy {
        headers.insert(header::VARY, HeaderValue::from_static("pubky-host"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    fn text(r: Result<StorageTarget, ApiError>) -> String {
        match r {
            Err(ApiError::Client(_, text)) => text,
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn storage_urls_are_parsed_with_the_reference_texts() {
        assert_eq!(
            text(path_addressed("/storage/")),
            "Missing storage owner or path"
        );
        assert_eq!(
            text(path_addressed(&format!("/storage/{KEY}"))),
            "Missing storage path"
        );
        assert_eq!(
            text(path_addressed(&format!("/storage/{KEY}/"))),
            "Missing storage path"
        );
        assert_eq!(
            text(path_addressed(&format!("/storage/pubky{KEY}/pub/a"))),
            "Invalid storage owner public key"
        );
        assert_eq!(
            text(path_addressed(&format!("/storage/{KEY}/pub/%FF"))),
            "Storage path is not valid UTF-8"
        );
        assert_eq!(
            text(path_addressed(&format!("/storage/{KEY}/pub/../../x"))),
            "Invalid storage path: path traverses above root"
        );
        let ok = owner_and_path(&format!("{KEY}/pub/a%20b/c.txt")).unwrap();
        assert_eq!(ok.path.as_str(), "/pub/a b/c.txt");
        let ok = path_addressed(&format!("/storage/{KEY}/pub/a%20b/c.txt")).unwrap();
        assert_eq!(ok.owner.to_z32(), KEY);
        assert_eq!(ok.path.as_str(), "/pub/a b/c.txt");
    }

    #[test]
    fn version_history_urls_name_their_tenant_like_storage_urls() {
        let headers = HeaderMap::new();
        for path in [
            format!("/storage/{KEY}/pub/a"),
            format!("/versions/{KEY}/pub/a"),
        ] {
            let uri: Uri = path.parse().unwrap();
            let tenant = request_tenant(&uri, &headers).map(|k| k.to_z32());
            assert_eq!(tenant.as_deref(), Some(KEY), "{path}");
        }
    }
}
