//! Storage locks (`webdav-locks`): the wire rules of `LOCK`/`UNLOCK` on
//! `/storage/<user>/<path>` and of the `If` header on writes, as the reference
//! homeserver has them (exclusive write locks on single files, depth 0, no lock-null
//! resources), and the rules of the locks WebDAV adds to them (RFC 4918 §6, §7):
//! shared locks, and locks on folders of depth 0 or infinity ([`HeldLock`]).
//!
//! Why a module of its own: the same rules are used by the write path (`PUT`/`DELETE`
//! must honour a lock taken through any instance) and by the lock endpoints, and they
//! are pure text handling and arithmetic, so they live here where they can be tested
//! without a server. The lock's state itself is events on the log (`lock_acquired`,
//! `lock_refreshed`, `lock_released`) projected into `entry_locks`; nothing here keeps
//! state or reads a clock.

use sha2::{Digest as _, Sha256};

/// Lifetime of a lock whose request names none (or none that parses), in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Longest lifetime a lock gets; `Infinite` and longer requests are cut to it.
pub const MAX_TIMEOUT_SECS: u64 = 600;
/// Largest `lockinfo` body read for a new lock.
pub const MAX_LOCKINFO_BYTES: usize = 16 * 1024;
/// The scheme of the tokens this server mints.
pub const TOKEN_SCHEME: &str = "opaquelocktoken:";

/// Response texts, byte for byte the reference's.
pub const LOCKED: &str = "Resource is locked";
pub const IF_NOT_LIVE: &str = "The If header does not name the live lock on this path";
pub const NO_SUCH_LOCK: &str = "No lock with this token on this path";
pub const BAD_LOCK_TOKEN: &str = "Missing or malformed Lock-Token header";
pub const ONLY_EXCLUSIVE_WRITE: &str = "Only exclusive write locks are supported";
pub const LOCKINFO_TOO_LARGE: &str = "lockinfo body too large";

/// A lock token as the client presents it (`opaquelocktoken:<uuid>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(String);

impl LockToken {
    /// A new token from a UUID the caller generated (this crate has no RNG).
    pub fn from_uuid(uuid: &str) -> Self {
        LockToken(format!("{TOKEN_SCHEME}{uuid}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the token text: the only form events and the projection keep, so the
    /// log never carries a token that would let a reader write through a lock.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The `Lock-Token` header value: the token in angle brackets.
    pub fn header_value(&self) -> String {
        format!("<{}>", self.0)
    }
}

/// The lifetime a `Timeout` header asks for, in seconds: the first comma-separated
/// item that is `Infinite` (the maximum) or `Second-N` (N clamped to 1..=maximum);
/// the default when the header is absent or no item parses.
pub fn timeout_secs(header: Option<&str>) -> u64 {
    let Some(header) = header else {
        return DEFAULT_TIMEOUT_SECS;
    };
    for item in header.split(',').map(str::trim) {
        if item.eq_ignore_ascii_case("Infinite") {
            return MAX_TIMEOUT_SECS;
        }
        let Some(prefix) = item.get(..7) else {
            continue;
        };
        if !prefix.eq_ignore_ascii_case("Second-") {
            continue;
        }
        let digits = &item[7..];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // All digits but too long for a u64 is still "very long": the maximum.
        let secs = digits.parse::<u64>().unwrap_or(u64::MAX);
        return secs.clamp(1, MAX_TIMEOUT_SECS);
    }
    DEFAULT_TIMEOUT_SECS
}

/// The lock tokens named in `If` header values: every `<…>` coded URL whose content
/// starts with `opaquelocktoken:`, wherever it appears (resource tags, `Not` and
/// entity tags are not interpreted). An unterminated `<` ends the scan.
pub fn if_tokens<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<LockToken> {
    let mut tokens = Vec::new();
    for value in values {
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('>') else {
                break;
            };
            let inner = &after[..close];
            if inner.starts_with(TOKEN_SCHEME) {
                tokens.push(LockToken(inner.to_string()));
            }
            rest = &after[close + 1..];
        }
    }
    tokens
}

/// The token of an `UNLOCK`'s `Lock-Token` header: the first `<…>` group, or the bare
/// value; `None` when it is missing or not an `opaquelocktoken:`.
pub fn lock_token_header(value: Option<&str>) -> Option<LockToken> {
    let value = value?.trim();
    let token = match value.find('<') {
        Some(open) => {
            let after = &value[open + 1..];
            &after[..after.find('>')?]
        }
        None => value,
    };
    token
        .starts_with(TOKEN_SCHEME)
        .then(|| LockToken(token.to_string()))
}

/// Whether a `lockinfo` body asks for what this server provides: empty (the default,
/// an exclusive write lock), or elements named (by local name, any prefix)
/// `exclusive` and `write`, and none named `shared`.
pub fn lockinfo_supported(body: &[u8]) -> bool {
    if body.iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let text = String::from_utf8_lossy(body);
    let (mut exclusive, mut write, mut shared) = (false, false, false);
    let mut rest = text.as_ref();
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if rest.starts_with(['/', '?', '!']) {
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .unwrap_or(rest.len());
        let name = &rest[..end];
        let local = name.rsplit(':').next().unwrap_or(name);
        match local {
            "exclusive" => exclusive = true,
            "write" => write = true,
            "shared" => shared = true,
            _ => {}
        }
    }
    exclusive && write && !shared
}

/// What a write (`PUT`/`DELETE`) may do given the live locks guarding its path
/// ([`guarding`]) and the tokens its `If` headers presented. The decision is taken
/// before the body is read and again against the state the write's event is appended
/// after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteUnderLock {
    /// No live lock and no token, or the token of one of the guarding locks presented.
    Proceed,
    /// A live lock and no token: 423 [`LOCKED`].
    Locked,
    /// Tokens that name none of the guarding locks (or there is none any more): 412.
    NotTheLiveLock,
}

/// Decides [`WriteUnderLock`]; `guards` are the SHA-256 of the tokens of the live
/// locks guarding the path. One of them is enough: several guard a path only when
/// they are all shared (an exclusive lock conflicts with any other over the same
/// path), and a shared lock's holder may write.
pub fn write_under_locks(guards: &[[u8; 32]], presented: &[LockToken]) -> WriteUnderLock {
    match (guards.is_empty(), presented.is_empty()) {
        (true, true) => WriteUnderLock::Proceed,
        (true, false) => WriteUnderLock::NotTheLiveLock,
        (false, true) => WriteUnderLock::Locked,
        (false, false) => {
            if presented.iter().any(|t| guards.contains(&t.hash())) {
                WriteUnderLock::Proceed
            } else {
                WriteUnderLock::NotTheLiveLock
            }
        }
    }
}

/// A live lock as the rules of conflicts and writes see it. `/storage/` takes only
/// exclusive locks of depth 0 on files; WebDAV also takes shared ones, and locks on
/// folders, whose `path` ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// The lock's root: a file path, or a folder path ending with `/`.
    pub path: String,
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    /// A shared lock: others may hold shared locks over the same paths.
    pub shared: bool,
    /// Depth infinity: a folder lock that covers everything under the folder too.
    pub deep: bool,
}

impl HeldLock {
    /// Whether the lock applies to `path` (a file path, or a folder path ending with
    /// `/`): it is the lock's root, or lies under the root of a depth-infinity lock.
    pub fn covers(&self, path: &str) -> bool {
        self.path == path || (self.deep && self.path.ends_with('/') && path.starts_with(&self.path))
    }

    /// Whether a new lock of `path` (`shared` or exclusive, `deep` or not) conflicts
    /// with this one (RFC 4918 §6.1, §7): their scopes overlap, that is one covers the
    /// other's root, and they are not both shared.
    pub fn conflicts_with(&self, path: &str, shared: bool, deep: bool) -> bool {
        let overlap =
            self.covers(path) || (deep && path.ends_with('/') && self.path.starts_with(path));
        overlap && !(shared && self.shared)
    }

    fn answered_by(&self, presented: &[LockToken]) -> bool {
        presented.iter().any(|t| t.hash() == self.token_hash)
    }
}

/// The folder `path` is a member of (ending with `/`); `None` for the root.
pub fn parent_dir(path: &str) -> Option<&str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    trimmed.rfind('/').map(|slash| &trimmed[..=slash])
}

/// The locks a change of `path` must present a token of (one is enough, see
/// [`write_under_locks`]): those covering it and, when the change adds `path` to its
/// folder or removes it (`membership`: a new file, a delete, either end of a move),
/// a depth-0 lock of that folder, which guards the folder's list of members (RFC
/// 4918 §7.5).
pub fn guarding<'a>(held: &'a [HeldLock], path: &str, membership: bool) -> Vec<&'a HeldLock> {
    let parent = parent_dir(path).filter(|_| membership);
    held.iter()
        .filter(|lock| lock.covers(path) || Some(lock.path.as_str()) == parent)
        .collect()
}

/// Whether a change of `root` and of everything under it (a folder's delete, move or
/// overwrite) may go ahead: for `root` and for the root of every lock under it, one of
/// the locks guarding it must be answered by a presented token.
pub fn tree_unlocked(held: &[HeldLock], root: &str, presented: &[LockToken]) -> bool {
    let below = format!("{}/", root.trim_end_matches('/'));
    std::iter::once((root, true))
        .chain(
            held.iter()
                .filter(|lock| lock.path != root && lock.path.starts_with(&below))
                .map(|lock| (lock.path.as_str(), false)),
        )
        .all(|(path, membership)| {
            let guards = guarding(held, path, membership);
            guards.is_empty() || guards.iter().any(|lock| lock.answered_by(presented))
        })
}

/// The body of a `LOCK` answer: one line of `DAV:` XML naming the lock. `lockroot` is
/// the request's URI path (XML-escaped here).
pub fn lock_discovery_xml(token: &LockToken, timeout_secs: u64, lockroot: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?><D:prop xmlns:D="DAV:"><D:lockdiscovery><D:activelock>"#,
            "<D:locktype><D:write/></D:locktype><D:lockscope><D:exclusive/></D:lockscope><D:depth>0</D:depth>",
            "<D:timeout>Second-{timeout}</D:timeout><D:locktoken><D:href>{token}</D:href></D:locktoken>",
            "<D:lockroot><D:href>{root}</D:href></D:lockroot></D:activelock></D:lockdiscovery></D:prop>"
        ),
        timeout = timeout_secs,
        token = xml_escape(token.as_str()),
        root = xml_escape(lockroot),
    )
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_default_clamp_and_take_the_first_item_that_parses() {
        assert_eq!(timeout_secs(None), 30);
        assert_eq!(timeout_secs(Some("")), 30);
        assert_eq!(timeout_secs(Some("garbage")), 30);
        assert_eq!(timeout_secs(Some("Second-5")), 5);
        assert_eq!(timeout_secs(Some("second-5")), 5);
        assert_eq!(timeout_secs(Some("Second-0")), 1);
        assert_eq!(timeout_secs(Some("Second-601")), 600);
        assert_eq!(timeout_secs(Some("Second-99999999999999999999999")), 600);
        assert_eq!(timeout_secs(Some("Infinite, Second-5")), 600);
        assert_eq!(timeout_secs(Some("Second-x, Second-7")), 7);
        assert_eq!(timeout_secs(Some("Second--3")), 30);
    }

    #[test]
    fn if_headers_yield_every_coded_lock_token() {
        let a = "opaquelocktoken:11111111-1111-4111-8111-111111111111";
        let b = "opaquelocktoken:22222222-2222-4222-8222-222222222222";
        let tagged = format!("<http://h/storage/k/pub/a> (<{a}> [\"etag\"]) (Not <{b}>)");
        let found = if_tokens([tagged.as_str()]);
        assert_eq!(
            found.iter().map(LockToken::as_str).collect::<Vec<_>>(),
            [a, b]
        );
        assert!(if_tokens(["(<urn:uuid:x>)", "no brackets"]).is_empty());
        // An unterminated `<` ends the scan of that value only.
        let broken = format!("(<{a}> <{b}");
        let other = format!("(<{b}>)");
        assert_eq!(if_tokens([broken.as_str(), other.as_str()]).len(), 2);
    }

    #[test]
    fn lock_token_headers_are_bracketed_or_bare() {
        let t = "opaquelocktoken:abc";
        assert_eq!(
            lock_token_header(Some("<opaquelocktoken:abc>"))
                .unwrap()
                .as_str(),
            t
        );
        assert_eq!(
            lock_token_header(Some(" opaquelocktoken:abc "))
                .unwrap()
                .as_str(),
            t
        );
        assert!(lock_token_header(None).is_none());
        assert!(lock_token_header(Some("<urn:uuid:abc>")).is_none());
        assert!(lock_token_header(Some("<opaquelocktoken:abc")).is_none());
        assert!(lock_token_header(Some("")).is_none());
    }

    #[test]
    fn only_exclusive_write_lockinfo_is_accepted() {
        assert!(lockinfo_supported(b""));
        assert!(lockinfo_supported(b"  \n"));
        let litmus = br#"<?xml version="1.0" encoding="utf-8"?>
<lockinfo xmlns='DAV:'><lockscope><exclusive/></lockscope><locktype><write/></locktype>
<owner>litmus test suite</owner></lockinfo>"#;
        assert!(lockinfo_supported(litmus));
        let prefixed = br#"<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
        assert!(lockinfo_supported(prefixed));
        let shared = br#"<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
        assert!(!lockinfo_supported(shared));
        assert!(!lockinfo_supported(b"not xml at all"));
        assert!(!lockinfo_supported(b"<D:lockinfo xmlns:D=\"DAV:\"/>"));
    }

    #[test]
    fn writes_proceed_only_with_no_lock_or_a_guarding_token() {
        let token = LockToken::from_uuid("u1");
        let other = LockToken::from_uuid("u2");
        let live = token.hash();
        use WriteUnderLock::*;
        assert_eq!(write_under_locks(&[], &[]), Proceed);
        assert_eq!(
            write_under_locks(&[], std::slice::from_ref(&token)),
            NotTheLiveLock
        );
        assert_eq!(write_under_locks(&[live], &[]), Locked);
        assert_eq!(
            write_under_locks(&[live], &[other.clone(), token.clone()]),
            Proceed
        );
        assert_eq!(
            write_under_locks(&[live], std::slice::from_ref(&other)),
            NotTheLiveLock
        );
        // Two shared locks: either holder may write.
        assert_eq!(write_under_locks(&[other.hash(), live], &[token]), Proceed);
    }

    fn held(path: &str, token: &LockToken, shared: bool, deep: bool) -> HeldLock {
        HeldLock {
            path: path.into(),
            token_hash: token.hash(),
            shared,
            deep,
        }
    }

    #[test]
    fn folder_locks_cover_what_lies_under_them_at_depth_infinity_only() {
        let t = LockToken::from_uuid("t");
        let deep = held("/pub/a/", &t, false, true);
        assert!(deep.covers("/pub/a/"));
        assert!(deep.covers("/pub/a/b.txt"));
        assert!(deep.covers("/pub/a/b/c.txt"));
        assert!(!deep.covers("/pub/a"));
        assert!(!deep.covers("/pub/ab.txt"));
        let shallow = held("/pub/a/", &t, false, false);
        assert!(shallow.covers("/pub/a/"));
        assert!(!shallow.covers("/pub/a/b.txt"));
        assert_eq!(parent_dir("/pub/a/b.txt"), Some("/pub/a/"));
        assert_eq!(parent_dir("/pub/a/"), Some("/pub/"));
        assert_eq!(parent_dir("/"), None);
        // A depth-0 folder lock guards the folder's members list: new files, deletes.
        let held_locks = [shallow];
        assert_eq!(guarding(&held_locks, "/pub/a/new.txt", true).len(), 1);
        assert!(guarding(&held_locks, "/pub/a/new.txt", false).is_empty());
        assert!(guarding(&held_locks, "/pub/a/b/new.txt", true).is_empty());
    }

    #[test]
    fn shared_locks_coexist_and_exclusive_ones_conflict_with_any_other() {
        let t = LockToken::from_uuid("t");
        let shared = held("/pub/f.txt", &t, true, false);
        assert!(!shared.conflicts_with("/pub/f.txt", true, false));
        assert!(shared.conflicts_with("/pub/f.txt", false, false));
        let exclusive = held("/pub/f.txt", &t, false, false);
        assert!(exclusive.conflicts_with("/pub/f.txt", true, false));
        assert!(!exclusive.conflicts_with("/pub/g.txt", false, false));
        // A deep folder lock conflicts with a lock below it, and the other way round.
        let folder = held("/pub/d/", &t, false, true);
        assert!(folder.conflicts_with("/pub/d/x/y.txt", false, false));
        let below = held("/pub/d/x/y.txt", &t, false, false);
        assert!(below.conflicts_with("/pub/d/", false, true));
        assert!(!below.conflicts_with("/pub/d/", false, false));
        assert!(!held("/pub/d/", &t, true, true).conflicts_with("/pub/d/x", true, false));
    }

    #[test]
    fn a_tree_change_needs_a_token_for_every_lock_root_in_it() {
        let (a, b, c) = (
            LockToken::from_uuid("a"),
            LockToken::from_uuid("b"),
            LockToken::from_uuid("c"),
        );
        let locks = [
            held("/pub/d/x.txt", &a, false, false),
            held("/pub/d/s/", &b, true, true),
            held("/pub/d/s/", &c, true, true),
        ];
        assert!(tree_unlocked(&locks, "/pub/other/", &[]));
        assert!(!tree_unlocked(&locks, "/pub/d/", &[]));
        assert!(!tree_unlocked(&locks, "/pub/d/", std::slice::from_ref(&a)));
        assert!(tree_unlocked(&locks, "/pub/d/", &[a.clone(), c.clone()]));
        // A deep lock above the root guards it too.
        let above = [held("/pub/", &a, false, true)];
        assert!(!tree_unlocked(&above, "/pub/d/", &[]));
        assert!(tree_unlocked(&above, "/pub/d/", &[a]));
    }

    #[test]
    fn the_discovery_body_is_the_reference_line() {
        let token = LockToken::from_uuid("0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c");
        assert_eq!(
            lock_discovery_xml(&token, 30, "/storage/k/pub/a&b.txt"),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:prop xmlns:D=\"DAV:\"><D:lockdiscovery><D:activelock>\
<D:locktype><D:write/></D:locktype><D:lockscope><D:exclusive/></D:lockscope><D:depth>0</D:depth>\
<D:timeout>Second-30</D:timeout><D:locktoken><D:href>opaquelocktoken:0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c</D:href></D:locktoken>\
<D:lockroot><D:href>/storage/k/pub/a&amp;b.txt</D:href></D:lockroot></D:activelock></D:lockdiscovery></D:prop>"
        );
        assert_eq!(
            token.header_value(),
            "<opaquelocktoken:0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c>"
        );
    }
}
