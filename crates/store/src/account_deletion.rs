//! Projecting `account_deleted`: one event that ends a whole account.
//!
//! Why one event and not a `file_deleted` per file: deleting file by file is what fails
//! part-way on large accounts (the reference's users asked for this), and a half-deleted
//! account is worse than either state. One event is atomic on the log, and its
//! projection is one transaction with the checkpoint, like every other event.
//!
//! What it does, in the projector's transaction:
//! - the user's history rows in `events` (every earlier `PUT`/`DEL` of the user) go, so
//!   no old version stays readable or keeps its blob from the garbage collector, and each
//!   file the user still had becomes a `DEL` line of this event (`line`/`lines`, path
//!   order), which is how the feeds show the deletion;
//! - entries, Merkle trees (nodes, roots, root history), cookie sessions and bearer
//!   sessions go; grants stay, revoked, so an app holding one cannot come back if the key
//!   signs up again;
//! - the user row goes (its quota with it), and a tombstone in `deleted_users` keeps the
//!   two sequences of the user's subjects, which a later signup of the same key needs
//!   (the log keeps those subjects).
//!
//! A file write that raced the deletion (it was validated before and appended after it,
//! on the file subject) finds no user when projected: it changes nothing and shows in no
//! feed, and only moves the tombstone's file sequence ([`file_event_of_deleted`]).

use crate::Result;
use sqlx::{Postgres, Transaction};

/// Applies the `account_deleted` event `seq` of `user` (z32) at time `ts` (µs).
pub(crate) async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    seq: i64,
    ts: i64,
) -> Result<()> {
    // History first, then the current files as this event's lines: one statement reads
    // the entries it deletes and numbers them in path order.
    sqlx::query("DELETE FROM events WHERE owner = $1 AND seq < $2")
        .bind(user)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "WITH gone AS (DELETE FROM entries WHERE owner = $1 RETURNING path),
         numbered AS (
            SELECT path, (row_number() OVER (ORDER BY path) - 1)::int AS line,
                   (count(*) OVER ())::int AS lines
            FROM gone
         )
         INSERT INTO events (seq, line, lines, owner, op, path, content_hash, created_us,
                             private, merkle_root)
         SELECT $2, line, lines, $1, 'DEL', path, NULL, $3, starts_with(path, '/priv/'), $4
         FROM numbered
         ON CONFLICT DO NOTHING",
    )
    .bind(user)
    .bind(seq)
    .bind(ts)
    // Every line carries the root after the whole event: both trees are empty.
    .bind(vec![0u8; 32])
    .execute(&mut **tx)
    .await?;
    for table in [
        "merkle_nodes",
        "merkle_roots",
        "merkle_root_history",
        "cookie_sessions",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE owner = $1"))
            .bind(user)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "DELETE FROM grant_sessions
         WHERE grant_id IN (SELECT grant_id FROM grants WHERE owner = $1)",
    )
    .bind(user)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE grants SET revoked_us = $2 WHERE owner = $1 AND revoked_us IS NULL")
        .bind(user)
        .bind(ts)
        .execute(&mut **tx)
        .await?;
    // The tombstone: the account subject's last sequence is this event; the file
    // subject's is the user's (or an earlier tombstone's, for a user already gone).
    sqlx::query(
        "INSERT INTO deleted_users (pubkey, seq, file_seq, deleted_us)
         VALUES ($1, $2, COALESCE((SELECT file_seq FROM users WHERE pubkey = $1),
                                  (SELECT file_seq FROM deleted_users WHERE pubkey = $1), 0), $3)
         ON CONFLICT (pubkey) DO UPDATE SET seq = excluded.seq, file_seq = excluded.file_seq,
                                            deleted_us = excluded.deleted_us",
    )
    .bind(user)
    .bind(seq)
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM users WHERE pubkey = $1")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A file event `seq` of a user without a row: if the account was deleted, the file
/// subject's last sequence moves on in the tombstone (a signup of the key needs it).
pub(crate) async fn file_event_of_deleted(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    seq: i64,
) -> Result<()> {
    sqlx::query("UPDATE deleted_users SET file_seq = $2 WHERE pubkey = $1 AND file_seq < $2")
        .bind(user)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl crate::Store {
    /// The account-subject sequence of `user`'s deleted account (its `account_deleted`
    /// event), if the key had an account that was deleted and has not signed up since:
    /// what a signup of the key appends after.
    pub async fn deleted_account_seq(
        &self,
        user: &domain::PublicKey,
    ) -> Result<Option<domain::EventSeq>> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM deleted_users WHERE pubkey = $1")
                .bind(user.to_z32())
                .fetch_optional(&self.pool)
                .await?;
        Ok(seq.map(|s| domain::EventSeq(s.max(0) as u64)))
    }

    /// Every feed line of event `seq` (public and private), in line order: the live
    /// fan-out relays an event that changes several files from these rows, since the
    /// log's event does not list the files.
    pub async fn event_lines(&self, seq: domain::EventSeq) -> Result<Vec<crate::feed::FeedEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM events WHERE seq = $1 ORDER BY line",
            crate::feed::FEED_COLUMNS
        ))
        .bind(crate::seq_param(seq))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(crate::feed::feed_event).collect())
    }
}
