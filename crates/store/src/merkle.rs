//! The users' Merkle Search Trees in Postgres: nodes, roots, and their maintenance
//! inside the projector's transaction (see `docs/merkle.md`).
//!
//! The tree logic is `domain::merkle` (pure); this module owns where nodes live and
//! when they are read and written. During one batch, [`BatchTrees`] keeps every node it
//! has read and every node it has made in memory, so a node is read from Postgres at
//! most once per batch, and at the end writes only the new nodes reachable from each
//! tree's final root, with the root, in the batch's transaction.
//!
//! The batch locks the root row of every tree it edits (`FOR UPDATE`, on first touch)
//! until it commits; the garbage collector ([`crate::merkle_gc`]) takes the same lock
//! before it sweeps a tree, so the two never work on one tree at the same time. When a
//! batch replaces a root, it records the old one in `merkle_root_history`, which is what
//! lets the collector keep a just-replaced root walkable for a grace period.

use crate::{Result, Store, StoreError};
use domain::merkle::{self, Hash, MerkleError, Node, NodeSource, Proof};
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;

/// Node reads one edit may need before giving up: an edit touches a few nodes per
/// level, so this is far above any real tree and only stops a corrupt one.
const MAX_LOADS_PER_EDIT: usize = 4096;

/// The current root of one of a user's trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRoot {
    /// `None` for an empty tree.
    pub root: Option<Hash>,
    /// The sequence of the event that produced this root (0 if none yet).
    pub seq: u64,
}

/// Which of a user's two trees a path belongs to: `/priv/` paths are in the private one.
pub fn is_private_path(path: &str) -> bool {
    path.starts_with("/priv/")
}

#[derive(Default)]
struct TreeState {
    /// The root when the batch started (what the batch replaces).
    replaced: Option<Hash>,
    root: Option<Hash>,
    seq: i64,
    dirty: bool,
}

/// One user's nodes during a batch.
#[derive(Default)]
struct OwnerTrees {
    loaded: HashMap<Hash, Node>,
    created: HashMap<Hash, Node>,
    /// Indexed by `private as usize`; `None` until the root is read.
    trees: [Option<TreeState>; 2],
}

impl NodeSource for OwnerTrees {
    fn node(&self, hash: &Hash) -> Option<Node> {
        self.created
            .get(hash)
            .or_else(|| self.loaded.get(hash))
            .cloned()
    }
}

/// The trees touched by one batch of events.
#[derive(Default)]
pub(crate) struct BatchTrees {
    owners: HashMap<String, OwnerTrees>,
}

impl BatchTrees {
    /// Computes the root of `owner`'s tree after setting (`Some`) or removing (`None`)
    /// `path`, without adopting it: [`BatchTrees::adopt`] does once the entry is known
    /// to be written.
    pub(crate) async fn edit(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
        owner: &str,
        path: &str,
        value: Option<Hash>,
    ) -> Result<Option<Hash>> {
        let private = is_private_path(path);
        let trees = self.owners.entry(owner.to_owned()).or_default();
        let root = match &trees.trees[private as usize] {
            Some(state) => state.root,
            None => {
                let state = lock_root(tx, owner, private)
                    .await?
                    .map(|r| TreeState {
                        replaced: r.root,
                        root: r.root,
                        seq: r.seq as i64,
                        dirty: false,
                    })
                    .unwrap_or_default();
                let root = state.root;
                trees.trees[private as usize] = Some(state);
                root
            }
        };
        for _ in 0..MAX_LOADS_PER_EDIT {
            let result = match value {
                Some(value) => merkle::insert(&*trees, root, path, value),
                None => merkle::remove(&*trees, root, path),
            };
            match result {
                Ok(edit) => {
                    trees.created.extend(edit.created);
                    return Ok(edit.root);
                }
                Err(MerkleError::Missing(hash)) => {
                    let node = read_node(&mut **tx, owner, &hash).await?.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "merkle node {} of {owner} is missing",
                            hex(&hash)
                        ))
                    })?;
                    trees.loaded.insert(hash, node);
                }
                Err(e) => return Err(StoreError::Corrupt(format!("merkle tree of {owner}: {e}"))),
            }
        }
        Err(StoreError::Corrupt(format!(
            "merkle tree of {owner} needs too many nodes for one edit"
        )))
    }

    /// Makes `root` the current root of the tree of `path`, as of event `seq`.
    pub(crate) fn adopt(&mut self, owner: &str, path: &str, root: Option<Hash>, seq: i64) {
        let private = is_private_path(path);
        if let Some(state) = self
            .owners
            .get_mut(owner)
            .and_then(|trees| trees.trees[private as usize].as_mut())
        {
            state.root = root;
            state.seq = seq;
            state.dirty = true;
        }
    }

    /// Drops everything this batch knows of `owner`'s trees: the account was deleted
    /// (its rows go in the same transaction), so nothing of it may be flushed.
    pub(crate) fn forget(&mut self, owner: &str) {
        self.owners.remove(owner);
    }

    /// Writes the new nodes and the roots of every changed tree.
    pub(crate) async fn flush(self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        for (owner, trees) in &self.owners {
            for (index, state) in trees.trees.iter().enumerate() {
                let Some(state) = state.as_ref().filter(|state| state.dirty) else {
                    continue;
                };
                let private = index == 1;
                let new = merkle::reachable_new(state.root, &trees.created);
                insert_nodes(tx, owner, private, new).await?;
                sqlx::query(
                    "INSERT INTO merkle_roots (owner, private, root, seq) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (owner, private) DO UPDATE SET root = excluded.root, seq = excluded.seq",
                )
                .bind(owner)
                .bind(private)
                .bind(state.root.map(|h| h.to_vec()))
                .bind(state.seq)
                .execute(&mut **tx)
                .await?;
                if let Some(replaced) = state.replaced.filter(|old| Some(*old) != state.root) {
                    sqlx::query(
                        "INSERT INTO merkle_root_history (owner, private, root, replaced_us)
                         VALUES ($1, $2, $3, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
                         ON CONFLICT (owner, private, root) DO UPDATE SET replaced_us = excluded.replaced_us",
                    )
                    .bind(owner)
                    .bind(private)
                    .bind(&replaced[..])
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
        Ok(())
    }
}

/// Stores nodes of `owner`'s tree; nodes already there are left as they are (a node
/// is its hash).
async fn insert_nodes(
    tx: &mut Transaction<'_, Postgres>,
    owner: &str,
    private: bool,
    nodes: Vec<(Hash, &Node)>,
) -> Result<()> {
    // Bounded statements: a backfilled tree can have hundreds of thousands of nodes.
    for chunk in nodes.chunks(4096) {
        let hashes: Vec<Vec<u8>> = chunk.iter().map(|(h, _)| h.to_vec()).collect();
        let bodies: Vec<Vec<u8>> = chunk.iter().map(|(_, n)| n.encode()).collect();
        sqlx::query(
            "INSERT INTO merkle_nodes (owner, hash, private, body)
             SELECT $1, h, $2, b FROM unnest($3::bytea[], $4::bytea[]) AS t(h, b)
             ON CONFLICT DO NOTHING",
        )
        .bind(owner)
        .bind(private)
        .bind(hashes)
        .bind(bodies)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Reads the current root of a tree and locks its row until `tx` ends: the lock the
/// garbage collector also takes (see the module doc). A tree without a row yet has no
/// nodes the collector could touch (it sweeps only trees with a root row).
async fn lock_root(
    tx: &mut Transaction<'_, Postgres>,
    owner: &str,
    private: bool,
) -> Result<Option<TreeRoot>> {
    select_root(&mut **tx, owner, private, " FOR UPDATE").await
}

async fn read_root<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    owner: &str,
    private: bool,
) -> Result<Option<TreeRoot>> {
    select_root(executor, owner, private, "").await
}

async fn select_root<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    owner: &str,
    private: bool,
    locking: &'static str,
) -> Result<Option<TreeRoot>> {
    let sql =
        format!("SELECT root, seq FROM merkle_roots WHERE owner = $1 AND private = $2{locking}");
    let row: Option<(Option<Vec<u8>>, i64)> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(private)
        .fetch_optional(executor)
        .await?;
    row.map(|(root, seq)| {
        Ok(TreeRoot {
            root: root.map(|r| to_hash(&r)).transpose()?,
            seq: seq.max(0) as u64,
        })
    })
    .transpose()
}

async fn read_node<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    owner: &str,
    hash: &Hash,
) -> Result<Option<Node>> {
    let body: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT body FROM merkle_nodes WHERE owner = $1 AND hash = $2")
            .bind(owner)
            .bind(&hash[..])
            .fetch_optional(executor)
            .await?;
    body.map(|body| decode_checked(&body, hash)).transpose()
}

/// Decodes a stored node and checks it is the one asked for.
pub(crate) fn decode_checked(body: &[u8], hash: &Hash) -> Result<Node> {
    if blake3::hash(body).as_bytes() != hash {
        return Err(StoreError::Corrupt(format!(
            "merkle node {} does not match its hash",
            hex(hash)
        )));
    }
    Node::decode(body).map_err(|e| StoreError::Corrupt(format!("merkle node {}: {e}", hex(hash))))
}

pub(crate) fn to_hash(bytes: &[u8]) -> Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("merkle hash is not 32 bytes".into()))
}

pub(crate) fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// The current root of `owner`'s public or private tree (empty if never written).
    ///
    /// A tree with entries but no root yet is [`StoreError::TreePending`], never an
    /// empty root: a mirror told "empty" would delete its copy.
    pub async fn merkle_root(&self, owner: &str, private: bool) -> Result<TreeRoot> {
        if let Some(root) = read_root(&self.pool, owner, private).await? {
            return Ok(root);
        }
        if !self.maintain_merkle {
            return Ok(TreeRoot { root: None, seq: 0 });
        }
        let has_entries: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE owner = $1 AND (path LIKE '/priv/%') = $2)",
        )
        .bind(owner)
        .bind(private)
        .fetch_one(&self.pool)
        .await?;
        if has_entries {
            return Err(StoreError::TreePending(owner.to_owned()));
        }
        Ok(TreeRoot { root: None, seq: 0 })
    }

    /// The encodings of those of `hashes` that are nodes of `owner`'s tree (public or
    /// private), in the order asked; unknown hashes are left out.
    pub async fn merkle_nodes(
        &self,
        owner: &str,
        private: bool,
        hashes: &[Hash],
    ) -> Result<Vec<(Hash, Vec<u8>)>> {
        let wanted: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT hash, body FROM merkle_nodes
             WHERE owner = $1 AND private = $2 AND hash = ANY($3::bytea[])",
        )
        .bind(owner)
        .bind(private)
        .bind(wanted)
        .fetch_all(&self.pool)
        .await?;
        let mut found: HashMap<Hash, Vec<u8>> = HashMap::with_capacity(rows.len());
        for (hash, body) in rows {
            found.insert(to_hash(&hash)?, body);
        }
        Ok(hashes
            .iter()
            .filter_map(|h| found.remove(h).map(|body| (*h, body)))
            .collect())
    }

    /// The inclusion or absence proof for `path` under the current root of its tree.
    /// Root and nodes are read in one repeatable-read snapshot so they agree.
    pub async fn merkle_proof(&self, owner: &str, path: &str) -> Result<(TreeRoot, Proof)> {
        let private = is_private_path(path);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let root = read_root(&mut *tx, owner, private)
            .await?
            .unwrap_or(TreeRoot { root: None, seq: 0 });
        let mut nodes = Vec::new();
        let mut next = root.root;
        // A proof has one node per level; levels strictly decrease, so at most 256.
        for _ in 0..=256 {
            let Some(hash) = next else { break };
            let node = read_node(&mut *tx, owner, &hash).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("merkle node {} of {owner} is missing", hex(&hash)))
            })?;
            nodes.push(node.encode());
            next = match node.locate(path) {
                Ok(_) => None,
                Err(slot) => node.child(slot),
            };
        }
        tx.commit().await?;
        Ok((root, Proof { nodes }))
    }

    /// Every node of `owner`'s tree (public or private), for verification and tools.
    pub async fn merkle_all_nodes(&self, owner: &str, private: bool) -> Result<merkle::MemStore> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT hash, body FROM merkle_nodes WHERE owner = $1 AND private = $2")
                .bind(owner)
                .bind(private)
                .fetch_all(&self.pool)
                .await?;
        let mut store = merkle::MemStore::default();
        for (hash, body) in rows {
            let hash = to_hash(&hash)?;
            store.nodes.insert(hash, decode_checked(&body, &hash)?);
        }
        Ok(store)
    }
}

/// What `homeserver verify` compares, read in one snapshot: a user's entries, the
/// stored roots and the sequence of the last file event projected for the user.
#[derive(Debug, Clone)]
pub struct MerkleSnapshot {
    /// Sequence of the user's last projected file event (0 if none).
    pub file_seq: u64,
    /// Entries of the public tree, sorted by path.
    pub public: Vec<(String, Hash)>,
    /// Entries of the private tree, sorted by path.
    pub private: Vec<(String, Hash)>,
    pub public_root: TreeRoot,
    pub private_root: TreeRoot,
}

impl Store {
    /// A consistent snapshot of `owner`'s entries and roots; `None` if no such user.
    pub async fn merkle_snapshot(&self, owner: &str) -> Result<Option<MerkleSnapshot>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let file_seq: Option<i64> =
            sqlx::query_scalar("SELECT file_seq FROM users WHERE pubkey = $1")
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(file_seq) = file_seq else {
            return Ok(None);
        };
        let (public, private) = tree_entries(&mut *tx, owner).await?;
        let empty = TreeRoot { root: None, seq: 0 };
        let public_root = read_root(&mut *tx, owner, false).await?.unwrap_or(empty);
        let private_root = read_root(&mut *tx, owner, true).await?.unwrap_or(empty);
        tx.commit().await?;
        Ok(Some(MerkleSnapshot {
            file_seq: file_seq.max(0) as u64,
            public,
            private,
            public_root,
            private_root,
        }))
    }
}

/// `owner`'s entries as the keys and values of the public and the private tree, each
/// sorted by path.
#[allow(clippy::type_complexity)]
async fn tree_entries<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    owner: &str,
) -> Result<(Vec<(String, Hash)>, Vec<(String, Hash)>)> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT path, content_hash FROM entries WHERE owner = $1 ORDER BY path")
            .bind(owner)
            .fetch_all(executor)
            .await?;
    let (mut public, mut private) = (Vec::new(), Vec::new());
    for (path, hash) in rows {
        let hash = to_hash(&hash)?;
        if is_private_path(&path) {
            private.push((path, hash));
        } else {
            public.push((path, hash));
        }
    }
    Ok((public, private))
}

impl Store {
    /// Builds the trees of users who have entries but no trees: data projected before
    /// the trees existed, or whose trees a migration dropped (0005, the change of
    /// fan-out). The projector runs this before it follows the log, so nothing edits
    /// these users' trees meanwhile; each root takes the sequence of the tree's last
    /// file event. Returns the number of users whose trees were built.
    pub async fn backfill_merkle_trees(&self) -> Result<usize> {
        if !self.maintain_merkle {
            return Ok(0);
        }
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT u.pubkey FROM users u
             WHERE EXISTS (SELECT 1 FROM entries e WHERE e.owner = u.pubkey)
               AND NOT EXISTS (SELECT 1 FROM merkle_roots r WHERE r.owner = u.pubkey)",
        )
        .fetch_all(&self.pool)
        .await?;
        for owner in &owners {
            let mut tx = self.pool.begin().await?;
            let (public, private) = tree_entries(&mut *tx, owner).await?;
            for (is_private, entries) in [(false, public), (true, private)] {
                let seq: i64 = sqlx::query_scalar(
                    "SELECT coalesce(max(seq), 0) FROM events WHERE owner = $1 AND private = $2",
                )
                .bind(owner)
                .bind(is_private)
                .fetch_one(&mut *tx)
                .await?;
                let mut nodes = merkle::MemStore::default();
                let root = merkle::build(&entries, &mut nodes);
                insert_nodes(
                    &mut tx,
                    owner,
                    is_private,
                    nodes.nodes.iter().map(|(h, n)| (*h, n)).collect(),
                )
                .await?;
                sqlx::query(
                    "INSERT INTO merkle_roots (owner, private, root, seq) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (owner, private) DO NOTHING",
                )
                .bind(owner)
                .bind(is_private)
                .bind(root.map(|h| h.to_vec()))
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        if !owners.is_empty() {
            tracing::info!(users = owners.len(), "merkle trees built from the entries");
        }
        Ok(owners.len())
    }
}
