//! The operator's archive commands: `homeserver export <user>` writes a user's account
//! archive (`docs/export.md`) from this server's projections and blobs, and
//! `homeserver verify-archive <file>` checks one offline against its signed roots.
//!
//! Export reads the same bounded pages as `GET /export/<user>` (`store::export`), one
//! short snapshot each, and streams every blob to the file chunk by chunk; the file is
//! written under a temporary name and renamed when complete, so a cut-off export never
//! leaves something that looks like an archive. If the tree changes between pages, that
//! tree's section is written again from its start (up to [`ATTEMPTS`] times).

use crate::archive_file;
use crate::config::Config;
use anyhow::{Context, bail};
use blobs::{BlobHash, BlobStore};
use domain::archive::{self, EndRecord, EntryRecord, TreeRecord};
use domain::merkle::{self, MemStore, Node};
use domain::{Keypair, PublicKey};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use store::Store;
use store::export::PageQuery;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

/// How often one tree's section is started again because the tree changed mid-export.
const ATTEMPTS: usize = 5;
/// Entries per page read.
const PAGE_LIMIT: u32 = 1000;

/// Which trees to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Trees {
    Pub,
    Priv,
    All,
}

impl Trees {
    fn private_flags(self) -> &'static [bool] {
        match self {
            Trees::Pub => &[false],
            Trees::Priv => &[true],
            Trees::All => &[false, true],
        }
    }
}

/// `homeserver export <user> --out <file>`.
pub async fn export(
    config: &Config,
    keypair: &Keypair,
    user: &str,
    trees: Trees,
    out: &Path,
) -> anyhow::Result<()> {
    let user = domain::tenant::parse_storage_owner(user)
        .map_err(|_| anyhow::anyhow!("not a user public key: {user}"))?;
    let store = Store::connect(&config.database_url, 2).await?;
    let blobs = BlobStore::new(&config.blob_config())?;
    let tmp = out.with_extension("partial");
    let file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut file = BufWriter::new(file);
    file.write_all(format!("{}\n", archive::MAGIC).as_bytes())
        .await?;
    let mut summary = Vec::new();
    for &private in trees.private_flags() {
        let written = export_tree(&store, &blobs, keypair, &user, private, &mut file).await?;
        summary.push((private, written));
    }
    file.flush().await?;
    file.get_ref().sync_all().await?;
    tokio::fs::rename(&tmp, out).await?;
    for (private, (entries, bytes)) in summary {
        println!(
            "{} tree of {}: {entries} entries, {bytes} bytes",
            if private { "private" } else { "public" },
            user.to_z32()
        );
    }
    println!("archive written to {}", out.display());
    Ok(())
}

/// Writes one tree section; returns its entries and content bytes.
async fn export_tree(
    store: &Store,
    blobs: &BlobStore,
    keypair: &Keypair,
    user: &PublicKey,
    private: bool,
    file: &mut BufWriter<tokio::fs::File>,
) -> anyhow::Result<(u64, u64)> {
    let owner = user.to_z32();
    file.flush().await?;
    let start = file.get_mut().stream_position().await?;
    'attempt: for _ in 0..ATTEMPTS {
        file.flush().await?;
        file.get_mut().set_len(start).await?;
        file.get_mut().seek(std::io::SeekFrom::Start(start)).await?;
        let mut cursor: Option<String> = None;
        let mut first_root = None;
        let (mut entries, mut bytes) = (0u64, 0u64);
        let mut progress: Option<ProgressBar> = None;
        loop {
            let query = PageQuery {
                private,
                cursor: cursor.as_deref(),
                limit: PAGE_LIMIT,
                max_bytes: read_api::export::PAGE_BYTES,
                with_nodes: cursor.is_none(),
            };
            let page = store
                .export_page(&owner, &query)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no such user: {owner}"))?;
            match first_root {
                None => {
                    first_root = Some(page.root);
                    let record = signed_record(keypair, &owner, private, page.root, &page.nodes);
                    file.write_all(&archive::record_line(&record)).await?;
                    for node in &page.nodes {
                        file.write_all(&archive::node_frame(node)).await?;
                    }
                    let total = vouched(&page.nodes, page.root.root)?;
                    let bar = ProgressBar::new(total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{msg} {wide_bar} {pos}/{len} entries {per_sec} {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(if private { "priv" } else { "pub" });
                    progress = Some(bar);
                }
                Some(root) if root.root != page.root.root => {
                    tracing::warn!(user = %owner, "the tree changed during the export: starting it again");
                    continue 'attempt;
                }
                Some(_) => {}
            }
            for entry in &page.entries {
                let record = EntryRecord::new(
                    &entry.path,
                    &entry.content_hash,
                    entry.size,
                    &entry.content_type,
                );
                file.write_all(&archive::record_line(&record)).await?;
                let mut content = blobs
                    .get(&BlobHash(entry.content_hash), None)
                    .await
                    .with_context(|| format!("blob of {}", entry.path))?;
                if content.total_size() != entry.size {
                    bail!("the blob of {} is not {} bytes", entry.path, entry.size);
                }
                while let Some(chunk) = content.next().await {
                    file.write_all(&chunk?).await?;
                }
                file.write_all(b"\n").await?;
                entries += 1;
                bytes += entry.size;
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        file.write_all(&archive::record_line(&EndRecord::new(entries, None)))
            .await?;
        if let Some(bar) = progress {
            bar.finish();
        }
        return Ok((entries, bytes));
    }
    bail!(
        "the {} tree of {owner} kept changing during the export",
        if private { "private" } else { "public" }
    )
}

/// The tree record of `root`, signed with the homeserver key now.
fn signed_record(
    keypair: &Keypair,
    owner: &str,
    private: bool,
    root: store::merkle::TreeRoot,
    nodes: &[Vec<u8>],
) -> TreeRecord {
    let statement = merkle::root_statement(owner, private, root.root, root.seq, api::now_micros());
    TreeRecord {
        kind: "tree".into(),
        user: owner.to_owned(),
        tree: if private { "priv" } else { "pub" }.into(),
        root: merkle::root_hex(root.root),
        seq: root.seq,
        signature: Some(hex::encode(keypair.sign(statement.as_bytes()).to_bytes())),
        statement,
        signer: keypair.public_key().to_z32(),
        nodes: nodes.len() as u64,
        cursor: None,
    }
}

/// How many entries the tree of `nodes` has (for the progress bar).
fn vouched(nodes: &[Vec<u8>], root: Option<merkle::Hash>) -> anyhow::Result<u64> {
    let mut store = MemStore::default();
    for node in nodes {
        store.insert(Node::decode(node)?);
    }
    Ok(merkle::entries(&store, root)?.len() as u64)
}

/// `homeserver verify-archive <file>`: checks an archive offline; exit status 1 (an
/// error naming the first bad path) if it does not match its signed roots.
pub fn verify_archive(path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata()?.len();
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("verify {wide_bar} {binary_bytes}/{binary_total_bytes} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let trees = archive_file::verify(reader, |record, offset| {
        bar.set_position(offset + record.size);
    })?;
    bar.finish_and_clear();
    for tree in trees {
        println!(
            "{} tree of {}: {} entries, {} bytes, root {} (seq {}) signed by {}: verified",
            tree.record.tree,
            tree.record.user,
            tree.entries,
            tree.bytes,
            tree.record.root,
            tree.record.seq,
            tree.record.signer
        );
    }
    Ok(())
}
