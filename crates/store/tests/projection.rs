//! The projection of the account events that carry more than one piece of state
//! (one request, one event): a cookie signup's session, the PoP nonces of a grant
//! signup and of a proof logout. Needs `DATABASE_URL` and `NATS_URL` (`make test`).

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
