//! Deleting an account in one call (`DELETE /account`), against real NATS and Postgres:
//! one `account_deleted` event; afterwards nothing of the user is readable (files,
//! listings, versions, Merkle roots), every session is 401 and every grant revoked, the
//! quota is free, the feeds show one `DEL` line per removed file (history and live),
//! a second call answers as for a missing user, and the projections still equal a
//! replay of the log. Grants, PoPs and AuthTokens are signed by the published
//! `pubky-common`, as the SDK signs them.

use crate::common;
use domain::event::Change;
use futures::StreamExt;
use pubky_common::auth::AuthToken;
use pubky_common::auth::grant::GrantClaims;
use pubky_common::auth::jws::{ClientId, GrantId, PopNonce, sign_jws};
use pubky_common::auth::pop::PopProofClaims;
use pubky_common::capabilities::{Capabilities, Capability};
use pubky_common::crypto::Keypair;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// A user's key and an app key, signing what the SDK signs.
struct Signer {
    user: Keypair,
    client: Keypair,
    homeserver: pubky_common::crypto::PublicKey,
}

impl Signer {
    fn new(s: &common::TestServer) -> Signer {
        let homeserver =
            pubky_common::crypto::PublicKey::try_from(s.keypair.public_key().to_z32().as_str())
                .unwrap();
        Signer {
            user: Keypair::random(),
            client: Keypair::random(),
            homeserver,
        }
    }

    fn z32(&self) -> String {
        self.user.public_key().z32()
    }

    fn grant(&self, client_id: &str, caps: Vec<Capability>, lifetime: u64) -> GrantClaims {
        let now = api::now_secs();
        GrantClaims {
            iss: self.user.public_key(),
            client_id: ClientId::new(client_id).unwrap(),
            caps,
            cnf: self.client.public_key(),
            jti: GrantId::generate(),
            iat: now,
            exp: now + lifetime,
        }
    }

    /// `{grant, pop}` with a fresh PoP.
    fn body(&self, claims: &GrantClaims) -> Value {
        let pop = PopProofClaims {
            aud: self.homeserver.clone(),
            gid: claims.jti.clone(),
            nonce: PopNonce::generate(),
            iat: api::now_secs(),
        };
        json!({
            "grant": claims.sign(&self.user, "pubky-grant"),
            "pop": sign_jws(&self.client, "pubky-pop", &pop),
        })
    }
}

async fn post_json(s: &common::TestServer, path: &str, body: &Value) -> reqwest::Response {
    s.http.post(s.url(path)).json(body).send().await.unwrap()
}

/// Signs `signer` up through `POST /auth/grant/signup`.
async fn signup(s: &common::TestServer, signer: &Signer) -> StatusCode {
    let grant = signer.grant("pubky.signup", vec![Capability::root()], 300);
    post_json(s, "/auth/grant/signup", &signer.body(&grant))
        .await
        .status()
}

/// A bearer for `grant` from `POST /auth/grant/session`.
async fn bearer(s: &common::TestServer, signer: &Signer, grant: &GrantClaims) -> String {
    let response = post_json(s, "/auth/grant/session", &signer.body(grant)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn put(s: &common::TestServer, token: &str, owner: &str, path: &str, body: &str) {
    let r = s
        .http
        .put(s.url(&format!("/storage/{owner}{path}")))
        .bearer_auth(token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "PUT {path}");
}

async fn get_status(s: &common::TestServer, token: Option<&str>, path: &str) -> StatusCode {
    let mut request = s.http.get(s.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

async fn delete_account(s: &common::TestServer, token: Option<&str>) -> reqwest::Response {
    let mut request = s.http.delete(s.url("/account"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// `"<status> <body>"`.
async fn answer(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    format!("{status} {}", response.text().await.unwrap())
}

/// The public feed's lines after `cursor` (without the final `cursor:` line).
async fn feed_lines(s: &common::TestServer, cursor: u64) -> Vec<String> {
    let body = s
        .http
        .get(s.url(&format!("/events/?cursor={cursor}&limit=1000")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .filter(|line| !line.starts_with("cursor: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn deleting_an_account_removes_everything_in_one_event() {
    let s = common::start().await;
    let state = &s.server.state;
    let alice = Signer::new(&s);
    let a = alice.z32();
    assert_eq!(signup(&s, &alice).await, StatusCode::NO_CONTENT);
    let root_grant = alice.grant("app.example", vec![Capability::root()], 86_400);
    let token = bearer(&s, &alice, &root_grant).await;
    let scoped_grant = alice.grant(
        "app.scoped",
        vec![Capability::read_write("/pub/app/").unwrap()],
        86_400,
    );
    let scoped = bearer(&s, &alice, &scoped_grant).await;
    // A legacy cookie session too.
    let cookie_token = AuthToken::sign(&alice.user, Capabilities::from(vec![Capability::root()]));
    let signin = s
        .http
        .post(s.url("/session"))
        .header("host", "localhost")
        .body(cookie_token.serialize())
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), StatusCode::OK);
    let cookie = signin.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let files = [
        "/priv/app/secret.txt",
        "/pub/app/a.txt",
        "/pub/app/b.txt",
        "/pub/other/c.txt",
    ];
    for path in files {
        put(&s, &token, &a, path, &format!("content of {path}")).await;
    }
    // A replaced version, so there is history to remove too.
    put(&s, &token, &a, "/pub/app/a.txt", "second version").await;

    // Bob is not touched by any of it.
    let bob = s.user().await;
    s.put_ok(&bob, "/pub/app/a.txt", "bob's").await;
    let bob_used = state
        .store
        .user(&bob.keypair.public_key())
        .await
        .unwrap()
        .unwrap()
        .used_bytes;
    let alice_key = domain::PublicKey::try_from(a.as_str()).unwrap();
    assert!(
        state
            .store
            .user(&alice_key)
            .await
            .unwrap()
            .unwrap()
            .used_bytes
            > 0,
        "alice uses quota"
    );

    // A live public stream of alice's events, opened before the deletion.
    let before = state.log.head().await.unwrap();
    let live = s
        .http
        .get(s.url(&format!("/events-stream?user={a}:{}&live=true", before.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    // Refusals first: nothing changes.
    assert_eq!(
        answer(delete_account(&s, None).await).await,
        "401 No authenticated session found"
    );
    assert_eq!(
        answer(delete_account(&s, Some(&scoped)).await).await,
        "403 Root capability required"
    );
    assert_eq!(state.log.head().await.unwrap(), before);

    // The call: one event.
    let response = delete_account(&s, Some(&token)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let head = state.log.head().await.unwrap();
    assert_eq!(head.0, before.0 + 1, "one request, one event");
    let mut stream = Box::pin(state.log.read(head, None).await.unwrap());
    let event = stream.next().await.unwrap().unwrap();
    assert_eq!(
        event.event.change,
        Change::AccountDeleted { pop_nonce: None }
    );
    assert_eq!(event.event.user.to_z32(), a);

    // Nothing readable: files (public 404; private 401, no session any more),
    // listings, versions, Merkle roots.
    for path in &files[1..] {
        assert_eq!(
            get_status(&s, None, &format!("/storage/{a}{path}")).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
        assert_eq!(
            get_status(&s, None, &format!("/versions/{a}{path}")).await,
            StatusCode::NOT_FOUND,
            "versions of {path}"
        );
    }
    assert_eq!(
        get_status(
            &s,
            Some(&token),
            &format!("/storage/{a}/priv/app/secret.txt")
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_status(&s, None, &format!("/storage/{a}/pub/app/")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_status(&s, None, &format!("/storage/{a}/pub/")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_status(&s, None, &format!("/merkle/{a}/root")).await,
        StatusCode::NOT_FOUND
    );

    // Sessions 401, grants revoked.
    for bearer in [&token, &scoped] {
        assert_eq!(
            get_status(&s, Some(bearer), "/auth/grant/session").await,
            StatusCode::UNAUTHORIZED
        );
    }
    let session = s
        .http
        .get(s.url("/session"))
        .header("pubky-host", &a)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer(post_json(&s, "/auth/grant/session", &alice.body(&root_grant)).await).await,
        "401 Grant has been revoked"
    );

    // Quota free: no user row, the server's total is bob's alone.
    assert!(state.store.user(&alice_key).await.unwrap().is_none());
    assert_eq!(
        state.store.total_used_bytes().await.unwrap(),
        bob_used as u64
    );
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM entries WHERE owner = $1)
              + (SELECT count(*) FROM merkle_nodes WHERE owner = $1)
              + (SELECT count(*) FROM merkle_roots WHERE owner = $1)
              + (SELECT count(*) FROM cookie_sessions WHERE owner = $1)
              + (SELECT count(*) FROM grant_sessions g JOIN grants USING (grant_id)
                 WHERE grants.owner = $1)
              + (SELECT count(*) FROM events WHERE owner = $1 AND op = 'PUT')",
    )
    .bind(&a)
    .fetch_one(state.store.pool())
    .await
    .unwrap();
    assert_eq!(rows, 0, "nothing of alice's is left but the deletion");

    // The feed: one DEL line per removed public file, in path order, under the event's
    // sequence; none of alice's earlier lines remain.
    let del_lines: Vec<String> = files[1..]
        .iter()
        .map(|path| format!("DEL pubky://{a}{path}"))
        .collect();
    assert_eq!(feed_lines(&s, before.0).await, del_lines);
    let all = feed_lines(&s, 0).await;
    let alices: Vec<&String> = all.iter().filter(|l| l.contains(&a)).collect();
    assert_eq!(alices, del_lines.iter().collect::<Vec<_>>());
    let body = s
        .http
        .get(s.url(&format!("/events/?cursor={}", before.0)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.ends_with(&format!("cursor: {}", head.0)), "{body}");
    // The private file's line is there for the owner's streams.
    let private: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT path, line, lines FROM events WHERE seq = $1 AND private ORDER BY line",
    )
    .bind(head.0 as i64)
    .fetch_all(state.store.pool())
    .await
    .unwrap();
    assert_eq!(private, [("/priv/app/secret.txt".to_owned(), 0, 4)]);

    // The live stream relayed the same lines, the event's id on the last one only.
    let mut frames = String::new();
    let mut body = live.bytes_stream();
    while frames.matches("event: DEL").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("live DEL frames within 10 s")
            .expect("stream open")
            .unwrap();
        frames.push_str(&String::from_utf8_lossy(&chunk));
    }
    for line in &del_lines {
        let path = line.trim_start_matches("DEL ");
        assert!(
            frames.contains(&format!("event: DEL\ndata: {path}\n")),
            "{frames}"
        );
    }
    assert_eq!(
        frames.matches(&format!("id: {}", head.0)).count(),
        1,
        "{frames}"
    );
    assert!(!frames.contains("secret"), "{frames}");

    // Second call: with the old session 401 (it is gone), with a fresh root proof of
    // the key 404 as for a missing user; nothing appended either way.
    assert_eq!(
        answer(delete_account(&s, Some(&token)).await).await,
        "401 No authenticated session found"
    );
    let again = alice.grant("app.example", vec![Capability::root()], 86_400);
    let response = s
        .http
        .delete(s.url("/account"))
        .json(&alice.body(&again))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(response).await, "404 Not Found");
    assert_eq!(state.log.head().await.unwrap(), head);

    // Bob's data is intact.
    assert_eq!(
        get_status(&s, None, &format!("/storage/{}/pub/app/a.txt", bob.z32())).await,
        StatusCode::OK
    );

    // The key may start again, empty: signup, a write, only that file listed.
    assert_eq!(signup(&s, &alice).await, StatusCode::NO_CONTENT);
    let fresh = bearer(&s, &alice, &again).await;
    put(&s, &fresh, &a, "/pub/app/new.txt", "new").await;
    let listing = s
        .http
        .get(s.url(&format!("/storage/{a}/pub/app/")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(listing.trim(), format!("pubky://{a}/pub/app/new.txt"));
    assert_eq!(
        get_status(&s, None, &format!("/storage/{a}/pub/app/a.txt")).await,
        StatusCode::NOT_FOUND
    );

    // `homeserver verify` replays only the new account's file events.
    let report = projector::verify(&state.log, &state.store, &alice_key)
        .await
        .unwrap()
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.public.entries, 1);

    // And the projections equal a replay of the log.
    let report = projector::rebuild(
        &state.log,
        &state.store,
        &s.env.database_url,
        "rebuild_account",
        true,
        false,
    )
    .await
    .expect("rebuild");
    assert!(report.identical(), "{:?}", report.differences);
}

/// A deletion proven by a `{grant,pop}` body, without any session: allowed for a root
/// grant, recorded with its nonce, refused for a scoped one.
#[tokio::test]
async fn a_root_proof_deletes_without_a_session() {
    let s = common::start().await;
    let carol = Signer::new(&s);
    let c = carol.z32();
    assert_eq!(signup(&s, &carol).await, StatusCode::NO_CONTENT);
    let grant = carol.grant("app.example", vec![Capability::root()], 86_400);
    let token = bearer(&s, &carol, &grant).await;
    put(&s, &token, &c, "/pub/x.txt", "x").await;

    let scoped = carol.grant(
        "app.scoped",
        vec![Capability::read_write("/pub/").unwrap()],
        86_400,
    );
    let response = s
        .http
        .delete(s.url("/account"))
        .json(&carol.body(&scoped))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(response).await, "403 Root capability required");

    let proof = carol.body(&grant);
    let response = s
        .http
        .delete(s.url("/account"))
        .json(&proof)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let state = &s.server.state;
    let head = state.log.head().await.unwrap();
    let mut stream = Box::pin(state.log.read(head, None).await.unwrap());
    let event = stream.next().await.unwrap().unwrap();
    assert!(
        matches!(
            event.event.change,
            Change::AccountDeleted { pop_nonce: Some(_) }
        ),
        "{:?}",
        event.event
    );
    assert_eq!(
        get_status(&s, None, &format!("/storage/{c}/pub/x.txt")).await,
        StatusCode::NOT_FOUND
    );
    // The same proof again: its grant was revoked with the account (checked before the
    // nonce and the user, as `POST /auth/grant/session` does).
    let response = s
        .http
        .delete(s.url("/account"))
        .json(&proof)
        .send()
        .await
        .unwrap();
    assert_eq!(answer(response).await, "401 Grant has been revoked");
}
