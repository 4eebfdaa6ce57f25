//! `homeserver reseed`: re-create a lost log from the projections.
//!
//! When the log is gone (NATS lost its data, the stream was deleted) but Postgres is
//! intact, the projections are the best record of the state. They are re-stated as
//! events (`store::reseed`), each marked with [`Origin::Reseed`] so the feed, mirrors
//! and indexers can tell a re-statement from a write, into a stream whose first
//! sequence comes right after the projections' checkpoint: feed cursors and the
//! projections' positions keep their meaning, nothing is renumbered, and the history
//! the projections hold (the feed, file versions) stays. The projections then follow
//! the new log: projecting the re-stated events changes no file and no Merkle root
//! (checked at the end), and only moves every user's sequences into the new log.
//!
//! Steps, each safe to repeat: refuse unless the log is mismatched; discard an
//! unfinished earlier re-seed (or, with `replace`, whatever the stream holds); append
//! the re-stated events; record the new log; project; compare roots. A crash before
//! the new log is recorded leaves the projections untouched and the next run starts
//! over; after it, the projector finishes the projection on its own.

use crate::{ProjectorConfig, ProjectorError, apply_until, pairing, progress_bar};
use domain::event::Origin;
use domain::{Event, EventSeq, PublicKey};
use log::EventLog;
use log::identity::Pairing;
use std::collections::BTreeMap;
use store::{Progress, Store};

/// Entries re-stated per query.
const PAGE: i64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct ReseedReport {
    /// The lost log, as the projections had recorded it.
    pub previous: String,
    pub users: u64,
    pub entries: u64,
    /// The new log's first and last re-stated event.
    pub first: EventSeq,
    pub last: EventSeq,
    pub seconds: f64,
    /// Trees (user, `pub`/`priv`) compared before and after, and those that differ.
    pub trees_compared: u64,
    pub trees_differing: Vec<String>,
}

fn refused(text: String) -> ProjectorError {
    ProjectorError::Refused(text)
}

/// Re-seeds the log of `log` from `store` (see the module docs); `homeserver` is the
/// key operator events belong to.
pub async fn reseed(
    log: &EventLog,
    store: &Store,
    homeserver: &PublicKey,
    replace: bool,
    show_progress: bool,
) -> Result<ReseedReport, ProjectorError> {
    let started = std::time::Instant::now();
    match pairing::check(log, store).await? {
        Pairing::Mismatched(_) => {}
        Pairing::Paired | Pairing::Unchecked => {
            return Err(refused(format!(
                "the log ({}) is the one the projections were built from: there is nothing \
                 to re-seed",
                log.config().stream
            )));
        }
    }
    let recorded = store.recorded_log().await?.ok_or_else(|| {
        refused("the projections never recorded a log: start the server to adopt one".into())
    })?;
    let previous = recorded.identity.to_string();
    let checkpoint = store.furthest_checkpoint().await?.seq;
    let (current, head) = log.identity().await?;
    if head > 0 && !replace && !is_unfinished_reseed(log, current, &previous).await? {
        return Err(refused(format!(
            "stream {} holds events up to {head} that are not the projections' log; re-seeding \
             discards them: run again with --replace-stream if that is intended",
            log.config().stream
        )));
    }

    let events = restate(store, homeserver, &previous, show_progress).await?;
    let before = roots(store).await?;
    let first = EventSeq(checkpoint + 1);
    log.recreate_stream(first).await?;
    let bar = progress_bar(show_progress, "appending", "events");
    bar.set_length(events.len() as u64);
    let last = log.append_in_order(&events, &|n| bar.inc(n)).await?;
    bar.finish_and_clear();

    let (identity, _) = log.identity().await?;
    store.adopt_reseeded_log(&identity, last, &previous).await?;
    log.set_pairing(Pairing::Paired);
    tracing::info!(log = %identity, first = first.0, last = last.0, "log re-seeded");

    if last >= first {
        let bar = progress_bar(show_progress, "projecting", "events");
        bar.set_length(events.len() as u64);
        let count = |n: u64| bar.inc(n);
        apply_until(
            log,
            store,
            &Progress::new(),
            &ProjectorConfig {
                batch_max: 2000,
                ..ProjectorConfig::default()
            },
            first,
            Some((last, &count)),
        )
        .await?;
        bar.finish_and_clear();
    }
    let after = roots(store).await?;
    let trees_differing = before
        .iter()
        .filter(|(tree, root)| after.get(*tree) != Some(root))
        .map(|(tree, _)| tree.clone())
        .collect();
    let size = |kind: &str| events.iter().filter(|e| e.change.kind() == kind).count() as u64;
    Ok(ReseedReport {
        previous,
        users: size("user_signed_up"),
        entries: size("file_put"),
        first,
        last,
        seconds: started.elapsed().as_secs_f64(),
        trees_compared: before.len() as u64,
        trees_differing,
    })
}

/// Whether the stream's first event is a re-statement of `previous`: a re-seed that
/// stopped before it was recorded, safe to discard.
async fn is_unfinished_reseed(
    log: &EventLog,
    current: domain::log_identity::LogIdentity,
    previous: &str,
) -> Result<bool, ProjectorError> {
    let Some(first) = current.first else {
        return Ok(true);
    };
    let event = log.event_at(EventSeq(first.seq)).await?;
    Ok(matches!(
        event.event.origin,
        Some(Origin::Reseed { previous_log }) if previous_log == previous
    ))
}

/// The projections as events: signup tokens, then per user its account and its files.
async fn restate(
    store: &Store,
    homeserver: &PublicKey,
    previous: &str,
    show_progress: bool,
) -> Result<Vec<Event>, ProjectorError> {
    let mut snapshot = store.reseed_snapshot().await?;
    let size = snapshot.size().await?;
    let bar = progress_bar(show_progress, "reading", "entries");
    bar.set_length(size.entries);
    let mut restated = snapshot.signup_tokens(homeserver).await?;
    for user in snapshot.users().await? {
        restated.extend(snapshot.account(&user).await?);
        let mut after: Option<String> = None;
        loop {
            let page = snapshot.files(&user, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = match &last.change {
                domain::event::Change::FilePut { path, .. } => Some(path.clone()),
                _ => None,
            };
            bar.inc(page.len() as u64);
            let full = page.len() as i64 == PAGE;
            restated.extend(page);
            if !full {
                break;
            }
        }
        restated.extend(snapshot.dav(&user).await?);
    }
    bar.finish_and_clear();
    let origin = Origin::Reseed {
        previous_log: previous.to_string(),
    };
    Ok(restated
        .into_iter()
        .map(|r| {
            let id = format!("reseed-{}", uuid::Uuid::new_v4().simple());
            Event::new(r.user, r.ts, id, r.change).with_origin(origin.clone())
        })
        .collect())
}

/// Every user's public and private Merkle root, hex, by `<user> pub|priv`.
async fn roots(store: &Store) -> Result<BTreeMap<String, String>, ProjectorError> {
    let mut out = BTreeMap::new();
    for user in store.user_keys().await? {
        let user = user.to_z32();
        for (name, private) in [("pub", false), ("priv", true)] {
            let root = store.merkle_root(&user, private).await?;
            out.insert(
                format!("{user} {name}"),
                domain::merkle::root_hex(root.root),
            );
        }
    }
    Ok(out)
}
