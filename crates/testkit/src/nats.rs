//! A JetStream server of one test's own, for drills that kill and restart the log
//! (which the shared server of `make test` must never see).
//!
//! It runs the pinned `nats-server` that `scripts/services.sh` installs
//! (`NATS_SERVER_BIN`), with its store in a temporary folder, on a free loopback port
//! that it keeps across restarts, so clients reconnect to the same address.

use crate::required_env;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A running server; killed and removed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let port = crate::free_port();
        let mut server = NatsServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir for the JetStream store"),
        };
        server.restart().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash; waits until the process is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// `kill -9`, the store emptied, and the server started again on the same port: a
    /// container that lost its volume.
    pub async fn wipe(&mut self) {
        self.kill().await;
        self.dir = tempfile::tempdir().expect("tempdir for the JetStream store");
        self.restart().await;
    }

    /// Starts the server (again) on the same port and store; returns once it accepts
    /// connections.
    pub async fn restart(&mut self) {
        self.kill().await;
        let child = Command::new(required_env("NATS_SERVER_BIN"))
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
