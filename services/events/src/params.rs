//! Query parameters of the three endpoints, parsed from the raw query string with the
//! reference server's exact 400 texts (spec §3.6, §3.5 for the shared booleans).
//!
//! Parsing is pure and synchronous; the checks that need the database (unknown users,
//! legacy timestamp cursors) run later, in the order the reference runs them: syntax,
//! then authorization, then existence, then per-user cursors.

use crate::render::FrameExtras;
use api::ApiError;
use domain::tenant::parse_storage_owner;
use domain::{EntryPath, EventSeq, PublicKey};

/// Most users one stream may follow.
pub const MAX_USERS: usize = 50;
/// Default and largest page of `/events/`.
pub const FEED_DEFAULT_LIMIT: u16 = 100;
pub const FEED_MAX_LIMIT: u16 = 1000;

fn pairs(raw_query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A cursor as written by a client, before the database resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCursor {
    Seq(EventSeq),
    /// Legacy: the event created at exactly this many microseconds since the epoch.
    Timestamp(u64),
}

/// Numeric sequence (a `u64`), or a legacy 13-character Crockford base32 timestamp.
/// Digits beyond `u64` are neither, and refused as the reference refuses them (a
/// 13-digit number is always a sequence: it fits).
pub fn parse_cursor(text: &str) -> Option<RawCursor> {
    if let Ok(seq) = text.parse::<u64>() {
        return Some(RawCursor::Seq(EventSeq(seq)));
    }
    decode_legacy_timestamp(text).map(RawCursor::Timestamp)
}

/// pubky-timestamp's string form: Crockford base32 (case-insensitive, `I`/`L` read as
/// `1`, `O` as `0`) of the 8 big-endian bytes, 13 characters, the last one padded.
fn decode_legacy_timestamp(text: &str) -> Option<u64> {
    if text.len() != 13 {
        return None;
    }
    let mut bits: u128 = 0;
    for byte in text.bytes() {
        let value = match byte.to_ascii_uppercase() {
            c @ b'0'..=b'9' => c - b'0',
            b'O' => 0,
            b'I' | b'L' => 1,
            c @ b'A'..=b'Z' => {
                const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ";
                10 + ALPHABET.iter().position(|&a| a == c)? as u8
            }
            _ => return None,
        };
        bits = (bits << 5) | u128::from(value);
    }
    // 65 bits: the last one is padding.
    u64::try_from(bits >> 1).ok()
}

/// `GET /events/` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedParams {
    pub cursor: RawCursor,
    pub limit: u16,
    /// `merkle_roots=true`: a `merkle_root: <hex>` line after each event line. Opt-in
    /// because indexers written for the reference parse every line of the feed.
    pub merkle_roots: bool,
}

/// The listing extractor's booleans: `true|yes|1|""` / `false|no|0`, any case.
fn parse_bool(value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(ApiError::bad_request("Invalid boolean parameter")),
    }
}

pub fn feed_params(raw_query: Option<&str>) -> Result<FeedParams, ApiError> {
    let pairs = pairs(raw_query);
    // The reference runs its listing extractor here too: its booleans are validated
    // even though the feed ignores them.
    for key in ["shallow", "reverse"] {
        if let Some(value) = first(&pairs, key) {
            parse_bool(value)?;
        }
    }
    let limit = first(&pairs, "limit")
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(FEED_DEFAULT_LIMIT)
        .min(FEED_MAX_LIMIT);
    let cursor = match first(&pairs, "cursor") {
        None | Some("") => RawCursor::Seq(EventSeq(0)),
        Some(text) => {
            let text = text.strip_prefix("pubky://").unwrap_or(text);
            parse_cursor(text).ok_or_else(|| ApiError::bad_request("Invalid cursor"))?
        }
    };
    let merkle_roots = match first(&pairs, "merkle_roots") {
        Some(value) => parse_bool(value)?,
        None => false,
    };
    Ok(FeedParams {
        cursor,
        limit,
        merkle_roots,
    })
}

/// `timestamps=true` and `merkle_roots=true` of `/events-stream` (both stream
/// endpoints of the client and admin APIs): the data lines beyond the reference's that
/// the client wants in each frame. Booleans as the feed's `merkle_roots`.
pub fn frame_extras(raw_query: Option<&str>) -> Result<FrameExtras, ApiError> {
    let pairs = pairs(raw_query);
    let flag = |key: &str| first(&pairs, key).map_or(Ok(false), parse_bool);
    Ok(FrameExtras {
        ts: flag("timestamps")?,
        merkle_root: flag("merkle_roots")?,
    })
}

/// One `user=<z32>[:<cursor>]` of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamUser {
    pub key: PublicKey,
    pub z32: String,
    /// The cursor text as given, checked after authorization.
    pub cursor: Option<String>,
}

/// `GET /events-stream` and `GET /events-ws` parameters, syntax-checked.
#[derive(Debug, Clone)]
pub struct StreamParams {
    pub users: Vec<StreamUser>,
    /// Normalized filters; never empty (no `path` means `/pub/`).
    pub filters: Vec<EntryPath>,
    pub limit: Option<u16>,
    pub live: bool,
    pub reverse: bool,
}

impl StreamParams {
    pub fn keys(&self) -> Vec<PublicKey> {
        self.users.iter().map(|u| u.key.clone()).collect()
    }

    pub fn has_private_filter(&self) -> bool {
        self.filters.iter().any(EntryPath::is_private)
    }
}

fn stream_bool(value: Option<&str>) -> bool {
    matches!(value, Some("true") | Some("1"))
}

/// `limit`, `live` and `reverse` of both stream endpoints.
fn limit_live_reverse(pairs: &[(String, String)]) -> Result<(Option<u16>, bool, bool), ApiError> {
    let limit = match first(pairs, "limit") {
        None => None,
        Some(text) => {
            let limit: u16 = text
                .parse()
                .map_err(|_| ApiError::bad_request(format!("Invalid limit: {text}")))?;
            if limit == 0 {
                return Err(ApiError::bad_request("limit must be at least 1"));
            }
            Some(limit)
        }
    };
    let live = stream_bool(first(pairs, "live"));
    let reverse = stream_bool(first(pairs, "reverse"));
    if live && reverse {
        return Err(ApiError::bad_request(
            "Cannot use live mode with reverse ordering",
        ));
    }
    Ok((limit, live, reverse))
}

/// The normalized, de-duplicated `path` filters of both stream endpoints.
fn path_filters(pairs: &[(String, String)]) -> Result<Vec<EntryPath>, ApiError> {
    let mut filters: Vec<EntryPath> = Vec::new();
    for (_, raw) in pairs.iter().filter(|(k, v)| k == "path" && !v.is_empty()) {
        let absolute = if raw.starts_with('/') {
            raw.clone()
        } else {
            format!("/{raw}")
        };
        let path = EntryPath::normalize(&absolute)
            .map_err(|_| ApiError::bad_request(format!("Invalid path: {absolute}")))?;
        if !filters.contains(&path) {
            filters.push(path);
        }
    }
    Ok(filters)
}

pub fn stream_params(raw_query: Option<&str>) -> Result<StreamParams, ApiError> {
    let pairs = pairs(raw_query);
    let raw_users: Vec<&str> = pairs
        .iter()
        .filter(|(k, v)| k == "user" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    if raw_users.is_empty() {
        return Err(ApiError::bad_request("user parameter is required"));
    }
    if raw_users.len() > MAX_USERS {
        return Err(ApiError::bad_request(format!(
            "Too many users. Maximum allowed: {MAX_USERS}"
        )));
    }
    let mut users: Vec<StreamUser> = Vec::with_capacity(raw_users.len());
    for raw in raw_users {
        let (key_text, cursor) = match raw.split_once(':') {
            Some((key, cursor)) => (key, Some(cursor.to_owned())),
            None => (raw, None),
        };
        let key = parse_storage_owner(key_text)
            .map_err(|_| ApiError::bad_request(format!("Invalid public key: {key_text}")))?;
        users.push(StreamUser {
            z32: key.to_z32(),
            key,
            cursor,
        });
    }
    let (limit, live, reverse) = limit_live_reverse(&pairs)?;
    let mut filters = path_filters(&pairs)?;
    if filters.is_empty() {
        filters.push(EntryPath::parse_canonical("/pub/").map_err(|_| {
            ApiError::Unavailable("the implicit /pub/ filter is not canonical".into())
        })?);
    }
    Ok(StreamParams {
        users,
        filters,
        limit,
        live,
        reverse,
    })
}

/// `GET /events-stream` of the admin API: like [`StreamParams`], but `user` is optional
/// (none = every user), the cursor is one global `cursor=` parameter, and without a
/// `path` the stream covers everything, `/priv/` included.
#[derive(Debug, Clone)]
pub struct OperatorParams {
    /// Raw z-base-32 keys; empty = every user.
    pub users: Vec<String>,
    pub cursor: Option<EventSeq>,
    pub filters: Vec<EntryPath>,
    pub limit: Option<u16>,
    pub live: bool,
    pub reverse: bool,
}

pub fn operator_stream_params(raw_query: Option<&str>) -> Result<OperatorParams, ApiError> {
    let pairs = pairs(raw_query);
    let raw_users: Vec<&str> = pairs
        .iter()
        .filter(|(k, v)| k == "user" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    if raw_users.len() > MAX_USERS {
        return Err(ApiError::bad_request(format!(
            "Too many users. Maximum allowed: {MAX_USERS}"
        )));
    }
    let users = raw_users
        .into_iter()
        .map(|raw| {
            parse_storage_owner(raw)
                .map(|key| key.to_z32())
                .map_err(|_| ApiError::bad_request(format!("Invalid public key: {raw}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cursor = match first(&pairs, "cursor") {
        None | Some("") => None,
        Some(text) => match parse_cursor(text) {
            Some(RawCursor::Seq(seq)) => Some(seq),
            _ => return Err(ApiError::bad_request(format!("Invalid cursor: {text}"))),
        },
    };
    let (limit, live, reverse) = limit_live_reverse(&pairs)?;
    let mut filters = path_filters(&pairs)?;
    if filters.is_empty() {
        filters.push(EntryPath::root_dir());
    }
    Ok(OperatorParams {
        users,
        cursor,
        filters,
        limit,
        live,
        reverse,
    })
}

/// Whether `path` (a canonical file path) matches one of `filters`.
pub fn matches(filters: &[EntryPath], path: &str) -> bool {
    filters.iter().any(|f| {
        if f.is_dir() {
            path.starts_with(f.as_str())
        } else {
            path == f.as_str()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every refusal of the parsers: the spec's texts (§3.5, §3.6), by prefix where
    /// the text ends with the offending value.
    const SPEC_TEXTS: &[&str] = &[
        "Invalid boolean parameter",
        "Invalid cursor",
        "user parameter is required",
        "Too many users. Maximum allowed: 50",
        "Invalid public key: ",
        "Invalid limit: ",
        "limit must be at least 1",
        "Cannot use live mode with reverse ordering",
        "Invalid path: ",
    ];

    fn refused_as_the_spec_says<T>(result: Result<T, ApiError>) {
        if let Err(e) = result {
            let (status, text) = e.client_answer().expect("a client error, not an outage");
            assert_eq!(status, 400, "{text}");
            assert!(SPEC_TEXTS.iter().any(|t| text.starts_with(t)), "{text}");
        }
    }

    /// Query strings made of the parameters these endpoints know, with values that
    /// are often almost right (keys, cursors, numbers, paths), percent-encoded.
    fn query() -> impl Strategy<Value = String> {
        let key = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";
        let name = prop::sample::select(vec![
            "user",
            "cursor",
            "limit",
            "live",
            "reverse",
            "path",
            "timestamps",
            "merkle_roots",
            "shallow",
            "other",
        ]);
        let value = prop_oneof![
            any::<String>(),
            "[0-9a-zA-Z:/._%-]{0,60}",
            "[0-9]{0,22}",
            Just(key.to_string()),
            "[0-9]{0,6}".prop_map(move |c| format!("{key}:{c}")),
            "(/?(pub|priv|\\.\\.|\\.|x)){0,5}/?",
        ];
        prop::collection::vec((name, value), 0..8).prop_map(|pairs| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        })
    }

    proptest! {
        // PROPTEST_CASES sets the count: the default in `make test`, hundreds of
        // thousands in `make fuzz`.
        #[test]
        fn query_parsers_never_panic(raw in prop_oneof![query(), any::<String>()]) {
            refused_as_the_spec_says(feed_params(Some(&raw)));
            refused_as_the_spec_says(stream_params(Some(&raw)));
            refused_as_the_spec_says(frame_extras(Some(&raw)));
            refused_as_the_spec_says(operator_stream_params(Some(&raw)));
        }
    }

    #[test]
    fn legacy_timestamps_decode_like_pubky_timestamp() {
        // 0 encodes as thirteen zeros; 1 µs sets the 64th bit, i.e. the 2 in the last
        // character (whose lowest bit is padding).
        assert_eq!(decode_legacy_timestamp("0000000000000"), Some(0));
        assert_eq!(decode_legacy_timestamp("0000000000002"), Some(1));
        assert_eq!(decode_legacy_timestamp("000000000000u"), None);
        assert_eq!(decode_legacy_timestamp("0000000000000a"), None);
        assert_eq!(
            decode_legacy_timestamp("ZZZZZZZZZZZZY"),
            Some(u64::MAX),
            "every bit set but the padding"
        );
    }

    #[test]
    fn cursors_are_digits_or_timestamps() {
        assert_eq!(parse_cursor("42"), Some(RawCursor::Seq(EventSeq(42))));
        assert_eq!(
            parse_cursor("18446744073709551615"),
            Some(RawCursor::Seq(EventSeq(u64::MAX)))
        );
        assert_eq!(parse_cursor("18446744073709551616"), None);
        assert_eq!(parse_cursor(&"9".repeat(40)), None);
        // Rust's integer parser, which the reference uses too, takes a leading `+`.
        assert_eq!(parse_cursor("+42"), Some(RawCursor::Seq(EventSeq(42))));
        assert_eq!(parse_cursor("-100"), None);
        assert_eq!(parse_cursor(""), None);
        assert_eq!(parse_cursor("4 2"), None);
    }

    #[test]
    fn filters_match_directories_by_prefix_and_files_exactly() {
        let f = [
            EntryPath::parse_canonical("/pub/a_b/").unwrap(),
            EntryPath::parse_canonical("/pub/x%").unwrap(),
        ];
        assert!(matches(&f, "/pub/a_b/c"));
        assert!(!matches(&f, "/pub/aXb/c"));
        assert!(matches(&f, "/pub/x%"));
        assert!(!matches(&f, "/pub/x%y"));
        assert!(!matches(&f, "/pub/xy"));
    }
}
