//! The backbone's invariants, against real NATS and Postgres: one event per write,
//! exactly-once projection, rebuild equality, optimistic concurrency.

use crate::common;

use domain::event::{Change, Digest, UserLimits};
use domain::{Event, EventSeq, Keypair};
use futures::StreamExt;
use log::{AppendError, EventLog, Expected};
use std::time::Duration;

fn file_put(user: &Keypair, path: &str, size: u64) -> Event {
    Event::new(
        user.public_key(),
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        Change::FilePut {
            path: path.into(),
            content_hash: Digest(*blake3::hash(path.as_bytes()).as_bytes()),
            size,
            content_type: "text/plain".into(),
        },
    )
}

fn signup(user: &Keypair) -> Event {
    Event::new(
        user.public_key(),
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        Change::UserSignedUp {
            signup_token: None,
            limits: UserLimits::default(),
            cookie_session: None,
            pop_nonce: None,
        },
    )
}

#[tokio::test]
async fn concurrent_writes_rebuild_to_identical_projections_and_redelivery_changes_nothing() {
    let s = common::start().await;
    let users: Vec<common::TestUser> = futures::future::join_all((0..6).map(|_| s.user())).await;
    let s = &s;
    let writes = users.iter().flat_map(|u| {
        (0..15).map(move |i| {
            let request = if i % 5 == 4 {
                s.http
                    .delete(s.storage(u, &format!("/pub/f/{}", i - 1)))
                    .bearer_auth(&u.token)
            } else {
                s.http
                    .put(s.storage(u, &format!("/pub/f/{i}")))
                    .bearer_auth(&u.token)
                    .body(vec![b'x'; i * 7])
            };
            async move { request.send().await.expect("request").status().as_u16() }
        })
    });
    let statuses = futures::future::join_all(writes).await;
    // Deletes race the PUT of the same file, so a 404 is a fair answer for them.
    assert!(
        statuses.iter().all(|s| [201, 204, 404].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 201).count() == 72,
        "{statuses:?}"
    );

    let state = &s.server.state;
    let report = projector::rebuild(
        &state.log,
        &state.store,
        &s.env.database_url,
        "rebuild_test",
        true,
        false,
    )
    .await
    .expect("rebuild");
    assert!(
        report.identical(),
        "rebuilt projections differ: {:?}",
        report.differences
    );
    assert_eq!(report.position, state.log.head().await.unwrap());

    // Redelivery: apply the whole log again under the rebuilt schema's checkpoint.
    let rebuilt = store::Store::connect_in_schema(&s.env.database_url, 2, "rebuild_test")
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut stream = Box::pin(state.log.read(EventSeq(1), None).await.unwrap());
    while all.len() < report.position.0 as usize {
        let e = futures::StreamExt::next(&mut stream)
            .await
            .unwrap()
            .unwrap();
        all.push((e.seq, e.event));
    }
    let before = rebuilt.checkpoint("rebuild").await.unwrap();
    let after = rebuilt.apply_batch("rebuild", &all).await.unwrap();
    assert_eq!(before, after);
    let user = users[0].keypair.public_key();
    assert_eq!(
        rebuilt.user(&user).await.unwrap(),
        state.store.user(&user).await.unwrap(),
        "replayed batch changed nothing"
    );
    state.store.drop_schema("rebuild_test").await.unwrap();

    // An upgraded database has events projected before the later columns existed
    // (NULL: not recorded), which a replay fills: not a difference. A recorded value
    // that the replay contradicts is one.
    let pool = sqlx::PgPool::connect(&s.env.database_url).await.unwrap();
    sqlx::query(
        "UPDATE events SET merkle_root = NULL, content_length = NULL, content_type = NULL
         WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT 20)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let rebuild = |schema: &'static str| {
        projector::rebuild(
            &state.log,
            &state.store,
            &s.env.database_url,
            schema,
            true,
            false,
        )
    };
    let report = rebuild("rebuild_upgraded").await.expect("rebuild");
    assert!(report.identical(), "{:?}", report.differences);
    state.store.drop_schema("rebuild_upgraded").await.unwrap();
    sqlx::query(
        "UPDATE events SET content_type = 'application/x-wrong'
         WHERE seq = (SELECT max(seq) FROM events WHERE op = 'PUT')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let report = rebuild("rebuild_tampered").await.expect("rebuild");
    assert_eq!(report.differences, vec![("events".to_string(), 1)]);
    state.store.drop_schema("rebuild_tampered").await.unwrap();
}

#[tokio::test]
async fn stale_expected_sequences_are_refused_and_retries_are_not_stored_twice() {
    let env = testkit::TestEnv::new().await;
    let log = EventLog::connect(env.log.clone()).await.expect("log");
    let user = Keypair::random();
    let first = log
        .append(&signup(&user), Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap();
    // A second signup against "no events yet" loses.
    let err = log
        .append(&signup(&user), Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { current: Some(seq) } if seq == first),
        "{err:?}"
    );

    let put = file_put(&user, "/pub/a", 1);
    let stored = log
        .append(&put, Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap();
    // The same request again (a retry after a lost ack): settled as the same event.
    let again = log
        .append(&put, Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap();
    assert_eq!(stored, again);
    let again_unchecked = log.append(&put, Expected::Any).await.unwrap();
    assert_eq!(stored, again_unchecked, "deduplicated by Nats-Msg-Id");
    assert_eq!(log.head().await.unwrap(), stored, "nothing stored twice");
    // A different write with the stale expectation is a conflict, and with the
    // current one it succeeds.
    let next = file_put(&user, "/pub/b", 1);
    assert!(matches!(
        log.append(&next, Expected::LastSeq(EventSeq(0))).await,
        Err(AppendError::Conflict { .. })
    ));
    assert!(log.append(&next, Expected::LastSeq(stored)).await.is_ok());
}

/// A retried append whose first attempt was stored, when another instance has
/// appended for the same user since: settled as the stored event, not as a conflict
/// (which would make the writer append it a second time).
#[tokio::test]
async fn a_retry_is_settled_as_stored_after_another_instances_write() {
    let env = testkit::TestEnv::new().await;
    let log = EventLog::connect(env.log.clone()).await.expect("log");
    let user = Keypair::random();
    let ours = file_put(&user, "/pub/ours", 1);
    let stored = log
        .append(&ours, Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap();
    let theirs = log
        .append(
            &file_put(&user, "/pub/theirs", 1),
            Expected::LastSeq(stored),
        )
        .await
        .unwrap();
    // The retry of the first request (its acknowledgement was lost), after theirs.
    let again = log
        .append(&ours, Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap();
    assert_eq!(again, stored, "the stored attempt, not a conflict");
    assert_eq!(log.head().await.unwrap(), theirs, "nothing stored twice");
    // A different request with the same stale expectation is still a conflict.
    let other = file_put(&user, "/pub/other", 1);
    assert!(matches!(
        log.append(&other, Expected::LastSeq(EventSeq(0))).await,
        Err(AppendError::Conflict { current: Some(seq) }) if seq == theirs
    ));
}

#[tokio::test]
async fn a_projector_killed_mid_stream_resumes_without_loss_or_duplicates() {
    let env = testkit::TestEnv::new().await;
    let store = store::Store::connect(&env.database_url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let log = EventLog::connect(env.log.clone()).await.unwrap();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
            .arg("projector")
            .env("DATABASE_URL", &env.database_url)
            .env("NATS_URL", &env.nats_url)
            .env("HOMESERVER_NATS_STREAM", &env.log.stream)
            .env("HOMESERVER_NATS_SUBJECT_PREFIX", &env.log.subject_prefix)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("projector process")
    };
    let users: Vec<Keypair> = (0..8).map(|_| Keypair::random()).collect();
    for u in &users {
        log.append(&signup(u), Expected::Any).await.unwrap();
    }
    let mut child = spawn();
    let mut expected_bytes = vec![0i64; users.len()];
    for round in 0..60u64 {
        for (i, u) in users.iter().enumerate() {
            log.append(
                &file_put(u, &format!("/pub/r{round}"), round + 1),
                Expected::Any,
            )
            .await
            .unwrap();
            expected_bytes[i] += round as i64 + 1 + 256;
        }
        if round == 30 {
            child.kill().expect("kill -9"); // SIGKILL: no chance to clean up
            child.wait().unwrap();
            child = spawn();
        }
    }
    let head = log.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.checkpoint("main").await.unwrap() < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "projector did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for (i, u) in users.iter().enumerate() {
        let row = store.user(&u.public_key()).await.unwrap().expect("user");
        assert_eq!(
            row.used_bytes, expected_bytes[i],
            "every event applied exactly once"
        );
    }
    let feed: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(feed, 60 * users.len() as i64);
}

#[tokio::test]
async fn public_and_private_file_events_get_their_own_subjects_but_one_user_sequence() {
    let env = testkit::TestEnv::new().await;
    let log = EventLog::connect(env.log.clone()).await.expect("log");
    let user = Keypair::random();
    let public = log
        .append(
            &file_put(&user, "/pub/a", 1),
            Expected::LastSeq(EventSeq(0)),
        )
        .await
        .unwrap();
    // A private write checked against "no file events yet" must see the public one.
    let private = file_put(&user, "/priv/b", 1);
    let err = log
        .append(&private, Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { current: Some(seq) } if seq == public),
        "{err:?}"
    );
    let stored = log
        .append(&private, Expected::LastSeq(public))
        .await
        .unwrap();
    // A retry after a lost ack is settled across both subjects too.
    assert_eq!(
        log.append(&private, Expected::LastSeq(public))
            .await
            .unwrap(),
        stored
    );

    let prefix = &env.log.subject_prefix;
    let z32 = user.public_key().to_z32();
    let subjects: Vec<(String, String)> = log
        .read(EventSeq(1), None)
        .await
        .unwrap()
        .take(2)
        .map(|e| {
            let e = e.unwrap();
            let path = match e.event.change {
                Change::FilePut { path, .. } => path,
                other => panic!("unexpected {other:?}"),
            };
            (path, e.subject)
        })
        .collect()
        .await;
    let p = domain::event::partition_of(&user.public_key());
    assert_eq!(
        subjects,
        [
            ("/pub/a".to_string(), format!("{prefix}.ev.{p}.{z32}.pub")),
            ("/priv/b".to_string(), format!("{prefix}.ev.{p}.{z32}.priv")),
        ]
    );
    // The public filter a third party would be given sees the public event only.
    let mut public_only = log
        .read(
            EventSeq(1),
            Some(domain::event::public_files_filter(prefix)),
        )
        .await
        .unwrap();
    let first = public_only.next().await.unwrap().unwrap();
    assert_eq!(first.seq, public);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), public_only.next())
            .await
            .is_err(),
        "no private event on the public subjects"
    );
}

#[tokio::test]
async fn a_stream_in_the_old_unsplit_subject_layout_is_refused() {
    let env = testkit::TestEnv::new().await;
    let log = EventLog::connect(env.log.clone()).await.expect("log");
    let user = Keypair::random();
    // What the first layout wrote: public and private file events on one subject.
    let old_subject = format!(
        "{}.ev.{}.{}",
        env.log.subject_prefix,
        domain::event::partition_of(&user.public_key()),
        user.public_key().to_z32()
    );
    let js = async_nats::jetstream::new(log.client().clone());
    js.publish(old_subject, file_put(&user, "/priv/x", 1).to_json().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let err = EventLog::connect(env.log.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("layout before public and private"), "{err}");
}
