//! Storage paths (spec §5.1): the one place that decides what a path inside a user's drive
//! may look like.
//!
//! Request paths are *normalized* (`//`, `.` and `..` resolved), while cursors, capability
//! scopes and database rows must already be *canonical*; both go through the same segment
//! rules, so every [`EntryPath`] in the system satisfies them. Error texts copy the
//! reference server's lower-case reasons, which clients see in `Invalid URL: <reason>` and
//! `Invalid storage path: <reason>` bodies.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest segment in UTF-8 bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Longest path in UTF-8 bytes, so that `<52-char key><path>` fits in 1024 bytes.
pub const MAX_PATH_BYTES: usize = 972;

/// An absolute, canonical storage path: a file (`/pub/app/x.json`) or, with a trailing
/// `/`, a directory (`/pub/app/`). Ordered by bytes, like the store's `COLLATE "C"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryPath(String);

/// The top-level area a path belongs to; only `/pub/` and `/priv/` hold user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Pub,
    Priv,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must be absolute")]
    NotAbsolute,
    #[error("path contains an empty segment")]
    EmptySegment,
    #[error("path contains a `.` segment")]
    DotSegment,
    #[error("path contains a `..` segment")]
    DotDotSegment,
    #[error("path traverses above root")]
    AboveRoot,
    #[error("path contains a control character")]
    ControlCharacter,
    #[error("path must not contain a backslash")]
    Backslash,
    #[error("path must not end in whitespace")]
    TrailingWhitespace,
    #[error("path segment is {0} bytes; maximum is {MAX_SEGMENT_BYTES}")]
    SegmentTooLong(usize),
    #[error("path is {0} bytes; maximum is {MAX_PATH_BYTES}")]
    TooLong(usize),
}

impl EntryPath {
    /// The drive's root directory `/`.
    pub fn root_dir() -> Self {
        Self("/".to_owned())
    }

    /// Resolves a request path (already percent-decoded, so `%` is literal).
    ///
    /// Segment rules are checked before a `..` may pop the segment, so `/a\b/..` is still
    /// rejected, exactly as the reference does.
    pub fn normalize(raw: &str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        let is_dir = raw.ends_with('/') || raw.ends_with("/.") || raw.ends_with("/..");
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop().ok_or(PathError::AboveRoot)?;
                }
                _ => {
                    check_segment(segment)?;
                    segments.push(segment);
                }
            }
        }
        let mut path = String::with_capacity(raw.len() + 1);
        for segment in &segments {
            path.push('/');
            path.push_str(segment);
        }
        // Input that resolves to no segments always ends in `/`, `/.` or `/..`, so the
        // result is never empty.
        if is_dir {
            path.push('/');
        }
        check_length(&path)?;
        check_trailing_whitespace(&path)?;
        Ok(Self(path))
    }

    /// Accepts only a path that is already in normalized form.
    pub fn parse_canonical(raw: &str) -> Result<Self, PathError> {
        check_canonical(raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_dir(&self) -> bool {
        self.0.ends_with('/')
    }

    pub fn is_file(&self) -> bool {
        !self.is_dir()
    }

    pub fn root(&self) -> Root {
        if self.0.starts_with("/pub/") {
            Root::Pub
        } else if self.0.starts_with("/priv/") {
            Root::Priv
        } else {
            Root::Other
        }
    }

    pub fn is_private(&self) -> bool {
        self.root() == Root::Priv
    }

    /// Proper ancestor directories below `/`, outermost first: `/pub/`, `/pub/a/` for
    /// `/pub/a/b` (and for `/pub/a/b/`). Each item is itself a canonical directory path.
    pub fn parent_dirs(&self) -> impl Iterator<Item = &str> {
        let last = self.0.len() - 1;
        self.0
            .match_indices('/')
            .map(|(at, _)| at)
            .filter(move |&at| at != 0 && at != last)
            .map(|at| &self.0[..=at])
    }

    /// Whether `dir` is a directory containing this path (or this very directory).
    pub fn starts_with_dir(&self, dir: &EntryPath) -> bool {
        dir.is_dir() && self.0.starts_with(&dir.0)
    }
}

fn check_segment(segment: &str) -> Result<(), PathError> {
    if segment.len() > MAX_SEGMENT_BYTES {
        Err(PathError::SegmentTooLong(segment.len()))
    } else if segment.chars().any(char::is_control) {
        Err(PathError::ControlCharacter)
    } else if segment.contains('\\') {
        Err(PathError::Backslash)
    } else {
        Ok(())
    }
}

fn check_length(path: &str) -> Result<(), PathError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(path.len()));
    }
    Ok(())
}

fn check_trailing_whitespace(path: &str) -> Result<(), PathError> {
    match path.chars().next_back() {
        Some(last) if last.is_whitespace() => Err(PathError::TrailingWhitespace),
        _ => Ok(()),
    }
}

/// Same rules as [`EntryPath::normalize`], but anything normalization would change is an
/// error. The length is checked first so a huge input is rejected without a scan.
fn check_canonical(raw: &str) -> Result<(), PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    check_length(raw)?;
    if rest.is_empty() {
        return Ok(());
    }
    // A directory's trailing `/` leaves one empty last segment; it is the only one allowed.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for segment in rest.split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." => return Err(PathError::DotSegment),
            ".." => return Err(PathError::DotDotSegment),
            _ => check_segment(segment)?,
        }
    }
    check_trailing_whitespace(raw)
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EntryPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EntryPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        check_canonical(&raw).map_err(serde::de::Error::custom)?;
        Ok(Self(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        EntryPath::normalize(raw).map(|p| p.0)
    }

    fn canon(raw: &str) -> Result<String, PathError> {
        EntryPath::parse_canonical(raw).map(|p| p.0)
    }

    fn path(raw: &str) -> EntryPath {
        EntryPath::parse_canonical(raw).unwrap()
    }

    #[test]
    fn normalize_resolves_empty_dot_and_dotdot_segments() {
        for (raw, expected) in [
            ("/", "/"),
            ("//", "/"),
            ("///", "/"),
            ("/a//b", "/a/b"),
            ("/a///b/", "/a/b/"),
            ("/.", "/"),
            ("/a/.", "/a/"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/a/b/../..", "/"),
            ("/a/..//b", "/b"),
            ("/pub/app/x.json", "/pub/app/x.json"),
            ("/pub/app/", "/pub/app/"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(expected), "{raw:?}");
        }
    }

    #[test]
    fn dots_inside_names_and_percent_signs_are_literal() {
        for raw in [
            "/a/name..",
            "/.hidden/...",
            "/a/%2E%2E/b",
            "/pub/report%20",
            "/pub/a:b,c",
            "/pub/My File/über",
            "/ leading",
            "/directory /file",
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(raw), "{raw:?}");
            assert_eq!(canon(raw).as_deref(), Ok(raw), "{raw:?}");
        }
    }

    #[test]
    fn normalize_rejects_relative_paths_and_traversal_above_root() {
        for raw in ["", "relative", "pub/a", "./a"] {
            assert_eq!(norm(raw), Err(PathError::NotAbsolute), "{raw:?}");
        }
        for raw in ["/..", "/./..", "/a/../..", "/a/../../b", "/../pub/a"] {
            assert_eq!(norm(raw), Err(PathError::AboveRoot), "{raw:?}");
        }
    }

    #[test]
    fn segments_are_checked_even_when_popped_later() {
        assert_eq!(norm("/a\\b/.."), Err(PathError::Backslash));
        assert_eq!(norm("/a\nb/.."), Err(PathError::ControlCharacter));
        let long = format!("/{}/..", "a".repeat(256));
        assert_eq!(norm(&long), Err(PathError::SegmentTooLong(256)));
    }

    #[test]
    fn rejects_control_characters_and_backslashes() {
        for raw in ["/a\nb", "/a\0b", "/a\u{7f}", "/a\u{85}b", "/a\tb/c"] {
            assert_eq!(norm(raw), Err(PathError::ControlCharacter), "{raw:?}");
            assert_eq!(canon(raw), Err(PathError::ControlCharacter), "{raw:?}");
        }
        for raw in ["/a\\b", "/pub/app/\\..\\secret", "/\\"] {
            assert_eq!(norm(raw), Err(PathError::Backslash), "{raw:?}");
            assert_eq!(canon(raw), Err(PathError::Backslash), "{raw:?}");
        }
    }

    #[test]
    fn rejects_trailing_unicode_whitespace_after_resolution() {
        for raw in ["/pub/report ", "/a\u{a0}", "/a\u{3000}", "/a/b/.. "] {
            assert_eq!(norm(raw), Err(PathError::TrailingWhitespace), "{raw:?}");
            assert_eq!(canon(raw), Err(PathError::TrailingWhitespace), "{raw:?}");
        }
        // Only the end of the resolved path counts: a directory's `/` ends it.
        assert_eq!(norm("/a /b/..").as_deref(), Ok("/a /"));
        assert_eq!(norm("/x/ /.").as_deref(), Ok("/x/ /"));
    }

    #[test]
    fn segment_limit_counts_utf8_bytes() {
        let max = format!("/{}", "a".repeat(MAX_SEGMENT_BYTES));
        assert!(norm(&max).is_ok() && canon(&max).is_ok());
        let over = format!("{max}a");
        assert_eq!(norm(&over), Err(PathError::SegmentTooLong(256)));
        assert_eq!(canon(&over), Err(PathError::SegmentTooLong(256)));
        let multibyte_fits = format!("/{}a", "é".repeat(127));
        assert!(canon(&multibyte_fits).is_ok());
        let multibyte_over = format!("/{}", "é".repeat(128));
        assert_eq!(canon(&multibyte_over), Err(PathError::SegmentTooLong(256)));
    }

    #[test]
    fn total_limit_applies_to_the_resolved_path() {
        let max = "/a".repeat(MAX_PATH_BYTES / 2);
        assert_eq!(max.len(), MAX_PATH_BYTES);
        assert!(norm(&max).is_ok() && canon(&max).is_ok());
        let over = format!("{max}b");
        assert_eq!(norm(&over), Err(PathError::TooLong(973)));
        assert_eq!(canon(&over), Err(PathError::TooLong(973)));
        // Redundant slashes do not count once resolved.
        assert!(norm(&format!("//{max}")).is_ok());
        // The strict form checks length before anything else.
        let long_with_empty = format!("//{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(canon(&long_with_empty), Err(PathError::TooLong(974)));
    }

    #[test]
    fn parse_canonical_rejects_what_normalize_would_change() {
        for (raw, error) in [
            ("", PathError::NotAbsolute),
            ("relative", PathError::NotAbsolute),
            ("//", PathError::EmptySegment),
            ("/a//b", PathError::EmptySegment),
            ("/a//", PathError::EmptySegment),
            ("/.", PathError::DotSegment),
            ("/a/./", PathError::DotSegment),
            ("/..", PathError::DotDotSegment),
            ("/a/../b", PathError::DotDotSegment),
        ] {
            assert_eq!(canon(raw), Err(error), "{raw:?}");
        }
        for raw in ["/", "/a", "/a/", "/pub/app/x.json", "/priv/app/"] {
            assert_eq!(canon(raw).as_deref(), Ok(raw));
        }
    }

    #[test]
    fn error_texts_are_the_wire_reasons() {
        for (error, text) in [
            (PathError::NotAbsolute, "path must be absolute"),
            (PathError::EmptySegment, "path contains an empty segment"),
            (PathError::DotSegment, "path contains a `.` segment"),
            (PathError::DotDotSegment, "path contains a `..` segment"),
            (PathError::AboveRoot, "path traverses above root"),
            (
                PathError::ControlCharacter,
                "path contains a control character",
            ),
            (PathError::Backslash, "path must not contain a backslash"),
            (
                PathError::TrailingWhitespace,
                "path must not end in whitespace",
            ),
            (
                PathError::SegmentTooLong(256),
                "path segment is 256 bytes; maximum is 255",
            ),
            (PathError::TooLong(973), "path is 973 bytes; maximum is 972"),
        ] {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn shape_and_root() {
        for (raw, is_dir, root) in [
            ("/", true, Root::Other),
            ("/pub", false, Root::Other),
            ("/pub/", true, Root::Pub),
            ("/pub/a", false, Root::Pub),
            ("/priv", false, Root::Other),
            ("/priv/a/", true, Root::Priv),
            ("/public/a", false, Root::Other),
            ("/private/a", false, Root::Other),
        ] {
            let p = path(raw);
            assert_eq!((p.is_dir(), p.is_file(), p.root()), (is_dir, !is_dir, root));
            assert_eq!(p.is_private(), root == Root::Priv);
            assert_eq!(p.as_str(), raw);
            assert_eq!(p.to_string(), raw);
        }
        assert_eq!(EntryPath::root_dir(), path("/"));
    }

    #[test]
    fn parent_dirs_lists_proper_ancestors_below_root() {
        let dirs = |raw: &str| {
            path(raw)
                .parent_dirs()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(dirs("/pub/a/b"), ["/pub/", "/pub/a/"]);
        assert_eq!(dirs("/pub/a/b/"), ["/pub/", "/pub/a/"]);
        assert_eq!(dirs("/pub/"), Vec::<String>::new());
        assert_eq!(dirs("/pub"), Vec::<String>::new());
        assert_eq!(dirs("/"), Vec::<String>::new());
    }

    #[test]
    fn starts_with_dir_needs_a_directory_prefix() {
        let file = path("/pub/app/x");
        assert!(file.starts_with_dir(&path("/pub/app/")));
        assert!(file.starts_with_dir(&path("/")));
        assert!(path("/pub/app/").starts_with_dir(&path("/pub/app/")));
        assert!(!file.starts_with_dir(&path("/pub/app")));
        assert!(!file.starts_with_dir(&path("/pub/ap")));
        assert!(!path("/pub/application/x").starts_with_dir(&path("/pub/app/")));
    }

    #[test]
    fn orders_by_bytes() {
        // '-' (0x2d) sorts before '/' (0x2f), as in the store's listings.
        assert!(path("/pub/example.con-file") < path("/pub/example.con/"));
        assert!(path("/pub/Z") < path("/pub/a"));
    }

    #[test]
    fn serde_is_a_canonical_string() {
        let p = path("/pub/über%20/\"q\"");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#""/pub/über%20/\"q\"""#);
        assert_eq!(serde_json::from_str::<EntryPath>(&json).unwrap(), p);
        for bad in [
            r#""/pub//x""#,
            r#""/pub/./x""#,
            r#""pub/x""#,
            r#""/a\\b""#,
            "1",
            "null",
        ] {
            assert!(serde_json::from_str::<EntryPath>(bad).is_err(), "{bad}");
        }
    }

    /// Path-like strings: heavy on separators, dots and the characters the rules care about.
    fn pathish() -> impl Strategy<Value = String> {
        prop_oneof![
            "[/.a\\\\ é\u{a0}\u{3000}\u{85}\n%:]{0,24}",
            "/([a.]{1,3}/){0,6}[a.]{0,3}",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn normalize_never_panics(raw in pathish()) {
            let _ = EntryPath::normalize(&raw);
            let _ = EntryPath::parse_canonical(&raw);
        }

        #[test]
        fn normalized_paths_are_canonical_and_fixed_points(raw in pathish()) {
            if let Ok(p) = EntryPath::normalize(&raw) {
                prop_assert_eq!(EntryPath::parse_canonical(p.as_str()), Ok(p.clone()));
                prop_assert_eq!(EntryPath::normalize(p.as_str()), Ok(p));
            }
        }

        #[test]
        fn canonical_input_normalizes_to_itself(raw in pathish()) {
            if let Ok(p) = EntryPath::parse_canonical(&raw) {
                prop_assert_eq!(p.as_str(), raw.as_str());
                prop_assert_eq!(EntryPath::normalize(&raw), Ok(p));
            }
        }
    }
}
