//! Reads through the read replica, with read-your-writes.
//!
//! A write is answered 201 only once its event is projected on the primary
//! (`crate::writer`). A replica replays that a little later, so a read that goes to the
//! replica first waits until the replica shows the events it must see, at most
//! `read_replica_wait_ms`, and reads the primary when that bound passes (or the
//! replica does not answer): never stale, at worst as slow as without a replica. What
//! a read must see is learned from the log without touching the primary:
//!
//! * a read of one user's data ([`AppState::reading_user`]): the user's last event
//!   (files and account: signup, limits, deletion), asked of the JetStream leader;
//! * a read across users, the feed and event streams ([`AppState::reading_all`]): the
//!   log's head. Every event the events service's fan-out has published is below it,
//!   so a stream's history from the replica joins its live tail without a gap.
//!
//! Both hand back the state with `store` pointing at the replica or the primary, so the
//! handlers below stay as they are. Sessions are looked up before (in the extractor)
//! and always on the primary: a fresh sign-in must work at once and a sign-out must end
//! access at once. Without a replica both return the state unchanged, asking nothing.
//!
//! Each read counts in `replica_reads{outcome}` (and `replica_wait_seconds` when it
//! waited), and the `replica_read` span carries `target_seq`, `read_from` and
//! `waited_ms`.

use crate::AppState;
use domain::{EventSeq, PublicKey};
use std::time::Duration;
use store::replica::Reached;
use tracing::Instrument;

impl AppState {
    /// This state reading `owner`'s projections from the replica once it has replayed
    /// the owner's last event, else from the primary.
    pub async fn reading_user(&self, owner: &PublicKey) -> AppState {
        let Some(replica) = &self.replica else {
            return self.clone();
        };
        let bound = self.config.read_replica_wait;
        let target = async { self.log.user_last_seq(owner).await.ok() };
        self.reading(replica, target, bound).await
    }

    /// This state reading every user's projections from the replica once it has
    /// replayed the whole log as it is now, else from the primary.
    pub async fn reading_all(&self) -> AppState {
        let Some(replica) = &self.replica else {
            return self.clone();
        };
        let bound = self.config.read_replica_wait;
        let target = async { self.log.head().await.ok() };
        self.reading(replica, target, bound).await
    }

    async fn reading(
        &self,
        replica: &store::ReadReplica,
        target: impl Future<Output = Option<EventSeq>>,
        bound: Duration,
    ) -> AppState {
        let span = tracing::debug_span!(
            "replica_read",
            target_seq = tracing::field::Empty,
            read_from = tracing::field::Empty,
            waited_ms = tracing::field::Empty,
        );
        async {
            let started = std::time::Instant::now();
            // Without the log there is no telling what the read must see: the
            // primary is the safe answer (and a NATS outage must not stall reads: a
            // failed lookup sends the next second's reads to the primary at once).
            let target = match self.log.is_connected() && !replica.lookups_down() {
                true => {
                    let lookup = store::replica::QUERY_TIMEOUT;
                    let found = tokio::time::timeout(lookup, target).await.ok().flatten();
                    if found.is_none() {
                        replica.lookup_failed();
                    }
                    found
                }
                false => None,
            };
            let (outcome, waited) = match target {
                None => ("fallback_log_down", started.elapsed()),
                Some(target) => {
                    tracing::Span::current().record("target_seq", target.0);
                    let left = bound.saturating_sub(started.elapsed());
                    match replica.reach(target, left).await {
                        Reached::Replica { waited } if waited.is_zero() => ("replica", waited),
                        Reached::Replica { waited } => ("replica_waited", waited),
                        Reached::Behind => ("fallback_lag", started.elapsed()),
                        Reached::Unavailable => ("fallback_replica_down", started.elapsed()),
                    }
                }
            };
            let use_replica = outcome.starts_with("replica");
            self.metrics.replica_read(outcome, waited);
            let span = tracing::Span::current();
            span.record("read_from", if use_replica { "replica" } else { "primary" });
            span.record("waited_ms", waited.as_millis() as u64);
            if !use_replica {
                tracing::debug!(outcome, "read from the primary");
            }
            let mut state = self.clone();
            if use_replica {
                state.store = replica.store().clone();
            }
            state
        }
        .instrument(span)
        .await
    }
}
