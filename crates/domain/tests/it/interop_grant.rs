//! Our grant/PoP pipeline against JWS produced by the published `pubky-common` 0.17.1
//! signers (`GrantClaims::sign`, `sign_jws`): what the SDK sends is accepted, and every
//! tampered claim is refused with the status and text the reference answers.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hs_domain::jws::{
    self, CompactJws, Grant, GrantAuthError, GrantRequest, ROOT_CAPABILITY, check_signup_grant,
    verify_grant, verify_pop,
};
use pubky_common::{
    auth::{
        grant::GrantClaims,
        jws::{ClientId, GRANT_JWS_TYP, GrantId, POP_JWS_TYP, PopNonce, sign_jws},
        pop::PopProofClaims,
    },
    capabilities::Capability,
    crypto::Keypair,
};
use serde_json::{Value, json};

/// The server clock of every test; all times are explicit, nothing reads a clock.
const NOW: u64 = 1_760_000_000;

fn cap_ok(cap: &str) -> bool {
    cap.parse::<Capability>().is_ok()
}

fn cap_is_root(cap: &str) -> bool {
    cap.parse::<Capability>().is_ok_and(|c| c.is_root())
}

struct World {
    user: Keypair,
    client: Keypair,
    homeserver: Keypair,
}

impl World {
    fn new() -> Self {
        Self {
            user: Keypair::random(),
            client: Keypair::random(),
            homeserver: Keypair::random(),
        }
    }

    fn claims(&self) -> GrantClaims {
        GrantClaims {
            iss: self.user.public_key(),
            client_id: ClientId::new("franky.pubky.app").unwrap(),
            caps: vec![
                "/pub/franky/:rw".parse().unwrap(),
                "/priv/franky/:r".parse().unwrap(),
            ],
            cnf: self.client.public_key(),
            jti: GrantId::generate(),
            iat: NOW - 60,
            exp: NOW + 3600,
        }
    }

    fn signup_claims(&self) -> GrantClaims {
        GrantClaims {
            client_id: ClientId::new("pubky.signup").unwrap(),
            caps: vec![Capability::root()],
            iat: NOW,
            exp: NOW + 300,
            ..self.claims()
        }
    }

    fn pop_claims(&self, grant: &GrantClaims) -> PopProofClaims {
        PopProofClaims {
            aud: self.homeserver.public_key(),
            gid: grant.jti.clone(),
            nonce: PopNonce::generate(),
            iat: NOW,
        }
    }

    fn grant(&self, claims: &GrantClaims) -> Result<Grant, (u16, String)> {
        verify_grant(&claims.sign(&self.user, GRANT_JWS_TYP), NOW, cap_ok).map_err(texts)
    }

    fn pop(&self, grant: &GrantClaims, pop: &PopProofClaims) -> Result<jws::Pop, (u16, String)> {
        self.pop_str(grant, &sign_jws(&self.client, POP_JWS_TYP, pop))
    }

    fn pop_str(&self, grant: &GrantClaims, compact: &str) -> Result<jws::Pop, (u16, String)> {
        let grant = self.grant(grant).unwrap();
        verify_pop(
            compact,
            &grant,
            self.homeserver.public_key().as_inner(),
            NOW,
        )
        .map_err(texts)
    }
}

fn texts(error: GrantAuthError) -> (u16, String) {
    (error.status(), error.to_string())
}

fn err(status: u16, text: &str) -> (u16, String) {
    (status, text.to_owned())
}

/// A JWS with a header of our choosing, signed with the raw Ed25519 key (pubky-common
/// only signs `{"alg":"EdDSA","typ":…}` headers).
fn sign_raw(keypair: &Keypair, header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let signature = keypair.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Replaces the character at `index` with another base64url character.
fn flip_char(compact: &str, index: usize) -> String {
    let mut bytes = compact.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

const INVALID_FORMAT: (u16, &str) = (400, "Invalid grant: invalid grant format");
const INVALID_SIGNATURE: (u16, &str) = (401, "Invalid grant: invalid grant signature");
const BAD_POP_SIGNATURE: (u16, &str) = (401, "Invalid PoP proof: invalid PoP signature");

#[test]
fn accepts_what_the_sdk_signs() {
    let world = World::new();
    let claims = world.claims();
    let grant = world.grant(&claims).unwrap();
    assert_eq!(&grant.iss, world.user.public_key().as_inner());
    assert_eq!(&grant.cnf, world.client.public_key().as_inner());
    assert_eq!(grant.client_id, "franky.pubky.app");
    assert_eq!(grant.caps, ["/pub/franky/:rw", "/priv/franky/:r"]);
    assert_eq!(grant.jti, claims.jti.as_str());
    assert_eq!((grant.iat, grant.exp), (claims.iat, claims.exp));

    let pop_claims = world.pop_claims(&claims);
    let pop = world.pop(&claims, &pop_claims).unwrap();
    assert_eq!(pop.nonce, pop_claims.nonce.as_str());
    assert_eq!(pop.gid, claims.jti.as_str());
    assert_eq!(pop.iat, NOW);

    // Our claims serialize to the same JSON pubky-common decodes.
    let round_trip: GrantClaims =
        serde_json::from_value(serde_json::to_value(&grant).unwrap()).unwrap();
    assert_eq!(round_trip, claims);
}

#[test]
fn grant_steps_answer_the_reference_status_and_text() {
    let world = World::new();
    let base = world.claims();
    let sign = |claims: &GrantClaims| claims.sign(&world.user, GRANT_JWS_TYP);
    let check = |compact: &str| verify_grant(compact, NOW, cap_ok).map(drop).map_err(texts);
    let (fmt, sig) = (
        Err(err(INVALID_FORMAT.0, INVALID_FORMAT.1)),
        Err(err(INVALID_SIGNATURE.0, INVALID_SIGNATURE.1)),
    );

    // Step 2: signature.
    assert_eq!(check(&base.sign(&world.client, GRANT_JWS_TYP)), sig);
    let good = sign(&base);
    let (input, signature) = good.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    for i in 0..raw.len() {
        raw[i] ^= 0x01;
        let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(check(&tampered), sig, "signature byte {i}");
        raw[i] ^= 0x01;
    }
    assert_eq!(check(&format!("{input}.")), sig);
    let payload = serde_json::to_value(&base).unwrap();
    let hs256 = sign_raw(
        &world.user,
        &json!({"alg": "HS256", "typ": "pubky-grant"}),
        &payload,
    );
    assert_eq!(check(&hs256), sig);
    let odd_kid = sign_raw(
        &world.user,
        &json!({"alg": "EdDSA", "typ": "pubky-grant", "kid": 1}),
        &payload,
    );
    assert_eq!(check(&odd_kid), sig);

    // Step 3: header type (checked only once the signature holds).
    assert_eq!(
        check(&base.sign(&world.user, "JWT")),
        Err(err(
            400,
            "Invalid grant: invalid grant header type, expected pubky-grant"
        ))
    );
    let no_typ = sign_raw(&world.user, &json!({"alg": "EdDSA"}), &payload);
    assert_eq!(check(&no_typ).unwrap_err().0, 400);
    // Unknown header fields are fine, as in jsonwebtoken.
    let extra = sign_raw(
        &world.user,
        &json!({"alg": "EdDSA", "typ": "pubky-grant", "x": [1]}),
        &payload,
    );
    assert_eq!(check(&extra), Ok(()));

    // Step 4: expiry (`exp <= now`), while `iat` is not checked at all.
    let expired = (401, "Invalid grant: grant has expired".to_owned());
    assert_eq!(
        check(&sign(&GrantClaims {
            exp: NOW,
            ..base.clone()
        })),
        Err(expired.clone())
    );
    assert_eq!(
        check(&sign(&GrantClaims {
            exp: 0,
            ..base.clone()
        })),
        Err(expired)
    );
    assert_eq!(
        check(&sign(&GrantClaims {
            exp: NOW + 1,
            ..base.clone()
        })),
        Ok(())
    );
    assert_eq!(
        check(&sign(&GrantClaims {
            iat: u64::MAX,
            ..base.clone()
        })),
        Ok(())
    );

    // Order: a wrong signer is reported before a wrong type or an expiry.
    let both = GrantClaims {
        exp: 1,
        ..base.clone()
    }
    .sign(&world.client, "JWT");
    assert_eq!(check(&both), sig);
    assert_eq!(
        check(
            &GrantClaims {
                exp: 1,
                ..base.clone()
            }
            .sign(&world.user, "JWT")
        )
        .unwrap_err()
        .0,
        400
    );

    // Step 1: anything that is not a grant, signed or not.
    let signed_json = |payload: Value| sign_jws(&world.user, GRANT_JWS_TYP, &payload);
    let mut cases = vec![
        "".to_owned(),
        "..".to_owned(),
        "a.b".to_owned(),
        format!("x.{}.y", URL_SAFE_NO_PAD.encode("not json")),
        format!("x.{}=.y", good.split('.').nth(1).unwrap()),
    ];
    for (field, value) in [
        (
            "iss",
            json!(format!("pubky{}", world.user.public_key().z32())),
        ),
        ("iss", json!("not-a-key")),
        ("cnf", json!(42)),
        ("client_id", json!("")),
        ("client_id", json!("a".repeat(254))),
        ("jti", json!("")),
        ("jti", json!("a".repeat(23))),
        ("jti", json!("../x")),
        ("caps", json!(["/pub/app/:x"])),
        ("caps", json!(["pub/app/:rw"])),
        ("caps", json!("/:rw")),
        ("iat", json!(-1)),
        ("exp", json!(1.5)),
    ] {
        let mut claims = payload.clone();
        claims[field] = value;
        cases.push(signed_json(claims));
    }
    let mut missing = payload.clone();
    missing.as_object_mut().unwrap().remove("cnf");
    cases.push(signed_json(missing));
    for case in &cases {
        assert_eq!(check(case), fmt, "{case}");
    }

    // Edges that are accepted: 253-byte client ids, 22-char ids, unknown claims.
    for (field, value) in [
        ("client_id", json!("a".repeat(253))),
        ("jti", json!("AZaz09-_AZaz09-_AZaz09")),
        ("extra", json!({"anything": true})),
        ("caps", json!([])),
    ] {
        let mut claims = payload.clone();
        claims[field] = value;
        assert_eq!(check(&signed_json(claims)), Ok(()), "{field}");
    }
}

/// Every character of a valid grant, replaced: header and signature changes are
/// signature failures; payload changes are format or signature failures.
#[test]
fn every_changed_grant_character_is_refused() {
    let world = World::new();
    let good = world.claims().sign(&world.user, GRANT_JWS_TYP);
    let header_end = good.find('.').unwrap();
    let payload_end = good.rfind('.').unwrap();
    for index in 0..good.len() {
        if index == header_end || index == payload_end {
            continue;
        }
        let result = verify_grant(&flip_char(&good, index), NOW, cap_ok).map_err(texts);
        let error = result.expect_err("tampered grant accepted");
        let allowed: &[(u16, &str)] = if (header_end..payload_end).contains(&index) {
            &[INVALID_FORMAT, INVALID_SIGNATURE]
        } else {
            &[INVALID_SIGNATURE]
        };
        assert!(
            allowed
                .iter()
                .any(|&(s, t)| (s, t) == (error.0, error.1.as_str())),
            "char {index}: {error:?}"
        );
    }
}

#[test]
fn pop_checks_answer_the_reference_status_and_text() {
    let world = World::new();
    let grant = world.claims();
    let base = world.pop_claims(&grant);
    let pop_err = |text: &str| Err(err(401, &format!("Invalid PoP proof: {text}")));
    let bad_sig = Err(err(BAD_POP_SIGNATURE.0, BAD_POP_SIGNATURE.1));

    assert!(world.pop(&grant, &base).is_ok());
    // Signed by someone other than the grant's `cnf` (here: the user).
    assert_eq!(
        world.pop_str(&grant, &sign_jws(&world.user, POP_JWS_TYP, &base)),
        bad_sig
    );
    assert_eq!(
        world.pop_str(&grant, &sign_jws(&world.client, GRANT_JWS_TYP, &base)),
        pop_err("invalid PoP header type, expected pubky-pop")
    );
    let elsewhere = PopProofClaims {
        aud: Keypair::random().public_key(),
        ..base.clone()
    };
    assert_eq!(
        world.pop(&grant, &elsewhere),
        pop_err("PoP audience mismatch")
    );
    let other_grant = PopProofClaims {
        gid: GrantId::generate(),
        ..base.clone()
    };
    assert_eq!(
        world.pop(&grant, &other_grant),
        pop_err("PoP grant ID mismatch")
    );
    for iat in [NOW - 181, NOW + 181, 0, u64::MAX] {
        let stale = PopProofClaims {
            iat,
            ..base.clone()
        };
        assert_eq!(
            world.pop(&grant, &stale),
            pop_err("PoP timestamp out of range"),
            "{iat}"
        );
    }
    for iat in [NOW - 180, NOW + 180] {
        assert!(
            world
                .pop(
                    &grant,
                    &PopProofClaims {
                        iat,
                        ..base.clone()
                    }
                )
                .is_ok()
        );
    }

    // Order: type, then audience, then grant id, then time.
    let all_wrong = PopProofClaims {
        aud: Keypair::random().public_key(),
        gid: GrantId::generate(),
        nonce: base.nonce.clone(),
        iat: 0,
    };
    assert_eq!(
        world.pop_str(&grant, &sign_jws(&world.client, "x", &all_wrong)),
        pop_err("invalid PoP header type, expected pubky-pop")
    );
    assert_eq!(
        world.pop(&grant, &all_wrong),
        pop_err("PoP audience mismatch")
    );
    let gid_and_time = PopProofClaims {
        gid: GrantId::generate(),
        iat: 0,
        ..base.clone()
    };
    assert_eq!(
        world.pop(&grant, &gid_and_time),
        pop_err("PoP grant ID mismatch")
    );

    // Malformed claims are signature failures: the reference decodes them in that step.
    let payload = serde_json::to_value(&base).unwrap();
    for (field, value) in [
        ("nonce", json!("a.b")),
        ("nonce", json!("")),
        ("gid", json!("a".repeat(23))),
        ("aud", json!("nope")),
        ("iat", json!("now")),
    ] {
        let mut claims = payload.clone();
        claims[field] = value;
        let compact = sign_jws(&world.client, POP_JWS_TYP, &claims);
        assert_eq!(world.pop_str(&grant, &compact), bad_sig, "{field}");
    }
    for compact in ["", "a.b", "a.b.c.d", ".."] {
        assert_eq!(world.pop_str(&grant, compact), bad_sig, "{compact:?}");
    }

    // Every character of a valid PoP, replaced.
    let good = sign_jws(&world.client, POP_JWS_TYP, &base);
    for index in (0..good.len()).filter(|&i| good.as_bytes()[i] != b'.') {
        let error = world
            .pop_str(&grant, &flip_char(&good, index))
            .expect_err("tampered PoP accepted");
        assert_eq!(
            (error.0, error.1.as_str()),
            BAD_POP_SIGNATURE,
            "char {index}"
        );
    }
}

#[test]
fn signup_grant_rules_answer_the_reference_status_and_text() {
    let world = World::new();
    let base = world.signup_claims();
    let check = |claims: &GrantClaims| {
        let grant = world.grant(claims)?;
        check_signup_grant(&grant, NOW, cap_is_root).map_err(texts)
    };

    assert_eq!(check(&base), Ok(()));
    let pop = world.pop_claims(&base);
    assert!(world.pop(&base, &pop).is_ok());

    let app = ClientId::new("franky.pubky.app").unwrap();
    assert_eq!(
        check(&GrantClaims {
            client_id: app.clone(),
            ..base.clone()
        }),
        Err(err(400, "signup grants must use client_id pubky.signup"))
    );
    let not_root = vec!["/pub/:rw".parse().unwrap(), "/:r".parse().unwrap()];
    assert_eq!(
        check(&GrantClaims {
            caps: not_root.clone(),
            ..base.clone()
        }),
        Err(err(403, "Root capability required"))
    );
    assert_eq!(
        check(&GrantClaims {
            iat: NOW + 181,
            exp: NOW + 400,
            ..base.clone()
        }),
        Err(err(400, "signup grant iat is too far in the future"))
    );
    assert_eq!(
        check(&GrantClaims {
            iat: NOW + 180,
            exp: NOW + 480,
            ..base.clone()
        }),
        Ok(())
    );
    assert_eq!(
        check(&GrantClaims {
            iat: NOW - 1,
            exp: NOW + 300,
            ..base.clone()
        }),
        Err(err(400, "signup grant lifetime exceeds 5 minutes"))
    );
    // `exp < iat` is not a lifetime problem (saturating), and an old `iat` is fine.
    assert_eq!(
        check(&GrantClaims {
            iat: NOW + 100,
            exp: NOW + 50,
            ..base.clone()
        }),
        Ok(())
    );

    // Order: client id, root, iat, lifetime.
    let everything_wrong = GrantClaims {
        client_id: app,
        caps: not_root.clone(),
        iat: NOW + 999,
        exp: NOW + 9999,
        ..base.clone()
    };
    assert_eq!(
        check(&everything_wrong).unwrap_err().1,
        "signup grants must use client_id pubky.signup"
    );
    let wrong_but_id = GrantClaims {
        caps: not_root,
        iat: NOW + 999,
        exp: NOW + 9999,
        ..base.clone()
    };
    assert_eq!(
        check(&wrong_but_id).unwrap_err().1,
        "Root capability required"
    );

    // What counts as root is the caller's parser: the literal test only knows `/:rw`.
    let rwe = GrantClaims {
        caps: vec!["/:rwe".parse().unwrap()],
        ..base.clone()
    };
    assert_eq!(check(&rwe), Ok(()));
    let grant = world.grant(&rwe).unwrap();
    assert_eq!(
        check_signup_grant(&grant, NOW, |c| c == ROOT_CAPABILITY),
        Err(GrantAuthError::RootCapabilityRequired)
    );
}

#[test]
fn request_body_shape_errors_are_data_errors() {
    use serde_json::error::Category;
    let parse = |body: &str| serde_json::from_str::<GrantRequest>(body).map_err(|e| e.classify());

    let ok = parse(r#"{"grant":"a.b.c","pop":"..","extra":1}"#).unwrap();
    assert_eq!(ok.grant, CompactJws::parse("a.b.c").unwrap());
    // 422 at the HTTP layer: not three parts, missing field, wrong type.
    for body in [
        r#"{"grant":"a.b","pop":"a.b.c"}"#,
        r#"{"grant":"a.b.c","pop":"a.b.c.d"}"#,
        r#"{"grant":"a.b.c"}"#,
        r#"{"grant":1,"pop":"a.b.c"}"#,
        r#"[]"#,
    ] {
        assert_eq!(parse(body).unwrap_err(), Category::Data, "{body}");
    }
    // 400: not JSON at all.
    for body in [r#"{"grant":"a.b.c","#, "nope", ""] {
        assert_ne!(parse(body).unwrap_err(), Category::Data, "{body}");
    }
    assert!(jws::is_compact_jws("..") && !jws::is_compact_jws("a.b.c.d"));
}

#[test]
fn id_validators_follow_pubky_common() {
    for id in [
        "a",
        "AZaz09-_",
        &"a".repeat(22),
        "",
        &"a".repeat(23),
        "a.b",
        "a/b",
        "a b",
        "é",
    ] {
        assert_eq!(jws::is_random_id(id), GrantId::parse(id).is_ok(), "{id:?}");
    }
    for id in [
        "a",
        &"é".repeat(126),
        &"é".repeat(127),
        "",
        &"a".repeat(254),
    ] {
        assert_eq!(jws::is_client_id(id), ClientId::new(id).is_ok(), "{id:?}");
    }
}
