//! Measures the diff protocol: bytes and round trips for a client holding a copy of a
//! 100,000-entry tree to find the one path that changed on the server.
//!
//! `cargo run -p hs-domain --example merkle_diff [entries]`
//!
//! Bytes counted as they cross the wire with the read API's binary format: a request
//! is the wanted 32-byte hashes, an answer is each node as a 4-byte length and its
//! encoding (HTTP headers not included).

use hs_domain::merkle::{self, DiffSession, Hash, MemStore, NodeSource};

fn value(n: u64) -> Hash {
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

fn measure(
    label: &str,
    local: &MemStore,
    local_root: Option<Hash>,
    remote: &MemStore,
    remote_root: Option<Hash>,
) -> (usize, usize) {
    let mut session = DiffSession::new(local, local_root, remote_root);
    let (mut rounds, mut sent, mut received, mut nodes) = (0, 0usize, 0usize, 0usize);
    while !session.wants().is_empty() {
        rounds += 1;
        sent += 32 * session.wants().len();
        let answer: Vec<Vec<u8>> = session
            .wants()
            .iter()
            .map(|h| remote.nodes[h].encode())
            .collect();
        nodes += answer.len();
        received += answer.iter().map(|n| 4 + n.len()).sum::<usize>();
        session.receive(&answer).expect("honest remote");
    }
    let found = session.finish().expect("complete");
    println!(
        "{label}: {} path(s) differ; {rounds} round trips, {nodes} nodes, {sent} B sent, {received} B received, {} B total",
        found.len(),
        sent + received,
    );
    (rounds, sent + received)
}

struct Overlay<'a>(&'a MemStore, &'a MemStore);

impl merkle::NodeSource for Overlay<'_> {
    fn node(&self, hash: &Hash) -> Option<merkle::Node> {
        self.0.node(hash).or_else(|| self.1.node(hash))
    }
}

fn measure_quiet(
    local: &MemStore,
    local_root: Option<Hash>,
    remote: &Overlay,
    remote_root: Option<Hash>,
) -> (usize, usize) {
    let mut session = DiffSession::new(local, local_root, remote_root);
    let (mut rounds, mut bytes) = (0, 0usize);
    while !session.wants().is_empty() {
        rounds += 1;
        bytes += 32 * session.wants().len();
        let answer: Vec<Vec<u8>> = session
            .wants()
            .iter()
            .filter_map(|h| remote.node(h))
            .map(|n| n.encode())
            .collect();
        bytes += answer.iter().map(|n| 4 + n.len()).sum::<usize>();
        session.receive(&answer).expect("honest remote");
    }
    assert_eq!(session.finish().expect("complete").len(), 1);
    (rounds, bytes)
}

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let entries: Vec<(String, Hash)> = {
        let mut e: Vec<_> = (0..count)
            .map(|n| (format!("/pub/example.com/posts/{n:08}.json"), value(n)))
            .collect();
        e.sort();
        e
    };
    let mut base = MemStore::default();
    let root = merkle::build(&entries, &mut base);
    let height = {
        let mut h = 0;
        let mut tree = root;
        while let Some(hash) = tree {
            h += 1;
            tree = base.nodes[&hash].left;
        }
        h
    };
    let sizes: Vec<usize> = base.nodes.values().map(|n| n.encode().len()).collect();
    println!(
        "{count} entries: {} nodes, height {height}, mean node {} B, largest {} B",
        base.nodes.len(),
        sizes.iter().sum::<usize>() / sizes.len().max(1),
        sizes.iter().max().unwrap_or(&0)
    );

    let key = &entries[(count / 2) as usize].0;
    let proof = merkle::prove(&base, root, key).expect("in memory");
    println!(
        "inclusion proof: {} nodes, {} B",
        proof.nodes.len(),
        proof.nodes.iter().map(Vec::len).sum::<usize>()
    );

    let mut changed = base.clone();
    let edit = merkle::insert(&changed, root, key, value(u64::MAX)).expect("in memory");
    println!(
        "one put rewrites {} nodes",
        merkle::reachable_new(edit.root, &edit.created).len()
    );
    changed.nodes.extend(edit.created);
    measure("one modified path", &base, root, &changed, edit.root);

    // The figure depends on which path changed (node sizes vary): over 200 spread paths.
    let mut totals = Vec::new();
    let mut most_rounds = 0;
    for i in 0..200u64 {
        let key = &entries[(i * count / 200) as usize].0;
        let edit = merkle::insert(&base, root, key, value(u64::MAX - i)).expect("in memory");
        let mut changed = MemStore::default();
        changed.nodes.extend(edit.created);
        let remote = Overlay(&changed, &base);
        let (rounds, bytes) = measure_quiet(&base, root, &remote, edit.root);
        most_rounds = most_rounds.max(rounds);
        totals.push(bytes);
    }
    totals.sort_unstable();
    println!(
        "one modified path, 200 different paths: median {} B, mean {} B, max {} B, at most {most_rounds} round trips",
        totals[totals.len() / 2],
        totals.iter().sum::<usize>() / totals.len(),
        totals[totals.len() - 1],
    );

    // Every path: a changed value rewrites exactly the nodes on its proof path, and
    // the diff fetches each of them in its own round, so its cost is the proof's
    // nodes plus the framing (32 B asked, 4 B length per node).
    let mut every: Vec<usize> = entries
        .iter()
        .map(|(key, _)| {
            let proof = merkle::prove(&base, root, key).expect("in memory");
            proof.nodes.iter().map(|n| 32 + 4 + n.len()).sum()
        })
        .collect();
    every.sort_unstable();
    let pct = |p: usize| every[(every.len() - 1) * p / 100];
    println!(
        "one modified path, all {count} paths: median {} B, p90 {} B, p99 {} B, max {} B, {:.2} % above 10 KiB",
        pct(50),
        pct(90),
        pct(99),
        every[every.len() - 1],
        100.0 * every.iter().filter(|b| **b > 10 * 1024).count() as f64 / every.len() as f64,
    );

    let mut added = base.clone();
    let edit = merkle::insert(&added, root, "/pub/example.com/posts/new.json", value(7))
        .expect("in memory");
    added.nodes.extend(edit.created);
    measure("one added path", &base, root, &added, edit.root);

    let mut removed = base.clone();
    let edit = merkle::remove(&removed, root, key).expect("in memory");
    removed.nodes.extend(edit.created);
    measure("one removed path", &base, root, &removed, edit.root);
}
