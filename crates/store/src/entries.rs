//! Reads of the `entries` projection: single files, collisions and listings.
//!
//! Paths are compared in byte order (`COLLATE "C"`). A directory `d/` is the key range
//! `[d/, d0)`, because `0` is the byte after `/`: range scans on the primary key, and no
//! `LIKE` patterns whose `_` and `%` would need escaping.

use crate::{Result, Store};
use domain::{EventSeq, PublicKey};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    pub path: String,
    pub content_hash: [u8; 32],
    pub size: u64,
    pub content_type: String,
    pub modified_us: u64,
    pub seq: EventSeq,
}

/// What a directory listing asks for. `dir` ends with `/`.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub dir: &'a str,
    /// Exclusive: list strictly after (or before, in reverse) this full path.
    pub cursor: Option<&'a str>,
    pub limit: u32,
    pub reverse: bool,
    pub shallow: bool,
}

/// An `entries` row selected with the columns of [`EntryRow`].
pub(crate) fn entry_row(row: &sqlx::postgres::PgRow) -> Result<EntryRow> {
    let hash: Vec<u8> = row.get("content_hash");
    Ok(EntryRow {
        path: row.get("path"),
        content_hash: hash
            .try_into()
            .map_err(|_| crate::StoreError::Corrupt("content hash is not 32 bytes".into()))?,
        size: row.get::<i64, _>("size") as u64,
        content_type: row.get("content_type"),
        modified_us: row.get::<i64, _>("modified_us") as u64,
        seq: EventSeq(row.get::<i64, _>("seq") as u64),
    })
}

/// The end of the key range of directory `dir` (which ends with `/`).
pub(crate) fn dir_end(dir: &str) -> String {
    let mut end = dir[..dir.len() - 1].to_string();
    end.push('0');
    end
}

impl Store {
    pub async fn entry(&self, owner: &PublicKey, path: &str) -> Result<Option<EntryRow>> {
        let row = sqlx::query(
            "SELECT path, content_hash, size, content_type, modified_us, seq
             FROM entries WHERE owner = $1 AND path = $2",
        )
        .bind(owner.to_z32())
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_row).transpose()
    }

    /// The entries of `dir` after the path `after` (exclusive) up to `upto`
    /// (inclusive; `None`: to the end of `dir`), in byte order: what a mirror compares
    /// with one page of its primary's listing.
    pub async fn entries_between(
        &self,
        owner: &PublicKey,
        dir: &str,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Vec<EntryRow>> {
        let rows = sqlx::query(
            "SELECT path, content_hash, size, content_type, modified_us, seq
             FROM entries WHERE owner = $1 AND path >= $2 AND path < $3
             AND ($4::text IS NULL OR path > $4) AND ($5::text IS NULL OR path <= $5)
             ORDER BY path",
        )
        .bind(owner.to_z32())
        .bind(dir)
        .bind(dir_end(dir))
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_row).collect()
    }

    /// True when at least one entry lies under `dir`.
    pub async fn dir_exists(&self, owner: &PublicKey, dir: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE owner = $1 AND path >= $2 AND path < $3)",
        )
        .bind(owner.to_z32())
        .bind(dir)
        .bind(dir_end(dir))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Lists `query.dir`: full entry paths (deep), or immediate children with
    /// directories rendered once with a trailing `/` (shallow), in byte order.
    pub async fn list(&self, owner: &PublicKey, query: &ListQuery<'_>) -> Result<Vec<String>> {
        if query.shallow {
            return self.list_shallow(owner, query).await;
        }
        let end = dir_end(query.dir);
        let owner = owner.to_z32();
        let sql = if query.reverse {
            "SELECT path FROM entries WHERE owner = $1 AND path >= $2 AND path < $3
             AND ($4::text IS NULL OR path < $4) ORDER BY path DESC LIMIT $5"
        } else {
            "SELECT path FROM entries WHERE owner = $1 AND path >= $2 AND path < $3
             AND ($4::text IS NULL OR path > $4) ORDER BY path LIMIT $5"
        };
        Ok(sqlx::query_scalar(sql)
            .bind(owner)
            .bind(query.dir)
            .bind(end)
            .bind(query.cursor)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Shallow listing: entries are read in pages from where the last child ended, and
    /// each entry becomes its child (the file, or the subdirectory it is in); entries of
    /// the same subdirectory are contiguous in byte order, so repeats are skipped. When
    /// a page ends inside a subdirectory, the next page starts past the subdirectory's
    /// whole key range (a skip-scan), so a directory holding a few large subdirectories
    /// costs one query per subdirectory, and one of small children a single query.
    async fn list_shallow(&self, owner: &PublicKey, query: &ListQuery<'_>) -> Result<Vec<String>> {
        let dir = query.dir;
        let owner = owner.to_z32();
        let child_of = |path: &str| -> (String, bool) {
            let rest = &path[dir.len()..];
            match rest.find('/') {
                Some(i) => (format!("{dir}{}", &rest[..=i]), true),
                None => (path.to_string(), false),
            }
        };
        // Where the scan resumes after a child. Forward past a directory `d/` means
        // `path >= d0` (inclusive); past a file, `path > file`. Backward, `path < child`
        // covers both, since everything inside `d/` sorts after `d/`.
        let resume = |child: &str, is_dir: bool| -> (Option<String>, Option<String>) {
            match (query.reverse, is_dir) {
                (false, true) => (None, Some(dir_end(child))),
                _ => (Some(child.to_string()), None),
            }
        };
        // A cursor inside a child directory stands for that directory.
        let (mut exclusive, mut inclusive) = match query.cursor {
            Some(cursor) if cursor.starts_with(dir) && cursor.len() > dir.len() => {
                let (child, is_dir) = child_of(cursor);
                resume(&child, is_dir)
            }
            _ => (None, None),
        };
        let sql = if query.reverse {
            "SELECT path FROM entries WHERE owner = $1 AND path >= $2 AND path < $3
             AND ($4::text IS NULL OR path < $4) AND ($5::text IS NULL OR path >= $5)
             ORDER BY path DESC LIMIT $6"
        } else {
            "SELECT path FROM entries WHERE owner = $1 AND path >= $2 AND path < $3
             AND ($4::text IS NULL OR path > $4) AND ($5::text IS NULL OR path >= $5)
             ORDER BY path LIMIT $6"
        };
        let end = dir_end(dir);
        let limit = query.limit as usize;
        let mut out: Vec<String> = Vec::new();
        while out.len() < limit {
            let page = limit - out.len();
            let paths: Vec<String> = sqlx::query_scalar(sql)
                .bind(&owner)
                .bind(dir)
                .bind(&end)
                .bind(&exclusive)
                .bind(&inclusive)
                .bind(page as i64)
                .fetch_all(&self.pool)
                .await?;
            let exhausted = paths.len() < page;
            for path in &paths {
                let (child, is_dir) = child_of(path);
                if out.last() == Some(&child) {
                    continue;
                }
                (exclusive, inclusive) = resume(&child, is_dir);
                out.push(child);
                if out.len() == limit {
                    break;
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(out)
    }
}
