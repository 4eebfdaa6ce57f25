//! The legacy cookie-flow `AuthToken` (spec §4.1): a postcard-encoded, Ed25519-signed
//! proof that the holder of a key asked for a session with some capabilities.
//!
//! Parsed by hand rather than through `postcard`, so that a short or hostile body can only
//! produce an error (the 0.11 reference panicked below 75 bytes), while every error
//! *text* still matches what `pubky-common` 0.17.1 answers, byte for byte: clients and
//! e2e suites compare those bodies verbatim. The checks run in the reference's order,
//! which decides the text when a token is broken in more than one way.
//!
//! Capabilities stay a raw comma-separated string here; the capability parser lives in
//! another module, and the caller hands its verdict in through [`AuthToken::verify_with`].

use pkarr::PublicKey;

/// The namespace every token carries at bytes 64..74.
pub const NAMESPACE: &[u8; 10] = b"PUBKY:AUTH";
/// How far (µs) a token's timestamp may be from the server clock, either way.
pub const TIMESTAMP_WINDOW_MICROS: u64 = 180_000_000;
/// How long (µs) a replay-cache entry must be kept: past this age the window check
/// alone already refuses the token.
pub const REPLAY_RETENTION_MICROS: u64 = 2 * TIMESTAMP_WINDOW_MICROS;

const VERSION_OFFSET: usize = 74;
/// QUIRK (must match): the signature covers the bytes from the *second* namespace byte
/// onwards, so byte 64 is not signed.
const SIGNED_FROM: usize = 65;

/// A verified AuthToken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthToken {
    /// The key that signed the token and whose resources it asks for.
    pub public_key: PublicKey,
    /// Microseconds since the Unix epoch (the low byte is the signer's clock id).
    pub timestamp_micros: u64,
    /// The comma-separated capability list, exactly as signed.
    pub capabilities: String,
}

/// What the replay guard remembers about an accepted token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayId {
    pub timestamp_micros: u64,
    pub public_key: [u8; 32],
}

impl ReplayId {
    /// Whether the entry can be dropped from the replay cache at `now_micros`.
    pub fn is_stale(&self, now_micros: u64) -> bool {
        now_micros.saturating_sub(self.timestamp_micros) > REPLAY_RETENTION_MICROS
    }
}

/// Why a token was refused. `Display` is the exact HTTP body; every variant is a 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthTokenError {
    #[error("Unknown version")]
    UnknownVersion,
    #[error("AuthToken has a timestamp that is more than 3 minutes in the future")]
    TooFarInTheFuture,
    #[error("AuthToken has a timestamp that is more than 3 minutes in the past")]
    Expired,
    #[error("Invalid Signature")]
    InvalidSignature,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Produced by the caller's replay guard, never by [`AuthToken::verify`].
    #[error("AuthToken already used")]
    AlreadyUsed,
}

impl AuthTokenError {
    pub const STATUS: u16 = 400;
}

/// Decoding failures, with `postcard` 1.x's `Display` texts (the reference surfaces them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("Hit the end of buffer, expected more data")]
    UnexpectedEnd,
    #[error("Found a varint that didn't terminate. Is the usize too big for this platform?")]
    BadVarint,
    #[error("Tried to parse invalid utf-8")]
    BadUtf8,
    /// A field decoded but its value was refused: a public key that is not a curve point,
    /// or capabilities the parser rejected (postcard's `SerdeDeCustom`).
    #[error("Serde Deserialization Error")]
    InvalidValue,
}

impl AuthToken {
    /// Parses and verifies `bytes` without judging the capability string.
    ///
    /// Prefer [`AuthToken::verify_with`]: the reference rejects unparseable capabilities
    /// *before* the timestamp and signature checks, which decides the error text of a
    /// token that is broken twice.
    pub fn verify(bytes: &[u8], now_micros: u64) -> Result<Self, AuthTokenError> {
        Self::verify_with(bytes, now_micros, |_| true)
    }

    /// Parses and verifies `bytes`; `capabilities_ok` is the capability parser's verdict
    /// on the whole comma-separated list (a refusal reads `Serde Deserialization Error`).
    pub fn verify_with(
        bytes: &[u8],
        now_micros: u64,
        capabilities_ok: impl FnOnce(&str) -> bool,
    ) -> Result<Self, AuthTokenError> {
        // The version byte is judged before anything else is decoded.
        let version = *bytes
            .get(VERSION_OFFSET)
            .ok_or(DecodeError::UnexpectedEnd)?;
        if version > 0 {
            return Err(AuthTokenError::UnknownVersion);
        }

        let mut reader = postcard::Reader::new(bytes);
        let signature: [u8; 64] = reader.array()?;
        let namespace: [u8; 10] = reader.array()?;
        let _version: [u8; 1] = reader.array()?;
        let timestamp_micros = u64::from_be_bytes(reader.array()?);
        let public_key =
            PublicKey::try_from(&reader.array::<32>()?).map_err(|_| DecodeError::InvalidValue)?;
        // Anything after the string is ignored by the decoder but covered by the signature.
        let capabilities = reader.str()?;
        if !capabilities_ok(capabilities) {
            return Err(DecodeError::InvalidValue.into());
        }

        // Wrapping, as the reference's `as i64` subtraction does in a release build:
        // timestamps beyond i64::MAX land on one side of the window or the other.
        let diff = (timestamp_micros as i64).wrapping_sub(now_micros as i64);
        if diff > TIMESTAMP_WINDOW_MICROS as i64 {
            return Err(AuthTokenError::TooFarInTheFuture);
        }
        if diff < -(TIMESTAMP_WINDOW_MICROS as i64) {
            return Err(AuthTokenError::Expired);
        }

        // The reference never looks at the unsigned byte 64; we refuse a foreign
        // namespace, and report it as the signature failure it would be at bytes 65..74.
        // (`.into()` builds ed25519's `Signature`, the type pkarr's `verify` takes.)
        let signed = &bytes[SIGNED_FROM..];
        if &namespace != NAMESPACE || public_key.verify(signed, &signature.into()).is_err() {
            return Err(AuthTokenError::InvalidSignature);
        }

        Ok(Self {
            public_key,
            timestamp_micros,
            capabilities: capabilities.to_owned(),
        })
    }

    /// The key under which the caller's replay guard stores this token; a second token
    /// with the same id is refused with [`AuthTokenError::AlreadyUsed`].
    pub fn replay_id(&self) -> ReplayId {
        ReplayId {
            timestamp_micros: self.timestamp_micros,
            public_key: self.public_key.to_bytes(),
        }
    }
}

/// The slice of postcard's wire format the legacy cookie flow needs: raw fixed arrays,
/// LEB128 varints and length-prefixed UTF-8 strings.
pub(crate) mod postcard {
    use super::DecodeError;

    /// A u64 varint is at most ten bytes, the tenth holding a single bit.
    const VARINT_MAX_BYTES: usize = 10;

    pub(crate) struct Reader<'a> {
        rest: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub(crate) fn new(bytes: &'a [u8]) -> Self {
            Self { rest: bytes }
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
            if self.rest.len() < n {
                return Err(DecodeError::UnexpectedEnd);
            }
            let (head, rest) = self.rest.split_at(n);
            self.rest = rest;
            Ok(head)
        }

        pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
            let mut out = [0; N];
            out.copy_from_slice(self.take(N)?);
            Ok(out)
        }

        /// Mirrors postcard: non-minimal encodings are accepted, overlong ones are not.
        pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
            let mut value = 0u64;
            for i in 0..VARINT_MAX_BYTES {
                let [byte] = self.array()?;
                value |= u64::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    if i == VARINT_MAX_BYTES - 1 && byte > 0x01 {
                        break;
                    }
                    return Ok(value);
                }
            }
            Err(DecodeError::BadVarint)
        }

        pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
            let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::UnexpectedEnd)?;
            std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::BadUtf8)
        }
    }

    pub(crate) fn write_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    pub(crate) fn write_str(out: &mut Vec<u8>, value: &str) {
        write_varint(out, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn varint_round_trips_and_rejects_overlong() {
            for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
                let mut buf = Vec::new();
                write_varint(&mut buf, value);
                assert_eq!(Reader::new(&buf).varint(), Ok(value));
            }
            let mut eleven = vec![0x80; 10];
            eleven.push(0);
            assert_eq!(Reader::new(&eleven).varint(), Err(DecodeError::BadVarint));
            let mut tenth_too_big = vec![0xff; 9];
            tenth_too_big.push(0x02);
            assert_eq!(
                Reader::new(&tenth_too_big).varint(),
                Err(DecodeError::BadVarint)
            );
            assert_eq!(
                Reader::new(&[0x80]).varint(),
                Err(DecodeError::UnexpectedEnd)
            );
            // Non-minimal encodings decode, as in postcard.
            assert_eq!(Reader::new(&[0x80, 0x00]).varint(), Ok(0));
        }
    }
}
