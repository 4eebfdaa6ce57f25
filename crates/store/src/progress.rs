//! How far the projections have got: lets a writer wait until its event is visible.
//!
//! Read-your-writes: a write is answered only once the projector has applied its
//! event, so a GET that follows sees it, whichever process serves the GET. In
//! `homeserver all` the projector reports progress in-process; a separate write-api
//! learns it from Postgres `LISTEN`. A notification is only a wake-up: after any
//! reconnect the watermark is re-read from the checkpoints table, because
//! notifications sent while disconnected are lost.

use crate::projection::PROJECTED_CHANNEL;
use crate::{Result, Store};
use domain::EventSeq;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Progress {
    applied: watch::Sender<EventSeq>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            applied: watch::Sender::new(EventSeq(0)),
        }
    }

    /// Records that everything up to `seq` is applied. Never moves backwards.
    pub fn advance(&self, seq: EventSeq) {
        self.applied.send_if_modified(|current| {
            if seq > *current {
                *current = seq;
                true
            } else {
                false
            }
        });
    }

    pub fn applied(&self) -> EventSeq {
        *self.applied.borrow()
    }

    /// Waits until `seq` is applied; false when `timeout` passes first.
    pub async fn wait_for(&self, seq: EventSeq, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Follows the projector of another process through `LISTEN`, until the returned
    /// task is aborted. Reconnects by itself; re-reads the watermark after each gap.
    pub async fn follow(&self, store: &Store) -> Result<tokio::task::JoinHandle<()>> {
        let mut listener = PgListener::connect_with(store.pool()).await?;
        listener
            .listen(&format!("{PROJECTED_CHANNEL}_{}", store.schema()))
            .await?;
        self.advance(store.watermark().await?);
        let progress = self.clone();
        let store = store.clone();
        Ok(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => {}
                    // None: the connection dropped (and will be re-established).
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the projection notifications");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                // The watermark, not the payload, is authoritative: with several
                // projector workers it is the smallest checkpoint.
                if let Ok(seq) = store.watermark().await {
                    progress.advance(seq);
                }
            }
        }))
    }
}
