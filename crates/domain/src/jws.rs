//! Grant and proof-of-possession JWS (spec §3.4, §4.5): the current auth flow, in which
//! the user's key signs a *grant* for a client key (`cnf`) and the client proves, per
//! request, that it holds that key with a *PoP* bound to one homeserver.
//!
//! The pipeline of `POST /auth/grant/session` and `/auth/grant/signup` is reproduced
//! step by step, because the first failing step decides the status and the body, and
//! clients compare those verbatim. The steps that need storage (revocation, nonce
//! replay, user lookup) are the caller's and sit between these functions:
//! [`verify_grant`] (steps 1–4) → revocation → [`verify_pop`] (step 6) → nonce.
//! Signup runs [`check_signup_grant`] between [`verify_grant`] and [`verify_pop`].
//!
//! The reference verifies with `jsonwebtoken` 9 and decodes claims with `pubky-common`
//! types; what those accept (base64url without padding, unknown JSON fields ignored,
//! keys parsed by `pkarr`) is what is accepted here. Capabilities stay raw strings; the
//! caller's capability parser is consulted through a predicate at the step where the
//! reference parses them.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use pkarr::PublicKey;
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};

pub const GRANT_TYP: &str = "pubky-grant";
pub const POP_TYP: &str = "pubky-pop";
/// How far (s) a PoP's `iat` may be from the server clock, and how far in the future a
/// signup grant's `iat` may be.
pub const POP_MAX_AGE_SECS: u64 = 180;
/// Nonces older than this (s) can be forgotten: their PoP no longer passes the window.
pub const POP_NONCE_RETENTION_SECS: u64 = 2 * POP_MAX_AGE_SECS;
pub const SIGNUP_CLIENT_ID: &str = "pubky.signup";
pub const MAX_SIGNUP_GRANT_LIFETIME_SECS: u64 = 300;
/// The one capability spelling the signup check recognises without a parser.
pub const ROOT_CAPABILITY: &str = "/:rw";

const RANDOM_ID_MAX_LEN: usize = 22;
const CLIENT_ID_MAX_LEN: usize = 253;

/// Grant claims, signed by the user (`iss`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(with = "z32")]
    pub iss: PublicKey,
    pub client_id: String,
    pub caps: Vec<String>,
    /// The client key every PoP for this grant must be signed with.
    #[serde(with = "z32")]
    pub cnf: PublicKey,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

/// Proof-of-possession claims, signed by the grant's `cnf` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pop {
    #[serde(with = "z32")]
    pub aud: PublicKey,
    pub gid: String,
    pub nonce: String,
    pub iat: u64,
}

/// The JSON body of the grant routes. Deserializing fails with a serde *data* error when
/// a field is missing or not a three-part compact JWS, which the HTTP layer must answer
/// with 422 (axum's `Json` does), keeping 400 for malformed JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    pub grant: CompactJws,
    pub pop: CompactJws,
    /// `grant-session-slots`: which of the grant's session slots the new bearer takes
    /// (absent = the one legacy slot). Ignored by logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
}

/// A grant session slot's id, chosen by the client (the reference's `RandomId`): 1 to
/// 36 bytes, e.g. 22 characters of base64url or a UUID. It names a slot and proves
/// nothing: every exchange still needs the grant and a fresh proof of possession.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

/// Longest [`SessionId`], in bytes.
pub const SESSION_ID_MAX_LEN: usize = 36;

impl SessionId {
    /// The reference's texts, which become part of the 422 body.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        if value.is_empty() {
            Err("RandomId must not be empty")
        } else if value.len() > SESSION_ID_MAX_LEN {
            Err("RandomId must be at most 36 characters")
        } else {
            Ok(Self(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// A string of exactly three dot-separated parts (any of them may be empty).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CompactJws(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("JWS Compact Serialization must have exactly 3 dot-separated parts")]
pub struct NotCompactJws;

impl CompactJws {
    pub fn parse(value: &str) -> Result<Self, NotCompactJws> {
        if is_compact_jws(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(NotCompactJws)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CompactJws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactJws({})", self.0)
    }
}

impl<'de> Deserialize<'de> for CompactJws {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(serde::de::Error::custom)
    }
}

/// The shape check the HTTP layer answers with 422 when it fails.
pub fn is_compact_jws(value: &str) -> bool {
    value.bytes().filter(|&b| b == b'.').count() == 2
}

/// A grant or PoP id (`jti`, `gid`, `nonce`, and the `{gid}` of `DELETE
/// /auth/grant/session/{gid}`): 1–22 characters of the base64url alphabet.
pub fn is_random_id(value: &str) -> bool {
    (1..=RANDOM_ID_MAX_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 1–253 *bytes*, as the reference counts them; no other rule.
pub fn is_client_id(value: &str) -> bool {
    (1..=CLIENT_ID_MAX_LEN).contains(&value.len())
}

/// A refused grant or PoP. `Display` is the exact HTTP body, [`status`](Self::status)
/// the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantAuthError {
    #[error("Invalid grant: {0}")]
    Grant(#[from] GrantError),
    #[error("Invalid PoP proof: {0}")]
    Pop(#[from] PopError),
    #[error("signup grants must use client_id pubky.signup")]
    SignupClientId,
    #[error("Root capability required")]
    RootCapabilityRequired,
    #[error("signup grant iat is too far in the future")]
    SignupIatInFuture,
    #[error("signup grant lifetime exceeds 5 minutes")]
    SignupLifetime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Step 1: the payload does not decode into valid grant claims.
    #[error("invalid grant format")]
    InvalidFormat,
    /// Step 2: anything wrong with the header, the signature or its check against `iss`.
    #[error("invalid grant signature")]
    InvalidSignature,
    /// Step 3.
    #[error("invalid grant header type, expected pubky-grant")]
    InvalidHeaderType,
    /// Step 4: `exp <= now`.
    #[error("grant has expired")]
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// Anything wrong with the header, the signature, its check against `cnf`, or the
    /// claims (the reference decodes them in the same call).
    #[error("invalid PoP signature")]
    InvalidSignature,
    #[error("invalid PoP header type, expected pubky-pop")]
    InvalidHeaderType,
    #[error("PoP audience mismatch")]
    AudienceMismatch,
    #[error("PoP grant ID mismatch")]
    GrantIdMismatch,
    #[error("PoP timestamp out of range")]
    TimestampOutOfRange,
}

impl GrantAuthError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Grant(GrantError::InvalidSignature | GrantError::Expired) | Self::Pop(_) => 401,
            Self::RootCapabilityRequired => 403,
            Self::Grant(GrantError::InvalidFormat | GrantError::InvalidHeaderType)
            | Self::SignupClientId
            | Self::SignupIatInFuture
            | Self::SignupLifetime => 400,
        }
    }
}

/// Steps 1–4 of the grant pipeline. `is_valid_capability` judges each `caps` entry; a
/// refusal is a format error (step 1), as in the reference, which parses them there.
///
/// `compact` is expected to have passed [`is_compact_jws`] (the HTTP layer answers 422
/// otherwise); any other shape is a format error here.
pub fn verify_grant(
    compact: &str,
    now_secs: u64,
    is_valid_capability: impl Fn(&str) -> bool,
) -> Result<Grant, GrantAuthError> {
    let parts = Parts::split(compact).ok_or(GrantError::InvalidFormat)?;
    let grant: Grant = decode_json(parts.payload).ok_or(GrantError::InvalidFormat)?;
    let well_formed = is_client_id(&grant.client_id)
        && is_random_id(&grant.jti)
        && grant.caps.iter().all(|cap| is_valid_capability(cap));
    if !well_formed {
        return Err(GrantError::InvalidFormat.into());
    }

    let header = parts
        .verify(&grant.iss)
        .ok_or(GrantError::InvalidSignature)?;
    if header.typ.as_deref() != Some(GRANT_TYP) {
        return Err(GrantError::InvalidHeaderType.into());
    }
    if grant.exp <= now_secs {
        return Err(GrantError::Expired.into());
    }
    Ok(grant)
}

/// The signup-only rules, run between [`verify_grant`] and [`verify_pop`].
/// `is_root_capability` is the capability parser's root test; `|c| c == ROOT_CAPABILITY`
/// is the literal reading (the 0.17 reference also counts `/:wr` and `/:rwe` as root).
pub fn check_signup_grant(
    grant: &Grant,
    now_secs: u64,
    is_root_capability: impl Fn(&str) -> bool,
) -> Result<(), GrantAuthError> {
    if grant.client_id != SIGNUP_CLIENT_ID {
        return Err(GrantAuthError::SignupClientId);
    }
    if !grant.caps.iter().any(|cap| is_root_capability(cap)) {
        return Err(GrantAuthError::RootCapabilityRequired);
    }
    if grant.iat > now_secs.saturating_add(POP_MAX_AGE_SECS) {
        return Err(GrantAuthError::SignupIatInFuture);
    }
    if grant.exp.saturating_sub(grant.iat) > MAX_SIGNUP_GRANT_LIFETIME_SECS {
        return Err(GrantAuthError::SignupLifetime);
    }
    Ok(())
}

/// Step 6: the PoP must be signed by the grant's `cnf`, typed `pubky-pop`, addressed to
/// `homeserver`, bound to the grant's `jti`, and issued within ±180 s of `now_secs`.
/// The nonce is returned for the caller's replay check.
pub fn verify_pop(
    compact: &str,
    grant: &Grant,
    homeserver: &PublicKey,
    now_secs: u64,
) -> Result<Pop, GrantAuthError> {
    let signature_error = GrantAuthError::Pop(PopError::InvalidSignature);
    let parts = Parts::split(compact).ok_or(signature_error)?;
    let header = parts.verify(&grant.cnf).ok_or(signature_error)?;
    let pop: Pop = decode_json(parts.payload)
        .filter(|pop: &Pop| is_random_id(&pop.gid) && is_random_id(&pop.nonce))
        .ok_or(signature_error)?;

    if header.typ.as_deref() != Some(POP_TYP) {
        return Err(PopError::InvalidHeaderType.into());
    }
    // Compared in z32 form, as the reference does.
    if pop.aud != *homeserver {
        return Err(PopError::AudienceMismatch.into());
    }
    if pop.gid != grant.jti {
        return Err(PopError::GrantIdMismatch.into());
    }
    if pop.iat.abs_diff(now_secs) > POP_MAX_AGE_SECS {
        return Err(PopError::TimestampOutOfRange.into());
    }
    Ok(pop)
}

/// A compact JWS, still encoded.
struct Parts<'a> {
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

/// The JOSE header fields `jsonwebtoken` 9 types (bar `jwk`); listing them makes a header
/// it would refuse to decode (say `"kid": 1`) fail here too, as a signature error.
#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    #[serde(rename = "cty")]
    _cty: Option<String>,
    #[serde(rename = "jku")]
    _jku: Option<String>,
    #[serde(rename = "kid")]
    _kid: Option<String>,
    #[serde(rename = "x5u")]
    _x5u: Option<String>,
    #[serde(rename = "x5c")]
    _x5c: Option<Vec<String>>,
    #[serde(rename = "x5t")]
    _x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    _x5t_s256: Option<String>,
}

impl<'a> Parts<'a> {
    fn split(compact: &'a str) -> Option<Self> {
        let (signing_input, signature) = compact.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        (!payload.contains('.')).then_some(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }

    /// The JOSE checks: an `EdDSA` header and an Ed25519 signature by `key`. Returns the
    /// header for the `typ` check that follows.
    fn verify(&self, key: &PublicKey) -> Option<Header> {
        let header: Header = decode_json(self.header)?;
        if header.alg != "EdDSA" {
            return None;
        }
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(self.signature)
            .ok()?
            .try_into()
            .ok()?;
        // pkarr's verify takes ed25519's `Signature`, built here from the raw bytes by
        // inference so this crate needs no direct ed25519 dependency.
        key.verify(self.signing_input.as_bytes(), &signature.into())
            .ok()?;
        Some(header)
    }
}

fn decode_json<T: DeserializeOwned>(segment: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

/// Keys in claims are z32 text, parsed by `pkarr` exactly as the reference parses them.
mod z32 {
    use pkarr::PublicKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &PublicKey, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&key.to_z32())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(deserializer)?;
        PublicKey::try_from(text.as_str()).map_err(serde::de::Error::custom)
    }
}
