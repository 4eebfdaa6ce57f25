//! Reads through a streaming replica (`read_database_url`): a Postgres cluster of the
//! test's own with a hot standby of it ([`testkit::pg::PgCluster::replica`]). Writes
//! go to the primary, reads to the replica, and every write answered 201 reads back
//! at once: the reader waits for the replica to replay it, and reads the primary when
//! the replica does not get there within `read_replica_wait_ms` (replay paused) or does
//! not answer (stopped). Both `homeserver all` and a separate `homeserver read-api`
//! are checked; the feed and the event stream through the replica too.

use crate::common::split::spawn;
use crate::common::{self, TestServer};
use crate::metrics::{sample, scrape};
use reqwest::StatusCode;
use std::time::Duration;
use testkit::pg::{PgCluster, Stop};

const WRITES: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_through_a_replica_see_every_acknowledged_write() {
    let pg = PgCluster::start().await;
    let env = testkit::TestEnv::on(&pg.url()).await;
    let replica = pg.replica().await;
    let replica_url = testkit::with_database(&replica.url(), &format!("t_{}", env.id));
    let server = common::start_on(env, |c| {
        c.read_database_url = Some(replica_url.clone());
        c.read_replica_wait_ms = 500;
        c.metrics_listen = Some(([127, 0, 0, 1], 0).into());
    })
    .await;
    // The split read-api on the same primary, replica and blobs.
    let (_reader, read_api) = spawn(
        "read-api",
        &server.env,
        &server.config.data_dir,
        &[
            ("HOMESERVER_READ_DATABASE_URL", &replica_url),
            ("HOMESERVER_READ_REPLICA_WAIT_MS", "500"),
        ],
    )
    .await;
    let user = server.user().await;

    // The replica is one of the primary; another cluster (the shared one of `make
    // test`) is not, and is then never read.
    let primary = &server.server.state.store;
    let connect = |url: String| async move {
        store::ReadReplica::new(store::Store::connect(&url, 1).await.expect("connect"))
    };
    let standby = connect(replica_url.clone()).await;
    assert!(standby.check_primary(primary).await.expect("check"));
    let other = connect(testkit::required_env("DATABASE_URL")).await;
    assert!(!other.check_primary(primary).await.expect("check"));
    assert_eq!(
        other.reach(domain::EventSeq(0), Duration::ZERO).await,
        store::replica::Reached::Unavailable
    );

    // Read-your-writes: every write reads back at once, through both readers. The
    // same file is overwritten each time, so a stale read would show an older value.
    for i in 0..WRITES {
        let body = format!("version {i}");
        server.put_ok(&user, "/pub/same.txt", &body).await;
        server
            .put_ok(&user, &format!("/pub/dir/f{i:02}"), &body)
            .await;
        assert_eq!(
            get(&server, &server.storage(&user, "/pub/same.txt")).await,
            body
        );
        let split = format!("{read_api}/storage/{}/pub/same.txt", user.z32());
        assert_eq!(get(&server, &split).await, body, "read-api, write {i}");
    }
    let went_to_replica = |m: &str| outcome(m, "replica") + outcome(m, "replica_waited");
    let before = metrics(&server).await;
    caught_up(&server, &replica_url).await;

    // Listing and feed through the caught-up replica agree with the primary.
    let listing = get(&server, &server.storage(&user, "/pub/dir/")).await;
    let expected: Vec<String> = (0..WRITES)
        .map(|i| format!("pubky://{}/pub/dir/f{i:02}", user.z32()))
        .collect();
    assert_eq!(listing.lines().collect::<Vec<_>>(), expected, "listing");
    let feed = get(&server, &server.url("/events/?limit=1000")).await;
    let primary = server
        .server
        .state
        .store
        .public_events(domain::EventSeq(0), 1000)
        .await
        .expect("the primary's feed");
    let mut lines: Vec<String> = primary
        .iter()
        .map(|e| format!("{} pubky://{}{}", e.op, e.owner, e.path))
        .collect();
    let last = primary.last().expect("events").seq.0;
    lines.push(format!("cursor: {last}"));
    assert_eq!(feed.lines().collect::<Vec<_>>(), lines, "feed");
    // The user's event stream (history only) through the replica, too.
    let stream = get(
        &server,
        &server.url(&format!("/events-stream?user={}", user.z32())),
    )
    .await;
    let streamed: Vec<&str> = stream
        .lines()
        .filter_map(|line| line.strip_prefix("data: pubky://"))
        .collect();
    let paths: Vec<String> = primary
        .iter()
        .map(|e| format!("{}{}", e.owner, e.path))
        .collect();
    assert_eq!(streamed, paths, "event stream");
    let after = metrics(&server).await;
    assert!(
        went_to_replica(&after) >= went_to_replica(&before) + 3.0,
        "the listing, the feed and the stream read the replica:\n{after}"
    );

    // Replay paused: a fresh write still reads back (from the primary, once the
    // bound has passed), and the fallback is counted.
    let standby = sqlx::PgPool::connect(&replica_url).await.expect("replica");
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&standby)
        .await
        .expect("pause replay");
    let fallbacks = outcome(&after, "fallback_lag");
    server.put_ok(&user, "/pub/same.txt", "fresh").await;
    assert_eq!(
        get(&server, &server.storage(&user, "/pub/same.txt")).await,
        "fresh"
    );
    let split = format!("{read_api}/storage/{}/pub/same.txt", user.z32());
    assert_eq!(
        get(&server, &split).await,
        "fresh",
        "read-api, replay paused"
    );
    let feed = get(&server, &server.url("/events/?limit=1000")).await;
    assert!(
        feed.contains(&format!("PUT pubky://{}/pub/same.txt\ncursor:", user.z32())),
        "the feed ends with the fresh write: {feed}"
    );
    let stream = get(
        &server,
        &server.url(&format!("/events-stream?user={}", user.z32())),
    )
    .await;
    let fresh = format!("data: pubky://{}/pub/same.txt", user.z32());
    assert_eq!(
        stream.lines().filter(|line| *line == fresh).count(),
        WRITES + 1,
        "the stream has the fresh write: {stream}"
    );
    let paused = metrics(&server).await;
    assert!(
        outcome(&paused, "fallback_lag") >= fallbacks + 3.0,
        "the read, the feed and the stream fell back to the primary:\n{paused}"
    );
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&standby)
        .await
        .expect("resume replay");
    standby.close().await;

    // Replica down: reads go to the primary, the service stays ready and says why.
    replica.stop(Stop::Fast).await;
    server
        .put_ok(&user, "/pub/same.txt", "after the replica")
        .await;
    assert_eq!(
        get(&server, &server.storage(&user, "/pub/same.txt")).await,
        "after the replica"
    );
    let ready = server
        .http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let text = ready.text().await.expect("body");
    assert!(text.contains("postgres_replica unavailable"), "{text}");
    let down = metrics(&server).await;
    assert!(outcome(&down, "fallback_replica_down") >= 1.0, "{down}");
    assert_eq!(
        sample(
            &down,
            "dependency_up",
            &[("dependency", "postgres_replica")]
        ),
        Some(0.0),
        "{down}"
    );
}

/// Waits (bounded) until the replica's watermark equals the primary's.
async fn caught_up(server: &TestServer, replica_url: &str) {
    let replica = store::Store::connect(replica_url, 1)
        .await
        .expect("replica");
    let primary = server
        .server
        .state
        .store
        .watermark()
        .await
        .expect("primary");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while replica.watermark().await.expect("replica watermark") < primary {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica catches up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(server: &TestServer, url: &str) -> String {
    let response = server.http.get(url).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.text().await.expect("body")
}

async fn metrics(server: &TestServer) -> String {
    let addr = server.server.metrics_addr.expect("metrics listener");
    scrape(&server.http, addr).await
}

/// `replica_reads_total{outcome}` (0 before the first such read).
fn outcome(text: &str, outcome: &str) -> f64 {
    sample(text, "replica_reads_total", &[("outcome", outcome)]).unwrap_or(0.0)
}
