//! Content-addressed blob storage for file contents.
//!
//! File contents never go into the event log: events are capped in size, and the log's
//! replay time and memory grow with it. The write path streams the HTTP body into this
//! store, gets back the BLAKE3 hash, and appends an event that carries the hash; the read
//! API serves bytes by the hash found in the projection.
//!
//! # Content addressing
//!
//! A blob's key is `blobs/<hex[0..2]>/<hex of BLAKE3(bytes)>`. Because the key is derived
//! from the bytes:
//! - a retried upload is a no-op, and identical content of many users is stored once
//!   (quota still counts per reference, which is the caller's business);
//! - a blob is immutable: a key either holds exactly these bytes or does not exist, so
//!   readers never see a partial or replaced blob;
//! - moving between backends (fs to S3) is a plain copy of keys.
//!
//! # Write order
//!
//! [`BlobStore::put_stream`] writes the body to a fresh `tmp/<uuid>` key while hashing it,
//! and only once the body is complete and durable moves it to its content key (fs: rename
//! plus an fsync of the folder; S3: server-side copy plus delete). The caller appends the
//! event *after* `put_stream` returns. So a crash at any point leaves at worst a temporary
//! object or an unreferenced blob, both of which [`BlobStore::gc`] removes, and never an
//! event that points at bytes that are not there.
//!
//! # Garbage collection and its grace period
//!
//! Deleting a file only appends an event that drops a reference; the bytes may be shared.
//! A periodic [`BlobStore::gc`] lists the blobs, asks the caller which are still referenced
//! (the store does not know about Postgres: the caller supplies a [`ReferenceCheck`]), and
//! deletes the others, but only those last modified longer ago than a grace period:
//! between `put_stream` and the projection of its event every new blob is unreferenced, and
//! must survive that window. A put that finds its content already stored refreshes the
//! blob's modification time for the same reason. Temporary objects older than the grace
//! period are abandoned uploads and are deleted too.
//!
//! # Backends
//!
//! The local filesystem (default) or an S3-compatible bucket, both through
//! [opendal](https://docs.rs/opendal), chosen by [`BlobStoreConfig`].
//!
//! On S3 an upload becomes a multipart upload under `tmp/` that is invisible to listings
//! until it completes; one abandoned by a crash is not seen by `gc`. Give the bucket a
//! lifecycle rule that aborts incomplete multipart uploads (a day is plenty).

pub mod config;
pub mod content_type;
pub mod error;
mod gc;
pub mod hash;
mod store;

pub use config::BlobStoreConfig;
pub use error::{BlobError, BoxError, GcError, PutError};
pub use gc::{GC_BATCH, GcReport, ReferenceCheck};
pub use hash::{BlobHash, ParseHashError};
pub use store::{BlobStore, BlobStream, READ_CHUNK, StoredBlob, blob_key};
