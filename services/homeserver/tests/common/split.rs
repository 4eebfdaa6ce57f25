//! The split deployment as separate processes of the real binary: projector,
//! write-api, read-api and events, with the gateway in front terminating Pubky TLS and
//! publishing the homeserver's PKARR packet, and the admin API on its own. All share one data directory (the
//! homeserver key), one database and one log namespace.

use super::sdk::{DHT_TIMEOUT, Deployment, Dht};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `homeserver` program on `env`'s database and log, with `data` as its data
/// directory, ephemeral ports, and quiet logs; killed on drop.
pub fn homeserver_command(env: &testkit::TestEnv, data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_homeserver"));
    command
        .env("HOMESERVER_TLS_LISTEN", "127.0.0.1:0")
        .env("HOMESERVER_HTTP_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &env.database_url)
        .env("NATS_URL", &env.nats_url)
        .env("HOMESERVER_NATS_STREAM", &env.log.stream)
        .env("HOMESERVER_NATS_SUBJECT_PREFIX", &env.log.subject_prefix)
        .env("HOMESERVER_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// `homeserver <service>` on ephemeral ports, killed on drop; for services with a
/// listener, also the base URL it printed on its first line of stdout.
pub async fn spawn(
    service: &str,
    env: &testkit::TestEnv,
    data: &Path,
    vars: &[(&str, &str)],
) -> (Child, String) {
    let mut child = homeserver_command(env, data)
        .arg(service)
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn homeserver");
    // The projector has no client listener; it prints a line only for its metrics one.
    let metrics = vars.iter().any(|(k, _)| *k == "HOMESERVER_METRICS_LISTEN");
    if service == "projector" && !metrics {
        return (child, String::new());
    }
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("homeserver {service} starts within 30 s"))
        .expect("read stdout")
        .unwrap_or_else(|| panic!("homeserver {service} exited before listening"));
    let url = line
        .split(' ')
        .find(|word| word.starts_with("http://"))
        .expect("a URL on the first line")
        .to_string();
    (child, url)
}

/// Waits for `<data dir>/public_key` (written after the first PKARR publish).
pub async fn wait_for_public_key(dir: &Path, child: &mut Child) -> domain::PublicKey {
    let file = dir.join("public_key");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(key) = domain::PublicKey::try_from(text.trim())
        {
            return key;
        }
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("homeserver exited before publishing: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no {} after 30 s",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const ADMIN_PASSWORD: &str = "split deployment admin";

pub struct SplitDeployment {
    pub env: testkit::TestEnv,
    pub write_url: String,
    pub read_url: String,
    pub events_url: String,
    pub gateway_url: String,
    pub admin_url: String,
    pub public_key: domain::PublicKey,
    _children: Vec<Child>,
    _data: tempfile::TempDir,
}

impl SplitDeployment {
    /// Starts the five processes; `vars` (e.g. `HOMESERVER_SIGNUP_MODE`) go to all of
    /// them. The gateway publishes on `dht`, so the SDK finds the deployment there.
    pub async fn start(dht: &Dht, vars: &[(&str, &str)]) -> SplitDeployment {
        let env = testkit::TestEnv::new().await;
        let data = tempfile::tempdir().expect("tempdir");
        let (projector, _) = spawn("projector", &env, data.path(), vars).await;
        let (writer, write_url) = spawn("write-api", &env, data.path(), vars).await;
        let (reader, read_url) = spawn("read-api", &env, data.path(), vars).await;
        let (events, events_url) = spawn("events", &env, data.path(), vars).await;
        let mut admin_vars = vec![
            ("HOMESERVER_ADMIN_LISTEN", "127.0.0.1:0"),
            ("HOMESERVER_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ];
        admin_vars.extend_from_slice(vars);
        let (admin, admin_url) = spawn("admin-api", &env, data.path(), &admin_vars).await;
        let bootstrap = dht.bootstrap().join(",");
        let timeout = DHT_TIMEOUT.as_millis().to_string();
        let mut gateway_vars = vec![
            ("HOMESERVER_GATEWAY_WRITE_API", write_url.as_str()),
            ("HOMESERVER_GATEWAY_READ_API", read_url.as_str()),
            ("HOMESERVER_GATEWAY_EVENTS", events_url.as_str()),
            ("PUBKY_DHT_BOOTSTRAP", bootstrap.as_str()),
            ("HOMESERVER_DHT_REQUEST_TIMEOUT_MS", timeout.as_str()),
        ];
        gateway_vars.extend_from_slice(vars);
        let (mut gateway, gateway_url) = spawn("gateway", &env, data.path(), &gateway_vars).await;
        let public_key = wait_for_public_key(data.path(), &mut gateway).await;
        SplitDeployment {
            env,
            write_url,
            read_url,
            events_url,
            gateway_url,
            admin_url,
            public_key,
            _children: vec![projector, writer, reader, events, admin, gateway],
            _data: data,
        }
    }
}

impl Deployment for SplitDeployment {
    fn public_key(&self) -> domain::PublicKey {
        self.public_key.clone()
    }

    fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway_url)
    }

    /// Through the operator CLI and the admin API, as an operator would.
    async fn mint_signup_token(&self) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_homeserver"))
            .args(["admin", "signup-token"])
            .env("HOMESERVER_ADMIN_URL", &self.admin_url)
            .env("HOMESERVER_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run homeserver admin signup-token");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }
}
