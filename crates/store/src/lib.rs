//! Postgres: the projections of the event log, and the queries the services read.
//!
//! Nothing here is the source of truth. The projector writes these tables from the log
//! (see [`projection`]); everything else only reads them. Each [`Store`] is bound to
//! one schema, so `homeserver rebuild` can replay the log into a fresh schema with the
//! same code and compare the result with the live tables.

pub mod account_deletion;
pub mod admin;
pub mod auth;
pub mod dav;
mod dav_tree;
pub mod entries;
pub mod export;
pub mod feed;
pub mod locks;
pub mod log_identity;
pub mod merkle;
pub mod merkle_diff;
pub mod merkle_gc;
mod moves;
pub mod progress;
pub mod projection;
pub mod replica;
pub mod reseed;
pub mod streams;
pub mod users;
pub mod versions;
pub mod write_checks;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};
use std::str::FromStr;
use std::time::Duration;

pub use progress::Progress;
pub use replica::ReadReplica;

/// The projections' migrations, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A user's Merkle tree is not built yet (after an upgrade that dropped the trees,
    /// until the projector has rebuilt them): try again shortly.
    #[error("the merkle tree of {0} is being rebuilt")]
    TreePending(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The longest a query waits for a connection (see [`Store::connect_in_schema`]).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(800);

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    schema: String,
    /// Whether the projector maintains the Merkle trees (always, except to measure
    /// what they cost: see [`Store::without_merkle_for_measurement`]).
    maintain_merkle: bool,
}

impl Store {
    /// Connects to the projections in the default `public` schema.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_in_schema(url, max_connections, "public").await
    }

    /// Connects with every connection's `search_path` set to `schema`.
    pub async fn connect_in_schema(url: &str, max_connections: u32, schema: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?
            .options([("search_path", schema)])
            .application_name("pubky-homeserver");
        // Every connection is a Postgres backend of its own (tens of MB each once its
        // caches are warm): the pool grows with the load and gives back what a burst
        // opened after half a minute idle, instead of sqlx's ten minutes.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .idle_timeout(Duration::from_secs(30))
            // While Postgres is down, sqlx keeps trying to connect until this passes:
            // it is how long a request waits before its 503, so it is short. (A busy
            // pool hands a connection over in milliseconds, far below it.)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Store {
            pool,
            schema: schema.to_string(),
            maintain_merkle: true,
        })
    }

    /// A streaming replica's projections in `schema`, connecting lazily: a replica
    /// that is down at start delays nothing (reads go to the primary until it answers,
    /// see [`replica`]). No migrations: a standby replays the primary's.
    pub fn connect_replica(url: &str, max_connections: u32, schema: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?
            .options([("search_path", schema)])
            .application_name("pubky-homeserver-reads");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .idle_timeout(Duration::from_secs(30))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Store {
            pool,
            schema: schema.to_string(),
            maintain_merkle: true,
        })
    }

    /// A store whose projector leaves the Merkle trees alone, only for measuring their
    /// cost on throughput: the roots it leaves behind are stale.
    #[doc(hidden)]
    pub fn without_merkle_for_measurement(mut self) -> Self {
        self.maintain_merkle = false;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Applies pending migrations to the `public` schema (advisory-locked by sqlx, so
    /// several services may run it at start).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Creates `schema` and the projection tables inside it, for a rebuild.
    pub async fn create_schema(&self, schema: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        tx.execute(format!("CREATE SCHEMA {}", quote_ident(schema)).as_str())
            .await?;
        tx.execute(format!("SET LOCAL search_path TO {}", quote_ident(schema)).as_str())
            .await?;
        for migration in MIGRATOR.iter() {
            tx.execute(&*migration.sql).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        self.pool
            .execute(format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema)).as_str())
            .await?;
        Ok(())
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A sequence as a `bigint` query parameter. Sequences past `i64::MAX` cannot exist in
/// the tables, so saturating keeps "after a huge cursor" meaning "nothing".
pub fn seq_param(seq: domain::EventSeq) -> i64 {
    i64::try_from(seq.0).unwrap_or(i64::MAX)
}

/// Microseconds since the Unix epoch, the time unit of events and of these tables.
pub fn micros_to_i64(us: u64) -> i64 {
    i64::try_from(us).unwrap_or(i64::MAX)
}

/// A transaction on the projections, for callers that compare schemas.
pub type Transaction = sqlx::Transaction<'static, sqlx::Postgres>;

/// Runs one SQL statement without parameters inside `tx`.
pub async fn execute(tx: &mut Transaction, sql: &str) -> Result<()> {
    sqlx::query(sql).execute(&mut **tx).await?;
    Ok(())
}

/// Runs a query returning a single `bigint` inside `tx`.
pub async fn scalar_i64(tx: &mut Transaction, sql: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(&mut **tx).await?)
}
