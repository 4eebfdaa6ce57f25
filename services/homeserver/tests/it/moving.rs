//! Moving a user from homeserver A to homeserver B (docs/move.md), server side, with
//! in-process pairs: the user's signed statement seals A (writes 410 naming B, reads
//! still served, one `MOVED` line in the feed and the streams, no republishing) and
//! promotes B's mirror once B has caught up; a statement the user did not sign changes
//! nothing. The whole move by `homeserver move` between two processes is in
//! `move_process`.

use crate::common::{self, TestServer, TestUser};
use crate::mirror::{PASSWORD, json, wait_status};
use domain::moving::MoveStatement;
use domain::{EventSeq, Keypair, PublicKey};
use futures::StreamExt;
use log::Expected;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A `pubky-move/1` statement of `user` from `from` to `to`, signed by `signer`.
pub(crate) fn signed_move(
    signer: &Keypair,
    user: &PublicKey,
    from: &PublicKey,
    to: &PublicKey,
    time_us: u64,
) -> Value {
    let text = MoveStatement {
        user: user.clone(),
        from: from.clone(),
        to: to.clone(),
        time_us,
        from_gone: false,
    }
    .text();
    let signature = hex::encode(signer.sign(text.as_bytes()).to_bytes());
    serde_json::json!({ "statement": text, "signature": signature })
}

async fn post_move(server: &TestServer, user: &str, body: &Value) -> (StatusCode, String) {
    let r = server
        .http
        .post(server.url(&format!("/move/{user}")))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn feed(server: &TestServer) -> String {
    let r = server.http.get(server.url("/events/?limit=10000")).send();
    r.await.unwrap().text().await.unwrap()
}

async fn put(server: &TestServer, user: &TestUser, path: &str, body: &str) -> reqwest::Response {
    server
        .http
        .put(server.storage(user, path))
        .bearer_auth(&user.token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_move_statement_not_signed_by_the_user_is_refused_and_changes_nothing() {
    let a = common::start().await;
    let u = a.user().await;
    let other = a.user().await;
    let z32 = u.z32();
    a.put_ok(&u, "/pub/app/a.txt", "before").await;
    let (here, b, mallory) = (
        a.keypair.public_key(),
        Keypair::random().public_key(),
        Keypair::random(),
    );
    let user = u.keypair.public_key();
    let now = api::now_micros();
    let head = a.server.state.log.head().await.unwrap();

    // Signed by someone else: 401.
    let forged = signed_move(&mallory, &user, &here, &b, now);
    let (status, text) = post_move(&a, &z32, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("not signed by"), "{text}");
    // A signature that is not hex, or of other bytes: 401.
    let mut garbled = signed_move(&u.keypair, &user, &here, &b, now);
    garbled["signature"] = Value::from("zz");
    assert_eq!(
        post_move(&a, &z32, &garbled).await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut edited = signed_move(&u.keypair, &user, &here, &b, now);
    let moved_elsewhere = edited["statement"]
        .as_str()
        .unwrap()
        .replace(&b.to_z32(), &mallory.public_key().to_z32());
    edited["statement"] = Value::from(moved_elsewhere);
    assert_eq!(
        post_move(&a, &z32, &edited).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Signed by the user but about other homeservers, or stale: 403.
    let elsewhere = signed_move(&u.keypair, &user, &mallory.public_key(), &b, now);
    assert_eq!(
        post_move(&a, &z32, &elsewhere).await.0,
        StatusCode::FORBIDDEN
    );
    let stale = signed_move(&u.keypair, &user, &here, &b, now - 600_000_000);
    assert_eq!(post_move(&a, &z32, &stale).await.0, StatusCode::FORBIDDEN);
    // Another user's statement sent for this one: 401 (not this user's signature).
    let theirs = signed_move(&other.keypair, &other.keypair.public_key(), &here, &b, now);
    assert_eq!(
        post_move(&a, &z32, &theirs).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Nothing changed: nothing appended, writes go on, no MOVED line, no move.
    assert_eq!(a.server.state.log.head().await.unwrap(), head);
    assert_eq!(
        put(&a, &u, "/pub/app/a.txt", "after").await.status(),
        StatusCode::CREATED
    );
    assert!(!feed(&a).await.contains("MOVED"));
    let status = json(&a.http, &a.url(&format!("/move/{z32}"))).await;
    assert_eq!(status["moved_to"], Value::Null, "{status}");
}

/// A homeserver with an admin listener and a quick anti-entropy round.
async fn start_b() -> TestServer {
    common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
        c.mirror_anti_entropy_secs = 1;
    })
    .await
}

/// A bearer session of `user` at `server` with every capability (as signing in there).
pub(crate) async fn session_at(server: &TestServer, user: &Keypair) -> String {
    let token = domain::secret::BearerToken::from_random(rand::random());
    let last = server
        .server
        .state
        .store
        .user(&user.public_key())
        .await
        .unwrap()
        .map_or(EventSeq(0), |row| row.acct_seq);
    let seq = server
        .server
        .state
        .log
        .append(
            &common::session_event(user, &["/:rw"], &token),
            Expected::LastSeq(last),
        )
        .await
        .unwrap();
    assert!(
        server
            .server
            .state
            .progress
            .wait_for(seq, Duration::from_secs(10))
            .await
    );
    token.as_str().to_owned()
}

#[tokio::test]
async fn the_seal_answers_writes_410_naming_b_and_b_takes_over_once_caught_up() {
    let a = common::start().await;
    let b = start_b().await;
    let u = a.user().await;
    let z32 = u.z32();
    for n in 0..30 {
        a.put_ok(&u, &format!("/pub/app/{n:02}.txt"), &format!("public {n}"))
            .await;
    }
    a.put_ok(&u, "/priv/app/secret.txt", "private").await;
    let (key_a, key_b, user) = (
        a.keypair.public_key(),
        b.keypair.public_key(),
        u.keypair.public_key(),
    );

    // B mirrors both trees (the user's read grant).
    let add = b
        .http
        .post(format!("http://{}/mirrors", b.server.admin_addr.unwrap()))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({ "user": z32, "source": a.url(""), "read_token": u.token }))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::CREATED);
    wait_status(&b.url(""), &z32, |s| s["state"] == "following").await;

    // Promoting before A is sealed: 409 with Retry-After, nothing changes.
    let statement = signed_move(&u.keypair, &user, &key_a, &key_b, api::now_micros());
    let early = b
        .http
        .post(b.url(&format!("/move/{z32}")))
        .json(&statement)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), StatusCode::CONFLICT);
    assert!(early.headers().contains_key("retry-after"));
    assert!(early.text().await.unwrap().contains("not sealed"));

    // The seal, and once more (idempotent: one event).
    a.put_ok(&u, "/pub/app/last.txt", "written before the seal")
        .await;
    let (status, text) = post_move(&a, &z32, &statement).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let sealed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sealed["moved_to"], key_b.to_z32().as_str());
    assert_eq!(post_move(&a, &z32, &statement).await.0, StatusCode::OK);
    // Moving elsewhere after that: 409.
    let elsewhere = signed_move(
        &u.keypair,
        &user,
        &key_a,
        &Keypair::random().public_key(),
        api::now_micros(),
    );
    assert_eq!(
        post_move(&a, &z32, &elsewhere).await.0,
        StatusCode::CONFLICT
    );

    // Writes to A: 410 Gone naming B (PUT, DELETE), never a 2xx.
    let r = put(&a, &u, "/pub/app/after.txt", "after the seal").await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(r.headers()["pubky-moved-to"], key_b.to_z32().as_str());
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&key_b.to_z32()) && text.contains("moved"),
        "{text}"
    );
    let r = a
        .http
        .delete(a.storage(&u, "/pub/app/00.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
    // Reads are still served, with the header.
    let r = a
        .http
        .get(a.storage(&u, "/pub/app/05.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["pubky-moved-to"], key_b.to_z32().as_str());
    assert_eq!(r.text().await.unwrap(), "public 5");

    // One MOVED line in A's feed, naming B; in the live stream too, with moved_to.
    let lines = feed(&a).await;
    let moved: Vec<&str> = lines.lines().filter(|l| l.starts_with("MOVED ")).collect();
    assert_eq!(
        moved,
        [format!("MOVED pubky://{z32}/pub/ {}", key_b.to_z32()).as_str()],
        "{lines}"
    );
    let stream = a
        .http
        .get(a.url(&format!("/events-stream?user={z32}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        stream.contains(&format!("event: MOVED\ndata: pubky://{z32}/pub/\n"))
            && stream.contains(&format!("data: moved_to: {}", key_b.to_z32())),
        "{stream}"
    );
    // The log: one user_moved, signed by the user, on the user's public file subject.
    let state = &a.server.state;
    let head = state.log.head().await.unwrap();
    let mut events = Box::pin(state.log.read(EventSeq(1), None).await.unwrap());
    let mut moves = Vec::new();
    while let Some(logged) = events.next().await {
        let logged = logged.unwrap();
        if logged.event.change.kind() == "user_moved" {
            moves.push(logged.clone());
        }
        if logged.seq >= head {
            break;
        }
    }
    assert_eq!(moves.len(), 1, "one user_moved event");
    assert!(
        moves[0].subject.contains(".ev.") && moves[0].subject.ends_with(&format!("{z32}.pub")),
        "{}",
        moves[0].subject
    );
    let domain::Change::UserMoved {
        to,
        arrived,
        statement: signed,
        ..
    } = &moves[0].event.change
    else {
        panic!("a user_moved event");
    };
    assert_eq!((to, *arrived), (&key_b, false));
    assert_eq!(signed.as_str(), statement["statement"].as_str().unwrap());
    // A no longer republishes the user's record.
    let keys = a.server.state.store.user_keys().await.unwrap();
    assert!(!keys.contains(&user));

    // B takes over once it has caught up with A's final roots.
    let deadline = Instant::now() + Duration::from_secs(60);
    let promoted = loop {
        let statement = signed_move(&u.keypair, &user, &key_a, &key_b, api::now_micros());
        let (status, text) = post_move(&b, &z32, &statement).await;
        if status == StatusCode::OK {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
        assert_eq!(status, StatusCode::CONFLICT, "{text}");
        assert!(Instant::now() < deadline, "B never caught up: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(promoted["arrived_from"], key_a.to_z32().as_str());
    // Again: the same answer, no second event.
    let again = signed_move(&u.keypair, &user, &key_a, &key_b, api::now_micros());
    assert_eq!(post_move(&b, &z32, &again).await.0, StatusCode::OK);
    let on_b = feed(&b).await;
    assert_eq!(on_b.matches("MOVED ").count(), 1, "{on_b}");
    assert!(on_b.contains(&format!("MOVED pubky://{z32}/pub/ {}", key_b.to_z32())));

    // Roots equal; B is no mirror any more and takes the user's writes.
    for tree in ["pub", "priv"] {
        let url = |base: String| format!("{base}/merkle/{z32}/root?tree={tree}");
        let token_b = session_at(&b, &u.keypair).await;
        let root_a: Value = a
            .http
            .get(url(a.url("")))
            .bearer_auth(&u.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let root_b: Value = b
            .http
            .get(url(b.url("")))
            .bearer_auth(&token_b)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(root_a["root"], root_b["root"], "{tree}");
    }
    let token_b = session_at(&b, &u.keypair).await;
    let r = b
        .http
        .put(b.url(&format!("/storage/{z32}/pub/app/after.txt")))
        .bearer_auth(&token_b)
        .body("on B")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/last.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "written before the seal");
}

#[tokio::test]
async fn after_the_grace_period_reads_of_a_user_who_moved_are_answered_410_too() {
    let a = common::start_with(|c| c.move_grace_secs = 0).await;
    let u = a.user().await;
    let z32 = u.z32();
    a.put_ok(&u, "/pub/app/a.txt", "readable until the move")
        .await;
    let to = Keypair::random().public_key();
    let statement = signed_move(
        &u.keypair,
        &u.keypair.public_key(),
        &a.keypair.public_key(),
        &to,
        api::now_micros(),
    );
    assert_eq!(post_move(&a, &z32, &statement).await.0, StatusCode::OK);
    let r = a
        .http
        .get(a.storage(&u, "/pub/app/a.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(r.headers()["pubky-moved-to"], to.to_z32().as_str());
    // Not a storage path: the move resource still answers.
    let status = json(&a.http, &a.url(&format!("/move/{z32}"))).await;
    assert_eq!(status["moved_to"], to.to_z32().as_str());
}

#[tokio::test]
async fn a_quota_at_b_too_small_for_the_user_is_reported_before_anything_moves() {
    let a = common::start().await;
    let b = common::start_with(|c| c.default_quota_mb = Some(1)).await;
    let u = a.user().await;
    let z32 = u.z32();
    a.put_ok(&u, "/pub/app/big.bin", &"x".repeat(1536 * 1024))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, hex::encode(u.keypair.secret_key())).unwrap();
    let args = homeserver::move_cli::MoveArgs {
        from: a.url(""),
        to: b.url(""),
        secret_key: secret,
        signup_token: None,
        state_file: None,
        step_timeout: Duration::from_secs(30),
        from_gone: false,
        from_key: None,
        from_plain: false,
    };
    let refused = homeserver::move_cli::run(&homeserver::config::Config::default(), args)
        .await
        .expect_err("B's quota is too small");
    let text = format!("{refused:#}");
    assert!(
        text.contains("quota at B is 1048576 bytes") && text.contains("nothing was moved"),
        "{text}"
    );
    // Nothing moved: no mirror on B, no file there, A not sealed.
    let r = b
        .http
        .get(b.url(&format!("/mirror/{z32}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/big.bin")))
        .send();
    assert_eq!(r.await.unwrap().status(), StatusCode::NOT_FOUND);
    let status = json(&a.http, &a.url(&format!("/move/{z32}"))).await;
    assert_eq!(status["moved_to"], Value::Null);
    assert_eq!(
        put(&a, &u, "/pub/app/still.txt", "A").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn when_a_is_gone_b_takes_over_from_its_mirror_checked_against_the_last_root_it_verified() {
    use crate::common::sdk::{Dht, sdk_key, start_on};
    let dht = Dht::start().await;
    let a = start_on(&dht, |_| {}).await;
    let b = start_on(&dht, |c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
    })
    .await;
    let u = a.user().await;
    let z32 = u.z32();
    for n in 0..20 {
        a.put_ok(&u, &format!("/pub/app/{n:02}.txt"), &format!("public {n}"))
            .await;
    }
    a.put_ok(&u, "/priv/app/secret.txt", "private").await;
    let add = b
        .http
        .post(format!("http://{}/mirrors", b.server.admin_addr.unwrap()))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({ "user": z32, "source": a.url(""), "read_token": u.token }))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), StatusCode::CREATED);
    wait_status(&b.url(""), &z32, |s| {
        s["state"] == "following" && s["local_roots"] == s["source_roots"] && s["entries"] == 21
    })
    .await;

    // While A answers, `seal:none` is refused: by B (seal there instead) and by A.
    let (key_a, key_b, user) = (
        a.keypair.public_key(),
        b.keypair.public_key(),
        u.keypair.public_key(),
    );
    let text = MoveStatement {
        user: user.clone(),
        from: key_a.clone(),
        to: key_b.clone(),
        time_us: api::now_micros(),
        from_gone: true,
    }
    .text();
    let gone = serde_json::json!({
        "statement": text,
        "signature": hex::encode(u.keypair.sign(text.as_bytes()).to_bytes()),
    });
    let (status, text) = post_move(&b, &z32, &gone).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("is not gone"), "{text}");
    assert_eq!(post_move(&a, &z32, &gone).await.0, StatusCode::BAD_REQUEST);

    // A is gone: `homeserver move --from-gone` promotes B's mirror and publishes.
    let url_a = a.url("");
    let _gone = a.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, hex::encode(u.keypair.secret_key())).unwrap();
    let mut config = homeserver::config::Config::default();
    dht.configure(&mut config);
    let args = homeserver::move_cli::MoveArgs {
        from: url_a,
        to: b.url(""),
        secret_key: secret,
        signup_token: None,
        state_file: None,
        step_timeout: Duration::from_secs(60),
        from_gone: true,
        from_key: None,
        from_plain: false,
    };
    homeserver::move_cli::run(&config, args)
        .await
        .expect("the move from a homeserver that is gone");
    let resolved = dht.sdk().get_homeserver_of(&sdk_key(&user)).await;
    assert_eq!(resolved.unwrap(), Some(sdk_key(&key_b)));
    assert!(
        feed(&b)
            .await
            .contains(&format!("MOVED pubky://{z32}/pub/ {}", key_b.to_z32()))
    );
    let token_b = session_at(&b, &u.keypair).await;
    let r = b
        .http
        .put(b.url(&format!("/storage/{z32}/pub/app/new.txt")))
        .bearer_auth(&token_b)
        .body("on B")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = b
        .http
        .get(b.url(&format!("/storage/{z32}/priv/app/secret.txt")));
    let r = r.bearer_auth(&token_b).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "private");
}
