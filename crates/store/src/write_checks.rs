//! What a file write is checked against, read in one round trip.
//!
//! A `PUT` needs the user's row (existence, disabled, quota, write paths, the sequence
//! it appends after), the live locks guarding the path, whether a file or directory
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
    /// The live locks that may guard the path.
    pub locks: LockGuards,
    /// True when entries lie under `path/`, or an ancestor directory is a file.
    pub collides: bool,
    /// The path's projected entry: content hash and size.
    pub entry: Option<([u8; 32], u64)>,
}

/// The token hashes of the live locks that may guard a written path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGuards {
    /// Locks covering the path: rooted at it, or of depth infinity on one of its
    /// folders.
    pub covering: Vec<[u8; 32]>,
    /// Depth-0 locks of the path's folder, which guard the folder's members: they
    /// count when the write adds or removes the file.
    pub folder: Vec<[u8; 32]>,
}

impl LockGuards {
    /// The tokens one of which the write must present (`domain::lock::guarding`);
    /// `membership` when it creates the file.
    pub fn of_write(&self, membership: bool) -> Vec<[u8; 32]> {
        let mut guards = self.covering.clone();
        if membership {
            guards.extend_from_slice(&self.folder);
        }
        guards
    }
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
        let folders = crate::locks::ancestor_dirs(path);
        let parent = folders.last().cloned().unwrap_or_default();
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ",
               ARRAY(SELECT token_hash FROM entry_locks
                 WHERE owner = $1 AND expires_us > $6
                   AND (path = $2 OR (deep AND path = ANY($7)))) AS locks,
               ARRAY(SELECT token_hash FROM entry_locks
                 WHERE owner = $1 AND expires_us > $6 AND path = $8 AND NOT deep)
                 AS folder_locks,
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
        .bind(&folders)
        .bind(&parent)
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
        let hashes = |column: &str| -> Result<Vec<[u8; 32]>> {
            row.try_get::<Vec<Vec<u8>>, _>(column)?
                .into_iter()
                .map(|bytes| crate::locks::token_hash(bytes, path))
                .collect()
        };
        Ok(Some(WriteChecks {
            user: user_row(&row),
            locks: LockGuards {
                covering: hashes("locks")?,
                folder: hashes("folder_locks")?,
            },
            collides: row.try_get("collides")?,
            entry,
        }))
    }
}
