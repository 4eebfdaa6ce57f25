//! The account archive, version 1 (`docs/export.md`): its records and the check of an
//! archive against the signed root it carries.
//!
//! Why an archive carries the tree's nodes: the signed root alone says *that* a copy
//! differs, not *where*. With the nodes (which hash up to the signed root, so they
//! cannot be forged either) a reader knows the exact list of paths and content hashes
//! the homeserver vouched for, and refuses a copy at its first bad path: a flipped byte
//! (the content does not hash to the path's value), a missing entry, an extra one. So an
//! archive can be verified without trusting whoever handed it over, offline.
//!
//! Pure: the reader of the byte stream hashes each entry's content and hands the hash in
//! ([`TreeVerifier::entry`]); nothing here does I/O.

use crate::PublicKey;
use crate::merkle::{self, Hash, MemStore, Node};
use serde::{Deserialize, Serialize};

/// The first line of every archive (and of every page of `GET /export/...`).
pub const MAGIC: &str = "pubky-archive/1";

/// A tree section's first record: whose tree, and the homeserver's signed statement
/// about its root (as `GET /merkle/<user>/root` gives it). `nodes` node frames follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: String,
    /// `pub` or `priv`.
    pub tree: String,
    /// Hex; 64 zeros for an empty tree.
    pub root: String,
    pub seq: u64,
    pub statement: String,
    /// Hex Ed25519 signature over `statement` by `signer`.
    pub signature: Option<String>,
    /// The homeserver's key (z32).
    pub signer: String,
    /// How many node frames follow (all nodes reachable from the root on the first page
    /// of an export, 0 on later pages).
    pub nodes: u64,
    /// The path this page starts after (`None` on the first page and in a whole archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One file: this record, then exactly `size` bytes of content, then `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    /// Hex BLAKE3 of the content: the path's value in the tree.
    pub hash: String,
    pub size: u64,
    pub content_type: String,
}

/// The end of a tree section (of a page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRecord {
    #[serde(rename = "type")]
    pub kind: String,
    /// Entries in this section (page).
    pub entries: u64,
    /// Where the next page starts (`cursor=`), `None` when the tree is complete.
    pub next: Option<String>,
}

impl TreeRecord {
    pub fn is_private(&self) -> bool {
        self.tree == "priv"
    }
}

impl EntryRecord {
    pub fn new(path: &str, hash: &Hash, size: u64, content_type: &str) -> Self {
        EntryRecord {
            kind: "entry".into(),
            path: path.to_owned(),
            hash: hex::encode(hash),
            size,
            content_type: content_type.to_owned(),
        }
    }
}

impl EndRecord {
    pub fn new(entries: u64, next: Option<String>) -> Self {
        EndRecord {
            kind: "end".into(),
            entries,
            next,
        }
    }
}

/// A record line, by its `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Tree(TreeRecord),
    Entry(EntryRecord),
    End(EndRecord),
}

/// Parses one record line (without its `\n`).
pub fn parse_record(line: &[u8]) -> Result<Record, ArchiveError> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    let bad = |e: serde_json::Error| ArchiveError::Malformed(format!("record: {e}"));
    let kind: Kind = serde_json::from_slice(line).map_err(bad)?;
    match kind.kind.as_str() {
        "tree" => Ok(Record::Tree(serde_json::from_slice(line).map_err(bad)?)),
        "entry" => Ok(Record::Entry(serde_json::from_slice(line).map_err(bad)?)),
        "end" => Ok(Record::End(serde_json::from_slice(line).map_err(bad)?)),
        other => Err(ArchiveError::Malformed(format!(
            "unknown record type {other:?}"
        ))),
    }
}

/// One record as a line, `\n` included.
pub fn record_line<T: Serialize>(record: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    line
}

/// A node frame: 4-byte big-endian length, then the node's canonical encoding.
pub fn node_frame(encoding: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + encoding.len());
    out.extend_from_slice(&(encoding.len() as u32).to_be_bytes());
    out.extend_from_slice(encoding);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("not an archive: {0}")]
    Malformed(String),
    #[error("the signed root does not verify: {0}")]
    Signature(String),
    #[error("the archive's tree nodes do not hash up to the signed root: {0}")]
    Nodes(String),
    /// The first path at which the archive differs from what the root vouches for.
    #[error("archive refused at {path}: {reason}")]
    BadPath { path: String, reason: &'static str },
}

impl ArchiveError {
    /// The path named by a refusal, if the refusal is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            ArchiveError::BadPath { path, .. } => Some(path),
            _ => None,
        }
    }
}

fn bad(path: &str, reason: &'static str) -> ArchiveError {
    ArchiveError::BadPath {
        path: path.to_owned(),
        reason,
    }
}

/// The fields of a root statement (`merkle::root_statement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub user: String,
    pub private: bool,
    pub root: Option<Hash>,
    pub seq: u64,
    pub time_us: u64,
}

/// Parses a root statement; it must be exactly what `merkle::root_statement` writes.
pub fn parse_statement(text: &str) -> Result<Statement, ArchiveError> {
    let malformed = || ArchiveError::Signature("malformed statement".into());
    let mut lines = text.lines();
    if lines.next() != Some("pubky-merkle-root/1") {
        return Err(malformed());
    }
    let mut field = |name: &str| {
        lines
            .next()
            .and_then(|line| line.strip_prefix(name))
            .and_then(|line| line.strip_prefix(':'))
            .map(str::to_owned)
            .ok_or_else(malformed)
    };
    let user = field("user")?;
    let private = match field("tree")?.as_str() {
        "pub" => false,
        "priv" => true,
        _ => return Err(malformed()),
    };
    let mut root = [0u8; 32];
    hex::decode_to_slice(field("root")?, &mut root).map_err(|_| malformed())?;
    let seq = field("seq")?.parse().map_err(|_| malformed())?;
    let time_us = field("time")?.parse().map_err(|_| malformed())?;
    let statement = Statement {
        user,
        private,
        root: (root != [0; 32]).then_some(root),
        seq,
        time_us,
    };
    let canonical = merkle::root_statement(
        &statement.user,
        statement.private,
        statement.root,
        statement.seq,
        statement.time_us,
    );
    if canonical != text {
        return Err(malformed());
    }
    Ok(statement)
}

/// Checks one tree section of an archive, entry by entry, against its signed root.
#[derive(Debug)]
pub struct TreeVerifier {
    statement: Statement,
    signer: PublicKey,
    /// The entries the root vouches for, in path order, not yet matched.
    expected: std::vec::IntoIter<(String, Hash)>,
    pending: Option<(String, Hash)>,
    matched: u64,
}

impl TreeVerifier {
    /// Verifies the statement's signature by the record's signer and that `nodes` hash
    /// up to its root, and learns the entries the root vouches for.
    pub fn new(record: &TreeRecord, nodes: &[Vec<u8>]) -> Result<Self, ArchiveError> {
        let signer = PublicKey::try_from(record.signer.as_str())
            .map_err(|e| ArchiveError::Signature(format!("signer key: {e}")))?;
        let signature = record
            .signature
            .as_deref()
            .ok_or_else(|| ArchiveError::Signature("the root is not signed".into()))?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(signature, &mut bytes)
            .map_err(|_| ArchiveError::Signature("signature is not 128 hex digits".into()))?;
        if !merkle::verify_root_statement(&signer, &record.statement, &bytes) {
            return Err(ArchiveError::Signature(format!(
                "not signed by {}",
                record.signer
            )));
        }
        let statement = parse_statement(&record.statement)?;
        if statement.user != record.user
            || statement.private != record.is_private()
            || merkle::root_hex(statement.root) != record.root
        {
            return Err(ArchiveError::Signature(
                "the record's user, tree or root differ from the signed statement".into(),
            ));
        }
        let mut store = MemStore::default();
        for encoding in nodes {
            let node = Node::decode(encoding).map_err(|e| ArchiveError::Nodes(e.to_string()))?;
            if node.hash() != *blake3::hash(encoding).as_bytes() {
                return Err(ArchiveError::Nodes(
                    "a node is not in canonical form".into(),
                ));
            }
            store.insert(node);
        }
        let expected = merkle::entries(&store, statement.root)
            .map_err(|e| ArchiveError::Nodes(e.to_string()))?;
        Ok(TreeVerifier {
            statement,
            signer,
            expected: expected.into_iter(),
            pending: None,
            matched: 0,
        })
    }

    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    /// How many entries the root vouches for.
    pub fn vouched(&self) -> u64 {
        self.matched + self.pending.is_some() as u64 + self.expected.len() as u64
    }

    fn next_expected(&mut self) -> Option<(String, Hash)> {
        self.pending.take().or_else(|| self.expected.next())
    }

    /// The next entry of the archive, with the BLAKE3 of the content actually read.
    /// Entries must come in path order; the first one that is not what the root vouches
    /// for (next in order) is refused, naming the first bad path.
    pub fn entry(&mut self, record: &EntryRecord, actual: &Hash) -> Result<(), ArchiveError> {
        let path = record.path.as_str();
        let in_tree = if self.statement.private {
            path.starts_with("/priv/")
        } else {
            path.starts_with("/pub/")
        };
        if !in_tree {
            return Err(bad(path, "the path is not in this tree"));
        }
        let mut claimed = [0u8; 32];
        hex::decode_to_slice(&record.hash, &mut claimed)
            .map_err(|_| bad(path, "the entry's hash is not 64 hex digits"))?;
        match self.next_expected() {
            None => Err(bad(path, "the signed root has no such entry")),
            Some((want, _)) if want.as_str() < path => {
                Err(bad(&want, "the entry is missing from the archive"))
            }
            Some((want, value)) if want.as_str() > path => {
                self.pending = Some((want, value));
                Err(bad(path, "the signed root has no such entry"))
            }
            Some((_, value)) => {
                if claimed != value {
                    return Err(bad(path, "the entry's hash differs from the signed tree"));
                }
                if *actual != value {
                    return Err(bad(path, "the content does not match its hash"));
                }
                self.matched += 1;
                Ok(())
            }
        }
    }

    /// At the end of the section: every vouched-for entry must have come.
    pub fn finish(mut self) -> Result<u64, ArchiveError> {
        match self.next_expected() {
            Some((missing, _)) => Err(bad(&missing, "the entry is missing from the archive")),
            None => Ok(self.matched),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn section(entries: &[(&str, &[u8])]) -> (TreeRecord, Vec<Vec<u8>>) {
        let homeserver = Keypair::from_secret_key(&[9; 32]);
        let user = Keypair::from_secret_key(&[1; 32]).public_key().to_z32();
        let values: Vec<(String, Hash)> = entries
            .iter()
            .map(|(path, content)| (path.to_string(), *blake3::hash(content).as_bytes()))
            .collect();
        let mut store = MemStore::default();
        let root = merkle::build(&values, &mut store);
        let statement = merkle::root_statement(&user, false, root, 7, 1);
        let signature = homeserver.sign(statement.as_bytes());
        let nodes = store.nodes.values().map(Node::encode).collect();
        let record = TreeRecord {
            kind: "tree".into(),
            user,
            tree: "pub".into(),
            root: merkle::root_hex(root),
            seq: 7,
            statement,
            signature: Some(hex::encode(signature.to_bytes())),
            signer: homeserver.public_key().to_z32(),
            nodes: store.nodes.len() as u64,
            cursor: None,
        };
        (record, nodes)
    }

    fn entry(path: &str, content: &[u8]) -> (EntryRecord, Hash) {
        let hash = *blake3::hash(content).as_bytes();
        (
            EntryRecord::new(path, &hash, content.len() as u64, "text/plain"),
            hash,
        )
    }

    const FILES: &[(&str, &[u8])] = &[("/pub/a", b"a"), ("/pub/b", b"bb"), ("/pub/c", b"ccc")];

    #[test]
    fn a_faithful_archive_verifies() {
        let (record, nodes) = section(FILES);
        let mut verifier = TreeVerifier::new(&record, &nodes).unwrap();
        assert_eq!(verifier.vouched(), 3);
        for (path, content) in FILES {
            let (e, h) = entry(path, content);
            verifier.entry(&e, &h).unwrap();
        }
        assert_eq!(verifier.finish().unwrap(), 3);
    }

    #[test]
    fn the_first_bad_path_is_named() {
        let (record, nodes) = section(FILES);
        // A flipped byte in b's content.
        let mut verifier = TreeVerifier::new(&record, &nodes).unwrap();
        let (e, h) = entry("/pub/a", b"a");
        verifier.entry(&e, &h).unwrap();
        let (e, _) = entry("/pub/b", b"bb");
        let flipped = *blake3::hash(b"bc").as_bytes();
        let error = verifier.entry(&e, &flipped).unwrap_err();
        assert_eq!(error.path(), Some("/pub/b"));
        assert!(
            error.to_string().contains("content does not match"),
            "{error}"
        );

        // b missing: named when c comes, or at the end.
        let mut verifier = TreeVerifier::new(&record, &nodes).unwrap();
        let (e, h) = entry("/pub/a", b"a");
        verifier.entry(&e, &h).unwrap();
        let (e, h) = entry("/pub/c", b"ccc");
        assert_eq!(verifier.entry(&e, &h).unwrap_err().path(), Some("/pub/b"));
        let mut verifier = TreeVerifier::new(&record, &nodes).unwrap();
        for (path, content) in &FILES[..2] {
            let (e, h) = entry(path, content);
            verifier.entry(&e, &h).unwrap();
        }
        assert_eq!(verifier.finish().unwrap_err().path(), Some("/pub/c"));

        // An extra entry.
        let mut verifier = TreeVerifier::new(&record, &nodes).unwrap();
        let (e, h) = entry("/pub/0", b"x");
        assert_eq!(verifier.entry(&e, &h).unwrap_err().path(), Some("/pub/0"));
    }

    #[test]
    fn a_forged_root_or_missing_node_is_refused() {
        let (mut record, nodes) = section(FILES);
        record.statement = record.statement.replace("seq:7", "seq:8");
        assert!(matches!(
            TreeVerifier::new(&record, &nodes),
            Err(ArchiveError::Signature(_))
        ));
        let (record, mut nodes) = section(FILES);
        nodes.pop();
        if !nodes.is_empty() || record.root != merkle::root_hex(None) {
            assert!(TreeVerifier::new(&record, &nodes).is_err());
        }
    }

    #[test]
    fn records_round_trip() {
        let (record, _) = section(FILES);
        let line = record_line(&record);
        assert_eq!(
            parse_record(&line[..line.len() - 1]).unwrap(),
            Record::Tree(record)
        );
        let end = EndRecord::new(3, Some("/pub/c".into()));
        let line = record_line(&end);
        assert_eq!(
            parse_record(&line[..line.len() - 1]).unwrap(),
            Record::End(end)
        );
    }
}
