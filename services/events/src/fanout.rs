//! The live fan-out: one upstream reader of the log per events instance, feeding every
//! open stream through a `tokio::sync::broadcast` channel.
//!
//! Why one upstream and not one JetStream consumer per client: a consumer is a
//! server-side object with its own heartbeats and an API round trip to create, fine for
//! tens of clients and wasteful for thousands (eventsourcing notes §5). An ordered
//! consumer per *instance* survives NATS reconnects without gaps; if it fails anyway,
//! it is recreated from the sequence after the last one it published.
//!
//! Why events are published only once projected: a stream's history comes from
//! Postgres up to the watermark, its live tail from here. If a live event could be
//! ahead of the watermark, a client could receive `seq = 10` live, reconnect with
//! `Last-Event-ID: 10`, and never see a `seq = 9` that was still being projected. So
//! the fan-out waits for [`Progress`] to reach each event's sequence before publishing
//! it, and "published" always implies "served by history". With that, a subscriber
//! that subscribes *before* reading history and drops live events at or below what it
//! already sent sees every event exactly once (see `engine.rs`).
//!
//! Slow subscribers do not slow anyone down: the broadcast ring keeps the last
//! [`CAPACITY`] items; a subscriber that falls further behind gets `Lagged` and its
//! stream is closed, and the client resumes from its cursor (served from Postgres).
//!
//! Account events that end a session (`GrantRevoked`, `CookieSessionEnded`,
//! `AccountDeleted`) travel on a second, small channel, so a private stream can watch
//! for its own revocation during the history phase without consuming (and losing) live
//! file events. An `AccountDeleted` also changes files, but its log event does not list
//! them: the fan-out relays its `DEL` lines from the projection once it is projected.

use domain::EventSeq;
use domain::event::{Change, SubjectFamily};
use futures::StreamExt;
use log::EventLog;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use store::{Progress, Store};
use tokio::sync::broadcast;

/// Slots of the file-event ring shared by all subscribers.
pub const CAPACITY: usize = 4096;
/// Slots of the revocation ring (revocations are rare).
pub const REVOCATION_CAPACITY: usize = 256;

/// A projected file event, as every stream renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    pub seq: EventSeq,
    /// This event's place among the file changes of its log event, and how many it has:
    /// 0 and 1 except for events that change several files at once (see `store::feed`).
    pub line: u32,
    pub lines: u32,
    /// Raw z-base-32 key of the owner.
    pub owner: String,
    pub op: Op,
    pub path: String,
    pub content_hash: Option<[u8; 32]>,
    /// When the homeserver accepted the write, in microseconds since the epoch.
    pub ts_us: u64,
    /// The owner's Merkle root (of the tree the path is in) right after this event;
    /// `None` when it is not known (events projected before the trees existed).
    pub merkle_root: Option<[u8; 32]>,
    /// On a [`Op::Moved`] line: the homeserver (z32 key) the user lives on from then on.
    pub moved_to: Option<String>,
}

impl FileEvent {
    /// Whether this is the last file change of its log event: only after it has a
    /// client everything up to `seq`, so only there may a stream hand out `seq` as a
    /// resume point.
    pub fn ends_event(&self) -> bool {
        self.line + 1 >= self.lines
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Del,
    /// The user moved to another homeserver (`user_moved`, docs/move.md).
    Moved,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Del => "DEL",
            Op::Moved => "MOVED",
        }
    }
}

impl From<store::feed::FeedEvent> for FileEvent {
    fn from(e: store::feed::FeedEvent) -> Self {
        FileEvent {
            seq: e.seq,
            line: e.line,
            lines: e.lines,
            owner: e.owner,
            op: match e.op.as_str() {
                "DEL" => Op::Del,
                "MOVED" => Op::Moved,
                _ => Op::Put,
            },
            path: e.path,
            content_hash: e.content_hash,
            ts_us: e.created_us,
            merkle_root: e.merkle_root,
            moved_to: e.moved_to,
        }
    }
}

/// A session that ended: streams authorized by it must close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Grant {
        user: String,
        grant_id: String,
    },
    Cookie {
        user: String,
        secret_hash: [u8; 32],
    },
    /// The account was deleted: every session of the user ended.
    Account {
        user: String,
    },
}

struct Inner {
    files: broadcast::Sender<Arc<FileEvent>>,
    revocations: broadcast::Sender<Arc<Revocation>>,
    /// True while the upstream consumer is established.
    up: Arc<AtomicBool>,
    /// The last sequence published (all kinds of events), for diagnostics and tests.
    published: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Handle to the live fan-out. Cheap to clone; the upstream task stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

/// What a new stream subscribes to before reading its history.
pub struct Subscription {
    pub files: broadcast::Receiver<Arc<FileEvent>>,
    pub revocations: broadcast::Receiver<Arc<Revocation>>,
}

impl Fanout {
    /// Starts the upstream at `progress.applied() + 1`.
    ///
    /// `progress` must follow the projections (in-process projector, or
    /// [`Progress::follow`] in a separate events process); starting below the watermark
    /// is safe (subscribers drop what they already have) but replays that range.
    pub fn spawn(log: EventLog, progress: Progress, store: Store) -> Fanout {
        let from = EventSeq(progress.applied().0 + 1);
        Self::spawn_from(log, progress, store, from)
    }

    /// Starts the upstream at `from`, which must be at most `watermark + 1` so that no
    /// event is neither in history nor live.
    pub fn spawn_from(log: EventLog, progress: Progress, store: Store, from: EventSeq) -> Fanout {
        let (files, _) = broadcast::channel(CAPACITY);
        let (revocations, _) = broadcast::channel(REVOCATION_CAPACITY);
        let up = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(from.0.saturating_sub(1)));
        let roots = RootCache::new(store, from);
        let task = tokio::spawn(upstream(
            log,
            progress,
            roots,
            from,
            files.clone(),
            revocations.clone(),
            up.clone(),
            published.clone(),
        ));
        let inner = Arc::new(Inner {
            files,
            revocations,
            up,
            published,
            task,
        });
        Fanout { inner }
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            files: self.inner.files.subscribe(),
            revocations: self.inner.revocations.subscribe(),
        }
    }

    /// Only the file events, for public streams that need no revocations.
    pub fn subscribe_files(&self) -> broadcast::Receiver<Arc<FileEvent>> {
        self.inner.files.subscribe()
    }

    /// True while the upstream consumer is established. Private streams are refused
    /// (503) while it is not, because revocations could not reach them.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// The last sequence the fan-out has published (or skipped as irrelevant).
    pub fn published(&self) -> EventSeq {
        EventSeq(self.inner.published.load(Ordering::Relaxed))
    }

    /// Number of live subscribers of file events.
    pub fn subscribers(&self) -> usize {
        self.inner.files.receiver_count()
    }
}

#[allow(clippy::too_many_arguments)]
async fn upstream(
    log: EventLog,
    progress: Progress,
    mut roots: RootCache,
    from: EventSeq,
    files: broadcast::Sender<Arc<FileEvent>>,
    revocations: broadcast::Sender<Arc<Revocation>>,
    up: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) {
    let set_up = |value: bool| up.store(value, Ordering::Relaxed);
    let set_published = |seq: EventSeq| published.store(seq.0, Ordering::Relaxed);
    let mut next = from;
    let mut backoff = Duration::from_millis(100);
    loop {
        match log.read(next, None).await {
            Ok(events) => {
                set_up(true);
                backoff = Duration::from_millis(100);
                let mut events = std::pin::pin!(events);
                while let Some(item) = events.next().await {
                    let logged = match item {
                        Ok(logged) => logged,
                        Err(log::LogError::Undecodable { seq, reason }) => {
                            // Not an event of ours (or a future version): skip it, as the
                            // projector cannot have produced a row for it either.
                            tracing::warn!(seq, %reason, "fan-out skipped an undecodable event");
                            next = EventSeq(seq + 1);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "fan-out upstream failed");
                            break;
                        }
                    };
                    if logged.seq < next {
                        continue;
                    }
                    wait_projected(&progress, logged.seq).await;
                    let root = if logged.event.change.family() == SubjectFamily::Files {
                        roots.root_of(logged.seq, progress.applied()).await
                    } else {
                        None
                    };
                    if logged.event.change.has_feed_lines() {
                        // The log's event lists no files: its lines are in Postgres.
                        for line in event_lines(&roots.store, logged.seq).await {
                            let _ = files.send(Arc::new(FileEvent::from(line)));
                        }
                    }
                    publish(&files, &revocations, logged.seq, &logged.event, root);
                    next = EventSeq(logged.seq.0 + 1);
                    set_published(logged.seq);
                }
            }
            Err(e) => tracing::warn!(error = %e, "fan-out cannot read the log"),
        }
        set_up(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The Merkle roots of projected file events, read from Postgres a range at a time.
///
/// The log's events carry no root: the projector computes it. Once an event is
/// projected its root is in `events.merkle_root`, so the fan-out reads the roots of
/// everything projected so far in one query and serves the following events from
/// that, one query per projected batch rather than per event.
struct RootCache {
    store: Store,
    /// Roots of every file event in `(.., known_upto]` not yet asked for, ascending.
    roots: VecDeque<(EventSeq, [u8; 32])>,
    known_upto: EventSeq,
}

/// Roots read per query.
const ROOTS_PER_QUERY: u32 = 4096;

impl RootCache {
    fn new(store: Store, from: EventSeq) -> RootCache {
        RootCache {
            store,
            roots: VecDeque::new(),
            known_upto: EventSeq(from.0.saturating_sub(1)),
        }
    }

    /// The root recorded on the projected event `seq` (`applied` >= `seq`). A failed
    /// read leaves the root out rather than holding back live events: it is an extra
    /// that clients can get again from history or `/merkle/<user>/root`.
    async fn root_of(&mut self, seq: EventSeq, applied: EventSeq) -> Option<[u8; 32]> {
        if seq > self.known_upto {
            match self
                .store
                .event_roots(EventSeq(seq.0 - 1), applied, ROOTS_PER_QUERY)
                .await
            {
                Ok(found) => {
                    self.known_upto = match found.last() {
                        Some((last, _)) if found.len() == ROOTS_PER_QUERY as usize => *last,
                        _ => applied,
                    };
                    self.roots = found.into();
                }
                Err(e) => {
                    tracing::warn!(error = %e, seq = seq.0, "fan-out cannot read merkle roots");
                    return None;
                }
            }
        }
        while self.roots.front().is_some_and(|(s, _)| *s < seq) {
            self.roots.pop_front();
        }
        match self.roots.front() {
            Some((s, root)) if *s == seq => Some(*root),
            _ => None,
        }
    }
}

/// The feed lines of the projected event `seq`. Never gives up, as [`wait_projected`]:
/// relaying the event without them would be a gap in every live stream.
async fn event_lines(store: &Store, seq: EventSeq) -> Vec<store::feed::FeedEvent> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.event_lines(seq).await {
            Ok(lines) => return lines,
            Err(e) => {
                tracing::warn!(error = %e, seq = seq.0, "fan-out cannot read an event's lines")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Waits until the projections include `seq`. Never gives up: publishing earlier would
/// break the no-gap rule, and a stalled projector stalls the feeds anyway.
async fn wait_projected(progress: &Progress, seq: EventSeq) {
    while progress.applied() < seq {
        if !progress.wait_for(seq, Duration::from_secs(30)).await {
            tracing::warn!(seq = seq.0, "fan-out waiting for the projector");
        }
    }
}

fn publish(
    files: &broadcast::Sender<Arc<FileEvent>>,
    revocations: &broadcast::Sender<Arc<Revocation>>,
    seq: EventSeq,
    event: &domain::Event,
    merkle_root: Option<[u8; 32]>,
) {
    let user = event.user.to_z32();
    let ts_us = event.ts;
    // `send` fails only when nobody listens, which is fine.
    match &event.change {
        Change::FilePut {
            path, content_hash, ..
        } => {
            let _ = files.send(Arc::new(FileEvent {
                seq,
                line: 0,
                lines: 1,
                owner: user,
                op: Op::Put,
                path: path.clone(),
                content_hash: Some(content_hash.0),
                ts_us,
                merkle_root,
                moved_to: None,
            }));
        }
        Change::FileDeleted { path } => {
            let _ = files.send(Arc::new(FileEvent {
                seq,
                line: 0,
                lines: 1,
                owner: user,
                op: Op::Del,
                path: path.clone(),
                content_hash: None,
                ts_us,
                merkle_root,
                moved_to: None,
            }));
        }
        Change::GrantRevoked { grant_id, .. } => {
            let _ = revocations.send(Arc::new(Revocation::Grant {
                user,
                grant_id: grant_id.clone(),
            }));
        }
        Change::CookieSessionEnded { secret_hash } => {
            let _ = revocations.send(Arc::new(Revocation::Cookie {
                user,
                secret_hash: secret_hash.0,
            }));
        }
        Change::AccountDeleted { .. } => {
            let _ = revocations.send(Arc::new(Revocation::Account { user }));
        }
        _ => {}
    }
}
