//! Postgres going down under write load, on a cluster of the test's own
//! ([`testkit::pg::PgCluster`]) behind the split deployment (projector, write-api,
//! read-api, events and gateway as separate processes, as in docker-compose).
//!
//! A crash of the database (`pg_ctl stop -m immediate`, what `docker restart -t 0`
//! and a `kill -9` amount to) loses whatever it had not flushed, so an answer given
//! on the strength of an unflushed commit would be a broken promise: every write
//! answered 201 or 202 must read back afterwards and be in the feed once. A clean
//! restart must hold the same. Both are also about recovery: once Postgres is back,
//! the same processes serve writes again without a restart of their own.

use crate::common::drill::{self, Stack};
use crate::common::split::spawn;
use std::sync::Arc;
use std::time::Duration;
use testkit::pg::{PgCluster, Stop};

const WRITERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashes_and_restarts_under_load_lose_no_acknowledged_write() {
    let pg = Arc::new(PgCluster::start().await);
    let env = testkit::TestEnv::on(&pg.url()).await;
    let data = tempfile::tempdir().expect("tempdir");
    let open = [("HOMESERVER_SIGNUP_MODE", "open")];
    let (_projector, _) = spawn("projector", &env, data.path(), &open).await;
    let (_writer, write_url) = spawn("write-api", &env, data.path(), &open).await;
    let (_reader, read_url) = spawn("read-api", &env, data.path(), &open).await;
    let (_events, events_url) = spawn("events", &env, data.path(), &open).await;
    let (_gateway, gateway) = spawn(
        "gateway",
        &env,
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
        gateway,
        http: reqwest::Client::new(),
    });
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(stack.signup().await);
    }
    let writers = Arc::new(writers);

    let window = Duration::from_secs(6);
    let rows = vec![
        drill::drill(
            &stack,
            &writers,
            "crash-postgres",
            pg.stop(Stop::Immediate),
            pg.start_server(),
            Duration::from_secs(1),
            window,
        )
        .await,
        drill::drill(
            &stack,
            &writers,
            "restart-postgres",
            pg.stop(Stop::Fast),
            pg.start_server(),
            Duration::from_secs(1),
            window,
        )
        .await,
    ];
    drill::print_table(&rows);
    drill::assert_held(&rows);
}
