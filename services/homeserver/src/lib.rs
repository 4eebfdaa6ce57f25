//! The `homeserver` program: configuration, wiring of the services, and the
//! operator commands. `homeserver all` runs every service in one process; each
//! service also runs on its own (`homeserver read-api`, ...) for the split deployment.
//!
//! With a DHT configured, `start_all` publishes the homeserver's PKARR packet once
//! (refusing to start if that fails: a server nobody can find should say so at once)
//! and then runs the republisher, which refreshes that packet and republishes, byte
//! for byte, the records of the users whose `_pubky` record names this server. DHT
//! nodes forget items after some hours; without the loop users would become
//! unreachable even though their data is here.

pub mod app;
pub mod config;

use anyhow::Context;
use api::{AppState, ServerConfig};
use config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A running `homeserver all`, as tests and `main` hold it.
pub struct Homeserver {
    pub http_addr: SocketAddr,
    /// The Pubky TLS listener (raw public key TLS with the homeserver key).
    pub tls_addr: SocketAddr,
    pub public_key: domain::PublicKey,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Homeserver {
    /// Stops accepting, lets in-flight requests finish, stops the projector.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

fn shutdown_signal(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + use<> {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Connects to the dependencies and builds the shared state (migrations applied).
pub async fn connect(config: &Config, keypair: &domain::Keypair) -> anyhow::Result<AppState> {
    let store = store::Store::connect(&config.database_url, config.database_max_connections)
        .await
        .with_context(|| "cannot connect to Postgres (DATABASE_URL)")?;
    store.migrate().await?;
    let log = log::EventLog::connect(config.log_config()).await?;
    let blobs = blobs::BlobStore::new(&config.blob_config())?;
    let mut server = ServerConfig::new(keypair.public_key());
    server.root_signer = Some(api::RootSigner(keypair.clone()));
    server.signup_mode = config.signup_mode;
    server.default_quota_mb = config.default_quota_mb;
    server.max_body_bytes = config.max_body_bytes;
    server.projection_wait = Duration::from_millis(config.projection_wait_ms);
    Ok(AppState::new(
        store,
        log,
        blobs,
        store::Progress::new(),
        server,
    ))
}

/// Starts every service in this process.
pub async fn start_all(config: &Config, keypair: &domain::Keypair) -> anyhow::Result<Homeserver> {
    let state = connect(config, keypair).await?;
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    tasks.push(tokio::spawn(projector::run(
        state.log.clone(),
        state.store.clone(),
        state.progress.clone(),
        projector::ProjectorConfig::default(),
        shutdown_signal(&rx),
    )));

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let tls_listener = tokio::net::TcpListener::bind(config.tls_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.tls_listen))?;
    let tls_addr = tls_listener.local_addr()?;
    // Live streams start at the projected position: history comes from Postgres.
    state.progress.advance(state.store.watermark().await?);
    let fanout = events::Fanout::spawn(state.log.clone(), state.progress.clone());
    let router = app::router(state.clone(), fanout);
    let stop = shutdown_signal(&rx);
    let plain_router = router.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = gateway::serve_plain(listener, plain_router, stop).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    }));
    let stop = shutdown_signal(&rx);
    let tls_keypair = keypair.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = gateway::serve_pubky_tls(tls_listener, &tls_keypair, router, stop).await {
            tracing::error!(error = %e, "Pubky TLS listener failed");
        }
    }));
    if let Some((publisher, spec)) = publish_identity(config, keypair, http_addr, tls_addr).await? {
        if let Some(schedule) = config.republish_schedule() {
            tasks.extend(spawn_republisher(
                publisher,
                keypair.clone(),
                spec,
                schedule,
                state.store.clone(),
                shutdown_signal(&rx),
            ));
        } else {
            tracing::warn!(
                "republish_interval_secs = 0: PKARR records are published only at start"
            );
        }
    }
    tracing::info!(%http_addr, %tls_addr, public_key = %keypair.public_key().to_z32(), "homeserver listening");
    Ok(Homeserver {
        http_addr,
        tls_addr,
        public_key: keypair.public_key(),
        state,
        shutdown,
        tasks,
    })
}

/// Keeps the homeserver and its users findable after the start-up publish: runs
/// [`pkarr_publish::run_republish_loop`] over the users listed from the projections,
/// until the homeserver shuts down (or is dropped: the watch sender's drop also ends
/// `stop`).
///
/// The loop takes a `CancellationToken`, the homeserver's other tasks a watch channel;
/// the second task bridges the two so `Homeserver::shutdown` needs no extra field.
pub fn spawn_republisher(
    publisher: Arc<pkarr_publish::Publisher>,
    keypair: domain::Keypair,
    spec: pkarr_publish::PacketSpec,
    schedule: pkarr_publish::RepublishSchedule,
    store: store::Store,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> [tokio::task::JoinHandle<()>; 2] {
    let cancel = CancellationToken::new();
    let bridge = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
        })
    };
    let task = tokio::spawn(async move {
        pkarr_publish::run_republish_loop(
            publisher,
            keypair,
            spec,
            schedule,
            move || {
                let store = store.clone();
                async move { store.user_keys().await }
            },
            |_report| {},
            cancel.clone(),
        )
        .await;
        // Ends the bridge too if the loop ever returns on its own.
        cancel.cancel();
    });
    [task, bridge]
}

/// Publishes the homeserver's PKARR record once (start fails if that fails), then
/// writes `<data dir>/public_key` so scripts can wait for it. Returns the publisher and
/// what was published, for the republisher; `None` when no DHT is configured.
pub async fn publish_identity(
    config: &Config,
    keypair: &domain::Keypair,
    http_addr: SocketAddr,
    tls_addr: SocketAddr,
) -> anyhow::Result<Option<(Arc<pkarr_publish::Publisher>, pkarr_publish::PacketSpec)>> {
    let mut published = None;
    if let Some(dht) = config.dht_config() {
        let publisher = Arc::new(pkarr_publish::Publisher::new(&dht)?);
        let spec = pkarr_publish::PacketSpec {
            public_ip: config.public_ip.unwrap_or(tls_addr.ip()),
            tls_port: config.public_tls_port.unwrap_or(tls_addr.port()),
            icann: config
                .icann_domain
                .clone()
                .map(|domain| (domain, config.public_http_port.unwrap_or(http_addr.port()))),
        };
        publisher
            .publish_homeserver(keypair, &spec)
            .await
            .context("the first publish of the homeserver's PKARR record failed")?;
        tracing::info!(?spec, "published the homeserver's PKARR record");
        published = Some((publisher, spec));
    } else {
        tracing::warn!(
            "no DHT configured (PUBKY_DHT_BOOTSTRAP or dht_mainnet): the PKARR record is not published"
        );
    }
    pkarr_publish::write_public_key_file(&config.data_dir, &keypair.public_key())?;
    Ok(published)
}
