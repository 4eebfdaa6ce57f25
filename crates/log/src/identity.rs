//! The log's identity as NATS reports it, and this process's verdict on whether the
//! log it was given is the one its projections follow (`domain::log_identity`).
//!
//! The verdict lives with the [`EventLog`] handle because every path that writes asks
//! the handle first (`is_connected`, then [`EventLog::pairing`]): a process that found
//! the log mismatched refuses writes at once, with the message naming both logs, for as
//! long as it stays so. The check itself needs the projections too and lives with the
//! projector.

use crate::{EventLog, LogError, unavailable};
use async_nats::header;
use async_nats::jetstream::stream::DirectGetErrorKind;
use domain::log_identity::{FirstEvent, LogIdentity};
use serde::Deserialize;
use std::sync::{Arc, RwLock};

/// This process's current verdict on its log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Pairing {
    /// Not checked yet. Writes go ahead: the writer's own check (an appended event at or
    /// below the projected position can only come from another log) still holds.
    #[default]
    Unchecked,
    Paired,
    /// The log is not the projections' log; the text names both and the way out.
    Mismatched(String),
}

/// Shared by every clone of one [`EventLog`].
#[derive(Debug, Default)]
pub(crate) struct PairingState {
    verdict: RwLock<Pairing>,
    /// Woken on every reconnection to NATS: what the server holds may have changed
    /// (its data directory lost, another cluster behind the same address).
    pub(crate) reconnected: tokio::sync::Notify,
}

pub(crate) type SharedPairing = Arc<PairingState>;

#[derive(Deserialize)]
struct StreamInfoReply {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    created: String,
    #[serde(default)]
    state: Option<StreamState>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// JetStream's error code for "stream not found".
const STREAM_NOT_FOUND: u64 = 10059;

#[derive(Deserialize)]
struct StreamState {
    first_seq: u64,
    last_seq: u64,
    messages: u64,
}

impl EventLog {
    /// The stream's identity and its last sequence, read from NATS now. The creation
    /// time is taken as NATS writes it (the typed client would round-trip it through a
    /// date type).
    pub async fn identity(&self) -> Result<(LogIdentity, u64), LogError> {
        let reply: StreamInfoReply = self
            .js
            .request(
                format!("STREAM.INFO.{}", self.config.stream),
                &serde_json::json!({}),
            )
            .await
            .map_err(unavailable)?;
        if let Some(error) = reply.error {
            if error.err_code == STREAM_NOT_FOUND {
                return Err(LogError::StreamMissing(self.config.stream.clone()));
            }
            return Err(LogError::Unavailable(format!(
                "stream {}: {}",
                self.config.stream, error.description
            )));
        }
        let state = reply
            .state
            .ok_or_else(|| LogError::Unavailable("stream info without state".into()))?;
        let first = if state.messages == 0 {
            None
        } else {
            self.message_id_at(state.first_seq)
                .await?
                .map(|id| FirstEvent {
                    seq: state.first_seq,
                    id,
                })
        };
        Ok((
            LogIdentity {
                stream: self.config.stream.clone(),
                created: reply.created,
                first,
            },
            state.last_seq,
        ))
    }

    /// The message id of the event at `seq`, `None` when the log has no such event.
    pub async fn message_id_at(&self, seq: u64) -> Result<Option<String>, LogError> {
        let stream = self
            .js
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(unavailable)?;
        match stream.direct_get(seq).await {
            Ok(message) => Ok(Some(
                message
                    .headers
                    .get(header::NATS_MESSAGE_ID)
                    .map(|id| id.as_str().to_string())
                    .unwrap_or_default(),
            )),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// This process's verdict on the log.
    pub fn pairing(&self) -> Pairing {
        self.pairing
            .verdict
            .read()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub fn set_pairing(&self, verdict: Pairing) {
        if let Ok(mut current) = self.pairing.verdict.write() {
            *current = verdict;
        }
    }

    /// Resolves at the next reconnection to NATS.
    pub async fn reconnected(&self) {
        self.pairing.reconnected.notified().await
    }
}
