//! Reads of the `events` projection: the public feed.
//!
//! A feed never serves past the watermark, the position up to which every event is
//! projected, so a reader following the cursor cannot skip an event that is committed
//! later with a smaller sequence. And a page never ends inside an event: an event that
//! changes several files (an account deletion) has one row per file, the cursor is the
//! event's sequence, so a page cut after some of its rows would make a reader resuming
//! from that sequence miss the rest.

use crate::{Result, Store};
use domain::EventSeq;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub seq: EventSeq,
    /// This row's place among the file changes of its event (0 for most events, which
    /// change one file) and how many the event has.
    pub line: u32,
    pub lines: u32,
    pub owner: String,
    /// `PUT`, `DEL` or `MOVED` (the user moved: see `moved_to`).
    pub op: String,
    pub path: String,
    pub content_hash: Option<[u8; 32]>,
    pub created_us: u64,
    /// The root of the owner's tree (public or private, as the path) right after this
    /// event; `None` for events projected before the trees existed.
    pub merkle_root: Option<[u8; 32]>,
    /// On a `MOVED` line: the homeserver (z32 key) the user lives on from then on.
    pub moved_to: Option<String>,
}

impl FeedEvent {
    /// Whether this is the last row of its event: only there may a stream say that the
    /// reader has everything up to `seq` (an SSE `id:`).
    pub fn ends_event(&self) -> bool {
        self.line + 1 >= self.lines
    }
}

/// The columns [`feed_event`] reads.
pub(crate) const FEED_COLUMNS: &str =
    "seq, line, lines, owner, op, path, content_hash, created_us, merkle_root, moved_to";

impl Store {
    /// Public (`/pub/`) events with `seq > after`, up to the watermark, ascending.
    /// At least `limit` rows when there are that many, more only to finish the last
    /// event (see the module docs).
    pub async fn public_events(&self, after: EventSeq, limit: u32) -> Result<Vec<FeedEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {FEED_COLUMNS} FROM events
             WHERE NOT private AND seq > $1
               AND seq <= (SELECT coalesce(min(last_seq), 0) FROM projector_checkpoints)
             ORDER BY seq, line LIMIT $2"
        ))
        .bind(crate::seq_param(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut page: Vec<FeedEvent> = rows.into_iter().map(feed_event).collect();
        if let Some(last) = page.last().filter(|last| !last.ends_event()) {
            let rest = sqlx::query(&format!(
                "SELECT {FEED_COLUMNS} FROM events
                 WHERE seq = $1 AND line > $2 AND NOT private ORDER BY line"
            ))
            .bind(crate::seq_param(last.seq))
            .bind(i64::from(last.line))
            .fetch_all(&self.pool)
            .await?;
            page.extend(rest.into_iter().map(feed_event));
        }
        Ok(page)
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
        line: row.get::<i32, _>("line").max(0) as u32,
        lines: row.get::<i32, _>("lines").max(1) as u32,
        owner: row.get("owner"),
        op: row.get("op"),
        path: row.get("path"),
        content_hash: hash.and_then(|h| h.try_into().ok()),
        created_us: row.get::<i64, _>("created_us") as u64,
        merkle_root: row
            .get::<Option<Vec<u8>>, _>("merkle_root")
            .and_then(|h| h.try_into().ok()),
        moved_to: row.get("moved_to"),
    }
}
