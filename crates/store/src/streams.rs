//! Reads of the `events` projection for event streams (`/events-stream`, `/events-ws`):
//! the history phase of a subscription over several users and path filters.
//!
//! Like the public feed, these queries never serve past the watermark (the smallest
//! projector checkpoint), computed in the same statement, so a reader that resumes
//! from the last sequence it received cannot skip an event that is committed later
//! with a smaller sequence.
//!
//! Pages never end inside an event (see [`crate::feed`]): when the last row of a page
//! is not its event's last, the rest of that event's matching rows are added.
//!
//! Path filters are matched with range comparisons under `COLLATE "C"` instead of
//! `LIKE`, so `_` and `%` in a filter are literal and the `(owner, seq)` index still
//! drives the scan: a directory `/pub/a/` matches `path >= '/pub/a/' AND path < '/pub/a0'`
//! (`0` is the byte after `/`), a file matches by equality.

use crate::feed::{FEED_COLUMNS, FeedEvent, feed_event};
use crate::{Result, Store};
use domain::EventSeq;

/// One user of a stream and where its history resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    /// Raw z-base-32 key, as stored in `events.owner`.
    pub owner: String,
    /// Exclusive bound: events after it (ascending) or before it (descending).
    /// `None` means "from the start" (ascending) or "from the newest" (descending).
    pub cursor: Option<EventSeq>,
}

/// Which paths a stream wants. Empty `dirs` and `files` match nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathFilters {
    /// Canonical directory paths ending in `/`: prefix matches.
    pub dirs: Vec<String>,
    /// Canonical file paths: exact matches.
    pub files: Vec<String>,
}

impl PathFilters {
    /// The directory filters as `[lo, hi)` key ranges: the `$3`/`$4` arrays of the queries.
    fn dir_ranges(&self) -> (Vec<&str>, Vec<String>) {
        let lows = self.dirs.iter().map(String::as_str).collect();
        let highs = self.dirs.iter().map(|d| Self::upper_bound(d)).collect();
        (lows, highs)
    }

    /// The exclusive upper bound of the prefix range of `dir` (which ends in `/`).
    fn upper_bound(dir: &str) -> String {
        match dir.strip_suffix('/') {
            Some(stem) => format!("{stem}0"),
            // Not a directory path: an empty range.
            None => dir.to_owned(),
        }
    }
}

/// A stream cursor as the `bigint` the queries compare with: no cursor means from the
/// start (or, descending, from the end).
fn cursor_param(cursor: Option<EventSeq>, descending: bool) -> i64 {
    match (cursor, descending) {
        (Some(seq), _) => crate::seq_param(seq),
        (None, false) => 0,
        (None, true) => i64::MAX,
    }
}

/// The comparison after the cursor and the sort order of a scan.
fn direction(descending: bool) -> (&'static str, &'static str) {
    if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    }
}

impl Store {
    /// Up to `limit` file events of `users` matching `filters`, each strictly after
    /// (or, when `descending`, before) that user's cursor, and never past the
    /// watermark, merged over all users in sequence order.
    pub async fn stream_events(
        &self,
        users: &[UserCursor],
        filters: &PathFilters,
        descending: bool,
        limit: u32,
    ) -> Result<Vec<FeedEvent>> {
        if users.is_empty() || (filters.dirs.is_empty() && filters.files.is_empty()) {
            return Ok(Vec::new());
        }
        let owners: Vec<&str> = users.iter().map(|u| u.owner.as_str()).collect();
        let cursors: Vec<i64> = users
            .iter()
            .map(|u| cursor_param(u.cursor, descending))
            .collect();
        let (lows, highs) = filters.dir_ranges();
        // One LATERAL scan per user on the (owner, seq) index, each bounded by the
        // limit, then merged: cost is O(users * limit) whatever the table size.
        let (cmp, order) = direction(descending);
        let sql = format!(
            "WITH w AS (SELECT coalesce(min(last_seq), 0) AS w FROM projector_checkpoints)
             SELECT e.*
             FROM unnest($1::text[], $2::bigint[]) AS c(owner, cur)
             CROSS JOIN LATERAL (
                SELECT ev.seq, ev.line, ev.lines, ev.owner, ev.op, ev.path, ev.content_hash,
                       ev.created_us, ev.merkle_root, ev.moved_to
                FROM events ev, w
                WHERE ev.owner = c.owner COLLATE \"C\"
                  AND ev.seq {cmp} c.cur
                  AND ev.seq <= w.w
                  AND (ev.path = ANY($5::text[])
                       OR EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS d(lo, hi)
                                  WHERE ev.path >= d.lo COLLATE \"C\"
                                    AND ev.path < d.hi COLLATE \"C\"))
                ORDER BY ev.seq {order}, ev.line {order}
                LIMIT $6
             ) e
             ORDER BY e.seq {order}, e.line {order}
             LIMIT $6"
        );
        let rows = sqlx::query(&sql)
            .bind(&owners)
            .bind(&cursors)
            .bind(&lows)
            .bind(&highs)
            .bind(&filters.files)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        self.finish_last_event(
            rows.into_iter().map(feed_event).collect(),
            filters,
            descending,
        )
        .await
    }

    /// Up to `limit` file events of *every* user matching `filters`, strictly after
    /// (or, when `descending`, before) `cursor`, never past the watermark: the
    /// operator's stream (admin API), which follows the whole server with one cursor.
    pub async fn stream_all_events(
        &self,
        cursor: Option<EventSeq>,
        filters: &PathFilters,
        descending: bool,
        limit: u32,
    ) -> Result<Vec<FeedEvent>> {
        if filters.dirs.is_empty() && filters.files.is_empty() {
            return Ok(Vec::new());
        }
        let cursor = cursor_param(cursor, descending);
        let (lows, highs) = filters.dir_ranges();
        let (cmp, order) = direction(descending);
        // The primary key on seq drives the scan.
        let sql = format!(
            "WITH w AS (SELECT coalesce(min(last_seq), 0) AS w FROM projector_checkpoints)
             SELECT {FEED_COLUMNS}
             FROM events ev, w
             WHERE ev.seq {cmp} $1
               AND ev.seq <= w.w
               AND (ev.path = ANY($4::text[])
                    OR EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS d(lo, hi)
                               WHERE ev.path >= d.lo COLLATE \"C\"
                                 AND ev.path < d.hi COLLATE \"C\"))
             ORDER BY ev.seq {order}, ev.line {order}
             LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(cursor)
            .bind(&lows)
            .bind(&highs)
            .bind(&filters.files)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        self.finish_last_event(
            rows.into_iter().map(feed_event).collect(),
            filters,
            descending,
        )
        .await
    }

    /// `page` with the rows of its last event that it lacks and `filters` match added:
    /// those after the last row's line (before it, when `descending`). One event has
    /// one owner, so the owner needs no check here.
    async fn finish_last_event(
        &self,
        mut page: Vec<FeedEvent>,
        filters: &PathFilters,
        descending: bool,
    ) -> Result<Vec<FeedEvent>> {
        let Some(last) = page.last() else {
            return Ok(page);
        };
        let complete = if descending {
            last.line == 0
        } else {
            last.ends_event()
        };
        if complete {
            return Ok(page);
        }
        let (lows, highs) = filters.dir_ranges();
        let (cmp, order) = direction(descending);
        let sql = format!(
            "SELECT {FEED_COLUMNS} FROM events ev
             WHERE ev.seq = $1 AND ev.line {cmp} $2
               AND (ev.path = ANY($5::text[])
                    OR EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS d(lo, hi)
                               WHERE ev.path >= d.lo COLLATE \"C\"
                                 AND ev.path < d.hi COLLATE \"C\"))
             ORDER BY ev.line {order}"
        );
        let rest = sqlx::query(&sql)
            .bind(crate::seq_param(last.seq))
            .bind(i64::from(last.line))
            .bind(&lows)
            .bind(&highs)
            .bind(&filters.files)
            .fetch_all(&self.pool)
            .await?;
        page.extend(rest.into_iter().map(feed_event));
        Ok(page)
    }

    /// The sequence of the event created at exactly `created_us`, for legacy
    /// timestamp cursors (spec §6). The smallest one if several share the time.
    pub async fn event_seq_at(&self, created_us: u64) -> Result<Option<EventSeq>> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT min(seq) FROM events WHERE created_us = $1")
                .bind(i64::try_from(created_us).unwrap_or(i64::MAX))
                .fetch_one(&self.pool)
                .await?;
        Ok(seq.map(|s| EventSeq(s.max(0) as u64)))
    }

    /// Which of `owners` (raw z32) have an account.
    pub async fn existing_users(&self, owners: &[String]) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT pubkey FROM users WHERE pubkey = ANY($1::text[])")
                .bind(owners)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_ranges_end_at_the_byte_after_the_slash() {
        assert_eq!(PathFilters::upper_bound("/pub/a/"), "/pub/a0");
        assert_eq!(PathFilters::upper_bound("/pub/a_%/"), "/pub/a_%0");
        assert_eq!(PathFilters::upper_bound("/pub/x"), "/pub/x");
    }
}
