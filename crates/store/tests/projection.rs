//! The projection of the account events that carry more than one piece of state
//! (one request, one event): a cookie signup's session, the PoP nonces of a grant
//! signup and of a proof logout; the Merkle trees and their garbage collection. Needs
//! `DATABASE_URL` and `NATS_URL` (`make test`).

use domain::event::{Change, CookieSessionStart, Digest, UserLimits};
use domain::{Event, EventSeq, Keypair};
use hs_store::Store;

fn event(user: &Keypair, change: Change) -> Event {
    Event::new(user.public_key(), 1_700_000_000_000_000, "r".into(), change)
}

async fn store() -> Store {
    let env = testkit::TestEnv::new().await;
    let store = Store::connect(&env.database_url, 2).await.unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn a_cookie_signup_projects_the_user_its_session_and_the_token_id() {
    let store = store().await;
    let alice = Keypair::from_secret_key(&[1; 32]);
    let signup = Change::UserSignedUp {
        signup_token: None,
        limits: UserLimits::default(),
        cookie_session: Some(CookieSessionStart {
            secret_hash: Digest([5; 32]),
            capabilities: "/:rw".into(),
            auth_token_id: "authtoken:1:alice".into(),
        }),
        pop_nonce: None,
    };
    store
        .apply_batch("p", &[(EventSeq(1), event(&alice, signup))])
        .await
        .unwrap();

    let row = store.user(&alice.public_key()).await.unwrap().unwrap();
    assert_eq!(row.acct_seq, EventSeq(1));
    let session = store.cookie_session(&[5; 32]).await.unwrap().unwrap();
    assert_eq!(session.owner, alice.public_key().to_z32());
    assert_eq!(session.capabilities, "/:rw");
    assert!(store.nonce_used("authtoken:1:alice").await.unwrap());
}

#[tokio::test]
async fn grant_signup_and_proof_logout_use_up_their_nonces() {
    let store = store().await;
    let bob = Keypair::from_secret_key(&[2; 32]);
    let signup = Change::UserSignedUp {
        signup_token: None,
        limits: UserLimits::default(),
        cookie_session: None,
        pop_nonce: Some("signup-nonce".into()),
    };
    let revoked = Change::GrantRevoked {
        grant_id: "g".into(),
        pop_nonce: Some("logout-nonce".into()),
    };
    let bearer_revoked = Change::GrantRevoked {
        grant_id: "h".into(),
        pop_nonce: None,
    };
    store
        .apply_batch(
            "p",
            &[
                (EventSeq(1), event(&bob, signup)),
                (EventSeq(2), event(&bob, revoked)),
                (EventSeq(3), event(&bob, bearer_revoked)),
            ],
        )
        .await
        .unwrap();

    assert!(store.nonce_used("signup-nonce").await.unwrap());
    assert!(store.nonce_used("logout-nonce").await.unwrap());
    assert!(!store.nonce_used("other").await.unwrap());
    let row = store.user(&bob.public_key()).await.unwrap().unwrap();
    assert_eq!(row.acct_seq, EventSeq(3));
}

/// `grant-session-slots`: one bearer per slot, the slot's previous bearer and the
/// grant's expired ones ended by the event's own time, the issuance window counted,
/// and another user's event never touching the grant.
#[tokio::test]
async fn grant_sessions_keep_one_bearer_per_slot() {
    let store = store().await;
    let (dan, eve) = (
        Keypair::from_secret_key(&[4; 32]),
        Keypair::from_secret_key(&[5; 32]),
    );
    let t = 1_700_000_000u64;
    let signup = |_: &Keypair| Change::UserSignedUp {
        signup_token: None,
        limits: UserLimits::default(),
        cookie_session: None,
        pop_nonce: None,
    };
    let session = |token: u8, slot: Option<&str>, expires: u64| Change::GrantSessionCreated {
        grant_id: "g".into(),
        client_id: "app".into(),
        client_key: Keypair::from_secret_key(&[9; 32]).public_key(),
        capabilities: vec!["/:rw".into()],
        grant_issued_at: t,
        grant_expires_at: t + 86_400,
        token_hash: Digest([token; 32]),
        token_expires_at: expires,
        pop_nonce: format!("n{token}"),
        session_id: slot.map(str::to_owned),
    };
    let at = |user: &Keypair, secs: u64, change: Change| {
        Event::new(user.public_key(), secs * 1_000_000, "r".into(), change)
    };
    let events = [
        at(&dan, t, signup(&dan)),
        at(&eve, t, signup(&eve)),
        at(&dan, t, session(1, None, t + 3600)),
        at(&dan, t + 1, session(2, Some("a"), t + 10)),
        at(&dan, t + 2, session(3, Some("b"), t + 3600)),
        // Rotates slot b; slot a expired at t + 10, so this event (at t + 20) ends it.
        at(&dan, t + 20, session(4, Some("b"), t + 3600)),
        // Eve claims the same grant id: ignored, nothing of Dan's grant changes.
        at(&eve, t + 21, session(5, Some("b"), t + 3600)),
    ];
    let batch: Vec<(EventSeq, Event)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (EventSeq(i as u64 + 1), e.clone()))
        .collect();
    store.apply_batch("p", &batch).await.unwrap();
    // A redelivery changes nothing.
    store.apply_batch("p", &batch).await.unwrap();

    let slot_of = |token: u8| {
        let store = store.clone();
        async move {
            store
                .bearer_session(&[token; 32])
                .await
                .unwrap()
                .map(|s| s.session_id)
        }
    };
    assert_eq!(
        slot_of(1).await,
        Some(None),
        "the legacy slot keeps its bearer"
    );
    assert_eq!(
        slot_of(2).await,
        None,
        "expired by the time of a later issuance"
    );
    assert_eq!(slot_of(3).await, None, "rotated");
    assert_eq!(slot_of(4).await, Some(Some("b".into())));
    assert_eq!(
        slot_of(5).await,
        None,
        "another user's claim of the grant id"
    );

    let usage = store
        .grant_slot_usage("g", Some("b"), (t + 21) as i64)
        .await
        .unwrap();
    assert_eq!((usage.live_sessions, usage.slot_live), (2, true));
    let window = usage.window.unwrap();
    // Three issuances in the window that opened at t; the fourth (t + 20) is in it too.
    assert_eq!((window.start_us, window.count), (t * 1_000_000, 4));
    let fresh = store
        .grant_slot_usage("g", Some("c"), (t + 21) as i64)
        .await
        .unwrap();
    assert!(!fresh.slot_live);
    let none = store
        .grant_slot_usage("unknown", None, t as i64)
        .await
        .unwrap();
    assert_eq!(none, domain::session_slots::SlotUsage::default());

    // A later issuance, after the window closed, opens a new one.
    store
        .apply_batch(
            "p",
            &[(
                EventSeq(8),
                at(&dan, t + 61, session(6, Some("c"), t + 3600)),
            )],
        )
        .await
        .unwrap();
    let window = store
        .grant_slot_usage("g", None, (t + 61) as i64)
        .await
        .unwrap()
        .window
        .unwrap();
    assert_eq!((window.start_us, window.count), ((t + 61) * 1_000_000, 1));
}

fn put(path: &str, content: &[u8]) -> Change {
    Change::FilePut {
        path: path.into(),
        content_hash: Digest(*blake3::hash(content).as_bytes()),
        size: content.len() as u64,
        content_type: "text/plain".into(),
    }
}

/// The projector keeps each user's public and private Merkle trees equal to the tree
/// of the committed entries, across batches that reuse and rewrite nodes; proofs read
/// from the database verify against the stored root.
#[tokio::test]
async fn the_projector_maintains_the_merkle_trees_of_the_entries() {
    use domain::merkle;
    use std::collections::BTreeMap;

    let store = store().await;
    let carol = Keypair::from_secret_key(&[3; 32]);
    let owner = carol.public_key().to_z32();
    let signup = Change::UserSignedUp {
        signup_token: None,
        limits: UserLimits::default(),
        cookie_session: None,
        pop_nonce: None,
    };
    let mut seq = 1;
    store
        .apply_batch("p", &[(EventSeq(seq), event(&carol, signup))])
        .await
        .unwrap();

    let mut public = BTreeMap::new();
    let mut private = BTreeMap::new();
    // Three batches: create 300 files, rewrite and delete some, delete more.
    for round in 0..3u64 {
        let mut batch = Vec::new();
        for n in 0..300u64 {
            let (path, change) = match (round, n % 5) {
                (0, _) | (1, 1) => {
                    let content = format!("{round}-{n}");
                    let path = if n % 3 == 0 {
                        format!("/priv/notes/{n}.txt")
                    } else {
                        format!("/pub/example.com/{n}.txt")
                    };
                    (path.clone(), put(&path, content.as_bytes()))
                }
                (1, 2) | (2, 3) => {
                    let path = format!("/pub/example.com/{n}.txt");
                    (path.clone(), Change::FileDeleted { path })
                }
                _ => continue,
            };
            let model = if path.starts_with("/priv/") {
                &mut private
            } else {
                &mut public
            };
            match &change {
                Change::FilePut { content_hash, .. } => {
                    model.insert(path, content_hash.0);
                }
                _ => {
                    model.remove(&path);
                }
            }
            seq += 1;
            batch.push((EventSeq(seq), event(&carol, change)));
        }
        store.apply_batch("p", &batch).await.unwrap();
    }
    // An event for a user that does not exist writes no entry and moves no tree.
    let stranger = Keypair::from_secret_key(&[4; 32]);
    store
        .apply_batch(
            "p",
            &[(EventSeq(seq + 1), event(&stranger, put("/pub/x", b"x")))],
        )
        .await
        .unwrap();
    let none = store
        .merkle_root(&stranger.public_key().to_z32(), false)
        .await
        .unwrap();
    assert_eq!(none.root, None);

    for (is_private, model) in [(false, &public), (true, &private)] {
        let entries: Vec<(String, [u8; 32])> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut expected_nodes = merkle::MemStore::default();
        let expected = merkle::build(&entries, &mut expected_nodes);
        let root = store.merkle_root(&owner, is_private).await.unwrap();
        assert_eq!(root.root, expected, "private={is_private}");
        assert!(root.root.is_some());
        // Every node of the current tree is stored.
        let nodes = store.merkle_all_nodes(&owner, is_private).await.unwrap();
        assert_eq!(merkle::entries(&nodes, root.root).unwrap(), entries);
    }

    let present = "/pub/example.com/1.txt";
    let (root, proof) = store.merkle_proof(&owner, present).await.unwrap();
    assert_eq!(
        merkle::verify(root.root, present, &proof).unwrap(),
        public.get(present).copied()
    );
    let absent = "/pub/example.com/3.txt";
    let (root, proof) = store.merkle_proof(&owner, absent).await.unwrap();
    assert_eq!(merkle::verify(root.root, absent, &proof).unwrap(), None);
}

/// Every file event is a version of its path: the projector records a PUT's length
/// and type, the history lists newest first with when each version was replaced, and
/// the blob GC's reference check keeps exactly the versions within the retention.
#[tokio::test]
async fn file_events_are_versions_kept_for_the_retention() {
    use hs_store::versions::VersionRow;
    use std::time::Duration;

    let store = store().await;
    let dave = Keypair::from_secret_key(&[5; 32]);
    let signup = Change::UserSignedUp {
        signup_token: None,
        limits: UserLimits::default(),
        cookie_session: None,
        pop_nonce: None,
    };
    let at = |secs: u64, change: Change| {
        Event::new(dave.public_key(), secs * 1_000_000, "r".into(), change)
    };
    let path = "/pub/app/a.txt";
    store
        .apply_batch(
            "p",
            &[
                (EventSeq(1), at(100, signup)),
                (EventSeq(2), at(100, put(path, b"one"))),
                (EventSeq(3), at(200, put("/pub/app/b.txt", b"b"))),
                (EventSeq(4), at(300, put(path, b"two!"))),
                (
                    EventSeq(5),
                    at(400, Change::FileDeleted { path: path.into() }),
                ),
            ],
        )
        .await
        .unwrap();

    let owner = dave.public_key();
    let all = store.versions(&owner, path, None, 10).await.unwrap();
    let hash = |c: &[u8]| Some(*blake3::hash(c).as_bytes());
    let version = |seq, content: Option<&[u8]>, created: u64, replaced: Option<u64>| VersionRow {
        seq: EventSeq(seq),
        deleted: content.is_none(),
        content_hash: content.and_then(hash),
        content_length: content.map(|c| c.len() as u64),
        content_type: content.map(|_| "text/plain".into()),
        created_us: created * 1_000_000,
        replaced_us: replaced.map(|s| s * 1_000_000),
    };
    assert_eq!(
        all,
        [
            version(5, None, 400, None),
            version(4, Some(b"two!"), 300, Some(400)),
            version(2, Some(b"one"), 100, Some(300)),
        ]
    );
    assert_eq!(
        store
            .versions(&owner, path, Some(EventSeq(5)), 1)
            .await
            .unwrap(),
        all[1..2]
    );
    assert_eq!(
        store.version(&owner, path, EventSeq(2)).await.unwrap(),
        Some(all[2].clone())
    );
    assert_eq!(
        store.version(&owner, path, EventSeq(3)).await.unwrap(),
        None
    );
    assert!(store.has_versions(&owner, path).await.unwrap());
    assert!(!store.has_versions(&owner, "/pub/app/c.txt").await.unwrap());

    // At t = 450 s with a retention of 100 s: version 4 (replaced at 400) is readable,
    // version 2 (replaced at 300) is not; b.txt is current.
    let now = 450 * 1_000_000;
    let retention = Duration::from_secs(100);
    assert!(all[1].readable(now, retention) && !all[2].readable(now, retention));
    assert!(
        !all[0].readable(now, retention),
        "a deletion has no content"
    );
    let hashes = [b"one" as &[u8], b"two!", b"b", b"never"].map(|c| hash(c).unwrap());
    let mut kept = store
        .referenced_hashes(&hashes, retention, now)
        .await
        .unwrap();
    kept.sort();
    let mut expected = vec![hashes[1], hashes[2]];
    expected.sort();
    assert_eq!(kept, expected);
}

mod merkle_gc {
    //! Garbage collection of Merkle nodes: what is kept, what goes, and a collection
    //! racing with the projector.

    use super::{event, put};
    use domain::event::{Change, UserLimits};
    use domain::merkle::{self, Hash, MemStore};
    use domain::{EventSeq, Keypair};
    use hs_store::Store;
    use hs_store::merkle_gc::GcScope;
    use std::collections::{BTreeMap, HashSet};
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

    async fn store() -> Store {
        let env = testkit::TestEnv::new().await;
        let store = Store::connect(&env.database_url, 4).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    fn signup() -> Change {
        Change::UserSignedUp {
            signup_token: None,
            limits: UserLimits::default(),
            cookie_session: None,
            pop_nonce: None,
        }
    }

    /// The hashes of the nodes reachable from `root` in `nodes` (panics if one is
    /// missing: the tree must be complete).
    fn reachable(nodes: &MemStore, root: Option<Hash>) -> HashSet<Hash> {
        let mut seen = HashSet::new();
        let mut todo: Vec<Hash> = root.into_iter().collect();
        while let Some(hash) = todo.pop() {
            if seen.insert(hash) {
                let node = nodes.nodes.get(&hash).expect("reachable node is stored");
                todo.extend(node.children());
            }
        }
        seen
    }

    fn stored(nodes: &MemStore) -> HashSet<Hash> {
        nodes.nodes.keys().copied().collect()
    }

    fn as_entries(model: &BTreeMap<String, Hash>) -> Vec<(String, Hash)> {
        model.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// After many overwrites a collection leaves exactly the nodes of the current root
    /// and of the roots replaced within the grace period; older roots are gone, and the
    /// trees (public and private) still hold exactly the entries.
    #[tokio::test]
    async fn collection_keeps_exactly_the_current_and_recently_replaced_roots() {
        let store = store().await;
        let dave = Keypair::from_secret_key(&[5; 32]);
        let owner = dave.public_key().to_z32();
        let mut seq = 1;
        store
            .apply_batch("p", &[(EventSeq(seq), event(&dave, signup()))])
            .await
            .unwrap();
        let mut models: [BTreeMap<String, Hash>; 2] = Default::default();
        let mut batch = Vec::new();
        for n in 0..200 {
            let path = if n % 4 == 0 {
                format!("/priv/app/{n}.txt")
            } else {
                format!("/pub/app/{n}.txt")
            };
            let change = put(&path, format!("v0-{n}").as_bytes());
            if let Change::FilePut { content_hash, .. } = &change {
                models[path.starts_with("/priv/") as usize].insert(path.clone(), content_hash.0);
            }
            seq += 1;
            batch.push((EventSeq(seq), event(&dave, change)));
        }
        store.apply_batch("p", &batch).await.unwrap();
        let first_public = store.merkle_root(&owner, false).await.unwrap().root;

        // 30 batches of one overwrite each, alternating trees: every batch replaces a root.
        let mut previous = [None, None];
        for round in 0..30u32 {
            let private = round % 2 == 1;
            let n = if private {
                4 * (round % 7)
            } else {
                4 * round + 1
            };
            let path = if private {
                format!("/priv/app/{n}.txt")
            } else {
                format!("/pub/app/{n}.txt")
            };
            previous[private as usize] = Some(models[private as usize].clone());
            let change = put(&path, format!("v{round}").as_bytes());
            if let Change::FilePut { content_hash, .. } = &change {
                models[private as usize].insert(path, content_hash.0);
            }
            seq += 1;
            store
                .apply_batch("p", &[(EventSeq(seq), event(&dave, change))])
                .await
                .unwrap();
        }

        // Every replaced root but the last of each tree left the grace period long ago.
        let mut recent = [None, None];
        for private in [false, true] {
            let model = previous[private as usize].as_ref().unwrap();
            recent[private as usize] = merkle::build(&as_entries(model), &mut MemStore::default());
        }
        let recent_roots: Vec<Vec<u8>> = recent.iter().flatten().map(|h| h.to_vec()).collect();
        sqlx::query(
            "UPDATE merkle_root_history SET replaced_us = replaced_us - 7200000000
             WHERE owner = $1 AND root <> ALL($2)",
        )
        .bind(&owner)
        .bind(&recent_roots)
        .execute(store.pool())
        .await
        .unwrap();
        let before = store
            .merkle_all_nodes(&owner, false)
            .await
            .unwrap()
            .nodes
            .len()
            + store
                .merkle_all_nodes(&owner, true)
                .await
                .unwrap()
                .nodes
                .len();

        let report = store.merkle_gc(HOUR, GcScope::Due).await.unwrap();
        assert_eq!(report.trees, 2);
        assert_eq!(report.failed, 0);
        assert!(report.deleted > 0);
        let mut after = 0;
        for private in [false, true] {
            let nodes = store.merkle_all_nodes(&owner, private).await.unwrap();
            after += nodes.nodes.len();
            let current = store.merkle_root(&owner, private).await.unwrap().root;
            let model = &models[private as usize];
            assert_eq!(merkle::entries(&nodes, current).unwrap(), as_entries(model));
            // The root replaced within the grace period is still whole.
            let old = previous[private as usize].as_ref().unwrap();
            let recent_root = recent[private as usize];
            assert_eq!(
                merkle::entries(&nodes, recent_root).unwrap(),
                as_entries(old)
            );
            let mut keep = reachable(&nodes, current);
            keep.extend(reachable(&nodes, recent_root));
            assert_eq!(stored(&nodes), keep, "private={private}");
        }
        assert_eq!(before - after, report.deleted as usize);
        assert_eq!(report.kept as usize, after);
        // A root replaced long ago is gone.
        let public = store.merkle_all_nodes(&owner, false).await.unwrap();
        assert!(merkle::entries(&public, first_public).is_err());

        // Nothing is due any more; the history holds the two recent roots only.
        let again = store.merkle_gc(HOUR, GcScope::Due).await.unwrap();
        assert_eq!((again.trees, again.deleted), (0, 0));
        let history: i64 = sqlx::query_scalar("SELECT count(*) FROM merkle_root_history")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(history, 2);

        // Without a grace period only the current roots remain.
        let report = store.merkle_gc(Duration::ZERO, GcScope::Due).await.unwrap();
        assert_eq!((report.trees, report.pruned), (2, 2));
        for private in [false, true] {
            let nodes = store.merkle_all_nodes(&owner, private).await.unwrap();
            let current = store.merkle_root(&owner, private).await.unwrap().root;
            assert_eq!(stored(&nodes), reachable(&nodes, current));
        }
    }

    /// Collections without a grace period run back to back while batches rewrite two
    /// users' trees with recurring contents, so batches keep re-creating nodes that a
    /// collection just deleted: every tree still holds exactly its entries, and a last
    /// collection leaves exactly the nodes of the current roots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collection_racing_with_the_projector_leaves_complete_trees() {
        let store = store().await;
        let users = [
            Keypair::from_secret_key(&[6; 32]),
            Keypair::from_secret_key(&[7; 32]),
        ];
        let mut seq = 0;
        for user in &users {
            seq += 1;
            store
                .apply_batch("p", &[(EventSeq(seq), event(user, signup()))])
                .await
                .unwrap();
        }
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collector = {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let (mut runs, mut deleted) = (0u64, 0u64);
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let report = store.merkle_gc(Duration::ZERO, GcScope::All).await.unwrap();
                    assert_eq!(report.failed, 0);
                    runs += 1;
                    deleted += report.deleted;
                }
                (runs, deleted)
            })
        };

        let mut models: Vec<[BTreeMap<String, Hash>; 2]> = vec![Default::default(); 2];
        for round in 0..300u64 {
            let mut batch = Vec::new();
            for k in 0..=(round % 3) {
                let u = ((round + k) % 2) as usize;
                let private = (round / 2 + k) % 3 == 0;
                let n = (round * 7 + k * 3) % 12;
                let path = if private {
                    format!("/priv/app/{n}.txt")
                } else {
                    format!("/pub/app/{n}.txt")
                };
                let model = &mut models[u][private as usize];
                // Few paths and two contents: the same trees, hence nodes, come back.
                let change = if round % 11 == 5 {
                    model.remove(&path);
                    Change::FileDeleted { path }
                } else {
                    let change = put(&path, format!("{}", (round / 5) % 2).as_bytes());
                    if let Change::FilePut { content_hash, .. } = &change {
                        model.insert(path, content_hash.0);
                    }
                    change
                };
                seq += 1;
                batch.push((EventSeq(seq), event(&users[u], change)));
            }
            store.apply_batch("p", &batch).await.unwrap();
            if round % 4 == 0 {
                tokio::task::yield_now().await;
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (runs, deleted) = collector.await.unwrap();
        assert!(runs > 0 && deleted > 0, "runs {runs}, deleted {deleted}");

        let last = store.merkle_gc(Duration::ZERO, GcScope::All).await.unwrap();
        assert_eq!(last.failed, 0);
        for (u, user) in users.iter().enumerate() {
            let owner = user.public_key().to_z32();
            for private in [false, true] {
                let nodes = store.merkle_all_nodes(&owner, private).await.unwrap();
                let root = store.merkle_root(&owner, private).await.unwrap().root;
                let entries = as_entries(&models[u][private as usize]);
                assert_eq!(root, merkle::build(&entries, &mut MemStore::default()));
                assert_eq!(merkle::entries(&nodes, root).unwrap(), entries);
                assert_eq!(stored(&nodes), reachable(&nodes, root));
            }
        }
    }
}

/// An event that changes several files is one row per file in `events`; the cursor is
/// the event's sequence, so no page may end inside it (a reader resuming after that
/// sequence would miss the rest). The rows are written here as such an event's
/// projection writes them.
#[tokio::test]
async fn feed_and_stream_pages_never_end_inside_an_event() {
    use hs_store::streams::{PathFilters, UserCursor};
    let store = store().await;
    let carol = Keypair::from_secret_key(&[3; 32]);
    let owner = carol.public_key().to_z32();
    let signup = Change::UserSignedUp {
        signup_token: None,
        limits: UserLimits::default(),
        cookie_session: None,
        pop_nonce: None,
    };
    let put = |path: &str| Change::FilePut {
        path: path.into(),
        content_hash: Digest([7; 32]),
        size: 1,
        content_type: "text/plain".into(),
    };
    store
        .apply_batch(
            "p",
            &[
                (EventSeq(1), event(&carol, signup)),
                (EventSeq(2), event(&carol, put("/pub/a"))),
            ],
        )
        .await
        .unwrap();
    // Event 3 removes three files (one private), then event 4 writes one.
    for (line, path) in ["/pub/x", "/priv/y", "/pub/z"].iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (seq, line, lines, owner, op, path, created_us, private)
             VALUES (3, $1, 3, $2, 'DEL', $3, 0, $4)",
        )
        .bind(line as i32)
        .bind(&owner)
        .bind(path)
        .bind(path.starts_with("/priv/"))
        .execute(store.pool())
        .await
        .unwrap();
    }
    store
        .apply_batch("p", &[(EventSeq(4), event(&carol, put("/pub/b")))])
        .await
        .unwrap();

    let lines = |page: &[hs_store::feed::FeedEvent]| -> Vec<(u64, String)> {
        page.iter().map(|e| (e.seq.0, e.path.clone())).collect()
    };
    // Two rows asked for, the page would end after /pub/x: it goes on to /pub/z.
    let page = store.public_events(EventSeq(0), 2).await.unwrap();
    assert_eq!(
        lines(&page),
        [
            (2, "/pub/a".into()),
            (3, "/pub/x".into()),
            (3, "/pub/z".into())
        ]
    );
    assert!(!page[1].ends_event() && page[2].ends_event());
    let next = store.public_events(EventSeq(3), 2).await.unwrap();
    assert_eq!(lines(&next), [(4, "/pub/b".into())]);

    let everything = PathFilters {
        dirs: vec!["/pub/".into(), "/priv/".into()],
        files: vec![],
    };
    let users = [UserCursor {
        owner: owner.clone(),
        cursor: Some(EventSeq(2)),
    }];
    let page = store
        .stream_events(&users, &everything, false, 1)
        .await
        .unwrap();
    assert_eq!(
        lines(&page),
        [
            (3, "/pub/x".into()),
            (3, "/priv/y".into()),
            (3, "/pub/z".into())
        ]
    );
    // Newest first: the event's lines in reverse, still whole.
    let users = [UserCursor {
        owner,
        cursor: Some(EventSeq(4)),
    }];
    let page = store
        .stream_events(&users, &everything, true, 2)
        .await
        .unwrap();
    assert_eq!(
        lines(&page),
        [
            (3, "/pub/z".into()),
            (3, "/priv/y".into()),
            (3, "/pub/x".into())
        ]
    );
    let page = store
        .stream_all_events(Some(EventSeq(2)), &everything, false, 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
}
