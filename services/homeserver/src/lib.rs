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

pub mod admin_cli;
pub mod app;
pub mod archive_cli;
pub mod archive_file;
pub mod config;
pub mod import;
pub mod move_cli;
pub mod openapi;
pub mod operator;
pub mod pull;
pub mod recovery;

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
    /// The metrics listener, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The admin API's listener, when `admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    pub public_key: domain::PublicKey,
    pub state: AppState,
    /// The users this homeserver mirrors (docs/mirror.md).
    pub mirrors: mirror::MirrorSet,
    /// Stops the client listeners.
    shutdown: watch::Sender<bool>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    /// Stops the rest (projector, republisher, metrics listener) once they drained.
    background_stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long `Homeserver::shutdown` waits for the listeners to drain: their own grace
/// period (`TlsServeOptions::shutdown_grace`, 30 s) and a little more.
const DRAIN_DEADLINE: Duration = Duration::from_secs(35);

impl Homeserver {
    /// Graceful shutdown: stops accepting, ends live event streams with their resume
    /// cursor, lets in-flight requests finish (bounded), and only then stops the
    /// projector, which in-flight writes wait for.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.state.shutdown.cancel();
        for task in self.listeners {
            let _ = tokio::time::timeout(DRAIN_DEADLINE, task).await;
        }
        let _ = self.background_stop.send(true);
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
    server.version_retention = config.version_retention();
    server.grant_session_slots = config.grant_session_slots();
    server.read_replica_wait = Duration::from_millis(config.read_replica_wait_ms);
    let bandwidth = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|text| text.parse::<api::bandwidth::Bandwidth>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))
    };
    server.rate_read = bandwidth("rate_read", &config.rate_read)?;
    server.rate_write = bandwidth("rate_write", &config.rate_write)?;
    server.unauthenticated_ip_rate_read = bandwidth(
        "unauthenticated_ip_rate_read",
        &config.unauthenticated_ip_rate_read,
    )?;
    let rate_limits = api::rate_limit::RateLimits::new(&config.rate_limits, &log)
        .map_err(|e| anyhow::anyhow!("rate_limits: {e}"))?;
    let state = AppState::new(store, log, blobs, store::Progress::new(), server)
        .with_rate_limits(rate_limits);
    watch_log_pairing(
        &state.log,
        &state.store,
        state.shutdown.clone().cancelled_owned(),
    )
    .await;
    Ok(state)
}

/// `state` reading through the streaming replica of `read_database_url`, when one is
/// configured (the read-api, events and `homeserver all`; see `api::reads`). The pool
/// connects lazily: a replica that is down at start only sends reads to the primary.
/// Whether it is a replica of `database_url` at all is checked at start and every
/// [`REPLICA_CHECK_INTERVAL`] (`store::ReadReplica::check_primary`), until `state`
/// shuts down.
pub async fn with_read_replica(state: AppState, config: &Config) -> anyhow::Result<AppState> {
    let Some(url) = &config.read_database_url else {
        return Ok(state);
    };
    let store = store::Store::connect_replica(url, config.database_max_connections, "public")
        .context("read_database_url is not a valid Postgres URL")?;
    let replica = store::ReadReplica::new(store);
    let check = {
        let (replica, primary) = (replica.clone(), state.store.clone());
        move || {
            let (replica, primary) = (replica.clone(), primary.clone());
            async move {
                let checked = tokio::time::timeout(
                    api::health::PROBE_TIMEOUT,
                    replica.check_primary(&primary),
                )
                .await;
                if let Ok(Err(e)) = checked {
                    tracing::warn!(
                        error = %e,
                        "cannot tell yet whether read_database_url is a replica of database_url"
                    );
                }
            }
        }
    };
    check().await;
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(REPLICA_CHECK_INTERVAL) => check().await,
            }
        }
    });
    tracing::info!(
        wait_ms = config.read_replica_wait_ms,
        "reads go to the read replica (read_database_url)"
    );
    Ok(state.with_replica(replica))
}

/// How often a process checks that its read replica is a replica of its primary.
pub const REPLICA_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Checks that `log` is the log the projections in `store` were built from
/// (`projector::pairing`), then keeps checking in a task that ends with `stop`. A
/// mismatch does not stop the start: reads of the projections stay served, writes
/// answer 503 with the message, and `/readyz` says why.
pub async fn watch_log_pairing(
    log: &log::EventLog,
    store: &store::Store,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    if let Err(e) = projector::pairing::check(log, store).await {
        tracing::warn!(error = %e, "the log's pairing with the projections is not checked yet");
    }
    tokio::spawn(projector::pairing::watch(log.clone(), store.clone(), stop))
}

/// `homeserver gc`: deletes the blobs older than `grace` that neither an entry nor a
/// version still within `version_retention` references.
pub async fn collect_garbage(
    store: &store::Store,
    blobs: &blobs::BlobStore,
    grace: Duration,
    version_retention: Duration,
) -> anyhow::Result<blobs::GcReport> {
    let check = |hashes: &[blobs::BlobHash]| {
        let hashes: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
        let store = store.clone();
        async move {
            let referenced = store
                .referenced_hashes(&hashes, version_retention, api::now_micros())
                .await?;
            Ok::<_, store::StoreError>(referenced.into_iter().map(blobs::BlobHash).collect())
        }
    };
    Ok(blobs.gc(&check, grace).await?)
}

/// Starts every service in this process.
pub async fn start_all(config: &Config, keypair: &domain::Keypair) -> anyhow::Result<Homeserver> {
    // Before anything starts: an admin listener without a password is a refusal.
    let admin = operator::admin_settings(config)?;
    let state = with_read_replica(connect(config, keypair).await?, config).await?;
    let (shutdown, rx) = watch::channel(false);
    let (background_stop, background) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut listeners = Vec::new();

    tasks.push(tokio::spawn(projector::run(
        state.log.clone(),
        state.store.clone(),
        state.progress.clone(),
        projector::ProjectorConfig {
            projected: state.metrics.events_projected(),
            ..Default::default()
        },
        shutdown_signal(&background),
    )));
    if let Some(gc) = config.merkle_gc(&state.metrics) {
        tasks.push(tokio::spawn(projector::run_merkle_gc(
            state.store.clone(),
            gc,
            shutdown_signal(&background),
        )));
    }
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let (addr, task) =
                api::health::serve(addr, state.health.clone(), shutdown_signal(&background))
                    .await
                    .with_context(|| format!("cannot listen on {addr} (metrics)"))?;
            tasks.push(task);
            Some(addr)
        }
        None => None,
    };

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
    let fanout = events::Fanout::spawn(
        state.log.clone(),
        state.progress.clone(),
        state.store.clone(),
    );
    // The mirror loop: one follower per mirrored user, stopped with the background.
    let mirrors = config.mirror_set();
    if let Err(e) = mirrors.load(&state.store).await {
        tracing::warn!(error = %e, "cannot read the mirrors table yet");
    }
    let mirror_stop = CancellationToken::new();
    tasks.push(mirror::spawn(
        state.clone(),
        mirrors.clone(),
        config.mirror_settings(),
        mirror_stop.clone(),
    ));
    let bridge = shutdown_signal(&background);
    tasks.push(tokio::spawn(async move {
        bridge.await;
        mirror_stop.cancel();
    }));
    let admin_addr = match admin {
        Some((listen, mut settings)) => Some({
            settings.mirrors = mirrors.clone();
            operator::spawn_admin_api(
                listen,
                settings,
                config,
                (http_addr, tls_addr),
                state.clone(),
                fanout.clone(),
                shutdown_signal(&rx),
                &mut tasks,
            )
            .await?
        }),
        None => None,
    };
    let router = app::router(state.clone(), fanout, config, mirrors.clone());
    let stop = shutdown_signal(&rx);
    let plain_router = router.clone();
    listeners.push(tokio::spawn(async move {
        if let Err(e) = gateway::serve_plain(listener, plain_router, stop).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    }));
    let stop = shutdown_signal(&rx);
    let tls_keypair = keypair.clone();
    listeners.push(tokio::spawn(async move {
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
                shutdown_signal(&background),
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
        metrics_addr,
        admin_addr,
        public_key: keypair.public_key(),
        state,
        mirrors,
        shutdown,
        listeners,
        background_stop,
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
