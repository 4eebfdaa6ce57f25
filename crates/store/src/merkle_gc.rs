//! Garbage collection of Merkle nodes (docs/merkle.md, "Garbage collection").
//!
//! Nodes are immutable and content-addressed per owner, and every put rewrites the
//! nodes of one root-to-leaf path, so the nodes of replaced roots pile up. A sweep of
//! one tree keeps the nodes reachable from its current root and from the roots it had
//! until less than the grace period ago (`merkle_root_history`, written by the
//! projector), so a client in the middle of a diff against a just-replaced root can
//! finish; it deletes every other node of the tree and the history rows older than the
//! grace period.
//!
//! Why a sweep never deletes a node a root still needs: the projector writes a tree's
//! nodes only inside a batch transaction that first locked the tree's `merkle_roots`
//! row (`FOR UPDATE`, before it reads any node of the tree), and a sweep runs in one
//! transaction that locks the same row before it reads anything. So the two exclude
//! each other per tree:
//!
//! * a batch that locked first commits before the sweep reads the root, the history
//!   and the nodes (read committed: each statement sees the batch's commit), so the
//!   new root, the replaced root and every node the batch inserted are seen and kept;
//! * a sweep that locked first commits before the batch reads the root; the batch's
//!   edits start from the current root, whose nodes were all kept, and a node the batch
//!   makes again that the sweep deleted is inserted again: `ON CONFLICT DO NOTHING`
//!   checks against the committed deletion, so the batch's insert is no longer a no-op.
//!
//! Nothing else writes nodes, and a tree without a root row is never swept (its first
//! batch creates the row). The sweep reads every node it keeps and the hashes of all
//! the tree's nodes; a node that is missing or does not hash to its address stops the
//! sweep of that tree without deleting anything.

use crate::merkle::{decode_checked, hex, to_hash};
use crate::{Result, Store, StoreError};
use domain::merkle::Hash;
use sqlx::{Postgres, Transaction};
use std::collections::HashSet;
use std::time::Duration;

/// Nodes read or deleted per statement.
const CHUNK: usize = 1000;

/// The current time on the Postgres clock, in unix microseconds: the clock of
/// `merkle_root_history.replaced_us`, so that projector and collector agree whatever
/// host they run on.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleGcReport {
    /// Trees swept (a user has up to two: public and private).
    pub trees: u64,
    /// Nodes kept: reachable from a current root or a root within the grace period.
    pub kept: u64,
    pub deleted: u64,
    /// History rows older than the grace period, removed.
    pub pruned: u64,
    /// Trees whose sweep stopped on an inconsistency (logged; nothing deleted there).
    pub failed: u64,
}

/// Which trees a collection sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcScope {
    /// Only trees that can have garbage: a root they replaced has left the grace period
    /// (or they predate the history). What the periodic collection sweeps.
    Due,
    /// Every tree.
    All,
}

impl Store {
    /// Sweeps the trees of `scope` (see the module doc). A failure of one tree is
    /// logged and counted in `failed`; a database outage ends the collection.
    pub async fn merkle_gc(&self, grace: Duration, scope: GcScope) -> Result<MerkleGcReport> {
        let grace_us = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
        let cutoff: i64 = sqlx::query_scalar(&format!("SELECT {NOW_US} - $1"))
            .bind(grace_us)
            .fetch_one(&self.pool)
            .await?;
        let trees: Vec<(String, bool)> = match scope {
            GcScope::Due => {
                sqlx::query_as(
                    "SELECT DISTINCT owner, private FROM merkle_root_history
                     WHERE replaced_us <= $1 ORDER BY owner, private",
                )
                .bind(cutoff)
                .fetch_all(&self.pool)
                .await?
            }
            GcScope::All => {
                sqlx::query_as("SELECT owner, private FROM merkle_roots ORDER BY owner, private")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut report = MerkleGcReport::default();
        for (owner, private) in trees {
            match self.sweep_tree(&owner, private, cutoff).await {
                Ok(Some(tree)) => {
                    report.trees += 1;
                    report.kept += tree.kept;
                    report.deleted += tree.deleted;
                    report.pruned += tree.pruned;
                }
                Ok(None) => {}
                Err(StoreError::Corrupt(reason)) => {
                    tracing::warn!(%owner, private, %reason, "merkle gc skipped a tree");
                    report.failed += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// One tree in one transaction; `None` if it has no root row.
    async fn sweep_tree(
        &self,
        owner: &str,
        private: bool,
        cutoff: i64,
    ) -> Result<Option<MerkleGcReport>> {
        let mut tx = self.pool.begin().await?;
        // The lock the projector takes before it touches the tree (module doc).
        let current: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT root FROM merkle_roots WHERE owner = $1 AND private = $2 FOR UPDATE",
        )
        .bind(owner)
        .bind(private)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            return Ok(None);
        };
        let retained: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT root FROM merkle_root_history
             WHERE owner = $1 AND private = $2 AND replaced_us > $3",
        )
        .bind(owner)
        .bind(private)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut roots = Vec::with_capacity(retained.len() + 1);
        for root in current.iter().chain(&retained) {
            let root = to_hash(root)?;
            // The all-zero hash stands for an empty root (migration 0004).
            if root != [0; 32] {
                roots.push(root);
            }
        }
        let kept = mark(&mut tx, owner, private, roots).await?;

        let stored: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM merkle_nodes WHERE owner = $1 AND private = $2")
                .bind(owner)
                .bind(private)
                .fetch_all(&mut *tx)
                .await?;
        let garbage: Vec<Vec<u8>> = stored
            .into_iter()
            .filter(|hash| to_hash(hash).is_ok_and(|hash| !kept.contains(&hash)))
            .collect();
        let mut deleted = 0;
        for chunk in garbage.chunks(CHUNK) {
            deleted += sqlx::query(
                "DELETE FROM merkle_nodes WHERE owner = $1 AND private = $2 AND hash = ANY($3)",
            )
            .bind(owner)
            .bind(private)
            .bind(chunk)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        let pruned = sqlx::query(
            "DELETE FROM merkle_root_history
             WHERE owner = $1 AND private = $2 AND replaced_us <= $3",
        )
        .bind(owner)
        .bind(private)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Some(MerkleGcReport {
            trees: 1,
            kept: kept.len() as u64,
            deleted,
            pruned,
            failed: 0,
        }))
    }
}

/// The hashes of every node reachable from `roots`, read level by level (one query per
/// `CHUNK` nodes of a level); subtrees shared between roots are read once.
async fn mark(
    tx: &mut Transaction<'_, Postgres>,
    owner: &str,
    private: bool,
    roots: Vec<Hash>,
) -> Result<HashSet<Hash>> {
    let mut seen: HashSet<Hash> = HashSet::new();
    let mut frontier: Vec<Hash> = roots.into_iter().filter(|h| seen.insert(*h)).collect();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for chunk in frontier.chunks(CHUNK) {
            let wanted: Vec<&[u8]> = chunk.iter().map(|h| &h[..]).collect();
            let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "SELECT hash, body FROM merkle_nodes
                 WHERE owner = $1 AND private = $2 AND hash = ANY($3)",
            )
            .bind(owner)
            .bind(private)
            .bind(wanted)
            .fetch_all(&mut **tx)
            .await?;
            if rows.len() != chunk.len() {
                let found: HashSet<Vec<u8>> = rows.iter().map(|(h, _)| h.clone()).collect();
                let missing = chunk
                    .iter()
                    .find(|h| !found.contains(&h[..]))
                    .map_or_else(String::new, hex);
                return Err(StoreError::Corrupt(format!(
                    "merkle node {missing} of {owner} is missing"
                )));
            }
            for (hash, body) in rows {
                let node = decode_checked(&body, &to_hash(&hash)?)?;
                next.extend(node.children().filter(|child| seen.insert(*child)));
            }
        }
        frontier = next;
    }
    Ok(seen)
}
