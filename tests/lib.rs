//! End-to-end tests of the homeserver; the test files are listed in Cargo.toml.
