//! The file writes this process appended to the log that the projections do not show
//! yet, per user: the overlay that lets the next write of the same user be validated
//! without waiting for the projector.
//!
//! Why: a write is checked against the user's projected state (expected sequence,
//! `If-Match`, quota, path collisions). If the per-user lock were held until the event
//! is projected, each user would get one write per projector batch, and every user
//! queued behind it would wait too. With this overlay the lock covers only the checks
//! and the append; the wait for visibility (read-your-writes) happens outside it.
//!
//! Correctness does not rest on the overlay: every append still carries the expected
//! last sequence of the user's file subjects, so a write validated on a wrong picture
//! (another instance's write, an overlay entry pruned too early) is refused by the log
//! and retried on fresh state. The overlay only makes the common case conflict-free.
//!
//! Entries leave the overlay once the user's projected `file_seq` reaches them: file
//! events of one user are projected in order, so the projected row then includes them.

use domain::{EventSeq, PublicKey};
use std::collections::HashMap;
use std::sync::Mutex;

/// What an unprojected write did to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingPath {
    Put { hash: [u8; 32], size: u64 },
    Deleted,
}

#[derive(Debug, Default)]
struct UserPending {
    /// (sequence, path, what happened, change of used bytes) in log order.
    writes: Vec<(EventSeq, String, PendingPath, i64)>,
}

/// The user's unprojected writes as one write's checks need them.
#[derive(Debug, Default, Clone)]
pub struct Overlay {
    /// The last appended file event, when it is newer than the projection.
    pub last_seq: Option<EventSeq>,
    /// Bytes the unprojected writes add to the projected `used_bytes`.
    pub used_delta: i64,
    paths: Vec<(String, PendingPath)>,
}

impl Overlay {
    /// The latest unprojected state of `path`, if an unprojected write touched it.
    pub fn path(&self, path: &str) -> Option<PendingPath> {
        self.paths
            .iter()
            .rev()
            .find(|(p, _)| p == path)
            .map(|(_, state)| *state)
    }

    /// Whether an unprojected write touched a path that is an ancestor of `path` or
    /// lies under it: then the projected collision check cannot be trusted and the
    /// caller waits for the projection instead.
    pub fn touches_tree_of(&self, path: &str) -> bool {
        let dir = format!("{path}/");
        self.paths.iter().any(|(p, _)| {
            p.starts_with(&dir)
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }

    /// The sequence the next append must expect, given the projected one.
    pub fn expected(&self, projected: EventSeq) -> EventSeq {
        self.last_seq.map_or(projected, |seq| seq.max(projected))
    }
}

#[derive(Debug, Default)]
pub struct PendingWrites(Mutex<HashMap<PublicKey, UserPending>>);

impl PendingWrites {
    /// The overlay of `user` on top of a projection that has applied the user's file
    /// events up to `projected` (the row's `file_seq`); older entries are dropped.
    pub fn overlay(&self, user: &PublicKey, projected: EventSeq) -> Overlay {
        let Ok(mut all) = self.0.lock() else {
            return Overlay::default();
        };
        let Some(pending) = all.get_mut(user) else {
            return Overlay::default();
        };
        pending.writes.retain(|(seq, ..)| *seq > projected);
        if pending.writes.is_empty() {
            all.remove(user);
            return Overlay::default();
        }
        Overlay {
            last_seq: pending.writes.last().map(|(seq, ..)| *seq),
            used_delta: pending.writes.iter().map(|(.., delta)| delta).sum(),
            paths: pending
                .writes
                .iter()
                .map(|(_, path, state, _)| (path.clone(), *state))
                .collect(),
        }
    }

    /// Records an appended write: `path` at `seq`, changing used bytes by `delta`.
    pub fn record(
        &self,
        user: &PublicKey,
        seq: EventSeq,
        path: &str,
        state: PendingPath,
        delta: i64,
    ) {
        if let Ok(mut all) = self.0.lock() {
            all.entry(user.clone())
                .or_default()
                .writes
                .push((seq, path.to_string(), state, delta));
        }
    }

    /// Forgets `user`'s entries up to `seq` (its write became visible).
    pub fn projected(&self, user: &PublicKey, seq: EventSeq) {
        if let Ok(mut all) = self.0.lock()
            && let Some(pending) = all.get_mut(user)
        {
            pending.writes.retain(|(s, ..)| *s > seq);
            if pending.writes.is_empty() {
                all.remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        domain::Keypair::random().public_key()
    }

    #[test]
    fn the_overlay_shows_unprojected_writes_until_the_projection_has_them() {
        let pending = PendingWrites::default();
        let user = key();
        assert_eq!(pending.overlay(&user, EventSeq(5)).last_seq, None);
        let put = PendingPath::Put {
            hash: [1; 32],
            size: 10,
        };
        pending.record(&user, EventSeq(7), "/pub/a", put, 266);
        pending.record(&user, EventSeq(9), "/pub/a", PendingPath::Deleted, -266);
        pending.record(&user, EventSeq(11), "/pub/b", put, 266);
        let overlay = pending.overlay(&user, EventSeq(5));
        assert_eq!(overlay.expected(EventSeq(5)), EventSeq(11));
        assert_eq!(overlay.used_delta, 266);
        assert_eq!(overlay.path("/pub/a"), Some(PendingPath::Deleted));
        assert_eq!(overlay.path("/pub/c"), None);
        // The projection caught up to 9: only /pub/b is left.
        let overlay = pending.overlay(&user, EventSeq(9));
        assert_eq!(overlay.path("/pub/a"), None);
        assert_eq!(overlay.used_delta, 266);
        pending.projected(&user, EventSeq(11));
        assert_eq!(pending.overlay(&user, EventSeq(0)).last_seq, None);
        assert_eq!(overlay.expected(EventSeq(20)), EventSeq(20));
    }

    #[test]
    fn writes_above_or_below_a_pending_path_are_told_apart() {
        let pending = PendingWrites::default();
        let user = key();
        let put = PendingPath::Put {
            hash: [1; 32],
            size: 1,
        };
        pending.record(&user, EventSeq(3), "/pub/dir/file", put, 0);
        let overlay = pending.overlay(&user, EventSeq(0));
        assert!(overlay.touches_tree_of("/pub/dir"));
        assert!(overlay.touches_tree_of("/pub/dir/file/deeper"));
        assert!(!overlay.touches_tree_of("/pub/di"));
        assert!(!overlay.touches_tree_of("/pub/dir/file2"));
        assert!(!overlay.touches_tree_of("/pub/other"));
    }
}
