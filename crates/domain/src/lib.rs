//! The homeserver's domain: keys, storage paths, capabilities, the auth wire formats,
//! authorization rules and the events of the log.
//!
//! This crate is pure: it does no I/O and reads no clock. Callers pass the current time
//! and random bytes in, so every rule here can be tested exhaustively and replayed
//! deterministically by the projector.

pub use pkarr::{Keypair, PublicKey};

pub mod archive;
pub mod auth_token;
pub mod authorization;
pub mod capability;
pub mod event;
pub mod jws;
pub mod lock;
pub mod log_identity;
pub mod merkle;
pub mod moving;
pub mod path;
pub mod secret;
pub mod session_record;
pub mod session_slots;
pub mod signup_token;
pub mod tenant;

pub use capability::{Action, Capabilities, Capability, CapabilityError};
pub use event::{Change, Event, EventSeq};
pub use path::{EntryPath, PathError, Root};
