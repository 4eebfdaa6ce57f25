//! The event log: one JetStream stream that is the homeserver's source of truth.
//!
//! This crate owns everything that touches NATS for the log: the minimum server
//! version, the stream's immutable configuration, appending with per-user optimistic
//! concurrency, and reading the log back in order. Postgres only ever holds
//! projections of what is here.
//!
//! Why these choices (see `shared/reference/eventsourcing-notes.md`):
//! - Servers older than [`MIN_SERVER`] accept the headers we rely on and silently
//!   ignore them, so we refuse them at start instead of running unsafely.
//! - `Nats-Msg-Id` makes a retried publish idempotent; the expected last subject
//!   sequence makes a write valid only against the user state it was checked against.
//! - Since 2.12 a retry whose first attempt was stored fails the expected-sequence check
//!   instead of reporting a duplicate, so an ambiguous outcome is settled by reading the
//!   subject's last message and comparing message ids, never by guessing.

pub mod counter;
pub mod identity;
pub mod snapshot;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{HeaderMap, header};
use domain::event::{concurrency_subject, subject_of};
use domain::{Event, EventSeq};
use futures::{Stream, StreamExt};
use std::time::Duration;

/// The oldest NATS server line we run against (major, minor). The pinned version in
/// `scripts/services.sh` and `docker-compose.yml` must be at least this.
pub const MIN_SERVER: (u64, u64) = (2, 14);

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// One server, or several separated by commas (`nats://a:4222,nats://b:4222`): the
    /// client connects to any one that answers and fails over to the others (and to
    /// every node the cluster announces). Credentials may sit in any of them.
    pub url: String,
    /// Name of the JetStream stream, `HS_EVENTS` by default.
    pub stream: String,
    /// First token of every subject, `hs` by default. Tests use their own prefix and
    /// stream so that they can share one NATS server.
    pub subject_prefix: String,
    /// How long to wait for a publish acknowledgement before retrying.
    pub ack_timeout: Duration,
    /// Copies of the log (and of the rate counters) the JetStream cluster keeps: 1 on a
    /// single server, 3 on a three-node cluster so that losing one node loses nothing
    /// and stops no write. An existing stream with fewer copies is scaled up at start.
    pub replicas: usize,
}

impl LogConfig {
    pub fn new(url: impl Into<String>) -> Self {
        LogConfig {
            url: url.into(),
            stream: "HS_EVENTS".into(),
            subject_prefix: "hs".into(),
            ack_timeout: Duration::from_secs(5),
            replicas: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "NATS server {found} is too old: this homeserver needs {}.{} or newer \
         (older servers silently ignore the concurrency headers it relies on); \
         run `make services` to get the pinned server",
        MIN_SERVER.0,
        MIN_SERVER.1
    )]
    ServerTooOld { found: String },
    #[error("JetStream is not enabled on the NATS server (start it with -js)")]
    NoJetStream,
    #[error("stream {stream} exists with an unsafe configuration: {problem}")]
    StreamMisconfigured { stream: String, problem: String },
    /// The stream is gone from a NATS server that answers: deleted, or the server lost
    /// its data. Not an outage: waiting does not bring it back.
    #[error("stream {0} does not exist on the NATS server")]
    StreamMissing(String),
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    #[error("event {seq} in the log cannot be decoded: {reason}")]
    Undecodable { seq: u64, reason: String },
}

/// Header of NATS >= 2.11 that runs the expected-last-subject-sequence check against
/// another subject, wildcards allowed (async-nats has no constant for it).
const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

/// What the writer believes the subject's last sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check: for events that need no serialization (operator events).
    Any,
    /// The subject's last event must be exactly this one; `EventSeq(0)` means the
    /// subject must be empty (create-if-absent).
    LastSeq(EventSeq),
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended to the subject since the caller read its state. Re-read
    /// (at least up to `current`) and try again.
    #[error("conflicting write: the subject's last event is {current:?}")]
    Conflict { current: Option<EventSeq> },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// An event read back from the log with its position.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: EventSeq,
    pub subject: String,
    pub event: Event,
}

#[derive(Clone)]
pub struct EventLog {
    client: async_nats::Client,
    js: jetstream::Context,
    config: LogConfig,
    pairing: identity::SharedPairing,
}

impl EventLog {
    /// Connects, refuses servers that are too old, and creates the stream if missing
    /// (or checks that the existing one is configured safely).
    pub async fn connect(config: LogConfig) -> Result<Self, LogError> {
        let shown_url = redacted_url(&config.url);
        let connect_error = |reason: String| LogError::Connect {
            url: shown_url.clone(),
            reason,
        };
        let (options, addrs) = connect_options(&config.url).map_err(connect_error)?;
        let pairing = identity::SharedPairing::default();
        let on_event = pairing.clone();
        let client = options
            .name("pubky-homeserver")
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let on_event = on_event.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        on_event.reconnected.notify_waiters();
                    }
                }
            })
            .connect(addrs.as_slice());
        let client = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .map_err(|_| connect_error("timed out".into()))?
            .map_err(|e| connect_error(e.to_string()))?;
        check_server_version(&client.server_info().version)?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.ack_timeout)
            .build(client.clone());
        let log = EventLog {
            client,
            js,
            config,
            pairing,
        };
        log.ensure_stream().await?;
        Ok(log)
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// True while the connection to NATS is up.
    pub fn is_connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            retention: stream::RetentionPolicy::Limits,
            // The log is never truncated: replay must always be able to start at 1.
            max_age: Duration::ZERO,
            max_messages: -1,
            max_bytes: -1,
            discard: stream::DiscardPolicy::New,
            deny_delete: true,
            deny_purge: true,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            allow_direct: true,
            num_replicas: self.config.replicas,
            ..Default::default()
        }
    }

    async fn ensure_stream(&self) -> Result<(), LogError> {
        let wanted = self.stream_config();
        match self.js.get_stream(&self.config.stream).await {
            Ok(mut existing) => {
                let have = existing.info().await.map_err(unavailable)?.config.clone();
                let problem = if !have.deny_delete || !have.deny_purge {
                    Some("deletes or purges are allowed")
                } else if have.max_age != Duration::ZERO
                    && have.discard == stream::DiscardPolicy::Old
                {
                    Some("old events expire")
                } else if have.subjects != wanted.subjects {
                    Some("its subjects differ")
                } else if self.has_unsplit_file_events(&existing).await? {
                    Some(
                        "it holds file events on `<prefix>.ev.<partition>.<user>`, the layout \
                         before public and private file events got subjects of their own \
                         (`….pub`, `….priv`); start with a new stream",
                    )
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(LogError::StreamMisconfigured {
                        stream: self.config.stream.clone(),
                        problem: problem.into(),
                    });
                }
                let had = have.num_replicas;
                if had < wanted.num_replicas {
                    // Scaling up only: fewer copies than an operator asked for is a
                    // durability gap, more is their explicit choice.
                    let scaled = stream::Config {
                        num_replicas: wanted.num_replicas,
                        ..have
                    };
                    self.js
                        .update_stream(scaled)
                        .await
                        .map_err(|e| self.replicas_refused(e))?;
                    tracing::info!(
                        stream = %self.config.stream,
                        from = had,
                        to = wanted.num_replicas,
                        "log stream scaled up to the configured replicas"
                    );
                }
                Ok(())
            }
            Err(e) if is_stream_not_found(&e) => {
                self.js.create_stream(wanted).await.map_err(|e| {
                    if e.to_string().contains("not enabled") {
                        LogError::NoJetStream
                    } else {
                        self.replicas_refused(e)
                    }
                })?;
                Ok(())
            }
            Err(e) if e.to_string().contains("not enabled") => Err(LogError::NoJetStream),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A refused create or scale-up: with more than one copy asked for, most likely a
    /// cluster with fewer JetStream nodes than `replicas`, which no wait repairs.
    fn replicas_refused(&self, e: impl std::fmt::Display) -> LogError {
        let text = e.to_string();
        // JetStream's "no suitable peers for placement" (10005), "insufficient
        // resources" (10023) and "replicas > 1 not supported in non-clustered mode"
        // (10074); anything else (no leader elected yet, say) may pass with time.
        if self.config.replicas > 1
            && ["no suitable peers", "insufficient resources", "replicas"]
                .iter()
                .any(|known| text.contains(known))
        {
            LogError::StreamMisconfigured {
                stream: self.config.stream.clone(),
                problem: format!(
                    "the server refused {} copies ({text}); nats_replicas must not \
                     exceed the JetStream nodes of the cluster",
                    self.config.replicas
                ),
            }
        } else {
            unavailable(e)
        }
    }

    /// Whether the stream holds file events of the first, unreleased subject layout, in
    /// which a user's public and private file events shared one subject. Appending in
    /// the current layout next to them would break the per-user sequence check.
    async fn has_unsplit_file_events(&self, stream: &stream::Stream) -> Result<bool, LogError> {
        let filter = format!("{}.ev.*.*", self.config.subject_prefix);
        match stream.get_last_raw_message_by_subject(&filter).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The subject `event` travels on.
    pub fn subject_of(&self, event: &Event) -> String {
        subject_of(&self.config.subject_prefix, event)
    }

    /// Appends one event. Retries a lost acknowledgement with the same message id, and
    /// settles an ambiguous outcome by looking at the subject's last message.
    pub async fn append(&self, event: &Event, expected: Expected) -> Result<EventSeq, AppendError> {
        let subject = self.subject_of(event);
        // The expected sequence is the user's last event of the family, which for file
        // events spans two subjects (`.pub`, `.priv`): checked against a wildcard.
        let checked = concurrency_subject(
            &self.config.subject_prefix,
            event.change.family(),
            &event.user,
        );
        let payload = bytes::Bytes::from(event.to_json());
        let mut last_error = String::new();
        for attempt in 0..3u32 {
            let mut headers = HeaderMap::new();
            headers.insert(header::NATS_MESSAGE_ID, event.request_id.as_str());
            if let Expected::LastSeq(seq) = expected {
                headers.insert(
                    header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    seq.0.to_string().as_str(),
                );
                if checked != subject {
                    // Only ever sent with ELSS and to servers >= MIN_SERVER: older ones
                    // do not know it and may skip the check altogether.
                    headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT, checked.as_str());
                }
            }
            let outcome = async {
                self.js
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await?
                    .await
            }
            .await;
            match outcome {
                Ok(ack) => return Ok(EventSeq(ack.sequence)),
                Err(e) => match e.kind() {
                    jetstream::context::PublishErrorKind::WrongLastSequence => {
                        return self.settle(&checked, &event.request_id, expected).await;
                    }
                    jetstream::context::PublishErrorKind::TimedOut
                    | jetstream::context::PublishErrorKind::BrokenPipe
                    | jetstream::context::PublishErrorKind::Other => {
                        tracing::warn!(attempt, error = %e, "publish not acknowledged, retrying");
                        last_error = e.to_string();
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    _ => return Err(LogError::Unavailable(e.to_string()).into()),
                },
            }
        }
        // Every attempt went unanswered, but any of them may have been stored: learn
        // which before giving up, so the caller never reports a stored event as failed
        // (its client would retry it as a second event).
        if let Expected::LastSeq(_) = expected {
            match self.settle(&checked, &event.request_id, expected).await {
                Ok(seq) => return Ok(seq),
                Err(AppendError::Conflict { .. }) => {} // not stored: a plain outage
                Err(e) => tracing::warn!(error = %e, "outcome of an unacknowledged append unknown"),
            }
        }
        Err(LogError::Unavailable(last_error).into())
    }

    /// After an expected-sequence failure, or attempts that all went unanswered: if one
    /// of the messages appended to the checked subjects after the expected one is ours,
    /// an earlier attempt was stored and this append succeeded; otherwise it is a
    /// conflict. Not only the last one: another instance may have appended after our
    /// stored attempt, and calling that a conflict would make the caller append again.
    async fn settle(
        &self,
        subject: &str,
        request_id: &str,
        expected: Expected,
    ) -> Result<EventSeq, AppendError> {
        /// Messages of one user appended within the retries of one request: a handful.
        const LOOK_BACK: usize = 64;
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(unavailable)?;
        let ours = |message: &jetstream::message::StreamMessage| {
            message
                .headers
                .get(header::NATS_MESSAGE_ID)
                .is_some_and(|id| id.as_str() == request_id)
        };
        let mut current = None;
        if let Expected::LastSeq(after) = expected {
            let mut from = after.0 + 1;
            for _ in 0..LOOK_BACK {
                match stream
                    .direct_get_next_for_subject(subject, Some(from))
                    .await
                {
                    Ok(message) if ours(&message) => return Ok(EventSeq(message.sequence)),
                    Ok(message) => {
                        current = Some(EventSeq(message.sequence));
                        from = message.sequence + 1;
                    }
                    Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {
                        return Err(AppendError::Conflict { current });
                    }
                    Err(e) => return Err(unavailable(e).into()),
                }
            }
        }
        // Expected nothing, or more appended since than one request's retries explain:
        // the last message decides.
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(last) if ours(&last) => Ok(EventSeq(last.sequence)),
            Ok(last) => Err(AppendError::Conflict {
                current: Some(EventSeq(last.sequence)),
            }),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Err(AppendError::Conflict { current })
            }
            Err(e) => Err(unavailable(e).into()),
        }
    }

    /// Deletes the stream, if it exists, and creates it again empty, with its first
    /// sequence at `first`. Only `homeserver reseed` does this: a re-seeded log goes on
    /// from where its lost predecessor ended, so feed cursors and the projections'
    /// positions keep meaning "after this event".
    pub async fn recreate_stream(&self, first: EventSeq) -> Result<(), LogError> {
        match self.js.delete_stream(&self.config.stream).await {
            Ok(_) => {}
            Err(e) if is_stream_not_found(&e) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let mut config = self.stream_config();
        config.first_sequence = Some(first.0.max(1));
        self.js.create_stream(config).await.map_err(unavailable)?;
        Ok(())
    }

    /// Appends `events` in order without concurrency checks, with up to 256
    /// acknowledgements in flight (one connection keeps them in order): for a log that
    /// nobody else writes to, such as a stream being re-seeded. Calls `on_acked` with
    /// each acknowledged count; returns the last event's sequence. An acknowledgement
    /// that does not come is an error: the caller starts over on a fresh stream.
    pub async fn append_in_order(
        &self,
        events: &[Event],
        on_acked: &(dyn Fn(u64) + Sync),
    ) -> Result<EventSeq, LogError> {
        const IN_FLIGHT: usize = 256;
        let mut pending = std::collections::VecDeque::with_capacity(IN_FLIGHT);
        let mut last = EventSeq(0);
        for event in events {
            if pending.len() == IN_FLIGHT
                && let Some(ack) = pending.pop_front()
            {
                last = acked(ack).await?;
                on_acked(1);
            }
            let mut headers = HeaderMap::new();
            headers.insert(header::NATS_MESSAGE_ID, event.request_id.as_str());
            let ack = self
                .js
                .publish_with_headers(
                    self.subject_of(event),
                    headers,
                    bytes::Bytes::from(event.to_json()),
                )
                .await
                .map_err(unavailable)?;
            pending.push_back(ack);
        }
        for ack in pending {
            last = acked(ack).await?;
            on_acked(1);
        }
        Ok(last)
    }

    /// The sequence of the last event in the whole log (0 when empty): one
    /// stream-info request.
    pub async fn head(&self) -> Result<EventSeq, LogError> {
        let stream = self
            .js
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(unavailable)?;
        let info = stream.get_info().await.map_err(unavailable)?;
        Ok(EventSeq(info.state.last_sequence))
    }

    /// The sequence of `user`'s last event, files and account alike (0 when none):
    /// what a read of the user's data must see to include every write of theirs that
    /// was answered. Asked of the stream's leader (not a direct get, which a follower
    /// may answer from behind), one request per subject family, concurrently.
    pub async fn user_last_seq(&self, user: &domain::PublicKey) -> Result<EventSeq, LogError> {
        let stream = self
            .js
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(unavailable)?;
        let prefix = &self.config.subject_prefix;
        let last = |family| {
            let stream = &stream;
            let subject = concurrency_subject(prefix, family, user);
            async move {
                match stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(message) => Ok(message.sequence),
                    Err(e)
                        if e.kind()
                            == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                    {
                        Ok(0)
                    }
                    Err(e) => Err(unavailable(e)),
                }
            }
        };
        let (files, account) = futures::future::try_join(
            last(domain::event::SubjectFamily::Files),
            last(domain::event::SubjectFamily::Account),
        )
        .await?;
        Ok(EventSeq(files.max(account)))
    }

    /// The event at `seq` (a direct get: the stream allows them), e.g. to tell how old
    /// the oldest unprojected event is.
    pub async fn event_at(&self, seq: EventSeq) -> Result<LoggedEvent, LogError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(unavailable)?;
        let message = stream.direct_get(seq.0).await.map_err(unavailable)?;
        let event = Event::from_json(&message.payload).map_err(|e| LogError::Undecodable {
            seq: seq.0,
            reason: e.to_string(),
        })?;
        Ok(LoggedEvent {
            seq,
            subject: message.subject.to_string(),
            event,
        })
    }

    /// Reads the log in order starting at `from` (inclusive), optionally restricted to
    /// the subjects matching `filter`, and keeps following it as it grows. Backed by an
    /// ordered consumer, which recreates itself on gaps, so nothing is skipped.
    ///
    /// At the next reconnection to NATS the stream yields one
    /// [`LogError::Unavailable`] and ends: a server that came back may have lost the
    /// consumer, which the stream would notice only at its next idle heartbeat,
    /// seconds later. Readers stop at an error and read again from their last event.
    pub async fn read(
        &self,
        from: EventSeq,
        filter: Option<String>,
    ) -> Result<impl Stream<Item = Result<LoggedEvent, LogError>> + Send + 'static, LogError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(unavailable)?;
        let deliver_policy = if from.0 <= 1 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.0,
            }
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy,
                filter_subject: filter.unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        let events = messages.map(|message| {
            let message = message.map_err(unavailable)?;
            let info = message
                .info()
                .map_err(|e| LogError::Unavailable(e.to_string()))?;
            let seq = info.stream_sequence;
            let event = Event::from_json(&message.payload).map_err(|e| LogError::Undecodable {
                seq,
                reason: e.to_string(),
            })?;
            Ok(LoggedEvent {
                seq: EventSeq(seq),
                subject: message.subject.to_string(),
                event,
            })
        });
        let pairing = self.pairing.clone();
        let reconnected = Box::pin(async move { pairing.reconnected.notified().await });
        let state = (Box::pin(events), reconnected, false);
        // Boxed: the stream stays `Unpin`, as callers poll it in place.
        Ok(Box::pin(futures::stream::unfold(
            state,
            |(mut events, mut reconnected, ended)| async move {
                if ended {
                    return None;
                }
                tokio::select! {
                    biased;
                    item = events.next() => item.map(|item| (item, (events, reconnected, false))),
                    _ = &mut reconnected => {
                        let gone = LogError::Unavailable(
                            "reconnected to NATS: read the log again from the last event".into(),
                        );
                        Some((Err(gone), (events, reconnected, true)))
                    }
                }
            },
        )))
    }
}

/// Connection options for `url` (one server or a comma-separated list), with the
/// credentials it carries. async-nats ignores credentials in the URL (nats.rs#1623), so
/// they are taken out here: `user:password@` becomes user and password, a bare
/// `token@` a token. With a list, the first server that names any is used.
fn connect_options(
    url: &str,
) -> Result<(async_nats::ConnectOptions, Vec<async_nats::ServerAddr>), String> {
    let addrs = url
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("{}: {e}", redacted_url(part)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("no NATS server given".into());
    }
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8_lossy()
            .into_owned()
    };
    let with_credentials = addrs.iter().find(|addr| addr.username().is_some());
    let options = match with_credentials.map(|addr| (addr.username(), addr.password())) {
        Some((Some(user), Some(password))) => {
            async_nats::ConnectOptions::with_user_and_password(decode(user), decode(password))
        }
        Some((Some(token), None)) => async_nats::ConnectOptions::with_token(decode(token)),
        _ => async_nats::ConnectOptions::new(),
    };
    Ok((options, addrs))
}

/// `url` (one server or a comma-separated list) fit for logs and error messages: any
/// password or token replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    url.split(',')
        .map(redacted_server)
        .collect::<Vec<_>>()
        .join(",")
}

fn redacted_server(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = match credentials.split_once(':') {
                    Some((user, _)) => format!("{user}:***"),
                    None => "***".to_string(),
                };
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

async fn acked(ack: jetstream::context::PublishAckFuture) -> Result<EventSeq, LogError> {
    Ok(EventSeq(ack.await.map_err(unavailable)?.sequence))
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(ref js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

/// Refuses servers older than [`MIN_SERVER`]. Public for the test of the message.
pub fn check_server_version(version: &str) -> Result<(), LogError> {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    let major = parts.next().flatten();
    let minor = parts.next().flatten();
    match (major, minor) {
        (Some(major), Some(minor)) if (major, minor) >= MIN_SERVER => Ok(()),
        _ => Err(LogError::ServerTooOld {
            found: version.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_used_and_never_shown() {
        assert_eq!(
            redacted_url("nats://reader:s3cr%40t@127.0.0.1:4222"),
            "nats://reader:***@127.0.0.1:4222"
        );
        assert_eq!(redacted_url("nats://tok3n@host"), "nats://***@host");
        assert_eq!(
            redacted_url("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert!(connect_options("nats://reader:s3cr%40t@127.0.0.1:4222").is_ok());
        assert!(connect_options("http://x").is_err());
    }

    #[test]
    fn a_server_list_is_every_server_with_the_credentials_of_any() {
        let list = "nats://a:1, nats://reader:s3cr%40t@b:2,nats://c:3";
        assert_eq!(
            redacted_url(list),
            "nats://a:1, nats://reader:***@b:2,nats://c:3"
        );
        let (_, addrs) = connect_options(list).expect("a valid list");
        let hosts: Vec<_> = addrs
            .iter()
            .map(|a| (a.host().to_string(), a.port()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("a".to_string(), 1),
                ("b".to_string(), 2),
                ("c".to_string(), 3)
            ]
        );
        let err = connect_options("nats://a:1,http://b").unwrap_err();
        assert!(err.contains("http://b"), "{err}");
        assert_eq!(connect_options(" , ").unwrap_err(), "no NATS server given");
    }

    #[test]
    fn server_versions_below_the_minimum_are_refused() {
        assert!(check_server_version("2.14.6").is_ok());
        assert!(check_server_version("2.15.0-beta").is_ok());
        assert!(check_server_version("3.0.0").is_ok());
        let err = check_server_version("2.9.10").unwrap_err().to_string();
        assert!(err.contains("2.9.10 is too old"), "{err}");
        assert!(err.contains("needs 2.14 or newer"), "{err}");
        assert!(check_server_version("2.11.3").is_err());
        assert!(check_server_version("garbage").is_err());
    }
}
