//! Reads of the `entry_locks` projection (storage locks, `webdav-locks`, and the
//! shared and folder locks WebDAV adds).
//!
//! The rows are written only by the projector, from the lock events; the write path
//! reads them after it read the user's row, so a lock it sees is never older than the
//! user's file sequence it appends after (a newer one only makes the append conflict
//! and re-read).

use crate::entries::dir_end;
use crate::{Result, Store};
use domain::PublicKey;
use domain::lock::HeldLock;
use sqlx::Row;

/// One lock row: the lock as the rules see it, its end and what discovery shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    pub lock: HeldLock,
    /// End of the lock, microseconds since the Unix epoch.
    pub expires_us: u64,
    /// The request's `DAV:owner` element (WebDAV), self-contained.
    pub lock_owner: Option<String>,
}

/// The folders `path` lies in, each ending with `/`, from the root down (`/`,
/// `/pub/`, …); a folder path is not its own.
pub fn ancestor_dirs(path: &str) -> Vec<String> {
    let trimmed = path.trim_end_matches('/');
    trimmed
        .match_indices('/')
        .map(|(slash, _)| trimmed[..=slash].to_string())
        .collect()
}

pub(crate) fn token_hash(bytes: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| crate::StoreError::Corrupt(format!("entry_locks.token_hash of {what}")))
}

impl Store {
    /// The locks of `owner` that ended after `after_us` (0: every row, expired or not)
    /// and that bear on `path` (a file path, or a folder path ending with `/`): rooted
    /// at one of its folders, at the path itself (as a file or a folder), or under it.
    /// What a lock, an unlock, a folder operation or a discovery of `path` decides on.
    pub async fn locks_around(
        &self,
        owner: &PublicKey,
        path: &str,
        after_us: u64,
    ) -> Result<Vec<LockRow>> {
        let file = path.trim_end_matches('/');
        let dir = format!("{file}/");
        let mut exact = ancestor_dirs(path);
        exact.push(file.to_string());
        let rows = sqlx::query(
            "SELECT path, token_hash, expires_us, shared, deep, lock_owner FROM entry_locks
             WHERE owner = $1 AND expires_us > $2
               AND (path = ANY($3) OR (path >= $4 AND path < $5))
             ORDER BY path, token_hash",
        )
        .bind(owner.to_z32())
        .bind(crate::micros_to_i64(after_us))
        .bind(&exact)
        .bind(&dir)
        .bind(dir_end(&dir))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let path: String = row.try_get("path")?;
                Ok(LockRow {
                    lock: HeldLock {
                        token_hash: token_hash(row.try_get("token_hash")?, &path)?,
                        shared: row.try_get("shared")?,
                        deep: row.try_get("deep")?,
                        path,
                    },
                    expires_us: row.try_get::<i64, _>("expires_us")?.max(0) as u64,
                    lock_owner: row.try_get("lock_owner")?,
                })
            })
            .collect()
    }

    /// [`Store::locks_around`] of the locks live at `now_us`, as the rules see them.
    pub async fn live_locks_around(
        &self,
        owner: &PublicKey,
        path: &str,
        now_us: u64,
    ) -> Result<Vec<HeldLock>> {
        Ok(self
            .locks_around(owner, path, now_us)
            .await?
            .into_iter()
            .map(|row| row.lock)
            .collect())
    }

    /// Whether `owner` has a lock rooted at `path` with this token, expired or not.
    pub async fn lock_exists(
        &self,
        owner: &PublicKey,
        path: &str,
        token_hash: &[u8; 32],
    ) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM entry_locks
             WHERE owner = $1 AND path = $2 AND token_hash = $3)",
        )
        .bind(owner.to_z32())
        .bind(path)
        .bind(&token_hash[..])
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ancestors_run_from_the_root_down() {
        assert_eq!(
            super::ancestor_dirs("/pub/a/b.txt"),
            ["/", "/pub/", "/pub/a/"]
        );
        assert_eq!(super::ancestor_dirs("/pub/a/"), ["/", "/pub/"]);
        assert_eq!(super::ancestor_dirs("/"), Vec::<String>::new());
    }
}
