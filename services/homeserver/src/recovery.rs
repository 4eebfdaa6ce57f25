//! The operator commands that bring back a homeserver whose log or projections were
//! lost: `homeserver reseed` (the log from the projections, `projector::reseed`),
//! `homeserver backup` and `homeserver restore` (the log, the blobs and the key; see
//! `docs/backup.md` for the format). Rebuilding the projections from the log is
//! `homeserver rebuild`, and a server started on an empty database does it by itself.
//!
//! A backup needs no pause: the log's snapshot is consistent at one sequence, and the
//! blobs are copied after it, so every blob an event of the snapshot names is there
//! (a blob is stored before its event is appended). The projections are not backed up:
//! they are a function of the log.

use crate::config::Config;
use anyhow::{Context, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The version of the backup layout this program writes and reads.
pub const BACKUP_FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const LOG_SNAPSHOT: &str = "log.snapshot";
const BLOBS: &str = "blobs";

/// `homeserver reseed [--replace-stream]`: re-creates the lost log from the
/// projections, projects it, and checks that no user's Merkle root moved.
pub async fn reseed(
    config: &Config,
    keypair: &domain::Keypair,
    replace_stream: bool,
    show_progress: bool,
) -> anyhow::Result<projector::ReseedReport> {
    let store = store::Store::connect(&config.database_url, 4)
        .await
        .context("cannot connect to Postgres")?;
    store.migrate().await?;
    let log = log::EventLog::connect(config.log_config()).await?;
    let report = projector::reseed(
        &log,
        &store,
        &keypair.public_key(),
        replace_stream,
        show_progress,
    )
    .await?;
    if !report.trees_differing.is_empty() {
        anyhow::bail!(
            "the log was re-seeded, but {} Merkle trees differ from before: {}",
            report.trees_differing.len(),
            report.trees_differing.join(", ")
        );
    }
    Ok(report)
}

/// `manifest.json` of a backup: what it holds and how to check it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: u32,
    /// When the backup was taken, microseconds since the Unix epoch.
    pub created_us: u64,
    /// The homeserver's public key (z-base-32); its secret is in `secret`.
    pub homeserver: String,
    pub stream: String,
    pub subject_prefix: String,
    /// The stream's last event when the snapshot began: a restore brings back at least
    /// this much (events appended while the snapshot was taken may be in it too).
    pub last_seq: u64,
    /// The snapshot's stream configuration and state, size and hash.
    pub log: log::snapshot::SnapshotInfo,
    pub blobs: u64,
    pub blob_bytes: u64,
}

fn bar(show: bool, doing: &str, bytes: bool) -> indicatif::ProgressBar {
    let bar = projector::progress_bar(show, doing, if bytes { "bytes" } else { "blobs" });
    if bytes
        && let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {doing} [{{bar:40}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, eta {{eta}})"
        ))
    {
        bar.set_style(style);
    }
    bar
}

/// `homeserver backup <dir>`: the log's snapshot, then the blobs, then the key and the
/// manifest (written last: a directory without one is not a backup). `dir` must be
/// new or empty.
pub async fn backup(config: &Config, dir: &Path, show: bool) -> anyhow::Result<BackupManifest> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty: a backup goes into a new directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join(BLOBS))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let secret = config.data_dir.join(pkarr_publish::identity::SECRET_FILE);
    let keypair = pkarr_publish::identity::load(&secret)
        .with_context(|| "the homeserver key is needed for a backup")?;
    let log = log::EventLog::connect(config.log_config()).await?;

    // Its size is known only at the end: the bar counts bytes without a total.
    let progress = bar(show, "log snapshot", true);
    let info = log
        .snapshot_to(&dir.join(LOG_SNAPSHOT), &|n| progress.inc(n))
        .await?;
    progress.finish_and_clear();
    let last_seq = info
        .state
        .get("last_seq")
        .and_then(|v| v.as_u64())
        .context("the snapshot's state has no last_seq")?;

    let blobs = blobs::BlobStore::new(&config.blob_config())?;
    let listed = blobs.list().await?;
    let progress = bar(show, "blobs", true);
    progress.set_length(listed.iter().map(|(_, size)| size).sum());
    let mut blob_bytes = 0;
    for (hash, _) in &listed {
        let path = dir.join(BLOBS).join(hash.to_hex());
        let mut file = tokio::fs::File::create(&path).await?;
        let mut body = blobs.get(hash, None).await?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            progress.inc(chunk.len() as u64);
            blob_bytes += chunk.len() as u64;
        }
        file.sync_all().await?;
    }
    progress.finish_and_clear();

    std::fs::copy(&secret, dir.join(pkarr_publish::identity::SECRET_FILE))?;
    let manifest = BackupManifest {
        format: BACKUP_FORMAT,
        created_us: api::now_micros(),
        homeserver: keypair.public_key().to_z32(),
        stream: config.nats_stream.clone(),
        subject_prefix: config.nats_subject_prefix.clone(),
        last_seq,
        log: info,
        blobs: listed.len() as u64,
        blob_bytes,
    };
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

/// What `homeserver restore` brought back.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub manifest: BackupManifest,
    /// The restored log's last event (at least `manifest.last_seq`).
    pub last_seq: u64,
    pub blobs_restored: u64,
    pub blobs_present: u64,
}

/// `homeserver restore <dir>`: checks the backup, installs the key (or checks the one
/// in place is the same), copies the blobs in (each checked against its hash), and
/// restores the log, which must not exist or be empty. The projections follow on the
/// next start: on an empty database the projector rebuilds them from the log.
pub async fn restore(config: &Config, dir: &Path, show: bool) -> anyhow::Result<RestoreReport> {
    let manifest: BackupManifest = serde_json::from_slice(
        &std::fs::read(dir.join(MANIFEST))
            .with_context(|| format!("{} holds no {MANIFEST}: not a backup", dir.display()))?,
    )
    .context("the backup's manifest is not readable")?;
    if manifest.format != BACKUP_FORMAT {
        bail!(
            "backup format {} is not the one this program reads ({BACKUP_FORMAT})",
            manifest.format
        );
    }
    if manifest.stream != config.nats_stream
        || manifest.subject_prefix != config.nats_subject_prefix
    {
        bail!(
            "the backup is of stream {} (subjects {}.>), but this server is configured for {} \
             ({}.>): set nats_stream and nats_subject_prefix to the backup's",
            manifest.stream,
            manifest.subject_prefix,
            config.nats_stream,
            config.nats_subject_prefix
        );
    }
    let snapshot = dir.join(LOG_SNAPSHOT);
    let progress = bar(show, "checking the log snapshot", true);
    progress.set_length(manifest.log.bytes);
    let (bytes, hash) = hash_file(&snapshot, &progress).await?;
    progress.finish_and_clear();
    if bytes != manifest.log.bytes || hash != manifest.log.blake3 {
        bail!(
            "{} does not match its manifest: the backup is damaged",
            snapshot.display()
        );
    }

    let backed_up = pkarr_publish::identity::load(&dir.join(pkarr_publish::identity::SECRET_FILE))?;
    let installed =
        pkarr_publish::identity::load_or_install(&config.data_dir, || backed_up.clone())?;
    if installed.public_key() != backed_up.public_key() {
        bail!(
            "{} already holds another homeserver key ({}); the backup is of {}",
            config.data_dir.display(),
            installed.public_key().to_z32(),
            manifest.homeserver
        );
    }

    let blobs = blobs::BlobStore::new(&config.blob_config())?;
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join(BLOBS))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let progress = bar(show, "blobs", false);
    progress.set_length(files.len() as u64);
    let (mut blobs_restored, mut blobs_present) = (0, 0);
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let expected = blobs::BlobHash::from_hex(name)
            .map_err(|_| anyhow::anyhow!("{} is not a blob of a backup", file.display()))?;
        if blobs.exists(&expected).await? {
            blobs_present += 1;
        } else {
            let body = tokio_util::io::ReaderStream::new(tokio::fs::File::open(file).await?);
            let stored = blobs.put_stream(body, None, "").await?;
            if stored.hash != expected {
                bail!(
                    "{} does not hold the blob its name says: the backup is damaged",
                    file.display()
                );
            }
            blobs_restored += 1;
        }
        progress.inc(1);
    }
    progress.finish_and_clear();

    let log = log::EventLog::connect(config.log_config()).await?;
    let progress = bar(show, "restoring the log", true);
    progress.set_length(manifest.log.bytes);
    log.restore_from(&snapshot, &manifest.log, &|n| progress.inc(n))
        .await?;
    progress.finish_and_clear();
    let head = log.head().await?;
    if head.0 < manifest.last_seq {
        bail!(
            "the restored log ends at {head}, before the backup's {}: the backup is damaged",
            manifest.last_seq
        );
    }
    Ok(RestoreReport {
        manifest,
        last_seq: head.0,
        blobs_restored,
        blobs_present,
    })
}

async fn hash_file(
    path: &Path,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, String)> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
        progress.inc(n as u64);
    }
    Ok((bytes, hasher.finalize().to_hex().to_string()))
}
