//! Mirroring (docs/mirror.md): this homeserver keeps a live, verified, read-only copy
//! of a user whose primary is another homeserver, of ours or any Pubky homeserver.
//!
//! Why a crate of its own: a mirror is a follower of a *remote* log, and touches every
//! service of this one (it appends to the log, is read through the read-api's routes,
//! refuses writes before the write-api sees them, has operator routes and a loop that
//! runs beside the projector). Keeping all of it here keeps those services unaware of
//! mirroring: they only compose [`router`], [`admin_router`], [`guard`] and [`spawn`].
//!
//! * [`source`]: the primary over HTTP (signed roots, diffs, nodes, files, listings,
//!   events).
//! * [`sync`]: bringing one tree to the primary's signed root by diff (initial copy,
//!   catch-up, anti-entropy); content checked by its hash before anything is appended.
//! * [`plain`]: the copy and follow of a primary that is not ours (the reference
//!   homeserver): listings, reads and `/events-stream` alone.
//! * [`follow`]: the loop: sync, then follow the primary's event stream with a cursor
//!   checkpointed in `mirrors` (migration 0021), with back-off on failures.
//! * [`guard`]: refuses writes to a mirrored user (409 naming the primary) and marks
//!   the mirror's reads with the primary's key.
//! * [`routes`]: the status resource, the user's signed request, the operator's routes.
//! * [`moving`]: the move of a user from one homeserver to another (docs/move.md): the
//!   seal of the homeserver they leave (`user_moved`, writes answered 410 naming the
//!   new one) and the promotion of the mirror on the one they move to.
//!
//! The copied files are ordinary events of this homeserver's log marked
//! `origin: {source: "mirror", primary, source_seq}`, so entries, feeds and Merkle
//! trees of a mirrored user come from the same projector as everyone else's.

pub mod follow;
pub mod guard;
pub mod moving;
pub mod plain;
pub mod routes;
pub mod source;
pub mod sync;
pub mod table;

pub use guard::{PRIMARY_HEADER, guard};
pub use routes::{AdminApiDoc, ApiDoc, admin_router, router};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the mirror loop runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seconds between comparisons of the primary's signed roots with the local ones
    /// (anti-entropy); drift is repaired by diff.
    pub anti_entropy: Duration,
    /// How often the supervisor re-reads the `mirrors` table (mirrors added or removed
    /// by another process).
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            anti_entropy: Duration::from_secs(60),
            poll: Duration::from_secs(5),
        }
    }
}

/// The mirrored users of this homeserver and their primaries' keys, and the users who
/// moved away (docs/move.md), in memory, for the guard on every request; refreshed from
/// the tables by the supervisor and changed at once by this process's own add, remove
/// and seal.
#[derive(Clone, Default)]
pub struct MirrorSet {
    inner: Arc<RwLock<HashMap<String, String>>>,
    /// Users who moved away: the homeserver they moved to and when (unix µs).
    moved: Arc<RwLock<HashMap<String, (String, u64)>>>,
    /// How long the reads of a user who moved away are still served.
    move_grace: Option<Duration>,
    changed: Arc<tokio::sync::Notify>,
    /// The lag last asked of each user's primary.
    lags: Arc<std::sync::Mutex<HashMap<String, AskedLag>>>,
}

/// When a lag was asked, at which cursor, and the answer.
type AskedLag = (std::time::Instant, u64, Option<u64>);

/// How long a lag asked of a primary is reused by the status resource, which is
/// public: without it every status request would be a request to the primary.
pub const LAG_TTL: Duration = Duration::from_secs(2);

/// How long a homeserver a user left serves their reads, by default (30 days).
pub const MOVE_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

impl MirrorSet {
    /// A set whose guard serves the reads of a user who moved away for `grace`.
    pub fn with_move_grace(grace: Duration) -> Self {
        MirrorSet {
            move_grace: Some(grace),
            ..MirrorSet::default()
        }
    }

    /// How long the reads of a user who moved away are served.
    pub fn move_grace(&self) -> Duration {
        self.move_grace.unwrap_or(MOVE_GRACE)
    }

    /// Where `user` moved to and when (unix µs), if they left this homeserver.
    pub fn moved_to(&self, user: &str) -> Option<(String, u64)> {
        self.moved.read().ok()?.get(user).cloned()
    }

    /// This process sealed `user`: the guard refuses their writes at once.
    pub fn insert_moved(&self, user: &str, to: &str, since_us: u64) {
        if let Ok(mut map) = self.moved.write() {
            map.insert(user.to_owned(), (to.to_owned(), since_us));
        }
    }

    /// Replaces the users who moved away (the `users` table's current rows).
    pub fn replace_moved(&self, rows: impl Iterator<Item = (String, String, u64)>) {
        if let Ok(mut map) = self.moved.write() {
            *map = rows.map(|(user, to, since)| (user, (to, since))).collect();
        }
    }

    /// The primary's key (z32) if `user` (z32) is mirrored here.
    pub fn primary_of(&self, user: &str) -> Option<String> {
        self.inner.read().ok()?.get(user).cloned()
    }

    pub fn insert(&self, user: &str, primary: &str) {
        if let Ok(mut map) = self.inner.write() {
            map.insert(user.to_owned(), primary.to_owned());
        }
        self.changed.notify_waiters();
    }

    pub fn remove(&self, user: &str) {
        if let Ok(mut map) = self.inner.write() {
            map.remove(user);
        }
        self.changed.notify_waiters();
    }

    /// Replaces the whole set (the table's current rows).
    pub fn replace(&self, rows: impl Iterator<Item = (String, String)>) {
        if let Ok(mut map) = self.inner.write() {
            *map = rows.collect();
        }
    }

    /// The lag asked of `user`'s primary at `cursor` less than [`LAG_TTL`] ago.
    pub fn cached_lag(&self, user: &str, cursor: u64) -> Option<Option<u64>> {
        let lags = self.lags.lock().ok()?;
        let (when, at, lag) = lags.get(user)?;
        (*at == cursor && when.elapsed() < LAG_TTL).then_some(*lag)
    }

    pub fn cache_lag(&self, user: &str, cursor: u64, lag: Option<u64>) {
        if let Ok(mut lags) = self.lags.lock() {
            lags.retain(|_, (when, _, _)| when.elapsed() < LAG_TTL);
            lags.insert(user.to_owned(), (std::time::Instant::now(), cursor, lag));
        }
    }

    /// Resolves when this process added or removed a mirror.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Fills the set from the table now (a process that serves requests before its
    /// supervisor's first round, or one without a supervisor).
    pub async fn load(&self, store: &store::Store) -> Result<(), sqlx::Error> {
        let rows = table::primaries(store).await?;
        self.replace(rows.into_iter());
        self.replace_moved(table::moved(store).await?.into_iter());
        Ok(())
    }
}

impl MirrorSet {
    /// Re-reads the set from the table every few seconds until `stop`: for processes
    /// that serve requests without running the mirror loop (split deployment).
    pub fn keep_loaded(
        &self,
        store: store::Store,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let set = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = set.load(&store).await {
                    tracing::warn!(error = %e, "cannot read the mirrors table");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Settings::default().poll) => {}
                }
            }
        })
    }
}

/// Starts the mirror loop (the supervisor and one task per mirrored user) until
/// `stop` is cancelled.
pub fn spawn(
    state: api::AppState,
    set: MirrorSet,
    settings: Settings,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(follow::supervise(state, set, settings, stop))
}
