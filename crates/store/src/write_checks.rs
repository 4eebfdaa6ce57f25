//! What a file write is checked against, read in one round trip.
//!
//! A `PUT` needs the user's row (existence, disabled, quota, write paths, the sequence
//! it appends after), the live storage lock on the path, whether a file or directory
//! is in the way, and the path's current entry (for `If-Match` and the quota of a
//! replacement). Read one by one they were four queries, each a round trip, and a
//! `PUT` reads them twice (before the body, and under the user's lock); one statement
//! reads them all from the same snapshot.

use crate::entries::dir_end;
use crate::users::{UserRow, user_columns, user_row};
use crate::{Result, Store};
use domain::PublicKey;
use sqlx::Row;

/// The state a write of one path is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteChecks {
    pub user: UserRow,
    /// SHA-256 of the token of the path's live lock, if any.
    pub live_lock: Option<[u8; 32]>,
    /// True when entries lie under `path/`, or an ancestor directory is a file.
    pub collides: bool,
    /// The path's projected entry: content hash and size.
    pub entry: Option<([u8; 32], u64)>,
}

impl Store {
    /// The checks of a write of `owner`'s `path` at `now_us`; `None` for an unknown
    /// user. `ancestors` are the path's directories, without trailing `/`.
    pub async fn write_checks(
        &self,
        owner: &PublicKey,
        path: &str,
        ancestors: &[String],
        now_us: u64,
    ) -> Result<Option<WriteChecks>> {
        let dir = format!("{path}/");
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ",
               (SELECT token_hash FROM entry_locks
                 WHERE owner = $1 AND path = $2 AND expires_us > $6) AS live_lock,
               (EXISTS (SELECT 1 FROM entries WHERE owner = $1 AND path >= $3 AND path < $4)
                 OR EXISTS (SELECT 1 FROM entries WHERE owner = $1 AND path = ANY($5)))
                 AS collides,
               e.content_hash AS entry_hash, e.size AS entry_size
             FROM users u
             LEFT JOIN entries e ON e.owner = u.pubkey AND e.path = $2
             WHERE u.pubkey = $1"
        ))
        .bind(owner.to_z32())
        .bind(path)
        .bind(&dir)
        .bind(dir_end(&dir))
        .bind(ancestors)
        .bind(crate::micros_to_i64(now_us))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let hash = |column: &str| -> Result<Option<[u8; 32]>> {
            row.try_get::<Option<Vec<u8>>, _>(column)?
                .map(|bytes| {
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| crate::StoreError::Corrupt(format!("{column} of {path}")))
                })
                .transpose()
        };
        let entry = match (
            hash("entry_hash")?,
            row.try_get::<Option<i64>, _>("entry_size")?,
        ) {
            (Some(hash), Some(size)) => Some((hash, size.max(0) as u64)),
            _ => None,
        };
        Ok(Some(WriteChecks {
            user: user_row(&row),
            live_lock: hash("live_lock")?,
            collides: row.try_get("collides")?,
            entry,
        }))
    }
}
