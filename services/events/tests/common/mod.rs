//! Test environment: a fresh Postgres database and JetStream namespace per test, the
//! projector running in-process, and the events router served on 127.0.0.1:0.
//!
//! Needs `DATABASE_URL` (superuser URL to a maintenance database) and `NATS_URL`;
//! defaults are the local development services.
#![allow(dead_code)]

use api::{AppState, ServerConfig};
use domain::event::{Change, Digest, UserLimits};
use domain::secret::BearerToken;
use domain::{Event, EventSeq, Keypair, PublicKey};
use events::Fanout;
use log::{EventLog, Expected, LogConfig};
use std::sync::Mutex;
use std::time::Duration;
use store::{Progress, Store};
use tokio::sync::oneshot;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4333".into())
}

pub fn key(seed: u8) -> Keypair {
    Keypair::from_secret_key(&[seed; 32])
}

pub fn now_micros() -> u64 {
    api::now_micros()
}

struct Projector {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

pub struct Env {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub log: EventLog,
    pub store: Store,
    pub progress: Progress,
    pub fanout: Fanout,
    pub state: AppState,
    pub db_name: String,
    pub db_url: String,
    pub log_config: LogConfig,
    projector: Mutex<Option<Projector>>,
    _blobs: tempfile::TempDir,
}

fn random_name() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

impl Env {
    pub async fn start() -> Env {
        let admin_url = database_url();
        let db_name = format!("t_{}", random_name());
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .expect("DATABASE_URL reachable");
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
        url.set_path(&format!("/{db_name}"));
        let store = Store::connect(url.as_str(), 16).await.expect("connect");
        store.migrate().await.expect("migrate");

        let ns = random_name();
        let log_config = LogConfig {
            stream: format!("T{ns}"),
            subject_prefix: format!("t{ns}"),
            ..LogConfig::new(nats_url())
        };
        let log = EventLog::connect(log_config.clone())
            .await
            .expect("NATS_URL reachable");

        let progress = Progress::new();
        let blobs_dir = tempfile::tempdir().expect("tempdir");
        let blobs = blobs::BlobStore::new(&blobs::BlobStoreConfig::fs(blobs_dir.path()))
            .expect("blob store");
        let state = AppState::new(
            store.clone(),
            log.clone(),
            blobs,
            progress.clone(),
            ServerConfig::new(key(200).public_key()),
        );
        let fanout = Fanout::spawn(log.clone(), progress.clone(), store.clone());
        let app = events::router(fanout.clone()).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let env = Env {
            base: format!("http://{addr}"),
            addr,
            log,
            store,
            progress,
            fanout,
            state,
            db_name,
            db_url: url.to_string(),
            log_config,
            projector: Mutex::new(None),
            _blobs: blobs_dir,
        };
        env.start_projector();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !env.fanout.is_up() {
            assert!(
                std::time::Instant::now() < deadline,
                "fan-out did not start"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        env
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// Starts the projector on its own thread and runtime: `projector::run`'s future is
    /// not `Send` (it holds a `&dyn Fn` across awaits), so it cannot be `tokio::spawn`ed.
    /// It shares only `Progress` with the test, as a separate process would share the
    /// database.
    pub fn start_projector(&self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let (db_url, log_config, progress) = (
            self.db_url.clone(),
            self.log_config.clone(),
            self.progress.clone(),
        );
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("projector runtime");
            runtime.block_on(async move {
                let store = Store::connect(&db_url, 4).await.expect("projector store");
                let log = EventLog::connect(log_config).await.expect("projector log");
                projector::run(
                    log,
                    store,
                    progress,
                    projector::ProjectorConfig::default(),
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await;
            });
        });
        *self.projector.lock().expect("lock") = Some(Projector { stop, thread });
    }

    pub async fn stop_projector(&self) {
        let running = self.projector.lock().expect("lock").take();
        if let Some(p) = running {
            let _ = p.stop.send(());
            let _ = tokio::task::spawn_blocking(move || p.thread.join()).await;
        }
    }

    pub async fn append(&self, user: &PublicKey, ts: u64, change: Change) -> EventSeq {
        let event = Event::new(user.clone(), ts, uuid::Uuid::new_v4().to_string(), change);
        self.log
            .append(&event, Expected::Any)
            .await
            .expect("append")
    }

    pub async fn signup(&self, user: &PublicKey) -> EventSeq {
        self.append(
            user,
            now_micros(),
            Change::UserSignedUp {
                signup_token: None,
                limits: UserLimits::default(),
                cookie_session: None,
                pop_nonce: None,
            },
        )
        .await
    }

    pub async fn put_at(&self, user: &PublicKey, path: &str, ts: u64) -> EventSeq {
        let hash = blake3::hash(path.as_bytes());
        self.append(
            user,
            ts,
            Change::FilePut {
                path: path.into(),
                content_hash: Digest(*hash.as_bytes()),
                size: path.len() as u64,
                content_type: "text/plain".into(),
            },
        )
        .await
    }

    pub async fn put(&self, user: &PublicKey, path: &str) -> EventSeq {
        self.put_at(user, path, now_micros()).await
    }

    pub async fn del(&self, user: &PublicKey, path: &str) -> EventSeq {
        self.append(
            user,
            now_micros(),
            Change::FileDeleted { path: path.into() },
        )
        .await
    }

    /// A bearer session for `user` with `caps`, e.g. `["/priv/:r"]`.
    pub async fn session(&self, user: &PublicKey, caps: &[&str]) -> (BearerToken, String) {
        let token = BearerToken::from_random(rand::random());
        let grant_id = random_name();
        let now = now_micros() / 1_000_000;
        self.append(
            user,
            now_micros(),
            Change::GrantSessionCreated {
                grant_id: grant_id.clone(),
                client_id: "test.app".into(),
                client_key: key(201).public_key(),
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
                grant_issued_at: now,
                grant_expires_at: now + 3600,
                token_hash: Digest(token.hash()),
                token_expires_at: now + 3600,
                pop_nonce: random_name(),
                session_id: None,
            },
        )
        .await;
        (token, grant_id)
    }

    pub async fn revoke(&self, user: &PublicKey, grant_id: &str) -> EventSeq {
        self.append(
            user,
            now_micros(),
            Change::GrantRevoked {
                grant_id: grant_id.into(),
                pop_nonce: None,
            },
        )
        .await
    }

    /// Waits until everything appended so far is projected.
    pub async fn settle(&self) {
        let head = self.log.head().await.expect("head");
        assert!(
            self.progress.wait_for(head, Duration::from_secs(30)).await,
            "projector did not reach {head}"
        );
    }
}

/// Reads an SSE (or any streaming) body until `done(text)` or the timeout; returns
/// what was read and whether the body ended.
pub async fn read_until(
    response: &mut reqwest::Response,
    buf: &mut String,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(buf) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) | Ok(Err(_)) => return true,
            Err(_) => return false,
        }
    }
    false
}

/// `(event name, cursor)` of each complete SSE frame in `text`.
pub fn sse_events(text: &str) -> Vec<(String, String, u64)> {
    text.split("\n\n")
        .filter(|frame| frame.starts_with("event: "))
        .filter_map(|frame| {
            let mut lines = frame.lines();
            let name = lines.next()?.strip_prefix("event: ")?.to_string();
            let url = lines.next()?.strip_prefix("data: ")?.to_string();
            let cursor = lines.next()?.strip_prefix("data: cursor: ")?.parse().ok()?;
            Some((name, url, cursor))
        })
        .collect()
}

pub fn count_complete_frames(text: &str) -> usize {
    // A frame is complete once its terminating blank line arrived.
    let complete = match text.rfind("\n\n") {
        Some(end) => &text[..end],
        None => return 0,
    };
    complete.matches("event: ").count()
}
