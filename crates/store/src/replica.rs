//! A streaming replica of the projections, for reads that scale past one Postgres.
//!
//! A hot standby replays the primary's WAL a little behind it. The projector moves its
//! checkpoint in the same transaction as the events it applies, so the replica's
//! watermark (`min(last_seq)` of the replayed checkpoints) says exactly which events
//! its tables already show. [`ReadReplica::reach`] waits, bounded, until that watermark
//! reaches a given log sequence: the caller names the sequence a read must see (the
//! user's last appended event, or the log's head) and falls back to the primary when
//! the replica does not get there in time or does not answer. What to wait for and
//! what to count is the services' business (`api::reads`); this module only knows the
//! replica.
//!
//! The replica's watermark only grows (a standby never un-replays), so the highest one
//! seen is kept: a read whose target is already below it needs no query at all. After a
//! failed query the replica counts as down for [`DOWN_FOR`], so that an outage costs
//! one timeout, not one per request; the callers' lookups of their targets get the
//! same memory ([`ReadReplica::lookup_failed`]).

use crate::{Result, Store};
use domain::EventSeq;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest one watermark query may take before the replica counts as down.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a replica that failed a query is left alone (reads go to the primary).
pub const DOWN_FOR: Duration = Duration::from_secs(1);
/// First and longest pause between two watermark queries while waiting: replay lag is
/// usually a few milliseconds, so the first polls are quick.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// Where a read can go, as [`ReadReplica::reach`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The replica shows every event up to the target; `waited` is zero when it did
    /// already at the first look.
    Replica { waited: Duration },
    /// The replica did not replay up to the target within the bound.
    Behind,
    /// The replica did not answer (or was found down less than [`DOWN_FOR`] ago), or
    /// is no replica of the primary ([`ReadReplica::check_primary`]).
    Unavailable,
}

/// A streaming replica's projections and what is known of its progress. Cheap to clone.
#[derive(Clone)]
pub struct ReadReplica {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The highest watermark seen on the replica.
    applied: AtomicU64,
    /// Until when the replica is left alone after a failure.
    down_until: Mutex<Option<Instant>>,
    /// Set when the replica turned out to be no replica of the primary (another
    /// cluster: see [`ReadReplica::check_primary`]); it is then never read.
    foreign: AtomicBool,
    /// Until when the callers' lookups of what to wait for are skipped after one
    /// failed (see [`ReadReplica::lookup_failed`]).
    lookups_down_until: Mutex<Option<Instant>>,
}

impl ReadReplica {
    pub fn new(store: Store) -> Self {
        ReadReplica {
            inner: Arc::new(Inner {
                store,
                applied: AtomicU64::new(0),
                down_until: Mutex::new(None),
                lookups_down_until: Mutex::new(None),
                foreign: AtomicBool::new(false),
            }),
        }
    }

    /// The replica's projections (read-only: a standby refuses every write).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The highest watermark seen on the replica so far.
    pub fn applied(&self) -> EventSeq {
        EventSeq(self.inner.applied.load(Ordering::Relaxed))
    }

    /// The replica's watermark now, remembered; an error marks it down.
    pub async fn watermark(&self) -> Result<EventSeq> {
        let queried = tokio::time::timeout(QUERY_TIMEOUT, self.inner.store.watermark()).await;
        match queried {
            Ok(Ok(seq)) => {
                self.inner.applied.fetch_max(seq.0, Ordering::Relaxed);
                self.set_down(None);
                Ok(seq)
            }
            Ok(Err(e)) => {
                self.set_down(Some(Instant::now() + DOWN_FOR));
                Err(e)
            }
            Err(_) => {
                self.set_down(Some(Instant::now() + DOWN_FOR));
                Err(crate::StoreError::Unavailable(sqlx::Error::PoolTimedOut))
            }
        }
    }

    /// Whether the replica is a standby of `primary`: both report the same Postgres
    /// system identifier (a standby has its primary's; any other cluster has its
    /// own). One that is not is never read from then on, until a later check finds
    /// it is again: a replica left over from a primary that was re-made (a restore
    /// on a new cluster) still answers, with another history's projections and a
    /// watermark the new log's sequences may well be below.
    pub async fn check_primary(&self, primary: &Store) -> Result<bool> {
        let id = |store: &Store| {
            let pool = store.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT system_identifier FROM pg_control_system()")
                    .fetch_one(&pool)
                    .await
            }
        };
        let (ours, theirs) = tokio::try_join!(id(primary), id(&self.inner.store))?;
        let same = ours == theirs;
        if !same && !self.inner.foreign.load(Ordering::Relaxed) {
            tracing::error!(
                primary = ours,
                replica = theirs,
                "read_database_url is not a replica of database_url (another Postgres \
                 cluster): reads go to the primary until it is"
            );
        }
        self.inner.foreign.store(!same, Ordering::Relaxed);
        Ok(same)
    }

    /// Whether the last [`ReadReplica::check_primary`] found another cluster.
    pub fn is_foreign(&self) -> bool {
        self.inner.foreign.load(Ordering::Relaxed)
    }

    /// Waits at most `bound` until the replica shows every event up to `target`.
    pub async fn reach(&self, target: EventSeq, bound: Duration) -> Reached {
        if self.is_foreign() {
            return Reached::Unavailable;
        }
        if self.applied() >= target {
            return Reached::Replica {
                waited: Duration::ZERO,
            };
        }
        if self.is_down() {
            return Reached::Unavailable;
        }
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut first = true;
        loop {
            match self.watermark().await {
                // Found there at the first look: the query is no wait for replay.
                Ok(seq) if seq >= target => {
                    let waited = match first {
                        true => Duration::ZERO,
                        false => started.elapsed(),
                    };
                    return Reached::Replica { waited };
                }
                Ok(_) => {}
                Err(_) => return Reached::Unavailable,
            }
            if started.elapsed() + pause > bound {
                return Reached::Behind;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
            first = false;
        }
    }

    /// Records that learning a read's target (from the log) failed: for [`DOWN_FOR`]
    /// [`ReadReplica::lookups_down`] says so, and reads go to the primary without
    /// asking, so that a log outage costs one timeout, not one per request.
    pub fn lookup_failed(&self) {
        set(
            &self.inner.lookups_down_until,
            Some(Instant::now() + DOWN_FOR),
        );
    }

    pub fn lookups_down(&self) -> bool {
        is_before(&self.inner.lookups_down_until)
    }

    fn is_down(&self) -> bool {
        is_before(&self.inner.down_until)
    }

    fn set_down(&self, until: Option<Instant>) {
        set(&self.inner.down_until, until);
    }
}

fn is_before(until: &Mutex<Option<Instant>>) -> bool {
    let until = until.lock().unwrap_or_else(|e| e.into_inner());
    until.is_some_and(|until| Instant::now() < until)
}

fn set(slot: &Mutex<Option<Instant>>, until: Option<Instant>) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = until;
}
