//! Reads for WebDAV (`/dav/<user>/`): what a collection holds, with the metadata a
//! `PROPFIND` reports, in two queries per thousand children.
//!
//! A collection is a directory of the `entries` projection (a key range, see
//! `entries`): it exists while a file lies under it, or while a folder made by `MKCOL`
//! (`dav_dirs`) lies at or under it. The children come from the same shallow skip-scan
//! as the REST listing, so both views agree on the files a folder holds.

use crate::entries::{EntryRow, ListQuery, dir_end, entry_row};
use crate::{Result, Store};
use domain::PublicKey;

/// One child of a collection: a file with its entry, or a sub-collection (its path
/// ends with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DavChild {
    File(EntryRow),
    Collection(String),
}

impl DavChild {
    pub fn path(&self) -> &str {
        match self {
            DavChild::File(entry) => &entry.path,
            DavChild::Collection(path) => path,
        }
    }
}

/// Children read per page.
const PAGE: u32 = 1000;

impl Store {
    /// Whether `dir` (ending with `/`) is a collection: a file or an `MKCOL` folder
    /// lies under it, or it is such a folder.
    pub async fn dav_dir_exists(&self, owner: &PublicKey, dir: &str) -> Result<bool> {
        let made: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dav_dirs WHERE owner = $1 AND path >= $2 AND path < $3)",
        )
        .bind(owner.to_z32())
        .bind(dir)
        .bind(dir_end(dir))
        .fetch_one(&self.pool)
        .await?;
        Ok(made || self.dir_exists(owner, dir).await?)
    }

    /// The dead properties (`PROPPATCH`) of `paths`: (path, namespace, name, element).
    pub async fn dav_props(
        &self,
        owner: &PublicKey,
        paths: &[String],
    ) -> Result<Vec<(String, String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT path, ns, name, xml FROM dav_props WHERE owner = $1 AND path = ANY($2)
             ORDER BY path, ns, name",
        )
        .bind(owner.to_z32())
        .bind(paths)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many files lie at `path` (a file) or under it (a folder, ending with `/`),
    /// and their bytes.
    pub async fn tree_usage(&self, owner: &PublicKey, path: &str) -> Result<(i64, i64)> {
        let dir = format!("{}/", path.trim_end_matches('/'));
        let (files, bytes): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), sum(size)::bigint FROM entries WHERE owner = $1
             AND (path = $2 OR (path >= $3 AND path < $4))",
        )
        .bind(owner.to_z32())
        .bind(path.trim_end_matches('/'))
        .bind(&dir)
        .bind(dir_end(&dir))
        .fetch_one(&self.pool)
        .await?;
        Ok((files, bytes.unwrap_or(0)))
    }

    /// The `MKCOL` folders directly in `dir`, or holding one deeper down: the child
    /// folder names (ending with `/`) that `dir`'s files may not show.
    async fn made_children(&self, owner: &PublicKey, dir: &str) -> Result<Vec<String>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT split_part(substr(path, char_length($2) + 1), '/', 1)
             FROM dav_dirs WHERE owner = $1 AND path > $2 AND path < $3",
        )
        .bind(owner.to_z32())
        .bind(dir)
        .bind(dir_end(dir))
        .fetch_all(&self.pool)
        .await?;
        Ok(names
            .into_iter()
            .filter(|name| !name.is_empty())
            .map(|name| format!("{dir}{name}/"))
            .collect())
    }

    /// Every child of directory `dir` (ending with `/`) in byte order.
    pub async fn dav_children(&self, owner: &PublicKey, dir: &str) -> Result<Vec<DavChild>> {
        let mut out = self.files_and_dirs(owner, dir).await?;
        let made = self.made_children(owner, dir).await?;
        if !made.is_empty() {
            for path in made {
                let child = DavChild::Collection(path);
                if !out.contains(&child) {
                    out.push(child);
                }
            }
            out.sort_by(|a, b| a.path().cmp(b.path()));
        }
        Ok(out)
    }

    /// The children `dir`'s files show.
    async fn files_and_dirs(&self, owner: &PublicKey, dir: &str) -> Result<Vec<DavChild>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let names = self
                .list(
                    owner,
                    &ListQuery {
                        dir,
                        cursor: cursor.as_deref(),
                        limit: PAGE,
                        reverse: false,
                        shallow: true,
                    },
                )
                .await?;
            let files: Vec<String> = names
                .iter()
                .filter(|n| !n.ends_with('/'))
                .cloned()
                .collect();
            let mut rows = self.entries_at(owner, &files).await?.into_iter().peekable();
            for name in &names {
                if name.ends_with('/') {
                    out.push(DavChild::Collection(name.clone()));
                } else if rows.peek().is_some_and(|row| &row.path == name)
                    && let Some(row) = rows.next()
                {
                    out.push(DavChild::File(row));
                }
            }
            if names.len() < PAGE as usize {
                return Ok(out);
            }
            cursor = names.last().cloned();
        }
    }

    /// The entries at `paths`, in byte order of path (missing ones left out).
    pub async fn entries_at(&self, owner: &PublicKey, paths: &[String]) -> Result<Vec<EntryRow>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT path, content_hash, size, content_type, modified_us, seq
             FROM entries WHERE owner = $1 AND path = ANY($2) ORDER BY path",
        )
        .bind(owner.to_z32())
        .bind(paths)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_row).collect()
    }
}
