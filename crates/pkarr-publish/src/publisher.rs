//! Publishing to the Mainline DHT (and optional pkarr relays): the homeserver's own packet
//! and the users' records that point here.
//!
//! Why each operation looks the way it does:
//!
//! * **Start:** [`Publisher::publish_homeserver`] signs and publishes the packet once and
//!   returns the error if that fails; the caller refuses to start, because a homeserver that
//!   nobody can find is worse than one that says why it did not come up.
//! * **Refresh:** DHT nodes forget items after a few hours, so the packet must be
//!   republished. [`Publisher::refresh_homeserver`] first resolves what the network holds
//!   (network only: our own cache would always say "fresh") and republishes only when it is
//!   missing, older than the staleness threshold (1 h by default, like the SDK's own
//!   `_pubky` republish rule), or no longer what we would publish now (address or ports
//!   changed). A republish is re-signed with a new timestamp.
//! * **Users:** a user's packet is signed by the *user*; we cannot and must not re-sign it.
//!   [`Publisher::republish_user`] republishes the exact bytes it resolved, and only when the
//!   packet's first `_pubky` `HTTPS`/`SVCB` record targets our key (the rule of the
//!   reference server): we keep our own users findable, never someone else's.
//! * **Loop:** [`run_republish_loop`] does a round every `interval` plus random jitter (so a
//!   fleet restarted together does not hit the DHT in lockstep), retries each operation
//!   with exponential backoff (200 ms → 5 s, 4 attempts by default), and stops when its
//!   [`CancellationToken`] is cancelled. We chose `CancellationToken` over a `watch`
//!   channel because it is cheap to clone into child tasks, can be derived per subsystem
//!   (`child_token`) and cannot be "un-cancelled".
//!
//! No public network is used unless configured: the pkarr client is built with
//! `no_default_network()` and then receives exactly [`DhtConfig::bootstrap`] and
//! [`DhtConfig::relays`]. [`DhtConfig::mainnet`] is the explicit opt-in to the public
//! Mainline bootstrap nodes.

use std::fmt::Display;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use pkarr::dht::ReportPolicy;
use pkarr::dns::rdata::RData;
use pkarr::{Client, Keypair, PublicKey, ResolvePolicy, SignedPacket, Timestamp};
use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::packet::{PacketError, PacketSpec, build_homeserver_packet, same_records};

/// Default staleness threshold of the homeserver packet.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// DHT bootstrap nodes as `host:port`. Empty: no DHT.
    pub bootstrap: Vec<String>,
    /// pkarr relay URLs (`http(s)://…`). Empty by default; needs the `relays` feature.
    pub relays: Vec<String>,
    /// Timeout of one DHT request (pkarr's default is 2 s; tests use 100–200 ms).
    pub request_timeout: Duration,
    /// How DHT diagnostics are judged (warnings only; [`ReportPolicy::testnet`] for small
    /// local networks, where "stored on 3 nodes" is not a problem).
    pub report_policy: ReportPolicy,
    /// IPv4 address the DHT socket binds to; `None` = [`DhtConfig::default_bind`].
    pub bind: Option<std::net::Ipv4Addr>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            relays: Vec::new(),
            request_timeout: pkarr::DEFAULT_DHT_REQUEST_TIMEOUT,
            report_policy: ReportPolicy::mainnet(),
            bind: None,
        }
    }
}

impl DhtConfig {
    /// The public Mainline DHT through its well-known bootstrap nodes, no relays.
    pub fn mainnet() -> Self {
        Self {
            bootstrap: mainline::DEFAULT_BOOTSTRAP_NODES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Self::default()
        }
    }

    /// A local test network (e.g. `mainline::Testnet::bootstrap`) with a short timeout.
    pub fn local(bootstrap: &[String], request_timeout: Duration) -> Self {
        Self {
            bootstrap: bootstrap.to_vec(),
            relays: Vec::new(),
            request_timeout,
            report_policy: ReportPolicy::testnet(),
            bind: None,
        }
    }

    /// Where the DHT socket binds when [`DhtConfig::bind`] is not set: loopback when
    /// every bootstrap node is a loopback address (a local test network, which nothing
    /// outside this machine should reach), all interfaces otherwise (the public DHT
    /// needs to be reached by other nodes).
    pub fn default_bind(&self) -> std::net::Ipv4Addr {
        let nodes = resolve_bootstrap(&self.bootstrap);
        if !nodes.is_empty() && nodes.iter().all(|n| n.ip().is_loopback()) {
            std::net::Ipv4Addr::LOCALHOST
        } else {
            std::net::Ipv4Addr::UNSPECIFIED
        }
    }
}

/// Why a [`Publisher`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// Neither bootstrap nodes nor relays are configured.
    #[error(
        "no DHT bootstrap nodes and no pkarr relays configured: nothing to publish to \
         (configure `bootstrap`, e.g. the public Mainline nodes, or `relays`)"
    )]
    NoNetwork,
    /// Bootstrap nodes were configured but none resolves to an IPv4 address.
    #[error("none of the DHT bootstrap nodes resolves to an IPv4 address: {0:?}")]
    NoUsableBootstrap(Vec<String>),
    /// Relays were configured but this build has no relay client.
    #[error(
        "pkarr relays are configured ({0:?}) but this build lacks the `relays` feature of \
         hs-pkarr-publish"
    )]
    RelaysNotCompiled(Vec<String>),
    /// A relay URL is invalid.
    #[error("invalid pkarr relay URL: {0}")]
    InvalidRelay(String),
    /// pkarr could not build its client (e.g. the DHT socket could not be bound).
    #[error("cannot build the pkarr client: {0}")]
    Build(#[from] pkarr::errors::BuildError),
}

/// Why a publish, refresh or republish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The homeserver packet could not be built (configuration problem; never retried).
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// The DHT/relays did not accept the packet.
    #[error("publishing the packet of {key} failed: {source}")]
    Publish {
        /// Whose packet.
        key: PublicKey,
        /// pkarr's reason.
        #[source]
        source: pkarr::errors::PublishError,
    },
    /// The DHT/relays could not be queried.
    #[error("resolving the packet of {key} failed: {source}")]
    Resolve {
        /// Whose packet.
        key: PublicKey,
        /// pkarr's reason.
        #[source]
        source: pkarr::errors::ResolveError,
    },
}

impl PublishError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, PublishError::Packet(_))
    }
}

/// Why the homeserver packet was (re)published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// The network has no (valid) packet for our key.
    Missing,
    /// The network's packet is older than the staleness threshold.
    Stale,
    /// The network's packet says something else than what we would publish now.
    Changed,
}

/// What [`Publisher::refresh_homeserver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeserverRefresh {
    /// A new packet was signed and published.
    Published {
        /// Why.
        reason: RefreshReason,
        /// How many DHT nodes acknowledged storing it.
        stored_on: u32,
    },
    /// The network's packet is recent and current; nothing was published.
    Fresh {
        /// Age of the network's packet.
        age: Duration,
    },
}

/// What [`Publisher::republish_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRepublish {
    /// The user's own signed packet was republished byte for byte.
    Republished {
        /// How many DHT nodes acknowledged storing it.
        stored_on: u32,
    },
    /// The user's packet exists but its `_pubky` record names another homeserver (or none).
    NotOurs,
    /// No valid packet for the user was found.
    Missing,
}

/// Publishes through one pkarr client; cheap to share behind an [`Arc`].
#[derive(Debug)]
pub struct Publisher {
    client: Client,
    stale_after: Duration,
    /// pkarr does not serialize publishes of one key; refreshes and the start publish of
    /// the homeserver packet must not race each other (a racing older timestamp would be
    /// rejected or, worse, win on some nodes).
    homeserver_lock: tokio::sync::Mutex<()>,
}

impl Publisher {
    /// Builds the pkarr client: no default network, then exactly what `config` lists.
    ///
    /// # Errors
    ///
    /// See [`PublisherError`].
    pub fn new(config: &DhtConfig) -> Result<Self, PublisherError> {
        if config.bootstrap.is_empty() && config.relays.is_empty() {
            return Err(PublisherError::NoNetwork);
        }

        let mut builder = Client::builder();
        builder
            .no_default_network()
            .dht_request_timeout(config.request_timeout);

        if !config.bootstrap.is_empty() {
            let nodes = resolve_bootstrap(&config.bootstrap);
            if nodes.is_empty() {
                return Err(PublisherError::NoUsableBootstrap(config.bootstrap.clone()));
            }
            let bind = config.bind.unwrap_or_else(|| config.default_bind());
            builder
                .bootstrap(&nodes)
                .dht(|dht| {
                    dht.bind_address = Some(bind);
                    dht
                })
                .dht_report_policy(config.report_policy);
        }

        if !config.relays.is_empty() {
            add_relays(&mut builder, config)?;
        }

        Ok(Self {
            client: builder.build()?,
            stale_after: DEFAULT_STALE_AFTER,
            homeserver_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Sets the staleness threshold of [`Self::refresh_homeserver`].
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// The staleness threshold of [`Self::refresh_homeserver`].
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// The underlying pkarr client (resolution for other components, diagnostics).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Signs the homeserver packet now and publishes it; the start-up publish.
    ///
    /// # Errors
    ///
    /// The packet cannot be built, or the network did not accept it. The caller should
    /// refuse to start and show the error.
    pub async fn publish_homeserver(
        &self,
        keypair: &Keypair,
        spec: &PacketSpec,
    ) -> Result<SignedPacket, PublishError> {
        let _guard = self.homeserver_lock.lock().await;
        let packet = build_homeserver_packet(keypair, spec)?;
        let stored_on = self.publish(&packet).await?;
        info!(
            key = %keypair.public_key(),
            tls_port = spec.tls_port,
            public_ip = %spec.public_ip,
            stored_on,
            "published the homeserver packet"
        );
        Ok(packet)
    }

    /// Republishes the homeserver packet if the network's copy is missing, stale or
    /// different from what we would publish now; otherwise leaves it alone.
    ///
    /// # Errors
    ///
    /// The packet cannot be built, or a needed publish failed. Resolution failures count as
    /// "missing" (we cannot see a packet, so we publish one).
    pub async fn refresh_homeserver(
        &self,
        keypair: &Keypair,
        spec: &PacketSpec,
    ) -> Result<HomeserverRefresh, PublishError> {
        let _guard = self.homeserver_lock.lock().await;
        let key = keypair.public_key();
        let wanted = build_homeserver_packet(keypair, spec)?;

        let reason = match self.client.resolve(&key, ResolvePolicy::NetworkOnly).await {
            Ok(current) => {
                let age = age_of(&current);
                if !same_records(&current, &wanted) {
                    RefreshReason::Changed
                } else if age >= self.stale_after {
                    RefreshReason::Stale
                } else {
                    debug!(%key, age_secs = age.as_secs(), "homeserver packet is fresh");
                    return Ok(HomeserverRefresh::Fresh { age });
                }
            }
            Err(error) => {
                debug!(%key, %error, "homeserver packet not resolvable");
                RefreshReason::Missing
            }
        };

        let stored_on = self.publish(&wanted).await?;
        info!(%key, ?reason, stored_on, "republished the homeserver packet");
        Ok(HomeserverRefresh::Published { reason, stored_on })
    }

    /// Republishes `user`'s most recent signed packet, unchanged, if its first `_pubky`
    /// record targets `our_key`.
    ///
    /// # Errors
    ///
    /// The DHT could not be queried (other than "not found"), or the publish failed.
    pub async fn republish_user(
        &self,
        user: &PublicKey,
        our_key: &PublicKey,
    ) -> Result<UserRepublish, PublishError> {
        let packet = match self.client.resolve(user, ResolvePolicy::NetworkOnly).await {
            Ok(packet) => packet,
            Err(pkarr::errors::ResolveError::NotFound) => {
                debug!(%user, "user packet missing");
                return Ok(UserRepublish::Missing);
            }
            Err(pkarr::errors::ResolveError::InvalidSignedPacket { seq }) => {
                // Signed by the user's key but not a valid pkarr packet: nothing we can
                // (or should) republish, and retrying will not change it.
                warn!(%user, seq, "user's newest DHT item is not a valid signed packet");
                return Ok(UserRepublish::Missing);
            }
            Err(source) => {
                return Err(PublishError::Resolve {
                    key: user.clone(),
                    source,
                });
            }
        };

        if homeserver_of(&packet).as_ref() != Some(our_key) {
            debug!(%user, "user's _pubky record names another homeserver");
            return Ok(UserRepublish::NotOurs);
        }

        let stored_on = self.publish(&packet).await?;
        debug!(%user, stored_on, "republished user packet");
        Ok(UserRepublish::Republished { stored_on })
    }

    /// The homeserver `user`'s record names now, as the network has it (`None`: no
    /// record, or one that names no homeserver).
    ///
    /// # Errors
    ///
    /// The DHT could not be queried (other than "not found").
    pub async fn homeserver_of_user(
        &self,
        user: &PublicKey,
    ) -> Result<Option<PublicKey>, PublishError> {
        match self.client.resolve(user, ResolvePolicy::NetworkOnly).await {
            Ok(packet) => Ok(homeserver_of(&packet)),
            Err(pkarr::errors::ResolveError::NotFound) => Ok(None),
            Err(source) => Err(PublishError::Resolve {
                key: user.clone(),
                source,
            }),
        }
    }

    /// Publishes `user`'s record naming `homeserver` (built by
    /// [`crate::packet::build_user_packet`] over the user's newest packet, whose other
    /// records it keeps); the last step of a move (docs/move.md). Returns the nodes
    /// that stored it.
    ///
    /// # Errors
    ///
    /// The DHT could not be queried (other than "not found"), or the publish failed.
    pub async fn publish_user_homeserver(
        &self,
        user: &Keypair,
        homeserver: &PublicKey,
    ) -> Result<u32, PublishError> {
        let key = user.public_key();
        let existing = match self.client.resolve(&key, ResolvePolicy::NetworkOnly).await {
            Ok(packet) => Some(packet),
            Err(pkarr::errors::ResolveError::NotFound)
            | Err(pkarr::errors::ResolveError::InvalidSignedPacket { .. }) => None,
            Err(source) => return Err(PublishError::Resolve { key, source }),
        };
        let packet = crate::packet::build_user_packet(user, homeserver, existing.as_ref())?;
        self.publish(&packet).await
    }

    async fn publish(&self, packet: &SignedPacket) -> Result<u32, PublishError> {
        self.client
            .publish(packet)
            .await
            .map_err(|source| PublishError::Publish {
                key: packet.public_key(),
                source,
            })
    }
}

/// The homeserver a user's packet names: the target of its first `_pubky` `HTTPS` or `SVCB`
/// record, if that target is a public key (what the SDK's `get_homeserver_of` reads).
pub fn homeserver_of(packet: &SignedPacket) -> Option<PublicKey> {
    packet
        .resource_records("_pubky")
        .find_map(|rr| match &rr.rdata {
            RData::HTTPS(https) => Some(https.0.target.to_string()),
            RData::SVCB(svcb) => Some(svcb.target.to_string()),
            _ => None,
        })
        .and_then(|target| target.trim_end_matches('.').parse::<PublicKey>().ok())
}

fn age_of(packet: &SignedPacket) -> Duration {
    let micros = Timestamp::now()
        .as_u64()
        .saturating_sub(packet.timestamp().as_u64());
    Duration::from_micros(micros)
}

/// Resolves `host:port` entries; entries that do not resolve are logged and skipped (the
/// DHT works with any reachable subset).
fn resolve_bootstrap(entries: &[String]) -> Vec<SocketAddr> {
    let mut nodes = Vec::new();
    for entry in entries {
        match entry.to_socket_addrs() {
            Ok(addrs) => {
                let before = nodes.len();
                nodes.extend(addrs.filter(SocketAddr::is_ipv4));
                if nodes.len() == before {
                    warn!(%entry, "DHT bootstrap node has no IPv4 address; skipped");
                }
            }
            Err(error) => warn!(%entry, %error, "DHT bootstrap node does not resolve; skipped"),
        }
    }
    nodes
}

#[cfg(feature = "relays")]
fn add_relays(
    builder: &mut pkarr::ClientBuilder,
    config: &DhtConfig,
) -> Result<(), PublisherError> {
    builder
        .relays(&config.relays)
        .map_err(|e| PublisherError::InvalidRelay(e.to_string()))?
        .relay_request_timeout(config.request_timeout.max(Duration::from_secs(1)));
    Ok(())
}

#[cfg(not(feature = "relays"))]
fn add_relays(
    _builder: &mut pkarr::ClientBuilder,
    config: &DhtConfig,
) -> Result<(), PublisherError> {
    Err(PublisherError::RelaysNotCompiled(config.relays.clone()))
}

/// Exponential backoff between attempts of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub attempts: u32,
    /// Pause after the first failure; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Upper bound of a pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `failed` (1-based).
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, runs out of attempts
    /// or `cancel` fires during a pause (then the last error is returned).
    async fn run<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        what: &str,
        mut op: F,
    ) -> Result<T, PublishError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PublishError>>,
    {
        let mut failed = 0;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            failed += 1;
            if !error.is_retryable() || failed >= self.attempts.max(1) {
                return Err(error);
            }
            let pause = self.backoff(failed);
            debug!(what, attempt = failed, %error, ?pause, "retrying after backoff");
            tokio::select! {
                () = cancel.cancelled() => return Err(error),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// When [`run_republish_loop`] runs its rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepublishSchedule {
    /// Pause before the first round (the start-up publish has just happened).
    pub initial_delay: Duration,
    /// Pause between the end of one round and the start of the next…
    pub interval: Duration,
    /// …plus a uniformly random extra in `0..=jitter`.
    pub jitter: Duration,
    /// Backoff for each publish/republish.
    pub retry: RetryPolicy,
    /// User republishes in flight at once.
    pub concurrency: usize,
}

impl Default for RepublishSchedule {
    /// Hourly, with up to 5 minutes of jitter and 12 users at a time (the homeserver packet
    /// is then refreshed within its 1 h staleness threshold plus jitter; users' packets,
    /// whose own clients republish them at sign-in, are kept alive on the DHT).
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(60),
            interval: Duration::from_secs(60 * 60),
            jitter: Duration::from_secs(5 * 60),
            retry: RetryPolicy::default(),
            concurrency: 12,
        }
    }
}

/// The outcome of one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// The homeserver refresh, or the error that ended its retries.
    pub homeserver: Option<Result<HomeserverRefresh, String>>,
    /// Users whose packet was republished.
    pub republished: usize,
    /// Users whose packet names another homeserver.
    pub not_ours: usize,
    /// Users without a resolvable packet.
    pub missing: usize,
    /// Users whose republish failed after all retries.
    pub failed: usize,
    /// Whether listing the users failed (then no user was republished).
    pub users_unavailable: bool,
}

/// One round: refresh the homeserver packet, then republish every listed user (at most
/// `schedule.concurrency` at a time), each with retries.
pub async fn republish_round(
    publisher: &Arc<Publisher>,
    keypair: &Keypair,
    spec: &PacketSpec,
    users: Vec<PublicKey>,
    schedule: &RepublishSchedule,
    cancel: &CancellationToken,
) -> RoundReport {
    let mut report = RoundReport::default();
    let retry = schedule.retry;

    let refresh = retry
        .run(cancel, "refresh homeserver packet", || {
            publisher.refresh_homeserver(keypair, spec)
        })
        .await;
    if let Err(error) = &refresh {
        warn!(key = %keypair.public_key(), %error, "could not refresh the homeserver packet");
    }
    report.homeserver = Some(refresh.map_err(|e| e.to_string()));

    let our_key = keypair.public_key();
    let mut tasks = JoinSet::new();
    let mut users = users.into_iter();
    loop {
        while tasks.len() < schedule.concurrency.max(1) {
            let Some(user) = users.next() else { break };
            let publisher = Arc::clone(publisher);
            let our_key = our_key.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let result = retry
                    .run(&cancel, "republish user packet", || {
                        publisher.republish_user(&user, &our_key)
                    })
                    .await;
                (user, result)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok((_, Ok(UserRepublish::Republished { .. }))) => report.republished += 1,
            Ok((_, Ok(UserRepublish::NotOurs))) => report.not_ours += 1,
            Ok((_, Ok(UserRepublish::Missing))) => report.missing += 1,
            Ok((user, Err(error))) => {
                warn!(%user, %error, "could not republish a user's packet");
                report.failed += 1;
            }
            Err(join_error) => {
                warn!(%join_error, "user republish task failed");
                report.failed += 1;
            }
        }
    }
    report
}

/// Runs [`republish_round`] periodically until `cancel` fires, then returns promptly (an
/// in-flight round is dropped; DHT puts are idempotent, so nothing is left half done).
///
/// `list_users` is called at the start of every round (e.g. a projection query); if it
/// fails, the round still refreshes the homeserver packet. `on_round` sees every report
/// (metrics, tests).
pub async fn run_republish_loop<L, LFut, E, R>(
    publisher: Arc<Publisher>,
    keypair: Keypair,
    spec: PacketSpec,
    schedule: RepublishSchedule,
    mut list_users: L,
    mut on_round: R,
    cancel: CancellationToken,
) where
    L: FnMut() -> LFut,
    LFut: Future<Output = Result<Vec<PublicKey>, E>>,
    E: Display,
    R: FnMut(&RoundReport),
{
    let span = info_span!("pkarr_republish", key = %keypair.public_key());
    async move {
        let mut pause = schedule.initial_delay;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }

            let round = async {
                let (users, users_unavailable) = match list_users().await {
                    Ok(users) => (users, false),
                    Err(error) => {
                        warn!(%error, "cannot list users to republish");
                        (Vec::new(), true)
                    }
                };
                let mut report =
                    republish_round(&publisher, &keypair, &spec, users, &schedule, &cancel).await;
                report.users_unavailable = users_unavailable;
                report
            };
            let report = tokio::select! {
                () = cancel.cancelled() => break,
                report = round => report,
            };
            info!(
                homeserver = ?report.homeserver,
                republished = report.republished,
                not_ours = report.not_ours,
                missing = report.missing,
                failed = report.failed,
                "republish round finished"
            );
            on_round(&report);

            pause = schedule.interval + random_up_to(schedule.jitter);
        }
        info!("republish loop stopped");
    }
    .instrument(span)
    .await;
}

fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let pauses: Vec<_> = (1..=7).map(|n| policy.backoff(n)).collect();
        assert_eq!(
            pauses,
            [200, 400, 800, 1600, 3200, 5000, 5000].map(Duration::from_millis)
        );
    }

    #[test]
    fn no_network_is_refused() {
        assert!(matches!(
            Publisher::new(&DhtConfig::default()),
            Err(PublisherError::NoNetwork)
        ));
        let unusable = DhtConfig::local(&["[::1]:6881".to_string()], Duration::from_millis(100));
        assert!(matches!(
            Publisher::new(&unusable),
            Err(PublisherError::NoUsableBootstrap(_))
        ));
    }

    #[cfg(not(feature = "relays"))]
    #[test]
    fn relays_without_the_feature_are_refused() {
        let config = DhtConfig {
            relays: vec!["http://127.0.0.1:1".to_string()],
            ..DhtConfig::default()
        };
        assert!(matches!(
            Publisher::new(&config),
            Err(PublisherError::RelaysNotCompiled(_))
        ));
    }

    #[test]
    fn mainnet_is_opt_in() {
        assert!(DhtConfig::default().bootstrap.is_empty());
        let local = DhtConfig::local(
            &["127.0.0.1:6881".into(), "localhost:6882".into()],
            Duration::from_millis(100),
        );
        assert_eq!(local.default_bind(), std::net::Ipv4Addr::LOCALHOST);
        let mixed = DhtConfig::local(
            &["127.0.0.1:6881".into(), "192.0.2.1:6881".into()],
            Duration::from_millis(100),
        );
        assert_eq!(mixed.default_bind(), std::net::Ipv4Addr::UNSPECIFIED);
        assert!(DhtConfig::default().relays.is_empty());
        assert!(!DhtConfig::mainnet().bootstrap.is_empty());
        assert!(DhtConfig::mainnet().relays.is_empty());
    }
}
