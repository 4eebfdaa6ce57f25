//! Capabilities (spec §4.2, §14.9): what a session may do, as `<scope>:<actions>` entries.
//!
//! The wire form is the contract: AuthTokens and stored sessions carry the comma-separated
//! list, grants a JSON array of single entries, and both must render back byte for byte.
//! Parsing is strict (canonical scopes, known actions) so a stored capability always means
//! exactly what it says; lists are kept in order and never merged, as the reference does.

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::path::{EntryPath, PathError};

/// Declared in rendering order: `r`, `w`, then `e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Read,
    Write,
    /// Receive scoped content keys (0.17 clients); grants no storage access on its own.
    Encrypt,
}

impl Action {
    pub fn as_char(self) -> char {
        match self {
            Action::Read => 'r',
            Action::Write => 'w',
            Action::Encrypt => 'e',
        }
    }

    fn from_char(c: char) -> Option<Self> {
        match c {
            'r' => Some(Action::Read),
            'w' => Some(Action::Write),
            'e' => Some(Action::Encrypt),
            _ => None,
        }
    }
}

/// One `<scope>:<actions>` entry. Always parseable from its own rendering: the scope holds
/// no `:` or `,` and there is at least one action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Capability {
    scope: EntryPath,
    actions: BTreeSet<Action>,
}

/// A session's capability list, in the order it was granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(Vec<Capability>);

/// Why an entry was rejected; `entry` is the offending text, for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid capability {entry:?}: {reason}")]
pub struct CapabilityError {
    pub entry: String,
    pub reason: CapabilityErrorReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityErrorReason {
    #[error("expected `<scope>:<actions>`")]
    Format,
    #[error("no actions")]
    MissingActions,
    #[error("unknown action {0:?}")]
    UnknownAction(char),
    #[error("scope contains ','")]
    CommaInScope,
    #[error("scope: {0}")]
    Scope(PathError),
}

impl Capability {
    /// `/:rw`, everything a signup session gets.
    pub fn root() -> Self {
        Self {
            scope: EntryPath::root_dir(),
            actions: BTreeSet::from([Action::Read, Action::Write]),
        }
    }

    pub fn scope(&self) -> &EntryPath {
        &self.scope
    }

    pub fn actions(&self) -> impl Iterator<Item = Action> + '_ {
        self.actions.iter().copied()
    }

    /// A directory scope covers itself and everything below it; a file scope only itself.
    pub fn covers(&self, path: &EntryPath, action: Action) -> bool {
        self.actions.contains(&action) && (&self.scope == path || path.starts_with_dir(&self.scope))
    }

    /// Scope `/` with both `r` and `w`; an extra `e` does not change that.
    pub fn is_root(&self) -> bool {
        self.scope.as_str() == "/"
            && self.actions.contains(&Action::Read)
            && self.actions.contains(&Action::Write)
    }
}

impl FromStr for Capability {
    type Err = CapabilityError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        parse_entry(entry).map_err(|reason| CapabilityError {
            entry: entry.to_owned(),
            reason,
        })
    }
}

/// Checks in the reference's order, which decides the reason reported for bad entries.
fn parse_entry(entry: &str) -> Result<Capability, CapabilityErrorReason> {
    use CapabilityErrorReason as Reason;
    let (scope, actions) = entry.split_once(':').ok_or(Reason::Format)?;
    if actions.contains(':') {
        return Err(Reason::Format);
    }
    if actions.is_empty() {
        return Err(Reason::MissingActions);
    }
    let actions = actions
        .chars()
        .map(|c| Action::from_char(c).ok_or(Reason::UnknownAction(c)))
        .collect::<Result<_, _>>()?;
    // The split leaves no `:` in the scope; a `,` can only come in a single grant entry,
    // and would make the rendered list ambiguous.
    if scope.contains(',') {
        return Err(Reason::CommaInScope);
    }
    let scope = EntryPath::parse_canonical(scope).map_err(Reason::Scope)?;
    Ok(Capability { scope, actions })
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scope)?;
        self.actions()
            .try_for_each(|action| write!(f, "{}", action.as_char()))
    }
}

impl Capabilities {
    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.0.iter()
    }

    pub fn covers(&self, path: &EntryPath, action: Action) -> bool {
        self.0.iter().any(|cap| cap.covers(path, action))
    }

    pub fn has_root(&self) -> bool {
        self.0.iter().any(Capability::is_root)
    }
}

impl From<Vec<Capability>> for Capabilities {
    fn from(caps: Vec<Capability>) -> Self {
        Self(caps)
    }
}

impl FromStr for Capabilities {
    type Err = CapabilityError;

    /// The comma-separated form; the empty string is the empty list.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        if list.is_empty() {
            return Ok(Self::default());
        }
        list.split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cap) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{cap}")?;
        }
        Ok(())
    }
}

/// A single entry is a string: grants carry `["/pub/app/:rw", …]`, i.e. `Vec<Capability>`.
impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A list is the comma-separated string, as inside the postcard AuthToken.
impl Serialize for Capabilities {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CapabilityErrorReason as Reason;
    use proptest::prelude::*;

    fn caps(list: &str) -> Capabilities {
        list.parse().unwrap()
    }

    fn path(raw: &str) -> EntryPath {
        EntryPath::parse_canonical(raw).unwrap()
    }

    fn reason(entry: &str) -> Reason {
        entry.parse::<Capability>().unwrap_err().reason
    }

    #[test]
    fn parses_and_renders_lists() {
        assert_eq!(caps(""), Capabilities::default());
        assert_eq!(caps("").to_string(), "");
        for list in [
            "/:rw",
            "/pub/app/:rw,/priv/app/:r",
            "/pub/foo.txt:w,/pub/foo.txt:r",
            "/pub/a/:r,/pub/a/:r",
        ] {
            assert_eq!(caps(list).to_string(), list);
        }
    }

    #[test]
    fn actions_are_merged_and_rendered_r_w_e() {
        for (entry, rendered) in [
            ("/:wr", "/:rw"),
            ("/:wrrw", "/:rw"),
            ("/pub/chat/:ewr", "/pub/chat/:rwe"),
            ("/pub/chat/:ee", "/pub/chat/:e"),
            ("/pub/chat/:er", "/pub/chat/:re"),
        ] {
            assert_eq!(caps(entry).to_string(), rendered);
        }
        let cap: Capability = "/:ewr".parse().unwrap();
        assert_eq!(
            cap.actions().collect::<Vec<_>>(),
            [Action::Read, Action::Write, Action::Encrypt]
        );
    }

    #[test]
    fn rejects_malformed_entries() {
        for (entry, expected) in [
            ("", Reason::Format),
            ("/pub/app/", Reason::Format),
            ("/pub/app/:r:w", Reason::Format),
            ("/pub/app/:", Reason::MissingActions),
            ("/pub/app/:rx", Reason::UnknownAction('x')),
            ("/pub/app/:R", Reason::UnknownAction('R')),
            ("/pub/app/: r", Reason::UnknownAction(' ')),
            ("/pub/a,b/:r", Reason::CommaInScope),
            (":r", Reason::Scope(PathError::NotAbsolute)),
            ("pub/app/:r", Reason::Scope(PathError::NotAbsolute)),
            ("/pub//app/:r", Reason::Scope(PathError::EmptySegment)),
            ("/pub/./app/:r", Reason::Scope(PathError::DotSegment)),
            ("/pub/../app/:r", Reason::Scope(PathError::DotDotSegment)),
            (
                "/priv/report :r",
                Reason::Scope(PathError::TrailingWhitespace),
            ),
            ("/priv/a\\b:r", Reason::Scope(PathError::Backslash)),
        ] {
            assert_eq!(reason(entry), expected, "{entry:?}");
        }
        // Actions are checked before the scope, as in the reference.
        assert_eq!(reason("relative:x"), Reason::UnknownAction('x'));
    }

    #[test]
    fn list_errors_name_the_bad_entry() {
        let error = "/pub/a/:r,/pub/b/:rx".parse::<Capabilities>().unwrap_err();
        assert_eq!(error.entry, "/pub/b/:rx");
        assert_eq!(
            error.to_string(),
            r#"invalid capability "/pub/b/:rx": unknown action 'x'"#
        );
        for list in [",", "/:rw,", ",/:rw", "/:rw, /pub/:r"] {
            assert!(list.parse::<Capabilities>().is_err(), "{list:?}");
        }
    }

    #[test]
    fn error_texts() {
        for (entry, text) in [
            (
                "/a",
                "invalid capability \"/a\": expected `<scope>:<actions>`",
            ),
            ("/a:", "invalid capability \"/a:\": no actions"),
            ("/a:q", "invalid capability \"/a:q\": unknown action 'q'"),
            (
                "/a,b:r",
                "invalid capability \"/a,b:r\": scope contains ','",
            ),
            (
                "/a/..:r",
                "invalid capability \"/a/..:r\": scope: path contains a `..` segment",
            ),
            (
                "a:r",
                "invalid capability \"a:r\": scope: path must be absolute",
            ),
        ] {
            assert_eq!(entry.parse::<Capability>().unwrap_err().to_string(), text);
        }
    }

    #[test]
    fn directory_scope_covers_descendants_file_scope_only_itself() {
        let dir: Capability = "/pub/app/:rw".parse().unwrap();
        for covered in ["/pub/app/", "/pub/app/x", "/pub/app/a/b/"] {
            assert!(dir.covers(&path(covered), Action::Read), "{covered}");
        }
        for outside in ["/pub/app", "/pub/application/x", "/pub/", "/priv/app/x"] {
            assert!(!dir.covers(&path(outside), Action::Read), "{outside}");
        }
        let file: Capability = "/pub/app:rw".parse().unwrap();
        assert!(file.covers(&path("/pub/app"), Action::Write));
        for outside in ["/pub/app/", "/pub/app/x", "/pub/apps"] {
            assert!(!file.covers(&path(outside), Action::Write), "{outside}");
        }
    }

    #[test]
    fn coverage_is_per_action() {
        let list = caps("/pub/a/:r,/pub/b/:w,/pub/c/:e");
        let at = |p: &str| path(p);
        assert!(list.covers(&at("/pub/a/x"), Action::Read));
        assert!(!list.covers(&at("/pub/a/x"), Action::Write));
        assert!(list.covers(&at("/pub/b/x"), Action::Write));
        assert!(!list.covers(&at("/pub/b/x"), Action::Read));
        assert!(!list.covers(&at("/pub/c/x"), Action::Read));
        assert!(!list.covers(&at("/pub/c/x"), Action::Write));
        assert!(list.covers(&at("/pub/c/x"), Action::Encrypt));
        assert!(!Capabilities::default().covers(&at("/pub/a/x"), Action::Read));
    }

    #[test]
    fn root_is_slash_with_read_and_write() {
        assert_eq!(Capability::root().to_string(), "/:rw");
        assert_eq!("/:rw".parse(), Ok(Capability::root()));
        for (list, is_root) in [
            ("/:rw", true),
            ("/:wr", true),
            ("/:rwe", true),
            ("/:r", false),
            ("/:w", false),
            ("/:e", false),
            ("/pub/:rw", false),
            ("/:r,/:w", false),
            ("/pub/:r,/:rw", true),
        ] {
            assert_eq!(caps(list).has_root(), is_root, "{list}");
        }
        assert!(Capability::root().covers(&path("/priv/x"), Action::Write));
    }

    #[test]
    fn serde_forms() {
        let grant: Vec<Capability> =
            serde_json::from_str(r#"["/pub/app/:rw","/priv/app/:wr"]"#).unwrap();
        let list = Capabilities::from(grant.clone());
        assert_eq!(list.to_string(), "/pub/app/:rw,/priv/app/:rw");
        assert_eq!(
            serde_json::to_string(&grant).unwrap(),
            r#"["/pub/app/:rw","/priv/app/:rw"]"#
        );
        for bad in [
            r#"[":x"]"#,
            r#"["/pub/app/:"]"#,
            r#"["pub/app/:r"]"#,
            r#"["/a,b:r"]"#,
            "[1]",
        ] {
            assert!(
                serde_json::from_str::<Vec<Capability>>(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#""/pub/app/:rw,/priv/app/:rw""#
        );
        assert_eq!(
            serde_json::from_str::<Capabilities>(r#""/pub/app/:rw,/priv/app/:rw""#).unwrap(),
            list
        );
        assert!(serde_json::from_str::<Capabilities>(r#""/pub/app/:rx""#).is_err());
    }

    fn capability() -> impl Strategy<Value = Capability> {
        // Never `.`/`..`, never ending in a space: always a canonical segment.
        let segment = "[a-zA-Z0-9_%~é-]([a-zA-Z0-9._%~é -]{0,4}[a-zA-Z0-9._%~é-])?";
        (
            prop::collection::vec(segment, 0..4),
            any::<bool>(),
            prop::collection::btree_set(
                prop_oneof![
                    Just(Action::Read),
                    Just(Action::Write),
                    Just(Action::Encrypt)
                ],
                1..=3,
            ),
        )
            .prop_map(|(segments, dir, actions)| {
                let mut raw = segments.iter().map(|s| format!("/{s}")).collect::<String>();
                if dir || raw.is_empty() {
                    raw.push('/');
                }
                Capability {
                    scope: EntryPath::parse_canonical(&raw).unwrap(),
                    actions,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn parse_never_panics(raw in prop_oneof!["[/:,rwe.a ]{0,16}", any::<String>()]) {
            if let Ok(list) = raw.parse::<Capabilities>() {
                prop_assert_eq!(list.to_string().parse::<Capabilities>(), Ok(list));
            }
        }
    }

    proptest! {
        #[test]
        fn parse_of_render_is_identity(list in prop::collection::vec(capability(), 0..4)) {
            let list = Capabilities::from(list);
            prop_assert_eq!(list.to_string().parse::<Capabilities>(), Ok(list));
        }
    }
}
