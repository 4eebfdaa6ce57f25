//! Which drive and which storage path a WebDAV URL names, and who may do what there.
//!
//! `/dav/<user>/<path>` maps onto exactly the storage path `<path>` of `<user>` that
//! REST reaches as `/storage/<user>/<path>`. The URL is percent-decoded and normalised
//! (`.`/`..` collapsed) *before* the user segment is read, so `/dav/<me>/../<other>/…`
//! is judged as `<other>`'s drive, never smuggled past the tenant check. Authorization is
//! the REST decision (`domain::authorization`), plus one WebDAV need: a client must be
//! able to see the drive's scaffolding (`/`, `/pub/`, `/priv/`) to browse at all.

use api::{ApiError, Session};
use domain::authorization::{self, Denied};
use domain::tenant::parse_storage_owner;
use domain::{EntryPath, PublicKey};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Where WebDAV is mounted on the client listeners.
pub const MOUNT: &str = "/dav";

/// A drive and a canonical storage path in it (`/` for the drive itself). A path may
/// end in `/` or not; whether it is a collection is the storage's answer, not the URL's.
#[derive(Debug, Clone)]
pub struct DavTarget {
    pub owner: PublicKey,
    pub path: EntryPath,
}

impl DavTarget {
    /// The path without a trailing `/` (`/` stays `/`): how a file there is stored.
    pub fn file_form(&self) -> &str {
        let path = self.path.as_str();
        match path.len() {
            1 => path,
            _ => path.trim_end_matches('/'),
        }
    }

    /// The path with a trailing `/`: the key range of the collection there.
    pub fn dir_form(&self) -> String {
        format!("{}/", self.file_form().trim_end_matches('/'))
    }

    /// Whether the path is the drive or one of its two top folders, which always
    /// exist, cannot be written as files, and may not be removed or moved.
    pub fn is_scaffolding(&self) -> bool {
        matches!(self.dir_form().as_str(), "/" | "/pub/" | "/priv/")
    }

    /// The URL path of `path` in this drive, percent-encoded, as hrefs show it.
    pub fn href(&self, path: &str) -> String {
        href(&self.owner, path)
    }
}

/// Characters left as they are in an href segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `/dav/<owner><path>`, each segment percent-encoded.
pub fn href(owner: &PublicKey, path: &str) -> String {
    let mut out = format!("{MOUNT}/{}", owner.to_z32());
    for segment in path.split('/').skip(1) {
        out.push('/');
        out.extend(utf8_percent_encode(segment, SEGMENT));
    }
    out
}

/// Parses the path of a WebDAV URL (`/dav/<user>/<path>`), with clear 400 texts.
pub fn parse(uri_path: &str) -> Result<DavTarget, ApiError> {
    let decoded = percent_decode_str(uri_path)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("WebDAV path is not valid UTF-8"))?;
    let rest = decoded
        .strip_prefix(MOUNT)
        .filter(|rest| rest.starts_with('/'))
        .ok_or_else(|| ApiError::bad_request("WebDAV paths must start with `/dav/`"))?;
    let normalized = EntryPath::normalize(rest)
        .map_err(|e| ApiError::bad_request(format!("Invalid WebDAV path: {e}")))?;
    let inner = &normalized.as_str()[1..];
    let (user, path) = match inner.split_once('/') {
        Some((user, path)) => (user, format!("/{path}")),
        None => (inner, "/".to_string()),
    };
    if user.is_empty() {
        return Err(ApiError::bad_request("WebDAV paths must name a user"));
    }
    let owner = parse_storage_owner(user)
        .map_err(|e| ApiError::bad_request(format!("Invalid user in WebDAV path: {e}")))?;
    let path = EntryPath::parse_canonical(&path)
        .map_err(|e| ApiError::bad_request(format!("Invalid WebDAV path: {e}")))?;
    Ok(DavTarget { owner, path })
}

/// The owner named by a WebDAV URL, if any: whose cookie the request may present.
/// Lenient on purpose (no normalisation): it only chooses which cookie to look at.
pub fn cookie_owner(uri_path: &str) -> Option<PublicKey> {
    let rest = uri_path.strip_prefix(MOUNT)?.strip_prefix('/')?;
    parse_storage_owner(rest.split('/').next()?).ok()
}

/// The `Destination` of a `COPY`/`MOVE`: an absolute URL or an absolute path, whose
/// scheme, authority, query and fragment are dropped before it is parsed as above.
pub fn destination(value: Option<&axum::http::HeaderValue>) -> Result<DavTarget, ApiError> {
    let value = value.ok_or_else(|| ApiError::bad_request("Missing Destination header"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Destination header is not valid ASCII"))?;
    let path = match text.split_once("://") {
        Some((_, after)) => after.find('/').map_or("/", |at| &after[at..]),
        None => text,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    parse(path)
}

/// What a request does to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Whether `session` may `access` `target`: the REST rules, the tenant first (a foreign
/// drive is 403 whatever the path), and the scaffolding readable by its owner.
pub fn authorize(session: &Session, target: &DavTarget, access: Access) -> Result<(), ApiError> {
    if session.user != target.owner {
        return Err(Denied::TenantMismatch.into());
    }
    match access {
        Access::Read if target.is_scaffolding() => Ok(()),
        Access::Read => Ok(authorization::authorize_read(
            Some(session.view()),
            &target.owner,
            &target.path,
        )?),
        Access::Write => Ok(authorization::authorize_write(
            session.view(),
            &target.owner,
            &target.path,
        )?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    fn text(result: Result<DavTarget, ApiError>) -> String {
        match result {
            Ok(target) => format!("{}{}", target.owner.to_z32(), target.path.as_str()),
            Err(ApiError::Client(status, text)) => format!("{} {text}", status.as_u16()),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn urls_map_onto_storage_paths() {
        assert_eq!(text(parse(&format!("/dav/{KEY}"))), format!("{KEY}/"));
        assert_eq!(text(parse(&format!("/dav/{KEY}/"))), format!("{KEY}/"));
        assert_eq!(
            text(parse(&format!("/dav/{KEY}/pub/a%20b/c.txt"))),
            format!("{KEY}/pub/a b/c.txt")
        );
        assert_eq!(
            text(parse(&format!("/dav/{KEY}/pub/dir/"))),
            format!("{KEY}/pub/dir/")
        );
    }

    #[test]
    fn bad_urls_are_refused_with_their_texts() {
        assert_eq!(
            text(parse("/davx/a")),
            "400 WebDAV paths must start with `/dav/`"
        );
        assert_eq!(text(parse("/dav/")), "400 WebDAV paths must name a user");
        assert!(text(parse("/dav/nokey/pub/")).starts_with("400 Invalid user in WebDAV path"));
        assert!(text(parse("/dav/../x")).starts_with("400 Invalid WebDAV path"));
        assert_eq!(
            text(parse(&format!("/dav/{KEY}/%ff"))),
            "400 WebDAV path is not valid UTF-8"
        );
    }

    #[test]
    fn destinations_drop_scheme_authority_and_query() {
        let value = axum::http::HeaderValue::from_str(&format!(
            "http://localhost:6286/dav/{KEY}/pub/b.txt?x=1#f"
        ))
        .unwrap();
        assert_eq!(text(destination(Some(&value))), format!("{KEY}/pub/b.txt"));
        assert_eq!(text(destination(None)), "400 Missing Destination header");
    }

    #[test]
    fn hrefs_are_percent_encoded() {
        let owner = parse_storage_owner(KEY).unwrap();
        assert_eq!(
            href(&owner, "/pub/a b/ü/"),
            format!("/dav/{KEY}/pub/a%20b/%C3%BC/")
        );
        assert_eq!(href(&owner, "/"), format!("/dav/{KEY}/"));
    }
}
