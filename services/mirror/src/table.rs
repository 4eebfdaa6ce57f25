//! The `mirrors` table (migration 0021): which users this homeserver mirrors, from
//! where, and how far it got. The follower's checkpoint lives here, next to nothing
//! else: the copied files are in the log and its projections.

use sqlx::Row;
use store::Store;

/// One mirrored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRow {
    pub user: String,
    pub source_url: String,
    pub source_key: String,
    /// How the primary is read: [`crate::source::SourceKind`] as text.
    pub source_kind: String,
    pub read_token: Option<String>,
    pub started_by: String,
    pub state: String,
    pub cursor: u64,
    pub source_root_pub: Option<String>,
    pub source_root_priv: Option<String>,
    pub source_seq: u64,
    pub events_applied: u64,
    pub last_error: Option<String>,
    pub last_error_us: Option<u64>,
    pub last_sync_us: Option<u64>,
    pub created_us: u64,
}

/// A new mirror's settings.
#[derive(Debug, Clone)]
pub struct NewMirror {
    pub user: String,
    pub source_url: String,
    pub source_key: String,
    pub source_kind: &'static str,
    pub read_token: Option<String>,
    pub started_by: &'static str,
}

fn u(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn i(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<MirrorRow, sqlx::Error> {
    Ok(MirrorRow {
        user: row.try_get("user_key")?,
        source_url: row.try_get("source_url")?,
        source_key: row.try_get("source_key")?,
        source_kind: row.try_get("source_kind")?,
        read_token: row.try_get("read_token")?,
        started_by: row.try_get("started_by")?,
        state: row.try_get("state")?,
        cursor: u(row.try_get("cursor")?),
        source_root_pub: row.try_get("source_root_pub")?,
        source_root_priv: row.try_get("source_root_priv")?,
        source_seq: u(row.try_get("source_seq")?),
        events_applied: u(row.try_get("events_applied")?),
        last_error: row.try_get("last_error")?,
        last_error_us: row.try_get::<Option<i64>, _>("last_error_us")?.map(u),
        last_sync_us: row.try_get::<Option<i64>, _>("last_sync_us")?.map(u),
        created_us: u(row.try_get("created_us")?),
    })
}

const COLUMNS: &str =
    "user_key, source_url, source_key, source_kind, read_token, started_by, state, cursor,
    source_root_pub, source_root_priv, source_seq, events_applied, last_error, last_error_us,
    last_sync_us, created_us";

/// Adds a mirror, or changes the source, key and grant of an existing one (its
/// checkpoint is kept when the source stays the same). True when it is new.
pub async fn upsert(store: &Store, new: &NewMirror) -> Result<bool, sqlx::Error> {
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO mirrors (user_key, source_url, source_key, read_token, started_by, created_us,
                              source_kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_key) DO UPDATE SET
            read_token = COALESCE(EXCLUDED.read_token, mirrors.read_token),
            cursor = CASE WHEN mirrors.source_key = EXCLUDED.source_key
                          THEN mirrors.cursor ELSE 0 END,
            last_sync_us = CASE WHEN mirrors.source_key = EXCLUDED.source_key
                          THEN mirrors.last_sync_us END,
            source_url = EXCLUDED.source_url,
            source_key = EXCLUDED.source_key,
            source_kind = EXCLUDED.source_kind,
            last_error = NULL
         RETURNING (xmax = 0)",
    )
    .bind(&new.user)
    .bind(&new.source_url)
    .bind(&new.source_key)
    .bind(&new.read_token)
    .bind(new.started_by)
    .bind(i(api::now_micros()))
    .bind(new.source_kind)
    .fetch_one(store.pool())
    .await?;
    Ok(inserted)
}

pub async fn get(store: &Store, user: &str) -> Result<Option<MirrorRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM mirrors WHERE user_key = $1"
    ))
    .bind(user)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<MirrorRow>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM mirrors ORDER BY user_key"))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// The mirrored users and their primaries' keys.
pub async fn primaries(store: &Store) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT user_key, source_key FROM mirrors")
        .fetch_all(store.pool())
        .await
}

/// Removes a mirror; true when there was one. The copied files stay (they are events
/// of this homeserver's log); the user is no longer read-only here.
pub async fn remove(store: &Store, user: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM mirrors WHERE user_key = $1")
        .bind(user)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The follower applied the primary's events up to `seq` (and the roots it gave
/// matched): the roots of the trees they touched are recorded.
pub async fn checkpoint(
    store: &Store,
    user: &str,
    seq: u64,
    roots: (Option<&str>, Option<&str>),
    applied: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mirrors SET cursor = GREATEST(cursor, $2),
            source_root_pub = COALESCE($3, source_root_pub),
            source_root_priv = COALESCE($4, source_root_priv),
            source_seq = GREATEST(source_seq, $2), events_applied = events_applied + $5,
            state = 'following', last_error = NULL
         WHERE user_key = $1",
    )
    .bind(user)
    .bind(i(seq))
    .bind(roots.0)
    .bind(roots.1)
    .bind(i(applied))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The stream's cursor moves to `seq` (a sync by diff covered the events up to it).
pub async fn advance(store: &Store, user: &str, seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE mirrors SET cursor = GREATEST(cursor, $2) WHERE user_key = $1")
        .bind(user)
        .bind(i(seq))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A sync by diff reached the primary's signed roots: both recorded.
pub async fn synced(
    store: &Store,
    user: &str,
    roots: (&str, Option<&str>),
    seq: u64,
    applied: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mirrors SET source_root_pub = $2, source_root_priv = $3,
            source_seq = GREATEST(source_seq, $4), cursor = GREATEST(cursor, $4),
            events_applied = events_applied + $5, last_sync_us = $6,
            state = 'following', last_error = NULL
         WHERE user_key = $1",
    )
    .bind(user)
    .bind(roots.0)
    .bind(roots.1)
    .bind(i(seq))
    .bind(i(applied))
    .bind(i(api::now_micros()))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// A walk of a plain source's listings (`crate::plain`) completed: the stream is
/// followed from `cursor`, the primary's newest event before the walk began. No
/// source root is recorded: a plain source signs none.
pub async fn listed(
    store: &Store,
    user: &str,
    cursor: u64,
    applied: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mirrors SET cursor = GREATEST(cursor, $2), source_seq = GREATEST(source_seq, $2),
            events_applied = events_applied + $3, last_sync_us = $4,
            state = 'following', last_error = NULL
         WHERE user_key = $1",
    )
    .bind(user)
    .bind(i(cursor))
    .bind(i(applied))
    .bind(i(api::now_micros()))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Sets the state (`copying`, `retrying`, `failed`) and, for the last two, the error.
pub async fn set_state(
    store: &Store,
    user: &str,
    state: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mirrors SET state = $2,
            last_error = COALESCE($3, last_error),
            last_error_us = CASE WHEN $3 IS NULL THEN last_error_us ELSE $4 END
         WHERE user_key = $1",
    )
    .bind(user)
    .bind(state)
    .bind(error)
    .bind(i(api::now_micros()))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Entries and content bytes of the user here.
pub async fn local_totals(store: &Store, user: &str) -> Result<(u64, u64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS entries, COALESCE(sum(size), 0)::BIGINT AS bytes
         FROM entries WHERE owner = $1",
    )
    .bind(user)
    .fetch_one(store.pool())
    .await?;
    Ok((u(row.try_get("entries")?), u(row.try_get("bytes")?)))
}

/// The users who moved away from this homeserver: `(user, the homeserver they moved to,
/// when in unix µs)` (migration 0023, the projection of `user_moved`).
pub async fn moved(store: &Store) -> Result<Vec<(String, String, u64)>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT pubkey, moved_to, COALESCE(moved_us, 0) FROM users WHERE moved_to IS NOT NULL",
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(u_, to, us)| (u_, to, u(us)))
        .collect())
}

/// A user's move as this homeserver knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveRow {
    /// The homeserver the user moved to, and when (unix µs): they left this one.
    pub moved_to: Option<(String, u64)>,
    /// The homeserver the user came from, when a mirror of them was promoted here.
    pub arrived_from: Option<String>,
}

/// `None` for a user without an account here.
pub async fn move_row(store: &Store, user: &str) -> Result<Option<MoveRow>, sqlx::Error> {
    let row: Option<(Option<String>, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT moved_to, moved_us, arrived_from FROM users WHERE pubkey = $1")
            .bind(user)
            .fetch_optional(store.pool())
            .await?;
    Ok(row.map(|(to, us, from)| MoveRow {
        moved_to: to.map(|to| (to, us.map_or(0, u))),
        arrived_from: from,
    }))
}
