//! The write path's last step: append one event, then wait until it is projected.
//!
//! Writes of one user are validated against the user's projected state and appended
//! with that state's sequence as the expected last subject sequence, so a write that
//! raced another one is refused by the log instead of silently applied on stale state
//! (see `log`). Within one process, writes of the same user also queue on a striped
//! lock, so they do not needlessly conflict with each other.

use crate::{ApiError, AppState};
use domain::{Event, EventSeq, PublicKey};
use log::{AppendError, Expected};
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 256;

pub struct UserLocks(Vec<Mutex<()>>);

impl Default for UserLocks {
    fn default() -> Self {
        UserLocks((0..STRIPES).map(|_| Mutex::new(())).collect())
    }
}

/// An appended event.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub seq: EventSeq,
    /// False when the projection did not catch up within the configured wait.
    pub visible: bool,
}

/// Why an append did not happen.
#[derive(Debug)]
pub enum CommitError {
    /// The user's state moved since it was read; re-read and retry.
    Conflict,
    Api(ApiError),
}

impl From<ApiError> for CommitError {
    fn from(e: ApiError) -> Self {
        CommitError::Api(e)
    }
}

impl AppState {
    /// Serializes this process's writes of `user`.
    pub async fn lock_user(&self, user: &PublicKey) -> MutexGuard<'_, ()> {
        let digest = blake3::hash(user.as_bytes());
        let stripe = usize::from(digest.as_bytes()[0]) % STRIPES;
        self.user_locks.0[stripe].lock().await
    }

    /// Appends `event` expecting the subject's last sequence to be `expected`, then
    /// waits (bounded) until the projection shows it.
    pub async fn commit(
        &self,
        event: &Event,
        expected: Expected,
    ) -> Result<Committed, CommitError> {
        self.require_log()?;
        let projected_before = self.progress.applied();
        let seq = match self.log.append(event, expected).await {
            Ok(seq) if seq <= projected_before => {
                // The projections are already past the sequence this log just gave us:
                // they come from another log, and would never apply this event. Not
                // acknowledged, and no write is until an operator resolves it.
                let text = format!(
                    "the event log does not match its projections: it stored event {} at                      sequence {}, but the projections have already applied events up to {}. {}",
                    event.request_id,
                    seq.0,
                    projected_before.0,
                    domain::log_identity::RECOVERY
                );
                tracing::error!(problem = %text, "refusing writes");
                self.log
                    .set_pairing(log::identity::Pairing::Mismatched(text.clone()));
                return Err(CommitError::Api(ApiError::log_mismatch(text)));
            }
            Ok(seq) => {
                self.metrics.event_appended(event);
                seq
            }
            Err(AppendError::Conflict { current }) => {
                // Let the projection catch up with whatever won, so the retry reads it.
                if let Some(current) = current {
                    self.progress
                        .wait_for(current, self.config.projection_wait)
                        .await;
                }
                return Err(CommitError::Conflict);
            }
            Err(AppendError::Log(e)) => return Err(CommitError::Api(e.into())),
        };
        tracing::Span::current().record("event_seq", seq.0);
        let visible = self
            .progress
            .wait_for(seq, self.config.projection_wait)
            .await;
        if !visible {
            tracing::warn!(seq = seq.0, "event appended but not yet projected");
        }
        Ok(Committed { seq, visible })
    }
}

impl AppState {
    /// 503 at once while the connection to NATS is down. Without this a write would
    /// wait for its publish acknowledgement to time out (seconds, three times) before
    /// answering the same 503; writes also call it before reading an upload, so an
    /// outage does not leave a stored blob behind.
    ///
    /// Also refuses every write while the log is known not to be the projections' own
    /// (`projector::pairing`): an event appended there would never be projected.
    pub fn require_log(&self) -> Result<(), ApiError> {
        if let log::identity::Pairing::Mismatched(text) = self.log.pairing() {
            return Err(ApiError::log_mismatch(text));
        }
        if self.log.is_connected() {
            Ok(())
        } else {
            Err(ApiError::Unavailable("not connected to NATS".into()))
        }
    }
}

/// How many times a write re-reads the user's state after losing a race.
pub const MAX_ATTEMPTS: usize = 8;

/// The error to answer when every attempt lost a race.
pub fn too_much_contention() -> ApiError {
    ApiError::Unavailable("too many concurrent writes to the same user".into())
}
