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
    /// The homeserver's key, to sign users' Merkle roots; `None` serves them unsigned.
    pub root_signer: Option<RootSigner>,
}

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
            root_signer: None,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: store::Store,
    pub log: log::EventLog,
    pub blobs: blobs::BlobStore,
    pub progress: store::Progress,
    pub config: Arc<ServerConfig>,
    pub(crate) user_locks: Arc<crate::writer::UserLocks>,
}

impl AppState {
    pub fn new(
        store: store::Store,
        log: log::EventLog,
        blobs: blobs::BlobStore,
        progress: store::Progress,
        config: ServerConfig,
    ) -> Self {
        AppState {
            store,
            log,
            blobs,
            progress,
            config: Arc::new(config),
            user_locks: Arc::default(),
        }
    }
}
