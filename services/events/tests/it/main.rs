//! Integration tests of the events service, linked into one test binary (one link
//! instead of three). `many_connections` stays a binary of its own: it measures its
//! own process's memory, which other tests in the same process would disturb.

#[path = "../common/mod.rs"]
mod common;

mod feed;
mod merkle_roots;
mod nats_permissions;
mod no_gaps;
mod stream;
