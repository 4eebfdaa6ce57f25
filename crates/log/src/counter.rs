//! Counters shared by every instance of a service: request-rate windows.
//!
//! In-process rate limiters (the reference's) let a client multiply its allowance by
//! the number of instances behind a load balancer. These counters live in NATS, which
//! every instance already talks to, as JetStream counter streams (NATS >= 2.12,
//! `allow_msg_counter`): a publish with `Nats-Incr: 1` adds one atomically on the
//! server and the acknowledgement carries the new total, so one round trip counts and
//! reads. Streams are in memory (a restart of NATS forgets the windows, which only
//! ever errs towards letting requests through) and keep only the last message per
//! subject; each window length gets its own stream whose messages expire after two
//! windows, so old windows cost nothing.

use crate::{LogError, unavailable};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Counters of fixed time windows, one subject per (name, window).
#[derive(Clone)]
pub struct WindowCounters {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Stream name and subject prefix, e.g. `HS_EVENTS_RATE` / `hs_rate`.
    stream_prefix: String,
    subject_prefix: String,
    /// Window lengths whose stream exists already.
    ready: Arc<Mutex<HashSet<u64>>>,
    /// The log's `replicas`.
    replicas: usize,
}

impl WindowCounters {
    /// Counters next to `log`: streams `<log stream>_RATE_<secs>` on subjects
    /// `<log prefix>_rate.<secs>.…`, outside the log stream's `<prefix>.>`.
    pub fn new(log: &crate::EventLog) -> Self {
        WindowCounters {
            client: log.client().clone(),
            js: jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(2))
                .build(log.client().clone()),
            stream_prefix: format!("{}_RATE", log.config().stream),
            subject_prefix: format!("{}_rate", log.config().subject_prefix),
            ready: Arc::default(),
            replicas: log.config().replicas,
        }
    }

    /// False while the connection to NATS is down: an increment would only time out.
    pub fn is_connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    async fn ensure_stream(&self, window_secs: u64) -> Result<(), LogError> {
        let mut ready = self.ready.lock().await;
        if ready.contains(&window_secs) {
            return Ok(());
        }
        let config = stream::Config {
            name: format!("{}_{window_secs}", self.stream_prefix),
            subjects: vec![format!("{}.{window_secs}.>", self.subject_prefix)],
            storage: stream::StorageType::Memory,
            max_age: Duration::from_secs(window_secs.saturating_mul(2).max(2)),
            max_messages_per_subject: 1,
            allow_message_counter: true,
            allow_direct: true,
            // Copied like the log: on a cluster, a node holding the only copy going
            // down would otherwise refuse every rate-limited request.
            num_replicas: self.replicas,
            ..Default::default()
        };
        self.js
            .get_or_create_stream(config)
            .await
            .map_err(unavailable)?;
        ready.insert(window_secs);
        Ok(())
    }

    /// Adds one to counter `name` in the window `window` (an index: time divided by
    /// `window_secs`) and returns the new total across all instances. `name` is made
    /// of subject tokens (`[A-Za-z0-9_-]`, dot-separated).
    pub async fn increment(
        &self,
        window_secs: u64,
        window: u64,
        name: &str,
    ) -> Result<u64, LogError> {
        self.ensure_stream(window_secs).await?;
        let subject = format!("{}.{window_secs}.{window}.{name}", self.subject_prefix);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Incr", "1");
        let ack = self
            .js
            .publish_with_headers(subject, headers, bytes::Bytes::new())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        ack.value
            .as_deref()
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| LogError::Unavailable("the counter stream returned no total".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventLog, LogConfig};

    /// Two clients (as two instances would be) count into the same window.
    #[tokio::test]
    async fn instances_share_one_total_per_window() {
        let url = std::env::var("NATS_URL").expect("NATS_URL: run the tests with `make test`");
        let id = format!(
            "{:x}",
            std::process::id() as u64 * 1_000_003
                + u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .subsec_nanos()
                )
        );
        let mut config = LogConfig::new(&url);
        config.stream = format!("TC{id}");
        config.subject_prefix = format!("tc{id}");
        let one = WindowCounters::new(&EventLog::connect(config.clone()).await.unwrap());
        let two = WindowCounters::new(&EventLog::connect(config).await.unwrap());
        assert_eq!(one.increment(60, 7, "ip.a").await.unwrap(), 1);
        assert_eq!(two.increment(60, 7, "ip.a").await.unwrap(), 2);
        assert_eq!(one.increment(60, 7, "ip.a").await.unwrap(), 3);
        // Another key, another window, another window length: separate counts.
        assert_eq!(two.increment(60, 7, "ip.b").await.unwrap(), 1);
        assert_eq!(two.increment(60, 8, "ip.a").await.unwrap(), 1);
        assert_eq!(one.increment(1, 7, "ip.a").await.unwrap(), 1);
    }
}
