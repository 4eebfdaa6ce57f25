//! Starting and stopping the homeservers under test, each on its own database.
//!
//! Both servers run as separate processes (so their memory can be read from `/proc`)
//! on loopback ports chosen here, with `open` signups, logs at `warn` and a private
//! data directory under `bench-results/tmp/`. Both publish their PKARR packet once at
//! start on a local Mainline testnet run inside the bench (the reference refuses to
//! start if that publish fails; nothing here may reach the internet); republishing is
//! off for both.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pubky_common::crypto::{Keypair, PublicKey};
use sqlx::Connection;

/// Which homeserver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Reference,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Reference => "reference",
        }
    }
}

/// Shared by both servers of a run.
pub struct Env {
    pub database_url: String,
    pub nats_url: String,
    pub dht_bootstrap: Vec<String>,
    pub work_dir: PathBuf,
    /// Short random id, used in database and stream names.
    pub run_id: String,
}

impl Env {
    /// The run's servers, the local DHT, and a fresh run id.
    pub fn new(
        database_url: &str,
        nats_url: &str,
        dht: &mainline::Testnet,
        work_dir: &Path,
    ) -> Env {
        Env {
            database_url: database_url.to_string(),
            nats_url: nats_url.to_string(),
            dht_bootstrap: dht.bootstrap.clone(),
            work_dir: work_dir.to_path_buf(),
            run_id: format!("{:08x}", rand::random::<u32>()),
        }
    }
}

/// A running homeserver process.
pub struct Server {
    pub kind: Kind,
    /// `http://127.0.0.1:<port>`: the plain HTTP listener.
    pub base: String,
    pub public_key: PublicKey,
    child: Child,
    /// Its own database in the Postgres of the run.
    pub database: String,
    stream: Option<String>,
    /// Data directory (identity, blobs), removed at `stop`; the log is kept.
    dir: PathBuf,
    pub log_path: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Our homeserver: `homeserver all` from `binary`.
    pub async fn start_ours(env: &Env, binary: &Path) -> Result<Server> {
        let database = format!("bench_ours_{}", env.run_id);
        let database_url = create_database(&env.database_url, &database).await?;
        let dir = env.work_dir.join(format!("ours-{}", env.run_id));
        std::fs::create_dir_all(&dir)?;
        let (http, tls) = (free_port()?, free_port()?);
        let stream = format!("BENCH{}", env.run_id.to_uppercase());
        let log_path = env.work_dir.join(format!("ours-{}.log", env.run_id));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .arg("all")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOMESERVER_DATA_DIR", &dir)
            .env("DATABASE_URL", &database_url)
            .env("NATS_URL", &env.nats_url)
            .env("HOMESERVER_NATS_STREAM", &stream)
            .env(
                "HOMESERVER_NATS_SUBJECT_PREFIX",
                format!("bench{}", env.run_id),
            )
            .env("HOMESERVER_SIGNUP_MODE", "open")
            .env("HOMESERVER_HTTP_LISTEN", format!("127.0.0.1:{http}"))
            .env("HOMESERVER_TLS_LISTEN", format!("127.0.0.1:{tls}"))
            .env("PUBKY_DHT_BOOTSTRAP", env.dht_bootstrap.join(","))
            .env("HOMESERVER_DHT_REQUEST_TIMEOUT_MS", "200")
            .env("HOMESERVER_REPUBLISH_INTERVAL_SECS", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Server {
            kind: Kind::Ours,
            base: format!("http://127.0.0.1:{http}"),
            // Replaced once the server wrote its key file.
            public_key: Keypair::random().public_key(),
            child,
            database,
            stream: Some(stream),
            dir: dir.clone(),
            log_path,
        };
        server.wait_ready().await?;
        // The key file is written after the first PKARR publish, which may finish
        // after the listeners answer.
        let key_file = dir.join("public_key");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !key_file.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let key = std::fs::read_to_string(&key_file)
            .context("our homeserver wrote no public_key file")?;
        server.public_key = PublicKey::try_from_z32(key.trim())
            .map_err(|e| anyhow::anyhow!("bad public_key file: {e}"))?;
        Ok(server)
    }

    /// The reference: `pubky-homeserver --data-dir DIR` with a `config.toml` and
    /// `secret` written here (the key is ours to choose, so it is known up front).
    pub async fn start_reference(env: &Env, binary: &Path) -> Result<Server> {
        let database = format!("bench_ref_{}", env.run_id);
        let database_url = create_database(&env.database_url, &database).await?;
        let dir = env.work_dir.join(format!("reference-{}", env.run_id));
        std::fs::create_dir_all(&dir)?;
        let keypair = Keypair::random();
        keypair.write_secret_key_file(&dir.join("secret"))?;
        let (http, tls, admin) = (free_port()?, free_port()?, free_port()?);
        // An empty relay list is refused ("passed an empty list of relays") and an
        // absent one keeps the public relays of the defaults, so the relay is a
        // loopback port nobody listens on: relay publishes fail at once and the
        // first publish succeeds through the local DHT.
        let dead_relay = free_port()?;
        let bootstrap = env
            .dht_bootstrap
            .iter()
            .map(|b| format!("{b:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Keys and sections: reference spec section 9 and the published config sample.
        let config = format!(
            r#"[general]
database_url = {database_url:?}
signup_mode = "open"

[drive]
pubky_listen_socket = "127.0.0.1:{tls}"
icann_listen_socket = "127.0.0.1:{http}"

[storage]
type = "file_system"

[admin]
enabled = true
listen_socket = "127.0.0.1:{admin}"
admin_password = "bench"

[metrics]
enabled = false

[pkdns]
public_ip = "127.0.0.1"
icann_domain = "localhost"
user_keys_republisher_interval = 0
dht_bootstrap_nodes = [{bootstrap}]
dht_relay_nodes = ["http://127.0.0.1:{dead_relay}"]
dht_request_timeout_ms = 200

[logging]
level = "warn"
module_levels = []
"#
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let log_path = env.work_dir.join(format!("reference-{}.log", env.run_id));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Server {
            kind: Kind::Reference,
            base: format!("http://127.0.0.1:{http}"),
            public_key: keypair.public_key(),
            child,
            database,
            stream: None,
            dir: dir.clone(),
            log_path,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Polls `GET /` until the server answers 200 (it has published and listens).
    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} homeserver exited at start ({status}); log {}:\n{}",
                    self.kind.label(),
                    self.log_path.display(),
                    tail(&self.log_path)
                );
            }
            if let Ok(resp) = http.get(format!("{}/", self.base)).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} homeserver not ready within 90 s; log {}:\n{}",
            self.kind.label(),
            self.log_path.display(),
            tail(&self.log_path)
        )
    }

    /// Stops the process (SIGTERM, then SIGKILL after 10 s), drops its database and
    /// its JetStream stream.
    pub async fn stop(mut self, env: &Env) -> Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop_database(&env.database_url, &self.database).await?;
        // Blobs of a full run are hundreds of MiB.
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(stream) = self.stream.take() {
            let client = async_nats::connect(&env.nats_url).await?;
            let js = async_nats::jetstream::new(client);
            js.delete_stream(&stream)
                .await
                .with_context(|| format!("deleting stream {stream}"))?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A bench that failed half-way must not leave a server running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A port that was free a moment ago (bound and released; loopback only).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn create_database(admin_url: &str, name: &str) -> Result<String> {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("cannot connect to DATABASE_URL {admin_url}"))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    Ok(testkit::with_database(admin_url, name))
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// A private Mainline DHT of three nodes on 127.0.0.1 (dropped at the end of the run).
pub async fn local_dht() -> Result<mainline::Testnet> {
    tokio::task::spawn_blocking(|| {
        mainline::Testnet::builder(3)
            .bind_address(std::net::Ipv4Addr::LOCALHOST)
            .build()
    })
    .await?
    .context("local DHT testnet")
}

/// The port of a `scheme://[user@]host:port[/...]` URL.
pub fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit('@').next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::url_port;

    #[test]
    fn ports_of_service_urls() {
        assert_eq!(
            url_port("postgres://postgres@127.0.0.1:54329/homeserver"),
            Some(54329)
        );
        assert_eq!(url_port("nats://127.0.0.1:42229"), Some(42229));
        assert_eq!(url_port("postgres://localhost/db"), None);
    }
}
