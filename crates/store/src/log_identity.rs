//! The recorded identity of the log the projections follow (see
//! `domain::log_identity` for why), and the projections' checkpoint with the id of
//! the event it stands on.

use crate::{Result, Store, seq_param};
use domain::EventSeq;
use domain::log_identity::{Checkpoint, FirstEvent, LogIdentity, RecordedLog};
use sqlx::Row;

/// See [`Store::log_marks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogMarks {
    /// A short, stable name of the log the projections follow: it changes exactly when
    /// the log is replaced, so a feed reader that sees it change knows its cursor
    /// belongs to another log.
    pub id: Option<String>,
    /// The last sequence of a re-seed's re-stated events, if the log began with one.
    pub reseeded_through: Option<EventSeq>,
}

/// The first 16 hex digits of BLAKE3 over the stream name and its first event (the
/// creation time while it has none). Not the creation time otherwise: a stream
/// restored from a backup gets a new one but is the same log.
fn log_id(stream: &str, created: &str, first_seq: Option<i64>, first_id: Option<&str>) -> String {
    let first = match (first_seq, first_id) {
        (Some(seq), Some(id)) => format!("{seq}:{id}"),
        _ => format!("empty since {created}"),
    };
    let digest = blake3::hash(format!("{stream}\n{first}").as_bytes());
    hex::encode(&digest.as_bytes()[..8])
}

impl Store {
    /// What the projections recorded about their log, if anything yet.
    pub async fn recorded_log(&self) -> Result<Option<RecordedLog>> {
        let row: Option<(String, String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT stream, created, first_seq, first_id FROM log_identity WHERE only_row",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(stream, created, first_seq, first_id)| RecordedLog {
                identity: LogIdentity {
                    stream,
                    created,
                    first: first_seq.zip(first_id).map(|(seq, id)| FirstEvent {
                        seq: seq.max(0) as u64,
                        id,
                    }),
                },
            }),
        )
    }

    /// Records `identity` as the log these projections follow, replacing any earlier
    /// record.
    pub async fn record_log(&self, identity: &LogIdentity) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        record_log_in(&mut tx, identity).await?;
        tx.commit().await?;
        Ok(())
    }

    /// What the feed tells its readers about the log: its identity, and up to which
    /// sequence its events re-state an earlier log's state (`homeserver reseed`).
    pub async fn log_marks(&self) -> Result<LogMarks> {
        let row = sqlx::query(
            "SELECT stream, created, first_seq, first_id, reseeded_through
             FROM log_identity WHERE only_row",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(LogMarks::default());
        };
        let first_id: Option<String> = row.try_get("first_id")?;
        let through: Option<i64> = row.try_get("reseeded_through")?;
        Ok(LogMarks {
            id: Some(log_id(
                row.try_get("stream")?,
                row.try_get("created")?,
                row.try_get("first_seq")?,
                first_id.as_deref(),
            )),
            reseeded_through: through.map(|seq| EventSeq(seq.max(0) as u64)),
        })
    }

    /// The furthest checkpoint and the message id of the event it stands on.
    pub async fn furthest_checkpoint(&self) -> Result<Checkpoint> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT last_seq, last_id FROM projector_checkpoints ORDER BY last_seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some((seq, id)) => Checkpoint {
                seq: seq.max(0) as u64,
                id,
            },
            None => Checkpoint::default(),
        })
    }
}

/// [`Store::record_log`] inside a transaction of the caller's.
pub(crate) async fn record_log_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    identity: &LogIdentity,
) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    sqlx::query(
        "INSERT INTO log_identity (only_row, stream, created, first_seq, first_id, recorded_us)
         VALUES (true, $1, $2, $3, $4, $5)
         ON CONFLICT (only_row) DO UPDATE SET stream = excluded.stream,
            created = excluded.created, first_seq = excluded.first_seq,
            first_id = excluded.first_id, recorded_us = excluded.recorded_us",
    )
    .bind(&identity.stream)
    .bind(&identity.created)
    .bind(identity.first.as_ref().map(|f| seq_param(EventSeq(f.seq))))
    .bind(identity.first.as_ref().map(|f| f.id.as_str()))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
