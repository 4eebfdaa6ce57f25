//! The state every handler sees, and the server settings that change behaviour.

use domain::PublicKey;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    Open,
    TokenRequired,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This homeserver's public key: the audience of PoP proofs.
    pub public_key: PublicKey,
    pub signup_mode: SignupMode,
    /// Storage limit of users without an override; `None` = unlimited.
    pub default_quota_mb: Option<u64>,
    /// Largest accepted PUT body; `None` = no limit besides the quota.
    pub max_body_bytes: Option<u64>,
    /// How long a write waits for its event to be projected before answering 202.
    pub projection_wait: Duration,
    /// Bandwidth of users without an override, for reading and for writing; `None` =
    /// not limited (see [`crate::bandwidth`]).
    pub rate_read: Option<crate::bandwidth::Bandwidth>,
    pub rate_write: Option<crate::bandwidth::Bandwidth>,
    /// Bandwidth of anonymous reads, per client IP.
    pub unauthenticated_ip_rate_read: Option<crate::bandwidth::Bandwidth>,
    /// The homeserver's key, to sign users' Merkle roots; `None` serves them unsigned.
    pub root_signer: Option<RootSigner>,
    /// How long a replaced or deleted version of a file stays readable by sequence
    /// (`/versions/`) and its blob safe from GC; zero = only current versions.
    pub version_retention: Duration,
    /// What one grant may hold and mint (`grant-session-slots`).
    pub grant_session_slots: domain::session_slots::SlotLimits,
    /// How long a read waits for the read replica before it reads the primary (see
    /// [`crate::reads`]).
    pub read_replica_wait: Duration,
}

/// Default of [`ServerConfig::version_retention`]: 30 days.
pub const DEFAULT_VERSION_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The homeserver key as the signer of Merkle root statements (its `Debug` shows only
/// the public key).
#[derive(Clone)]
pub struct RootSigner(pub domain::Keypair);

impl std::fmt::Debug for RootSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootSigner({})", self.0.public_key().to_z32())
    }
}

impl ServerConfig {
    pub fn new(public_key: PublicKey) -> Self {
        ServerConfig {
            public_key,
            signup_mode: SignupMode::TokenRequired,
            default_quota_mb: None,
            max_body_bytes: None,
            projection_wait: Duration::from_secs(5),
            rate_read: None,
            rate_write: None,
            unauthenticated_ip_rate_read: None,
            root_signer: None,
            version_retention: DEFAULT_VERSION_RETENTION,
            grant_session_slots: domain::session_slots::SlotLimits::default(),
            read_replica_wait: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    /// The primary's projections; in a state made by [`crate::reads`] for one
    /// read, possibly the replica's.
    pub store: store::Store,
    /// The streaming replica reads may go to (`read_database_url`); `None` = the
    /// primary serves every read.
    pub replica: Option<store::ReadReplica>,
    pub log: log::EventLog,
    pub blobs: blobs::BlobStore,
    pub progress: store::Progress,
    pub config: Arc<ServerConfig>,
    /// Bandwidth token buckets of this process (see [`crate::bandwidth`]).
    pub throttles: Arc<crate::bandwidth::Throttles>,
    /// Request-count limits; `None` when no rule is configured.
    pub rate_limits: Option<Arc<crate::rate_limit::RateLimits>>,
    /// This process's metrics (see [`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
    /// What `/readyz` probes; Postgres and NATS unless the service says otherwise.
    pub health: crate::health::Health,
    /// Cancelled when the process begins to shut down: live event streams then end
    /// with a frame that gives their resume cursor, so draining does not wait for them.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub(crate) user_locks: Arc<crate::writer::UserLocks>,
    /// This process's appended but not yet projected file writes (see
    /// [`crate::pending`]).
    pub pending: Arc<crate::pending::PendingWrites>,
}

impl AppState {
    pub fn new(
        store: store::Store,
        log: log::EventLog,
        blobs: blobs::BlobStore,
        progress: store::Progress,
        config: ServerConfig,
    ) -> Self {
        let metrics = crate::metrics::Metrics::new("all");
        let health = crate::health::Health::new(metrics.clone(), Vec::new());
        let mut state = AppState {
            store,
            replica: None,
            log,
            blobs,
            progress,
            config: Arc::new(config),
            rate_limits: None,
            throttles: Arc::default(),
            metrics,
            health,
            shutdown: tokio_util::sync::CancellationToken::new(),
            user_locks: Arc::default(),
            pending: Arc::default(),
        };
        state.health = crate::health::Health::of_state(&state);
        state
    }

    /// Names this process's role in the `service` label of its metrics (`all` by
    /// default); its readiness probes Postgres and NATS.
    pub fn for_service(mut self, service: &'static str) -> Self {
        self.metrics = crate::metrics::Metrics::new(service);
        self.health = crate::health::Health::of_state(&self);
        self
    }

    /// The same state reading through `replica` where a service asks for it (see
    /// [`crate::reads`]); its readiness also reports the replica.
    pub fn with_replica(mut self, replica: store::ReadReplica) -> Self {
        self.health = self.health.clone().with_replica(replica.clone());
        self.replica = Some(replica);
        self
    }

    /// The same state with request-count limits (see [`crate::rate_limit`]).
    pub fn with_rate_limits(mut self, limits: crate::rate_limit::RateLimits) -> Self {
        self.rate_limits = (!limits.is_empty()).then(|| Arc::new(limits));
        self
    }
}
