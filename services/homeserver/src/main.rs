//! `homeserver`: run the services, and operate the homeserver.

use anyhow::Context;
use clap::{Parser, Subcommand};
use homeserver::config::Config;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "homeserver",
    version,
    about = "An event-sourced Pubky homeserver"
)]
struct Cli {
    /// TOML configuration file (also HOMESERVER_CONFIG).
    #[arg(long, global = true, env = "HOMESERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (also HOMESERVER_DATA_DIR).
    #[arg(long, global = true, env = "HOMESERVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every service in one process.
    All,
    /// Prints the OpenAPI 3.1 document of the client-facing API (or, with `--admin`,
    /// of the admin API), as committed under `schemas/`.
    Openapi {
        #[arg(long)]
        admin: bool,
    },
    /// The gateway of a split deployment: Pubky TLS and plain HTTP, forwarding to the
    /// write-api, read-api and events services (`gateway_*` settings).
    Gateway,
    /// Only the PKARR republisher: the homeserver's record and its users' records, on
    /// a schedule (split deployment; `homeserver all` runs it itself).
    Republisher,
    /// Only the projector (log -> Postgres).
    Projector,
    /// Only the mirror loop (docs/mirror.md): follows the primaries of the users this
    /// homeserver mirrors (split deployment; `homeserver all` runs it itself).
    Mirror,
    /// Only the write-api (auth, PUT/DELETE) on the plain HTTP listener.
    WriteApi,
    /// Only the read-api (GET/HEAD, listings, /info) on the plain HTTP listener.
    ReadApi,
    /// Only the events service (/events/, SSE, WebSocket) on the plain HTTP listener.
    Events,
    /// Prepare the database and the event log, then exit: the migrations applied, the
    /// log stream created or scaled up to `nats_replicas` (a deployment's one-shot
    /// step before the services start; each service would do the same at its start).
    Migrate,
    /// Replay the whole log into a fresh schema and check it equals the live projections.
    Rebuild {
        /// Keep the rebuilt schema instead of dropping it.
        #[arg(long)]
        keep: bool,
    },
    /// Re-create a lost log from the projections (one event per account, grant,
    /// session and file, marked as a re-seed), then project it and check that no
    /// Merkle root moved. Stop the server first, or restart it afterwards.
    Reseed {
        /// Discard what the stream holds even if it is not an unfinished re-seed.
        #[arg(long)]
        replace_stream: bool,
    },
    /// Back up the log (the stream's own snapshot), the blobs and the homeserver key
    /// into a new directory, while the server runs (docs/backup.md).
    Backup {
        /// Where to write the backup; must be new or empty.
        dir: PathBuf,
    },
    /// Bring back a wiped machine from a backup: the key, the blobs, and the log (which
    /// must not exist yet). Start the server afterwards: on an empty database the
    /// projector rebuilds the projections from the restored log.
    Restore {
        /// A directory written by `homeserver backup`.
        dir: PathBuf,
    },
    /// Recompute a user's Merkle trees from the entries and from the log and check
    /// they agree with the stored roots and nodes (exit status 1 if not).
    Verify {
        /// The user's public key (z-base-32).
        user: String,
    },
    /// Delete blobs that neither an entry nor a version within `version_retention_secs`
    /// references (older than the grace period).
    Gc {
        /// Blobs younger than this are kept: their upload's event may be in flight.
        #[arg(long, default_value_t = 3600)]
        grace_secs: u64,
    },
    /// Delete Merkle nodes that neither a current root nor a root replaced within the
    /// grace period refers to (what `merkle_gc_interval_secs` runs periodically).
    MerkleGc {
        /// Roots replaced less than this long ago stay walkable (default:
        /// `merkle_gc_grace_secs`).
        #[arg(long)]
        grace_secs: Option<u64>,
        /// Sweep every tree, not only those with a root replaced before the grace period.
        #[arg(long)]
        all: bool,
    },
    /// Only the admin API on `admin_listen` (needs `admin_password`).
    AdminApi,
    /// Operator actions, through the admin API of a running server.
    Admin(homeserver::admin_cli::AdminArgs),
    /// Write a user's account archive (docs/export.md) from this server's data, signed
    /// with the homeserver key.
    Export {
        /// The user's public key (z-base-32).
        user: String,
        /// Which trees: `pub`, `priv` or `all`.
        #[arg(long, value_enum, default_value = "all")]
        tree: homeserver::archive_cli::Trees,
        /// The archive file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Check an account archive offline against the signed roots it carries (exit
    /// status 1, naming the first bad path, if it does not match).
    VerifyArchive {
        /// The archive file.
        archive: PathBuf,
    },
    /// Load a user's account archive into this homeserver: verified first (nothing of
    /// a bad archive is written), then applied file by file; run it again to resume.
    Import {
        /// The archive file.
        archive: PathBuf,
        /// Refuse the archive unless its roots are signed by this homeserver key (z32).
        #[arg(long)]
        expect_signer: Option<String>,
    },
    /// For users: download your own account archive (public and private) from a
    /// homeserver with your secret key, then verify it offline.
    Pull {
        /// The homeserver's base URL, e.g. http://127.0.0.1:6286.
        #[arg(long)]
        url: String,
        /// A file holding your secret key as 64 hex digits.
        #[arg(long)]
        secret_key: PathBuf,
        /// The archive file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// For users: move your account from one homeserver to another with your secret
    /// key (docs/move.md). Run it again after an interruption: it resumes. The PKARR
    /// record is published on `PUBKY_DHT_BOOTSTRAP` (or the Mainline DHT with
    /// `HOMESERVER_DHT_MAINNET=true`).
    Move {
        /// The base URL of the homeserver you leave, e.g. http://a.example:6286.
        #[arg(long)]
        from: String,
        /// The base URL of the homeserver you move to.
        #[arg(long)]
        to: String,
        /// A file holding your secret key as 64 hex digits.
        #[arg(long)]
        secret_key: PathBuf,
        /// A signup token of the homeserver you move to, if it needs one.
        #[arg(long)]
        signup_token: Option<String>,
        /// Where the steps done are recorded (default: the secret key file's path with
        /// `.move.json` added).
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// Seconds to wait for one step before giving up (run again to resume).
        #[arg(long, default_value_t = 3600)]
        step_timeout_secs: u64,
        /// The homeserver you leave is gone: the mirror the new one already holds of
        /// your account takes over as it is (checked against the last root of the old
        /// homeserver it verified). Writes the old one took after that are lost.
        #[arg(long)]
        from_gone: bool,
        /// The key of the homeserver you leave, when it is not one of ours (the
        /// reference homeserver, say, which does not tell it); default: the homeserver
        /// your PKARR record names.
        #[arg(long)]
        from_key: Option<String>,
        /// Treat the homeserver you leave as a plain Pubky homeserver (no seal: copy,
        /// flip, copy the last delta) even when it is one of ours.
        #[arg(long)]
        from_plain: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    init_logging(&config);
    for conflict in homeserver::config::environment_conflicts() {
        tracing::warn!("{conflict}");
    }
    match cli.command {
        Command::All => run_all(config).await,
        Command::Gateway => run_gateway(config).await,
        Command::Projector => run_projector(config).await,
        Command::Mirror => run_mirror(config).await,
        Command::Republisher => run_republisher(config).await,
        Command::WriteApi => run_service(config, Service::WriteApi).await,
        Command::ReadApi => run_service(config, Service::ReadApi).await,
        Command::Events => run_service(config, Service::Events).await,
        Command::Migrate => {
            let store = store::Store::connect(&config.database_url, 2).await?;
            store.migrate().await?;
            println!("migrations applied");
            let log = log::EventLog::connect(config.log_config()).await?;
            println!(
                "log stream {} ready with {} replicas",
                log.config().stream,
                log.config().replicas
            );
            Ok(())
        }
        Command::Rebuild { keep } => rebuild(config, keep).await,
        Command::Reseed { replace_stream } => {
            let keypair = identity(&config)?;
            let report =
                homeserver::recovery::reseed(&config, &keypair, replace_stream, true).await?;
            println!(
                "re-seeded the log with events {}..={} ({} users, {} files) in {:.1}s; \
                 {} Merkle trees unchanged; the previous log was {}",
                report.first,
                report.last,
                report.users,
                report.entries,
                report.seconds,
                report.trees_compared,
                report.previous
            );
            Ok(())
        }
        Command::Backup { dir } => {
            let started = std::time::Instant::now();
            let manifest = homeserver::recovery::backup(&config, &dir, true).await?;
            println!(
                "backed up the log (at least through event {}: {} bytes of log snapshot) and {} blobs ({} bytes) \
                 of {} into {} in {:.1}s",
                manifest.last_seq,
                manifest.log.bytes,
                manifest.blobs,
                manifest.blob_bytes,
                manifest.homeserver,
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Restore { dir } => {
            let started = std::time::Instant::now();
            let report = homeserver::recovery::restore(&config, &dir, true).await?;
            println!(
                "restored the log up to event {}, {} blobs ({} already present) and the key \
                 of {} in {:.1}s; start the server to rebuild the projections",
                report.last_seq,
                report.blobs_restored,
                report.blobs_present,
                report.manifest.homeserver,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Verify { user } => verify(config, &user).await,
        Command::Gc { grace_secs } => gc(config, grace_secs).await,
        Command::MerkleGc { grace_secs, all } => merkle_gc(config, grace_secs, all).await,
        Command::AdminApi => {
            let keypair = identity(&config)?;
            homeserver::operator::run_admin_api(&config, &keypair).await
        }
        Command::Admin(args) => homeserver::admin_cli::run(args).await,
        Command::Export { user, tree, out } => {
            let keypair = identity(&config)?;
            homeserver::archive_cli::export(&config, &keypair, &user, tree, &out).await
        }
        Command::Openapi { admin } => {
            let doc = match admin {
                true => homeserver::openapi::admin(),
                false => homeserver::openapi::public(),
            };
            println!("{}", doc.to_pretty_json()?);
            Ok(())
        }
        Command::VerifyArchive { archive } => homeserver::archive_cli::verify_archive(&archive),
        Command::Pull {
            url,
            secret_key,
            out,
        } => homeserver::pull::pull(&url, &secret_key, &out).await,
        Command::Move {
            from,
            to,
            secret_key,
            signup_token,
            state_file,
            step_timeout_secs,
            from_gone,
            from_key,
            from_plain,
        } => {
            let args = homeserver::move_cli::MoveArgs {
                from,
                to,
                secret_key,
                signup_token,
                state_file,
                step_timeout: std::time::Duration::from_secs(step_timeout_secs),
                from_gone,
                from_key,
                from_plain,
            };
            homeserver::move_cli::run(&config, args).await
        }
        Command::Import {
            archive,
            expect_signer,
        } => {
            let report =
                homeserver::import::import_signed_by(&config, &archive, expect_signer.as_deref())
                    .await?;
            println!(
                "imported {}: {} files written ({} bytes), {} already there, {} deleted; roots equal the archive's (signed by {})",
                report.user,
                report.written,
                report.bytes,
                report.skipped,
                report.deleted,
                report.signers.join(", ")
            );
            Ok(())
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries results (a minted token, listener addresses).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn identity(config: &Config) -> anyhow::Result<domain::Keypair> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    Ok(pkarr_publish::identity::load_or_create(&config.data_dir)?)
}

async fn run_all(config: Config) -> anyhow::Result<()> {
    let keypair = identity(&config)?;
    let server = homeserver::start_all(&config, &keypair).await?;
    println!("Pubky homeserver {}", keypair.public_key().to_z32());
    println!("  Pubky TLS:  https://{} (raw public key)", server.tls_addr);
    println!("  plain HTTP: http://{}", server.http_addr);
    if let Some(addr) = server.metrics_addr {
        println!("  metrics:    http://{addr}/metrics");
    }
    if let Some(admin) = server.admin_addr {
        println!("  admin API:  http://{admin}");
    }
    print_sdk_snippet(&config, &keypair.public_key().to_z32());
    stop_requested().await;
    println!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn run_gateway(config: Config) -> anyhow::Result<()> {
    let keypair = identity(&config)?;
    let upstream = |name: &str, value: &Option<String>| {
        value.clone().with_context(|| {
            format!("the gateway needs HOMESERVER_GATEWAY_{name} (http://host:port)")
        })
    };
    let upstreams = gateway::proxy::Upstreams {
        write_api: upstream("WRITE_API", &config.gateway_write_api)?,
        read_api: upstream("READ_API", &config.gateway_read_api)?,
        events: upstream("EVENTS", &config.gateway_events)?,
    };
    let health = gateway::proxy::health(&upstreams, api::metrics::Metrics::new("gateway"));
    let own = homeserver::app::optional_pages(&config);
    let router = gateway::proxy::router(upstreams, health.clone(), own);
    let plain = tokio::net::TcpListener::bind(config.http_listen).await?;
    let tls = tokio::net::TcpListener::bind(config.tls_listen).await?;
    let (http_addr, tls_addr) = (plain.local_addr()?, tls.local_addr()?);
    homeserver::publish_identity(&config, &keypair, http_addr, tls_addr).await?;
    println!("Gateway listening on http://{http_addr} and https://{tls_addr} (Pubky TLS)");
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    serve_metrics(&config, health, on_stop(stop.subscribe())).await?;
    let stopped = |stop: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let plain_server = gateway::serve_plain(plain, router.clone(), stopped(&stop));
    let tls_server = gateway::serve_pubky_tls(tls, &keypair, router, stopped(&stop));
    let signal = async {
        stop_requested().await;
        let _ = stop.send(());
    };
    let (plain_result, tls_result, ()) = tokio::join!(plain_server, tls_server, signal);
    plain_result?;
    tls_result?;
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Service {
    WriteApi,
    ReadApi,
    Events,
}

impl Service {
    /// The `service` label of the process's metrics.
    fn label(self) -> &'static str {
        match self {
            Service::WriteApi => "write-api",
            Service::ReadApi => "read-api",
            Service::Events => "events",
        }
    }
}

/// One service of the split deployment: its own router on the plain HTTP listener,
/// following the projector of another process through Postgres `LISTEN`.
async fn run_service(config: Config, service: Service) -> anyhow::Result<()> {
    let keypair = identity(&config)?;
    let state = homeserver::connect(&config, &keypair).await?;
    let mut state = state.for_service(service.label());
    if let Service::ReadApi = service {
        // Reads need Postgres (and the blob store) only: a NATS outage must not take
        // the read path out of rotation.
        state.health = api::health::Health::new(
            state.metrics.clone(),
            vec![api::health::Dependency::Postgres(state.store.clone())],
        )
        .with_projection(state.log.clone(), state.store.clone());
    }
    if let Service::ReadApi | Service::Events = service {
        state = homeserver::with_read_replica(state, &config).await?;
    }
    let _follow = state.progress.follow(&state.store).await?;
    let router = match service {
        Service::WriteApi => write_api::router(),
        Service::ReadApi => read_api::router(),
        Service::Events => events::router(events::Fanout::spawn(
            state.log.clone(),
            state.progress.clone(),
            state.store.clone(),
        )),
    };
    // Mirrored users are read-only in every process that serves them (the set is
    // re-read from the table: the mirror loop runs elsewhere).
    let mirrors = config.mirror_set();
    let _mirrors = mirrors.keep_loaded(state.store.clone(), state.shutdown.clone());
    let router = match service {
        // The status resource's GET goes to the read-api, the user's POST to the
        // write-api (the gateway routes by method).
        Service::ReadApi | Service::WriteApi => router.merge(mirror::router(mirrors.clone())),
        _ => router,
    }
    .layer(axum::middleware::from_fn_with_state(
        mirrors.clone(),
        mirror::guard,
    ));
    let mut router = homeserver::app::client_facing(router, state.clone());
    if let Service::WriteApi = service {
        // WebDAV reads and writes; the gateway sends every `/dav` request here.
        router = router.merge(homeserver::app::dav(state.clone(), mirrors));
    }
    let listener = tokio::net::TcpListener::bind(config.http_listen).await?;
    println!("{service:?} listening on http://{}", listener.local_addr()?);
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    serve_metrics(&config, state.health.clone(), on_stop(stop.subscribe())).await?;
    let streams = state.shutdown.clone();
    let served = gateway::serve_plain(listener, router, async move {
        stop_requested().await;
        // Live streams end with their resume cursor; the listener drains the rest.
        streams.cancel();
    })
    .await;
    let _ = stop.send(());
    served?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what orchestrators send before killing a process).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves once `stop` fires (or its sender is gone). The split services fire it after
/// their client listener drained, so a scrape during the drain still answers.
async fn on_stop(mut stop: tokio::sync::broadcast::Receiver<()>) {
    let _ = stop.recv().await;
}

/// Starts the metrics listener when `metrics_listen` is set, and prints its address.
async fn serve_metrics(
    config: &Config,
    health: api::health::Health,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_listen {
        let (addr, _task) = api::health::serve(addr, health, stop)
            .await
            .with_context(|| format!("cannot listen on {addr} (metrics)"))?;
        println!("metrics on http://{addr}/metrics");
    }
    Ok(())
}

async fn run_republisher(config: Config) -> anyhow::Result<()> {
    let keypair = identity(&config)?;
    let dht = config
        .dht_config()
        .context("the republisher needs PUBKY_DHT_BOOTSTRAP or HOMESERVER_DHT_MAINNET=true")?;
    let schedule = config
        .republish_schedule()
        .context("republish_interval_secs is 0: there is nothing to run")?;
    // Split, the republisher does not listen itself: it announces the gateway.
    let spec = pkarr_publish::PacketSpec {
        public_ip: config
            .public_ip
            .context("set HOMESERVER_PUBLIC_IP to the gateway's address")?,
        tls_port: config
            .public_tls_port
            .context("set HOMESERVER_PUBLIC_TLS_PORT to the gateway's Pubky TLS port")?,
        icann: config.icann_domain.clone().zip(config.public_http_port),
    };
    let store = store::Store::connect(&config.database_url, 2).await?;
    let publisher = std::sync::Arc::new(pkarr_publish::Publisher::new(&dht)?);
    println!(
        "republishing {} and its users",
        keypair.public_key().to_z32()
    );
    let tasks =
        homeserver::spawn_republisher(publisher, keypair, spec, schedule, store, stop_requested());
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// The mirror loop on its own: it appends to the log and waits for the projector of
/// another process through Postgres, as the split services do.
async fn run_mirror(config: Config) -> anyhow::Result<()> {
    let keypair = identity(&config)?;
    let state = homeserver::connect(&config, &keypair)
        .await?
        .for_service("mirror");
    let _follow = state.progress.follow(&state.store).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let set = mirror::MirrorSet::default();
    let task = mirror::spawn(state, set, config.mirror_settings(), stop.clone());
    println!("mirroring for {}", keypair.public_key().to_z32());
    stop_requested().await;
    stop.cancel();
    task.await?;
    Ok(())
}

async fn run_projector(config: Config) -> anyhow::Result<()> {
    let store = store::Store::connect(&config.database_url, 4).await?;
    store.migrate().await?;
    let log = log::EventLog::connect(config.log_config()).await?;
    let metrics = api::metrics::Metrics::new("projector");
    let health = api::health::Health::new(
        metrics.clone(),
        vec![
            api::health::Dependency::Postgres(store.clone()),
            api::health::Dependency::Nats(Box::new(log.clone())),
        ],
    )
    .with_projection(log.clone(), store.clone());
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    serve_metrics(&config, health, on_stop(stop.subscribe())).await?;
    homeserver::watch_log_pairing(&log, &store, on_stop(stop.subscribe())).await;
    let gc = config.merkle_gc(&metrics).map(|gc| {
        tokio::spawn(projector::run_merkle_gc(
            store.clone(),
            gc,
            on_stop(stop.subscribe()),
        ))
    });
    projector::run(
        log,
        store,
        store::Progress::new(),
        projector::ProjectorConfig {
            projected: metrics.events_projected(),
            ..Default::default()
        },
        stop_requested(),
    )
    .await;
    let _ = stop.send(());
    if let Some(gc) = gc {
        let _ = gc.await;
    }
    Ok(())
}

async fn rebuild(config: Config, keep: bool) -> anyhow::Result<()> {
    let store = store::Store::connect(&config.database_url, 4).await?;
    let log = log::EventLog::connect(config.log_config()).await?;
    let schema = format!("rebuild_{}", std::process::id());
    let report =
        projector::rebuild(&log, &store, &config.database_url, &schema, keep, true).await?;
    println!(
        "replayed {} events in {:.1}s ({:.0} events/s), compared at log position {}",
        report.events_replayed,
        report.seconds,
        report.events_replayed as f64 / report.seconds.max(1e-9),
        report.position
    );
    if report.identical() {
        println!("rebuilt projections are identical to the live ones");
        Ok(())
    } else {
        for (table, rows) in &report.differences {
            println!("  {table}: {rows} rows differ");
        }
        anyhow::bail!("rebuilt projections differ from the live ones")
    }
}

async fn verify(config: Config, user: &str) -> anyhow::Result<()> {
    let user = domain::tenant::parse_storage_owner(user)
        .map_err(|_| anyhow::anyhow!("not a user public key: {user}"))?;
    let store = store::Store::connect(&config.database_url, 2).await?;
    let log = log::EventLog::connect(config.log_config()).await?;
    let report = projector::verify(&log, &store, &user)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no such user: {}", user.to_z32()))?;
    println!(
        "user {}: {} file events replayed up to sequence {}",
        user.to_z32(),
        report.events,
        report.file_seq
    );
    for (name, check) in [("pub", &report.public), ("priv", &report.private)] {
        println!(
            "  {name}: {} entries; root stored {}, from entries {}, from log {}; nodes {}: {}",
            check.entries,
            domain::merkle::root_hex(check.stored),
            domain::merkle::root_hex(check.from_entries),
            domain::merkle::root_hex(check.from_log),
            if check.nodes_complete {
                "complete"
            } else {
                "INCOMPLETE"
            },
            if check.ok() { "ok" } else { "MISMATCH" },
        );
    }
    if report.ok() {
        println!("merkle trees verified");
        Ok(())
    } else {
        anyhow::bail!("merkle trees do not agree")
    }
}

async fn gc(config: Config, grace_secs: u64) -> anyhow::Result<()> {
    let store = store::Store::connect(&config.database_url, 2).await?;
    let blobs = blobs::BlobStore::new(&config.blob_config())?;
    let grace = std::time::Duration::from_secs(grace_secs);
    let report =
        homeserver::collect_garbage(&store, &blobs, grace, config.version_retention()).await?;
    println!("{report:?}");
    Ok(())
}

async fn merkle_gc(config: Config, grace_secs: Option<u64>, all: bool) -> anyhow::Result<()> {
    let store = store::Store::connect(&config.database_url, 2).await?;
    let grace = std::time::Duration::from_secs(grace_secs.unwrap_or(config.merkle_gc_grace_secs));
    let scope = if all {
        store::merkle_gc::GcScope::All
    } else {
        store::merkle_gc::GcScope::Due
    };
    let report = store.merkle_gc(grace, scope).await?;
    println!(
        "merkle gc: {} trees swept, {} nodes kept, {} deleted, {} history rows pruned, {} trees skipped",
        report.trees, report.kept, report.deleted, report.pruned, report.failed
    );
    if report.failed > 0 {
        anyhow::bail!("{} trees are inconsistent (see the log)", report.failed);
    }
    Ok(())
}

/// How to point the published SDK (`pubky` 0.17) at this homeserver, ready to paste.
fn print_sdk_snippet(config: &Config, public_key: &str) {
    let network = if !config.dht_bootstrap.is_empty() {
        let nodes = config
            .dht_bootstrap
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(".no_default_network().bootstrap(&[{nodes}]).no_relays()")
    } else if config.dht_mainnet {
        String::new()
    } else {
        println!("  (no DHT configured: set PUBKY_DHT_BOOTSTRAP so the SDK can find this server)");
        return;
    };
    println!(
        "  SDK (Rust, pubky 0.17):\n\
         \x20   let client = pubky::PubkyHttpClient::builder().pkarr(|b| b{network}).build()?;\n\
         \x20   let pubky = pubky::Pubky::with_client(client);\n\
         \x20   let homeserver = pubky::PublicKey::try_from_z32(\"{public_key}\")?;\n\
         \x20   let session = pubky.signer(pubky::Keypair::random()).signup(&homeserver, None).await?;"
    );
}
