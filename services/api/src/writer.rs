//! The write path's last step: append one event, then wait until it is projected.
//!
//! Writes of one user are validated against the user's projected state and appended
//! with that state's sequence as the expected last subject sequence, so a write that
//! raced another one is refused by the log instead of silently applied on stale state
//! (see `log`). Within one process, writes of the same user also queue on the user's
//! own lock, so they do not needlessly conflict with each other. File writes hold it
//! only for their checks and the append (`crate::pending`); the others until their
//! event is visible.

use crate::{ApiError, AppState};
use domain::{Event, EventSeq, PublicKey};
use log::{AppendError, Expected};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// One lock per user with writes in flight in this process. A lock lives as long as
/// someone holds or waits for it; the map keeps only weak references, swept as it grows.
#[derive(Default)]
pub struct UserLocks(std::sync::Mutex<LockMap>);

/// The users' locks, and how many were inserted since the last sweep.
type LockMap = (HashMap<PublicKey, Weak<Mutex<()>>>, usize);

impl UserLocks {
    fn of(&self, user: &PublicKey) -> Arc<Mutex<()>> {
        let Ok(mut guard) = self.0.lock() else {
            // A poisoned map (a panic while sweeping): serialize nothing rather than
            // everything; the log's sequence check still orders the writes.
            return Arc::default();
        };
        let (locks, inserted) = &mut *guard;
        if let Some(lock) = locks.get(user).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(Mutex::new(()));
        locks.insert(user.clone(), Arc::downgrade(&lock));
        *inserted += 1;
        if *inserted >= 1024 {
            locks.retain(|_, weak| weak.strong_count() > 0);
            *inserted = 0;
        }
        lock
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
    pub async fn lock_user(&self, user: &PublicKey) -> OwnedMutexGuard<()> {
        self.user_locks.of(user).lock_owned().await
    }

    /// Appends `event` expecting the subject's last sequence to be `expected`, then
    /// waits (bounded) until the projection shows it.
    pub async fn commit(
        &self,
        event: &Event,
        expected: Expected,
    ) -> Result<Committed, CommitError> {
        let seq = self.append(event, expected).await?;
        let visible = self.wait_visible(seq).await;
        Ok(Committed { seq, visible })
    }

    /// Waits (bounded by `projection_wait`) until the projection shows event `seq`.
    pub async fn wait_visible(&self, seq: EventSeq) -> bool {
        let visible = self
            .progress
            .wait_for(seq, self.config.projection_wait)
            .await;
        if !visible {
            tracing::warn!(seq = seq.0, "event appended but not yet projected");
        }
        visible
    }

    /// Appends `event` expecting the subject's last sequence to be `expected`; the
    /// first half of [`AppState::commit`].
    pub async fn append(&self, event: &Event, expected: Expected) -> Result<EventSeq, CommitError> {
        self.require_log()?;
        let projected_before = self.progress.applied();
        let seq = match self.log.append(event, expected).await {
            Ok(seq) if seq <= projected_before => {
                // The projections are already past the sequence this log just gave us:
                // they come from another log, and would never apply this event. Not
                // acknowledged, and no write is until an operator resolves it.
                let text = format!(
                    "the event log does not match its projections: it stored event {} at sequence {}, but the projections have already applied events up to {}. {}",
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
        Ok(seq)
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
