//! The mirror loop: one task per mirrored user, started and stopped by a supervisor
//! that reads the `mirrors` table.
//!
//! A user's task (1) syncs both trees by diff to the primary's signed roots (the
//! initial copy, or the catch-up after a restart: from the checkpoint's root this is
//! one round trip), then (2) follows the primary's live event stream from its cursor,
//! applying each event as it comes: the content is fetched and checked against the
//! event's hash, one mirrored event appended here, and the local root compared with
//! the root the primary gave for that event. Equal: the cursor is checkpointed. Not
//! equal, or a content that is another version by now: the tree is synced by diff
//! again (3), which checks against a signed root. Every `anti_entropy` interval the
//! signed roots are compared with the local ones and any drift repaired the same way.
//! Any failure (the primary down, a refused content) is recorded as the mirror's last
//! error and retried with exponential back-off, from the checkpoint. A primary that is
//! not ours (a plain source) is copied and followed by `crate::plain` instead of (1)-(3).

use crate::source::{Source, SourceError, SourceKind, StreamEvent};
use crate::sync::{FETCH_AHEAD, Fetched, Mirror, SyncError};
use crate::table::{self, MirrorRow};
use crate::{MirrorSet, Settings};
use api::AppState;
use domain::PublicKey;
use domain::event::{Change, Digest};
use domain::merkle;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Back-off after a failure: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Most stream events applied as one batch.
const BATCH: usize = 256;
/// How long a batch waits for one more event the stream may already hold.
const READY: Duration = Duration::from_millis(2);

/// Runs the supervisor until `stop` is cancelled: every `settings.poll` (or at once
/// when the set changes in this process) it starts a task for each new row and stops
/// the tasks of removed ones.
pub async fn supervise(
    state: AppState,
    set: MirrorSet,
    settings: Settings,
    stop: CancellationToken,
) {
    let http = reqwest::Client::new();
    let mut running: HashMap<String, (MirrorRow, CancellationToken)> = HashMap::new();
    loop {
        match table::list(&state.store).await {
            Ok(rows) => {
                set.replace(rows.iter().map(|r| (r.user.clone(), r.source_key.clone())));
                match table::moved(&state.store).await {
                    Ok(moved) => set.replace_moved(moved.into_iter()),
                    Err(e) => tracing::warn!(error = %e, "mirror supervisor cannot read moves"),
                }
                let wanted: HashMap<String, MirrorRow> =
                    rows.into_iter().map(|r| (r.user.clone(), r)).collect();
                running.retain(|user, (row, token)| {
                    let keep = wanted.get(user).is_some_and(|w| {
                        w.source_url == row.source_url
                            && w.source_key == row.source_key
                            && w.source_kind == row.source_kind
                            && w.read_token == row.read_token
                    });
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for (user, row) in wanted {
                    if running.contains_key(&user) {
                        continue;
                    }
                    let token = stop.child_token();
                    tokio::spawn(follow(
                        state.clone(),
                        http.clone(),
                        row.clone(),
                        settings.clone(),
                        token.clone(),
                    ));
                    running.insert(user, (row, token));
                }
            }
            Err(e) => tracing::warn!(error = %e, "mirror supervisor cannot read the mirrors table"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(settings.poll) => {}
            () = set.changed() => {}
        }
    }
}

/// One mirrored user's task, until `stop`.
async fn follow(
    state: AppState,
    http: reqwest::Client,
    row: MirrorRow,
    settings: Settings,
    stop: CancellationToken,
) {
    let (Ok(user), Ok(key)) = (
        PublicKey::try_from(row.user.as_str()),
        PublicKey::try_from(row.source_key.as_str()),
    ) else {
        let _ = table::set_state(&state.store, &row.user, "failed", Some("invalid key")).await;
        return;
    };
    let kind = SourceKind::parse(&row.source_kind).unwrap_or(SourceKind::Merkle);
    let source = Source::new(
        http,
        &row.source_url,
        key,
        &row.user,
        row.read_token.clone(),
    )
    .with_kind(kind);
    let mirror = Mirror {
        state: &state,
        source: &source,
        user,
    };
    let mut backoff = BACKOFF_FIRST;
    loop {
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = async {
                match kind {
                    SourceKind::Merkle => run(&mirror, &settings).await,
                    SourceKind::Plain => crate::plain::run(&mirror, &settings).await,
                }
            } => result,
        };
        if let Err(e) = result {
            tracing::warn!(user = %row.user, error = %e, "mirror: retrying");
            let text = e.to_string();
            let _ = table::set_state(&state.store, &row.user, "retrying", Some(&text)).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        } else {
            backoff = BACKOFF_FIRST;
        }
    }
}

/// Syncs both trees by diff and records the signed roots reached; returns the
/// primary's sequence they stand for.
async fn sync_all(mirror: &Mirror<'_>) -> Result<u64, SyncError> {
    let store = &mirror.state.store;
    let user = mirror.source.user.clone();
    let public = mirror.sync_tree(false).await?;
    let private = match mirror.source.has_private() {
        true => Some(mirror.sync_tree(true).await?),
        false => None,
    };
    let private_root = private.as_ref().map(|p| p.root.as_str());
    let seq = public.seq.max(private.as_ref().map_or(0, |p| p.seq));
    let applied = public.applied + private.as_ref().map_or(0, |p| p.applied);
    table::synced(store, &user, (&public.root, private_root), seq, applied)
        .await
        .map_err(|e| SyncError::Local(e.to_string()))?;
    Ok(seq)
}

/// One run: sync, then follow the stream until it fails.
async fn run(mirror: &Mirror<'_>, settings: &Settings) -> Result<(), SyncError> {
    let store = &mirror.state.store;
    let user = mirror.source.user.clone();
    let local = |e: sqlx::Error| SyncError::Local(e.to_string());
    let row = table::get(store, &user).await.map_err(local)?;
    let Some(row) = row else { return Ok(()) };
    if row.cursor == 0 {
        table::set_state(store, &user, "copying", None)
            .await
            .map_err(local)?;
    }
    // Everything up to the signed roots' sequence is in the copy: the stream's older
    // events are skipped.
    let mut synced_to = sync_all(mirror).await?;
    let cursor = row.cursor.max(synced_to);
    // The newest of the primary's events reflected here (by the stream or a sync).
    let mut applied_to = cursor;
    let events = mirror.source.events(cursor).await?;
    futures::pin_mut!(events);
    let mut anti_entropy = tokio::time::interval(settings.anti_entropy);
    anti_entropy.tick().await;
    loop {
        tokio::select! {
            next = events.next() => {
                let first = next.unwrap_or_else(|| {
                    Err(SourceError::Unreachable("the event stream ended".into()))
                })?;
                // Whatever else the stream already holds is applied with it: contents
                // fetched a few ahead, one projection wait and one root check per batch.
                let mut batch = vec![first];
                // (A moment's wait, not none: the HTTP body is read from the socket
                // only when asked for, by a task that has to get a turn.)
                while batch.len() < BATCH {
                    match tokio::time::timeout(READY, events.next()).await {
                        Ok(Some(event)) => batch.push(event?),
                        _ => break,
                    }
                }
                batch.retain(|event| event.seq > synced_to);
                let Some(newest) = batch.last().map(|event| event.seq) else {
                    continue;
                };
                let ok = apply(mirror, &batch).await?;
                applied_to = applied_to.max(newest);
                if !ok {
                    synced_to = sync_all(mirror).await?.max(newest);
                    table::advance(store, &user, synced_to).await.map_err(local)?;
                }
            }
            _ = anti_entropy.tick() => {
                if drifted(mirror, applied_to).await? {
                    tracing::info!(user, "mirror: anti-entropy found drift, repairing by diff");
                    synced_to = synced_to.max(sync_all(mirror).await?);
                    applied_to = applied_to.max(synced_to);
                }
            }
        }
    }
}

/// Whether a signed root of the primary differs from the local one although every
/// event up to the root's own is reflected here (`applied_to`). A root of a newer
/// event is not drift: that event is on its way on the stream.
async fn drifted(mirror: &Mirror<'_>, applied_to: u64) -> Result<bool, SyncError> {
    for private in [false, true] {
        if private && !mirror.source.has_private() {
            continue;
        }
        let signed = mirror.source.signed_root(private).await?;
        if signed.seq <= applied_to && signed.root != mirror.local_root(private).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_private(event: &StreamEvent) -> bool {
    event.path.starts_with("/priv/")
}

/// Applies a batch of stream events in order. `Ok(false)`: it could not be reproduced
/// exactly (an event without a root or hash, a content that is another version by now,
/// or a root that differs afterwards): sync by diff.
async fn apply(mirror: &Mirror<'_>, batch: &[StreamEvent]) -> Result<bool, SyncError> {
    let store = &mirror.state.store;
    let local = |e: sqlx::Error| SyncError::Local(e.to_string());
    if batch
        .iter()
        .any(|e| e.root.is_none() || (e.put && e.content_hash.is_none()))
    {
        return Ok(false); // nothing to check against: only a diff is verifiable
    }
    let mut last = mirror.file_seq().await?;
    // A replay after a crash: the first event's effect may already be here.
    let first = &batch[0];
    let done = first.root == Some(mirror.local_root(is_private(first)).await?);
    let todo = &batch[usize::from(done)..];
    // Owned items: a closure over borrowed ones would not be `Send` for every lifetime.
    let wanted: Vec<(String, Option<[u8; 32]>)> = todo
        .iter()
        .map(|e| (e.path.clone(), e.content_hash.filter(|_| e.put)))
        .collect();
    let fetches = futures::stream::iter(wanted)
        .map(|(path, hash)| async move {
            match hash {
                Some(hash) => mirror.fetch(&path, &hash).await.map(Some),
                None => Ok(None),
            }
        })
        .buffered(FETCH_AHEAD);
    futures::pin_mut!(fetches);
    let mut appended = None;
    for event in todo {
        let Some(fetched) = fetches.next().await else {
            break;
        };
        let change = match fetched? {
            Some(Fetched::Stored(content_type, size)) => Change::FilePut {
                path: event.path.clone(),
                content_hash: Digest(event.content_hash.unwrap_or_default()),
                size,
                content_type,
            },
            Some(Fetched::Changed) => break,
            None => Change::FileDeleted {
                path: event.path.clone(),
            },
        };
        last = mirror.append_unwaited(change, event.seq, last).await?;
        appended = Some((last, event.seq));
    }
    if let Some((seq, _)) = appended {
        mirror.wait(seq).await?;
    }
    if appended.map(|(_, source)| source) != todo.last().map(|e| e.seq) {
        return Ok(false); // stopped at a content that changed since
    }
    // Each tree's root must be the one the primary gave after its last event here.
    for private in [false, true] {
        if let Some(event) = batch.iter().rev().find(|e| is_private(e) == private)
            && event.root != Some(mirror.local_root(private).await?)
        {
            return Ok(false);
        }
    }
    if let Some(end) = batch.iter().rev().find(|e| e.ends_event) {
        let upto = batch.iter().take_while(|e| e.seq <= end.seq);
        let root_of = |private: bool| {
            let last = upto.clone().filter(|e| is_private(e) == private).last();
            last.map(|e| merkle::root_hex(e.root.flatten()))
        };
        let (public, private) = (root_of(false), root_of(true));
        let roots = (public.as_deref(), private.as_deref());
        let applied = todo.len() as u64;
        table::checkpoint(store, &mirror.source.user, end.seq, roots, applied)
            .await
            .map_err(local)?;
    }
    Ok(true)
}
