//! The projection of `user_moved` (docs/move.md, migration 0023): the user's move
//! away from this homeserver (`users.moved_to`, which the write path refuses on), or
//! their arrival here (`users.arrived_from`), and the event's one feed line.

use crate::{Result, account_deletion};
use domain::PublicKey;
use sqlx::{Postgres, Transaction};

/// What a `user_moved` event says.
pub(crate) struct Moved<'a> {
    pub from: &'a PublicKey,
    pub to: &'a PublicKey,
    /// True on the homeserver the user moved to.
    pub arrived: bool,
}

/// Applies one `user_moved` of `user` at `seq`: a file event (it moves the user's file
/// sequence, so a write that raced it conflicts and reads the move). The seal
/// (`arrived` false) refuses the user's writes from here on; the arrival clears the
/// seal of any earlier move away from here. One `MOVED` line in the feed.
pub(crate) async fn user_moved(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    seq: i64,
    ts: i64,
    moved: Moved<'_>,
) -> Result<()> {
    let done = sqlx::query(
        "WITH feed AS (
            INSERT INTO events (seq, owner, op, path, created_us, private, moved_to)
            SELECT $2, $1, 'MOVED', '/pub/', $3, false, $5
            WHERE EXISTS (SELECT 1 FROM users WHERE pubkey = $1)
            ON CONFLICT DO NOTHING
         )
         UPDATE users SET file_seq = $2,
            moved_to = CASE WHEN $4 THEN NULL ELSE $5 END,
            moved_us = CASE WHEN $4 THEN NULL ELSE $3 END,
            arrived_from = CASE WHEN $4 THEN $6 ELSE arrived_from END
         WHERE pubkey = $1",
    )
    .bind(user)
    .bind(seq)
    .bind(ts)
    .bind(moved.arrived)
    .bind(moved.to.to_z32())
    .bind(moved.from.to_z32())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        account_deletion::file_event_of_deleted(tx, user, seq).await?;
    }
    Ok(())
}
