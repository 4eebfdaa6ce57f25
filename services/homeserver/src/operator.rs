//! Wiring of the admin API (`hs-admin`): its settings from the configuration, its
//! listener inside `homeserver all`, and `homeserver admin-api` on its own.
//!
//! Production rule: there is no default password. `admin_listen` unset means no
//! admin API at all; set without a (non-empty) `admin_password`, the server refuses to
//! start. Development runs (`make run`) pass a password explicitly.

use crate::config::Config;
use anyhow::Context;
use api::AppState;
use std::net::SocketAddr;

/// The admin listener's address and settings; `None` when `admin_listen` is unset.
pub fn admin_settings(config: &Config) -> anyhow::Result<Option<(SocketAddr, admin::AdminConfig)>> {
    let Some(listen) = config.admin_listen else {
        return Ok(None);
    };
    let password = config.admin_password.as_deref().unwrap_or_default();
    let settings = admin::AdminConfig::new(password).map_err(|_| {
        anyhow::anyhow!(
            "admin_listen is set ({listen}) but admin_password is not: set \
             HOMESERVER_ADMIN_PASSWORD (there is no default password), or unset \
             HOMESERVER_ADMIN_LISTEN to run without the admin API"
        )
    })?;
    Ok(Some((listen, settings)))
}

/// Binds the admin listener and serves the admin API until `stop`; returns its address.
#[allow(clippy::too_many_arguments)]
pub async fn spawn_admin_api(
    listen: SocketAddr,
    mut settings: admin::AdminConfig,
    config: &Config,
    (http_addr, tls_addr): (SocketAddr, SocketAddr),
    state: AppState,
    fanout: events::Fanout,
    stop: impl Future<Output = ()> + Send + 'static,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<SocketAddr> {
    announce(&mut settings, config, http_addr, tls_addr);
    settings.demo_users = config.admin_demo_users;
    let http_port = config.public_http_port.unwrap_or(http_addr.port());
    settings.demo_base_url = config
        .icann_domain
        .as_ref()
        .filter(|_| http_port != 0)
        .map(|domain| format!("http://{domain}:{http_port}"));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (admin_listen)"))?;
    let addr = listener.local_addr()?;
    let router = admin::router(state, fanout, settings);
    tasks.push(tokio::spawn(async move {
        if let Err(e) = gateway::serve_plain(listener, router, stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }));
    tracing::info!(%addr, "admin API listening");
    Ok(addr)
}

/// What `GET /info` reports as announced: the PKARR record's endpoints, when a DHT
/// is configured (otherwise nothing is published).
fn announce(
    settings: &mut admin::AdminConfig,
    config: &Config,
    http_addr: SocketAddr,
    tls_addr: SocketAddr,
) {
    if config.dht_config().is_none() {
        return;
    }
    let ip = config.public_ip.unwrap_or(tls_addr.ip());
    let tls_port = config.public_tls_port.unwrap_or(tls_addr.port());
    settings.pkarr_pubky_address = Some(SocketAddr::new(ip, tls_port).to_string());
    settings.pkarr_icann_domain = config.icann_domain.as_ref().map(|domain| {
        format!(
            "{domain}:{}",
            config.public_http_port.unwrap_or(http_addr.port())
        )
    });
}

/// `homeserver admin-api`: the admin API as a service of its own (split deployment),
/// following the projector of another process through Postgres `LISTEN`.
pub async fn run_admin_api(config: &Config, keypair: &domain::Keypair) -> anyhow::Result<()> {
    let (listen, settings) = admin_settings(config)?.context(
        "homeserver admin-api needs HOMESERVER_ADMIN_LISTEN (and HOMESERVER_ADMIN_PASSWORD)",
    )?;
    let state = crate::connect(config, keypair).await?;
    let _follow = state.progress.follow(&state.store).await?;
    let fanout = events::Fanout::spawn(
        state.log.clone(),
        state.progress.clone(),
        state.store.clone(),
    );
    let mut tasks = Vec::new();
    let addr = spawn_admin_api(
        listen,
        settings,
        config,
        (config.http_listen, config.tls_listen),
        state,
        fanout,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        &mut tasks,
    )
    .await?;
    println!("admin API listening on http://{addr}");
    for task in tasks {
        task.await?;
    }
    Ok(())
}
