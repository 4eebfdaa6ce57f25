//! Version history: the file events of one path, read from the `events` projection.
//!
//! Every `PUT` row of `events` is one version of its path and its blob is
//! content-addressed, so an old version is served from the same blob store as the
//! current one for as long as blob GC keeps it. A version stays readable until the
//! retention has passed since it was replaced (the time of the path's next event);
//! the current version always is. The rule lives here twice, as
//! [`VersionRow::readable`] for the endpoints and as SQL for [`Store::referenced_hashes`],
//! next to each other so they cannot drift apart unnoticed.

use crate::{Result, Store, StoreError, micros_to_i64, seq_param};
use domain::{EventSeq, PublicKey};
use sqlx::Row;
use std::time::Duration;

/// One event of a path's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub seq: EventSeq,
    /// A `DEL` event: marks where the file was deleted; it has no content.
    pub deleted: bool,
    pub content_hash: Option<[u8; 32]>,
    /// As written; `None` for deletions and for old rows projected before the column
    /// existed (the blob's size is the same thing).
    pub content_length: Option<u64>,
    pub content_type: Option<String>,
    pub created_us: u64,
    /// When the path's next event happened, i.e. when this version stopped being
    /// current; `None` for the path's latest event.
    pub replaced_us: Option<u64>,
}

impl VersionRow {
    /// The path's latest event: for a `PUT`, the version a file read serves.
    pub fn is_current(&self) -> bool {
        self.replaced_us.is_none()
    }

    /// Whether this version's content may be read at `now_us` under `retention`.
    pub fn readable(&self, now_us: u64, retention: Duration) -> bool {
        if self.deleted {
            return false;
        }
        match self.replaced_us {
            None => true,
            Some(replaced) => replaced.saturating_add(micros(retention)) > now_us,
        }
    }
}

/// The columns of a [`VersionRow`] from `events e`, with the time of the next event of
/// the same path found by one probe of `events_owner_path_seq`.
const COLUMNS: &str = "e.seq, e.op, e.content_hash, e.content_length, e.content_type, e.created_us,
     (SELECT n.created_us FROM events n
      WHERE n.owner = e.owner AND n.path = e.path AND n.seq > e.seq
      ORDER BY n.seq LIMIT 1) AS replaced_us";

impl Store {
    /// The events of `path`, newest first, strictly before `before` when given.
    pub async fn versions(
        &self,
        owner: &PublicKey,
        path: &str,
        before: Option<EventSeq>,
        limit: u32,
    ) -> Result<Vec<VersionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events e
             WHERE e.owner = $1 AND e.path = $2 AND ($3::bigint IS NULL OR e.seq < $3)
             ORDER BY e.seq DESC LIMIT $4"
        ))
        .bind(owner.to_z32())
        .bind(path)
        .bind(before.map(seq_param))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(version_row).collect()
    }

    /// The event `seq` when it is one of `path`'s.
    pub async fn version(
        &self,
        owner: &PublicKey,
        path: &str,
        seq: EventSeq,
    ) -> Result<Option<VersionRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events e WHERE e.seq = $3 AND e.owner = $1 AND e.path = $2"
        ))
        .bind(owner.to_z32())
        .bind(path)
        .bind(seq_param(seq))
        .fetch_optional(&self.pool)
        .await?;
        row.map(version_row).transpose()
    }

    /// True when `path` has at least one event (a history to speak of).
    pub async fn has_versions(&self, owner: &PublicKey, path: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE owner = $1 AND path = $2)",
        )
        .bind(owner.to_z32())
        .bind(path)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Of `hashes`, the ones still referenced (for blob garbage collection): by an entry,
    /// or by a version readable at `now_us` under `retention` (the rule of
    /// [`VersionRow::readable`]).
    pub async fn referenced_hashes(
        &self,
        hashes: &[[u8; 32]],
        retention: Duration,
        now_us: u64,
    ) -> Result<Vec<[u8; 32]>> {
        let hashes: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
        let oldest_kept = micros_to_i64(now_us).saturating_sub(micros_to_i64(micros(retention)));
        // Per candidate: an entry first, else the first PUT event of that content whose
        // version is still within the retention (both EXISTS stop at the first hit).
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT h FROM unnest($1::bytea[]) AS h
             WHERE EXISTS (SELECT 1 FROM entries WHERE content_hash = h)
                OR EXISTS (
                    SELECT 1 FROM events e
                    WHERE e.content_hash = h AND e.op = 'PUT'
                      AND coalesce((SELECT n.created_us FROM events n
                                    WHERE n.owner = e.owner AND n.path = e.path
                                      AND n.seq > e.seq
                                    ORDER BY n.seq LIMIT 1), $2) > $3)",
        )
        .bind(&hashes)
        .bind(i64::MAX)
        .bind(oldest_kept)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(|h| h.try_into().ok()).collect())
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn version_row(row: sqlx::postgres::PgRow) -> Result<VersionRow> {
    let hash: Option<Vec<u8>> = row.get("content_hash");
    let content_hash = hash
        .map(|h| {
            <[u8; 32]>::try_from(h)
                .map_err(|_| StoreError::Corrupt("content hash is not 32 bytes".into()))
        })
        .transpose()?;
    Ok(VersionRow {
        seq: EventSeq(row.get::<i64, _>("seq") as u64),
        deleted: row.get::<String, _>("op") == "DEL",
        content_hash,
        content_length: row
            .get::<Option<i64>, _>("content_length")
            .map(|n| n as u64),
        content_type: row.get("content_type"),
        created_us: row.get::<i64, _>("created_us") as u64,
        replaced_us: row.get::<Option<i64>, _>("replaced_us").map(|n| n as u64),
    })
}
