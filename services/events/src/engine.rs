//! One subscription's source of events, shared by SSE and WebSocket: history from
//! Postgres, then the live tail from the fan-out, with per-user cursors.
//!
//! No gaps, no duplicates. The handler subscribes to the fan-out *before* the first
//! history query. The fan-out publishes an event only once it is projected, so every
//! event that is not in the receiver's ring was projected before the subscription and
//! is served by a history query (which reads up to the watermark). History loops until
//! a batch is empty; live events at or below the last sequence sent for their user
//! are then dropped. The output is in global sequence order (descending with
//! `reverse`), so a client's last seen sequence is a complete resume point.
//!
//! Every method here is cancel-safe: state changes only after an `.await` completes,
//! so the transports may race [`Engine::next`] against keep-alive timers and socket
//! reads.

use crate::fanout::{FileEvent, Revocation};
use api::SessionKind;
use domain::{EntryPath, EventSeq};
use std::collections::VecDeque;
use std::sync::Arc;
use store::Store;
use store::streams::{PathFilters, UserCursor};
use tokio::sync::broadcast::{self, error::RecvError};

/// Rows per history query, as the reference.
pub const HISTORY_BATCH: u32 = 100;

/// The session a private stream was authorized with: the stream ends with it.
#[derive(Debug)]
pub struct Guard {
    pub user: String,
    pub kind: SessionKind,
    pub revocations: broadcast::Receiver<Arc<Revocation>>,
}

impl Guard {
    fn is_revoked_by(&self, revocation: &Revocation) -> bool {
        match (revocation, &self.kind) {
            (Revocation::Grant { user, grant_id }, SessionKind::Grant { grant_id: ours }) => {
                *user == self.user && grant_id == ours
            }
            (
                Revocation::Cookie { user, secret_hash },
                SessionKind::Cookie { secret_hash: ours },
            ) => *user == self.user && secret_hash == ours,
            (Revocation::Account { user }, _) => *user == self.user,
            _ => false,
        }
    }
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// History done and not live, or the limit reached.
    Complete,
    /// The subscriber fell behind the fan-out ring: it must resume from its cursor.
    Lagged,
    /// The session of a private stream ended.
    Revoked,
    /// Postgres failed, or the fan-out stopped.
    Unavailable,
}

enum Phase {
    History,
    Live,
}

/// Whose events a stream follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The listed users, each with its own cursor (`/events-stream?user=…`).
    Users(Vec<UserCursor>),
    /// Every user, with one global cursor: the operator's stream (admin API).
    All { cursor: Option<EventSeq> },
}

pub struct Engine {
    store: Store,
    followed: Followed,
    filters: Vec<EntryPath>,
    store_filters: PathFilters,
    reverse: bool,
    remaining: Option<u32>,
    pending: VecDeque<FileEvent>,
    phase: Phase,
    /// Present in live mode.
    live: Option<broadcast::Receiver<Arc<FileEvent>>>,
    /// Present for private streams.
    guard: Option<Guard>,
    /// The last event handed out completely (all its lines): a resume point, since
    /// output is in order.
    last_sent: Option<domain::EventSeq>,
    /// The sequence and line of the last line handed out: the lines of one event share
    /// its sequence, so "after the cursor" alone would drop the rest of an event that
    /// arrives live line by line.
    last_line: Option<(domain::EventSeq, u32)>,
}

impl Engine {
    pub fn new(
        store: Store,
        followed: Followed,
        filters: Vec<EntryPath>,
        reverse: bool,
        limit: Option<u16>,
        live: Option<broadcast::Receiver<Arc<FileEvent>>>,
        guard: Option<Guard>,
    ) -> Self {
        let mut store_filters = PathFilters::default();
        for f in &filters {
            if f.is_dir() {
                store_filters.dirs.push(f.as_str().to_owned());
            } else {
                store_filters.files.push(f.as_str().to_owned());
            }
        }
        Engine {
            store,
            followed,
            filters,
            store_filters,
            reverse,
            remaining: limit.map(u32::from),
            pending: VecDeque::new(),
            phase: Phase::History,
            live,
            guard,
            last_sent: None,
            last_line: None,
        }
    }

    /// The sequence of the last event handed out, if any: what a client resumes from
    /// (`Last-Event-ID`, or `user=<key>:<cursor>`).
    pub fn last_sent(&self) -> Option<domain::EventSeq> {
        self.last_sent
    }

    /// The next event to send, or why the stream ends.
    pub async fn next(&mut self) -> Result<FileEvent, End> {
        loop {
            if self.remaining == Some(0) {
                return Err(End::Complete);
            }
            if let Some(event) = self.pending.pop_front() {
                self.sent(&event);
                return Ok(event);
            }
            match self.phase {
                Phase::History => {
                    let batch = {
                        let query = async {
                            match &self.followed {
                                Followed::Users(users) => {
                                    self.store
                                        .stream_events(
                                            users,
                                            &self.store_filters,
                                            self.reverse,
                                            HISTORY_BATCH,
                                        )
                                        .await
                                }
                                Followed::All { cursor } => {
                                    self.store
                                        .stream_all_events(
                                            *cursor,
                                            &self.store_filters,
                                            self.reverse,
                                            HISTORY_BATCH,
                                        )
                                        .await
                                }
                            }
                        };
                        match self.guard.as_mut() {
                            Some(guard) => tokio::select! {
                                biased;
                                end = watch_revocation(guard) => return Err(end),
                                batch = query => batch,
                            },
                            None => query.await,
                        }
                    };
                    let batch = match batch {
                        Ok(batch) => batch,
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream history failed");
                            return Err(End::Unavailable);
                        }
                    };
                    if batch.is_empty() {
                        if self.live.is_none() {
                            return Err(End::Complete);
                        }
                        self.phase = Phase::Live;
                    } else {
                        self.pending.extend(batch.into_iter().map(FileEvent::from));
                    }
                }
                Phase::Live => {
                    let Some(live) = self.live.as_mut() else {
                        return Err(End::Complete);
                    };
                    let received = match self.guard.as_mut() {
                        Some(guard) => tokio::select! {
                            biased;
                            end = watch_revocation(guard) => return Err(end),
                            received = live.recv() => received,
                        },
                        None => live.recv().await,
                    };
                    match received {
                        Ok(event) => {
                            if self.wants(&event) {
                                let event = FileEvent::clone(&event);
                                self.sent(&event);
                                return Ok(event);
                            }
                        }
                        Err(RecvError::Lagged(skipped)) => {
                            tracing::info!(skipped, "slow event stream subscriber disconnected");
                            return Err(End::Lagged);
                        }
                        Err(RecvError::Closed) => return Err(End::Unavailable),
                    }
                }
            }
        }
    }

    /// A live event is for this stream if its user is followed, it is after what was
    /// already sent for that user, and its path matches a filter.
    fn wants(&self, event: &FileEvent) -> bool {
        let after = |cursor: Option<EventSeq>| match cursor {
            None => true,
            Some(c) if event.seq > c => true,
            // A later line of the event whose earlier lines were just sent.
            Some(c) if event.seq == c => self
                .last_line
                .is_some_and(|(seq, line)| seq == c && event.line > line),
            Some(_) => false,
        };
        let after_cursor = match &self.followed {
            Followed::Users(users) => users
                .iter()
                .any(|u| u.owner == event.owner && after(u.cursor)),
            Followed::All { cursor } => after(*cursor),
        };
        after_cursor && crate::params::matches(&self.filters, &event.path)
    }

    fn sent(&mut self, event: &FileEvent) {
        self.last_line = Some((event.seq, event.line));
        if event.ends_event() {
            self.last_sent = Some(event.seq);
        }
        match &mut self.followed {
            Followed::Users(users) => {
                for user in users.iter_mut().filter(|u| u.owner == event.owner) {
                    user.cursor = Some(event.seq);
                }
            }
            Followed::All { cursor } => *cursor = Some(event.seq),
        }
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
        }
    }
}

/// Resolves when the guarded session ends (or revocations can no longer be seen).
async fn watch_revocation(guard: &mut Guard) -> End {
    loop {
        match guard.revocations.recv().await {
            Ok(revocation) if guard.is_revoked_by(&revocation) => return End::Revoked,
            Ok(_) => {}
            // Missed revocations might include ours: closing is the safe answer.
            Err(RecvError::Lagged(_)) => return End::Revoked,
            Err(RecvError::Closed) => return End::Unavailable,
        }
    }
}
