//! The projector: follows the event log and keeps the Postgres projections current.
//!
//! It reads the log from its checkpoint with an ordered consumer and applies events
//! in batches (up to `batch_max` events, or whatever arrived within `linger` of the
//! first), each batch one transaction that also moves the checkpoint. So a crash at
//! any point — `kill -9` included — loses nothing and applies nothing twice: the next
//! start resumes after the last committed event.
//!
//! [`run_merkle_gc`] runs beside it and deletes the Merkle nodes no retained root needs.
//!
//! Before it reads, and before every batch, it makes sure the log is the one its
//! projections were built from ([`pairing`]): applying another log's events on top of
//! them would skip or garble acknowledged writes.
//!
//! [`rebuild`] replays the whole log into a fresh schema with the same code and checks
//! that the result equals the live projections.

mod gc;
pub mod pairing;
mod rebuild;
mod reseed;
mod verify;

pub use gc::{MerkleGcConfig, run_merkle_gc};
pub use rebuild::{RebuildReport, rebuild};
pub use reseed::{ReseedReport, reseed};
pub use verify::{TreeCheck, VerifyReport, verify};

use domain::{Event, EventSeq};
use futures::StreamExt;
use log::EventLog;
use std::time::Duration;
use store::{Progress, Store};

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Name of the checkpoint row this projector owns.
    pub name: String,
    pub batch_max: usize,
    pub linger: Duration,
    /// Incremented by the size of each committed batch: `events_projected_total` when
    /// the caller registered it (`api::metrics::Metrics::events_projected`).
    pub projected: prometheus_client::metrics::counter::Counter,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            name: "main".into(),
            batch_max: 500,
            linger: Duration::from_millis(1),
            projected: Default::default(),
        }
    }
}

/// Runs until `shutdown` resolves. Dependency outages are retried with backoff; the
/// projector resumes from its committed checkpoint each time.
pub async fn run(
    log: EventLog,
    store: Store,
    progress: Progress,
    config: ProjectorConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    /// The first retry after an outage, and the longest wait between two: a dependency
    /// that is back is noticed within a second, as the writers waiting for visibility
    /// need.
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    const LONGEST_WAIT: Duration = Duration::from_secs(1);
    tokio::pin!(shutdown);
    let mut retry = FIRST_RETRY;
    loop {
        let applied_before = progress.applied();
        let result = tokio::select! {
            _ = &mut shutdown => return,
            result = follow(&log, &store, &progress, &config) => result,
        };
        // A run that applied something was healthy: this failure is a new outage, not
        // the last one lasting longer.
        if progress.applied() > applied_before {
            retry = FIRST_RETRY;
        }
        let wait = match result {
            // Logged where it was found; waiting does not resolve it, an operator does.
            Err(ProjectorError::Mismatch(_)) => pairing::RECHECK,
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, retry_in = ?retry, "projector interrupted");
                }
                let wait = retry;
                retry = (retry * 2).min(LONGEST_WAIT);
                wait
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Log(#[from] log::LogError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The log is not the one the projections were built from (see [`pairing`]).
    #[error("{0}")]
    Mismatch(String),
    /// An operator command that would do harm in this state; the text says why.
    #[error("{0}")]
    Refused(String),
}

/// Applies events from the checkpoint on; returns only on an error.
async fn follow(
    log: &EventLog,
    store: &Store,
    progress: &Progress,
    config: &ProjectorConfig,
) -> Result<(), ProjectorError> {
    pairing::check(log, store).await?;
    pairing::require_paired(log)?;
    let checkpoint = store.checkpoint(&config.name).await?;
    store.backfill_merkle_trees().await?;
    progress.advance(checkpoint);
    tracing::info!(checkpoint = checkpoint.0, "projector following the log");
    apply_until(
        log,
        store,
        progress,
        config,
        EventSeq(checkpoint.0 + 1),
        None,
    )
    .await?;
    Ok(())
}

/// Applies events starting at `from` until `until` (inclusive) is applied, or forever
/// when `until` is `None`. Calls `on_batch` with the number of events of each batch.
pub(crate) async fn apply_until(
    log: &EventLog,
    store: &Store,
    progress: &Progress,
    config: &ProjectorConfig,
    from: EventSeq,
    until: Option<(EventSeq, &(dyn Fn(u64) + Sync))>,
) -> Result<EventSeq, ProjectorError> {
    let mut applied = EventSeq(from.0.saturating_sub(1));
    if let Some((end, _)) = until
        && applied >= end
    {
        return Ok(applied);
    }
    let mut events = Box::pin(log.read(from, None).await?);
    let mut batch: Vec<(EventSeq, Event)> = Vec::with_capacity(config.batch_max);
    loop {
        let Some(first) = events.next().await else {
            return Err(log::LogError::Unavailable("the log stream ended".into()).into());
        };
        let first = first?;
        batch.push((first.seq, first.event));
        let at_end = |batch: &[(EventSeq, Event)]| {
            until.is_some_and(|(end, _)| batch.last().is_some_and(|(seq, _)| *seq >= end))
        };
        // `linger` bounds the whole batch, counted from its first event, not the gap
        // between two events (which let a steady trickle hold a batch open).
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < config.batch_max && !at_end(&batch) {
            match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(Some(next)) => {
                    let next = next?;
                    batch.push((next.seq, next.event));
                }
                Ok(None) | Err(_) => break,
            }
        }
        pairing::require_paired(log)?;
        let count = batch.len() as u64;
        applied = store.apply_batch(&config.name, &batch).await?;
        config.projected.inc_by(count);
        batch.clear();
        progress.advance(applied);
        if let Some((end, on_batch)) = until {
            on_batch(count);
            if applied >= end {
                return Ok(applied);
            }
        }
    }
}

/// The progress bar of the long operator commands (`rebuild`, `reseed`): `doing`
/// names the step, `unit` what is counted; hidden unless `show`.
pub fn progress_bar(show: bool, doing: &str, unit: &str) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {doing} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
