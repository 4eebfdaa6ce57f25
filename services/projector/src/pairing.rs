//! Whether the log this process was given is the one its projections were built from.
//!
//! A sequence number means nothing outside its stream: projections served with a new
//! or re-created stream would skip every new event up to their old checkpoint while the
//! writers answered 2xx (see `domain::log_identity`). Every process that reads or
//! writes runs [`check`] before it starts, and [`watch`] keeps checking: after each
//! reconnection to NATS (the server behind the address may have lost its data) and
//! every [`RECHECK`] besides (a stream deleted and made again while we stayed
//! connected). The verdict is kept on the [`EventLog`] handle, where the writers and
//! the projector read it before every append and every batch.
//!
//! A mismatch is final for the life of the process: the way out is an operator's
//! decision (point the server at the right stream, or re-seed the log) and a restart.
//! Flipping back by itself on a later check could only happen if something else
//! changed the log underneath, which is no reason to trust it.

use crate::ProjectorError;
use domain::log_identity::{self, ObservedLog, RECOVERY, Verdict};
use log::identity::Pairing;
use log::{EventLog, LogError};
use std::time::Duration;
use store::Store;

/// How often [`watch`] checks besides reconnections.
pub const RECHECK: Duration = Duration::from_secs(10);

/// Compares the log with what the projections recorded, records the identity when
/// they have none yet (or when it should be brought up to date), and stores the
/// verdict on `log`. A dependency that does not answer is an error and leaves the
/// verdict as it was.
pub async fn check(log: &EventLog, store: &Store) -> Result<Pairing, ProjectorError> {
    let recorded = store.recorded_log().await?;
    let checkpoint = store.furthest_checkpoint().await?;
    let verdict = match log.identity().await {
        Ok((identity, head)) => {
            let id_at_checkpoint = if checkpoint.seq > 0 && checkpoint.seq <= head {
                log.message_id_at(checkpoint.seq).await?
            } else {
                None
            };
            let seen = ObservedLog {
                identity,
                head,
                id_at_checkpoint,
            };
            match log_identity::judge(recorded.as_ref(), &checkpoint, &seen) {
                Verdict::Adopt => {
                    store.record_log(&seen.identity).await?;
                    tracing::info!(log = %seen.identity, "recorded the identity of the log");
                    Pairing::Paired
                }
                Verdict::Paired { record } => {
                    if record {
                        store.record_log(&seen.identity).await?;
                    }
                    Pairing::Paired
                }
                Verdict::Mismatch(why) => Pairing::Mismatched(format!("{why} {RECOVERY}")),
            }
        }
        Err(LogError::StreamMissing(stream)) => {
            let follows = match &recorded {
                Some(recorded) => format!(" The projections follow {}.", recorded.identity),
                None => String::new(),
            };
            if checkpoint.seq == 0 && recorded.is_none() {
                // Nothing was ever projected: there is nothing to lose, and the next
                // start creates the stream.
                return Err(LogError::StreamMissing(stream).into());
            }
            Pairing::Mismatched(format!(
                "the event log does not match its projections: stream {stream} no longer \
                 exists on the NATS server, but the projections have applied events up to \
                 {}.{follows} {RECOVERY}",
                checkpoint.seq
            ))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(settle(log, verdict))
}

/// Stores `verdict` on `log` unless the log is already mismatched (see the module
/// docs), logging a change; returns what is now in force.
fn settle(log: &EventLog, verdict: Pairing) -> Pairing {
    let current = log.pairing();
    if matches!(current, Pairing::Mismatched(_)) {
        return current;
    }
    if let Pairing::Mismatched(text) = &verdict {
        tracing::error!(problem = %text, "refusing writes: the event log does not match its projections");
    }
    log.set_pairing(verdict.clone());
    verdict
}

/// Checks again after every reconnection to NATS and every [`RECHECK`], until
/// `shutdown` resolves. A check that cannot reach a dependency is retried at the next
/// occasion; the outage itself is answered elsewhere (the writers' 503).
pub async fn watch(log: EventLog, store: Store, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = log.reconnected() => {}
            _ = tokio::time::sleep(RECHECK) => {}
        }
        if let Err(e) = check(&log, &store).await {
            tracing::debug!(error = %e, "log pairing not checked");
        }
    }
}

/// The projector's guard before each batch: an error while the log is mismatched.
pub(crate) fn require_paired(log: &EventLog) -> Result<(), ProjectorError> {
    match log.pairing() {
        Pairing::Mismatched(text) => Err(ProjectorError::Mismatch(text)),
        Pairing::Unchecked | Pairing::Paired => Ok(()),
    }
}
