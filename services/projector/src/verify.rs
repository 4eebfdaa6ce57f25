//! `homeserver verify <user>`: recomputes a user's Merkle trees from the entries table
//! and, independently, from the user's file events in the log, and checks that both
//! agree with the roots the projector stored and that the stored nodes hold exactly
//! the entries (docs/merkle.md).

use crate::ProjectorError;
use domain::event::{Change, SubjectFamily, concurrency_subject};
use domain::merkle::{self, Hash, MemStore};
use domain::{EventSeq, PublicKey};
use futures::StreamExt;
use log::EventLog;
use std::collections::BTreeMap;
use std::time::Duration;
use store::Store;

/// How long to wait for the next event of the user before deciding the log is missing
/// events the projections have (which is then reported, not waited on forever).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The roots of one tree as computed three ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeCheck {
    pub entries: usize,
    pub stored: Option<Hash>,
    pub from_entries: Option<Hash>,
    pub from_log: Option<Hash>,
    /// The stored nodes, walked from the stored root, give exactly the entries.
    pub nodes_complete: bool,
}

impl TreeCheck {
    pub fn ok(&self) -> bool {
        self.stored == self.from_entries
            && self.from_entries == self.from_log
            && self.nodes_complete
    }
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The user's last projected file event: the log was replayed up to it.
    pub file_seq: u64,
    pub events: usize,
    pub public: TreeCheck,
    pub private: TreeCheck,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.public.ok() && self.private.ok()
    }
}

/// Verifies `user`'s trees; `None` if the user does not exist.
pub async fn verify(
    log: &EventLog,
    store: &Store,
    user: &PublicKey,
) -> Result<Option<VerifyReport>, ProjectorError> {
    let owner = user.to_z32();
    let Some(snapshot) = store.merkle_snapshot(&owner).await? else {
        return Ok(None);
    };

    // A key whose account was deleted and signed up again: the log still holds the
    // old account's file events, which the deletion ended. Replay after it.
    let deleted_at = last_account_deletion(log, store, user).await?;
    // Replay the user's file events up to what the snapshot has projected.
    let mut replayed: BTreeMap<String, Hash> = BTreeMap::new();
    let mut events = 0;
    if snapshot.file_seq > deleted_at {
        let filter = concurrency_subject(&log.config().subject_prefix, SubjectFamily::Files, user);
        let mut stream = Box::pin(log.read(EventSeq(1), Some(filter)).await?);
        loop {
            let next = tokio::time::timeout(READ_TIMEOUT, stream.next()).await;
            let Ok(Some(logged)) = next else { break };
            let logged = logged?;
            if logged.seq.0 > snapshot.file_seq {
                break;
            }
            if logged.seq.0 <= deleted_at {
                continue;
            }
            events += 1;
            match logged.event.change {
                Change::FilePut {
                    path, content_hash, ..
                } => {
                    replayed.insert(path, content_hash.0);
                }
                Change::FileDeleted { path } => {
                    replayed.remove(&path);
                }
                Change::TreeDeleted { path } => remove_tree(&mut replayed, &path),
                Change::TreeCopied {
                    from,
                    to,
                    moved,
                    shallow,
                } => {
                    let copied: Vec<(String, Hash)> = replayed
                        .iter()
                        .filter(|(path, _)| !shallow && (**path == from || path.starts_with(&from)))
                        .filter(|(path, _)| from.ends_with('/') || **path == from)
                        .map(|(path, hash)| (format!("{to}{}", &path[from.len()..]), *hash))
                        .collect();
                    remove_tree(&mut replayed, &to);
                    if moved {
                        remove_tree(&mut replayed, &from);
                    }
                    replayed.extend(copied);
                }
                _ => {}
            }
            if logged.seq.0 == snapshot.file_seq {
                break;
            }
        }
    }
    let (log_private, log_public): (Vec<_>, Vec<_>) = replayed
        .into_iter()
        .partition(|(path, _)| store::merkle::is_private_path(path));

    let public = check_tree(
        store,
        &owner,
        false,
        &snapshot.public,
        &log_public,
        snapshot.public_root.root,
    )
    .await?;
    let private = check_tree(
        store,
        &owner,
        true,
        &snapshot.private,
        &log_private,
        snapshot.private_root.root,
    )
    .await?;
    Ok(Some(VerifyReport {
        file_seq: snapshot.file_seq,
        events,
        public,
        private,
    }))
}

async fn check_tree(
    store: &Store,
    owner: &str,
    private: bool,
    entries: &[(String, Hash)],
    log_entries: &[(String, Hash)],
    stored: Option<Hash>,
) -> Result<TreeCheck, ProjectorError> {
    let nodes = store.merkle_all_nodes(owner, private).await?;
    Ok(TreeCheck {
        entries: entries.len(),
        stored,
        from_entries: merkle::build(entries, &mut MemStore::default()),
        from_log: merkle::build(log_entries, &mut MemStore::default()),
        nodes_complete: merkle::entries(&nodes, stored).is_ok_and(|walked| walked == entries),
    })
}

/// The sequence of the user's last `account_deleted` (0 if none), read from the user's
/// account subject up to its projected end.
async fn last_account_deletion(
    log: &EventLog,
    store: &Store,
    user: &PublicKey,
) -> Result<u64, ProjectorError> {
    let Some(row) = store.user(user).await? else {
        return Ok(0);
    };
    let filter = concurrency_subject(&log.config().subject_prefix, SubjectFamily::Account, user);
    let mut stream = Box::pin(log.read(EventSeq(1), Some(filter)).await?);
    let mut last = 0;
    loop {
        let next = tokio::time::timeout(READ_TIMEOUT, stream.next()).await;
        let Ok(Some(logged)) = next else { break };
        let logged = logged?;
        if logged.seq > row.acct_seq {
            break;
        }
        if matches!(logged.event.change, Change::AccountDeleted { .. }) {
            last = logged.seq.0;
        }
        if logged.seq == row.acct_seq {
            break;
        }
    }
    Ok(last)
}

/// What a folder event removes from a replayed tree: the file at `path` (without its
/// slash) and everything under the folder `path`.
fn remove_tree(replayed: &mut BTreeMap<String, Hash>, path: &str) {
    let file = path.trim_end_matches('/');
    let dir = format!("{file}/");
    replayed.retain(|p, _| p != file && !p.starts_with(&dir));
}
