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
