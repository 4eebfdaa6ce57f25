//! Test support: an isolated slice of the real NATS and Postgres for each test.
//!
//! Tests run in parallel against one NATS server and one Postgres cluster (started by
//! `make test`, given by `NATS_URL` and `DATABASE_URL`). Each test gets its own
//! database and its own JetStream stream and subject prefix, so nothing is shared and
//! nothing needs cleaning between tests. [`s3`] does the same for the S3 blob store;
//! [`pg`] and [`nats`] give a drill a Postgres cluster or a NATS server of its own to
//! crash and restart.

use sqlx::Connection;

pub mod nats;
pub mod pg;
pub mod s3;

/// One test's private database and log namespace.
pub struct TestEnv {
    /// URL of this test's own, freshly created database.
    pub database_url: String,
    pub nats_url: String,
    pub log: log::LogConfig,
    /// Short random id, also used in names.
    pub id: String,
}

/// The variable's value, or a panic that says how to run the tests.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, which starts Postgres and NATS")
    })
}

/// A loopback port that nothing listens on now: for a server a test starts, and
/// starts again on the same port after killing it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::on(&required_env("DATABASE_URL")).await
    }

    /// A test database on the Postgres server of `admin_url` (a [`pg::PgCluster`] of
    /// the test's own, say) and a log namespace on the shared NATS.
    pub async fn on(admin_url: &str) -> Self {
        Self::on_servers(admin_url, &required_env("NATS_URL")).await
    }

    /// A test database on the Postgres server of `admin_url` and a log namespace on
    /// the NATS server of `nats_url` (a [`nats::NatsServer`] of the test's own, say).
    pub async fn on_servers(admin_url: &str, nats_url: &str) -> Self {
        let admin_url = admin_url.to_string();
        let nats_url = nats_url.to_string();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let db = format!("t_{id}");
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL {admin_url}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database: {e}"));
        let database_url = with_database(&admin_url, &db);
        let mut log = log::LogConfig::new(&nats_url);
        log.stream = format!("T{id}");
        log.subject_prefix = format!("t{id}");
        TestEnv {
            database_url,
            nats_url,
            log,
            id,
        }
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && base[..i].ends_with(|c: char| c != '/') => {
            &base[..i]
        }
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{db}?{query}"),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(
            with_database("postgres://u@h:1/db?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
