//! Garbage collection of unreferenced blobs and abandoned uploads.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use opendal::{ErrorKind, Metadata};

use crate::error::{BoxError, GcError};
use crate::hash::BlobHash;
use crate::store::{BLOB_PREFIX, BlobStore, TMP_PREFIX, blob_key};

/// How many hashes are handed to the reference check at once.
pub const GC_BATCH: usize = 1000;

/// Tells the collector which blobs are still referenced. The store knows nothing about the
/// projection; the caller answers, typically with one `SELECT ... WHERE content_hash =
/// ANY($1)` per batch.
///
/// Implemented for closures `Fn(&[BlobHash]) -> impl Future<Output = Result<HashSet<BlobHash>,
/// E>>` whose future does not borrow the slice (copy it first: `let h = hashes.to_vec();
/// async move { ... }`).
pub trait ReferenceCheck: Sync {
    /// Returns the subset of `hashes` that is still referenced.
    fn referenced(
        &self,
        hashes: &[BlobHash],
    ) -> impl Future<Output = Result<HashSet<BlobHash>, BoxError>> + Send;
}

impl<F, Fut, E> ReferenceCheck for F
where
    F: Fn(&[BlobHash]) -> Fut + Sync,
    Fut: Future<Output = Result<HashSet<BlobHash>, E>> + Send,
    E: Into<BoxError>,
{
    fn referenced(
        &self,
        hashes: &[BlobHash],
    ) -> impl Future<Output = Result<HashSet<BlobHash>, BoxError>> + Send {
        let fut = self(hashes);
        async move { fut.await.map_err(Into::into) }
    }
}

/// What one [`BlobStore::gc`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs looked at.
    pub scanned: u64,
    /// Unreferenced blobs deleted.
    pub deleted: u64,
    /// Temporary objects (abandoned uploads) deleted.
    pub temp_deleted: u64,
    /// Bytes freed by both kinds of deletion.
    pub bytes_freed: u64,
}

impl BlobStore {
    /// Deletes blobs that `check` reports unreferenced and whose last modification is older
    /// than `grace`, then temporary objects older than `grace`.
    ///
    /// The grace period protects writes in flight: a blob is stored *before* its event is
    /// appended and projected, so for a moment every new blob is unreferenced. Choose
    /// `grace` longer than the slowest upload plus the projection lag (an hour is a
    /// comfortable default). Recent blobs are not even sent to `check`.
    ///
    /// Each candidate is stat'ed again just before its deletion, and skipped if a put of
    /// the same content refreshed it in the meantime (see `put_stream`: deduplicated puts
    /// refresh the modification time).
    pub async fn gc<R: ReferenceCheck>(
        &self,
        check: &R,
        grace: Duration,
    ) -> Result<GcReport, GcError> {
        let op = &self.inner.op;
        let started = SystemTime::now();
        let mut report = GcReport::default();

        let mut lister = op.lister_with(BLOB_PREFIX).recursive(true).await?;
        let mut batch: Vec<(BlobHash, u64)> = Vec::with_capacity(GC_BATCH);
        while let Some(entry) = lister.try_next().await? {
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            report.scanned += 1;
            let hash = match BlobHash::from_hex(entry.name()) {
                Ok(h) if blob_key(&h) == entry.path() => h,
                _ => {
                    tracing::warn!(
                        path = entry.path(),
                        "foreign object under blobs/, left alone"
                    );
                    continue;
                }
            };
            if !is_older_than(meta, started, grace) {
                continue;
            }
            batch.push((hash, meta.content_length()));
            if batch.len() >= GC_BATCH {
                self.collect_batch(&mut batch, check, grace, &mut report)
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.collect_batch(&mut batch, check, grace, &mut report)
                .await?;
        }

        let mut lister = op.lister_with(TMP_PREFIX).recursive(true).await?;
        while let Some(entry) = lister.try_next().await? {
            let meta = entry.metadata();
            if meta.is_file() && is_older_than(meta, started, grace) {
                match op.delete(entry.path()).await {
                    Ok(()) => {
                        report.temp_deleted += 1;
                        report.bytes_freed += meta.content_length();
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        tracing::info!(
            scanned = report.scanned,
            deleted = report.deleted,
            temp_deleted = report.temp_deleted,
            bytes_freed = report.bytes_freed,
            "blob gc done"
        );
        Ok(report)
    }

    async fn collect_batch<R: ReferenceCheck>(
        &self,
        batch: &mut Vec<(BlobHash, u64)>,
        check: &R,
        grace: Duration,
        report: &mut GcReport,
    ) -> Result<(), GcError> {
        let op = &self.inner.op;
        let hashes: Vec<BlobHash> = batch.iter().map(|(h, _)| *h).collect();
        let referenced = check
            .referenced(&hashes)
            .await
            .map_err(GcError::ReferenceCheck)?;
        for (hash, _) in batch.drain(..) {
            if referenced.contains(&hash) {
                continue;
            }
            let key = blob_key(&hash);
            // Re-check the age: a deduplicated put may have refreshed it since the listing.
            let meta = match op.stat(&key).await {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if !is_older_than(&meta, SystemTime::now(), grace) {
                continue;
            }
            match op.delete(&key).await {
                Ok(()) => {
                    tracing::debug!(%hash, "unreferenced blob deleted");
                    report.deleted += 1;
                    report.bytes_freed += meta.content_length();
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Whether the object was last modified more than `grace` before `now`. Objects without a
/// modification time, or with one in the future (clock skew), count as recent: when in
/// doubt, keep.
fn is_older_than(meta: &Metadata, now: SystemTime, grace: Duration) -> bool {
    let Some(modified) = meta.last_modified() else {
        return false;
    };
    let modified: SystemTime = modified.into();
    now.duration_since(modified)
        .map(|age| age > grace)
        .unwrap_or(false)
}
