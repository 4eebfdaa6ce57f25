//! The legacy `CookieSessionRecord` (spec §4.3): the postcard body of `POST /signup`,
//! `POST /session` and `GET /session`, which the SDK decodes with `pubky-common`.
//!
//! Only the server's side is needed (encode); the decoder exists so tests and tooling can
//! read bodies back. The deprecated `name` and `user_agent` fields are always written
//! empty, as the reference does.

use pkarr::PublicKey;

use crate::auth_token::{DecodeError, postcard};

/// A cookie session as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSessionRecord {
    pub public_key: PublicKey,
    /// QUIRK (must match): microseconds in the signup/signin bodies, seconds in
    /// `GET /session`; the caller picks the unit.
    pub created_at: u64,
    /// Rendered capabilities (`/pub/app/:rw`), in the order the session stores them.
    pub capabilities: Vec<String>,
}

/// Why a body is not a session record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionRecordError {
    #[error("Empty payload")]
    Empty,
    #[error("Unknown version")]
    UnknownVersion,
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl CookieSessionRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(40 + self.capabilities.iter().map(|c| c.len() + 1).sum::<usize>());
        postcard::write_varint(&mut out, 0); // version
        out.extend_from_slice(self.public_key.as_bytes());
        postcard::write_varint(&mut out, self.created_at);
        postcard::write_str(&mut out, ""); // name
        postcard::write_str(&mut out, ""); // user_agent
        postcard::write_varint(&mut out, self.capabilities.len() as u64);
        for capability in &self.capabilities {
            postcard::write_str(&mut out, capability);
        }
        out
    }

    /// Reads a record back; `name` and `user_agent` are skipped whatever they hold.
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionRecordError> {
        match bytes.first() {
            None => return Err(SessionRecordError::Empty),
            Some(&version) if version > 0 => return Err(SessionRecordError::UnknownVersion),
            Some(_) => {}
        }
        let mut reader = postcard::Reader::new(bytes);
        reader.varint()?;
        let public_key =
            PublicKey::try_from(&reader.array::<32>()?).map_err(|_| DecodeError::InvalidValue)?;
        let created_at = reader.varint()?;
        reader.str()?;
        reader.str()?;
        let count = reader.varint()?;
        // Each entry takes at least one byte, so a count the body cannot hold is refused
        // before anything is allocated for it.
        let mut capabilities = Vec::with_capacity(count.min(bytes.len() as u64) as usize);
        for _ in 0..count {
            capabilities.push(reader.str()?.to_owned());
        }
        Ok(Self {
            public_key,
            created_at,
            capabilities,
        })
    }
}
