//! Reads of the `users` projection.

use crate::{Result, Store};
use domain::{EventSeq, PublicKey};
use sqlx::Row;

/// The columns [`user_row`] reads, of `users u`, for queries that select a user beside
/// other things. A macro, so that queries are `concat!`ed at compile time rather than
/// formatted on every request.
macro_rules! user_columns {
    () => {
        "u.pubkey, u.created_us, u.disabled, u.used_bytes, u.storage_quota_mb, \
         u.allowed_write_paths, u.rate_read, u.rate_write, u.file_seq, u.acct_seq, u.moved_to"
    };
}
pub(crate) use user_columns;

/// A user as the write path sees it: existence, limits, usage and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub pubkey: String,
    pub created_us: i64,
    pub disabled: bool,
    pub used_bytes: i64,
    /// `None`: the server default; `Some(-1)`: unlimited.
    pub storage_quota_mb: Option<i64>,
    pub allowed_write_paths: Option<Vec<String>>,
    pub rate_read: Option<String>,
    pub rate_write: Option<String>,
    /// Last event on the user's file subject.
    pub file_seq: EventSeq,
    /// Last event on the user's account subject.
    pub acct_seq: EventSeq,
    /// The homeserver (z32 key) the user moved to: their writes are refused here
    /// (docs/move.md).
    pub moved_to: Option<String>,
}

impl Store {
    pub async fn user(&self, user: &PublicKey) -> Result<Option<UserRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.pubkey = $1"
        ))
        .bind(user.to_z32())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_row))
    }
}

pub(crate) fn user_row(row: &sqlx::postgres::PgRow) -> UserRow {
    UserRow {
        pubkey: row.get("pubkey"),
        created_us: row.get("created_us"),
        disabled: row.get("disabled"),
        used_bytes: row.get("used_bytes"),
        storage_quota_mb: row.get("storage_quota_mb"),
        allowed_write_paths: row
            .get::<Option<serde_json::Value>, _>("allowed_write_paths")
            .and_then(|v| serde_json::from_value(v).ok()),
        rate_read: row.get("rate_read"),
        rate_write: row.get("rate_write"),
        file_seq: EventSeq(row.get::<i64, _>("file_seq") as u64),
        acct_seq: EventSeq(row.get::<i64, _>("acct_seq") as u64),
        moved_to: row.get("moved_to"),
    }
}

impl Store {
    /// Bytes counted against all users' quotas together (each user's `used_bytes`: file
    /// sizes plus the per-entry overhead; a blob shared by two files counts twice): the
    /// `storage_used_bytes` gauge.
    pub async fn total_used_bytes(&self) -> Result<u64> {
        let total: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(used_bytes), 0)::BIGINT FROM users")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Every user's public key, disabled ones included, in key order; not the users who
    /// moved to another homeserver (docs/move.md).
    ///
    /// For the PKARR republisher: a user's `_pubky` record names this homeserver whether
    /// or not an operator has disabled the account for now, and letting the record lapse
    /// on the DHT would make re-enabling pointless. A user who moved away is the new
    /// homeserver's to republish: an old record of ours republished from here could
    /// only compete with the one that names it. One column, no paging: even a million
    /// keys are ~53 MB of z-base-32 once an hour, far below the cost of the DHT work the
    /// republisher then does for each of them.
    pub async fn user_keys(&self) -> Result<Vec<PublicKey>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT pubkey FROM users WHERE moved_to IS NULL ORDER BY pubkey")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|z32| {
                PublicKey::try_from(z32.as_str())
                    .map_err(|e| crate::StoreError::Corrupt(format!("users.pubkey {z32:?}: {e}")))
            })
            .collect()
    }
}
