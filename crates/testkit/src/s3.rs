//! S3 for tests: a bucket of one's own on the shared S3 API server (moto's server,
//! started by `make test`, `S3_URL`), or a whole server of one's own that a test can
//! kill and restart (`MOTO_SERVER_BIN`).
//!
//! moto accepts any credentials and keeps everything in memory: a killed server comes
//! back empty, with no bucket, as a wiped object store would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::required_env;

/// An S3 blob store configuration on a fresh bucket of the server at `endpoint`.
///
/// Bucket creation is an operator's job, not the store's, so it is a plain request here
/// (moto does not check signatures).
pub async fn fresh_bucket(endpoint: &str) -> blobs::BlobStoreConfig {
    let bucket = format!("hs-{}", uuid::Uuid::new_v4().simple());
    create_bucket(endpoint, &bucket).await;
    blobs::BlobStoreConfig::S3 {
        endpoint: endpoint.to_string(),
        region: "us-east-1".into(),
        bucket,
        access_key_id: "AKIATESTS3".into(),
        secret_access_key: "test-secret".into(),
        // A key prefix, as in a bucket shared by several deployments.
        root: Some("/homeserver".into()),
    }
}

/// [`fresh_bucket`] on the shared server of `make test`.
pub async fn shared_bucket() -> blobs::BlobStoreConfig {
    fresh_bucket(&required_env("S3_URL")).await
}

/// Creates `bucket` (idempotent on moto).
pub async fn create_bucket(endpoint: &str, bucket: &str) {
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket on {endpoint}: {e}"));
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
}

/// An S3 server of one test's own on a fixed loopback port; SIGKILLed when dropped.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
}

impl S3Server {
    /// Starts a server on a free port and waits until it answers.
    pub async fn start() -> S3Server {
        let port = crate::free_port();
        let mut server = S3Server { child: None, port };
        server.restart().await;
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash; waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a server that holds its connections and
    /// answers nothing (a partition, a paused container), then carries on with its
    /// objects intact.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("a running server");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} moto_server");
    }

    /// Starts the server again on the same port (empty: no bucket).
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(required_env("MOTO_SERVER_BIN"))
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        let probe = format!("{}/moto-api/data.json", self.url());
        while client.get(&probe).send().await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
