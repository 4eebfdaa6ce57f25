//! The published JSON Schemas of the events (`schemas/events/v1/`) against the events
//! this crate actually writes.
//!
//! The schemas are a public interface (third parties read the NATS subjects directly),
//! so this checks both directions: every event we can write validates against its
//! kind's schema and against `event.schema.json`, and the schemas are strict enough to
//! reject malformed events. Every `$ref` is resolved from the files on disk, offline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use hs_domain::event::{Change, CookieSessionStart, Digest, Origin, StorageLimit, UserLimits};
use hs_domain::{Event, Keypair, PublicKey};
use jsonschema::{Draft, Resource, Validator};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The files of `schemas/events/v1/` that describe no single kind.
const COMMON: &str = "common";
const ANY_EVENT: &str = "event";
const SUFFIX: &str = ".schema.json";

/// How many variants `Change` has. [`variant_index`] has no wildcard arm, so adding a
/// variant does not compile until it is listed there, and then the coverage test fails
/// until this number, a sample and a schema file are added too.
const VARIANTS: usize = 20;

fn variant_index(change: &Change) -> usize {
    match change {
        Change::UserSignedUp { .. } => 0,
        Change::GrantSessionCreated { .. } => 1,
        Change::GrantRevoked { .. } => 2,
        Change::CookieSessionCreated { .. } => 3,
        Change::CookieSessionEnded { .. } => 4,
        Change::SignupTokenMinted { .. } => 5,
        Change::FilePut { .. } => 6,
        Change::FileDeleted { .. } => 7,
        Change::UserDisabled => 8,
        Change::UserEnabled => 9,
        Change::LimitsChanged { .. } => 10,
        Change::AccountDeleted { .. } => 11,
        Change::LockAcquired { .. } => 12,
        Change::LockRefreshed { .. } => 13,
        Change::LockReleased { .. } => 14,
        Change::DirCreated { .. } => 15,
        Change::TreeDeleted { .. } => 16,
        Change::TreeCopied { .. } => 17,
        Change::PropsPatched { .. } => 18,
        Change::UserMoved { .. } => 19,
    }
}

fn key(seed: u8) -> PublicKey {
    Keypair::from_secret_key(&[seed; 32]).public_key()
}

fn sha256(text: &str) -> Digest {
    Digest(sha2::Sha256::digest(text.as_bytes()).into())
}

fn blake3(bytes: &[u8]) -> Digest {
    Digest(*blake3::hash(bytes).as_bytes())
}

/// At least one event of every variant, with the optional parts both present and absent.
fn samples() -> Vec<Event> {
    // Seeds of the keys; `PublicKey` is not `Copy`.
    let user = 1;
    let homeserver = 2;
    let all_limits = UserLimits {
        storage: Some(StorageLimit::Megabytes(100)),
        allowed_write_paths: Some(vec!["/pub/app/".into(), "/pub/exact.json".into()]),
        rate_read: Some("1mb/s".into()),
        rate_write: Some("100kb/s".into()),
    };
    let read_only = UserLimits {
        storage: Some(StorageLimit::Unlimited),
        allowed_write_paths: Some(vec![]),
        ..UserLimits::default()
    };
    let changes = [
        (
            user,
            Change::UserSignedUp {
                signup_token: None,
                limits: UserLimits::default(),
                cookie_session: None,
                pop_nonce: None,
            },
        ),
        (
            user,
            Change::UserSignedUp {
                signup_token: Some(sha256("ABCD-EFGH-JKMN")),
                limits: all_limits.clone(),
                cookie_session: None,
                pop_nonce: None,
            },
        ),
        // A cookie signup: the account and its first session in one event.
        (
            user,
            Change::UserSignedUp {
                signup_token: None,
                limits: UserLimits::default(),
                cookie_session: Some(CookieSessionStart {
                    secret_hash: sha256("0123456789ABCDEFGHJKMNPQRT"),
                    capabilities: "/:rw".into(),
                    auth_token_id:
                        "authtoken:1700000000123456:8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo"
                            .into(),
                }),
                pop_nonce: None,
            },
        ),
        (
            user,
            Change::UserSignedUp {
                signup_token: Some(sha256("WXYZ-0123-4567")),
                limits: all_limits.clone(),
                cookie_session: Some(CookieSessionStart {
                    secret_hash: sha256("0123456789ABCDEFGHJKMNPQRV"),
                    capabilities: String::new(),
                    auth_token_id: "t3".into(),
                }),
                pop_nonce: None,
            },
        ),
        // A grant signup: the PoP nonce is used up with it.
        (
            user,
            Change::UserSignedUp {
                signup_token: Some(sha256("ABCD-EFGH-JKMP")),
                limits: UserLimits::default(),
                cookie_session: None,
                pop_nonce: Some("s1gnup-N0nce_x".into()),
            },
        ),
        (
            user,
            Change::GrantSessionCreated {
                grant_id: "AAECAwQFBgcICQoLDA0ODw".into(),
                client_id: "example.app — notes".into(),
                client_key: key(3),
                capabilities: vec!["/pub/example.app/:rw".into(), "/priv/example.app/:r".into()],
                grant_issued_at: 1_700_000_000,
                grant_expires_at: 1_700_086_400,
                token_hash: sha256("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"),
                token_expires_at: 1_700_003_600,
                pop_nonce: "n0nce_-x".into(),
                session_id: Some("0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c".into()),
            },
        ),
        (
            user,
            Change::GrantSessionCreated {
                grant_id: "g".into(),
                client_id: "pubky.signup".into(),
                client_key: key(3),
                capabilities: vec![],
                grant_issued_at: 0,
                grant_expires_at: 300,
                token_hash: sha256("another token"),
                token_expires_at: 3600,
                pop_nonce: "z".into(),
                session_id: None,
            },
        ),
        (
            user,
            Change::GrantRevoked {
                grant_id: "AAECAwQFBgcICQoLDA0ODw".into(),
                pop_nonce: None,
            },
        ),
        // A proof logout: the PoP nonce is used up with it.
        (
            user,
            Change::GrantRevoked {
                grant_id: "g".into(),
                pop_nonce: Some("l0g0ut-n0nce".into()),
            },
        ),
        (
            user,
            Change::CookieSessionCreated {
                secret_hash: sha256("0123456789ABCDEFGHJKMNPQRS"),
                capabilities: "/:rw".into(),
                auth_token_id:
                    "1700000000123456:8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo".into(),
            },
        ),
        (
            user,
            Change::CookieSessionCreated {
                secret_hash: sha256("ZYXWVTSRQPNMKJHGFEDCBA9876"),
                capabilities: String::new(),
                auth_token_id: "t".into(),
            },
        ),
        (
            user,
            Change::CookieSessionCreated {
                secret_hash: sha256("ZYXWVTSRQPNMKJHGFEDCBA9877"),
                capabilities: "/pub/app/:rw,/priv/app/data.json:r,/pub/other/:e".into(),
                auth_token_id: "t2".into(),
            },
        ),
        (
            user,
            Change::CookieSessionEnded {
                secret_hash: sha256("0123456789ABCDEFGHJKMNPQRS"),
            },
        ),
        (
            homeserver,
            Change::SignupTokenMinted {
                token_hash: sha256("ABCD-EFGH-JKMN"),
                limits: UserLimits::default(),
            },
        ),
        (
            homeserver,
            Change::SignupTokenMinted {
                token_hash: sha256("WXYZ-0123-4567"),
                limits: read_only.clone(),
            },
        ),
        (
            user,
            Change::FilePut {
                path: "/pub/example.app/posts/0001.json".into(),
                content_hash: blake3(br#"{"text":"hello"}"#),
                size: 16,
                content_type: "application/json".into(),
            },
        ),
        (
            user,
            Change::FilePut {
                path: "/priv/example.app/ünïcödé file%20.bin".into(),
                content_hash: blake3(b""),
                size: 0,
                content_type: "application/octet-stream".into(),
            },
        ),
        (
            user,
            Change::FileDeleted {
                path: "/pub/example.app/posts/0001.json".into(),
            },
        ),
        (user, Change::UserDisabled),
        (user, Change::UserEnabled),
        (user, Change::LimitsChanged { limits: all_limits }),
        (user, Change::LimitsChanged { limits: read_only }),
        (
            user,
            Change::LimitsChanged {
                limits: UserLimits::default(),
            },
        ),
        (user, Change::AccountDeleted { pop_nonce: None }),
        (
            user,
            Change::AccountDeleted {
                pop_nonce: Some("Xq3vFZ7n2kQpR8sT1uVwYg".into()),
            },
        ),
        (
            user,
            Change::LockAcquired {
                path: "/pub/example.app/doc.txt".into(),
                token_hash: sha256("opaquelocktoken:0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c"),
                expires_us: 1_700_000_030_123_456,
                shared: false,
                deep: false,
                lock_owner: None,
            },
        ),
        (
            user,
            Change::LockAcquired {
                path: "/pub/example.app/albums/".into(),
                token_hash: sha256("opaquelocktoken:7c1d9e2a-3b4f-4a5e-8d6c-1e2f3a4b5c6d"),
                expires_us: 1_700_000_030_123_456,
                shared: true,
                deep: true,
                lock_owner: Some(
                    r#"<D:owner xmlns:D="DAV:"><D:href>mailto:alice@example.org</D:href></D:owner>"#
                        .into(),
                ),
            },
        ),
        (
            user,
            Change::LockRefreshed {
                path: "/priv/example.app/ünïcödé.txt".into(),
                token_hash: sha256("opaquelocktoken:0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c"),
                expires_us: 1_700_000_600_123_456,
            },
        ),
        (
            user,
            Change::LockRefreshed {
                path: "/pub/example.app/albums/".into(),
                token_hash: sha256("opaquelocktoken:7c1d9e2a-3b4f-4a5e-8d6c-1e2f3a4b5c6d"),
                expires_us: 1_700_000_600_123_456,
            },
        ),
        (
            user,
            Change::LockReleased {
                path: "/pub/example.app/doc.txt".into(),
                token_hash: sha256("opaquelocktoken:0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c"),
            },
        ),
        (
            user,
            Change::LockReleased {
                path: "/pub/example.app/albums/".into(),
                token_hash: sha256("opaquelocktoken:7c1d9e2a-3b4f-4a5e-8d6c-1e2f3a4b5c6d"),
            },
        ),
        (
            user,
            Change::DirCreated {
                path: "/pub/example.app/albums/".into(),
            },
        ),
        (
            user,
            Change::TreeDeleted {
                path: "/priv/example.app/drafts/".into(),
            },
        ),
        (
            user,
            Change::TreeCopied {
                from: "/pub/example.app/albums/".into(),
                to: "/pub/example.app/archive/".into(),
                moved: true,
                shallow: false,
            },
        ),
        (
            user,
            Change::PropsPatched {
                path: "/pub/example.app/doc.txt".into(),
                props: vec![
                    hs_domain::event::PropChange {
                        ns: "http://example.com/ns".into(),
                        name: "colour".into(),
                        xml: Some(
                            r#"<R:colour xmlns:R="http://example.com/ns">blue</R:colour>"#.into(),
                        ),
                    },
                    hs_domain::event::PropChange {
                        ns: "http://example.com/ns".into(),
                        name: "size".into(),
                        xml: None,
                    },
                ],
            },
        ),
        (
            user,
            Change::UserMoved {
                from: key(homeserver),
                to: key(3),
                arrived: false,
                statement: "pubky-move/1\nuser:u\nfrom:a\nto:b\ntime:1\n".into(),
                signature: "ab".repeat(64),
            },
        ),
        (
            user,
            Change::UserMoved {
                from: key(homeserver),
                to: key(3),
                arrived: true,
                statement: "pubky-move/1\nuser:u\nfrom:a\nto:b\ntime:1\n".into(),
                signature: "cd".repeat(64),
            },
        ),
    ];
    changes
        .into_iter()
        .enumerate()
        .map(|(i, (owner, change))| {
            let event = Event::new(
                key(owner),
                1_700_000_000_123_456 + i as u64,
                format!("0192f0c4-7b1e-7c3a-9d2e-{i:012x}"),
                change,
            );
            // Every third sample as a re-seeded log writes it and every fifth as a mirror
            // copies it, so each kind is checked with and without an origin somewhere.
            if i % 3 == 2 {
                event.with_origin(Origin::Reseed {
                    previous_log: "HS_EVENTS created 2026-12-01T10:00:00Z first 1:0192f0c4".into(),
                })
            } else if i % 5 == 4 {
                event.with_origin(Origin::Mirror {
                    primary: "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo".into(),
                    source_seq: 4242,
                })
            } else {
                event
            }
        })
        .collect()
}

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events/v1")
}

struct Schemas {
    /// File stem (`file_put`, `common`, …) to the parsed file.
    files: BTreeMap<String, Value>,
    /// File stem to its validator; `common` has none (it is only referenced).
    validators: BTreeMap<String, Validator>,
}

impl Schemas {
    fn kinds(&self) -> BTreeSet<String> {
        self.files
            .keys()
            .filter(|stem| *stem != COMMON && *stem != ANY_EVENT)
            .cloned()
            .collect()
    }

    fn validator(&self, stem: &str) -> &Validator {
        self.validators
            .get(stem)
            .unwrap_or_else(|| panic!("no schema file {stem}{SUFFIX}"))
    }
}

/// Reads every schema file once and builds the validators, each with every file
/// registered under its `$id`, so relative `$ref`s resolve without any network or
/// file-system retrieval (the crate is built without those features).
fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(schema_dir()).expect("schemas/events/v1 exists") {
            let path = entry.expect("readable directory").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let stem = name
                .strip_suffix(SUFFIX)
                .unwrap_or_else(|| panic!("{name}: every file here must end in {SUFFIX}"));
            let text = std::fs::read_to_string(&path).expect("readable schema");
            let schema: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            files.insert(stem.to_owned(), schema);
        }
        let validators = files
            .iter()
            .filter(|(stem, _)| *stem != COMMON)
            .map(|(stem, schema)| {
                let mut options = jsonschema::options().with_draft(Draft::Draft202012);
                for other in files.values() {
                    let id = other["$id"].as_str().expect("every schema has an $id");
                    let resource = Resource::from_contents(other.clone())
                        .unwrap_or_else(|e| panic!("{id}: {e}"));
                    options = options.with_resource(id, resource);
                }
                let validator = options
                    .build(schema)
                    .unwrap_or_else(|e| panic!("{stem}{SUFFIX} does not compile: {e}"));
                (stem.clone(), validator)
            })
            .collect();
        Schemas { files, validators }
    })
}

fn to_value(event: &Event) -> Value {
    serde_json::from_slice(&event.to_json()).expect("events serialize to JSON")
}

/// The validation errors of `instance`, one line each.
fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("at {}: {e}", e.instance_path))
        .collect()
}

#[test]
fn every_variant_has_a_sample_and_every_sample_kind_a_schema() {
    let samples = samples();
    let covered: BTreeSet<usize> = samples.iter().map(|e| variant_index(&e.change)).collect();
    assert_eq!(
        covered,
        (0..VARIANTS).collect(),
        "every Change variant needs at least one sample"
    );

    let sample_kinds: BTreeSet<String> =
        samples.iter().map(|e| e.change.kind().to_owned()).collect();
    let schema_kinds = schemas().kinds();
    let without_schema: Vec<_> = sample_kinds.difference(&schema_kinds).collect();
    let without_sample: Vec<_> = schema_kinds.difference(&sample_kinds).collect();
    assert!(
        without_schema.is_empty(),
        "kinds without a schema file: {without_schema:?}"
    );
    assert!(
        without_sample.is_empty(),
        "schema files without a sample: {without_sample:?}"
    );
    assert_eq!(schema_kinds.len(), VARIANTS);
}

#[test]
fn every_sample_validates_against_its_kind_and_the_union() {
    let schemas = schemas();
    for event in samples() {
        let value = to_value(&event);
        let kind = event.change.kind();
        assert_eq!(value["kind"], kind);
        for stem in [kind, ANY_EVENT] {
            let problems = errors(schemas.validator(stem), &value);
            assert!(
                problems.is_empty(),
                "{stem}{SUFFIX} rejects a real event {value}:\n{}",
                problems.join("\n")
            );
        }
        // A kind's schema accepts no other kind (the union relies on this for `oneOf`).
        for other in schemas.kinds() {
            if other != kind {
                assert!(
                    !schemas.validator(&other).is_valid(&value),
                    "{other}{SUFFIX} accepts a {kind} event"
                );
            }
        }
        assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
    }
}

#[test]
fn the_files_are_well_formed_2020_12_schemas_that_say_where_each_kind_travels() {
    let schemas = schemas();
    for (stem, schema) in &schemas.files {
        jsonschema::draft202012::meta::validate(schema)
            .unwrap_or_else(|e| panic!("{stem}{SUFFIX} is not a valid 2020-12 schema: {e}"));
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let id = schema["$id"].as_str().unwrap();
        assert!(
            id.ends_with(&format!("/{stem}{SUFFIX}")),
            "{stem}{SUFFIX}: $id {id} does not end with the file name"
        );
    }

    for event in samples() {
        let kind = event.change.kind();
        let schema = &schemas.files[kind];
        assert_eq!(schema["properties"]["kind"]["const"], kind);
        assert_eq!(schema["additionalProperties"], false, "{kind}");
        let subject = format!("<prefix>.{}.<partition>.", event.change.family().token());
        let description = schema["description"].as_str().unwrap();
        assert!(
            description.contains(&subject),
            "{kind}{SUFFIX}: the description should name its subject {subject}…"
        );
    }

    let union: BTreeSet<String> = schemas.files[ANY_EVENT]["oneOf"]
        .as_array()
        .expect("event.schema.json is a oneOf")
        .iter()
        .map(|branch| {
            let target = branch["$ref"].as_str().expect("each branch is a $ref");
            target.strip_suffix(SUFFIX).unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        union,
        schemas.kinds(),
        "event.schema.json must list every kind"
    );
}

/// Every property, `$defs` entry and array item schema carries a non-empty
/// `description`: the schemas are the documentation of the public interface.
#[test]
fn every_field_is_documented() {
    fn walk(node: &Value, at: &str, missing: &mut Vec<String>) {
        let Some(object) = node.as_object() else {
            return;
        };
        for (keyword, child) in object {
            let here = format!("{at}/{keyword}");
            match (keyword.as_str(), child) {
                ("properties" | "$defs", Value::Object(entries)) => {
                    for (name, entry) in entries {
                        let path = format!("{here}/{name}");
                        let described = entry["description"]
                            .as_str()
                            .is_some_and(|text| !text.trim().is_empty());
                        if !described {
                            missing.push(path.clone());
                        }
                        walk(entry, &path, missing);
                    }
                }
                ("items", entry @ Value::Object(_)) => {
                    if entry["description"].as_str().is_none() {
                        missing.push(here.clone());
                    }
                    walk(entry, &here, missing);
                }
                ("oneOf" | "anyOf" | "allOf", Value::Array(branches)) => {
                    for (i, branch) in branches.iter().enumerate() {
                        walk(branch, &format!("{here}/{i}"), missing);
                    }
                }
                _ => {}
            }
        }
    }

    let mut missing = Vec::new();
    for (stem, schema) in &schemas().files {
        if schema["description"].as_str().is_none() {
            missing.push(format!("{stem}{SUFFIX}#"));
        }
        walk(schema, &format!("{stem}{SUFFIX}#"), &mut missing);
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

/// A change to one sample that makes it invalid.
struct Tamper {
    what: &'static str,
    apply: fn(&mut serde_json::Map<String, Value>) -> bool,
}

/// Sets `field` if the event has it; false when it does not (the tamper does not apply).
fn replace(event: &mut serde_json::Map<String, Value>, field: &str, value: Value) -> bool {
    match event.get_mut(field) {
        Some(slot) => {
            *slot = value;
            true
        }
        None => false,
    }
}

const DIGEST_FIELDS: [&str; 4] = ["signup_token", "token_hash", "secret_hash", "content_hash"];

fn tamper_digests(event: &mut serde_json::Map<String, Value>, f: fn(&str) -> String) -> bool {
    let mut changed = false;
    for field in DIGEST_FIELDS {
        if let Some(Value::String(hex)) = event.get_mut(field) {
            *hex = f(hex);
            changed = true;
        }
    }
    changed
}

/// Whether the event's `path` has one shape only: a file, or (for folder events) a
/// folder. `props_patched` and the lock events name either.
fn names_files_only(e: &serde_json::Map<String, Value>) -> bool {
    !matches!(
        e.get("kind").and_then(Value::as_str),
        Some("props_patched" | "lock_acquired" | "lock_refreshed" | "lock_released")
    )
}

fn tampers() -> Vec<Tamper> {
    vec![
        Tamper {
            what: "v is 2",
            apply: |e| replace(e, "v", json!(2)),
        },
        Tamper {
            what: "v is the string \"1\"",
            apply: |e| replace(e, "v", json!("1")),
        },
        Tamper {
            what: "v is missing",
            apply: |e| e.remove("v").is_some(),
        },
        Tamper {
            what: "user contains `l`, not in the z32 alphabet",
            apply: |e| {
                let user = e["user"].as_str().unwrap();
                let bad = format!("l{}", &user[1..]);
                replace(e, "user", json!(bad))
            },
        },
        Tamper {
            what: "user in upper case",
            apply: |e| {
                let bad = e["user"].as_str().unwrap().to_uppercase();
                replace(e, "user", json!(bad))
            },
        },
        Tamper {
            what: "user one character short",
            apply: |e| {
                let user = e["user"].as_str().unwrap();
                let bad = user[1..].to_owned();
                replace(e, "user", json!(bad))
            },
        },
        Tamper {
            what: "user as a byte array (pkarr's own serde form)",
            apply: |e| replace(e, "user", json!(vec![1u8; 32])),
        },
        Tamper {
            what: "an extra top-level property",
            apply: |e| e.insert("extra".into(), json!(true)).is_none(),
        },
        Tamper {
            what: "an extra property in limits",
            apply: |e| match e.get_mut("limits") {
                Some(Value::Object(limits)) => limits.insert("extra".into(), json!(1)).is_none(),
                _ => false,
            },
        },
        Tamper {
            what: "ts is negative",
            apply: |e| replace(e, "ts", json!(-1)),
        },
        Tamper {
            what: "ts is fractional",
            apply: |e| replace(e, "ts", json!(1.5)),
        },
        Tamper {
            what: "request_id is missing",
            apply: |e| e.remove("request_id").is_some(),
        },
        Tamper {
            what: "request_id is empty",
            apply: |e| replace(e, "request_id", json!("")),
        },
        Tamper {
            what: "kind is unknown",
            apply: |e| replace(e, "kind", json!("user_deleted")),
        },
        Tamper {
            what: "a digest in upper-case hex",
            apply: |e| tamper_digests(e, str::to_uppercase),
        },
        Tamper {
            what: "a digest one hex digit short",
            apply: |e| tamper_digests(e, |hex| hex[1..].to_owned()),
        },
        Tamper {
            what: "a digest in base64",
            apply: |e| tamper_digests(e, |_| "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=".into()),
        },
        Tamper {
            what: "path without the leading slash",
            apply: |e| match e.get("path").and_then(Value::as_str) {
                Some(path) => {
                    let bad = path[1..].to_owned();
                    replace(e, "path", json!(bad))
                }
                None => false,
            },
        },
        Tamper {
            what: "path outside /pub/ and /priv/",
            apply: |e| e.contains_key("path") && replace(e, "path", json!("/other/x.json")),
        },
        Tamper {
            what: "directory-shaped path",
            // props_patched and the lock events name files and folders alike.
            apply: |e| {
                names_files_only(e)
                    && e.get("path")
                        .and_then(Value::as_str)
                        .is_some_and(|path| !path.ends_with('/'))
                    && replace(e, "path", json!("/pub/app/"))
            },
        },
        Tamper {
            what: "file-shaped folder path",
            apply: |e| {
                names_files_only(e)
                    && e.get("path")
                        .and_then(Value::as_str)
                        .is_some_and(|path| path.ends_with('/'))
                    && replace(e, "path", json!("/pub/app/x.json"))
            },
        },
        Tamper {
            what: "path with an empty segment",
            apply: |e| e.contains_key("path") && replace(e, "path", json!("/pub//x")),
        },
        Tamper {
            what: "client_key not z32",
            apply: |e| {
                e.contains_key("client_key") && replace(e, "client_key", json!("0".repeat(52)))
            },
        },
        Tamper {
            what: "grant_id longer than 22 characters",
            apply: |e| e.contains_key("grant_id") && replace(e, "grant_id", json!("a".repeat(23))),
        },
        Tamper {
            what: "a grant capability without actions",
            apply: |e| {
                e.contains_key("client_key") && replace(e, "capabilities", json!(["/pub/app/:"]))
            },
        },
        Tamper {
            what: "a cookie capability with an unknown action",
            apply: |e| {
                e.contains_key("auth_token_id")
                    && replace(e, "capabilities", json!("/:rw,/pub/app/:x"))
            },
        },
        Tamper {
            what: "pop_nonce not base64url",
            apply: |e| e.contains_key("pop_nonce") && replace(e, "pop_nonce", json!("n0nce!")),
        },
        Tamper {
            what: "pop_nonce is null",
            apply: |e| e.contains_key("pop_nonce") && replace(e, "pop_nonce", json!(null)),
        },
        Tamper {
            what: "session_id empty",
            apply: |e| e.contains_key("session_id") && replace(e, "session_id", json!("")),
        },
        Tamper {
            what: "session_id longer than 36 characters",
            apply: |e| {
                e.contains_key("session_id") && replace(e, "session_id", json!("s".repeat(37)))
            },
        },
        Tamper {
            what: "an extra property in cookie_session",
            apply: |e| match e.get_mut("cookie_session") {
                Some(Value::Object(session)) => session.insert("extra".into(), json!(1)).is_none(),
                _ => false,
            },
        },
        Tamper {
            what: "cookie_session without its auth_token_id",
            apply: |e| match e.get_mut("cookie_session") {
                Some(Value::Object(session)) => session.remove("auth_token_id").is_some(),
                _ => false,
            },
        },
        Tamper {
            what: "a cookie_session secret_hash in upper-case hex",
            apply: |e| match e.get_mut("cookie_session") {
                Some(Value::Object(session)) => match session.get_mut("secret_hash") {
                    Some(Value::String(hex)) => {
                        *hex = hex.to_uppercase();
                        true
                    }
                    _ => false,
                },
                _ => false,
            },
        },
        Tamper {
            what: "a cookie_session capability with an unknown action",
            apply: |e| match e.get_mut("cookie_session") {
                Some(Value::Object(session)) => {
                    session.insert("capabilities".into(), json!("/:rw,/pub/app/:x"));
                    true
                }
                _ => false,
            },
        },
        Tamper {
            what: "shared is not a boolean",
            apply: |e| e.contains_key("shared") && replace(e, "shared", json!("yes")),
        },
        Tamper {
            what: "lock_owner is not a string",
            apply: |e| e.contains_key("lock_owner") && replace(e, "lock_owner", json!(["x"])),
        },
        Tamper {
            what: "a negative size",
            apply: |e| replace(e, "size", json!(-1)),
        },
        Tamper {
            what: "a storage limit of the wrong shape",
            apply: |e| match e.get_mut("limits") {
                Some(Value::Object(limits)) => {
                    limits.insert("storage".into(), json!({"gigabytes": 1}));
                    true
                }
                _ => false,
            },
        },
    ]
}

#[test]
fn tampered_samples_are_rejected() {
    let schemas = schemas();
    // Tamper -> kinds it applied to, so no check silently applies to nothing.
    let mut applied: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for event in samples() {
        let kind = event.change.kind();
        let Value::Object(original) = to_value(&event) else {
            panic!("an event is a JSON object");
        };
        for tamper in tampers() {
            let mut tampered = original.clone();
            if !(tamper.apply)(&mut tampered) {
                continue;
            }
            applied.entry(tamper.what).or_default().insert(kind);
            let tampered = Value::Object(tampered);
            for stem in [kind, ANY_EVENT] {
                assert!(
                    !schemas.validator(stem).is_valid(&tampered),
                    "{stem}{SUFFIX} accepts a {kind} event with {}: {tampered}",
                    tamper.what
                );
            }
        }
    }

    let all_kinds = schemas.kinds();
    fn kinds(list: &[&'static str]) -> BTreeSet<&'static str> {
        list.iter().copied().collect()
    }
    for tamper in tampers() {
        let got = applied.get(tamper.what).cloned().unwrap_or_default();
        let expected: BTreeSet<&str> = match tamper.what {
            "an extra property in limits" | "a storage limit of the wrong shape" => {
                kinds(&["user_signed_up", "signup_token_minted", "limits_changed"])
            }
            "a digest in upper-case hex"
            | "a digest one hex digit short"
            | "a digest in base64" => kinds(&[
                "user_signed_up",
                "grant_session_created",
                "cookie_session_created",
                "cookie_session_ended",
                "signup_token_minted",
                "file_put",
                "lock_acquired",
                "lock_refreshed",
                "lock_released",
            ]),
            "path without the leading slash"
            | "path outside /pub/ and /priv/"
            | "path with an empty segment" => kinds(&[
                "file_put",
                "file_deleted",
                "lock_acquired",
                "lock_refreshed",
                "lock_released",
                "dir_created",
                "tree_deleted",
                "props_patched",
            ]),
            "directory-shaped path" => kinds(&["file_put", "file_deleted"]),
            "shared is not a boolean" | "lock_owner is not a string" => kinds(&["lock_acquired"]),
            "file-shaped folder path" => kinds(&["dir_created", "tree_deleted"]),
            "client_key not z32" | "a grant capability without actions" => {
                kinds(&["grant_session_created"])
            }
            "grant_id longer than 22 characters" => {
                kinds(&["grant_session_created", "grant_revoked"])
            }
            "a cookie capability with an unknown action" => kinds(&["cookie_session_created"]),
            "session_id empty" | "session_id longer than 36 characters" => {
                kinds(&["grant_session_created"])
            }
            "pop_nonce not base64url" | "pop_nonce is null" => kinds(&[
                "user_signed_up",
                "grant_session_created",
                "grant_revoked",
                "account_deleted",
            ]),
            "an extra property in cookie_session"
            | "cookie_session without its auth_token_id"
            | "a cookie_session secret_hash in upper-case hex"
            | "a cookie_session capability with an unknown action" => kinds(&["user_signed_up"]),
            "a negative size" => kinds(&["file_put"]),
            _ => all_kinds.iter().map(String::as_str).collect(),
        };
        assert_eq!(got, expected, "kinds tampered with {}", tamper.what);
    }
}
