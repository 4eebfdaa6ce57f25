//! The Merkle Search Tree (MST) over one user's entries: `(path, content hash)` pairs.
//!
//! This module owns the tree's shape, its node wire format, inclusion/absence proofs
//! and the diff protocol; storage and transport are the callers' (the projector keeps
//! nodes in Postgres, the read API serves them). See `docs/merkle.md` for the design.
//!
//! Why an MST: the shape is a pure function of the set of keys (each key's level comes
//! from the hash of the key itself), so two servers holding the same entries compute
//! the same root whatever order the writes came in, and an edit rewrites only the nodes
//! on one root-to-leaf path. A key's level is the number of leading zero bits of
//! BLAKE3(key) divided by 3, which gives an expected fan-out of 8 (chosen for the
//! bytes of a diff: see `docs/merkle.md`).
//!
//! The tree is a treap with deterministic priorities in which equal priorities share a
//! node: a node at level `L` holds, in key order, every key of level `L` in its key
//! range, and between them the subtrees of the lower-level keys. Levels with no key are
//! skipped (a child's level is the highest level in its range), so the shape needs no
//! padding nodes. Nodes are immutable and addressed by the BLAKE3 hash of their
//! encoding; operations read nodes through [`NodeSource`] and fail with
//! [`MerkleError::Missing`] when a node is not available, so an asynchronous caller can
//! fetch it and retry (operations have no side effects until they succeed).

use std::collections::{HashMap, HashSet};

/// A node's or a content's hash.
pub type Hash = [u8; 32];

/// Bits of leading zeros per level: 3 gives an expected fan-out of 2^3 = 8. With 16
/// (4 bits) one tree level less, but a tenth of the paths of a 100,000-entry tree cost
/// more than 10 KiB to diff (nodes on a path are twice as large); with 8 none does.
const BITS_PER_LEVEL: u32 = 3;

/// Version byte leading every node encoding, so the format can change later. 1 was
/// fan-out 16; 2 is fan-out 8 (the level of a key is part of the format).
const NODE_VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The node with this hash is needed but not in the source: fetch it and retry.
    #[error("merkle node {} is not available", hex::encode(.0))]
    Missing(Hash),
    #[error("malformed merkle node: {0}")]
    Malformed(&'static str),
}

/// The level of a key in the tree: leading zero bits of BLAKE3(key), three per level.
pub fn key_level(key: &str) -> u8 {
    let hash = blake3::hash(key.as_bytes());
    let mut zeros = 0u32;
    for byte in hash.as_bytes() {
        if *byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    (zeros / BITS_PER_LEVEL) as u8
}

/// One key of a node, its value and the subtree of the keys between it and the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub value: Hash,
    pub right: Option<Hash>,
}

/// A tree node: `left` holds the keys before `items[0]`, `items[i].right` the keys
/// between `items[i]` and `items[i + 1]` (or after the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub level: u8,
    pub left: Option<Hash>,
    pub items: Vec<Item>,
}

impl Node {
    /// The child subtree at `slot` (0 = `left`, i = `items[i - 1].right`).
    pub fn child(&self, slot: usize) -> Option<Hash> {
        if slot == 0 {
            self.left
        } else {
            self.items[slot - 1].right
        }
    }

    fn set_child(&mut self, slot: usize, child: Option<Hash>) {
        if slot == 0 {
            self.left = child;
        } else {
            self.items[slot - 1].right = child;
        }
    }

    /// Where `key` is in this node: `Ok(i)` if it is `items[i]`, else `Err(slot)`, the
    /// child slot whose range holds it.
    pub fn locate(&self, key: &str) -> Result<usize, usize> {
        self.items
            .binary_search_by(|item| item.key.as_str().cmp(key))
    }

    /// Every child hash of this node, in key order.
    pub fn children(&self) -> impl Iterator<Item = Hash> + '_ {
        std::iter::once(self.left)
            .chain(self.items.iter().map(|item| item.right))
            .flatten()
    }

    /// The canonical encoding (what is hashed and sent):
    /// `version u8, level u8, count varint, left child`, then per item
    /// `shared-prefix-length varint, suffix-length varint, suffix, value (32), right child`,
    /// where a child is `0` (none) or `1` followed by its 32-byte hash. Keys share their
    /// prefix with the previous key of the node, which halves the size of typical paths.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.items.len() * 80);
        out.push(NODE_VERSION);
        out.push(self.level);
        put_varint(&mut out, self.items.len() as u64);
        put_child(&mut out, self.left);
        let mut previous: &[u8] = &[];
        for item in &self.items {
            let key = item.key.as_bytes();
            let shared = previous.iter().zip(key).take_while(|(a, b)| a == b).count();
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (key.len() - shared) as u64);
            out.extend_from_slice(&key[shared..]);
            out.extend_from_slice(&item.value);
            put_child(&mut out, item.right);
            previous = key;
        }
        out
    }

    /// Decodes and checks a node: strictly increasing keys, each of the node's level,
    /// no trailing bytes, at least one item. Anything else is rejected so that a node
    /// has exactly one encoding and a tampered node cannot pass as another.
    pub fn decode(bytes: &[u8]) -> Result<Node, MerkleError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.byte()? != NODE_VERSION {
            return Err(MerkleError::Malformed("unknown node version"));
        }
        let level = r.byte()?;
        let count = r.varint()?;
        if count == 0 || count > bytes.len() as u64 {
            return Err(MerkleError::Malformed("bad item count"));
        }
        let left = r.child()?;
        let mut items: Vec<Item> = Vec::with_capacity(count as usize);
        let mut previous: Vec<u8> = Vec::new();
        for _ in 0..count {
            let shared = r.varint()? as usize;
            let suffix_len = r.varint()? as usize;
            if shared > previous.len() {
                return Err(MerkleError::Malformed("shared prefix longer than key"));
            }
            let mut key = previous[..shared].to_vec();
            key.extend_from_slice(r.take(suffix_len)?);
            if !items.is_empty() && key <= previous {
                return Err(MerkleError::Malformed("keys out of order"));
            }
            let value = r.hash()?;
            let right = r.child()?;
            let text = String::from_utf8(key.clone())
                .map_err(|_| MerkleError::Malformed("key is not UTF-8"))?;
            if key_level(&text) != level {
                return Err(MerkleError::Malformed("key at the wrong level"));
            }
            items.push(Item {
                key: text,
                value,
                right,
            });
            previous = key;
        }
        if r.pos != bytes.len() {
            return Err(MerkleError::Malformed("trailing bytes"));
        }
        let node = Node { level, left, items };
        // Re-encoding must give the same bytes (e.g. the shared prefix is maximal).
        if node.encode() != bytes {
            return Err(MerkleError::Malformed("non-canonical encoding"));
        }
        Ok(node)
    }

    pub fn hash(&self) -> Hash {
        *blake3::hash(&self.encode()).as_bytes()
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_child(out: &mut Vec<u8>, child: Option<Hash>) {
    match child {
        None => out.push(0),
        Some(hash) => {
            out.push(1);
            out.extend_from_slice(&hash);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MerkleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(MerkleError::Malformed("truncated node"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, MerkleError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, MerkleError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(MerkleError::Malformed("varint too long"))
    }

    fn hash(&mut self) -> Result<Hash, MerkleError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    fn child(&mut self) -> Result<Option<Hash>, MerkleError> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(self.hash()?)),
            _ => Err(MerkleError::Malformed("bad child marker")),
        }
    }
}

/// Where the operations read nodes from.
pub trait NodeSource {
    fn node(&self, hash: &Hash) -> Option<Node>;
}

/// Nodes held in memory, keyed by hash: the projector's per-batch cache, the client's
/// copy of a tree, and the test oracle.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    pub nodes: HashMap<Hash, Node>,
}

impl MemStore {
    pub fn insert(&mut self, node: Node) -> Hash {
        let hash = node.hash();
        self.nodes.insert(hash, node);
        hash
    }
}

impl NodeSource for MemStore {
    fn node(&self, hash: &Hash) -> Option<Node> {
        self.nodes.get(hash).cloned()
    }
}

/// The outcome of an edit: the new root and the nodes it created. Some created nodes
/// may be unreachable from the new root (intermediate results); [`reachable_new`]
/// picks the ones worth storing.
#[derive(Debug, Clone)]
pub struct Edit {
    pub root: Option<Hash>,
    pub created: HashMap<Hash, Node>,
}

/// One edit in progress: reads fall through from the nodes created so far to the
/// source, writes only go to `created`.
struct Ctx<'a, S: ?Sized> {
    source: &'a S,
    created: HashMap<Hash, Node>,
}

impl<S: NodeSource + ?Sized> Ctx<'_, S> {
    fn get(&self, hash: Hash) -> Result<Node, MerkleError> {
        if let Some(node) = self.created.get(&hash) {
            return Ok(node.clone());
        }
        self.source.node(&hash).ok_or(MerkleError::Missing(hash))
    }

    /// Stores a node; a node without items stands for its only child.
    fn put(&mut self, node: Node) -> Option<Hash> {
        if node.items.is_empty() {
            return node.left;
        }
        let hash = node.hash();
        self.created.insert(hash, node);
        Some(hash)
    }

    /// Splits a subtree into the keys below and above `key` (which it must not hold).
    fn split(
        &mut self,
        tree: Option<Hash>,
        key: &str,
    ) -> Result<(Option<Hash>, Option<Hash>), MerkleError> {
        let Some(hash) = tree else {
            return Ok((None, None));
        };
        let node = self.get(hash)?;
        let slot = match node.locate(key) {
            Ok(_) => return Err(MerkleError::Malformed("split at a present key")),
            Err(slot) => slot,
        };
        let (low, high) = self.split(node.child(slot), key)?;
        let mut left = Node {
            level: node.level,
            left: node.left,
            items: node.items[..slot].to_vec(),
        };
        left.set_child(slot, low);
        let right = Node {
            level: node.level,
            left: high,
            items: node.items[slot..].to_vec(),
        };
        Ok((self.put(left), self.put(right)))
    }

    /// Joins two subtrees where every key of `low` is below every key of `high`.
    fn merge(
        &mut self,
        low: Option<Hash>,
        high: Option<Hash>,
    ) -> Result<Option<Hash>, MerkleError> {
        let (a, b) = match (low, high) {
            (None, other) | (other, None) => return Ok(other),
            (Some(a), Some(b)) => (self.get(a)?, self.get(b)?),
        };
        if a.level > b.level {
            let mut a = a;
            let last = a.items.len();
            let joined = self.merge(a.child(last), high)?;
            a.set_child(last, joined);
            Ok(self.put(a))
        } else if a.level < b.level {
            let mut b = b;
            b.left = self.merge(low, b.left)?;
            Ok(self.put(b))
        } else {
            let mut a = a;
            let last = a.items.len();
            let middle = self.merge(a.child(last), b.left)?;
            a.set_child(last, middle);
            a.items.extend(b.items);
            Ok(self.put(a))
        }
    }

    fn insert(
        &mut self,
        tree: Option<Hash>,
        key: &str,
        value: Hash,
        level: u8,
    ) -> Result<Option<Hash>, MerkleError> {
        let Some(hash) = tree else {
            return Ok(self.put(Node {
                level,
                left: None,
                items: vec![Item {
                    key: key.to_owned(),
                    value,
                    right: None,
                }],
            }));
        };
        let mut node = self.get(hash)?;
        if level > node.level {
            // The key cannot be below: its level is higher than anything there.
            let (low, high) = self.split(tree, key)?;
            return Ok(self.put(Node {
                level,
                left: low,
                items: vec![Item {
                    key: key.to_owned(),
                    value,
                    right: high,
                }],
            }));
        }
        match node.locate(key) {
            Ok(index) => {
                if node.items[index].value == value {
                    return Ok(tree);
                }
                node.items[index].value = value;
            }
            Err(slot) if level == node.level => {
                let (low, high) = self.split(node.child(slot), key)?;
                node.set_child(slot, low);
                node.items.insert(
                    slot,
                    Item {
                        key: key.to_owned(),
                        value,
                        right: high,
                    },
                );
            }
            Err(slot) => {
                let child = self.insert(node.child(slot), key, value, level)?;
                if child == node.child(slot) {
                    return Ok(tree);
                }
                node.set_child(slot, child);
            }
        }
        Ok(self.put(node))
    }

    fn remove(
        &mut self,
        tree: Option<Hash>,
        key: &str,
        level: u8,
    ) -> Result<Option<Hash>, MerkleError> {
        let Some(hash) = tree else {
            return Ok(None);
        };
        let mut node = self.get(hash)?;
        if level > node.level {
            return Ok(tree);
        }
        match node.locate(key) {
            Ok(index) => {
                let item = node.items.remove(index);
                let joined = self.merge(node.child(index), item.right)?;
                node.set_child(index, joined);
            }
            Err(_) if level == node.level => return Ok(tree),
            Err(slot) => {
                let child = self.remove(node.child(slot), key, level)?;
                if child == node.child(slot) {
                    return Ok(tree);
                }
                node.set_child(slot, child);
            }
        }
        Ok(self.put(node))
    }
}

/// Sets `key` to `value` in the tree at `root`.
pub fn insert<S: NodeSource + ?Sized>(
    source: &S,
    root: Option<Hash>,
    key: &str,
    value: Hash,
) -> Result<Edit, MerkleError> {
    let mut ctx = Ctx {
        source,
        created: HashMap::new(),
    };
    let root = ctx.insert(root, key, value, key_level(key))?;
    Ok(Edit {
        root,
        created: ctx.created,
    })
}

/// Removes `key` from the tree at `root` (no change if absent).
pub fn remove<S: NodeSource + ?Sized>(
    source: &S,
    root: Option<Hash>,
    key: &str,
) -> Result<Edit, MerkleError> {
    let mut ctx = Ctx {
        source,
        created: HashMap::new(),
    };
    let root = ctx.remove(root, key, key_level(key))?;
    Ok(Edit {
        root,
        created: ctx.created,
    })
}

/// The nodes of `created` reachable from `root` without passing through a node that is
/// not in `created`: exactly the new nodes an edit (or a batch of edits) must store.
pub fn reachable_new(root: Option<Hash>, created: &HashMap<Hash, Node>) -> Vec<(Hash, &Node)> {
    let mut out = Vec::new();
    let mut stack: Vec<Hash> = root.into_iter().collect();
    let mut seen = HashSet::new();
    while let Some(hash) = stack.pop() {
        if !seen.insert(hash) {
            continue;
        }
        if let Some(node) = created.get(&hash) {
            stack.extend(node.children());
            out.push((hash, node));
        }
    }
    out
}

/// Builds the tree of a set of entries in one pass (the same tree any sequence of
/// inserts gives). Entries must be sorted by key, without duplicates.
pub fn build(entries: &[(String, Hash)], store: &mut MemStore) -> Option<Hash> {
    let levels: Vec<u8> = entries.iter().map(|(key, _)| key_level(key)).collect();
    build_range(entries, &levels, store)
}

fn build_range(entries: &[(String, Hash)], levels: &[u8], store: &mut MemStore) -> Option<Hash> {
    let level = *levels.iter().max()?;
    let mut node = Node {
        level,
        left: None,
        items: Vec::new(),
    };
    let mut start = 0;
    for (index, entry_level) in levels.iter().enumerate() {
        if *entry_level == level {
            let child = build_range(&entries[start..index], &levels[start..index], store);
            node.set_child(node.items.len(), child);
            node.items.push(Item {
                key: entries[index].0.clone(),
                value: entries[index].1,
                right: None,
            });
            start = index + 1;
        }
    }
    let child = build_range(&entries[start..], &levels[start..], store);
    node.set_child(node.items.len(), child);
    Some(store.insert(node))
}

/// Every entry of a tree, in key order.
pub fn entries<S: NodeSource + ?Sized>(
    source: &S,
    root: Option<Hash>,
) -> Result<Vec<(String, Hash)>, MerkleError> {
    let mut out = Vec::new();
    walk(source, root, &mut out)?;
    Ok(out)
}

fn walk<S: NodeSource + ?Sized>(
    source: &S,
    tree: Option<Hash>,
    out: &mut Vec<(String, Hash)>,
) -> Result<(), MerkleError> {
    let Some(hash) = tree else { return Ok(()) };
    let node = source.node(&hash).ok_or(MerkleError::Missing(hash))?;
    walk(source, node.left, out)?;
    for item in node.items {
        out.push((item.key, item.value));
        walk(source, item.right, out)?;
    }
    Ok(())
}

/// A proof that a key has a value (or is absent) under a root: the encodings of the
/// nodes from the root down to the node holding the key, or down to the empty child
/// slot where the key would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub nodes: Vec<Vec<u8>>,
}

/// Builds the proof for `key` in the tree at `root`.
pub fn prove<S: NodeSource + ?Sized>(
    source: &S,
    root: Option<Hash>,
    key: &str,
) -> Result<Proof, MerkleError> {
    let mut nodes = Vec::new();
    let mut tree = root;
    while let Some(hash) = tree {
        let node = source.node(&hash).ok_or(MerkleError::Missing(hash))?;
        nodes.push(node.encode());
        match node.locate(key) {
            Ok(_) => break,
            Err(slot) => tree = node.child(slot),
        }
    }
    Ok(Proof { nodes })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("proof node {0} does not hash to the expected value")]
    HashMismatch(usize),
    #[error("proof ends before reaching the key or an empty slot")]
    Incomplete,
    #[error("proof has nodes after the answer")]
    TrailingNodes,
    #[error("proof node {0} is not below its parent's level")]
    BadLevel(usize),
    #[error(transparent)]
    Malformed(#[from] MerkleError),
}

/// Checks a proof against a root and returns what it proves: `Some(value)` if the key
/// is in the tree, `None` if it is absent.
pub fn verify(root: Option<Hash>, key: &str, proof: &Proof) -> Result<Option<Hash>, ProofError> {
    let mut expected = root;
    let mut parent_level: Option<u8> = None;
    for (index, bytes) in proof.nodes.iter().enumerate() {
        let Some(want) = expected else {
            return Err(ProofError::TrailingNodes);
        };
        if *blake3::hash(bytes).as_bytes() != want {
            return Err(ProofError::HashMismatch(index));
        }
        let node = Node::decode(bytes)?;
        if parent_level.is_some_and(|level| node.level >= level) {
            return Err(ProofError::BadLevel(index));
        }
        parent_level = Some(node.level);
        match node.locate(key) {
            Ok(found) => {
                if index + 1 != proof.nodes.len() {
                    return Err(ProofError::TrailingNodes);
                }
                return Ok(Some(node.items[found].value));
            }
            Err(slot) => expected = node.child(slot),
        }
    }
    match expected {
        None => Ok(None),
        Some(_) => Err(ProofError::Incomplete),
    }
}

/// Hex of a root, with 64 zeros for the empty tree (as in headers and statements).
pub fn root_hex(root: Option<Hash>) -> String {
    hex::encode(root.unwrap_or([0; 32]))
}

/// The statement a homeserver signs (Ed25519, with its own key) about a user's root:
/// UTF-8 lines `pubky-merkle-root/1`, `user:<z32>`, `tree:pub|priv`, `root:<hex>`,
/// `seq:<event sequence>`, `time:<unix microseconds>`, each ending in `\n`.
pub fn root_statement(
    user: &str,
    private: bool,
    root: Option<Hash>,
    seq: u64,
    time_us: u64,
) -> String {
    let tree = if private { "priv" } else { "pub" };
    format!(
        "pubky-merkle-root/1\nuser:{user}\ntree:{tree}\nroot:{}\nseq:{seq}\ntime:{time_us}\n",
        root_hex(root)
    )
}

/// Checks a homeserver's signature over a root statement.
pub fn verify_root_statement(
    homeserver: &crate::PublicKey,
    statement: &str,
    signature: &[u8; 64],
) -> bool {
    homeserver
        .verify(statement.as_bytes(), &(*signature).into())
        .is_ok()
}

/// One path whose value differs between the two trees of a diff.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    pub key: String,
    pub local: Option<Hash>,
    pub remote: Option<Hash>,
}

/// A diff against a remote tree whose nodes come over the wire, run as a state
/// machine so that the transport (HTTP, in-process, async or not) stays the caller's.
///
/// Protocol: the caller asks the remote for the nodes of [`DiffSession::wants`] (one
/// round trip per tree level, every wanted node of a level in one request) and hands
/// them to [`DiffSession::receive`]. A remote child whose hash the local side already
/// has is the same subtree and is never fetched, so only the nodes on the paths to
/// the differences cross the wire. When `wants` is empty, [`DiffSession::finish`]
/// compares the trees locally.
pub struct DiffSession<'a, S: ?Sized> {
    local: &'a S,
    local_root: Option<Hash>,
    remote_root: Option<Hash>,
    fetched: MemStore,
    wants: Vec<Hash>,
}

impl<'a, S: NodeSource + ?Sized> DiffSession<'a, S> {
    pub fn new(local: &'a S, local_root: Option<Hash>, remote_root: Option<Hash>) -> Self {
        let wants = remote_root
            .filter(|root| local.node(root).is_none())
            .into_iter()
            .collect();
        DiffSession {
            local,
            local_root,
            remote_root,
            fetched: MemStore::default(),
            wants,
        }
    }

    /// The remote nodes to fetch next (empty when the diff can be finished).
    pub fn wants(&self) -> &[Hash] {
        &self.wants
    }

    /// Takes the remote's answer (node encodings) to the last `wants`. Nodes that were
    /// not asked for, or do not decode, are rejected: the hash is the only trust.
    pub fn receive(&mut self, encodings: &[Vec<u8>]) -> Result<(), MerkleError> {
        let asked: HashSet<Hash> = self.wants.iter().copied().collect();
        let mut next = Vec::new();
        for bytes in encodings {
            let hash = *blake3::hash(bytes).as_bytes();
            if !asked.contains(&hash) {
                return Err(MerkleError::Malformed("node that was not asked for"));
            }
            let node = Node::decode(bytes)?;
            for child in node.children() {
                if self.local.node(&child).is_none() && !self.fetched.nodes.contains_key(&child) {
                    next.push(child);
                }
            }
            self.fetched.nodes.insert(hash, node);
        }
        if let Some(missing) = self
            .wants
            .iter()
            .find(|hash| !self.fetched.nodes.contains_key(*hash))
        {
            return Err(MerkleError::Missing(*missing));
        }
        next.sort_unstable();
        next.dedup();
        self.wants = next;
        Ok(())
    }

    /// Compares the trees once every wanted node has been received.
    pub fn finish(self) -> Result<Vec<Difference>, MerkleError> {
        let remote = Layered {
            top: &self.fetched,
            bottom: self.local,
        };
        diff(self.local, self.local_root, &remote, self.remote_root)
    }
}

/// Reads from `top`, then from `bottom`.
struct Layered<'a, A: ?Sized, B: ?Sized> {
    top: &'a A,
    bottom: &'a B,
}

impl<A: NodeSource + ?Sized, B: NodeSource + ?Sized> NodeSource for Layered<'_, A, B> {
    fn node(&self, hash: &Hash) -> Option<Node> {
        self.top.node(hash).or_else(|| self.bottom.node(hash))
    }
}

/// A position in an in-order walk: an entry, or a subtree not yet opened.
enum Step {
    Entry(String, Hash),
    Tree(Hash),
}

/// An in-order walk of a tree that opens subtrees only on demand, so that equal
/// subtrees of two trees can be skipped without reading them. It holds no source:
/// nodes are passed in at each step, so a walk can stop on a missing node, wait for
/// it to be fetched, and go on.
struct Cursor {
    /// Reversed: the next step is last.
    stack: Vec<Step>,
}

impl Cursor {
    fn new(root: Option<Hash>) -> Self {
        Cursor {
            stack: root.map(Step::Tree).into_iter().collect(),
        }
    }

    fn node<S: NodeSource + ?Sized>(source: &S, hash: &Hash) -> Result<Node, MerkleError> {
        source.node(hash).ok_or(MerkleError::Missing(*hash))
    }

    fn level<S: NodeSource + ?Sized>(source: &S, hash: &Hash) -> Result<u8, MerkleError> {
        Ok(Self::node(source, hash)?.level)
    }

    /// Replaces the subtree on top of the stack by its items and children. On a
    /// missing node the stack is left as it was.
    fn open<S: NodeSource + ?Sized>(&mut self, source: &S) -> Result<(), MerkleError> {
        let Some(Step::Tree(hash)) = self.stack.last() else {
            return Ok(());
        };
        let node = Self::node(source, hash)?;
        self.stack.pop();
        for item in node.items.into_iter().rev() {
            if let Some(right) = item.right {
                self.stack.push(Step::Tree(right));
            }
            self.stack.push(Step::Entry(item.key, item.value));
        }
        if let Some(left) = node.left {
            self.stack.push(Step::Tree(left));
        }
        Ok(())
    }
}

/// The paths whose values differ between two trees, in key order. Subtrees with the
/// same hash on both sides are skipped, so the cost grows with the number of
/// differences times the height, not with the size of the trees.
pub fn diff<L: NodeSource + ?Sized, R: NodeSource + ?Sized>(
    local: &L,
    local_root: Option<Hash>,
    remote: &R,
    remote_root: Option<Hash>,
) -> Result<Vec<Difference>, MerkleError> {
    let mut walk = DiffWalk::new(local_root, remote_root);
    walk.run(local, remote, usize::MAX)?;
    Ok(walk.differences)
}

/// [`diff`] as a resumable walk, for trees whose nodes are fetched as the walk needs
/// them (the server diffing a client's root against its current one, both in
/// Postgres): [`DiffWalk::run`] stops with [`MerkleError::Missing`] on the first node
/// it lacks and, once the caller has fetched it, goes on from there, so each node is
/// fetched once and nothing is walked twice.
pub struct DiffWalk {
    a: Cursor,
    b: Cursor,
    differences: Vec<Difference>,
}

impl DiffWalk {
    pub fn new(local_root: Option<Hash>, remote_root: Option<Hash>) -> Self {
        DiffWalk {
            a: Cursor::new(local_root),
            b: Cursor::new(remote_root),
            differences: Vec::new(),
        }
    }

    /// The differences found so far, in key order.
    pub fn differences(&self) -> &[Difference] {
        &self.differences
    }

    pub fn into_differences(self) -> Vec<Difference> {
        self.differences
    }

    /// Walks until both trees are exhausted (`Ok(true)`), until `limit` differences
    /// are found (`Ok(false)`), or until a node is missing from its source (the
    /// error; fetch that node and call again).
    pub fn run<L: NodeSource + ?Sized, R: NodeSource + ?Sized>(
        &mut self,
        local: &L,
        remote: &R,
        limit: usize,
    ) -> Result<bool, MerkleError> {
        let (a, b, out) = (&mut self.a, &mut self.b, &mut self.differences);
        loop {
            if out.len() >= limit {
                return Ok(a.stack.is_empty() && b.stack.is_empty());
            }
            match (a.stack.last(), b.stack.last()) {
                (None, None) => return Ok(true),
                (Some(Step::Tree(_)), None) => a.open(local)?,
                (None, Some(Step::Tree(_))) => b.open(remote)?,
                (Some(Step::Entry(key, value)), None) => {
                    out.push(Difference {
                        key: key.clone(),
                        local: Some(*value),
                        remote: None,
                    });
                    a.stack.pop();
                }
                (None, Some(Step::Entry(key, value))) => {
                    out.push(Difference {
                        key: key.clone(),
                        local: None,
                        remote: Some(*value),
                    });
                    b.stack.pop();
                }
                (Some(Step::Tree(x)), Some(Step::Tree(y))) => {
                    if x == y {
                        a.stack.pop();
                        b.stack.pop();
                    } else {
                        // Both levels are read before either side opens, so that a
                        // missing node leaves the walk exactly where it was.
                        let (x_level, y_level) =
                            (Cursor::level(local, x)?, Cursor::level(remote, y)?);
                        if x_level >= y_level {
                            a.open(local)?;
                        }
                        if y_level >= x_level {
                            b.open(remote)?;
                        }
                    }
                }
                (Some(Step::Tree(_)), Some(Step::Entry(..))) => a.open(local)?,
                (Some(Step::Entry(..)), Some(Step::Tree(_))) => b.open(remote)?,
                (Some(Step::Entry(x_key, x_value)), Some(Step::Entry(y_key, y_value))) => {
                    match x_key.cmp(y_key) {
                        std::cmp::Ordering::Less => {
                            out.push(Difference {
                                key: x_key.clone(),
                                local: Some(*x_value),
                                remote: None,
                            });
                            a.stack.pop();
                        }
                        std::cmp::Ordering::Greater => {
                            out.push(Difference {
                                key: y_key.clone(),
                                local: None,
                                remote: Some(*y_value),
                            });
                            b.stack.pop();
                        }
                        std::cmp::Ordering::Equal => {
                            if x_value != y_value {
                                out.push(Difference {
                                    key: x_key.clone(),
                                    local: Some(*x_value),
                                    remote: Some(*y_value),
                                });
                            }
                            a.stack.pop();
                            b.stack.pop();
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn value(n: u64) -> Hash {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    /// Applies inserts to a store, keeping every created node (the test keeps garbage).
    fn apply_insert(store: &mut MemStore, root: Option<Hash>, key: &str, v: Hash) -> Option<Hash> {
        let edit = insert(store, root, key, v).expect("all nodes are in memory");
        store.nodes.extend(edit.created);
        edit.root
    }

    fn apply_remove(store: &mut MemStore, root: Option<Hash>, key: &str) -> Option<Hash> {
        let edit = remove(store, root, key).expect("all nodes are in memory");
        store.nodes.extend(edit.created);
        edit.root
    }

    fn built(map: &BTreeMap<String, Hash>) -> (MemStore, Option<Hash>) {
        let mut store = MemStore::default();
        let entries: Vec<(String, Hash)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let root = build(&entries, &mut store);
        (store, root)
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        // Few distinct keys so that overwrites and deletes of present keys are common.
        (0u16..400).prop_map(|n| format!("/pub/app/{}/{n}", n % 7))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(String, u64),
        Delete(String),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (key_strategy(), 0u64..4).prop_map(|(k, v)| Op::Put(k, v)),
            1 => key_strategy().prop_map(Op::Delete),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any history of puts and deletes gives the same root as building the final
        /// set at once, and the tree holds exactly that set.
        #[test]
        fn root_depends_only_on_the_final_set(ops in proptest::collection::vec(op_strategy(), 0..300)) {
            let mut store = MemStore::default();
            let mut root = None;
            let mut model = BTreeMap::new();
            for op in &ops {
                match op {
                    Op::Put(k, v) => {
                        root = apply_insert(&mut store, root, k, value(*v));
                        model.insert(k.clone(), value(*v));
                    }
                    Op::Delete(k) => {
                        root = apply_remove(&mut store, root, k);
                        model.remove(k);
                    }
                }
            }
            let (_, expected) = built(&model);
            prop_assert_eq!(root, expected);
            let listed = entries(&store, root).unwrap();
            let want: Vec<(String, Hash)> = model.into_iter().collect();
            prop_assert_eq!(listed, want);
        }

        /// Inserting the same set in two different orders gives the same root.
        #[test]
        fn root_is_independent_of_insertion_order(
            keys in proptest::collection::btree_set(key_strategy(), 0..200),
            seed in any::<u64>(),
        ) {
            let keys: Vec<String> = keys.into_iter().collect();
            let mut shuffled = keys.clone();
            // A seeded Fisher-Yates shuffle: proptest shrinks the seed, not the order.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut forward = MemStore::default();
            let mut backward = MemStore::default();
            let (mut a, mut b) = (None, None);
            for key in &keys {
                a = apply_insert(&mut forward, a, key, value(1));
            }
            for key in &shuffled {
                b = apply_insert(&mut backward, b, key, value(1));
            }
            prop_assert_eq!(a, b);
        }

        /// A proof verifies to the right answer for present and absent keys, and any
        /// flipped bit in it, or a different root, makes it fail or prove nothing else.
        #[test]
        fn proofs_verify_and_tampering_fails(
            keys in proptest::collection::btree_set(key_strategy(), 1..200),
            probe in key_strategy(),
            flip in any::<(usize, usize, u8)>(),
        ) {
            let map: BTreeMap<String, Hash> =
                keys.iter().map(|k| (k.clone(), value(k.len() as u64))).collect();
            let (store, root) = built(&map);
            let proof = prove(&store, root, &probe).unwrap();
            prop_assert_eq!(verify(root, &probe, &proof), Ok(map.get(&probe).copied()));

            // Tampering: flip one bit of one node.
            if !proof.nodes.is_empty() {
                let mut bad = proof.clone();
                let node = flip.0 % bad.nodes.len();
                let byte = flip.1 % bad.nodes[node].len();
                bad.nodes[node][byte] ^= 1 << (flip.2 % 8);
                prop_assert!(verify(root, &probe, &bad).is_err());
            }
            // Another root: the proof is for a different tree.
            let mut other = map.clone();
            other.insert("/pub/zzz/extra".into(), value(9));
            let (_, other_root) = built(&other);
            if other_root != root && !proof.nodes.is_empty() {
                prop_assert!(verify(other_root, &probe, &proof).is_err());
            }
        }

        /// The diff finds exactly the changed paths, through the wire protocol.
        #[test]
        fn diff_finds_exactly_the_changed_paths(
            base in proptest::collection::btree_map(key_strategy(), 0u64..3, 0..250),
            edits in proptest::collection::vec(op_strategy(), 0..20),
        ) {
            let base: BTreeMap<String, Hash> =
                base.into_iter().map(|(k, v)| (k, value(v))).collect();
            let mut changed = base.clone();
            for op in &edits {
                match op {
                    Op::Put(k, v) => { changed.insert(k.clone(), value(*v)); }
                    Op::Delete(k) => { changed.remove(k); }
                }
            }
            let (local, local_root) = built(&base);
            let (remote, remote_root) = built(&changed);

            let mut session = DiffSession::new(&local, local_root, remote_root);
            let mut rounds = 0;
            while !session.wants().is_empty() {
                rounds += 1;
                prop_assert!(rounds <= 64, "diff did not converge");
                let answer: Vec<Vec<u8>> = session
                    .wants()
                    .iter()
                    .map(|h| remote.nodes[h].encode())
                    .collect();
                session.receive(&answer).unwrap();
            }
            let found = session.finish().unwrap();

            let mut expected = Vec::new();
            let keys: std::collections::BTreeSet<&String> =
                base.keys().chain(changed.keys()).collect();
            for key in keys {
                let (l, r) = (base.get(key).copied(), changed.get(key).copied());
                if l != r {
                    expected.push(Difference { key: key.clone(), local: l, remote: r });
                }
            }
            prop_assert_eq!(&found, &expected);

            // The resumable walk over sources that start empty and are filled one
            // missing node at a time finds the same, fetching each node at most once
            // and only nodes that are not shared by both trees or are above them.
            let (mut lazy_local, mut lazy_remote) = (MemStore::default(), MemStore::default());
            let mut walk = DiffWalk::new(local_root, remote_root);
            let mut fetched = HashSet::new();
            loop {
                match walk.run(&lazy_local, &lazy_remote, usize::MAX) {
                    Ok(done) => { prop_assert!(done); break; }
                    Err(MerkleError::Missing(hash)) => {
                        prop_assert!(fetched.insert(hash), "fetched twice");
                        if let Some(node) = local.nodes.get(&hash) {
                            lazy_local.nodes.insert(hash, node.clone());
                        }
                        if let Some(node) = remote.nodes.get(&hash) {
                            lazy_remote.nodes.insert(hash, node.clone());
                        }
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            prop_assert_eq!(walk.into_differences(), expected.clone());
            // A limit stops the walk after that many differences, in key order.
            let mut limited = DiffWalk::new(local_root, remote_root);
            let done = limited.run(&local, &remote, 1).unwrap();
            prop_assert_eq!(limited.differences(), &expected[..expected.len().min(1)]);
            if expected.is_empty() {
                prop_assert!(done);
            }
            if expected.len() > 1 {
                prop_assert!(!done);
            }
        }
    }

    #[test]
    fn nodes_round_trip_and_reject_garbage() {
        let mut map = BTreeMap::new();
        for n in 0..2000u64 {
            map.insert(format!("/pub/example.com/posts/{n:05}"), value(n));
        }
        let (store, _) = built(&map);
        for (hash, node) in &store.nodes {
            let bytes = node.encode();
            assert_eq!(Node::decode(&bytes).as_ref(), Ok(node));
            assert_eq!(*blake3::hash(&bytes).as_bytes(), *hash);
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Node::decode(&longer).is_err());
            assert!(Node::decode(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn empty_tree_proves_absence() {
        let proof = prove(&MemStore::default(), None, "/pub/a").unwrap();
        assert!(proof.nodes.is_empty());
        assert_eq!(verify(None, "/pub/a", &proof), Ok(None));
    }
}
