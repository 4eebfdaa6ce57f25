//! The store: writes, reads and housekeeping over an opendal [`Operator`].

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use opendal::{ErrorKind, Operator};

use crate::config::BlobStoreConfig;
use crate::content_type::Sniffer;
use crate::error::{BlobError, BoxError, PutError};
use crate::hash::BlobHash;

/// Prefix of content-addressed blobs.
pub(crate) const BLOB_PREFIX: &str = "blobs/";
/// Prefix of uploads in progress (and of leftovers of crashed ones).
pub(crate) const TMP_PREFIX: &str = "tmp/";

/// Size of the chunks [`BlobStore::get`] yields.
pub const READ_CHUNK: usize = 64 * 1024;
/// fs: incoming body chunks (often a few KiB each) are coalesced to this size before a
/// write, so a large upload costs one `pwrite` per MiB instead of one per network frame.
const FS_WRITE_BUFFER: usize = 1024 * 1024;
/// S3: multipart part size. S3 needs at least 5 MiB per part (except the last); 8 MiB keeps
/// the memory of one upload at one part while it is in flight.
const S3_PART_SIZE: usize = 8 * 1024 * 1024;

/// The storage key of a blob: `blobs/<first two hex digits>/<64 hex digits>`.
///
/// The two-digit shard keeps directories of the fs backend at 1/256 of the blobs.
pub fn blob_key(hash: &BlobHash) -> String {
    let hex = hash.to_hex();
    format!("{BLOB_PREFIX}{}/{hex}", &hex[..2])
}

/// What [`BlobStore::put_stream`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// BLAKE3 of the bytes: the blob's address.
    pub hash: BlobHash,
    /// Number of bytes.
    pub size: u64,
    /// Detected content type (see [`crate::content_type`]).
    pub content_type: String,
}

/// A content-addressed blob store. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct BlobStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) op: Operator,
    backend: Backend,
}

enum Backend {
    /// `root` is the absolute path of the store's folder.
    Fs {
        root: PathBuf,
    },
    S3,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.backend {
            Backend::Fs { root } => f.debug_struct("BlobStore").field("fs", root).finish(),
            Backend::S3 => f
                .debug_struct("BlobStore")
                .field("s3", &self.inner.op.info().name())
                .finish(),
        }
    }
}

impl BlobStore {
    /// Opens the store described by `config`.
    ///
    /// fs: creates the root, `tmp/` and the 256 shard folders under `blobs/` (so a put
    /// never has to create, and fsync, a parent folder). S3: builds the client only; no
    /// request is made, so a wrong endpoint or credentials show up on first use.
    pub fn new(config: &BlobStoreConfig) -> Result<Self, BlobError> {
        match config {
            BlobStoreConfig::Fs { root } => Self::open_fs(root),
            BlobStoreConfig::S3 {
                endpoint,
                region,
                bucket,
                access_key_id,
                secret_access_key,
                root,
            } => {
                let mut builder = opendal::services::S3::default()
                    .endpoint(endpoint)
                    .region(region)
                    .bucket(bucket)
                    .access_key_id(access_key_id)
                    .secret_access_key(secret_access_key)
                    // Only the credentials above: never pick up ~/.aws, AWS_* or the EC2
                    // metadata service by accident.
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Some(root) = root {
                    builder = builder.root(root);
                }
                install_http_transport();
                // An S3 server that stops answering (a partition, a paused container)
                // must become an error the API answers 503 to, not a request that
                // hangs: the HTTP client itself has no timeout.
                let op = Operator::new(builder)?.layer(
                    opendal::layers::TimeoutLayer::new()
                        .with_timeout(S3_OP_TIMEOUT)
                        .with_io_timeout(S3_IO_TIMEOUT),
                );
                Ok(Self::from_parts(op, Backend::S3))
            }
        }
    }

    /// Opens (creating if needed) a store in a local folder.
    pub fn fs(root: impl AsRef<Path>) -> Result<Self, BlobError> {
        Self::open_fs(root.as_ref())
    }

    fn open_fs(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join(TMP_PREFIX))?;
        for shard in 0..=255u8 {
            std::fs::create_dir_all(root.join(BLOB_PREFIX).join(hex::encode([shard])))?;
        }
        let root = std::fs::canonicalize(root)?;
        let root_str = root
            .to_str()
            .ok_or_else(|| BlobError::Config(format!("root {} is not UTF-8", root.display())))?;
        let op = Operator::new(opendal::services::Fs::default().root(root_str))?;
        Ok(Self::from_parts(op, Backend::Fs { root }))
    }

    fn from_parts(op: Operator, backend: Backend) -> Self {
        Self {
            inner: Arc::new(Inner { op, backend }),
        }
    }

    /// The underlying operator, for tooling (backups, migrations between backends).
    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    /// Streams `body` into the store while hashing it, and returns its address.
    ///
    /// Memory stays bounded whatever the size: at most one write buffer (1 MiB on fs, one
    /// 8 MiB part on S3) plus the chunk being processed. The body goes to a fresh key under
    /// `tmp/`; only when it is complete, within `limit` and durable is it moved to its
    /// content key (see the crate docs for the order and why). `path_hint` is the storage
    /// path the client wrote to; it only feeds content-type detection.
    ///
    /// On [`PutError::TooLarge`] the body is not read any further; on any error the
    /// temporary object is removed before returning. If the returned future is dropped
    /// mid-way, the removal is spawned onto the current Tokio runtime (and `gc` removes
    /// whatever a crash leaves behind).
    pub async fn put_stream<S, E>(
        &self,
        body: S,
        limit: Option<u64>,
        path_hint: &str,
    ) -> Result<StoredBlob, PutError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<BoxError>,
    {
        let op = &self.inner.op;
        let tmp_key = format!("{TMP_PREFIX}{}", uuid::Uuid::now_v7());
        let guard = TempGuard::new(op.clone(), tmp_key.clone());

        let (buffer_size, writer) = match self.inner.backend {
            Backend::Fs { .. } => (FS_WRITE_BUFFER, op.writer(&tmp_key).await),
            Backend::S3 => (
                S3_PART_SIZE,
                op.writer_with(&tmp_key).chunk(S3_PART_SIZE).await,
            ),
        };
        let mut writer = match writer {
            Ok(w) => w,
            Err(e) => {
                guard.remove().await;
                return Err(e.into());
            }
        };

        let streamed = stream_body(&mut writer, body, limit, buffer_size).await;
        let (hash, size, sniffer) = match streamed {
            Ok(v) => v,
            Err(e) => {
                // S3: abort the multipart upload. fs: unsupported (no atomic_write_dir), the
                // file is removed below.
                if let Err(abort) = writer.abort().await
                    && abort.kind() != ErrorKind::Unsupported
                {
                    tracing::warn!(key = %tmp_key, error = %abort, "aborting blob upload failed");
                }
                drop(writer);
                guard.remove().await;
                return Err(e);
            }
        };

        let committed = self.commit(&tmp_key, &hash).await;
        if let Err(e) = committed {
            guard.remove().await;
            return Err(e);
        }
        guard.disarm();

        Ok(StoredBlob {
            hash,
            size,
            content_type: sniffer.detect(path_hint),
        })
    }

    /// Moves a complete temporary object to its content key.
    ///
    /// If the content key already exists the bytes are already stored (same hash, same
    /// content), so the new copy is dropped, but the existing blob's modification time is
    /// refreshed: `gc` uses it for its grace period, and an upload that is about to be
    /// referenced by a new event must not look old.
    async fn commit(&self, tmp_key: &str, hash: &BlobHash) -> Result<(), PutError> {
        let op = &self.inner.op;
        let key = blob_key(hash);
        match &self.inner.backend {
            Backend::Fs { root } => {
                let path = root.join(&key);
                match touch(&path).await {
                    Ok(()) => {
                        tracing::debug!(%hash, "blob already stored, deduplicated");
                        op.delete(tmp_key).await?;
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                // The writer fsynced the file on close; a rename inside one filesystem is
                // atomic, and the fsync of the shard folder makes the new name durable.
                op.rename(tmp_key, &key).await?;
                if let Some(dir) = path.parent() {
                    fsync_dir(dir.to_owned()).await?;
                }
            }
            Backend::S3 => {
                // A server-side copy: no bytes pass through this process. It is also the
                // only way to refresh LastModified of an existing object, so it is done even
                // when the content key exists (see the method docs).
                op.copy(tmp_key, &key).await?;
                op.delete(tmp_key).await?;
            }
        }
        Ok(())
    }

    /// Streams a blob, or the inclusive byte range `range` of it, in chunks of at most
    /// [`READ_CHUNK`] bytes.
    ///
    /// An end past the last byte is clamped to it (HTTP semantics); a start past the last
    /// byte, or a start after the end, is [`BlobError::RangeNotSatisfiable`]. The returned
    /// stream knows the blob's total size and the served range, for `Content-Length` and
    /// `Content-Range`.
    pub async fn get(
        &self,
        hash: &BlobHash,
        range: Option<(u64, u64)>,
    ) -> Result<BlobStream, BlobError> {
        let key = blob_key(hash);
        let op = &self.inner.op;
        let size = match op.stat(&key).await {
            Ok(meta) => meta.content_length(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let (start, end) = match range {
            None => (0, size),
            Some((start, end)) => {
                if start > end || start >= size {
                    return Err(BlobError::RangeNotSatisfiable { start, end, size });
                }
                (start, end.saturating_add(1).min(size))
            }
        };
        let inner: BoxedByteStream = if start == end {
            Box::pin(futures::stream::empty())
        } else {
            match &self.inner.backend {
                Backend::Fs { root } => fs_read_stream(root.join(&key), start, end).await?,
                Backend::S3 => {
                    // No `chunk` on the reader: opendal would issue one ranged GET per
                    // chunk. One GET, re-sliced below.
                    let s = op.reader(&key).await?.into_bytes_stream(start..end).await?;
                    Box::pin(rechunk(s, READ_CHUNK))
                }
            }
        };
        Ok(BlobStream {
            inner,
            total_size: size,
            range: (start, end),
        })
    }

    /// The size of a blob, or `None` if it is not stored.
    pub async fn size(&self, hash: &BlobHash) -> Result<Option<u64>, BlobError> {
        match self.inner.op.stat(&blob_key(hash)).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a blob is stored.
    pub async fn exists(&self, hash: &BlobHash) -> Result<bool, BlobError> {
        Ok(self.size(hash).await?.is_some())
    }

    /// Deletes a blob. Deleting a missing blob is not an error.
    ///
    /// Only for tooling and tests: the write path never deletes blobs (a DELETE event only
    /// drops a reference; other users may share the content). Use [`BlobStore::gc`].
    pub async fn delete(&self, hash: &BlobHash) -> Result<(), BlobError> {
        match self.inner.op.delete(&blob_key(hash)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob with its size (temporary objects excluded). O(number of blobs): for backups, not request paths.
    pub async fn list(&self) -> Result<Vec<(BlobHash, u64)>, BlobError> {
        let mut lister = self
            .inner
            .op
            .lister_with(BLOB_PREFIX)
            .recursive(true)
            .await?;
        let mut out = Vec::new();
        while let Some(entry) = lister.try_next().await? {
            let name = entry.name().trim_end_matches('/');
            if let (true, Ok(hash)) = (entry.metadata().is_file(), BlobHash::from_hex(name)) {
                out.push((hash, entry.metadata().content_length()));
            }
        }
        Ok(out)
    }

    /// Total bytes of all stored blobs (temporary objects excluded).
    ///
    /// O(number of blobs): lists the whole store. Meant for an occasional metrics gauge,
    /// not for a request path.
    pub async fn total_bytes(&self) -> Result<u64, BlobError> {
        Ok(self.list().await?.iter().map(|(_, size)| size).sum())
    }
}

/// Makes S3 requests possible at all.
///
/// opendal is built without its default features, so no HTTP transport is installed and
/// every S3 request would fail with "default HTTP transport is not installed". This installs
/// opendal's reqwest transport as the process default (first install wins; repeated calls
/// are no-ops). reqwest is built without a bundled crypto provider, so the workspace's
/// rustls provider (ring) is installed as the process default first, unless the
/// application already installed one.
/// Longest an S3 request without a body may take (stat, delete, list page).
const S3_OP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest one read or write of a body chunk may wait for the S3 server.
const S3_IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn install_http_transport() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one in between: fine either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    opendal::install_default();
}

/// Reads `body` into `writer`, hashing and sniffing on the way. Does not close the writer on
/// error.
async fn stream_body<S, E>(
    writer: &mut opendal::Writer,
    body: S,
    limit: Option<u64>,
    buffer_size: usize,
) -> Result<(BlobHash, u64, Sniffer), PutError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut hasher = blake3::Hasher::new();
    let mut sniffer = Sniffer::default();
    let mut size = 0u64;
    let mut buf = BytesMut::new();

    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| PutError::Body(e.into()))?;
        size += chunk.len() as u64;
        if let Some(limit) = limit
            && size > limit
        {
            return Err(PutError::TooLarge { limit });
        }
        hasher.update(&chunk);
        sniffer.feed(&chunk);

        if buf.is_empty() && chunk.len() >= buffer_size {
            // Big chunks go through without a copy.
            writer.write(chunk).await?;
        } else {
            if buf.capacity() == 0 {
                buf.reserve(buffer_size);
            }
            buf.extend_from_slice(&chunk);
            if buf.len() >= buffer_size {
                writer.write(buf.split().freeze()).await?;
            }
        }
    }
    if !buf.is_empty() {
        writer.write(buf.freeze()).await?;
    }
    writer.close().await?;
    Ok((hasher.finalize().into(), size, sniffer))
}

type BoxedByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + Sync>>;

/// The bytes of a blob (or of a range of it), as returned by [`BlobStore::get`].
pub struct BlobStream {
    inner: BoxedByteStream,
    total_size: u64,
    range: (u64, u64),
}

impl BlobStream {
    /// Size of the whole blob (for `Content-Range: bytes a-b/<total>`).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Number of bytes this stream yields (for `Content-Length`).
    pub fn len(&self) -> u64 {
        self.range.1 - self.range.0
    }

    /// Whether this stream yields no bytes (an empty blob).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The served range as `(first, last)` inclusive, or `None` for an empty blob.
    pub fn range(&self) -> Option<(u64, u64)> {
        (self.range.1 > self.range.0).then(|| (self.range.0, self.range.1 - 1))
    }
}

impl Stream for BlobStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("total_size", &self.total_size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// Splits chunks larger than `max` without copying.
fn rechunk<S>(s: S, max: usize) -> impl Stream<Item = io::Result<Bytes>> + Send + Sync
where
    S: Stream<Item = io::Result<Bytes>> + Send + Sync,
{
    s.flat_map(move |item| {
        let pieces: Vec<io::Result<Bytes>> = match item {
            Ok(mut b) => {
                let mut v = Vec::with_capacity(b.len().div_ceil(max.max(1)));
                while b.len() > max {
                    v.push(Ok(b.split_to(max)));
                }
                if !b.is_empty() {
                    v.push(Ok(b));
                }
                v
            }
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(pieces)
    })
}

/// fs reads bypass opendal: its fs reader reads 2 MiB blocks (and with `chunk` set it
/// reopens the file for every chunk). Here one open file and positional reads of
/// [`READ_CHUNK`], so a slow download holds 64 KiB, not megabytes.
async fn fs_read_stream(path: PathBuf, start: u64, end: u64) -> Result<BoxedByteStream, BlobError> {
    let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
        .await
        .map_err(io::Error::other)?;
    let file = match file {
        Ok(f) => Arc::new(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let stream = futures::stream::try_unfold(start, move |offset| {
        let file = file.clone();
        async move {
            if offset >= end {
                return Ok(None);
            }
            let want = (end - offset).min(READ_CHUNK as u64) as usize;
            let bytes = tokio::task::spawn_blocking(move || read_exact_at(&file, offset, want))
                .await
                .map_err(io::Error::other)??;
            let next = offset + bytes.len() as u64;
            Ok(Some((bytes, next)))
        }
    });
    Ok(Box::pin(stream))
}

fn read_exact_at(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = BytesMut::zeroed(len);
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than its metadata",
            )
        } else {
            e
        }
    })?;
    Ok(buf.freeze())
}

/// Sets the modification time of an existing file to now; `NotFound` if it does not exist.
async fn touch(path: &Path) -> io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.set_modified(SystemTime::now()))
        .await
        .map_err(io::Error::other)?
}

async fn fsync_dir(dir: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// Removes a temporary object when an upload does not complete, including when the upload
/// future is dropped (client gone, timeout).
struct TempGuard {
    op: Operator,
    key: Option<String>,
}

impl TempGuard {
    fn new(op: Operator, key: String) -> Self {
        Self { op, key: Some(key) }
    }

    async fn remove(mut self) {
        if let Some(key) = self.key.take() {
            remove_temp(&self.op, &key).await;
        }
    }

    fn disarm(mut self) {
        self.key = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let op = self.op.clone();
                rt.spawn(async move { remove_temp(&op, &key).await });
            }
            Err(_) => tracing::warn!(%key, "upload abandoned outside a runtime; gc will remove it"),
        }
    }
}

async fn remove_temp(op: &Operator, key: &str) {
    match op.delete(key).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(%key, error = %e, "removing temporary blob failed; gc will"),
    }
}
