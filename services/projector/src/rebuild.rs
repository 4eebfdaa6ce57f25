//! `homeserver rebuild`: replay the whole log into a fresh schema and prove that the
//! projections it produces equal the live ones.
//!
//! The live projector keeps running meanwhile, so the two are compared at the same log
//! position: the rebuilt schema is caught up to the live watermark, and the comparison
//! runs in one repeatable-read transaction that first checks the live watermark did not
//! move. If writes keep moving it, the catch-up is repeated a bounded number of times.

use crate::{ProjectorConfig, ProjectorError, apply_until, progress_bar};
use domain::EventSeq;
use log::EventLog;
use store::{Progress, Store};

/// The projection tables, compared row for row. `merkle_nodes` is not: which
/// intermediate nodes get stored depends on how events fell into batches, while the
/// roots (and so every node reachable from them) do not.
const TABLES: &[&str] = &[
    "merkle_roots",
    "users",
    "entries",
    "events",
    "signup_tokens",
    "grants",
    "grant_sessions",
    "cookie_sessions",
    "used_nonces",
    "deleted_users",
    "entry_locks",
    "dav_dirs",
    "dav_props",
];

/// The columns of `events` every projection run writes the same way.
const EVENT_CORE_COLUMNS: &str =
    "seq, line, lines, owner, op, path, content_hash, created_us, private";
/// Columns added to `events` later (`merkle_root` in 0002, reset by 0005;
/// `content_length` and `content_type` in 0003): rows projected before them are NULL
/// in the live table ("not recorded") but filled by a replay, which is not a
/// difference. A recorded value that disagrees with the replay is.
const EVENT_ANNOTATIONS: &[&str] = &["merkle_root", "content_length", "content_type"];

/// The columns of `grants` every projection run writes the same way.
const GRANT_CORE_COLUMNS: &str = "grant_id, owner, client_id, client_key, capabilities, \
    issued_at, expires_at, revoked_us, created_us";
/// A grant's session issuance window (0011): NULL on grants projected before it, and
/// only an open window decides anything (the next issuance after it closes starts a
/// new one), so a difference counts only in a window the live row has and that is
/// still open: a grant that minted sessions in the minute of the upgrade differs in a
/// replay, harmlessly, until that minute is over.
const GRANT_WINDOW_DIFFERS: &str = "l.session_window_start_us IS NOT NULL
    AND l.session_window_start_us + 60000000 > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    AND (l.session_window_start_us, l.session_window_count)
        IS DISTINCT FROM (r.session_window_start_us, r.session_window_count)";

#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub schema: String,
    /// The log position both sides were compared at.
    pub position: EventSeq,
    pub events_replayed: u64,
    pub seconds: f64,
    /// Tables whose rows differ, with the number of differing rows.
    pub differences: Vec<(String, i64)>,
}

impl RebuildReport {
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Replays the log into `schema` (created fresh; dropped afterwards unless `keep`) and
/// compares it with the live projections of `live`.
pub async fn rebuild(
    log: &EventLog,
    live: &Store,
    database_url: &str,
    schema: &str,
    keep: bool,
    show_progress: bool,
) -> Result<RebuildReport, ProjectorError> {
    let started = std::time::Instant::now();
    live.drop_schema(schema).await?;
    live.create_schema(schema).await?;
    let rebuilt = Store::connect_in_schema(database_url, 4, schema).await?;
    let config = ProjectorConfig {
        name: "rebuild".into(),
        batch_max: 2000,
        linger: std::time::Duration::from_millis(5),
        ..ProjectorConfig::default()
    };
    let bar = progress_bar(show_progress, "replaying", "events");
    let progress = Progress::new();
    let mut replayed = 0u64;
    let mut outcome = None;
    for _attempt in 0..10 {
        let target = live.watermark().await?;
        let from = EventSeq(rebuilt.checkpoint("rebuild").await?.0 + 1);
        bar.set_length(target.0);
        let count_batch = |n: u64| bar.inc(n);
        if target.0 >= from.0 {
            apply_until(
                log,
                &rebuilt,
                &progress,
                &config,
                from,
                Some((target, &count_batch)),
            )
            .await?;
            replayed = target.0;
        }
        if let Some(differences) = compare_at(live, schema, target).await? {
            outcome = Some((target, differences));
            break;
        }
    }
    bar.finish_and_clear();
    let Some((position, differences)) = outcome else {
        return Err(store::StoreError::Corrupt(
            "the live projections kept moving; run rebuild again when writes are quieter".into(),
        )
        .into());
    };
    if !keep {
        live.drop_schema(schema).await?;
    }
    Ok(RebuildReport {
        schema: schema.to_string(),
        position,
        events_replayed: replayed,
        seconds: started.elapsed().as_secs_f64(),
        differences,
    })
}

/// Compares every table when the live watermark is still `position`; `None` when it
/// has moved on (the caller catches up and tries again).
async fn compare_at(
    live: &Store,
    schema: &str,
    position: EventSeq,
) -> Result<Option<Vec<(String, i64)>>, ProjectorError> {
    let mut tx = live.pool().begin().await.map_err(store::StoreError::from)?;
    sqlx_exec(&mut tx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").await?;
    let now: i64 = sqlx_scalar(
        &mut tx,
        "SELECT coalesce(min(last_seq), 0) FROM projector_checkpoints",
    )
    .await?;
    if now as u64 != position.0 {
        return Ok(None);
    }
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let mut differences = Vec::new();
    for table in TABLES {
        let columns = match *table {
            "events" => EVENT_CORE_COLUMNS,
            "grants" => GRANT_CORE_COLUMNS,
            _ => "*",
        };
        let mut sql = format!(
            "SELECT (SELECT count(*) FROM (SELECT {columns} FROM {table} EXCEPT ALL SELECT {columns} FROM {quoted}.{table}) a)
                  + (SELECT count(*) FROM (SELECT {columns} FROM {quoted}.{table} EXCEPT ALL SELECT {columns} FROM {table}) b)"
        );
        if *table == "events" {
            sql.push_str(&format!(
                " + (SELECT count(*) FROM events l JOIN {quoted}.events r USING (seq, line) WHERE {})",
                EVENT_ANNOTATIONS
                    .iter()
                    .map(|c| format!("(l.{c} IS NOT NULL AND l.{c} IS DISTINCT FROM r.{c})"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ));
        }
        if *table == "grants" {
            sql.push_str(&format!(
                " + (SELECT count(*) FROM grants l JOIN {quoted}.grants r USING (grant_id) WHERE {GRANT_WINDOW_DIFFERS})"
            ));
        }
        let differing: i64 = sqlx_scalar(&mut tx, &sql).await?;
        if differing != 0 {
            differences.push((table.to_string(), differing));
        }
    }
    Ok(Some(differences))
}

async fn sqlx_exec(tx: &mut store::Transaction, sql: &str) -> Result<(), ProjectorError> {
    store::execute(tx, sql).await.map_err(Into::into)
}

async fn sqlx_scalar(tx: &mut store::Transaction, sql: &str) -> Result<i64, ProjectorError> {
    store::scalar_i64(tx, sql).await.map_err(Into::into)
}
