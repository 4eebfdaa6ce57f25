//! Integration tests of the domain crate, linked into one test binary (one link instead
//! of five): event schemas, byte-compatibility with `pubky-common` 0.17.1, and parsers
//! that never panic.

mod event_schemas;
mod interop_auth_token;
mod interop_grant;
mod interop_session_record;
mod parsers_never_panic;
