//! `homeserver import <archive>`: load a user's account archive (`docs/export.md`) into
//! this homeserver, verified before anything of it becomes visible, and resumable.
//!
//! 1. **Verify** the whole archive against the signed roots it carries
//!    (`archive_file::verify`): on the first bad path it stops, having written nothing.
//! 2. **Apply**, one file at a time: each file whose content this server does not already
//!    hold at that path is streamed from the archive into the blob store (its hash checked
//!    again, in case the file changed since step 1) and appended as one ordinary
//!    `file_put` event; files of the user that the archive does not have are deleted, so
//!    the trees end equal to the archive's. A 100,000-entry user is 100,000 small events,
//!    never one transaction or one request.
//! 3. **Check** that this server's roots now equal the signed ones.
//!
//! Resumable: a second run (after `kill -9` of this command or of the server) verifies
//! again, then skips every file already there with the same content, so it goes on where
//! the first stopped and ends equal. The account is created first if the key has none
//! here (the operator vouches for the import by running it).

use crate::archive_file::{self, ArchiveReader, Item};
use crate::config::Config;
use anyhow::{Context, bail};
use blobs::BlobStore;
use domain::archive::EntryRecord;
use domain::event::{Change, Digest, SubjectFamily, UserLimits};
use domain::{Event, EventSeq, PublicKey};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use log::{AppendError, EventLog, Expected};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use store::Store;
use store::export::PageQuery;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub user: String,
    /// The homeserver keys that signed the archive's roots.
    pub signers: Vec<String>,
    /// Files appended (new or changed).
    pub written: u64,
    /// Files already there with the same content (a resumed import).
    pub skipped: u64,
    /// Files of the user the archive does not have, deleted.
    pub deleted: u64,
    pub bytes: u64,
}

/// Contents stored ahead of the append that refers to them.
const STORE_AHEAD: usize = 8;

/// Streams one entry's content from the archive into the blob store and checks its
/// hash again (the file may have changed since it was verified).
async fn store_content<'a>(
    blobs: &BlobStore,
    archive: &Path,
    planned: &'a Planned,
) -> anyhow::Result<&'a Planned> {
    let path = planned.record.path.as_str();
    let mut file = tokio::fs::File::open(archive).await?;
    file.seek(std::io::SeekFrom::Start(planned.offset)).await?;
    let stream = tokio_util::io::ReaderStream::new(file.take(planned.record.size));
    let stored = blobs
        .put_stream(stream, None, path)
        .await
        .with_context(|| format!("storing the content of {path}"))?;
    if stored.hash.0 != planned.hash || stored.size != planned.record.size {
        bail!("archive refused at {path}: the file changed since it was verified");
    }
    Ok(planned)
}

/// One entry to apply: where its content is in the archive file.
struct Planned {
    record: EntryRecord,
    offset: u64,
    hash: [u8; 32],
}

/// `homeserver import <archive>`.
pub async fn import(config: &Config, archive: &Path) -> anyhow::Result<ImportReport> {
    import_signed_by(config, archive, None).await
}

/// [`import`], refusing an archive whose roots are not signed by `signer` (z32): the
/// homeserver the user's PKARR record named, when the operator knows it.
pub async fn import_signed_by(
    config: &Config,
    archive: &Path,
    signer: Option<&str>,
) -> anyhow::Result<ImportReport> {
    // 1. Verify, writing nothing.
    let path = archive.to_owned();
    let trees = tokio::task::spawn_blocking(move || verify_and_plan(&path))
        .await
        .context("verification task")??;
    if let Some(expected) = signer
        && let Some(other) = trees.signers.iter().find(|s| s.as_str() != expected)
    {
        bail!("the archive's roots are signed by {other}, not by {expected}");
    }
    let user = PublicKey::try_from(trees.user.as_str())
        .map_err(|e| anyhow::anyhow!("archive user key: {e}"))?;

    let store = Store::connect(&config.database_url, 2).await?;
    let blobs = BlobStore::new(&config.blob_config())?;
    let log = EventLog::connect(config.log_config()).await?;
    // Appending to a log the projections do not follow would be lost (see
    // `projector::pairing`).
    if let log::identity::Pairing::Mismatched(why) = projector::pairing::check(&log, &store).await?
    {
        bail!("{why}");
    }
    let mut report = ImportReport {
        user: user.to_z32(),
        signers: trees.signers.clone(),
        ..ImportReport::default()
    };

    // 2. Apply.
    let mut last = ensure_user(&store, &log, &user).await?;
    let bar = ProgressBar::new(trees.bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "import {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (private, entries, _) in &trees.trees {
        let present = current_entries(&store, &user, *private).await?;
        let (same, missing): (Vec<&Planned>, Vec<&Planned>) = entries
            .iter()
            .partition(|p| present.get(p.record.path.as_str()) == Some(&p.hash));
        report.skipped += same.len() as u64;
        bar.inc(same.iter().map(|p| p.record.size).sum());
        // Contents are stored a few at a time (each is a durable write of its own),
        // events appended one by one in path order as their contents are stored.
        let mut stored = futures::stream::iter(missing)
            .map(|planned| store_content(&blobs, archive, planned))
            .buffered(STORE_AHEAD);
        while let Some(planned) = stored.next().await {
            let planned = planned?;
            let change = Change::FilePut {
                path: planned.record.path.clone(),
                content_hash: Digest(planned.hash),
                size: planned.record.size,
                content_type: planned.record.content_type.clone(),
            };
            last = append_file(&log, &user, change, last).await?;
            report.written += 1;
            report.bytes += planned.record.size;
            bar.inc(planned.record.size);
        }
        let archived: std::collections::HashSet<&str> =
            entries.iter().map(|p| p.record.path.as_str()).collect();
        for path in present.keys().filter(|p| !archived.contains(p.as_str())) {
            let change = Change::FileDeleted { path: path.clone() };
            last = append_file(&log, &user, change, last).await?;
            report.deleted += 1;
        }
    }
    bar.finish_and_clear();

    // 3. Check: wait for the projector, then compare the roots.
    wait_projected(&store, last).await?;
    for (private, _, root) in &trees.trees {
        let here = store.merkle_root(&user.to_z32(), *private).await?;
        let here = domain::merkle::root_hex(here.root);
        if &here != root {
            bail!(
                "after the import the {} root is {here}, the archive's is {root}",
                if *private { "private" } else { "public" }
            );
        }
    }
    Ok(report)
}

/// The verified archive: its user and, per tree, the entries and the signed root (hex).
struct Plan {
    user: String,
    signers: Vec<String>,
    bytes: u64,
    trees: Vec<(bool, Vec<Planned>, String)>,
}

fn verify_and_plan(path: &Path) -> anyhow::Result<Plan> {
    let open = || -> anyhow::Result<_> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(std::io::BufReader::with_capacity(256 * 1024, file))
    };
    let verified = archive_file::verify(open()?, |_, _| {})?;
    let user = verified[0].record.user.clone();
    if verified.iter().any(|t| t.record.user != user) {
        bail!("the archive holds trees of several users");
    }
    // Verified: read it again for where each entry's content is.
    let mut reader = ArchiveReader::new(open()?)?;
    let mut trees = Vec::new();
    let mut bytes = 0;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Tree { record, .. } => {
                trees.push((record.is_private(), Vec::new(), record.root));
            }
            Item::Entry {
                record,
                offset,
                hash,
            } => {
                bytes += record.size;
                if let Some((_, entries, _)) = trees.last_mut() {
                    entries.push(Planned {
                        record,
                        offset,
                        hash,
                    });
                }
            }
            Item::End(_) => {}
        }
    }
    let mut signers: Vec<String> = verified.iter().map(|t| t.record.signer.clone()).collect();
    signers.dedup();
    Ok(Plan {
        user,
        signers,
        bytes,
        trees,
    })
}

/// The user's current files of one tree here, path to content hash.
async fn current_entries(
    store: &Store,
    user: &PublicKey,
    private: bool,
) -> anyhow::Result<BTreeMap<String, [u8; 32]>> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = PageQuery {
            private,
            cursor: cursor.as_deref(),
            limit: 10_000,
            max_bytes: u64::MAX,
            with_nodes: false,
        };
        let Some(page) = store.export_page(&user.to_z32(), &query).await? else {
            return Ok(out);
        };
        for entry in page.entries {
            out.insert(entry.path, entry.content_hash);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// Creates the account if the key has none here; returns the file subject's last
/// sequence, which the first file event expects.
async fn ensure_user(store: &Store, log: &EventLog, user: &PublicKey) -> anyhow::Result<EventSeq> {
    if let Some(row) = store.user(user).await? {
        return Ok(row.file_seq);
    }
    let after = store
        .deleted_account_seq(user)
        .await?
        .unwrap_or(EventSeq(0));
    let event = Event::new(
        user.clone(),
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        Change::UserSignedUp {
            signup_token: None,
            limits: UserLimits::default(),
            cookie_session: None,
            pop_nonce: None,
        },
    );
    let seq = log
        .append(&event, Expected::LastSeq(after))
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the account: {e:?}"))?;
    wait_projected(store, seq).await?;
    let row = store
        .user(user)
        .await?
        .context("the account was not created")?;
    Ok(row.file_seq)
}

/// Appends one file event after `last` on the user's file subject. Losing a race (the
/// user wrote meanwhile) is an error: run the import again, it resumes.
async fn append_file(
    log: &EventLog,
    user: &PublicKey,
    change: Change,
    last: EventSeq,
) -> anyhow::Result<EventSeq> {
    debug_assert_eq!(change.family(), SubjectFamily::Files);
    let event = Event::new(
        user.clone(),
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        change,
    );
    match log.append(&event, Expected::LastSeq(last)).await {
        Ok(seq) => Ok(seq),
        Err(AppendError::Conflict { .. }) => {
            bail!("the user's files changed during the import: run it again to resume")
        }
        Err(AppendError::Log(e)) => Err(e.into()),
    }
}

/// Waits until the projections include `seq` (bounded).
async fn wait_projected(store: &Store, seq: EventSeq) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while store.watermark().await? < seq {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the projector has not applied event {seq} within 120 s: is the homeserver running?"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
