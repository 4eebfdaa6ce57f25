//! The server side of a diff: which paths differ between one of a user's trees now and
//! an earlier root of that tree that a client holds (docs/merkle.md, "Diff").
//!
//! A mirror or a client that synced at root `R` asks "what changed since `R`?". While
//! the nodes of `R` are still stored (they are until the Merkle GC's grace period
//! after `R` was replaced), the server answers in one round trip with the list of
//! changed paths; the client applies them to its copy and checks that its new root is
//! the signed current root. When `R` is unknown the client falls back to fetching
//! nodes (`POST /merkle/<user>/nodes`), which needs nothing from the server's past.
//!
//! The walk (`domain::merkle::DiffWalk`) reads a node from Postgres only when it has
//! to open it: equal subtrees are skipped by hash, so the cost is the nodes on the
//! paths to the differences, not the size of the trees.

use crate::merkle::TreeRoot;
use crate::{Result, Store, StoreError};
use domain::merkle::{DiffWalk, Difference, Hash, MemStore, MerkleError, Node};

/// Node reads one diff may make: far above what `limit` differences need (a few
/// nodes per level each), it only stops a walk through a corrupt store.
const MAX_NODE_READS: usize = 200_000;

/// What differs between a client's root and the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDiff {
    /// The current root the differences lead to.
    pub to: TreeRoot,
    /// In path order; `local` is the value under the client's root, `remote` under
    /// the current one (`None` = absent).
    pub differences: Vec<Difference>,
    /// False when `limit` cut the list short.
    pub complete: bool,
}

impl Store {
    /// The differences between `from` (a root of `owner`'s public or private tree,
    /// `None` for the empty tree) and the tree's current root, at most `limit` of them.
    /// `None` when the nodes of `from` are not (or no longer) stored.
    pub async fn merkle_diff(
        &self,
        owner: &str,
        private: bool,
        from: Option<Hash>,
        limit: usize,
    ) -> Result<Option<TreeDiff>> {
        let to = self.merkle_root(owner, private).await?;
        let mut nodes = MemStore::default();
        let mut walk = DiffWalk::new(from, to.root);
        for _ in 0..MAX_NODE_READS {
            match walk.run(&nodes, &nodes, limit) {
                Ok(complete) => {
                    return Ok(Some(TreeDiff {
                        to,
                        differences: walk.into_differences(),
                        complete,
                    }));
                }
                Err(MerkleError::Missing(hash)) => {
                    let Some((_, body)) = self.merkle_nodes(owner, private, &[hash]).await?.pop()
                    else {
                        // The current tree is complete (the projector writes a root
                        // with its nodes), so a missing node is one of `from`'s.
                        return Ok(None);
                    };
                    let node = Node::decode(&body)
                        .map_err(|e| StoreError::Corrupt(format!("merkle node: {e}")))?;
                    nodes.nodes.insert(hash, node);
                }
                Err(e) => return Err(StoreError::Corrupt(format!("merkle diff: {e}"))),
            }
        }
        Err(StoreError::Corrupt(format!(
            "merkle diff of {owner} read more than {MAX_NODE_READS} nodes"
        )))
    }
}
