//! The published Pubky SDK (`pubky` 0.17.1, from crates.io) against our homeserver.
//!
//! Our own tests speak our wire format the way we understand it; only a client we did
//! not write shows whether real Pubky apps work against this server. Each test starts a
//! private Mainline DHT on loopback, our homeserver publishing its PKARR packet there,
//! and an SDK client that knows nothing but that DHT — so discovery (`_pubky` records,
//! the homeserver's HTTPS record), Pubky TLS (raw public key), grant auth with PoP and
//! the storage API are all exercised exactly as an app would, fully offline.
//!
//! Every test is bounded: the SDK has a per-request timeout and every scenario runs
//! under [`within`].

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::sdk::{Dht, client_id, new_user, sdk_key, start_on, within};
use pubky::errors::RequestError;
use pubky::{AuthFlowKind, Capabilities, PubkyGrantAuthFlow};

/// Upper bound of one whole scenario.
const SCENARIO: Duration = Duration::from_secs(60);

/// The HTTP status of an SDK error, if the server answered at all.
fn status_of(error: &pubky::Error) -> Option<u16> {
    match error {
        pubky::Error::Request(RequestError::Server { status, .. }) => Some(status.as_u16()),
        _ => None,
    }
}

fn expect_status<T: std::fmt::Debug>(result: pubky::Result<T>, allowed: &[u16], what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected an HTTP error {allowed:?}, got {value:?}"),
        Err(error) => {
            let status = status_of(&error);
            assert!(
                status.is_some_and(|s| allowed.contains(&s)),
                "{what}: expected {allowed:?}, got {error}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_signup_signin_put_get_list_delete_over_pubky_tls() {
    within(SCENARIO, "storage round trip", async {
        let started = Instant::now();
        let dht = Dht::start().await;
        let hs = start_on(&dht, |_| {}).await;
        let pubky = dht.sdk();
        let signer = pubky.signer(pubky::Keypair::random());
        let user = signer.public_key();

        signer
            .signup(&sdk_key(&hs.server.public_key), None)
            .await
            .expect("signup");
        // The SDK published the user's `_pubky` record pointing at our server.
        let found = pubky.get_homeserver_of(&user).await.expect("user resolves");
        assert_eq!(found, Some(sdk_key(&hs.server.public_key)));

        let session = signer
            .signin_blocking(client_id("interop.test"))
            .await
            .expect("signin");
        assert_eq!(session.public_key(), user);
        assert!(
            session
                .info()
                .capabilities()
                .iter()
                .any(|cap| cap.is_root()),
            "a signin session has root capabilities: {:?}",
            session.info().capabilities()
        );

        let storage = session.storage();
        storage
            .put("/pub/interop.test/a.txt", "hello")
            .await
            .expect("put a");
        storage
            .put("/pub/interop.test/b.txt", "world!")
            .await
            .expect("put b");
        storage
            .put("/pub/interop.test/sub/c.txt", "c")
            .await
            .expect("put c");

        let body = storage
            .get("/pub/interop.test/a.txt")
            .await
            .expect("get a")
            .text()
            .await
            .expect("body of a");
        assert_eq!(body, "hello");

        let listed: Vec<String> = storage
            .list("/pub/interop.test/")
            .expect("list builder")
            .send()
            .await
            .expect("list")
            .into_iter()
            .map(|resource| {
                assert_eq!(resource.owner, user);
                resource.path.to_string()
            })
            .collect();
        assert_eq!(
            listed,
            [
                "/pub/interop.test/a.txt",
                "/pub/interop.test/b.txt",
                "/pub/interop.test/sub/c.txt"
            ]
        );
        let shallow: Vec<String> = storage
            .list("/pub/interop.test/")
            .expect("list builder")
            .shallow(true)
            .send()
            .await
            .expect("shallow list")
            .into_iter()
            .map(|resource| resource.path.to_string())
            .collect();
        assert_eq!(
            shallow,
            [
                "/pub/interop.test/a.txt",
                "/pub/interop.test/b.txt",
                "/pub/interop.test/sub/"
            ]
        );

        let stats = storage
            .stats("/pub/interop.test/b.txt")
            .await
            .expect("stats")
            .expect("b exists");
        assert_eq!(stats.content_length, Some(6));
        assert!(stats.etag.is_some(), "an ETag: {stats:?}");
        assert!(stats.last_modified.is_some(), "a Last-Modified: {stats:?}");

        assert!(
            storage
                .exists("/pub/interop.test/a.txt")
                .await
                .expect("exists a")
        );
        storage
            .delete("/pub/interop.test/a.txt")
            .await
            .expect("delete a");
        assert!(
            !storage
                .exists("/pub/interop.test/a.txt")
                .await
                .expect("exists a after delete")
        );
        assert!(
            storage
                .stats("/pub/interop.test/a.txt")
                .await
                .expect("stats")
                .is_none()
        );
        expect_status(
            storage.get("/pub/interop.test/a.txt").await,
            &[404],
            "get after delete",
        );
        eprintln!("storage round trip over Pubky TLS: {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_signup_with_token_in_token_required_mode() {
    within(SCENARIO, "token signup", async {
        let dht = Dht::start().await;
        let hs = start_on(&dht, |config| {
            config.signup_mode = api::SignupMode::TokenRequired;
        })
        .await;
        let pubky = dht.sdk();
        let server = sdk_key(&hs.server.public_key);

        let without = pubky.signer(pubky::Keypair::random());
        expect_status(
            without.signup(&server, None).await,
            &[400, 401, 403],
            "signup without a token",
        );
        expect_status(
            without.signup(&server, Some("AAAA-BBBB-CCCC")).await,
            &[400, 401, 403, 404],
            "signup with an unknown token",
        );

        let token = write_api::mint_signup_token(
            &hs.server.state,
            Default::default(),
            uuid::Uuid::now_v7().to_string(),
        )
        .await
        .expect("mint a signup token");
        let signer = pubky.signer(pubky::Keypair::random());
        signer
            .signup(&server, Some(&token))
            .await
            .expect("signup with a fresh token");
        let session = signer
            .signin_blocking(client_id("interop.test"))
            .await
            .expect("signin after token signup");
        session
            .storage()
            .put("/pub/interop.test/hello.txt", "hi")
            .await
            .expect("put");

        let again = pubky.signer(pubky::Keypair::random());
        expect_status(
            again.signup(&server, Some(&token)).await,
            &[400, 401, 403, 409],
            "second signup with a used token",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_public_reads_are_anonymous_and_private_data_is_refused() {
    within(SCENARIO, "public and private reads", async {
        let dht = Dht::start().await;
        let hs = start_on(&dht, |_| {}).await;
        let (_signer, session) = new_user(&dht.sdk(), &hs.server.public_key).await;
        let user = session.public_key();
        let storage = session.storage();
        storage
            .put("/pub/interop.test/profile.json", r#"{"name":"alice"}"#)
            .await
            .expect("put public");
        storage
            .put("/priv/interop.test/secret.txt", "s3cret")
            .await
            .expect("put private");
        // The owner reads its private data back with its session.
        let own = storage
            .get("/priv/interop.test/secret.txt")
            .await
            .expect("owner reads private")
            .text()
            .await
            .expect("body");
        assert_eq!(own, "s3cret");

        // A different client with no session at all.
        let anonymous = dht.sdk();
        let public = anonymous.public_storage();
        let body = public
            .get(format!("pubky{}/pub/interop.test/profile.json", user.z32()))
            .await
            .expect("anonymous public get")
            .text()
            .await
            .expect("body");
        assert_eq!(body, r#"{"name":"alice"}"#);
        let listed = public
            .list(format!("pubky{}/pub/interop.test/", user.z32()))
            .expect("list builder")
            .send()
            .await
            .expect("anonymous public list");
        assert_eq!(listed.len(), 1);

        expect_status(
            public
                .get(format!("pubky{}/priv/interop.test/secret.txt", user.z32()))
                .await,
            &[401, 403, 404],
            "anonymous private get",
        );
        expect_status(
            public
                .get(format!("pubky{}/priv/interop.test/missing.txt", user.z32()))
                .await,
            &[401, 403, 404],
            "anonymous private get of a missing file",
        );
        assert!(
            !public
                .exists(format!("pubky{}/priv/interop.test/secret.txt", user.z32()))
                .await
                .unwrap_or(false),
            "anonymous HEAD must not reveal private files"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_third_party_app_grant_flow_is_scoped() {
    within(SCENARIO, "grant auth flow", async {
        let dht = Dht::start().await;
        let hs = start_on(&dht, |_| {}).await;
        let relay = http_relay::HttpRelay::builder()
            .http_port(0)
            .run()
            .await
            .expect("local http relay");
        let inbox = relay.local_url().join("inbox").expect("inbox url");

        // The user, on their key manager.
        let (signer, _own_session) = new_user(&dht.sdk(), &hs.server.public_key).await;
        let user = signer.public_key();

        // The app asks for read/write on its own folder only.
        let app = dht.sdk();
        let caps = Capabilities::builder()
            .read_write("/pub/app.example/")
            .expect("capability")
            .finish();
        let flow =
            PubkyGrantAuthFlow::builder(&caps, AuthFlowKind::signin(), client_id("app.example"))
                .client(app.client().clone())
                .relay(inbox)
                .start()
                .expect("flow starts");
        let url = flow.authorization_url();
        let approving = tokio::spawn(async move { signer.approve_auth(url.as_str()).await });
        let app_session = flow.await_approval().await.expect("app session");
        approving
            .await
            .expect("approve task")
            .expect("approve_auth");

        assert_eq!(app_session.public_key(), user);
        let granted: Vec<String> = app_session
            .info()
            .capabilities()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(granted, ["/pub/app.example/:rw"]);

        let storage = app_session.storage();
        storage
            .put("/pub/app.example/settings.json", "{}")
            .await
            .expect("write inside the granted scope");
        assert_eq!(
            storage
                .get("/pub/app.example/settings.json")
                .await
                .expect("read inside scope")
                .text()
                .await
                .expect("body"),
            "{}"
        );
        expect_status(
            storage.put("/pub/other.app/x.txt", "no").await,
            &[401, 403],
            "write outside the granted scope",
        );
        expect_status(
            storage.put("/priv/app.example/x.txt", "no").await,
            &[401, 403],
            "write to the private tree outside the scope",
        );
        // (`..` tricks cannot be tried through the SDK: it refuses such paths itself.)
        let _ = relay.shutdown().await;
    })
    .await;
}

/// An event as the test compares it: type, path, cursor, content hash of a PUT.
fn summary(event: &pubky::Event) -> (String, String, u64, Option<[u8; 32]>) {
    let hash = match &event.event_type {
        pubky::EventType::Put { content_hash } => Some(*content_hash.as_bytes()),
        pubky::EventType::Delete => None,
    };
    (
        event.event_type.as_str().to_string(),
        event.resource.path.to_string(),
        event.cursor.id(),
        hash,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_live_and_batch_event_streams() {
    use futures::StreamExt;
    within(SCENARIO, "event streams", async {
        let dht = Dht::start().await;
        let hs = start_on(&dht, |_| {}).await;
        let pubky = dht.sdk();
        let (_signer, session) = new_user(&pubky, &hs.server.public_key).await;
        let user = session.public_key();

        // Subscribed before the writes: `subscribe()` returns once the headers are in,
        // and nothing written afterwards may be missed.
        let mut live = pubky
            .event_stream_for_user(&user, None)
            .live()
            .subscribe()
            .await
            .expect("live subscription");

        let storage = session.storage();
        storage
            .put("/pub/interop.test/a.txt", "A")
            .await
            .expect("put a");
        storage
            .put("/pub/interop.test/b.txt", "BB")
            .await
            .expect("put b");
        storage
            .delete("/pub/interop.test/a.txt")
            .await
            .expect("delete a");

        let mut seen = Vec::new();
        while seen.len() < 3 {
            let event = tokio::time::timeout(Duration::from_secs(10), live.next())
                .await
                .expect("a live event within 10 s")
                .expect("the stream stays open")
                .expect("a well-formed event");
            assert_eq!(event.resource.owner, user);
            seen.push(summary(&event));
        }
        drop(live);
        let expected_shape: Vec<(&str, &str, Option<[u8; 32]>)> = vec![
            (
                "PUT",
                "/pub/interop.test/a.txt",
                Some(*blake3::hash(b"A").as_bytes()),
            ),
            (
                "PUT",
                "/pub/interop.test/b.txt",
                Some(*blake3::hash(b"BB").as_bytes()),
            ),
            ("DEL", "/pub/interop.test/a.txt", None),
        ];
        let shape: Vec<_> = seen
            .iter()
            .map(|(kind, path, _, hash)| (kind.as_str(), path.as_str(), *hash))
            .collect();
        assert_eq!(shape, expected_shape);
        assert!(
            seen.windows(2).all(|pair| pair[0].2 < pair[1].2),
            "cursors increase: {seen:?}"
        );

        // Batch (not live): the same history, and the stream ends by itself.
        let batch: Vec<_> = tokio::time::timeout(
            Duration::from_secs(10),
            pubky
                .event_stream_for_user(&user, None)
                .subscribe()
                .await
                .expect("batch subscription")
                .collect::<Vec<_>>(),
        )
        .await
        .expect("a batch stream ends")
        .into_iter()
        .map(|event| summary(&event.expect("a well-formed event")))
        .collect();
        assert_eq!(batch, seen);

        // From a cursor: only what came after it.
        let after_first: Vec<_> = pubky
            .event_stream_for_user(&user, Some(pubky::EventCursor::new(seen[0].2)))
            .subscribe()
            .await
            .expect("batch from a cursor")
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|event| summary(&event.expect("a well-formed event")))
            .collect();
        assert_eq!(after_first, seen[1..]);

        // A limit caps a batch.
        let limited = pubky
            .event_stream_for_user(&user, None)
            .limit(1)
            .subscribe()
            .await
            .expect("limited batch")
            .collect::<Vec<_>>()
            .await;
        assert_eq!(limited.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_session_refresh_revalidate_and_signout() {
    within(SCENARIO, "session lifecycle", async {
        let dht = Dht::start().await;
        let hs = start_on(&dht, |_| {}).await;
        let (_signer, session) = new_user(&dht.sdk(), &hs.server.public_key).await;
        let user = session.public_key();

        let info = session
            .revalidate()
            .await
            .expect("revalidate")
            .expect("the session is alive");
        assert_eq!(info.public_key(), &user);

        let grant = session.as_grant().expect("a grant session");
        let before = grant.current_bearer().await;
        let after = grant.force_refresh().await.expect("refresh the bearer");
        assert_ne!(before, after, "a refresh issues a new bearer token");
        session
            .storage()
            .put("/pub/interop.test/after-refresh.txt", "ok")
            .await
            .expect("write with the refreshed bearer");
        assert!(
            session
                .revalidate()
                .await
                .expect("revalidate after refresh")
                .is_some()
        );

        // The bearer that the session holds now, to check it is dead after signout.
        let bearer = session.as_grant().expect("grant").current_bearer().await;
        let put_with = |token: String| {
            hs.http
                .put(hs.url(&format!("/storage/{}/pub/interop.test/raw.txt", user.z32())))
                .bearer_auth(token)
                .body("raw")
                .send()
        };
        let alive = put_with(bearer.clone()).await.expect("raw put");
        assert!(
            alive.status().is_success(),
            "bearer works before signout: {}",
            alive.status()
        );

        session
            .signout()
            .await
            .map_err(|(e, _)| e)
            .expect("signout");
        let dead = put_with(bearer).await.expect("raw put after signout");
        assert!(
            dead.status() == 401 || dead.status() == 403,
            "bearer refused after signout: {}",
            dead.status()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_two_homeservers_side_by_side() {
    within(SCENARIO, "two homeservers", async {
        let dht = Dht::start().await;
        let one = start_on(&dht, |_| {}).await;
        let two = start_on(&dht, |_| {}).await;
        assert_ne!(one.server.public_key, two.server.public_key);
        let pubky = dht.sdk();
        let (_a, alice) = new_user(&pubky, &one.server.public_key).await;
        let (_b, bob) = new_user(&pubky, &two.server.public_key).await;

        alice
            .storage()
            .put("/pub/interop.test/who.txt", "alice")
            .await
            .expect("alice writes");
        bob.storage()
            .put("/pub/interop.test/who.txt", "bob")
            .await
            .expect("bob writes");

        // Each user resolves to their own server, and anyone reads each from there.
        let reader = dht.sdk();
        for (session, server, expected) in [(&alice, &one, "alice"), (&bob, &two, "bob")] {
            let user = session.public_key();
            assert_eq!(
                reader.get_homeserver_of(&user).await.expect("resolves"),
                Some(sdk_key(&server.server.public_key))
            );
            let body = reader
                .public_storage()
                .get(format!("pubky{}/pub/interop.test/who.txt", user.z32()))
                .await
                .expect("public read")
                .text()
                .await
                .expect("body");
            assert_eq!(body, expected);
        }

        // Each server holds only its own user's data (asked over its plain listener).
        for (server, own, other) in [(&one, &alice, &bob), (&two, &bob, &alice)] {
            let path = |user: &pubky::PubkySession| {
                server.url(&format!(
                    "/storage/{}/pub/interop.test/who.txt",
                    user.public_key().z32()
                ))
            };
            let mine = server.http.get(path(own)).send().await.expect("get own");
            assert_eq!(mine.status(), 200);
            let theirs = server
                .http
                .get(path(other))
                .send()
                .await
                .expect("get other");
            assert_eq!(
                theirs.status(),
                404,
                "a user of the other server is unknown here"
            );
        }
    })
    .await;
}

/// `homeserver all` as its own process (the deployment shape), driven by the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_against_homeserver_child_process() {
    within(SCENARIO, "child process homeserver", async {
        let dht = Dht::start().await;
        let env = testkit::TestEnv::new().await;
        let data = tempfile::tempdir().expect("tempdir");
        let mut child = ChildServer(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
                .arg("all")
                .env("DATABASE_URL", &env.database_url)
                .env("NATS_URL", &env.nats_url)
                .env("HOMESERVER_NATS_STREAM", &env.log.stream)
                .env("HOMESERVER_NATS_SUBJECT_PREFIX", &env.log.subject_prefix)
                .env("HOMESERVER_DATA_DIR", data.path())
                .env("PUBKY_DHT_BOOTSTRAP", dht.bootstrap().join(","))
                .env("HOMESERVER_HTTP_LISTEN", "127.0.0.1:0")
                .env("HOMESERVER_TLS_LISTEN", "127.0.0.1:0")
                .env("HOMESERVER_SIGNUP_MODE", "open")
                .env("HOMESERVER_DHT_REQUEST_TIMEOUT_MS", "200")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn homeserver"),
        );
        let key = wait_for_public_key(data.path(), &mut child.0).await;

        let pubky = dht.sdk();
        let (_signer, session) = new_user(&pubky, &key).await;
        session
            .storage()
            .put("/pub/interop.test/split.txt", "from the SDK")
            .await
            .expect("put");
        let body = pubky
            .public_storage()
            .get(format!(
                "pubky{}/pub/interop.test/split.txt",
                session.public_key().z32()
            ))
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert_eq!(body, "from the SDK");
        child.stop().await;
    })
    .await;
}

/// Kills the child if the test panics.
struct ChildServer(tokio::process::Child);

impl ChildServer {
    async fn stop(&mut self) {
        let _ = self.0.start_kill();
        let _ = self.0.wait().await;
    }
}

/// Waits for `<data dir>/public_key` (written after the first PKARR publish).
async fn wait_for_public_key(dir: &Path, child: &mut tokio::process::Child) -> domain::PublicKey {
    let file = dir.join("public_key");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(key) = domain::PublicKey::try_from(text.trim())
        {
            return key;
        }
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("homeserver exited before publishing: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no {} after 30 s",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The republisher runs rounds over the users in Postgres and stops with the server.
/// (What a round publishes is covered by `pkarr-publish`'s own DHT tests; here we check
/// the wiring: the user list query, and that shutdown cancels the loop promptly.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republisher_lists_users_and_stops_with_the_server() {
    within(SCENARIO, "republisher wiring", async {
        let dht = Dht::start().await;
        let hs = start_on(&dht, |config| {
            config.republish_initial_delay_secs = 0;
            config.republish_interval_secs = 1;
            config.republish_jitter_secs = 0;
        })
        .await;
        let (_signer, session) = new_user(&dht.sdk(), &hs.server.public_key).await;
        let keys = hs.server.state.store.user_keys().await.expect("user keys");
        assert_eq!(keys, [session.public_key().into_inner()]);

        // Let a few rounds run (1 s apart), then the user must still resolve to us.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let found = dht
            .sdk()
            .get_homeserver_of(&session.public_key())
            .await
            .expect("resolves");
        assert_eq!(found, Some(sdk_key(&hs.server.public_key)));

        let stopping = Instant::now();
        hs.server.shutdown().await;
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "shutdown waited {:?} (republisher not cancelled?)",
            stopping.elapsed()
        );
    })
    .await;
}
