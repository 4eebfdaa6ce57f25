//! A homeserver slice for integration tests, on the real NATS and Postgres named by
//! `NATS_URL` and `DATABASE_URL` (a superuser URL to a maintenance database).
//!
//! Each [`TestEnv`] gets its own database and its own JetStream stream and subject
//! prefix, so tests run in parallel on one server, plus one in-process projector.
//! [`TestEnv::instance`] starts a router instance with its own connections, learning
//! the projector's progress through Postgres `LISTEN` as a separate process would, so
//! several instances behave like several processes sharing the database and the log.
//! Meant to move into `crates/testkit` once other services need it.

#![allow(dead_code)]

use api::{AppState, ServerConfig, SignupMode};
use log::{EventLog, LogConfig};
use projector::ProjectorConfig;
use std::time::Duration;
use store::{Progress, Store};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestEnv {
    maintenance_url: String,
    db_name: String,
    pub db_url: String,
    pub log_config: LogConfig,
    pub homeserver: pubky_common::crypto::Keypair,
    pub signup_mode: SignupMode,
    blobs: tempfile::TempDir,
    projector: std::thread::JoinHandle<()>,
    stop_projector: oneshot::Sender<()>,
}

/// One running router instance.
pub struct Instance {
    pub url: String,
    pub state: AppState,
    server: JoinHandle<()>,
    follower: JoinHandle<()>,
}

impl Instance {
    /// Stops serving and drops this instance's connections, as a process exit would.
    pub fn stop(self) {
        self.server.abort();
        self.follower.abort();
    }
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let (server, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    }
}

impl TestEnv {
    pub async fn start(signup_mode: SignupMode) -> Self {
        let maintenance_url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set");
        let nats_url = std::env::var("NATS_URL").expect("NATS_URL is set");
        let suffix = random_suffix();
        let db_name = format!("t_{suffix}");
        let admin = sqlx::PgPool::connect(&maintenance_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let db_url = with_database(&maintenance_url, &db_name);
        let store = Store::connect(&db_url, 4).await.unwrap();
        store.migrate().await.unwrap();

        let log_config = LogConfig {
            stream: format!("T{suffix}"),
            subject_prefix: format!("t{suffix}"),
            ack_timeout: Duration::from_secs(5),
            ..LogConfig::new(nats_url)
        };
        let log = EventLog::connect(log_config.clone()).await.unwrap();
        let (stop_projector, stopped) = oneshot::channel::<()>();
        // The projector's future is not `Send`: it gets a thread and a runtime of its own.
        let projector = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(projector::run(
                log,
                store,
                Progress::new(),
                ProjectorConfig::default(),
                async {
                    let _ = stopped.await;
                },
            ));
        });
        TestEnv {
            maintenance_url,
            db_name,
            db_url,
            log_config,
            homeserver: pubky_common::crypto::Keypair::random(),
            signup_mode,
            blobs: tempfile::tempdir().unwrap(),
            projector,
            stop_projector,
        }
    }

    pub fn homeserver_key(&self) -> domain::PublicKey {
        domain::PublicKey::try_from(self.homeserver.public_key().z32().as_str()).unwrap()
    }

    /// Starts a router instance on 127.0.0.1 with an ephemeral port.
    pub async fn instance(&self) -> Instance {
        self.instance_with(|_| {}).await
    }

    /// [`instance`](Self::instance) with settings of its own.
    pub async fn instance_with(&self, configure: impl FnOnce(&mut ServerConfig)) -> Instance {
        let store = Store::connect(&self.db_url, 8).await.unwrap();
        let log = EventLog::connect(self.log_config.clone()).await.unwrap();
        let progress = Progress::new();
        let follower = progress.follow(&store).await.unwrap();
        let blobs = blobs::BlobStore::fs(self.blobs.path()).unwrap();
        let mut config = ServerConfig {
            signup_mode: self.signup_mode,
            ..ServerConfig::new(self.homeserver_key())
        };
        configure(&mut config);
        let state = AppState::new(store, log, blobs, progress, config);
        let router = hs_write_api::auth_router().with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Instance {
            url,
            state,
            server,
            follower,
        }
    }

    /// Stops the projector and drops the database and the stream.
    pub async fn finish(self) {
        let _ = self.stop_projector.send(());
        let _ = tokio::task::spawn_blocking(move || self.projector.join()).await;
        if let Ok(log) = EventLog::connect(self.log_config.clone()).await {
            let js = async_nats::jetstream::new(log.client().clone());
            let _ = js.delete_stream(&self.log_config.stream).await;
        }
        if let Ok(admin) = sqlx::PgPool::connect(&self.maintenance_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .execute(&admin)
            .await;
        }
    }
}
