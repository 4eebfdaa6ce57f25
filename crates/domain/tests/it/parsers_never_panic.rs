//! Property tests: the parsers that face raw request bytes never panic, and a valid
//! token or JWS stays valid only while it is unchanged.
//!
//! Each property runs 50 000 generated inputs, except the one that signs and verifies
//! two JWS per case, which runs 10 000; every property prints how many ran (see them
//! with `--nocapture`). `PROPTEST_CASES` overrides the 50 000 (the signing property
//! takes a fifth of it). About 10 s of CPU in all, most of it Ed25519.

use std::cell::Cell;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hs_domain::{
    auth_token::AuthToken,
    jws::{self, CompactJws, GRANT_TYP, POP_TYP, check_signup_grant, verify_grant, verify_pop},
    merkle,
    session_record::CookieSessionRecord,
    signup_token::SignupToken,
};
use pkarr::Keypair;
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{Value, json};

const NOW: u64 = 1_760_000_000;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

/// Runs `check` on `cases()` inputs and reports how many actually ran.
fn run<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value)) {
    run_n(name, cases(), strategy, check);
}

fn run_n<S: Strategy>(name: &str, cases: u32, strategy: S, check: impl Fn(S::Value)) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let ran = Cell::new(0u32);
    TestRunner::new(config)
        .run(&strategy, |value| {
            check(value);
            ran.set(ran.get() + 1);
            Ok(())
        })
        .unwrap();
    eprintln!("{name}: {} cases", ran.get());
    assert!(ran.get() >= cases);
}

/// Deriving a public key is the expensive part of signing; derive each one once.
fn key(seed: u8) -> &'static Keypair {
    static KEYS: std::sync::LazyLock<Vec<Keypair>> =
        std::sync::LazyLock::new(|| (0..4).map(|s| Keypair::from_secret_key(&[s; 32])).collect());
    &KEYS[usize::from(seed)]
}

fn cap_ok(cap: &str) -> bool {
    cap.starts_with('/') && cap.contains(':')
}

fn sign(keypair: &Keypair, header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = keypair.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn valid_grant() -> (jws::Grant, String) {
    let claims = json!({
        "iss": key(1).to_z32(), "client_id": "pubky.signup", "caps": ["/:rw"],
        "cnf": key(2).to_z32(), "jti": "AAAAAAAAAAAAAAAAAAAAAA", "iat": NOW, "exp": NOW + 300,
    });
    let header = json!({"alg": "EdDSA", "typ": GRANT_TYP}).to_string();
    let compact = sign(key(1), header.as_bytes(), claims.to_string().as_bytes());
    (verify_grant(&compact, NOW, cap_ok).unwrap(), compact)
}

/// Replaces characters of `original` at the given positions.
fn mutate(original: &str, edits: &[(usize, char)]) -> String {
    let mut chars: Vec<char> = original.chars().collect();
    for &(index, c) in edits {
        let len = chars.len();
        chars[index % len] = c;
    }
    chars.into_iter().collect()
}

#[test]
fn auth_token_parser_never_panics_on_arbitrary_bytes() {
    run(
        "auth token, arbitrary bytes",
        vec(any::<u8>(), 0..256),
        |bytes| {
            let _ = AuthToken::verify(&bytes, NOW * 1_000_000);
            let _ = AuthToken::verify_with(&bytes, u64::MAX, |c| c.len() % 2 == 0);
        },
    );
}

#[test]
fn auth_token_is_valid_only_while_unchanged() {
    let keypair = pubky_common::crypto::Keypair::random();
    let token = pubky_common::auth::AuthToken::sign(
        &keypair,
        "/pub/app/:rw"
            .parse::<pubky_common::capabilities::Capabilities>()
            .unwrap(),
    );
    let original = token.serialize();
    let now = token.timestamp().as_u64();
    let edits = vec((0..original.len(), any::<u8>()), 0..4);
    let strategy = (edits, 0..=original.len() + 4, vec(any::<u8>(), 0..4));
    run("auth token, mutated", strategy, |(edits, cut, tail)| {
        let mut bytes = original.clone();
        for (index, value) in edits {
            bytes[index] = value;
        }
        bytes.truncate(cut);
        bytes.extend(tail);
        let accepted = AuthToken::verify(&bytes, now).is_ok();
        assert_eq!(accepted, bytes == original, "{bytes:?}");
    });
}

#[test]
fn jws_parsers_never_panic_on_arbitrary_strings() {
    let (grant, _) = valid_grant();
    let homeserver = key(3).public_key();
    let strategy = prop_oneof![".{0,200}", "[A-Za-z0-9_=.-]{0,300}"];
    run("jws, arbitrary strings", strategy, |text: String| {
        let _ = verify_grant(&text, NOW, cap_ok);
        let _ = verify_pop(&text, &grant, &homeserver, NOW);
        let _ = CompactJws::parse(&text);
        let _ = serde_json::from_str::<jws::GrantRequest>(&text);
        let _ = SignupToken::parse(&text);
    });
}

/// Well-formed, correctly or wrongly signed JWS with arbitrary claim values, so the
/// claim checks after the signature are reached too.
#[test]
fn jws_pipeline_never_panics_on_arbitrary_claims() {
    let (good_grant, _) = valid_grant();
    let homeserver = key(3).public_key();
    let text = || prop_oneof![Just(String::new()), "[A-Za-z0-9_.:/-]{0,30}", ".{0,30}"];
    let number = || {
        prop_oneof![
            Just(json!(NOW)),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from)
        ]
    };
    let keyish = || prop_oneof![(1..4u8).prop_map(|s| key(s).to_z32()), text()];
    let header = prop_oneof![
        Just(json!({"alg": "EdDSA", "typ": GRANT_TYP})),
        Just(json!({"alg": "EdDSA", "typ": POP_TYP})),
        text().prop_map(|typ| json!({"alg": "EdDSA", "typ": typ})),
        text().prop_map(|alg| json!({"alg": alg})),
    ];
    let grant_claims = (keyish(), text(), vec(text(), 0..3), keyish(), text(), number(), number())
        .prop_map(|(iss, client_id, caps, cnf, jti, iat, exp)| {
            json!({"iss": iss, "client_id": client_id, "caps": caps, "cnf": cnf, "jti": jti, "iat": iat, "exp": exp})
        });
    let pop_claims = (keyish(), text(), text(), number()).prop_map(
        |(aud, gid, nonce, iat)| json!({"aud": aud, "gid": gid, "nonce": nonce, "iat": iat}),
    );
    let signer = 0..4u8;
    let strategy = (
        header.clone(),
        grant_claims,
        signer.clone(),
        header,
        pop_claims,
        signer,
    );
    run_n(
        "jws, arbitrary claims",
        cases() / 5,
        strategy,
        |(gh, gc, gs, ph, pc, ps)| {
            let grant = sign(
                key(gs),
                gh.to_string().as_bytes(),
                gc.to_string().as_bytes(),
            );
            let pop = sign(
                key(ps),
                ph.to_string().as_bytes(),
                pc.to_string().as_bytes(),
            );
            let verified = verify_grant(&grant, NOW, cap_ok);
            if let Ok(verified) = &verified {
                assert_eq!(
                    verified.iss,
                    key(gs).public_key(),
                    "accepted a grant not signed by iss"
                );
                assert!(verified.exp > NOW);
                let _ = check_signup_grant(verified, NOW, |c| c == jws::ROOT_CAPABILITY);
            }
            let against = verified.as_ref().unwrap_or(&good_grant);
            if let Ok(pop) = verify_pop(&pop, against, &homeserver, NOW) {
                assert_eq!(
                    against.cnf,
                    key(ps).public_key(),
                    "accepted a PoP not signed by cnf"
                );
                assert_eq!(pop.gid, against.jti);
                assert!(pop.iat.abs_diff(NOW) <= jws::POP_MAX_AGE_SECS);
            }
        },
    );
}

#[test]
fn grant_is_valid_only_while_unchanged() {
    let (_, original) = valid_grant();
    let alphabet: Vec<char> = "AZaz09-_.=/+ é".chars().collect();
    let edit = (any::<usize>(), proptest::sample::select(alphabet));
    run("grant, mutated", vec(edit, 1..4), |edits| {
        let text = mutate(&original, &edits);
        assert_eq!(
            verify_grant(&text, NOW, cap_ok).is_ok(),
            text == original,
            "{text}"
        );
    });
}

#[test]
fn session_record_decoder_never_panics() {
    run(
        "session record, arbitrary bytes",
        vec(any::<u8>(), 0..128),
        |bytes| {
            if let Ok(record) = CookieSessionRecord::decode(&bytes) {
                assert_eq!(CookieSessionRecord::decode(&record.encode()), Ok(record));
            }
        },
    );
}

#[test]
fn generated_signup_tokens_always_parse() {
    run("signup token, generated", any::<[u8; 7]>(), |random| {
        let token = SignupToken::generate(random);
        let text = token.as_str();
        assert_eq!(text.len(), 14);
        assert_eq!((&text[4..5], &text[9..10]), ("-", "-"));
        assert!(
            text.bytes()
                .all(|b| b == b'-' || b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))
        );
        assert_eq!(SignupToken::parse(text), Ok(token));
    });
}

/// A tree of `size` entries and every node on the way to each of its keys.
fn sample_tree(size: usize) -> (merkle::MemStore, Option<merkle::Hash>, Vec<String>) {
    let entries: Vec<(String, merkle::Hash)> = (0..size)
        .map(|i| {
            let key = format!("/pub/fuzz/{i:04}");
            let value = *blake3::hash(key.as_bytes()).as_bytes();
            (key, value)
        })
        .collect();
    let mut store = merkle::MemStore::default();
    let root = merkle::build(&entries, &mut store);
    (
        store,
        root,
        entries.into_iter().map(|(key, _)| key).collect(),
    )
}

#[test]
fn merkle_node_decoder_never_panics_and_accepts_one_encoding_only() {
    let (store, root, keys) = sample_tree(300);
    let encodings: Vec<Vec<u8>> = keys
        .iter()
        .flat_map(|key| merkle::prove(&store, root, key).expect("proof").nodes)
        .collect();
    let check = |bytes: &[u8]| {
        if let Ok(node) = merkle::Node::decode(bytes) {
            assert_eq!(node.encode(), bytes, "a node has exactly one encoding");
        }
    };
    run(
        "merkle node, arbitrary bytes",
        vec(any::<u8>(), 0..256),
        |bytes| check(&bytes),
    );
    run(
        "merkle node, a valid one with bytes changed",
        (0..encodings.len(), vec((any::<usize>(), any::<u8>()), 1..4)),
        |(which, edits)| {
            let mut bytes = encodings[which].clone();
            for (at, byte) in edits {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            check(&bytes)
        },
    );
}

#[test]
fn merkle_proof_verifier_never_panics_and_a_changed_proof_proves_nothing_else() {
    let (store, root, keys) = sample_tree(300);
    run(
        "merkle proof, nodes changed, dropped or repeated",
        (
            0..keys.len(),
            vec((any::<usize>(), any::<usize>(), any::<u8>(), 0u8..4), 1..4),
            any::<bool>(),
        ),
        |(which, edits, absent)| {
            // Half the cases ask for a key the tree does not hold (proof of absence).
            let key = if absent {
                format!("{}~", keys[which])
            } else {
                keys[which].clone()
            };
            let proof = merkle::prove(&store, root, &key).expect("proof");
            let truth = merkle::verify(root, &key, &proof).expect("an honest proof");
            let mut nodes = proof.nodes.clone();
            for (node, at, byte, kind) in edits {
                if nodes.is_empty() {
                    break;
                }
                let node = node % nodes.len();
                match kind {
                    0 => {
                        let len = nodes[node].len();
                        if len > 0 {
                            nodes[node][at % len] = byte;
                        }
                    }
                    1 => {
                        nodes.remove(node);
                    }
                    2 => {
                        let copy = nodes[node].clone();
                        nodes.insert(node, copy);
                    }
                    _ => {
                        let keep = at % (nodes[node].len() + 1);
                        nodes[node].truncate(keep);
                    }
                }
            }
            let tampered = merkle::Proof { nodes };
            if let Ok(answer) = merkle::verify(root, &key, &tampered) {
                assert_eq!(
                    answer, truth,
                    "a changed proof must not prove another value"
                );
            }
        },
    );
}

#[test]
fn move_statement_and_archive_parsers_never_panic() {
    let user = key(1).public_key().to_z32();
    let valid =
        format!("pubky-move/1\nuser:{user}\nfrom:{user}\nto:{user}\ntime:1760000000000000\n");
    run(
        "move statement, a valid one with characters changed",
        vec((any::<usize>(), any::<char>()), 0..6),
        |edits| {
            let _ = hs_domain::moving::MoveStatement::parse(&mutate(&valid, &edits));
        },
    );
    run("move statement, arbitrary text", any::<String>(), |text| {
        let _ = hs_domain::moving::MoveStatement::parse(&text);
    });
    run(
        "archive record, arbitrary bytes",
        vec(any::<u8>(), 0..256),
        |bytes| {
            let _ = hs_domain::archive::parse_record(&bytes);
        },
    );
    run(
        "archive statement, arbitrary text",
        any::<String>(),
        |text| {
            let _ = hs_domain::archive::parse_statement(&text);
        },
    );
}
