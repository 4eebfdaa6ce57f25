//! Postgres or NATS going down under write load, each a server of the test's own
//! ([`testkit::pg::PgCluster`], [`testkit::nats::NatsServer`]) behind the split
//! deployment (projector, write-api, read-api, events and gateway as separate
//! processes, as in docker-compose). The drills are [`crate::common::drill`]'s.
//!
//! A crash of the database (`pg_ctl stop -m immediate`, what `docker restart -t 0`
//! and a `kill -9` amount to) loses whatever it had not flushed, so an answer given
//! on the strength of an unflushed commit would be a broken promise: every write
//! answered 201 or 202 must read back afterwards and be in the feed once. A clean
//! restart, and a `kill -9` of the log's server, must hold the same. All are also about
//! recovery: once the dependency is back, the same processes serve writes again
//! without a restart of their own.

use crate::common::drill::{self, Stack, Writer};
use crate::common::split::spawn;
use std::sync::Arc;
use std::time::Duration;
use testkit::nats::NatsServer;
use testkit::pg::{PgCluster, Stop};
use tokio::process::Child;

const WRITERS: usize = 6;
/// The load of one drill, fault included.
const WINDOW: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashes_and_restarts_under_load_lose_no_acknowledged_write() {
    let pg = PgCluster::start().await;
    let env = testkit::TestEnv::on(&pg.url()).await;
    let (_processes, stack, writers) = split_deployment(&env).await;
    let rows = vec![
        drill::drill(
            &stack,
            &writers,
            "crash-postgres",
            pg.stop(Stop::Immediate),
            pg.start_server(),
            Duration::from_secs(1),
            WINDOW,
        )
        .await,
        drill::drill(
            &stack,
            &writers,
            "restart-postgres",
            pg.stop(Stop::Fast),
            pg.start_server(),
            Duration::from_secs(1),
            WINDOW,
        )
        .await,
    ];
    drill::print_table(&rows);
    drill::assert_held(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_under_load_loses_no_acknowledged_write() {
    let nats = tokio::sync::Mutex::new(NatsServer::start().await);
    let nats_url = nats.lock().await.url();
    let env = testkit::TestEnv::on_servers(&testkit::required_env("DATABASE_URL"), &nats_url).await;
    let (_processes, stack, writers) = split_deployment(&env).await;
    let rows = vec![
        drill::drill(
            &stack,
            &writers,
            "kill-9-nats",
            async { nats.lock().await.kill().await },
            async { nats.lock().await.restart().await },
            Duration::from_secs(2),
            WINDOW,
        )
        .await,
    ];
    drill::print_table(&rows);
    drill::assert_held(&rows);
}

/// Projector, write-api, read-api, events and gateway on `env`, open signup, and
/// [`WRITERS`] users signed up through the gateway.
async fn split_deployment(
    env: &testkit::TestEnv,
) -> (
    (Vec<Child>, tempfile::TempDir),
    Arc<Stack>,
    Arc<Vec<Writer>>,
) {
    let data = tempfile::tempdir().expect("tempdir");
    let open = [("HOMESERVER_SIGNUP_MODE", "open")];
    let (projector, _) = spawn("projector", env, data.path(), &open).await;
    let (writer, write_url) = spawn("write-api", env, data.path(), &open).await;
    let (reader, read_url) = spawn("read-api", env, data.path(), &open).await;
    let (events, events_url) = spawn("events", env, data.path(), &open).await;
    let (gateway, gateway_url) = spawn(
        "gateway",
        env,
        data.path(),
        &[
            ("HOMESERVER_GATEWAY_WRITE_API", &write_url),
            ("HOMESERVER_GATEWAY_READ_API", &read_url),
            ("HOMESERVER_GATEWAY_EVENTS", &events_url),
            ("HOMESERVER_SIGNUP_MODE", "open"),
        ],
    )
    .await;
    let stack = Arc::new(Stack {
        gateway: gateway_url,
        http: reqwest::Client::new(),
    });
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(stack.signup().await);
    }
    (
        (vec![projector, writer, reader, events, gateway], data),
        stack,
        Arc::new(writers),
    )
}
