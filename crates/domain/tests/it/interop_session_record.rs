//! Our `CookieSessionRecord` bytes against the published `pubky-common` 0.17.1 encoder,
//! which is also what the SDK decodes them with.

use hs_domain::session_record::{CookieSessionRecord, SessionRecordError};
use pubky_common::{capabilities::Capabilities, crypto::Keypair, session};

fn reference(keypair: &Keypair, created_at: u64, caps: &[&str]) -> Vec<u8> {
    let caps: Capabilities = caps.join(",").parse().unwrap();
    let mut record = session::CookieSessionRecord::new(&keypair.public_key(), caps, None);
    record.set_created_at(created_at);
    record.serialize()
}

fn ours(keypair: &Keypair, created_at: u64, caps: &[&str]) -> CookieSessionRecord {
    CookieSessionRecord {
        public_key: keypair.public_key().into_inner(),
        created_at,
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
    }
}

#[test]
fn bytes_match_pubky_common() {
    let keypair = Keypair::random();
    let cap_sets: [&[&str]; 3] = [
        &[],
        &["/:rw"],
        &["/pub/app/:rw", "/priv/app/:r", "/pub/x:w"],
    ];
    for created_at in [
        0,
        1,
        127,
        128,
        16_383,
        16_384,
        1_760_000_000,
        1_760_000_000_123_456,
        u64::MAX,
    ] {
        for caps in cap_sets {
            let expected = reference(&keypair, created_at, caps);
            let record = ours(&keypair, created_at, caps);
            assert_eq!(record.encode(), expected, "{created_at} {caps:?}");
            assert_eq!(CookieSessionRecord::decode(&expected), Ok(record));
            let decoded = session::CookieSessionRecord::deserialize(&expected).unwrap();
            assert_eq!(decoded.created_at(), created_at);
        }
    }
}

#[test]
fn root_example_from_the_spec() {
    let keypair = Keypair::from_secret(&[0; 32]);
    let bytes = ours(&keypair, 0, &["/:rw"]).encode();
    assert_eq!(bytes[0], 0);
    assert_eq!(&bytes[1..33], keypair.public_key().as_inner().as_bytes());
    assert_eq!(
        &bytes[33..],
        [0x00, 0x00, 0x00, 0x01, 0x04, b'/', b':', b'r', b'w']
    );
}

#[test]
fn decode_refuses_what_is_not_a_record() {
    let keypair = Keypair::random();
    let bytes = ours(&keypair, 5, &["/:rw"]).encode();
    assert_eq!(
        CookieSessionRecord::decode(&[]),
        Err(SessionRecordError::Empty)
    );
    assert_eq!(
        CookieSessionRecord::decode(&[1]),
        Err(SessionRecordError::UnknownVersion)
    );
    for len in 1..bytes.len() {
        assert!(
            CookieSessionRecord::decode(&bytes[..len]).is_err(),
            "len {len}"
        );
        assert!(session::CookieSessionRecord::deserialize(&bytes[..len]).is_err());
    }
    // A huge capability count in a short body fails without allocating for it.
    let mut huge = bytes[..36].to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert!(CookieSessionRecord::decode(&huge).is_err());
}
