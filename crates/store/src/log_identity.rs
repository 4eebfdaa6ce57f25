//! The recorded identity of the log the projections follow (see
//! `domain::log_identity` for why), and the projections' checkpoint with the id of
//! the event it stands on.

use crate::{Result, Store, seq_param};
use domain::log_identity::{Checkpoint, FirstEvent, LogIdentity, RecordedLog};

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
        .bind(
            identity
                .first
                .as_ref()
                .map(|f| seq_param(domain::EventSeq(f.seq))),
        )
        .bind(identity.first.as_ref().map(|f| f.id.as_str()))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
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
