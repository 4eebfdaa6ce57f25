//! The log on a three-node JetStream cluster of the test's own: `nats_url` as a list of
//! servers (a dead one first), `nats_replicas = 3`, and the loss of the node that leads
//! the stream. What an operator of the compose stack relies on, without Docker.

use domain::event::{Change, Digest};
use domain::{Event, EventSeq, Keypair};
use log::{AppendError, EventLog, Expected, LogConfig, LogError};
use std::time::{Duration, Instant};
use testkit::nats::NatsCluster;

fn file_put(user: &Keypair, n: usize) -> Event {
    let path = format!("/pub/cluster/{n}");
    Event::new(
        user.public_key(),
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        Change::FilePut {
            content_hash: Digest(*blake3::hash(path.as_bytes()).as_bytes()),
            path,
            size: 1,
            content_type: "text/plain".into(),
        },
    )
}

fn config(urls: &str, stream: &str, replicas: usize) -> LogConfig {
    let mut config = LogConfig::new(urls);
    config.stream = stream.to_uppercase();
    config.subject_prefix = stream.to_lowercase();
    config.replicas = replicas;
    config
}

/// Connects once the cluster has elected its JetStream leader (a few seconds after
/// the nodes start), bounded.
async fn connect(config: LogConfig) -> EventLog {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EventLog::connect(config.clone()).await {
            Ok(log) => return log,
            Err(e) if Instant::now() < deadline => {
                eprintln!("cluster not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("the cluster never took the log: {e}"),
        }
    }
}

async fn stream_info(log: &EventLog) -> async_nats::jetstream::stream::Info {
    let js = async_nats::jetstream::new(log.client().clone());
    let mut stream = js
        .get_stream(&log.config().stream)
        .await
        .expect("the log stream");
    stream.info().await.expect("stream info").clone()
}

/// Appends `event` after `last`, riding out a leader election: the append's own
/// retries cover a lost acknowledgement, this loop an election that takes longer.
async fn append_through(log: &EventLog, event: &Event, last: EventSeq) -> (EventSeq, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        match log.append(event, Expected::LastSeq(last)).await {
            Ok(seq) => return (seq, failures),
            Err(AppendError::Log(LogError::Unavailable(e))) if Instant::now() < deadline => {
                eprintln!("append unavailable: {e}");
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append of {event:?} failed: {e}"),
        }
    }
}

#[tokio::test]
async fn three_copies_survive_the_loss_of_the_leading_node() {
    let mut cluster = NatsCluster::start(3).await;
    // A list whose first server does not answer: the client goes on to the others.
    let dead = format!("nats://127.0.0.1:{}", testkit::free_port());
    let urls = format!("{dead},{}", cluster.urls());
    let log = connect(config(&urls, "clusterlog", 3)).await;

    let info = stream_info(&log).await;
    assert_eq!(info.config.num_replicas, 3);
    let placement = info.cluster.clone().expect("a clustered stream");
    assert_eq!(placement.replicas.len(), 2, "two followers: {placement:?}");

    let user = Keypair::random();
    let mut last = EventSeq(0);
    let mut written = Vec::new();
    for n in 0..40 {
        let event = file_put(&user, n);
        let (seq, _) = append_through(&log, &event, last).await;
        written.push((seq, event.request_id.clone()));
        last = seq;
    }

    // The node leading the stream crashes; the other two hold every event and elect
    // a new leader, and writes go on.
    let leader = placement.leader.expect("a stream leader");
    let index: usize = leader
        .strip_prefix("node-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("leader {leader:?} is not one of ours"));
    cluster.nodes[index].kill().await;
    let mut failed = 0;
    for n in 40..80 {
        let event = file_put(&user, n);
        let (seq, failures) = append_through(&log, &event, last).await;
        failed += failures;
        written.push((seq, event.request_id.clone()));
        last = seq;
    }
    eprintln!("appends refused during the election: {failed}");
    let after = stream_info(&log).await;
    let new_leader = after.cluster.and_then(|c| c.leader);
    assert!(
        new_leader.is_some() && new_leader.as_deref() != Some(leader.as_str()),
        "a new leader: {new_leader:?} (was {leader})"
    );

    // Every acknowledged event is in the log once, in order.
    assert_eq!(log.head().await.expect("head"), last);
    assert_eq!(last, EventSeq(80), "no event stored twice");
    for (seq, request_id) in &written {
        let stored = log.event_at(*seq).await.expect("event");
        assert_eq!(&stored.event.request_id, request_id, "event {seq:?}");
    }

    // The node comes back and catches up: the stream has three current copies again.
    cluster.nodes[index].restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = stream_info(&log).await;
        let replicas = info.cluster.map(|c| c.replicas).unwrap_or_default();
        if replicas.len() == 2 && replicas.iter().all(|r| r.current) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never caught up: {replicas:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_stream_with_fewer_copies_is_scaled_up_and_too_many_are_refused_clearly() {
    let cluster = NatsCluster::start(3).await;
    let one = connect(config(&cluster.urls(), "scaledlog", 1)).await;
    assert_eq!(stream_info(&one).await.config.num_replicas, 1);
    let user = Keypair::random();
    let seq = one
        .append(&file_put(&user, 0), Expected::LastSeq(EventSeq(0)))
        .await
        .expect("append");

    // The operator sets nats_replicas = 3: the next start scales the stream up,
    // keeping its events.
    let three = connect(config(&cluster.urls(), "scaledlog", 3)).await;
    assert_eq!(stream_info(&three).await.config.num_replicas, 3);
    assert_eq!(three.head().await.expect("head"), seq);

    // More copies than nodes cannot be had: said at start, naming the setting.
    let err = EventLog::connect(config(&cluster.urls(), "toomanylog", 5))
        .await
        .err()
        .expect("five copies on three nodes");
    let text = err.to_string();
    assert!(
        matches!(err, LogError::StreamMisconfigured { .. }) && text.contains("nats_replicas"),
        "{text}"
    );
}
