//! A throwaway Postgres cluster of one test's own, for drills that stop, crash and
//! restart the database (which the shared cluster of `make test` must never do).
//!
//! It uses the server binaries `scripts/services.sh` installed (Debian's
//! `/usr/lib/postgresql/<version>/bin`), in a temporary folder, on a free loopback
//! port. Postgres refuses to run as root, so as root the cluster belongs to the
//! `postgres` system user, as in `scripts/services.sh`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// A running cluster (or a replica of one: [`PgCluster::replica`]); stopped
/// (immediately) and removed on drop.
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

/// How the server goes down: the modes of `pg_ctl stop`.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Disconnects the clients, flushes and checkpoints: a clean restart.
    Fast,
    /// Ends every server process at once, like `kill -9` or a power cut of the
    /// database alone: the next start runs crash recovery from the WAL.
    Immediate,
}

impl PgCluster {
    /// initdb and start; panics with the server's log when either fails.
    pub async fn start() -> PgCluster {
        let bin = server_bin();
        let dir = tempfile::tempdir().expect("tempdir for the cluster");
        if is_root() {
            run(Command::new("chown").arg("postgres:").arg(dir.path())).await;
        }
        let port = crate::free_port();
        let cluster = PgCluster { bin, dir, port };
        run(cluster
            .as_owner("initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(cluster.data()))
        .await;
        cluster.start_server().await;
        cluster
    }

    /// A streaming replica of this cluster (a hot standby: read-only, replaying the
    /// primary's WAL), from a base backup (`pg_basebackup -R`, with an immediate
    /// checkpoint: a spread one takes minutes), started on a port of its own. The
    /// primary's defaults allow it: `wal_level = replica`, WAL senders, and initdb's
    /// trust entries for replication connections from loopback. Pause its replay with
    /// `SELECT pg_wal_replay_pause()` on it (`pg_wal_replay_resume()`).
    pub async fn replica(&self) -> PgCluster {
        let dir = tempfile::tempdir().expect("tempdir for the replica");
        if is_root() {
            run(Command::new("chown").arg("postgres:").arg(dir.path())).await;
        }
        let replica = PgCluster {
            bin: self.bin.clone(),
            dir,
            port: crate::free_port(),
        };
        run(replica
            .as_owner("pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                "-c",
                "fast",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg("-D")
            .arg(replica.data()))
        .await;
        replica.start_server().await;
        replica
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`: the admin URL for
    /// [`crate::TestEnv::on`].
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn stop(&self, mode: Stop) {
        let mode = match mode {
            Stop::Fast => "fast",
            Stop::Immediate => "immediate",
        };
        run(self
            .as_owner("pg_ctl")
            .args(["stop", "-w", "-m", mode, "-D"])
            .arg(self.data()))
        .await;
    }

    /// Starts the stopped server again on the same port and data.
    pub async fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let status = self
            .as_owner("pg_ctl")
            .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
            .arg(&log)
            .arg("-D")
            .arg(self.data())
            .stdout(Stdio::null())
            .status()
            .await
            .expect("run pg_ctl start");
        assert!(
            status.success(),
            "pg_ctl start failed; server log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server tool of the cluster, run as the cluster's owner.
    fn as_owner(&self, tool: &str) -> Command {
        let argv = self.owner_argv(tool);
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        command
    }

    /// The program and first arguments that run `tool` as the cluster's owner.
    fn owner_argv(&self, tool: &str) -> Vec<std::ffi::OsString> {
        let program = self.bin.join(tool).into_os_string();
        if is_root() {
            vec![
                "runuser".into(),
                "-u".into(),
                "postgres".into(),
                "--".into(),
                program,
            ]
        } else {
            vec![program]
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let argv = self.owner_argv("pg_ctl");
        let _ = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` in it.
fn server_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|bin| version_of(bin));
    dirs.pop().expect(
        "no Postgres server binaries under /usr/lib/postgresql/*/bin: run `make test` \
         (scripts/services.sh installs them)",
    )
}

fn version_of(bin: &Path) -> u32 {
    bin.parent()
        .and_then(|dir| dir.file_name())
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .unwrap_or(0)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    })
}

async fn run(command: &mut Command) {
    let output = command.output().await.expect("run a Postgres tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
