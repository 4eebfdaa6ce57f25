//! The events of the log, schema version 1.
//!
//! Every state change of the homeserver is exactly one of these, appended to the
//! JetStream log and projected into Postgres. They are a public interface: third
//! parties may read them straight from NATS, so the JSON shape is described by the
//! schemas in `schemas/` and must stay decodable forever (a breaking change is a new
//! `v`, never an edit of v1).
//!
//! Events never carry secrets: bearer tokens, cookie secrets and signup tokens appear
//! only as SHA-256 hashes, and file contents only as their BLAKE3 hash.

use crate::PublicKey;
use serde::{Deserialize, Serialize};

/// The schema version this crate writes.
pub const EVENT_VERSION: u8 = 1;

/// Position of an event in the log: the JetStream stream sequence. It is the cursor
/// of every feed, and a user's version number for optimistic concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventSeq(pub u64);

impl std::fmt::Display for EventSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A 32-byte digest rendered as lowercase hex in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Digest(out))
    }
}

/// A per-user storage limit. `None` in an override means "the server default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageLimit {
    Unlimited,
    Megabytes(u64),
}

/// Per-user overrides of the server's defaults, set by a signup token or the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageLimit>,
    /// `None`: unrestricted. `Some([])`: read-only. Entries ending in `/` match by prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_write_paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_write: Option<String>,
}

/// The cookie session a `POST /signup` opens together with the account: the fields of
/// [`Change::CookieSessionCreated`], carried inside [`Change::UserSignedUp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieSessionStart {
    pub secret_hash: Digest,
    pub capabilities: String,
    /// Identifies the AuthToken that created it, so it cannot be replayed.
    pub auth_token_id: String,
}

/// One dead property change of [`Change::PropsPatched`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropChange {
    /// The property's XML namespace (empty for none).
    pub ns: String,
    /// Its local name.
    pub name: String,
    /// The property element with its value; absent = remove the property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<String>,
}

/// What happened. The `kind` tag names the event in the JSON form.
// Events are short-lived values built once per request; boxing the large variant would
// only complicate the serde mapping.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A new account. `signup_token` is the hash of the token it consumed, if any.
    ///
    /// One request, one event: a cookie signup (`POST /signup`) opens its session in the
    /// same event (`cookie_session`), and a grant signup records its proof-of-possession
    /// nonce (`pop_nonce`). Both are absent in events written before they existed.
    UserSignedUp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signup_token: Option<Digest>,
        #[serde(default)]
        limits: UserLimits,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cookie_session: Option<CookieSessionStart>,
        /// The nonce of the signup grant's PoP, recorded so it can never be used again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pop_nonce: Option<String>,
    },
    /// A bearer session minted (or refreshed) for a grant, in one of the grant's session
    /// slots (`grant-session-slots`): it replaces the bearer of the same slot and ends
    /// the grant's expired ones; other slots keep theirs.
    GrantSessionCreated {
        grant_id: String,
        client_id: String,
        #[serde(with = "z32")]
        client_key: PublicKey,
        capabilities: Vec<String>,
        grant_issued_at: u64,
        grant_expires_at: u64,
        token_hash: Digest,
        token_expires_at: u64,
        /// The proof-of-possession nonce, recorded so it can never be used again.
        pop_nonce: String,
        /// The slot the client named (`session_id`); absent = the legacy slot, which
        /// is also every session of the events written before slots existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
    GrantRevoked {
        grant_id: String,
        /// The PoP nonce of a proof logout (`DELETE /auth/grant/session` with a
        /// `{grant,pop}` body), recorded so that proof can never be used again. Absent
        /// when the revocation was authorized by a session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pop_nonce: Option<String>,
    },
    /// A legacy cookie session, created by `POST /signup` or `POST /session`.
    CookieSessionCreated {
        secret_hash: Digest,
        capabilities: String,
        /// Identifies the AuthToken that created it, so it cannot be replayed.
        auth_token_id: String,
    },
    CookieSessionEnded {
        secret_hash: Digest,
    },
    /// An operator minted a signup token. `user` of such an event is the homeserver.
    SignupTokenMinted {
        token_hash: Digest,
        #[serde(default)]
        limits: UserLimits,
    },
    FilePut {
        path: String,
        content_hash: Digest,
        size: u64,
        content_type: String,
    },
    FileDeleted {
        path: String,
    },
    UserDisabled,
    UserEnabled,
    LimitsChanged {
        limits: UserLimits,
    },
    /// The user deleted their account (`DELETE /account`): every file, version, session
    /// and grant of the user ends with this one event, and the quota is freed. The
    /// projections show each removed file as a `DEL` line of this event in the feeds.
    /// The key may sign up again afterwards, as a new, empty account.
    AccountDeleted {
        /// The PoP nonce when a `{grant,pop}` proof authorized the deletion instead of a
        /// session, recorded so the proof cannot be used again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pop_nonce: Option<String>,
    },
    /// A storage lock (`LOCK`, `webdav-locks`) was taken where no live lock conflicted
    /// with it: an exclusive lock of depth 0 on a file (`/storage/`), or over WebDAV
    /// also a shared one, or one on a folder (`path` ends with `/`). The user's
    /// expired locks go with it. File event: it is ordered with the user's writes,
    /// which is what makes a write and a lock taken through different instances
    /// exclude each other.
    LockAcquired {
        path: String,
        /// SHA-256 of the lock token (`opaquelocktoken:<uuid>`); never the token.
        token_hash: Digest,
        /// When the lock ends, in microseconds since the Unix epoch.
        expires_us: u64,
        /// A shared lock (WebDAV); absent: exclusive.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared: bool,
        /// Depth infinity on a folder: the lock covers everything under it; absent:
        /// depth 0.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deep: bool,
        /// The `DAV:owner` element of the WebDAV request, as the client wrote it
        /// (self-contained: the namespaces in scope are declared on it), which lock
        /// discovery shows; absent when none was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lock_owner: Option<String>,
    },
    /// The live lock rooted at `path` with this token was given a new end (`LOCK` with
    /// an `If` header naming it).
    LockRefreshed {
        path: String,
        token_hash: Digest,
        expires_us: u64,
    },
    /// The lock rooted at `path` with this token ended (`UNLOCK`), expired or not.
    LockReleased {
        path: String,
        token_hash: Digest,
    },
    /// An empty folder was made (WebDAV `MKCOL`). `path` ends with `/`. Folders are
    /// otherwise implied by the files under them; this one exists, empty or not,
    /// until a `tree_deleted` or `tree_copied` (a move) removes it. Files of the
    /// Merkle tree are unchanged.
    DirCreated {
        path: String,
    },
    /// A folder and everything under it were deleted in one event (WebDAV `DELETE` of
    /// a collection): atomic on the log, where a file-by-file delete could stop
    /// half-way. `path` ends with `/`. The feeds show each removed file as a `DEL`
    /// line of this event.
    TreeDeleted {
        path: String,
    },
    /// Dead properties of a file or a folder set or removed (WebDAV `PROPPATCH`), in
    /// request order, all or nothing. `path` ends with `/` for a folder. A property is
    /// named by its XML namespace and local name; `xml` is the whole property element
    /// as a client will read it back (absent: the property is removed). Copies and
    /// moves carry a resource's properties along; deleting it deletes them.
    PropsPatched {
        path: String,
        props: Vec<PropChange>,
    },
    /// A file or a folder with everything under it copied or moved (WebDAV `COPY`,
    /// `MOVE`) in one event, so a move is atomic on the log: never half-moved. `from`
    /// and `to` are both files or both folders (ending with `/`). Whatever was at `to`
    /// (a file, or a folder and everything under it) is replaced; with `moved`, `from`
    /// is removed; with `shallow` (a `Depth: 0` copy of a folder) only the empty
    /// folder is made. The feeds show one line per file: `DEL` for each file removed,
    /// `PUT` for each file written.
    TreeCopied {
        from: String,
        to: String,
        moved: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shallow: bool,
    },
    /// The user moved from the homeserver `from` to the homeserver `to`
    /// (`homeserver move`, docs/move.md), by a `pubky-move/1` statement the user signed
    /// (`statement`, and `signature`: hex Ed25519 of its bytes by the user's key), kept
    /// here so that any reader of the log can check it.
    ///
    /// On `from` (`arrived` false) it seals the user: every write after it is refused
    /// with the moved status naming `to`, reads are served for a grace period, and the
    /// user's PKARR record is no longer republished. On `to` (`arrived` true) it marks
    /// the moment the mirror of the user became the primary: every change of the user
    /// before it here is the copy of what `from` held. File event (ordered with the
    /// user's writes, which is what makes the seal exact): one `MOVED` line in the feeds.
    UserMoved {
        #[serde(with = "z32")]
        from: PublicKey,
        #[serde(with = "z32")]
        to: PublicKey,
        arrived: bool,
        statement: String,
        signature: String,
    },
}

/// Which family of subjects an event travels on: the log keeps one subject per user
/// and family, so the per-user optimistic concurrency check of file writes is not
/// disturbed by account activity and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectFamily {
    /// `…ev…`: file events.
    Files,
    /// `…acct…`: account events (signup, sessions, limits).
    Account,
    /// `…op…`: operator events that belong to no user.
    Operator,
}

impl SubjectFamily {
    pub fn token(self) -> &'static str {
        match self {
            SubjectFamily::Files => "ev",
            SubjectFamily::Account => "acct",
            SubjectFamily::Operator => "op",
        }
    }
}

impl Change {
    pub fn family(&self) -> SubjectFamily {
        match self {
            Change::FilePut { .. }
            | Change::FileDeleted { .. }
            | Change::LockAcquired { .. }
            | Change::LockRefreshed { .. }
            | Change::LockReleased { .. }
            | Change::DirCreated { .. }
            | Change::TreeDeleted { .. }
            | Change::TreeCopied { .. }
            | Change::PropsPatched { .. }
            | Change::UserMoved { .. } => SubjectFamily::Files,
            Change::SignupTokenMinted { .. } => SubjectFamily::Operator,
            _ => SubjectFamily::Account,
        }
    }

    /// The name used in the event's `kind` field and in JSON schema file names.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::UserSignedUp { .. } => "user_signed_up",
            Change::GrantSessionCreated { .. } => "grant_session_created",
            Change::GrantRevoked { .. } => "grant_revoked",
            Change::CookieSessionCreated { .. } => "cookie_session_created",
            Change::CookieSessionEnded { .. } => "cookie_session_ended",
            Change::SignupTokenMinted { .. } => "signup_token_minted",
            Change::FilePut { .. } => "file_put",
            Change::FileDeleted { .. } => "file_deleted",
            Change::UserDisabled => "user_disabled",
            Change::UserEnabled => "user_enabled",
            Change::LimitsChanged { .. } => "limits_changed",
            Change::AccountDeleted { .. } => "account_deleted",
            Change::LockAcquired { .. } => "lock_acquired",
            Change::LockRefreshed { .. } => "lock_refreshed",
            Change::LockReleased { .. } => "lock_released",
            Change::DirCreated { .. } => "dir_created",
            Change::TreeDeleted { .. } => "tree_deleted",
            Change::TreeCopied { .. } => "tree_copied",
            Change::PropsPatched { .. } => "props_patched",
            Change::UserMoved { .. } => "user_moved",
        }
    }
}

/// One event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version, always [`EVENT_VERSION`] when written by this crate.
    pub v: u8,
    /// The user the event belongs to (the homeserver's own key for operator events).
    #[serde(with = "z32")]
    pub user: PublicKey,
    /// When the homeserver accepted the request, in microseconds since the Unix epoch.
    pub ts: u64,
    /// Unique per request; also the `Nats-Msg-Id`, which makes retries idempotent.
    pub request_id: String,
    #[serde(flatten)]
    pub change: Change,
    /// Set only on events that record state this homeserver did not receive as a
    /// request of its own (see [`Origin`]); absent on every ordinary event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Where an event's change came from when it is not a request made to this homeserver.
///
/// A reader of the log (an indexer, a mirror, the feed) uses it to tell a state that is
/// being *re-stated* from a state that is *happening*: a re-seeded log repeats accounts
/// and files that existed before it began, and must not be mistaken for a burst of new
/// writes. The tag is the `source` field of the `origin` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Origin {
    /// Re-created from the projections by `homeserver reseed` after the log they were
    /// built from was lost. `previous_log` is that log's identity as the projections
    /// recorded it (stream name, creation time, first event), for the record.
    Reseed { previous_log: String },
    /// Copied from the user's primary homeserver by this homeserver's mirror of the
    /// user (docs/mirror.md): `primary` is that homeserver's key (z32) and
    /// `source_seq` the sequence in the primary's log of the event (or, for a copy
    /// made by diff, of the signed root) the change reproduces.
    Mirror { primary: String, source_seq: u64 },
}

impl Event {
    pub fn new(user: PublicKey, ts: u64, request_id: String, change: Change) -> Self {
        Event {
            v: EVENT_VERSION,
            user,
            ts,
            request_id,
            change,
            origin: None,
        }
    }

    /// The same event, marked as coming from `origin`.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these plain data types cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Keys travel as raw z-base-32 strings, as everywhere else on the Pubky wire (pkarr's
/// own serde form is a byte array).
pub mod z32 {
    use crate::PublicKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_z32())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::try_from(text.as_str()).map_err(serde::de::Error::custom)
    }
}

/// Number of partitions the subjects are spread over. Fixed forever: changing it would
/// move users between partitions and break per-user ordering of existing logs.
pub const PARTITIONS: u16 = 16;

/// The stable partition of a user: BLAKE3 of the raw key, first two bytes, mod
/// [`PARTITIONS`]. Not `std`'s hasher, which is not stable across releases.
pub fn partition_of(user: &PublicKey) -> u16 {
    let digest = blake3::hash(user.as_bytes());
    let bytes = digest.as_bytes();
    u16::from_be_bytes([bytes[0], bytes[1]]) % PARTITIONS
}

/// Which side of a user's data a file event belongs to. It is the last token of the
/// event's subject, so NATS permissions can give a third party `…ev.*.*.pub` and keep
/// private paths (and their hashes and sizes) off its subscriptions entirely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Paths under `/pub/`.
    Public,
    /// Everything else (`/priv/`).
    Private,
}

impl Visibility {
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/pub/") {
            Visibility::Public
        } else {
            Visibility::Private
        }
    }

    pub fn token(self) -> &'static str {
        match self {
            Visibility::Public => "pub",
            Visibility::Private => "priv",
        }
    }
}

impl Change {
    /// Whether the event changes files it does not list (an account deletion, a folder
    /// operation), or is a feed line of its own (a move): the projector writes them as
    /// the event's lines in the feed, and readers of the log that need them read those.
    pub fn has_feed_lines(&self) -> bool {
        matches!(
            self,
            Change::AccountDeleted { .. } | Change::TreeDeleted { .. } | Change::UserMoved { .. }
        )
    }

    /// The visibility of a file event (locks included: a lock on a private path is
    /// private too); `None` for events that are not about a file.
    pub fn visibility(&self) -> Option<Visibility> {
        match self {
            Change::FilePut { path, .. }
            | Change::FileDeleted { path }
            | Change::LockAcquired { path, .. }
            | Change::LockRefreshed { path, .. }
            | Change::LockReleased { path, .. }
            | Change::DirCreated { path }
            | Change::TreeDeleted { path }
            | Change::PropsPatched { path, .. } => Some(Visibility::of_path(path)),
            // Public only when both sides are: a private path never travels on the
            // public subject.
            Change::TreeCopied { from, to, .. } => {
                Some(match (Visibility::of_path(from), Visibility::of_path(to)) {
                    (Visibility::Public, Visibility::Public) => Visibility::Public,
                    _ => Visibility::Private,
                })
            }
            // A move concerns the whole account and anyone may know of it.
            Change::UserMoved { .. } => Some(Visibility::Public),
            _ => None,
        }
    }
}

/// The subject shared by all of one user's events of one family, before the
/// visibility token of file events: `<prefix>.<family>.<partition>.<user z32>`.
fn user_family_subject(prefix: &str, family: SubjectFamily, user: &PublicKey) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        family.token(),
        partition_of(user),
        user.to_z32()
    )
}

/// The subject an event is appended to: `<prefix>.ev.<partition>.<user>.<pub|priv>` for
/// file events, `<prefix>.<acct|op>.<partition>.<user>` for the others.
pub fn subject_of(prefix: &str, event: &Event) -> String {
    let base = user_family_subject(prefix, event.change.family(), &event.user);
    match event.change.visibility() {
        Some(visibility) => format!("{base}.{}", visibility.token()),
        None => base,
    }
}

/// The subjects that together hold one user's events of one family: the filter the
/// per-user expected-sequence check runs against (file events of both visibilities are
/// one sequence, so a write to `/pub/` and one to `/priv/` still serialize).
pub fn concurrency_subject(prefix: &str, family: SubjectFamily, user: &PublicKey) -> String {
    let base = user_family_subject(prefix, family, user);
    match family {
        SubjectFamily::Files => format!("{base}.*"),
        SubjectFamily::Account | SubjectFamily::Operator => base,
    }
}

/// The file events of every user's public paths, for a NATS subscription or consumer
/// filter: `<prefix>.ev.*.*.pub`.
pub fn public_files_filter(prefix: &str) -> String {
    format!(
        "{prefix}.{}.*.*.{}",
        SubjectFamily::Files.token(),
        Visibility::Public.token()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn key(seed: u8) -> PublicKey {
        Keypair::from_secret_key(&[seed; 32]).public_key()
    }

    #[test]
    fn events_round_trip_through_json_with_a_kind_tag() {
        let event = Event::new(
            key(1),
            1_700_000_000_000_000,
            "req-1".into(),
            Change::FilePut {
                path: "/pub/app/x.json".into(),
                content_hash: Digest([7; 32]),
                size: 12,
                content_type: "application/json".into(),
            },
        );
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(json["kind"], "file_put");
        assert_eq!(json["v"], 1);
        assert_eq!(json["user"], key(1).to_z32());
        assert_eq!(json["content_hash"], hex::encode([7u8; 32]));
        assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn events_without_the_later_optional_fields_still_decode() {
        // As written before `cookie_session` and the `pop_nonce`s existed.
        let user = key(1).to_z32();
        let hash = hex::encode([7u8; 32]);
        let signup = format!(
            r#"{{"v":1,"user":"{user}","ts":1,"request_id":"r1","kind":"user_signed_up","signup_token":"{hash}","limits":{{}}}}"#
        );
        let revoked = format!(
            r#"{{"v":1,"user":"{user}","ts":2,"request_id":"r2","kind":"grant_revoked","grant_id":"g"}}"#
        );
        let signup = Event::from_json(signup.as_bytes()).unwrap();
        assert_eq!(
            signup.change,
            Change::UserSignedUp {
                signup_token: Some(Digest([7; 32])),
                limits: UserLimits::default(),
                cookie_session: None,
                pop_nonce: None,
            }
        );
        let revoked = Event::from_json(revoked.as_bytes()).unwrap();
        assert_eq!(
            revoked.change,
            Change::GrantRevoked {
                grant_id: "g".into(),
                pop_nonce: None,
            }
        );
        // Absent stays absent on the way out: no `null`s.
        let json: serde_json::Value = serde_json::from_slice(&signup.to_json()).unwrap();
        assert!(json.get("cookie_session").is_none() && json.get("pop_nonce").is_none());
        let json: serde_json::Value = serde_json::from_slice(&revoked.to_json()).unwrap();
        assert!(json.get("pop_nonce").is_none());
    }

    #[test]
    fn a_cookie_signup_carries_its_session_in_the_one_event() {
        let event = Event::new(
            key(1),
            3,
            "r3".into(),
            Change::UserSignedUp {
                signup_token: None,
                limits: UserLimits::default(),
                cookie_session: Some(CookieSessionStart {
                    secret_hash: Digest([9; 32]),
                    capabilities: "/:rw".into(),
                    auth_token_id: "authtoken:1:x".into(),
                }),
                pop_nonce: None,
            },
        );
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(
            json["cookie_session"]["secret_hash"],
            hex::encode([9u8; 32])
        );
        assert_eq!(json["cookie_session"]["capabilities"], "/:rw");
        assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        // Pinned values: a change here would re-partition every existing log.
        let p = partition_of(&key(1));
        assert!(p < PARTITIONS);
        assert_eq!(p, partition_of(&key(1)));
        let z = key(1).to_z32();
        let put = |path: &str| {
            Event::new(
                key(1),
                1,
                "r".into(),
                Change::FilePut {
                    path: path.into(),
                    content_hash: Digest([0; 32]),
                    size: 0,
                    content_type: "text/plain".into(),
                },
            )
        };
        assert_eq!(
            subject_of("hs", &put("/pub/a")),
            format!("hs.ev.{p}.{z}.pub")
        );
        assert_eq!(
            subject_of("hs", &put("/priv/a")),
            format!("hs.ev.{p}.{z}.priv")
        );
        let disabled = Event::new(key(1), 1, "r".into(), Change::UserDisabled);
        assert_eq!(subject_of("hs", &disabled), format!("hs.acct.{p}.{z}"));
        assert_eq!(
            concurrency_subject("hs", SubjectFamily::Files, &key(1)),
            format!("hs.ev.{p}.{z}.*")
        );
        assert_eq!(public_files_filter("hs"), "hs.ev.*.*.pub");
        let spread: std::collections::HashSet<u16> =
            (0..64).map(|i| partition_of(&key(i))).collect();
        assert!(
            spread.len() > 8,
            "64 keys should spread over many partitions"
        );
    }
}
