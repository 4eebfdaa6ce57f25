//! The auth endpoints against real NATS and Postgres, driven over HTTP with grants,
//! PoPs and AuthTokens signed by the published `pubky-common` crate (interop).
//! Every error response is snapshotted (status and body).

mod common;
#[path = "auth/session_slots.rs"]
mod session_slots;

use api::SignupMode;
use common::{Instance, TestEnv};
use pubky_common::auth::AuthToken;
use pubky_common::auth::grant::GrantClaims;
use pubky_common::auth::jws::{ClientId, GrantId, PopNonce, sign_jws};
use pubky_common::auth::pop::PopProofClaims;
use pubky_common::capabilities::{Capabilities, Capability};
use pubky_common::crypto::Keypair;
use pubky_common::session::CookieSessionRecord;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

fn now() -> u64 {
    api::now_secs()
}

/// `"<status> <body>"`, the form every error snapshot takes.
async fn error(response: Response) -> String {
    let status = response.status().as_u16();
    format!("{status} {}", response.text().await.unwrap())
}

macro_rules! snap {
    ($name:expr, $response:expr) => {
        insta::assert_snapshot!($name, error($response).await)
    };
}

/// A user's key and one client key, with helpers to sign what the SDK signs.
struct Signer {
    user: Keypair,
    client: Keypair,
    homeserver: pubky_common::crypto::PublicKey,
}

impl Signer {
    fn new(env: &TestEnv) -> Self {
        Signer {
            user: Keypair::random(),
            client: Keypair::random(),
            homeserver: env.homeserver.public_key(),
        }
    }

    fn z32(&self) -> String {
        self.user.public_key().z32()
    }

    fn claims(&self, client_id: &str, caps: Vec<Capability>, lifetime: u64) -> GrantClaims {
        GrantClaims {
            iss: self.user.public_key(),
            client_id: ClientId::new(client_id).unwrap(),
            caps,
            cnf: self.client.public_key(),
            jti: GrantId::generate(),
            iat: now(),
            exp: now() + lifetime,
        }
    }

    fn signup_grant(&self) -> GrantClaims {
        self.claims("pubky.signup", vec![Capability::root()], 300)
    }

    fn app_grant(&self, caps: Vec<Capability>) -> GrantClaims {
        self.claims("app.example", caps, 86_400)
    }

    fn sign(&self, claims: &GrantClaims) -> String {
        claims.sign(&self.user, "pubky-grant")
    }

    fn pop_claims(&self, gid: &GrantId) -> PopProofClaims {
        PopProofClaims {
            aud: self.homeserver.clone(),
            gid: gid.clone(),
            nonce: PopNonce::generate(),
            iat: now(),
        }
    }

    fn pop(&self, gid: &GrantId) -> String {
        sign_jws(&self.client, "pubky-pop", &self.pop_claims(gid))
    }

    /// `{grant, pop}` for `claims` with a fresh PoP.
    fn body(&self, claims: &GrantClaims) -> Value {
        json!({ "grant": self.sign(claims), "pop": self.pop(&claims.jti) })
    }

    fn auth_token(&self, caps: &[Capability]) -> Vec<u8> {
        AuthToken::sign(&self.user, Capabilities::from(caps.to_vec())).serialize()
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(instance: &Instance) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: instance.url.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn session(&self, claims: &GrantClaims, signer: &Signer) -> Response {
        self.post_json("/auth/grant/session", &signer.body(claims))
            .await
    }

    /// Mints a bearer for `claims`; returns the whole JSON response.
    async fn bearer(&self, claims: &GrantClaims, signer: &Signer) -> Value {
        let response = self.session(claims, signer).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn signup(&self, signer: &Signer, token: Option<&str>) -> Response {
        let path = match token {
            Some(t) => format!("/auth/grant/signup?signup_token={t}"),
            None => "/auth/grant/signup".into(),
        };
        self.post_json(&path, &signer.body(&signer.signup_grant()))
            .await
    }

    async fn with_bearer(&self, method: reqwest::Method, path: &str, token: &str) -> Response {
        self.http
            .request(method, self.url(path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
    }

    async fn post_bytes(&self, path: &str, host: &str, body: Vec<u8>) -> Response {
        self.http
            .post(self.url(path))
            .header(HOST, host)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn with_cookie(&self, method: reqwest::Method, user: &str, cookie: &str) -> Response {
        self.http
            .request(method, self.url("/session"))
            .header("pubky-host", user)
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }
}

/// The events appended to the log after `head`, up to its current head.
async fn events_since(instance: &Instance, head: domain::EventSeq) -> Vec<domain::Event> {
    use futures::StreamExt;
    let now = instance.state.log.head().await.unwrap();
    if now <= head {
        return Vec::new();
    }
    let stream = instance
        .state
        .log
        .read(domain::EventSeq(head.0 + 1), None)
        .await
        .unwrap();
    stream
        .take((now.0 - head.0) as usize)
        .map(|logged| logged.unwrap().event)
        .collect()
        .await
}

fn token_of(session: &Value) -> String {
    session["token"].as_str().unwrap().to_owned()
}

/// `name=value` of a `Set-Cookie` header.
fn cookie_pair(response: &Response) -> String {
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn grant_signup_signin_refresh_signout() {
    let env = TestEnv::start(SignupMode::Open).await;
    let server = env.instance().await;
    let client = Client::new(&server);
    let alice = Signer::new(&env);

    assert_eq!(
        client.signup(&alice, None).await.status(),
        StatusCode::NO_CONTENT
    );
    snap!(
        "grant_signup_user_exists",
        client.signup(&alice, None).await
    );

    // A signup is one event, which uses up the proof's nonce: a replay of the same
    // proof is refused as such, before the user's existence is looked at (§3.4: PoP,
    // then nonce, then user creation).
    let bob = Signer::new(&env);
    let proof = bob.body(&bob.signup_grant());
    let head = server.state.log.head().await.unwrap();
    assert_eq!(
        client
            .post_json("/auth/grant/signup", &proof)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let events = events_since(&server, head).await;
    assert_eq!(events.len(), 1, "one request, one event: {events:?}");
    let domain::event::Change::UserSignedUp {
        cookie_session,
        pop_nonce,
        ..
    } = &events[0].change
    else {
        panic!("not a signup: {:?}", events[0]);
    };
    assert!(cookie_session.is_none());
    assert!(pop_nonce.is_some());
    let head = server.state.log.head().await.unwrap();
    snap!(
        "grant_signup_pop_replayed",
        client.post_json("/auth/grant/signup", &proof).await
    );
    assert_eq!(server.state.log.head().await.unwrap(), head);

    // Sign in: the response is the SDK's `GrantSessionResponse`.
    let grant = alice.app_grant(vec![Capability::read_write("/pub/app/").unwrap()]);
    let first = client.bearer(&grant, &alice).await;
    let parsed: pubky_common::auth::grant_session_responses::GrantSessionResponse =
        serde_json::from_value(first.clone()).unwrap();
    assert_eq!(parsed.session.pubky, alice.user.public_key());
    assert_eq!(parsed.session.homeserver, env.homeserver.public_key());
    assert_eq!(parsed.session.grant_id, grant.jti);
    assert_eq!(parsed.session.capabilities, grant.caps);
    assert_eq!(parsed.token.len(), 43);
    assert!(parsed.session.token_expires_at <= now() + 3600);
    assert!(parsed.session.token_expires_at + 5 >= now() + 3600);

    let info = client
        .with_bearer(
            reqwest::Method::GET,
            "/auth/grant/session",
            &token_of(&first),
        )
        .await;
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["grant_id"], first["session"]["grant_id"]);
    assert_eq!(info["capabilities"], json!(["/pub/app/:rw"]));

    // Refresh: a new PoP mints a new bearer and retires the previous one.
    let second = client.bearer(&grant, &alice).await;
    assert_ne!(token_of(&first), token_of(&second));
    snap!(
        "grant_get_session_retired_bearer",
        client
            .with_bearer(
                reqwest::Method::GET,
                "/auth/grant/session",
                &token_of(&first)
            )
            .await
    );
    let ok = client
        .with_bearer(
            reqwest::Method::GET,
            "/auth/grant/session",
            &token_of(&second),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);

    // A PoP is single-use.
    let body = alice.body(&grant);
    assert_eq!(
        client
            .post_json("/auth/grant/session", &body)
            .await
            .status(),
        StatusCode::OK
    );
    snap!(
        "grant_session_nonce_reused",
        client.post_json("/auth/grant/session", &body).await
    );

    // Sign out revokes the whole grant; it cannot be exchanged again.
    let third = client.bearer(&grant, &alice).await;
    let out = client
        .with_bearer(
            reqwest::Method::DELETE,
            "/auth/grant/session",
            &token_of(&third),
        )
        .await;
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(
        client
            .with_bearer(
                reqwest::Method::GET,
                "/auth/grant/session",
                &token_of(&third)
            )
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    snap!(
        "grant_session_revoked",
        client.session(&grant, &alice).await
    );
    // Signing out again, or without any credential, is still 200.
    let again = client
        .with_bearer(
            reqwest::Method::DELETE,
            "/auth/grant/session",
            &token_of(&third),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);

    // Disabled users may sign in: not exercised here (no disable endpoint yet).
    env_finish(server, env).await;
}

async fn env_finish(server: Instance, env: TestEnv) {
    server.stop();
    env.finish().await;
}

#[tokio::test]
async fn grant_proof_logout() {
    let env = TestEnv::start(SignupMode::Open).await;
    let server = env.instance().await;
    let client = Client::new(&server);
    let alice = Signer::new(&env);
    assert_eq!(
        client.signup(&alice, None).await.status(),
        StatusCode::NO_CONTENT
    );

    let grant = alice.app_grant(vec![Capability::read("/pub/app/").unwrap()]);
    let session = client.bearer(&grant, &alice).await;

    // Without a JSON content type the body is ignored.
    let ignored = client
        .http
        .delete(client.url("/auth/grant/session"))
        .body(alice.body(&grant).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ignored.status(), StatusCode::OK);
    let still = client
        .with_bearer(
            reqwest::Method::GET,
            "/auth/grant/session",
            &token_of(&session),
        )
        .await;
    assert_eq!(still.status(), StatusCode::OK);

    let delete_json = |body: String| {
        client
            .http
            .delete(client.url("/auth/grant/session"))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    snap!(
        "logout_invalid_json",
        delete_json("{".into()).await.unwrap()
    );
    snap!(
        "logout_not_compact_jws",
        delete_json(json!({"grant": "a.b", "pop": "x"}).to_string())
            .await
            .unwrap()
    );
    let unknown = alice.app_grant(vec![Capability::root()]);
    snap!(
        "logout_unknown_grant",
        delete_json(alice.body(&unknown).to_string()).await.unwrap()
    );
    let stranger = Signer::new(&env);
    let bad_pop = json!({
        "grant": alice.sign(&grant),
        "pop": sign_jws(&stranger.client, "pubky-pop", &alice.pop_claims(&grant.jti)),
    });
    snap!(
        "logout_bad_pop",
        delete_json(bad_pop.to_string()).await.unwrap()
    );

    let proof = alice.body(&grant).to_string();
    assert_eq!(
        delete_json(proof.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        client
            .with_bearer(
                reqwest::Method::GET,
                "/auth/grant/session",
                &token_of(&session)
            )
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The proof's nonce is used up: a replay is refused and appends nothing.
    let head = server.state.log.head().await.unwrap();
    snap!("logout_proof_replayed", delete_json(proof).await.unwrap());
    assert_eq!(server.state.log.head().await.unwrap(), head);

    // A fresh proof for the already revoked grant still records its nonce (one
    // `GrantRevoked`, a no-op for the grant), so it cannot be replayed either.
    let late = alice.body(&grant).to_string();
    assert_eq!(
        delete_json(late.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let events = events_since(&server, head).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0].change,
        domain::event::Change::GrantRevoked { grant_id, pop_nonce: Some(_) }
            if *grant_id == grant.jti.to_string()
    ));
    assert_eq!(
        error(delete_json(late).await.unwrap()).await,
        "401 PoP nonce already used"
    );

    // A revocation by bearer records no nonce.
    let other = alice.app_grant(vec![Capability::read("/pub/app/").unwrap()]);
    let bearer = token_of(&client.bearer(&other, &alice).await);
    let head = server.state.log.head().await.unwrap();
    let out = client
        .with_bearer(reqwest::Method::DELETE, "/auth/grant/session", &bearer)
        .await;
    assert_eq!(out.status(), StatusCode::OK);
    let events = events_since(&server, head).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0].change,
        domain::event::Change::GrantRevoked {
            pop_nonce: None,
            ..
        }
    ));
    env_finish(server, env).await;
}

#[tokio::test]
async fn grant_listing_and_revocation_by_id() {
    let env = TestEnv::start(SignupMode::Open).await;
    let server = env.instance().await;
    let client = Client::new(&server);
    let alice = Signer::new(&env);
    let bob = Signer::new(&env);
    for signer in [&alice, &bob] {
        assert_eq!(
            client.signup(signer, None).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let root = alice.app_grant(vec![Capability::root()]);
    let app = alice.app_grant(vec![Capability::read_write("/pub/app/").unwrap()]);
    let root_token = token_of(&client.bearer(&root, &alice).await);
    let app_token = token_of(&client.bearer(&app, &alice).await);
    let bob_grant = bob.app_grant(vec![Capability::root()]);
    client.bearer(&bob_grant, &bob).await;

    let list = client
        .with_bearer(reqwest::Method::GET, "/auth/grant/sessions", &root_token)
        .await;
    assert_eq!(list.status(), StatusCode::OK);
    let list: Vec<pubky_common::auth::grant_session_responses::GrantInfo> =
        list.json().await.unwrap();
    let ids: Vec<_> = list.iter().map(|g| g.grant_id.to_string()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&root.jti.to_string()) && ids.contains(&app.jti.to_string()));
    let app_info = list.iter().find(|g| g.grant_id == app.jti).unwrap();
    assert_eq!(app_info.capabilities, "/pub/app/:rw");
    assert_eq!(app_info.client_id, "app.example");
    assert_eq!(
        (app_info.issued_at, app_info.expires_at),
        (app.iat, app.exp)
    );

    let get = reqwest::Method::GET;
    let del = reqwest::Method::DELETE;
    snap!(
        "sessions_no_session",
        client
            .http
            .get(client.url("/auth/grant/sessions"))
            .send()
            .await
            .unwrap()
    );
    snap!(
        "sessions_not_root",
        client
            .with_bearer(get.clone(), "/auth/grant/sessions", &app_token)
            .await
    );
    snap!(
        "revoke_not_root",
        client
            .with_bearer(
                del.clone(),
                &format!("/auth/grant/session/{}", root.jti),
                &app_token
            )
            .await
    );
    snap!(
        "revoke_no_session",
        client
            .http
            .delete(client.url(&format!("/auth/grant/session/{}", app.jti)))
            .send()
            .await
            .unwrap()
    );
    snap!(
        "revoke_bad_id",
        client
            .with_bearer(del.clone(), "/auth/grant/session/not!an*id", &root_token)
            .await
    );
    snap!(
        "revoke_unknown",
        client
            .with_bearer(
                del.clone(),
                "/auth/grant/session/AAAAAAAAAAAAAAAAAAAAAA",
                &root_token
            )
            .await
    );
    snap!(
        "revoke_other_users_grant",
        client
            .with_bearer(
                del.clone(),
                &format!("/auth/grant/session/{}", bob_grant.jti),
                &root_token
            )
            .await
    );

    let revoked = client
        .with_bearer(
            del.clone(),
            &format!("/auth/grant/session/{}", app.jti),
            &root_token,
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        client
            .with_bearer(get.clone(), "/auth/grant/session", &app_token)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let list: Vec<Value> = client
        .with_bearer(get, "/auth/grant/sessions", &root_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    // Revoking twice is fine.
    let again = client
        .with_bearer(
            del,
            &format!("/auth/grant/session/{}", app.jti),
            &root_token,
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    env_finish(server, env).await;
}

#[tokio::test]
async fn grant_error_texts() {
    let env = TestEnv::start(SignupMode::Open).await;
    let server = env.instance().await;
    let client = Client::new(&server);
    let alice = Signer::new(&env);
    assert_eq!(
        client.signup(&alice, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let caps = || vec![Capability::read_write("/pub/app/").unwrap()];

    // Transport-level refusals (axum's texts).
    snap!(
        "session_not_json",
        client
            .http
            .post(client.url("/auth/grant/session"))
            .body("{}")
            .send()
            .await
            .unwrap()
    );
    snap!(
        "session_malformed_json",
        client
            .http
            .post(client.url("/auth/grant/session"))
            .header(CONTENT_TYPE, "application/json")
            .body("{\"grant\":")
            .send()
            .await
            .unwrap()
    );
    snap!(
        "session_missing_pop",
        client
            .post_json("/auth/grant/session", &json!({"grant": "a.b.c"}))
            .await
    );

    // Grant steps 1–4.
    let mut raw = serde_json::to_value(alice.app_grant(caps())).unwrap();
    raw["caps"] = json!(["/pub/app/:x"]);
    let bad_caps = sign_jws(&alice.user, "pubky-grant", &raw);
    let pop = alice.pop(&GrantId::parse(raw["jti"].as_str().unwrap()).unwrap());
    snap!(
        "session_invalid_grant_format",
        client
            .post_json(
                "/auth/grant/session",
                &json!({"grant": bad_caps, "pop": pop})
            )
            .await
    );
    let grant = alice.app_grant(caps());
    let forged = grant.sign(&alice.client, "pubky-grant");
    snap!(
        "session_invalid_grant_signature",
        client
            .post_json(
                "/auth/grant/session",
                &json!({"grant": forged, "pop": alice.pop(&grant.jti)})
            )
            .await
    );
    let wrong_typ = grant.sign(&alice.user, "JWT");
    snap!(
        "session_invalid_grant_typ",
        client
            .post_json(
                "/auth/grant/session",
                &json!({"grant": wrong_typ, "pop": alice.pop(&grant.jti)})
            )
            .await
    );
    let mut expired = alice.app_grant(caps());
    expired.exp = now() - 1;
    snap!(
        "session_grant_expired",
        client.session(&expired, &alice).await
    );

    // PoP (step 6).
    let grant = alice.app_grant(caps());
    let pop_with = |claims: &PopProofClaims, typ: &str| {
        json!({
            "grant": alice.sign(&grant),
            "pop": sign_jws(&alice.client, typ, claims),
        })
    };
    let mut claims = alice.pop_claims(&grant.jti);
    snap!(
        "session_pop_typ",
        client
            .post_json("/auth/grant/session", &pop_with(&claims, "pubky-grant"))
            .await
    );
    claims.aud = Keypair::random().public_key();
    snap!(
        "session_pop_audience",
        client
            .post_json("/auth/grant/session", &pop_with(&claims, "pubky-pop"))
            .await
    );
    let mut claims = alice.pop_claims(&grant.jti);
    claims.gid = GrantId::generate();
    snap!(
        "session_pop_grant_id",
        client
            .post_json("/auth/grant/session", &pop_with(&claims, "pubky-pop"))
            .await
    );
    let mut claims = alice.pop_claims(&grant.jti);
    claims.iat = now() - 181;
    snap!(
        "session_pop_stale",
        client
            .post_json("/auth/grant/session", &pop_with(&claims, "pubky-pop"))
            .await
    );
    let stranger = Signer::new(&env);
    let claims = alice.pop_claims(&grant.jti);
    let foreign_pop = json!({
        "grant": alice.sign(&grant),
        "pop": sign_jws(&stranger.client, "pubky-pop", &claims),
    });
    snap!(
        "session_pop_signature",
        client.post_json("/auth/grant/session", &foreign_pop).await
    );

    // Unknown user (step 8).
    let nobody = Signer::new(&env);
    snap!(
        "session_unknown_user",
        client.session(&nobody.app_grant(caps()), &nobody).await
    );

    // A grant id that already belongs to another user.
    let bob = Signer::new(&env);
    assert_eq!(
        client.signup(&bob, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let alices = alice.app_grant(caps());
    client.bearer(&alices, &alice).await;
    let mut copied = bob.app_grant(caps());
    copied.jti = alices.jti.clone();
    snap!(
        "session_foreign_grant_id",
        client.session(&copied, &bob).await
    );

    // Signup-only rules.
    let carol = Signer::new(&env);
    let mut wrong_client = carol.signup_grant();
    wrong_client.client_id = ClientId::new("app.example").unwrap();
    let signup = async |claims: &GrantClaims| {
        client
            .post_json("/auth/grant/signup", &carol.body(claims))
            .await
    };
    snap!("signup_wrong_client_id", signup(&wrong_client).await);
    let mut not_root = carol.signup_grant();
    not_root.caps = caps();
    snap!("signup_not_root", signup(&not_root).await);
    let mut future = carol.signup_grant();
    future.iat = now() + 600;
    future.exp = future.iat + 60;
    snap!("signup_iat_future", signup(&future).await);
    let mut long = carol.signup_grant();
    long.exp = long.iat + 301;
    snap!("signup_lifetime", signup(&long).await);
    snap!(
        "signup_malformed_token",
        client
            .post_json(
                "/auth/grant/signup?signup_token=nope",
                &carol.body(&carol.signup_grant())
            )
            .await
    );

    // Bearer-only and cookie-only routes.
    snap!(
        "grant_get_session_no_session",
        client
            .http
            .get(client.url("/auth/grant/session"))
            .send()
            .await
            .unwrap()
    );
    env_finish(server, env).await;
}

#[tokio::test]
async fn cookie_signup_signin_signout() {
    let env = TestEnv::start(SignupMode::Open).await;
    let server = env.instance().await;
    let client = Client::new(&server);
    let alice = Signer::new(&env);
    let z32 = alice.z32();
    let root = [Capability::root()];

    // Signup on a dotted host with a port: Secure and SameSite=None.
    let head = server.state.log.head().await.unwrap();
    let response = client
        .post_bytes("/signup", "example.com:8080", alice.auth_token(&root))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // One request, one event: the account and its session.
    let events = events_since(&server, head).await;
    assert_eq!(events.len(), 1, "one request, one event: {events:?}");
    let domain::event::Change::UserSignedUp {
        cookie_session: Some(started),
        pop_nonce: None,
        ..
    } = &events[0].change
    else {
        panic!("not a cookie signup: {:?}", events[0]);
    };
    assert_eq!(started.capabilities, "/:rw");
    assert!(started.auth_token_id.starts_with("authtoken:"));
    assert_eq!(response.headers()[CONTENT_TYPE], "application/octet-stream");
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let (pair, attributes) = set_cookie.split_once("; ").unwrap();
    assert_eq!(pair.len(), 52 + 1 + 26);
    assert!(pair.starts_with(&format!("{z32}=")));
    assert!(
        attributes
            .starts_with("HttpOnly; SameSite=None; Secure; Path=/; Max-Age=31536000; Expires="),
        "{attributes}"
    );
    let cookie = pair.to_owned();
    let record = CookieSessionRecord::deserialize(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(record.public_key(), &alice.user.public_key());
    assert_eq!(record.capabilities(), &root[..]);
    assert!(
        record.created_at() > now() * 1_000_000 - 60_000_000,
        "microseconds"
    );

    // GET /session: seconds.
    let response = client
        .with_cookie(reqwest::Method::GET, &z32, &cookie)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let record = CookieSessionRecord::deserialize(&response.bytes().await.unwrap()).unwrap();
    assert!(record.created_at() <= now() && record.created_at() + 60 > now());

    // Signin on localhost: no Secure/SameSite; capabilities come from the token.
    let scoped = [Capability::read_write("/pub/app/").unwrap()];
    let response = client
        .post_bytes("/session", "localhost:6286", alice.auth_token(&scoped))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("; HttpOnly; Path=/; Max-Age=31536000; Expires="));
    assert!(!set_cookie.contains("Secure"));
    let second = cookie_pair(&response);
    let record = CookieSessionRecord::deserialize(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(record.capabilities(), &scoped[..]);

    // Errors.
    let token = alice.auth_token(&root);
    assert_eq!(
        client
            .post_bytes("/session", "localhost", token.clone())
            .await
            .status(),
        StatusCode::OK
    );
    snap!(
        "cookie_signin_replayed",
        client.post_bytes("/session", "localhost", token).await
    );
    let nobody = Signer::new(&env);
    snap!(
        "cookie_signin_unknown_user",
        client
            .post_bytes("/session", "localhost", nobody.auth_token(&root))
            .await
    );
    snap!(
        "cookie_signup_user_exists",
        client
            .post_bytes("/signup", "localhost", alice.auth_token(&root))
            .await
    );
    snap!(
        "cookie_signin_short_body",
        client
            .post_bytes("/session", "localhost", vec![0; 10])
            .await
    );
    let mut version = alice.auth_token(&root);
    version[74] = 1;
    snap!(
        "cookie_signin_unknown_version",
        client.post_bytes("/session", "localhost", version).await
    );
    let mut tampered = alice.auth_token(&root);
    let last = tampered.len() - 1;
    tampered[last] = b'r'; // "/:rr" still parses, but is not what was signed
    snap!(
        "cookie_signin_bad_signature",
        client.post_bytes("/session", "localhost", tampered).await
    );
    let mut bad_caps = alice.auth_token(&root);
    bad_caps[last] = b'x'; // "/:rx"
    snap!(
        "cookie_signin_bad_capabilities",
        client.post_bytes("/session", "localhost", bad_caps).await
    );
    snap!(
        "cookie_get_session_none",
        client
            .with_cookie(reqwest::Method::GET, &z32, "other=1")
            .await
    );

    // A bearer session is not a cookie session.
    let grant = alice.app_grant(vec![Capability::root()]);
    let bearer = token_of(&client.bearer(&grant, &alice).await);
    snap!(
        "cookie_get_session_with_bearer",
        client
            .http
            .get(client.url("/session"))
            .header("pubky-host", &z32)
            .header(AUTHORIZATION, format!("Bearer {bearer}"))
            .send()
            .await
            .unwrap()
    );
    // ... and a cookie session is not a grant session.
    snap!(
        "grant_get_session_with_cookie",
        client
            .http
            .get(client.url("/auth/grant/session"))
            .header("pubky-host", &z32)
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap()
    );
    // A root cookie session may list grants.
    let list = client
        .http
        .get(client.url("/auth/grant/sessions"))
        .header("pubky-host", &z32)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);

    // Signout ends only that session and always sets a removal cookie.
    let out = client
        .http
        .delete(client.url("/session"))
        .header(HOST, "example.com")
        .header("pubky-host", &z32)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let removal = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        removal.starts_with(&format!(
            "{z32}=; HttpOnly; SameSite=None; Secure; Path=/; Max-Age=0; Expires="
        )),
        "{removal}"
    );
    assert_eq!(
        client
            .with_cookie(reqwest::Method::GET, &z32, &cookie)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client
            .with_cookie(reqwest::Method::GET, &z32, &second)
            .await
            .status(),
        StatusCode::OK
    );
    let again = client
        .with_cookie(reqwest::Method::DELETE, &z32, &cookie)
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    snap!(
        "cookie_signout_no_tenant",
        client
            .http
            .delete(client.url("/session"))
            .header(HOST, "localhost")
            .send()
            .await
            .unwrap()
    );
    env_finish(server, env).await;
}

#[tokio::test]
async fn auth_token_replay_is_refused_across_instances_and_restarts() {
    let env = TestEnv::start(SignupMode::Open).await;
    let a = env.instance().await;
    let b = env.instance().await;
    let (ca, cb) = (Client::new(&a), Client::new(&b));
    let alice = Signer::new(&env);
    let root = [Capability::root()];

    let signup = alice.auth_token(&root);
    assert_eq!(
        ca.post_bytes("/signup", "localhost", signup.clone())
            .await
            .status(),
        StatusCode::OK
    );
    snap!(
        "replay_signup_other_instance",
        cb.post_bytes("/signup", "localhost", signup.clone()).await
    );
    let signin = alice.auth_token(&root);
    assert_eq!(
        cb.post_bytes("/session", "localhost", signin.clone())
            .await
            .status(),
        StatusCode::OK
    );
    snap!(
        "replay_signin_other_instance",
        ca.post_bytes("/session", "localhost", signin.clone()).await
    );

    // Both instances race the same fresh token: exactly one wins.
    let racing = alice.auth_token(&root);
    let (ra, rb) = tokio::join!(
        ca.post_bytes("/session", "localhost", racing.clone()),
        cb.post_bytes("/session", "localhost", racing.clone())
    );
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);

    // Same for PoPs.
    let grant = alice.app_grant(vec![Capability::root()]);
    let body = alice.body(&grant);
    let (ra, rb) = tokio::join!(
        ca.post_json("/auth/grant/session", &body),
        cb.post_json("/auth/grant/session", &body)
    );
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);

    // Restart: every instance goes away, a new one still refuses the used tokens.
    a.stop();
    b.stop();
    let c = env.instance().await;
    let cc = Client::new(&c);
    for token in [signup, signin, racing] {
        let response = cc.post_bytes("/session", "localhost", token).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.text().await.unwrap(), "AuthToken already used");
    }
    let response = cc.post_json("/auth/grant/session", &body).await;
    assert_eq!(response.text().await.unwrap(), "PoP nonce already used");
    env_finish(c, env).await;
}

#[tokio::test]
async fn signup_tokens() {
    let env = TestEnv::start(SignupMode::TokenRequired).await;
    let server = env.instance().await;
    let client = Client::new(&server);
    let limits = domain::event::UserLimits {
        storage: Some(domain::event::StorageLimit::Megabytes(7)),
        ..Default::default()
    };
    let token =
        hs_write_api::mint_signup_token(&server.state, limits, uuid::Uuid::now_v7().to_string())
            .await
            .unwrap();
    assert_eq!(token.len(), 14);

    let status = client
        .http
        .get(client.url(&format!("/signup_tokens/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    assert_eq!(status.headers()["cache-control"], "no-store");
    let status: Value = status.json().await.unwrap();
    assert_eq!(status["status"], "valid");
    assert!(status["created_at"].as_str().unwrap().ends_with('Z'));

    let alice = Signer::new(&env);
    snap!("token_missing", client.signup(&alice, None).await);
    snap!(
        "token_unknown",
        client.signup(&alice, Some("AAAA-BBBB-CCCC")).await
    );
    snap!(
        "token_malformed",
        client.signup(&alice, Some("AAAA-BBBB-CCC")).await
    );
    assert_eq!(
        client.signup(&alice, Some(&token)).await.status(),
        StatusCode::NO_CONTENT
    );
    let user = server
        .state
        .store
        .user(&domain::PublicKey::try_from(alice.z32().as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.storage_quota_mb, Some(7));

    let status: Value = client
        .http
        .get(client.url(&format!("/signup_tokens/{token}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "used");
    let bob = Signer::new(&env);
    snap!("token_used", client.signup(&bob, Some(&token)).await);
    snap!(
        "token_user_exists",
        client.signup(&alice, Some(&token)).await
    );
    snap!(
        "cookie_token_missing",
        client
            .post_bytes(
                "/signup",
                "localhost",
                bob.auth_token(&[Capability::root()])
            )
            .await
    );
    let get = |t: &str| {
        client
            .http
            .get(client.url(&format!("/signup_tokens/{t}")))
            .send()
    };
    snap!("token_status_unknown", get("AAAA-BBBB-CCCC").await.unwrap());
    snap!("token_status_malformed", get("AAAA").await.unwrap());

    // One token, two new users, two instances, at once: exactly one signs up.
    let other = env.instance().await;
    let other_client = Client::new(&other);
    let token = hs_write_api::mint_signup_token(
        &server.state,
        Default::default(),
        uuid::Uuid::now_v7().to_string(),
    )
    .await
    .unwrap();
    let (carol, dave) = (Signer::new(&env), Signer::new(&env));
    let (rc, rd) = tokio::join!(
        client.signup(&carol, Some(&token)),
        other_client.signup(&dave, Some(&token))
    );
    let mut statuses = [rc.status(), rd.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED]);
    other.stop();
    env_finish(server, env).await;
}

#[tokio::test]
async fn signup_token_status_in_open_mode() {
    let env = TestEnv::start(SignupMode::Open).await;
    let server = env.instance().await;
    let client = Client::new(&server);
    snap!(
        "token_status_open_mode",
        client
            .http
            .get(client.url("/signup_tokens/AAAA-BBBB-CCCC"))
            .send()
            .await
            .unwrap()
    );
    // Tokens are ignored in open mode, even unknown ones.
    let alice = Signer::new(&env);
    assert_eq!(
        client.signup(&alice, Some("AAAA-BBBB-CCCC")).await.status(),
        StatusCode::NO_CONTENT
    );
    env_finish(server, env).await;
}
