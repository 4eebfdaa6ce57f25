//! Projecting the folder events of WebDAV: `dir_created` (`MKCOL`), `tree_deleted`
//! (`DELETE` of a collection) and `tree_copied` (`COPY`, `MOVE`), and the dead
//! properties of `props_patched` (`PROPPATCH`).
//!
//! A folder operation is one event however many files it touches, so its projection is
//! one step of the projector's transaction, like every other event: the entries go,
//! each file's removal edits the Merkle tree in path order, the quota shrinks, and each
//! removed file becomes a `DEL` line of the event in the feed (`line`/`lines`, as
//! `account_deleted` does), which is how the feeds and live streams show it. Every line
//! carries the root of its tree after the whole event.

use crate::entries::dir_end;
use crate::merkle::{BatchTrees, is_private_path};
use crate::projection::ENTRY_OVERHEAD_BYTES;
use crate::{Result, account_deletion};
use sqlx::{Postgres, Row, Transaction};

/// One file a folder event changes, and what it becomes: `Some(hash)` = put.
pub(crate) struct LineChange {
    pub path: String,
    pub put: Option<PutLine>,
}

pub(crate) struct PutLine {
    pub hash: [u8; 32],
    pub size: i64,
    pub content_type: String,
}

/// Whether `user` (z32) has a row; a folder event of a deleted account changes nothing
/// but the tombstone's file sequence.
async fn user_exists(tx: &mut Transaction<'_, Postgres>, user: &str, seq: i64) -> Result<bool> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE pubkey = $1)")
        .bind(user)
        .fetch_one(&mut **tx)
        .await?;
    if !exists {
        account_deletion::file_event_of_deleted(tx, user, seq).await?;
    }
    Ok(exists)
}

pub(crate) async fn dir_created(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    seq: i64,
    path: &str,
) -> Result<()> {
    if !user_exists(tx, user, seq).await? {
        return Ok(());
    }
    // A folder re-stated by a re-seeded log takes the new log's sequence.
    sqlx::query(
        "INSERT INTO dav_dirs (owner, path, seq) VALUES ($1, $2, $3)
         ON CONFLICT (owner, path) DO UPDATE SET seq = excluded.seq",
    )
    .bind(user)
    .bind(path)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    set_file_seq(tx, user, seq, 0).await
}

pub(crate) async fn tree_deleted(
    tx: &mut Transaction<'_, Postgres>,
    trees: Option<&mut BatchTrees>,
    user: &str,
    seq: i64,
    ts: i64,
    dir: &str,
) -> Result<()> {
    if !user_exists(tx, user, seq).await? {
        return Ok(());
    }
    let removed = remove_tree(tx, user, dir, true).await?;
    let freed: i64 = removed
        .iter()
        .map(|(_, size)| size + ENTRY_OVERHEAD_BYTES)
        .sum();
    let changes: Vec<LineChange> = removed
        .into_iter()
        .map(|(path, _)| LineChange { path, put: None })
        .collect();
    write_lines(tx, trees, user, seq, ts, &changes).await?;
    set_file_seq(tx, user, seq, -freed).await
}

/// Removes the entries and folders (and with `locks`, the locks) at and under `dir`
/// (ending with `/`), and a file at `dir` without its slash; returns the removed
/// files' paths and sizes in path order.
pub(crate) async fn remove_tree(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    dir: &str,
    locks: bool,
) -> Result<Vec<(String, i64)>> {
    let end = dir_end(dir);
    let file = dir.trim_end_matches('/');
    let rows = sqlx::query(
        "DELETE FROM entries WHERE owner = $1 AND ((path >= $2 AND path < $3) OR path = $4)
         RETURNING path, size",
    )
    .bind(user)
    .bind(dir)
    .bind(&end)
    .bind(file)
    .fetch_all(&mut **tx)
    .await?;
    let tables: &[&str] = if locks {
        &["dav_dirs", "dav_props", "entry_locks"]
    } else {
        &["dav_dirs", "dav_props"]
    };
    for table in tables {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE owner = $1 AND ((path >= $2 AND path < $3) OR path = $4)"
        ))
        .bind(user)
        .bind(dir)
        .bind(&end)
        .bind(file)
        .execute(&mut **tx)
        .await?;
    }
    let mut removed: Vec<(String, i64)> = rows
        .iter()
        .map(|row| (row.get("path"), row.get("size")))
        .collect();
    removed.sort();
    Ok(removed)
}

/// What a `tree_copied` event names.
pub(crate) struct Copy<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub moved: bool,
    pub shallow: bool,
}

/// `tree_copied`: the destination is cleared (its locks stay: they belong to the
/// path, and the writer checked them), the source's files are written under the
/// destination with the source's content, and a move removes the source (and its locks).
pub(crate) async fn tree_copied(
    tx: &mut Transaction<'_, Postgres>,
    trees: Option<&mut BatchTrees>,
    user: &str,
    seq: i64,
    ts: i64,
    copy: Copy<'_>,
) -> Result<()> {
    if !user_exists(tx, user, seq).await? {
        return Ok(());
    }
    let is_dir = copy.from.ends_with('/');
    // The source as it is before anything changes.
    let sources: Vec<(String, PutLine)> = if copy.shallow {
        Vec::new()
    } else {
        sqlx::query(
            "SELECT path, content_hash, size, content_type FROM entries
             WHERE owner = $1 AND (path = $2 OR ($4 AND path >= $2 AND path < $3))
             ORDER BY path",
        )
        .bind(user)
        .bind(copy.from)
        .bind(dir_end(&format!("{}/", copy.from.trim_end_matches('/'))))
        .bind(is_dir)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| {
            let path: String = row.get("path");
            let hash: Vec<u8> = row.get("content_hash");
            let mut digest = [0u8; 32];
            if hash.len() == 32 {
                digest.copy_from_slice(&hash);
            }
            let target = format!("{}{}", copy.to, &path[copy.from.len()..]);
            let put = PutLine {
                hash: digest,
                size: row.get("size"),
                content_type: row.get("content_type"),
            };
            (target, put)
        })
        .collect()
    };
    let made: Vec<String> = if is_dir {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT path FROM dav_dirs WHERE owner = $1 AND path >= $2 AND path < $3",
        )
        .bind(user)
        .bind(copy.from)
        .bind(dir_end(copy.from))
        .fetch_all(&mut **tx)
        .await?;
        rows.into_iter()
            .filter(|path| !copy.shallow || path == copy.from)
            .map(|path| format!("{}{}", copy.to, &path[copy.from.len()..]))
            .chain(std::iter::once(copy.to.to_string()))
            .collect()
    } else {
        Vec::new()
    };
    // The source's dead properties, at their new paths.
    let props: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT path, ns, name, xml FROM dav_props
         WHERE owner = $1 AND (path = $2 OR ($4 AND path >= $2 AND path < $3))",
    )
    .bind(user)
    .bind(copy.from)
    .bind(dir_end(&format!("{}/", copy.from.trim_end_matches('/'))))
    .bind(is_dir && !copy.shallow)
    .fetch_all(&mut **tx)
    .await?;
    let to_dir = format!("{}/", copy.to.trim_end_matches('/'));
    let mut removed = remove_tree(tx, user, &to_dir, false).await?;
    if copy.moved {
        let from_dir = format!("{}/", copy.from.trim_end_matches('/'));
        removed.extend(remove_tree(tx, user, &from_dir, true).await?);
    }
    let mut delta: i64 = -removed
        .iter()
        .map(|(_, size)| size + ENTRY_OVERHEAD_BYTES)
        .sum::<i64>();
    let written: std::collections::BTreeSet<&str> =
        sources.iter().map(|(path, _)| path.as_str()).collect();
    let mut changes: Vec<LineChange> = removed
        .into_iter()
        .filter(|(path, _)| !written.contains(path.as_str()))
        .map(|(path, _)| LineChange { path, put: None })
        .collect();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    for (path, put) in sources {
        sqlx::query(
            "INSERT INTO entries (owner, path, content_hash, size, content_type, modified_us, seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user)
        .bind(&path)
        .bind(&put.hash[..])
        .bind(put.size)
        .bind(&put.content_type)
        .bind(ts)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
        delta += put.size + ENTRY_OVERHEAD_BYTES;
        changes.push(LineChange {
            path,
            put: Some(put),
        });
    }
    for dir in made {
        sqlx::query(
            "INSERT INTO dav_dirs (owner, path, seq) VALUES ($1, $2, $3)
             ON CONFLICT (owner, path) DO NOTHING",
        )
        .bind(user)
        .bind(&dir)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    }
    for (path, ns, name, xml) in props {
        let path = format!("{}{}", copy.to, &path[copy.from.len()..]);
        set_prop(tx, user, seq, &path, &ns, &name, &xml).await?;
    }
    write_lines(tx, trees, user, seq, ts, &changes).await?;
    set_file_seq(tx, user, seq, delta).await
}

/// `props_patched`: each change in order, all in this transaction.
pub(crate) async fn props_patched(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    seq: i64,
    path: &str,
    props: &[domain::event::PropChange],
) -> Result<()> {
    if !user_exists(tx, user, seq).await? {
        return Ok(());
    }
    for prop in props {
        match &prop.xml {
            Some(xml) => set_prop(tx, user, seq, path, &prop.ns, &prop.name, xml).await?,
            None => {
                sqlx::query(
                    "DELETE FROM dav_props WHERE owner = $1 AND path = $2 AND ns = $3 AND name = $4",
                )
                .bind(user)
                .bind(path)
                .bind(&prop.ns)
                .bind(&prop.name)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    set_file_seq(tx, user, seq, 0).await
}

async fn set_prop(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    seq: i64,
    path: &str,
    ns: &str,
    name: &str,
    xml: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO dav_props (owner, path, ns, name, xml, seq) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner, path, ns, name) DO UPDATE SET xml = excluded.xml, seq = excluded.seq",
    )
    .bind(user)
    .bind(path)
    .bind(ns)
    .bind(name)
    .bind(xml)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The dead properties of a deleted file go with it.
pub(crate) async fn forget_props(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    path: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM dav_props WHERE owner = $1 AND path = $2")
        .bind(user)
        .bind(path)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Edits the Merkle trees for `changes` (in order) and writes them as the lines of
/// event `seq`, each with its tree's root after the whole event.
pub(crate) async fn write_lines(
    tx: &mut Transaction<'_, Postgres>,
    trees: Option<&mut BatchTrees>,
    user: &str,
    seq: i64,
    ts: i64,
    changes: &[LineChange],
) -> Result<()> {
    // Roots of the public and private tree after the event, when maintained.
    let mut roots: [Option<Option<[u8; 32]>>; 2] = [None, None];
    if let Some(trees) = trees {
        for change in changes {
            let value = change.put.as_ref().map(|put| put.hash);
            let root = trees.edit(tx, user, &change.path, value).await?;
            trees.adopt(user, &change.path, root, seq);
            roots[is_private_path(&change.path) as usize] = Some(root);
        }
    }
    let lines = changes.len() as i32;
    for (line, change) in changes.iter().enumerate() {
        let private = is_private_path(&change.path);
        let root = roots[private as usize].map(|root| root.unwrap_or([0; 32]).to_vec());
        let (op, hash, size, content_type) = match &change.put {
            Some(put) => (
                "PUT",
                Some(put.hash.to_vec()),
                Some(put.size),
                Some(put.content_type.as_str()),
            ),
            None => ("DEL", None, None, None),
        };
        sqlx::query(
            "INSERT INTO events (seq, line, lines, owner, op, path, content_hash, created_us,
                                 private, merkle_root, content_length, content_type)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT DO NOTHING",
        )
        .bind(seq)
        .bind(line as i32)
        .bind(lines)
        .bind(user)
        .bind(op)
        .bind(&change.path)
        .bind(hash)
        .bind(ts)
        .bind(private)
        .bind(root)
        .bind(size)
        .bind(content_type)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Moves the user's file sequence to `seq` and used bytes by `delta`.
pub(crate) async fn set_file_seq(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    seq: i64,
    delta: i64,
) -> Result<()> {
    sqlx::query("UPDATE users SET file_seq = $2, used_bytes = used_bytes + $3 WHERE pubkey = $1")
        .bind(user)
        .bind(seq)
        .bind(delta)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
