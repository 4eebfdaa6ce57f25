//! A whole homeserver in the test process, on its own database and log namespace, and
//! users with bearer sessions made by appending the same events the auth endpoints do.

#![allow(dead_code)]

pub mod drill;
pub mod sdk;
pub mod split;

use domain::event::{Change, Digest, UserLimits};
use domain::secret::BearerToken;
use domain::{Event, EventSeq, Keypair};
use homeserver::Homeserver;
use homeserver::config::Config;
use log::Expected;

pub struct TestServer {
    pub server: Homeserver,
    pub env: testkit::TestEnv,
    pub config: Config,
    pub keypair: Keypair,
    pub http: reqwest::Client,
    _data: tempfile::TempDir,
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestServer {
    start_on(testkit::TestEnv::new().await, configure).await
}

/// [`start_with`] on `env` (a database on a Postgres cluster of the test's own, say).
pub async fn start_on(env: testkit::TestEnv, configure: impl FnOnce(&mut Config)) -> TestServer {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        database_url: env.database_url.clone(),
        nats_url: env.nats_url.clone(),
        nats_stream: env.log.stream.clone(),
        nats_subject_prefix: env.log.subject_prefix.clone(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        tls_listen: ([127, 0, 0, 1], 0).into(),
        signup_mode: api::SignupMode::Open,
        ..Config::default()
    };
    configure(&mut config);
    let keypair = Keypair::random();
    // Where `homeserver` keeps it, for the commands that read it (backup).
    pkarr_publish::identity::load_or_install(&config.data_dir, || keypair.clone()).expect("key");
    let server = homeserver::start_all(&config, &keypair)
        .await
        .expect("homeserver starts");
    TestServer {
        server,
        env,
        config,
        keypair,
        http: reqwest::Client::new(),
        _data: data,
    }
}

/// A [`TestServer`] after shutdown: its database, log, key and data directory.
pub struct StoppedServer {
    pub env: testkit::TestEnv,
    pub config: Config,
    pub keypair: Keypair,
    http: reqwest::Client,
    _data: tempfile::TempDir,
}

impl StoppedServer {
    /// A new homeserver on the same database, log, key and data directory.
    pub async fn start(self) -> TestServer {
        let StoppedServer {
            env,
            config,
            keypair,
            http,
            _data,
        } = self;
        let server = homeserver::start_all(&config, &keypair)
            .await
            .expect("homeserver restarts");
        TestServer {
            server,
            env,
            config,
            keypair,
            http,
            _data,
        }
    }
}

pub struct TestUser {
    pub keypair: Keypair,
    pub token: String,
}

impl TestUser {
    pub fn z32(&self) -> String {
        self.keypair.public_key().to_z32()
    }
}

impl TestServer {
    /// Graceful shutdown, then a new homeserver on the same database, log, key and data
    /// directory (on new ports): a restart.
    pub async fn restart(self) -> TestServer {
        self.restart_with(|_| {}).await
    }

    /// [`TestServer::restart`] with the configuration changed by `configure` first.
    pub async fn restart_with(self, configure: impl FnOnce(&mut Config)) -> TestServer {
        let mut stopped = self.stop().await;
        configure(&mut stopped.config);
        stopped.start().await
    }

    /// Graceful shutdown; what is left can start the server again.
    pub async fn stop(self) -> StoppedServer {
        let TestServer {
            server,
            env,
            config,
            keypair,
            http,
            _data,
        } = self;
        server.shutdown().await;
        StoppedServer {
            env,
            config,
            keypair,
            http,
            _data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.http_addr, path)
    }

    /// `PUT` of a text file by its owner, which must answer 201.
    pub async fn put_ok(&self, user: &TestUser, path: &str, body: &str) {
        let r = self
            .http
            .put(self.storage(user, path))
            .bearer_auth(&user.token)
            .header("content-type", "text/plain")
            .body(body.to_owned())
            .send()
            .await
            .expect("PUT");
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "PUT {path}");
    }

    /// `DELETE` by the owner, which must answer 204.
    pub async fn delete_ok(&self, user: &TestUser, path: &str) {
        let r = self
            .http
            .delete(self.storage(user, path))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT, "DELETE {path}");
    }

    /// Signs up over `POST /signup` (legacy cookie auth), asserting the status the
    /// server answered; returns the user and its cookie.
    pub async fn cookie_signup(&self) -> (String, String) {
        let (status, user) = self.try_cookie_signup().await;
        assert_eq!(status, reqwest::StatusCode::OK, "signup");
        user.expect("a session cookie named after the user")
    }

    /// `POST /signup` with a new key: the status, and on success the user and cookie.
    pub async fn try_cookie_signup(&self) -> (reqwest::StatusCode, Option<(String, String)>) {
        let user = pubky::Keypair::random();
        let caps = pubky::Capabilities::from(vec![pubky::Capability::root()]);
        let token = pubky::AuthToken::sign(&user, caps).serialize();
        let response = self
            .http
            .post(self.url("/signup"))
            .header("host", "localhost")
            .body(token)
            .send()
            .await
            .expect("signup");
        let z32 = user.public_key().z32();
        let cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next().filter(|pair| pair.starts_with(&z32)))
            .map(String::from);
        (response.status(), cookie.map(|cookie| (z32, cookie)))
    }

    pub fn storage(&self, user: &TestUser, path: &str) -> String {
        self.url(&format!("/storage/{}{}", user.z32(), path))
    }

    async fn append_visible(&self, event: Event, expected: Expected) -> EventSeq {
        let seq = self
            .server
            .state
            .log
            .append(&event, expected)
            .await
            .expect("append");
        assert!(
            self.server
                .state
                .progress
                .wait_for(seq, std::time::Duration::from_secs(10))
                .await,
            "event {seq} projected"
        );
        seq
    }

    /// A user with a bearer session whose grant has `caps`.
    pub async fn user_with(&self, caps: &[&str], limits: UserLimits) -> TestUser {
        let keypair = Keypair::random();
        let token = BearerToken::from_random(rand::random());
        let signup = self
            .append_visible(
                signup_event(&keypair, limits),
                Expected::LastSeq(EventSeq(0)),
            )
            .await;
        self.append_visible(
            session_event(&keypair, caps, &token),
            Expected::LastSeq(signup),
        )
        .await;
        TestUser {
            keypair,
            token: token.as_str().to_string(),
        }
    }

    pub async fn user(&self) -> TestUser {
        self.user_with(&["/:rw"], UserLimits::default()).await
    }
}

/// A random 22-character id, the longest grant id / nonce the protocol allows.
fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..22].to_string()
}

/// The event that creates `user`'s account, as the signup endpoints append it.
pub fn signup_event(user: &Keypair, limits: UserLimits) -> Event {
    Event::new(
        user.public_key(),
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        Change::UserSignedUp {
            signup_token: None,
            limits,
            cookie_session: None,
            pop_nonce: None,
        },
    )
}

/// The event that opens a bearer session `token` for `user` under a one-hour grant
/// with `caps`, as `POST /auth/grant/session` appends it.
pub fn session_event(user: &Keypair, caps: &[&str], token: &BearerToken) -> Event {
    let now = api::now_micros();
    let secs = now / 1_000_000;
    Event::new(
        user.public_key(),
        now,
        uuid::Uuid::now_v7().to_string(),
        Change::GrantSessionCreated {
            grant_id: random_id(),
            client_id: "test.app".into(),
            client_key: Keypair::random().public_key(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            grant_issued_at: secs,
            grant_expires_at: secs + 3600,
            token_hash: Digest(token.hash()),
            token_expires_at: secs + 3600,
            pop_nonce: random_id(),
            session_id: None,
        },
    )
}

/// For homeservers running in other processes: appends a new user with a root bearer
/// session to the log of `env`, and waits until that process's projector applied it.
pub async fn user_via_log(env: &testkit::TestEnv) -> (Keypair, BearerToken) {
    let store = store::Store::connect(&env.database_url, 2)
        .await
        .expect("store");
    store.migrate().await.expect("migrations");
    let log = log::EventLog::connect(env.log.clone()).await.expect("log");
    let user = Keypair::random();
    let token = BearerToken::from_random(rand::random());
    let signup = log
        .append(
            &signup_event(&user, UserLimits::default()),
            Expected::LastSeq(EventSeq(0)),
        )
        .await
        .expect("append signup");
    let session = log
        .append(
            &session_event(&user, &["/:rw"], &token),
            Expected::LastSeq(signup),
        )
        .await
        .expect("append session");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.checkpoint("main").await.expect("checkpoint") < session {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector catches up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (user, token)
}
