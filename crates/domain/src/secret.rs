//! Session credentials handed to clients: grant-flow bearer tokens (spec §4.6) and
//! cookie session secrets (§4.4).
//!
//! Both are minted from caller-supplied random bytes (this crate has no RNG) and only
//! their SHA-256 is meant to be stored, so a leaked table cannot be replayed. Parsing
//! checks the length and nothing else, as the reference does: any other string cannot
//! be one we minted, and a well-formed unknown one simply fails the lookup.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// The opaque `Authorization: Bearer` token of a grant session.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// base64url (unpadded) of 32 bytes.
    pub const LEN: usize = 43;

    pub fn from_random(random: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(random))
    }

    /// `None` means "not a bearer": the request then proceeds unauthenticated.
    pub fn parse(value: &str) -> Option<Self> {
        (value.len() == Self::LEN).then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the ASCII token: the only form the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

/// The value of a cookie session (`<user_z32>=<secret>`).
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecret(String);

impl CookieSecret {
    /// Crockford base32 (uppercase, unpadded) of 16 bytes.
    pub const LEN: usize = 26;

    pub fn from_random(random: [u8; 16]) -> Self {
        Self(crockford_encode(&random))
    }

    /// `None` means the cookie is ignored, as if absent.
    pub fn parse(value: &str) -> Option<Self> {
        (value.len() == Self::LEN).then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the ASCII secret: the only form the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

// Credentials stay out of logs even when a containing struct is `Debug`-printed.
impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret(<redacted>)")
    }
}

/// Crockford base32, uppercase and unpadded, bits taken most-significant first — the
/// output of the `base32` crate's `Alphabet::Crockford` the reference uses.
pub(crate) fn crockford_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut buffer, mut bits) = (0u16, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 0x1f)]));
        }
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting<const N: usize>() -> [u8; N] {
        std::array::from_fn(|i| i as u8)
    }

    // Expected values computed independently with Python's base64/hashlib.
    #[test]
    fn bearer_token_format_and_hash() {
        let token = BearerToken::from_random(counting());
        assert_eq!(
            token.as_str(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
        );
        assert_eq!(token.as_str().len(), BearerToken::LEN);
        assert_eq!(
            hex::encode(token.hash()),
            "ea866a757e4c38babfa8127cbe9a409d3e1f93a00ff1488ff735fcf917afffd0"
        );
        assert_eq!(BearerToken::parse(token.as_str()), Some(token));
        assert_eq!(BearerToken::parse(&"a".repeat(42)), None);
        assert_eq!(BearerToken::parse(&"a".repeat(44)), None);
        assert!(!format!("{:?}", BearerToken::from_random([7; 32])).contains("Bwc"));
    }

    #[test]
    fn cookie_secret_format_and_hash() {
        let secret = CookieSecret::from_random(counting());
        assert_eq!(secret.as_str(), "000G40R40M30E209185GR38E1W");
        assert_eq!(
            hex::encode(secret.hash()),
            "d8c08ea28d68d57e2ec74c6df55bf6d638881fec30f9ccf0154f8d81aee36549"
        );
        assert_eq!(
            CookieSecret::from_random([0xff; 16]).as_str(),
            "ZZZZZZZZZZZZZZZZZZZZZZZZZW"
        );
        assert_eq!(CookieSecret::parse(secret.as_str()), Some(secret));
        assert_eq!(CookieSecret::parse("000G40R40M30E209185GR38E1"), None);
    }
}
