//! Reading account archives (`docs/export.md`) from a byte stream, and checking a whole
//! archive against the signed roots it carries: what `homeserver verify-archive` and
//! `homeserver import` run before anything else.
//!
//! Bounded memory whatever the archive's size: contents are hashed in chunks as they
//! are read and never held; what is kept is one tree's list of vouched-for paths
//! (`domain::archive::TreeVerifier`), tens of bytes per entry.

use anyhow::{Context, bail};
use domain::archive::{self, EndRecord, EntryRecord, Record, TreeRecord, TreeVerifier};
use domain::merkle::Hash;
use std::io::{BufRead, Read};

/// Longest record line accepted: far above any real record (a path is at most 972
/// bytes), it only stops a corrupt file from being read into memory as one line.
const MAX_LINE: usize = 64 * 1024;
/// Longest node frame accepted (a node of 1024 items of longest paths is below this).
const MAX_NODE: usize = 4 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// One item of an archive.
#[derive(Debug)]
pub enum Item {
    /// A tree section starts: its record and node encodings.
    Tree {
        record: TreeRecord,
        nodes: Vec<Vec<u8>>,
    },
    /// A file, whose content (`record.size` bytes at `offset` of the stream) has been
    /// read and hashed.
    Entry {
        record: EntryRecord,
        offset: u64,
        hash: Hash,
    },
    End(EndRecord),
}

/// Reads an archive item by item.
pub struct ArchiveReader<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> ArchiveReader<R> {
    /// Checks the magic line.
    pub fn new(inner: R) -> anyhow::Result<Self> {
        let mut reader = ArchiveReader { inner, offset: 0 };
        match reader.line()? {
            Some(line) if line == archive::MAGIC.as_bytes() => Ok(reader),
            _ => bail!("not an archive: the first line is not {}", archive::MAGIC),
        }
    }

    /// The offset of the next byte in the stream.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let read = (&mut self.inner)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(None);
        }
        self.offset += read as u64;
        if line.pop() != Some(b'\n') {
            bail!("archive cut off (or a record line longer than {MAX_LINE} bytes)");
        }
        Ok(Some(line))
    }

    fn exact(&mut self, buf: &mut [u8]) -> anyhow::Result<()> {
        self.inner
            .read_exact(buf)
            .context("archive cut off in the middle of an item")?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The next item, `None` at the end of the stream.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        let Some(line) = self.line()? else {
            return Ok(None);
        };
        Ok(Some(match archive::parse_record(&line)? {
            Record::Tree(record) => {
                let mut nodes = Vec::new();
                for _ in 0..record.nodes {
                    let mut len = [0u8; 4];
                    self.exact(&mut len)?;
                    let len = u32::from_be_bytes(len) as usize;
                    if len > MAX_NODE {
                        bail!("a node frame of {len} bytes is not a node");
                    }
                    let mut node = vec![0u8; len];
                    self.exact(&mut node)?;
                    nodes.push(node);
                }
                Item::Tree { record, nodes }
            }
            Record::Entry(record) => {
                let offset = self.offset;
                let mut hasher = blake3::Hasher::new();
                let mut left = record.size;
                let mut buf = vec![0u8; CHUNK];
                while left > 0 {
                    let n = (left as usize).min(CHUNK);
                    self.exact(&mut buf[..n])?;
                    hasher.update(&buf[..n]);
                    left -= n as u64;
                }
                let mut newline = [0u8; 1];
                self.exact(&mut newline)?;
                if newline != *b"\n" {
                    bail!(
                        "archive refused at {}: the content is not {} bytes long",
                        record.path,
                        record.size
                    );
                }
                Item::Entry {
                    record,
                    offset,
                    hash: *hasher.finalize().as_bytes(),
                }
            }
            Record::End(end) => Item::End(end),
        }))
    }
}

/// One verified tree of an archive.
#[derive(Debug, Clone)]
pub struct VerifiedTree {
    pub record: TreeRecord,
    pub entries: u64,
    pub bytes: u64,
}

/// Reads a whole archive and checks every tree against its signed root; `on_entry`
/// sees each entry once it is verified (for progress). Refuses with the first bad path.
pub fn verify<R: BufRead>(
    reader: R,
    mut on_entry: impl FnMut(&EntryRecord, u64),
) -> anyhow::Result<Vec<VerifiedTree>> {
    let mut reader = ArchiveReader::new(reader)?;
    let mut trees = Vec::new();
    let mut current: Option<(TreeVerifier, VerifiedTree)> = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Tree { record, nodes } => {
                if current.is_some() {
                    bail!("a tree section starts before the previous one ended");
                }
                let verifier = TreeVerifier::new(&record, &nodes)?;
                current = Some((
                    verifier,
                    VerifiedTree {
                        record,
                        entries: 0,
                        bytes: 0,
                    },
                ));
            }
            Item::Entry {
                record,
                offset,
                hash,
            } => {
                let Some((verifier, tree)) = current.as_mut() else {
                    bail!("an entry outside of a tree section");
                };
                verifier.entry(&record, &hash)?;
                tree.entries += 1;
                tree.bytes += record.size;
                on_entry(&record, offset);
            }
            Item::End(end) => {
                let Some((verifier, tree)) = current.take() else {
                    bail!("an end record outside of a tree section");
                };
                if let Some(next) = end.next {
                    bail!("the archive is one page of an export, not all of it (next: {next})");
                }
                verifier.finish()?;
                trees.push(tree);
            }
        }
    }
    if current.is_some() {
        bail!("archive cut off: a tree section has no end record");
    }
    if trees.is_empty() {
        bail!("the archive holds no tree");
    }
    Ok(trees)
}
