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
    /// The root of the owner's tree (public or private, as the path) right after this
    /// event; `None` for events projected before the trees existed.
    pub merkle_root: Option<[u8; 32]>,
}

impl Store {
    /// Public (`/pub/`) events with `seq > after`, up to the watermark, ascending.
    pub async fn public_events(&self, after: EventSeq, limit: u32) -> Result<Vec<FeedEvent>> {
        let rows = sqlx::query(
            "SELECT seq, owner, op, path, content_hash, created_us, merkle_root FROM events
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

    /// The Merkle roots recorded on file events with `after < seq <= upto`, ascending,
    /// at most `limit` of them: the live fan-out reads roots this way, a projected
    /// batch at a time, because the events it relays come from the log, before the
    /// projector has computed their roots.
    pub async fn event_roots(
        &self,
        after: EventSeq,
        upto: EventSeq,
        limit: u32,
    ) -> Result<Vec<(EventSeq, [u8; 32])>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, merkle_root FROM events
             WHERE seq > $1 AND seq <= $2 AND merkle_root IS NOT NULL
             ORDER BY seq LIMIT $3",
        )
        .bind(crate::seq_param(after))
        .bind(crate::seq_param(upto))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(seq, root)| Some((EventSeq(seq as u64), root.try_into().ok()?)))
            .collect())
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
        merkle_root: row
            .get::<Option<Vec<u8>>, _>("merkle_root")
            .and_then(|h| h.try_into().ok()),
    }
}
