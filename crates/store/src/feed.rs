//! Reads of the `events` projection: the public feed.
//!
//! A feed never serves past the watermark, the position up to which every event is
//! projected, so a reader following the cursor cannot skip an event that is committed
//! later with a smaller sequence.

use crate::{Result, Store};
use domain::EventSeq;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub seq: EventSeq,
    pub owner: String,
    /// `PUT` or `DEL`.
    pub op: String,
    pub path: String,
    pub content_hash: Option<[u8; 32]>,
    pub created_us: u64,
}

impl Store {
    /// Public (`/pub/`) events with `seq > after`, up to the watermark, ascending.
    pub async fn public_events(&self, after: EventSeq, limit: u32) -> Result<Vec<FeedEvent>> {
        let rows = sqlx::query(
            "SELECT seq, owner, op, path, content_hash, created_us FROM events
             WHERE NOT private AND seq > $1
               AND seq <= (SELECT coalesce(min(last_seq), 0) FROM projector_checkpoints)
             ORDER BY seq LIMIT $2",
        )
        .bind(crate::seq_param(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(feed_event).collect())
    }
}

pub(crate) fn feed_event(row: sqlx::postgres::PgRow) -> FeedEvent {
    let hash: Option<Vec<u8>> = row.get("content_hash");
    FeedEvent {
        seq: EventSeq(row.get::<i64, _>("seq") as u64),
        owner: row.get("owner"),
        op: row.get("op"),
        path: row.get("path"),
        content_hash: hash.and_then(|h| h.try_into().ok()),
        created_us: row.get::<i64, _>("created_us") as u64,
    }
}
