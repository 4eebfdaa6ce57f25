//! Configuration: built-in defaults, then a TOML file, then environment variables.
//!
//! Every knob is listed in the README. One order, later wins:
//! 1. built-in defaults;
//! 2. the TOML file (`--config` / `HOMESERVER_CONFIG`);
//! 3. the conventional variables other tools share: `DATABASE_URL`, `NATS_URL`,
//!    `PUBKY_DHT_BOOTSTRAP` (comma-separated `host:port` list);
//! 4. `HOMESERVER_<KEY>` for any key (e.g. `HOMESERVER_SIGNUP_MODE=open`).
//!
//! The specific variable wins over the conventional one because it can only have been
//! meant for this program, while a `DATABASE_URL` may be left in a shell for another.
//! When both are set and differ, [`environment_conflicts`] says so at start.

use api::SignupMode;
use domain::session_slots::SlotLimits;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Holds the homeserver's `secret` key, `public_key`, and blobs (fs backend).
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_max_connections: u32,
    /// A streaming replica of `database_url` that the read-api and events services
    /// (and `homeserver all`) read the projections from; unset = every read goes to
    /// the primary. Writes, sessions and the admin API always use the primary.
    pub read_database_url: Option<String>,
    /// How long a read waits for the replica to replay the writes it must see before
    /// it reads the primary instead (read-your-writes, see `api::reads`).
    pub read_replica_wait_ms: u64,
    pub nats_url: String,
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    /// Copies of the log stream (and the rate counters) on a JetStream cluster: 3 on
    /// three nodes, 1 on a single server (JetStream allows at most 5).
    pub nats_replicas: std::num::NonZeroUsize,
    pub signup_mode: SignupMode,
    /// Storage limit for users without an override, in MiB; unset = unlimited.
    pub default_quota_mb: Option<u64>,
    /// Largest accepted upload in bytes; unset = limited only by the quota.
    pub max_body_bytes: Option<u64>,
    /// Plain HTTP listener (behind a reverse proxy, or for the browser SDK).
    pub http_listen: SocketAddr,
    /// Pubky TLS listener (raw public key TLS with the homeserver key).
    pub tls_listen: SocketAddr,
    /// Blob store: `{ type = "fs", root = "..." }` or `{ type = "s3", ... }`; defaults
    /// to `<data_dir>/blobs`.
    #[serde(skip_serializing)]
    pub blobs: Option<blobs::BlobStoreConfig>,
    /// DHT bootstrap nodes (`host:port`); empty = the public Mainline bootstrap.
    pub dht_bootstrap: Vec<String>,
    /// Publish to the public Mainline DHT when no bootstrap nodes are given. Off by
    /// default so that a homeserver never reaches the internet unless told to.
    pub dht_mainnet: bool,
    /// IPv4 address the Mainline DHT socket binds to. Unset: loopback when every
    /// bootstrap node is a loopback address (a local test network), all interfaces
    /// otherwise.
    pub dht_bind: Option<std::net::Ipv4Addr>,
    /// pkarr relays; none by default.
    pub dht_relays: Vec<String>,
    pub dht_request_timeout_ms: u64,
    /// Seconds between two rounds of the PKARR republisher (the homeserver's own packet
    /// and every user's `_pubky` record that names this server); `0` disables the loop
    /// (the start-up publish still happens). DHT nodes drop items after a few hours, so
    /// a round every hour keeps everyone findable with room for failed rounds.
    pub republish_interval_secs: u64,
    /// Pause before the first round: the start-up publish has just refreshed our own
    /// packet, and a fleet restarted together should not hit the DHT at once.
    pub republish_initial_delay_secs: u64,
    /// Up to this many random seconds are added to every interval (de-synchronises a fleet).
    pub republish_jitter_secs: u64,
    /// Users republished concurrently within one round.
    pub republish_concurrency: usize,
    /// Address published in the PKARR record; defaults to the TLS listener's IP.
    pub public_ip: Option<std::net::IpAddr>,
    /// Ports published in the PKARR record; default to the listeners' ports.
    pub public_tls_port: Option<u16>,
    pub public_http_port: Option<u16>,
    /// ICANN domain published beside the Pubky TLS endpoint (`localhost` for local runs).
    pub icann_domain: Option<String>,
    /// Seconds between two periodic collections of Merkle nodes that no retained root
    /// refers to (in the process running the projector); `0` disables them
    /// (`homeserver merkle-gc` still works). Each sweeps only the trees with a root
    /// replaced more than `merkle_gc_grace_secs` ago since their last sweep.
    pub merkle_gc_interval_secs: u64,
    /// Roots replaced less than this many seconds ago stay walkable, so that a client
    /// in the middle of a diff against one can finish.
    pub merkle_gc_grace_secs: u64,
    /// How long a write waits for its event to become visible before answering 202.
    pub projection_wait_ms: u64,
    /// Split deployment: where `homeserver gateway` forwards writes and auth, reads,
    /// and event feeds (`http://host:port`).
    pub gateway_write_api: Option<String>,
    pub gateway_read_api: Option<String>,
    pub gateway_events: Option<String>,
    /// How long a replaced or deleted version of a file stays readable under
    /// `/versions/` (and its blob safe from `homeserver gc`), counted from the event
    /// that replaced it; `0` = only current versions. Default 30 days.
    pub version_retention_secs: u64,
    /// `pretty` or `json` logs.
    pub log_format: String,
    /// Request-count limits (429), counted across instances through NATS; see the
    /// README. The default limits signup token lookups to 10 a minute per IP.
    pub rate_limits: Vec<api::rate_limit::RateLimitRule>,
    /// Bandwidth of users without an override (`<n>kb/s`, `mb/s`, `gb/s`, or `/m`):
    /// downloads, uploads, and anonymous downloads per client IP. Unset = unlimited.
    /// Transfers over the rate are slowed down, never refused.
    pub rate_read: Option<String>,
    pub rate_write: Option<String>,
    pub unauthenticated_ip_rate_read: Option<String>,
    /// Listener of `GET /metrics` (Prometheus text), `/healthz` and `/readyz`; unset =
    /// no metrics listener (as the reference, whose metrics are off by default). Each
    /// process of a split deployment needs its own address.
    pub metrics_listen: Option<SocketAddr>,
    /// Admin API listener (plain HTTP; keep it on localhost or a private network).
    /// Unset = no admin API. When set, `admin_password` is required.
    pub admin_listen: Option<SocketAddr>,
    /// The operator's password (`X-Admin-Password`). No default: a server with an
    /// admin listener and no password refuses to start.
    #[serde(skip_serializing)]
    pub admin_password: Option<String>,
    /// `grant-session-slots` (the reference's `[grant_auth]`): live bearer sessions one
    /// grant may hold at once (a new slot beyond is 409), and sessions it may mint per
    /// fixed 60-second window, rotations included (beyond: 429). Both must be positive.
    pub max_sessions_per_grant: NonZeroU64,
    pub session_issuance_per_minute: NonZeroU64,
    /// Serve the `/drive` web file explorer (the reference's `[drive] web_explorer`),
    /// off by default.
    pub drive_web_explorer: bool,
    /// Serve `POST /generate_demo_user` on the admin listener (the reference's
    /// `[admin] demo_users`), off by default.
    pub admin_demo_users: bool,
    /// Seconds between the mirror loop's comparisons of each mirrored user's signed
    /// roots at the primary with the local ones (anti-entropy, docs/mirror.md); drift
    /// is repaired by diff. `0` is read as 1.
    pub mirror_anti_entropy_secs: u64,
    /// Seconds a user who moved to another homeserver (docs/move.md) is still read
    /// here after the move; their writes are refused (410) from the move on, and their
    /// reads too after this.
    pub move_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".data/homeserver"),
            database_url: "postgres://postgres@127.0.0.1:54329/homeserver".into(),
            database_max_connections: 32,
            read_database_url: None,
            read_replica_wait_ms: 2000,
            nats_url: "nats://127.0.0.1:42229".into(),
            nats_stream: "HS_EVENTS".into(),
            nats_subject_prefix: "hs".into(),
            nats_replicas: std::num::NonZeroUsize::MIN,
            signup_mode: SignupMode::TokenRequired,
            default_quota_mb: None,
            max_body_bytes: None,
            http_listen: ([127, 0, 0, 1], 6286).into(),
            tls_listen: ([127, 0, 0, 1], 6287).into(),
            blobs: None,
            dht_bootstrap: Vec::new(),
            dht_mainnet: false,
            dht_bind: None,
            dht_relays: Vec::new(),
            dht_request_timeout_ms: 2000,
            republish_interval_secs: 3600,
            republish_initial_delay_secs: 60,
            republish_jitter_secs: 300,
            republish_concurrency: 12,
            public_ip: None,
            public_tls_port: None,
            public_http_port: None,
            icann_domain: Some("localhost".into()),
            merkle_gc_interval_secs: 600,
            merkle_gc_grace_secs: 3600,
            projection_wait_ms: 5000,
            gateway_write_api: None,
            gateway_read_api: None,
            gateway_events: None,
            version_retention_secs: api::state::DEFAULT_VERSION_RETENTION.as_secs(),
            log_format: "pretty".into(),
            rate_limits: vec![api::rate_limit::RateLimitRule::signup_token_lookups()],
            rate_read: None,
            rate_write: None,
            unauthenticated_ip_rate_read: None,
            metrics_listen: None,
            admin_listen: None,
            admin_password: None,
            max_sessions_per_grant: SlotLimits::DEFAULT_MAX_SESSIONS_PER_GRANT,
            session_issuance_per_minute: SlotLimits::DEFAULT_SESSION_ISSUANCE_PER_MINUTE,
            drive_web_explorer: false,
            admin_demo_users: false,
            mirror_anti_entropy_secs: 60,
            move_grace_secs: mirror::MOVE_GRACE.as_secs(),
        }
    }
}

impl Config {
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::raw().only(&["DATABASE_URL", "NATS_URL"]));
        if let Ok(list) = std::env::var("PUBKY_DHT_BOOTSTRAP") {
            figment = figment.merge(Serialized::default("dht_bootstrap", bootstrap_list(&list)));
        }
        figment = figment.merge(Env::prefixed("HOMESERVER_").ignore(&["CONFIG"]));
        figment.extract().map_err(Box::new)
    }

    pub fn blob_config(&self) -> blobs::BlobStoreConfig {
        self.blobs
            .clone()
            .unwrap_or_else(|| blobs::BlobStoreConfig::fs(self.data_dir.join("blobs")))
    }

    /// Where the homeserver's PKARR record is published; `None` = not published.
    pub fn dht_config(&self) -> Option<pkarr_publish::DhtConfig> {
        let timeout = std::time::Duration::from_millis(self.dht_request_timeout_ms);
        let mut dht = if !self.dht_bootstrap.is_empty() {
            pkarr_publish::DhtConfig::local(&self.dht_bootstrap, timeout)
        } else if self.dht_mainnet {
            pkarr_publish::DhtConfig::mainnet()
        } else {
            return None;
        };
        dht.request_timeout = timeout;
        dht.bind = self.dht_bind;
        dht.relays = self.dht_relays.clone();
        Some(dht)
    }

    /// When the PKARR republisher runs; `None` when it is disabled
    /// (`republish_interval_secs = 0`).
    pub fn republish_schedule(&self) -> Option<pkarr_publish::RepublishSchedule> {
        if self.republish_interval_secs == 0 {
            return None;
        }
        Some(pkarr_publish::RepublishSchedule {
            initial_delay: std::time::Duration::from_secs(self.republish_initial_delay_secs),
            interval: std::time::Duration::from_secs(self.republish_interval_secs),
            jitter: std::time::Duration::from_secs(self.republish_jitter_secs),
            concurrency: self.republish_concurrency.max(1),
            ..pkarr_publish::RepublishSchedule::default()
        })
    }

    pub fn version_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.version_retention_secs)
    }

    /// The periodic Merkle garbage collection, counting into `metrics`; `None` when it
    /// is disabled (`merkle_gc_interval_secs = 0`).
    /// The set of mirrored and moved users the guard answers from.
    pub fn mirror_set(&self) -> mirror::MirrorSet {
        mirror::MirrorSet::with_move_grace(std::time::Duration::from_secs(self.move_grace_secs))
    }

    /// The mirror loop's settings.
    pub fn mirror_settings(&self) -> mirror::Settings {
        mirror::Settings {
            anti_entropy: std::time::Duration::from_secs(self.mirror_anti_entropy_secs.max(1)),
            ..mirror::Settings::default()
        }
    }

    pub fn merkle_gc(&self, metrics: &api::metrics::Metrics) -> Option<projector::MerkleGcConfig> {
        (self.merkle_gc_interval_secs > 0).then(|| projector::MerkleGcConfig {
            interval: std::time::Duration::from_secs(self.merkle_gc_interval_secs),
            grace: std::time::Duration::from_secs(self.merkle_gc_grace_secs),
            collected: metrics.merkle_nodes_collected(),
        })
    }

    pub fn grant_session_slots(&self) -> SlotLimits {
        SlotLimits {
            max_sessions_per_grant: self.max_sessions_per_grant,
            session_issuance_per_minute: self.session_issuance_per_minute,
        }
    }

    pub fn log_config(&self) -> log::LogConfig {
        let mut log = log::LogConfig::new(&self.nats_url);
        log.stream = self.nats_stream.clone();
        log.subject_prefix = self.nats_subject_prefix.clone();
        log.replicas = self.nats_replicas.get();
        log
    }
}

/// `PUBKY_DHT_BOOTSTRAP`'s comma-separated `host:port` list.
fn bootstrap_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The conventional variables set next to their `HOMESERVER_` twin with another
/// value, each as a sentence naming the one in force (see the module docs), for a
/// warning at start.
pub fn environment_conflicts() -> Vec<String> {
    conflicts_in(|name| std::env::var(name).ok())
}

fn conflicts_in(var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    [
        ("DATABASE_URL", "HOMESERVER_DATABASE_URL"),
        ("NATS_URL", "HOMESERVER_NATS_URL"),
        ("PUBKY_DHT_BOOTSTRAP", "HOMESERVER_DHT_BOOTSTRAP"),
    ]
    .into_iter()
    .filter_map(|(conventional, specific)| {
        let (a, b) = (var(conventional)?, var(specific)?);
        (a != b).then(|| {
            format!(
                "{conventional} and {specific} are both set and differ: {specific} is used \
                 ({conventional} is ignored)"
            )
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error
    fn the_specific_variable_wins_over_the_conventional_one() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "hs.toml",
                "database_url = \"postgres://file/db\"\nnats_url = \"nats://file:1\"\n\
                 dht_bootstrap = [\"10.0.0.1:1\"]\n",
            )?;
            let file = std::path::Path::new("hs.toml");
            let loaded = Config::load(Some(file)).map_err(|e| *e)?;
            assert_eq!(loaded.database_url, "postgres://file/db");
            assert_eq!(loaded.dht_bootstrap, ["10.0.0.1:1"]);

            jail.set_env("DATABASE_URL", "postgres://conventional/db");
            jail.set_env("NATS_URL", "nats://conventional:1");
            jail.set_env("PUBKY_DHT_BOOTSTRAP", "127.0.0.1:6881, 127.0.0.1:6882");
            let loaded = Config::load(Some(file)).map_err(|e| *e)?;
            assert_eq!(loaded.database_url, "postgres://conventional/db");
            assert_eq!(loaded.nats_url, "nats://conventional:1");
            assert_eq!(loaded.dht_bootstrap, ["127.0.0.1:6881", "127.0.0.1:6882"]);

            jail.set_env("HOMESERVER_DATABASE_URL", "postgres://specific/db");
            jail.set_env("HOMESERVER_DHT_BIND", "127.0.0.2");
            let loaded = Config::load(Some(file)).map_err(|e| *e)?;
            assert_eq!(loaded.database_url, "postgres://specific/db");
            assert_eq!(loaded.nats_url, "nats://conventional:1");
            assert_eq!(
                loaded.dht_config().and_then(|d| d.bind),
                Some(std::net::Ipv4Addr::new(127, 0, 0, 2))
            );
            Ok(())
        });
    }

    #[test]
    fn differing_twins_are_reported_and_equal_ones_are_not() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let found = conflicts_in(vars(&[
            ("DATABASE_URL", "postgres://a/x"),
            ("HOMESERVER_DATABASE_URL", "postgres://b/x"),
            ("NATS_URL", "nats://same:1"),
            ("HOMESERVER_NATS_URL", "nats://same:1"),
        ]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("DATABASE_URL and HOMESERVER_DATABASE_URL"));
        assert!(found[0].contains("HOMESERVER_DATABASE_URL is used"));
        assert!(conflicts_in(vars(&[("DATABASE_URL", "postgres://a/x")])).is_empty());
    }
}
