//! Backups of the log: the stream's own snapshot through the JetStream API, and its
//! restore.
//!
//! A snapshot is what NATS itself produces (`$JS.API.STREAM.SNAPSHOT`): a consistent
//! copy of the stream's storage at one moment, taken while the stream keeps accepting
//! writes, in NATS's own format, so `nats stream restore` can read ours and ours can
//! read its. We keep its bytes opaque and record beside them the stream's
//! configuration and state as NATS reported them, which the restore request needs.
//!
//! The protocol: the snapshot is delivered in chunks to a subject of ours; each chunk
//! carries a reply subject to acknowledge (flow control), and an empty message ends it.
//! A restore is the reverse: NATS names a subject, we send each chunk as a request and
//! wait for its acknowledgement, and an empty request ends it, answered with the
//! restored stream's info.

use crate::{EventLog, LogError, unavailable};
use futures::StreamExt;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one chunk may take in either direction before the transfer is abandoned.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunk size asked of NATS and used for restores.
const CHUNK: usize = 128 * 1024;

/// What a snapshot was taken of, as NATS reported it; needed to restore it.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub config: serde_json::Value,
    pub state: serde_json::Value,
    /// Size and BLAKE3 (hex) of the snapshot bytes, to check them before a restore.
    pub bytes: u64,
    pub blake3: String,
}

#[derive(Deserialize)]
struct ApiReply {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    state: Option<serde_json::Value>,
    #[serde(default)]
    deliver_subject: Option<String>,
}

fn api_error(what: &str, error: serde_json::Value) -> LogError {
    let text = error
        .get("description")
        .and_then(|d| d.as_str())
        .map(String::from)
        .unwrap_or_else(|| error.to_string());
    LogError::Unavailable(format!("{what}: {text}"))
}

impl EventLog {
    /// Writes a snapshot of the stream to `file`, calling `on_bytes` with each chunk's
    /// size.
    pub async fn snapshot_to(
        &self,
        file: &Path,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<SnapshotInfo, LogError> {
        let inbox = self.client.new_inbox();
        let mut chunks = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(unavailable)?;
        let reply: ApiReply = self
            .js
            .request(
                format!("STREAM.SNAPSHOT.{}", self.config.stream),
                &serde_json::json!({
                    "deliver_subject": inbox,
                    "no_consumers": true,
                    "chunk_size": CHUNK,
                }),
            )
            .await
            .map_err(unavailable)?;
        if let Some(error) = reply.error {
            return Err(api_error("snapshot refused", error));
        }
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| LogError::Unavailable(format!("{}: {e}", file.display())))?;
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        loop {
            let chunk = tokio::time::timeout(CHUNK_TIMEOUT, chunks.next())
                .await
                .map_err(|_| LogError::Unavailable("the snapshot stalled".into()))?
                .ok_or_else(|| LogError::Unavailable("the snapshot ended early".into()))?;
            if let Some(status) = chunk.status
                && status.as_u16() >= 400
            {
                return Err(LogError::Unavailable(format!(
                    "the snapshot failed: {status} {}",
                    chunk.description.unwrap_or_default()
                )));
            }
            if chunk.payload.is_empty() {
                break;
            }
            out.write_all(&chunk.payload)
                .await
                .map_err(|e| LogError::Unavailable(format!("{}: {e}", file.display())))?;
            hasher.update(&chunk.payload);
            bytes += chunk.payload.len() as u64;
            on_bytes(chunk.payload.len() as u64);
            if let Some(ack) = chunk.reply {
                self.client
                    .publish(ack, bytes::Bytes::new())
                    .await
                    .map_err(unavailable)?;
            }
        }
        out.sync_all()
            .await
            .map_err(|e| LogError::Unavailable(format!("{}: {e}", file.display())))?;
        Ok(SnapshotInfo {
            config: reply.config.unwrap_or_default(),
            state: reply.state.unwrap_or_default(),
            bytes,
            blake3: hasher.finalize().to_hex().to_string(),
        })
    }

    /// Restores the stream from a snapshot written by [`EventLog::snapshot_to`]. The
    /// stream must not exist (NATS refuses otherwise); an empty one is deleted first.
    pub async fn restore_from(
        &self,
        file: &Path,
        info: &SnapshotInfo,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), LogError> {
        match self.identity().await {
            Ok((_, 0)) => {
                self.js
                    .delete_stream(&self.config.stream)
                    .await
                    .map_err(unavailable)?;
            }
            Ok((_, head)) => {
                return Err(LogError::Unavailable(format!(
                    "stream {} already exists with events up to {head}; a restore needs it gone",
                    self.config.stream
                )));
            }
            Err(LogError::StreamMissing(_)) => {}
            Err(e) => return Err(e),
        }
        let reply: ApiReply = self
            .js
            .request(
                format!("STREAM.RESTORE.{}", self.config.stream),
                &serde_json::json!({ "config": info.config, "state": info.state }),
            )
            .await
            .map_err(unavailable)?;
        if let Some(error) = reply.error {
            return Err(api_error("restore refused", error));
        }
        let target = reply
            .deliver_subject
            .ok_or_else(|| LogError::Unavailable("restore reply without a subject".into()))?;
        let mut input = tokio::fs::File::open(file)
            .await
            .map_err(|e| LogError::Unavailable(format!("{}: {e}", file.display())))?;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let n = input
                .read(&mut buffer)
                .await
                .map_err(|e| LogError::Unavailable(format!("{}: {e}", file.display())))?;
            let chunk = bytes::Bytes::copy_from_slice(&buffer[..n]);
            let answer =
                tokio::time::timeout(CHUNK_TIMEOUT, self.client.request(target.clone(), chunk))
                    .await
                    .map_err(|_| LogError::Unavailable("the restore stalled".into()))?
                    .map_err(unavailable)?;
            if !answer.payload.is_empty() {
                let reply: ApiReply = serde_json::from_slice(&answer.payload)
                    .map_err(|e| LogError::Unavailable(format!("restore reply: {e}")))?;
                if let Some(error) = reply.error {
                    return Err(api_error("restore failed", error));
                }
            }
            if n == 0 {
                return Ok(());
            }
            on_bytes(n as u64);
        }
    }
}
