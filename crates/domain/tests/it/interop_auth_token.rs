//! Our AuthToken verifier against tokens signed by the published `pubky-common` 0.17.1,
//! and against that crate's own verifier as the oracle for error texts.

use std::time::{SystemTime, UNIX_EPOCH};

use hs_domain::auth_token::{AuthToken, AuthTokenError, ReplayId, TIMESTAMP_WINDOW_MICROS};
use pubky_common::{
    auth,
    capabilities::{Capabilities, Capability},
    crypto::Keypair,
};

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The reference parses the capability list while decoding; so do we, through this.
fn reference_caps_ok(caps: &str) -> bool {
    caps.parse::<Capabilities>().is_ok()
}

fn ours(bytes: &[u8]) -> Result<AuthToken, String> {
    AuthToken::verify_with(bytes, now_micros(), reference_caps_ok).map_err(|e| e.to_string())
}

fn theirs(bytes: &[u8]) -> Result<(), String> {
    auth::AuthToken::verify(bytes)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn caps(list: &[&str]) -> Capabilities {
    Capabilities::from(
        list.iter()
            .map(|c| c.parse::<Capability>().unwrap())
            .collect::<Vec<_>>(),
    )
}

fn signed(keypair: &Keypair, list: &[&str]) -> (auth::AuthToken, Vec<u8>) {
    let token = auth::AuthToken::sign(keypair, caps(list));
    let bytes = token.serialize();
    (token, bytes)
}

#[test]
fn accepts_tokens_signed_by_pubky_common() {
    let keypair = Keypair::random();
    for list in [&[][..], &["/:rw"], &["/pub/app/:rw", "/priv/app/:r"]] {
        let (token, bytes) = signed(&keypair, list);
        let verified = ours(&bytes).unwrap();
        assert_eq!(&verified.public_key, token.public_key().as_inner());
        assert_eq!(verified.timestamp_micros, token.timestamp().as_u64());
        assert_eq!(verified.capabilities, token.capabilities().to_string());
        assert_eq!(verified.capabilities, list.join(","));
        assert_eq!(
            verified.replay_id(),
            ReplayId {
                timestamp_micros: token.timestamp().as_u64(),
                public_key: keypair.public_key().as_inner().to_bytes(),
            }
        );
    }
}

#[test]
fn root_token_layout_matches_the_spec() {
    let (_, bytes) = signed(&Keypair::random(), &["/:rw"]);
    assert_eq!(bytes.len(), 120);
    assert_eq!(&bytes[64..74], b"PUBKY:AUTH");
    assert_eq!(bytes[74], 0);
    assert_eq!(&bytes[115..], b"\x04/:rw");
}

/// Every byte of a valid token, flipped two ways, is refused with the reference's text.
/// The one deliberate difference: byte 64 (the unsigned first namespace byte) is not
/// looked at by the reference at all; we refuse it as a bad signature.
#[test]
fn every_flipped_byte_is_refused_with_the_reference_text() {
    let (_, bytes) = signed(&Keypair::random(), &["/:rw", "/pub/app/:rw"]);
    let mut seen = std::collections::BTreeSet::new();
    for index in 0..bytes.len() {
        for mask in [0x01, 0xff] {
            let mut tampered = bytes.clone();
            tampered[index] ^= mask;
            let ours = ours(&tampered).map(drop);
            let theirs = theirs(&tampered);
            assert!(ours.is_err(), "byte {index} ^ {mask:#04x} accepted");
            if index == 64 {
                assert_eq!(theirs, Ok(()));
                assert_eq!(ours, Err("Invalid Signature".into()));
                continue;
            }
            assert_eq!(ours, theirs, "byte {index} ^ {mask:#04x}");
            let expected_by_region = match index {
                0..=63 | 65..=73 => Some("Invalid Signature"),
                74 => Some("Unknown version"),
                _ => None, // timestamp, key and caps: depends on the new value
            };
            if let Some(expected) = expected_by_region {
                assert_eq!(ours, Err(expected.into()), "byte {index} ^ {mask:#04x}");
            }
            seen.insert(ours.unwrap_err());
        }
    }
    // The sweep reached every refusal a single flipped byte can cause.
    for text in [
        "Invalid Signature",
        "Unknown version",
        "AuthToken has a timestamp that is more than 3 minutes in the future",
        "AuthToken has a timestamp that is more than 3 minutes in the past",
        "Serde Deserialization Error",
        "Hit the end of buffer, expected more data",
    ] {
        assert!(seen.contains(text), "never saw {text:?}; saw {seen:?}");
    }
}

#[test]
fn truncated_or_extended_tokens_are_refused_like_the_reference() {
    let (_, bytes) = signed(&Keypair::random(), &["/pub/app/:rw"]);
    for len in 0..bytes.len() {
        assert_eq!(
            ours(&bytes[..len]).map(drop),
            theirs(&bytes[..len]),
            "len {len}"
        );
    }
    assert_eq!(
        ours(&[]).unwrap_err(),
        "Hit the end of buffer, expected more data"
    );
    let mut extended = bytes.clone();
    extended.push(0);
    assert_eq!(ours(&extended).map(drop), theirs(&extended));
    assert_eq!(ours(&extended).unwrap_err(), "Invalid Signature");
}

#[test]
fn version_is_judged_before_anything_else() {
    let mut bytes = vec![0; 75];
    bytes[74] = 1;
    assert_eq!(
        AuthToken::verify(&bytes, 0),
        Err(AuthTokenError::UnknownVersion)
    );
    assert_eq!(theirs(&bytes), Err("Unknown version".into()));
}

#[test]
fn timestamp_window_is_inclusive_and_its_texts_match() {
    let (token, bytes) = signed(&Keypair::random(), &["/:rw"]);
    let ts = token.timestamp().as_u64();
    let at = |now| AuthToken::verify(&bytes, now).map(drop);

    assert_eq!(at(ts - TIMESTAMP_WINDOW_MICROS), Ok(()));
    assert_eq!(at(ts + TIMESTAMP_WINDOW_MICROS), Ok(()));
    assert_eq!(
        at(ts - TIMESTAMP_WINDOW_MICROS - 1),
        Err(AuthTokenError::TooFarInTheFuture)
    );
    assert_eq!(
        at(ts + TIMESTAMP_WINDOW_MICROS + 1),
        Err(AuthTokenError::Expired)
    );

    let pairs = [
        (AuthTokenError::UnknownVersion, auth::Error::UnknownVersion),
        (
            AuthTokenError::TooFarInTheFuture,
            auth::Error::TooFarInTheFuture,
        ),
        (AuthTokenError::Expired, auth::Error::Expired),
        (
            AuthTokenError::InvalidSignature,
            auth::Error::InvalidSignature,
        ),
        (AuthTokenError::AlreadyUsed, auth::Error::AlreadyUsed),
    ];
    for (ours, theirs) in pairs {
        assert_eq!(ours.to_string(), theirs.to_string());
    }
    assert_eq!(
        AuthTokenError::TooFarInTheFuture.to_string(),
        "AuthToken has a timestamp that is more than 3 minutes in the future"
    );
    assert_eq!(
        AuthTokenError::Expired.to_string(),
        "AuthToken has a timestamp that is more than 3 minutes in the past"
    );
    assert_eq!(
        AuthTokenError::AlreadyUsed.to_string(),
        "AuthToken already used"
    );
}

/// A token whose capability string the parser refuses, validly signed (pubky-common
/// cannot sign one, so we re-sign its bytes with the same key).
#[test]
fn unparseable_capabilities_are_refused_first_when_the_parser_is_consulted() {
    let keypair = Keypair::random();
    let (_, bytes) = signed(&keypair, &[]);
    let mut crafted = bytes[..115].to_vec();
    crafted.push(12);
    crafted.extend_from_slice(b"/pub/app/:rx");
    let signature = keypair.sign(&crafted[65..]).to_bytes();
    crafted[..64].copy_from_slice(&signature);

    assert_eq!(theirs(&crafted), Err("Serde Deserialization Error".into()));
    assert_eq!(ours(&crafted).map(drop), theirs(&crafted));
    // Without the parser's verdict the token verifies and the caller must parse later.
    let lenient = AuthToken::verify(&crafted, now_micros()).unwrap();
    assert_eq!(lenient.capabilities, "/pub/app/:rx");

    // Broken twice: the reference (and `verify_with`) report the capabilities.
    crafted[0] ^= 1;
    assert_eq!(ours(&crafted).map(drop), theirs(&crafted));
    assert_eq!(
        AuthToken::verify(&crafted, now_micros()),
        Err(AuthTokenError::InvalidSignature)
    );
}

#[test]
fn replay_ids_identify_a_token_and_go_stale() {
    let (_, bytes) = signed(&Keypair::random(), &["/:rw"]);
    let first = ours(&bytes).unwrap().replay_id();
    assert_eq!(first, ours(&bytes).unwrap().replay_id());
    let ts = first.timestamp_micros;
    assert!(!first.is_stale(ts + 2 * TIMESTAMP_WINDOW_MICROS));
    assert!(first.is_stale(ts + 2 * TIMESTAMP_WINDOW_MICROS + 1));
}
