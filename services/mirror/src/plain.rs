//! Mirroring from a plain Pubky homeserver (docs/mirror.md, "Sources"): one that signs
//! no roots and answers no diff, such as the reference homeserver. Only the routes
//! every Pubky homeserver has are used: listings, file reads and `/events-stream`.
//!
//! 1. **Copy by listing.** The sequence of the user's newest event at the primary is
//!    read first (`/events-stream`, backwards, one event); then the deep listings of
//!    `/pub/` (and `/priv/` with the read grant) are walked page by page and compared
//!    with the entries here over the same key range, in the same byte order: a path
//!    the primary lists is read, conditionally on the hash held here (`If-None-Match`:
//!    a file already copied costs a 304, so a walk cut off by a crash goes on without
//!    copying anything twice), and a path here that the primary does not list is
//!    deleted here. One page of paths at a time: nothing grows with the user.
//! 2. **Follow.** The primary's stream is followed from the sequence read before the
//!    walk, so a write made during the walk is not missed; each event is applied
//!    idempotently against the entry here (a PUT whose content is here already, or a
//!    DEL of a path not here, appends nothing), so the events the walk already
//!    reflects cost a comparison. The cursor is checkpointed after each event (after
//!    the last frame of one of ours, which marks it with `id:`; the reference sends no
//!    `id:`, its frames are whole events); a restarted mirror whose walk had completed
//!    goes on from it.
//! 3. **Anti-entropy**: every `anti_entropy` interval the listings are walked again,
//!    comparing paths only (a path missing here is copied, one gone there deleted).
//!    A file changed there without an event is not seen by it: only its ETag would
//!    tell, and asking for every file's is a copy's cost, not a check's.
//!
//! What is verified: every body must hash (BLAKE3) to the ETag the primary sends with
//! it (the reference computes the hash as the file is written and keeps it with the
//! entry, so a body changed on its disk since is refused, naming the path), and its
//! length must be the `Content-Length`. There is no signed root to check the whole
//! copy against, so the status resource shows none.

use crate::Settings;
use crate::source::{Remote, SourceError, StreamEvent};
use crate::sync::{FETCH_AHEAD, Mirror, SyncError};
use crate::table;
use domain::event::{Change, Digest};
use domain::merkle::Hash;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};

/// Paths asked for in one page of a listing (the reference's most).
const PAGE: u16 = 1000;

/// One run for a plain source: copy by listing unless a completed walk is recorded,
/// then follow the stream until it fails.
pub(crate) async fn run(mirror: &Mirror<'_>, settings: &Settings) -> Result<(), SyncError> {
    let store = &mirror.state.store;
    let user = mirror.source.user.clone();
    let local = |e: sqlx::Error| SyncError::Local(e.to_string());
    let Some(row) = table::get(store, &user).await.map_err(local)? else {
        return Ok(());
    };
    mirror.ensure_user().await?;
    let mut cursor = row.cursor;
    if row.last_sync_us.is_none() {
        if row.cursor == 0 {
            table::set_state(store, &user, "copying", None)
                .await
                .map_err(local)?;
        }
        cursor = cursor.max(copy(mirror, true).await?);
    }
    let events = mirror.source.events(cursor).await?;
    futures::pin_mut!(events);
    let mut anti_entropy = tokio::time::interval(settings.anti_entropy);
    anti_entropy.tick().await;
    // Whether the source marks the last frame of each event with `id:` (ours: a
    // frame without one is part of an event; the reference never sends one: each
    // frame is a whole event).
    let mut ids = false;
    loop {
        tokio::select! {
            next = events.next() => {
                let event = next.unwrap_or_else(|| {
                    Err(SourceError::Unreachable("the event stream ended".into()))
                })?;
                ids |= event.ends_event;
                let refused = match apply(mirror, &event).await {
                    Ok(applied) => {
                        // A frame of ours without `id:` is one of several of its log
                        // event: resume at the event before, which replays it whole.
                        let resume = match event.ends_event || !ids {
                            true => event.seq,
                            false => event.seq.saturating_sub(1),
                        };
                        let applied = u64::from(applied);
                        table::checkpoint(store, &user, resume, (None, None), applied)
                            .await
                            .map_err(local)?;
                        continue;
                    }
                    Err(SyncError::Source(SourceError::Refused(text))) => text,
                    Err(e) => return Err(e),
                };
                // A refused content is not copied and not waited for: the stream goes
                // on, the error stays visible until the next event, and the next walk
                // tries the path again.
                tracing::warn!(user, error = %refused, "mirror refused a file");
                table::checkpoint(store, &user, event.seq.saturating_sub(1), (None, None), 0)
                    .await
                    .map_err(local)?;
                table::set_state(store, &user, "following", Some(&refused))
                    .await
                    .map_err(local)?;
            }
            _ = anti_entropy.tick() => {
                copy(mirror, false).await?;
            }
        }
    }
}

/// Walks both trees (the private one with the grant) and records the walk; returns
/// the primary's newest sequence read before it (`contents`: the first copy, whose
/// stream starts there) or 0 (anti-entropy, which leaves the cursor alone).
async fn copy(mirror: &Mirror<'_>, contents: bool) -> Result<u64, SyncError> {
    let start = match contents {
        true => mirror.source.newest_seq().await?,
        false => 0,
    };
    let mut applied = 0;
    for private in [false, true] {
        if private && !mirror.source.has_private() {
            continue;
        }
        applied += walk(mirror, private, contents).await?;
    }
    table::listed(&mirror.state.store, &mirror.source.user, start, applied)
        .await
        .map_err(SyncError::local)?;
    Ok(start)
}

/// Compares one tree with the primary's listing page by page (module docs, 1 and 3);
/// returns the changes appended. `contents`: every listed file is read (conditionally
/// on the hash here); otherwise only the ones missing here.
async fn walk(mirror: &Mirror<'_>, private: bool, contents: bool) -> Result<u64, SyncError> {
    let dir = if private { "/priv/" } else { "/pub/" };
    let store = &mirror.state.store;
    let mut after: Option<String> = None;
    let mut applied = 0;
    let mut first_error = None;
    loop {
        let page = mirror.source.list(private, after.as_deref(), PAGE).await?;
        let last_page = page.len() < usize::from(PAGE);
        let upto = match last_page {
            true => None,
            false => page.last().cloned(),
        };
        // Read before the entries the changes are decided on (`Mirror::file_seq`).
        let mut last = mirror.file_seq().await?;
        let here = store
            .entries_between(&mirror.user, dir, after.as_deref(), upto.as_deref())
            .await
            .map_err(SyncError::local)?;
        let listed: HashSet<&str> = page.iter().map(String::as_str).collect();
        let held: HashMap<&str, Hash> = here
            .iter()
            .map(|e| (e.path.as_str(), e.content_hash))
            .collect();
        // Deletions first: a path that became a directory there (or the reverse) is
        // then free here when its new form is appended.
        let mut changes: Vec<Change> = here
            .iter()
            .filter(|e| !listed.contains(e.path.as_str()))
            .map(|e| Change::FileDeleted {
                path: e.path.clone(),
            })
            .collect();
        let wanted: Vec<(String, Option<Hash>)> = page
            .iter()
            .filter(|path| contents || !held.contains_key(path.as_str()))
            .map(|path| (path.clone(), held.get(path.as_str()).copied()))
            .collect();
        let reads = futures::stream::iter(wanted)
            .map(|(path, held)| async move { read(mirror, &path, held.as_ref()).await })
            .buffered(FETCH_AHEAD);
        futures::pin_mut!(reads);
        while let Some(read) = reads.next().await {
            match read {
                Ok(Some(change)) => changes.push(change),
                Ok(None) => {}
                Err(SyncError::Local(e)) => return Err(SyncError::Local(e)),
                Err(e) => {
                    tracing::warn!(user = %mirror.source.user, error = %e, "mirror: a file was not copied");
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut newest = None;
        for change in changes {
            last = mirror.append_unwaited(change, 0, last).await?;
            newest = Some(last);
            applied += 1;
        }
        if let Some(seq) = newest {
            mirror.wait(seq).await?;
        }
        if last_page {
            break;
        }
        after = upto;
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(applied),
    }
}

/// Reads the primary's current content of `path` unless it is `held` here: the
/// change that makes the copy here current, or `None` (current already, or gone
/// there: its DEL event or the next walk removes it).
async fn read(
    mirror: &Mirror<'_>,
    path: &str,
    held: Option<&Hash>,
) -> Result<Option<Change>, SyncError> {
    let (content_type, response) = match mirror.source.file_since(path, held).await? {
        Remote::Missing | Remote::Unchanged => return Ok(None),
        Remote::Body(content_type, response) => (content_type, response),
    };
    let claimed = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| blobs::BlobHash::from_base64(v.trim_matches('"')).ok());
    let length = response.content_length();
    let stored = mirror.store_body(path, response).await?;
    if let Some(claimed) = claimed
        && claimed != stored.hash
    {
        return Err(SyncError::refused(format!(
            "refused {path} from the primary: its content does not match its ETag {} (got {})",
            claimed.to_base64(),
            stored.hash.to_base64()
        )));
    }
    if length.is_some_and(|n| n != stored.size) {
        return Err(SyncError::refused(format!(
            "refused {path} from the primary: {} bytes, its Content-Length says {}",
            stored.size,
            length.unwrap_or_default()
        )));
    }
    if held == Some(&stored.hash.0) {
        return Ok(None); // a primary that ignores If-None-Match
    }
    Ok(Some(Change::FilePut {
        path: path.to_owned(),
        content_hash: Digest(stored.hash.0),
        size: stored.size,
        content_type,
    }))
}

/// Applies one event of the primary's stream if the copy here differs; true when a
/// change was appended.
async fn apply(mirror: &Mirror<'_>, event: &StreamEvent) -> Result<bool, SyncError> {
    let last = mirror.file_seq().await?;
    let here = mirror
        .state
        .store
        .entry(&mirror.user, &event.path)
        .await
        .map_err(SyncError::local)?;
    let change = if event.put {
        let held = here.as_ref().map(|e| e.content_hash);
        if held.is_some() && held == event.content_hash {
            return Ok(false);
        }
        // The current content, which may be newer than the event's: its own event
        // then finds it here.
        match read(mirror, &event.path, held.as_ref()).await? {
            Some(change) => change,
            None => return Ok(false),
        }
    } else {
        if here.is_none() {
            return Ok(false);
        }
        Change::FileDeleted {
            path: event.path.clone(),
        }
    };
    mirror.append(change, event.seq, last).await?;
    Ok(true)
}
