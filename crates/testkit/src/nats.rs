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
    /// `nats-server` arguments that make it a node of a [`NatsCluster`].
    cluster_args: Vec<String>,
}

/// Three (or more) JetStream nodes on loopback, routed to each other: a clustered log,
/// each node killed and restarted on its own.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub async fn start(size: usize) -> NatsCluster {
        let route_ports: Vec<u16> = (0..size).map(|_| crate::free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, route_port) in route_ports.iter().enumerate() {
            let cluster_args = [
                "-n".to_string(),
                format!("node-{i}"),
                "--cluster_name".into(),
                "hs-test".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{route_port}"),
                "--routes".into(),
                routes.clone(),
            ];
            nodes.push(NatsServer::start_with(cluster_args.to_vec()).await);
        }
        NatsCluster { nodes }
    }

    /// Every node's URL, comma-separated (the `nats_url` list form).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        Self::start_with(Vec::new()).await
    }

    async fn start_with(cluster_args: Vec<String>) -> NatsServer {
        let port = crate::free_port();
        let mut server = NatsServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir for the JetStream store"),
            cluster_args,
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
            .args(&self.cluster_args)
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
