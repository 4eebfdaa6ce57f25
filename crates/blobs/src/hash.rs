//! The content address of a blob.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The BLAKE3-256 hash of a blob's bytes: its identity and its storage key.
///
/// Rendered as lowercase hex in storage keys and logs, and as standard base64 *with
/// padding* (44 characters) in the HTTP `ETag` and the SSE `content_hash` line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    /// Length of the hex rendering.
    pub const HEX_LEN: usize = 64;

    /// Hashes `data` in one go (for small inputs and tests; the store hashes while streaming).
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, ParseHashError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseHashError)?;
        Ok(Self(out))
    }

    /// Standard base64 with padding, 44 characters (the ETag value without quotes).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses standard base64 with padding.
    pub fn from_base64(s: &str) -> Result<Self, ParseHashError> {
        let bytes = STANDARD.decode(s).map_err(|_| ParseHashError)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ParseHashError)?;
        Ok(Self(arr))
    }

    /// The HTTP entity tag: the base64 rendering in double quotes (46 characters).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.to_base64())
    }
}

impl From<blake3::Hash> for BlobHash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl From<[u8; 32]> for BlobHash {
    fn from(b: [u8; 32]) -> Self {
        Self(b)
    }
}

/// Displays as lowercase hex.
impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", self.to_hex())
    }
}

/// Parses lowercase or uppercase hex.
impl FromStr for BlobHash {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// A string was not a valid rendering of a 32-byte hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid 32-byte BLAKE3 hash")]
pub struct ParseHashError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_round_trip() {
        let h = BlobHash::of(b"hello");
        assert_eq!(h.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(BlobHash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(h.to_hex().parse::<BlobHash>(), Ok(h));
        let b64 = h.to_base64();
        assert_eq!(b64.len(), 44);
        assert!(b64.ends_with('='));
        assert_eq!(BlobHash::from_base64(&b64), Ok(h));
        assert_eq!(h.etag(), format!("\"{b64}\""));
        assert_eq!(h.etag().len(), 46);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(BlobHash::from_hex("abc").is_err());
        assert!(BlobHash::from_hex(&"g".repeat(64)).is_err());
        assert!(BlobHash::from_base64("AAAA").is_err());
    }
}
