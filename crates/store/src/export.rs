//! Reads for account export (`GET /export/<user>`, `homeserver export`): one page of a
//! user's tree at a time, consistent with the root it is exported under.
//!
//! A page is read in one repeatable-read transaction: the tree's root, the nodes
//! reachable from it (first page only) and up to `limit` entries after the cursor all
//! describe the same committed state, so a page always verifies against its own root.
//! Pages are bounded (entries and bytes), so a 100,000-entry user is many short reads,
//! never one long transaction.

use crate::merkle::{TreeRoot, decode_checked, to_hash};
use crate::{Result, Store};
use domain::merkle::{Hash, Node};
use std::collections::HashMap;

/// One file of an export page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    pub path: String,
    pub content_hash: Hash,
    pub size: u64,
    pub content_type: String,
}

/// What one page of an export holds.
#[derive(Debug, Clone)]
pub struct ExportPage {
    pub root: TreeRoot,
    /// Encodings of the nodes reachable from `root`, parents first; empty unless asked.
    pub nodes: Vec<Vec<u8>>,
    pub entries: Vec<ExportEntry>,
    /// The last path of this page when more entries follow.
    pub next: Option<String>,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct PageQuery<'a> {
    pub private: bool,
    /// Exclusive: entries strictly after this path.
    pub cursor: Option<&'a str>,
    pub limit: u32,
    /// The page ends after the entry that reaches this many content bytes (a page has
    /// at least one entry, whatever its size).
    pub max_bytes: u64,
    pub with_nodes: bool,
}

impl Store {
    /// One page of `owner`'s public or private tree; `None` when the user does not exist.
    pub async fn export_page(
        &self,
        owner: &str,
        query: &PageQuery<'_>,
    ) -> Result<Option<ExportPage>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE pubkey = $1)")
                .bind(owner)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Ok(None);
        }
        let row: Option<(Option<Vec<u8>>, i64)> =
            sqlx::query_as("SELECT root, seq FROM merkle_roots WHERE owner = $1 AND private = $2")
                .bind(owner)
                .bind(query.private)
                .fetch_optional(&mut *tx)
                .await?;
        let has_root = row.is_some();
        let root = match row {
            Some((root, seq)) => TreeRoot {
                root: root.map(|r| to_hash(&r)).transpose()?,
                seq: seq.max(0) as u64,
            },
            None => TreeRoot { root: None, seq: 0 },
        };
        let (lo, hi) = if query.private {
            ("/priv/", "/priv0")
        } else {
            ("/pub/", "/pub0")
        };
        let after = query.cursor.filter(|c| *c >= lo).unwrap_or(lo);
        let rows: Vec<(String, Vec<u8>, i64, String)> = sqlx::query_as(
            "SELECT path, content_hash, size, content_type FROM entries
             WHERE owner = $1 AND path > $2 AND path >= $3 AND path < $4
             ORDER BY path LIMIT $5",
        )
        .bind(owner)
        .bind(after)
        .bind(lo)
        .bind(hi)
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&mut *tx)
        .await?;
        // Entries without a root: the tree is being rebuilt (see `Store::merkle_root`).
        if !has_root && !rows.is_empty() && self.maintain_merkle {
            return Err(crate::StoreError::TreePending(owner.to_owned()));
        }
        let more = rows.len() > query.limit as usize;
        let mut entries = Vec::with_capacity(rows.len());
        let mut bytes = 0u64;
        let mut cut = false;
        for (path, hash, size, content_type) in rows.into_iter().take(query.limit as usize) {
            if !entries.is_empty() && bytes >= query.max_bytes {
                cut = true;
                break;
            }
            bytes += size.max(0) as u64;
            entries.push(ExportEntry {
                path,
                content_hash: to_hash(&hash)?,
                size: size.max(0) as u64,
                content_type,
            });
        }
        let next = (more || cut)
            .then(|| entries.last().map(|e| e.path.clone()))
            .flatten();
        let nodes = if query.with_nodes {
            reachable_nodes(&mut tx, owner, query.private, root.root).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(Some(ExportPage {
            root,
            nodes,
            entries,
            next,
        }))
    }
}

/// The nodes reachable from `root`, read a level at a time (one query per level).
async fn reachable_nodes(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    owner: &str,
    private: bool,
    root: Option<Hash>,
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut level: Vec<Hash> = root.into_iter().collect();
    while !level.is_empty() {
        let wanted: Vec<Vec<u8>> = level.iter().map(|h| h.to_vec()).collect();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT hash, body FROM merkle_nodes
             WHERE owner = $1 AND private = $2 AND hash = ANY($3)",
        )
        .bind(owner)
        .bind(private)
        .bind(&wanted)
        .fetch_all(&mut **tx)
        .await?;
        let found: HashMap<Hash, Vec<u8>> = rows
            .into_iter()
            .map(|(hash, body)| Ok((to_hash(&hash)?, body)))
            .collect::<Result<_>>()?;
        let mut next = Vec::new();
        for hash in &level {
            let body = found.get(hash).ok_or_else(|| {
                crate::StoreError::Corrupt(format!(
                    "merkle node {} of {owner} is missing",
                    crate::merkle::hex(hash)
                ))
            })?;
            let node: Node = decode_checked(body, hash)?;
            next.extend(node.children());
            out.push(body.clone());
        }
        level = next;
    }
    Ok(out)
}
