//! Reads of the `entry_locks` projection (storage locks, `webdav-locks`).
//!
//! The rows are written only by the projector, from the lock events; the write path
//! reads them after it read the user's row, so a lock it sees is never older than the
//! user's file sequence it appends after (a newer one only makes the append conflict
//! and re-read).

use crate::{Result, Store};
use domain::PublicKey;
use sqlx::Row;

/// The lock row of one path, live or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    /// End of the lock, microseconds since the Unix epoch.
    pub expires_us: u64,
}

impl LockRow {
    pub fn is_live(&self, now_us: u64) -> bool {
        self.expires_us > now_us
    }
}

impl Store {
    /// The lock row of `owner`'s `path`, expired or not.
    pub async fn lock_row(&self, owner: &PublicKey, path: &str) -> Result<Option<LockRow>> {
        let row = sqlx::query(
            "SELECT token_hash, expires_us FROM entry_locks WHERE owner = $1 AND path = $2",
        )
        .bind(owner.to_z32())
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let hash: Vec<u8> = row.try_get("token_hash")?;
            let token_hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                crate::StoreError::Corrupt(format!("entry_locks.token_hash of {path}"))
            })?;
            Ok(LockRow {
                token_hash,
                expires_us: row.try_get::<i64, _>("expires_us")?.max(0) as u64,
            })
        })
        .transpose()
    }

    /// The hash of the live lock's token on `owner`'s `path` at `now_us`, if any.
    pub async fn live_lock(
        &self,
        owner: &PublicKey,
        path: &str,
        now_us: u64,
    ) -> Result<Option<[u8; 32]>> {
        Ok(self
            .lock_row(owner, path)
            .await?
            .filter(|row| row.is_live(now_us))
            .map(|row| row.token_hash))
    }
}
