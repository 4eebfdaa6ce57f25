//! Errors of the blob store.

/// A boxed error from the caller's side (the request body, the reference check).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of reads, deletes, listings and store construction.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob has this hash.
    #[error("blob not found")]
    NotFound,
    /// The requested range does not overlap the blob (HTTP 416).
    #[error("range {start}-{end} not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// First requested byte.
        start: u64,
        /// Last requested byte (inclusive).
        end: u64,
        /// The blob's size.
        size: u64,
    },
    /// The configuration cannot be used.
    #[error("invalid blob store configuration: {0}")]
    Config(String),
    /// The storage backend failed.
    #[error("blob storage backend: {0}")]
    Backend(#[from] opendal::Error),
    /// Local I/O failed (fs backend: directory creation and fsync).
    #[error("blob storage I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Why [`BlobStore::put_stream`](crate::BlobStore::put_stream) failed. Nothing is left
/// under `blobs/` in any of these cases, and the temporary object is removed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The body exceeded the limit; it was not read further.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was passed in.
        limit: u64,
    },
    /// The body stream failed (client went away, malformed chunked encoding, ...).
    /// The HTTP layer answers 400 `Stream broken`.
    #[error("request body stream broken: {0}")]
    Body(#[source] BoxError),
    /// The storage backend failed (HTTP 503/500).
    #[error("blob storage backend: {0}")]
    Backend(#[from] opendal::Error),
    /// Local I/O failed (fs backend: fsync of the directory).
    #[error("blob storage I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Why [`BlobStore::gc`](crate::BlobStore::gc) stopped. Blobs deleted before the error stay
/// deleted; nothing referenced was touched.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The caller's reference check failed; the batch was left alone.
    #[error("reference check failed: {0}")]
    ReferenceCheck(#[source] BoxError),
    /// The storage backend failed.
    #[error("blob storage backend: {0}")]
    Backend(#[from] opendal::Error),
}
