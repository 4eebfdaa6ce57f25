//! Bringing the mirror's copy of one tree to the primary's signed root, by diff.
//!
//! The same code makes the initial copy, catches up after a restart or an outage, and
//! repairs drift (anti-entropy): it asks the primary for its signed root, diffs the
//! local tree against it (one round trip from a root the primary still holds, else node
//! by node with `domain::merkle::DiffSession`, which fetches only the nodes on the paths
//! to the differences and checks each by its hash), fetches the content of each
//! changed path and checks it against the value the signed tree holds for it, then
//! appends one ordinary file event per change, marked as mirrored. Content that does
//! not hash to its value is never appended, so nothing of it is ever served; the
//! other paths are still copied and the first bad one is reported. At the end the local
//! root must equal the signed one.
//!
//! Nothing grows with the user in one step: a diff is bounded by the differences, the
//! contents are streamed into the blob store a few at a time, and each change is one
//! small event, so a copy cut off anywhere resumes from what is already here.

use crate::source::{SignedRoot, Source, SourceError};
use api::AppState;
use domain::event::{Change, Digest, Origin, UserLimits};
use domain::merkle::{self, DiffSession, Hash, MemStore, Node};
use domain::{Event, EventSeq, PublicKey};
use futures::StreamExt;
use log::{AppendError, Expected};
use std::time::Duration;

/// Contents fetched ahead of the in-order appends.
pub(crate) const FETCH_AHEAD: usize = 8;

/// How long the mirror waits for its own event to be projected here.
const PROJECTION_WAIT: Duration = Duration::from_secs(30);

/// Why a sync or an applied event failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// This homeserver's own dependencies (Postgres, NATS, blobs).
    #[error("this homeserver: {0}")]
    Local(String),
}

impl SyncError {
    pub(crate) fn local(e: impl std::fmt::Display) -> Self {
        SyncError::Local(e.to_string())
    }
    pub(crate) fn refused(text: String) -> Self {
        SyncError::Source(SourceError::Refused(text))
    }
}

/// What fetching one file's content found.
pub enum Fetched {
    /// Stored here, its hash the expected one: `(content type, size)`.
    Stored(String, u64),
    /// The primary's file is another version now (or gone): diff again.
    Changed,
}

/// One mirrored user: the primary, and where to append here.
pub struct Mirror<'a> {
    pub state: &'a AppState,
    pub source: &'a Source,
    pub user: PublicKey,
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pub applied: u64,
    /// The signed root reached, hex, and its sequence.
    pub root: String,
    pub seq: u64,
}

impl Mirror<'_> {
    fn z32(&self) -> String {
        self.user.to_z32()
    }

    /// This homeserver's root of one of the user's trees.
    pub async fn local_root(&self, private: bool) -> Result<Option<Hash>, SyncError> {
        let root = self.state.store.merkle_root(&self.z32(), private).await;
        Ok(root.map_err(SyncError::local)?.root)
    }

    /// Creates the user's account here if it has none (a mirrored account: no
    /// sessions, every write refused by the guard).
    pub async fn ensure_user(&self) -> Result<(), SyncError> {
        let store = &self.state.store;
        if store
            .user(&self.user)
            .await
            .map_err(SyncError::local)?
            .is_some()
        {
            return Ok(());
        }
        let after = store
            .deleted_account_seq(&self.user)
            .await
            .map_err(SyncError::local)?
            .unwrap_or(EventSeq(0));
        let change = Change::UserSignedUp {
            signup_token: None,
            limits: UserLimits::default(),
            cookie_session: None,
            pop_nonce: None,
        };
        let event = self.event(change, 0);
        match self
            .state
            .log
            .append(&event, Expected::LastSeq(after))
            .await
        {
            Ok(seq) => self.wait(seq).await,
            // Created meanwhile (another process of this homeserver).
            Err(AppendError::Conflict { .. }) => Ok(()),
            Err(AppendError::Log(e)) => Err(SyncError::local(e)),
        }
    }

    fn event(&self, change: Change, source_seq: u64) -> Event {
        let request_id = format!("mirror-{}", uuid::Uuid::now_v7());
        Event::new(self.user.clone(), api::now_micros(), request_id, change).with_origin(
            Origin::Mirror {
                primary: self.source.key.to_z32(),
                source_seq,
            },
        )
    }

    pub(crate) async fn wait(&self, seq: EventSeq) -> Result<(), SyncError> {
        if self.state.progress.wait_for(seq, PROJECTION_WAIT).await {
            Ok(())
        } else {
            Err(SyncError::Local(format!(
                "event {seq} was appended but not projected within {} s",
                PROJECTION_WAIT.as_secs()
            )))
        }
    }

    /// The user's last file event here as projected. Read it *before* the local root
    /// a change is decided on, and append after it: an event of this user that is in
    /// the log but not yet projected (after a restart, the projector is still
    /// catching up) then makes the append conflict instead of being appended twice.
    pub async fn file_seq(&self) -> Result<EventSeq, SyncError> {
        let row = self.state.store.user(&self.user).await;
        Ok(row
            .map_err(SyncError::local)?
            .map_or(EventSeq(0), |r| r.file_seq))
    }

    /// Appends one mirrored file change expecting `last` to be the user's last file
    /// event, waits until it is projected, and returns its sequence (the next `last`).
    pub async fn append(
        &self,
        change: Change,
        source_seq: u64,
        last: EventSeq,
    ) -> Result<EventSeq, SyncError> {
        let seq = self.append_unwaited(change, source_seq, last).await?;
        self.wait(seq).await?;
        Ok(seq)
    }

    /// [`Mirror::append`] without waiting for the projection (a batch waits once, for
    /// its last event).
    pub async fn append_unwaited(
        &self,
        change: Change,
        source_seq: u64,
        last: EventSeq,
    ) -> Result<EventSeq, SyncError> {
        let event = self.event(change, source_seq);
        match self.state.log.append(&event, Expected::LastSeq(last)).await {
            Ok(seq) => Ok(seq),
            Err(AppendError::Conflict { current }) => {
                Err(SyncError::Source(SourceError::Unreachable(format!(
                    "the user's files here moved past event {last} (now {current:?}) while a \
                     change was prepared: synced again"
                ))))
            }
            Err(AppendError::Log(e)) => Err(SyncError::local(e)),
        }
    }

    /// Streams the primary's current content of `path` into the blob store and checks
    /// it hashes to `expected`. A body that does not, while the primary's own ETag
    /// says it is that version, is a corrupt source: refused, naming the path.
    pub async fn fetch(&self, path: &str, expected: &Hash) -> Result<Fetched, SyncError> {
        let Some((content_type, response)) = self.source.file(path).await? else {
            return Ok(Fetched::Changed);
        };
        let claimed = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| blobs::BlobHash::from_base64(v.trim_matches('"')).ok());
        if claimed.is_some_and(|c| c.0 != *expected) {
            return Ok(Fetched::Changed);
        }
        let stored = self.store_body(path, response).await?;
        if stored.hash.0 != *expected {
            return Err(SyncError::refused(format!(
                "refused {path} from the primary: its content does not match its hash {} in \
                 the primary's tree (got {})",
                hex::encode(expected),
                stored.hash.to_hex()
            )));
        }
        Ok(Fetched::Stored(content_type, stored.size))
    }

    /// Streams a file's body from the primary into the blob store; a body that
    /// breaks off is the primary's failure (retried), a store that fails is ours.
    pub(crate) async fn store_body(
        &self,
        path: &str,
        response: reqwest::Response,
    ) -> Result<blobs::StoredBlob, SyncError> {
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other));
        self.state
            .blobs
            .put_stream(body, None, path)
            .await
            .map_err(|e| match e {
                blobs::PutError::Body(e) => SyncError::Source(SourceError::Unreachable(format!(
                    "GET {path} broke off: {e}"
                ))),
                other => SyncError::local(other),
            })
    }

    /// The differences between the local tree and the primary's: one round trip from a
    /// root the primary still holds, else node by node. Returns them and the signed
    /// root they lead to.
    async fn differences(
        &self,
        private: bool,
        local: Option<Hash>,
    ) -> Result<(Vec<merkle::Difference>, SignedRoot), SyncError> {
        let signed = self.source.signed_root(private).await?;
        if local == signed.root {
            return Ok((Vec::new(), signed));
        }
        if local.is_some()
            && let Some(diff) = self.source.diff(private, local).await?
            && diff.complete
        {
            return Ok((diff.differences, diff.to));
        }
        // Node by node: the local tree's nodes are read from Postgres (cheap, local),
        // so only the primary's nodes that differ cross the wire.
        let mut nodes = MemStore::default();
        if local.is_some() {
            let query = store::export::PageQuery {
                private,
                cursor: None,
                limit: 1,
                max_bytes: 0,
                with_nodes: true,
            };
            let page = self
                .state
                .store
                .export_page(&self.z32(), &query)
                .await
                .map_err(SyncError::local)?;
            for bytes in page.map(|p| p.nodes).unwrap_or_default() {
                let node = Node::decode(&bytes).map_err(SyncError::local)?;
                nodes.insert(node);
            }
        }
        let mut session = DiffSession::new(&nodes, local, signed.root);
        while !session.wants().is_empty() {
            let wanted = session.wants().to_vec();
            let received = self.source.nodes(private, &wanted).await?;
            session
                .receive(&received)
                .map_err(|e| SyncError::refused(format!("a node from the primary: {e:?}")))?;
        }
        let differences = session
            .finish()
            .map_err(|e| SyncError::refused(format!("the primary's tree: {e:?}")))?;
        Ok((differences, signed))
    }

    /// Brings one tree to the primary's signed root (see the module docs).
    pub async fn sync_tree(&self, private: bool) -> Result<Synced, SyncError> {
        self.ensure_user().await?;
        let mut last = self.file_seq().await?;
        let local = self.local_root(private).await?;
        let (differences, target) = self.differences(private, local).await?;
        let mut synced = Synced {
            applied: 0,
            root: merkle::root_hex(target.root),
            seq: target.seq,
        };
        let mut first_error = None;
        let fetches = futures::stream::iter(differences)
            .map(|d| async move {
                let fetched = match &d.remote {
                    Some(hash) => Some(self.fetch(&d.key, hash).await),
                    None => None,
                };
                (d, fetched)
            })
            .buffered(FETCH_AHEAD);
        futures::pin_mut!(fetches);
        while let Some((difference, fetched)) = fetches.next().await {
            let path = difference.key;
            let change = match (difference.remote, fetched) {
                (None, _) => Change::FileDeleted { path },
                (Some(hash), Some(Ok(Fetched::Stored(content_type, size)))) => Change::FilePut {
                    path,
                    content_hash: Digest(hash),
                    size,
                    content_type,
                },
                (Some(_), Some(Ok(Fetched::Changed))) => {
                    // The primary moved on while we copied: the next round diffs again.
                    first_error.get_or_insert(SyncError::Source(SourceError::Unreachable(
                        format!("{path} changed on the primary during the copy"),
                    )));
                    continue;
                }
                (Some(_), Some(Err(e))) => {
                    if let SyncError::Local(_) = e {
                        return Err(e);
                    }
                    tracing::warn!(user = %self.z32(), error = %e, "mirror refused a file");
                    first_error.get_or_insert(e);
                    continue;
                }
                (Some(_), None) => continue,
            };
            last = self.append(change, target.seq, last).await?;
            synced.applied += 1;
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let here = self.local_root(private).await?;
        if here != target.root {
            return Err(SyncError::refused(format!(
                "after the sync the {} root here is {}, the primary's signed root is {}",
                if private { "private" } else { "public" },
                merkle::root_hex(here),
                synced.root
            )));
        }
        Ok(synced)
    }
}
