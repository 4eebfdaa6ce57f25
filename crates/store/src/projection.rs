//! Applying events to the tables: the only writer of the projections.
//!
//! A batch of events is one transaction that also moves the projector's checkpoint, so
//! a crash commits both or neither and a restart resumes exactly after the last
//! committed event (exactly-once effect). Events at or below the checkpoint are skipped,
//! which makes redelivery harmless. After the commit a `pg_notify` wakes the writers of
//! other processes that wait for their event to be visible (read-your-writes).

use crate::account_deletion;
use crate::merkle::BatchTrees;
use crate::{Result, Store, StoreError, micros_to_i64};
use domain::event::{Change, Digest, StorageLimit, UserLimits};
use domain::{Event, EventSeq};
use sqlx::{Postgres, Transaction};

/// The channel on which the projector announces its new checkpoint after each commit.
pub const PROJECTED_CHANNEL: &str = "hs_projected";

/// Bytes charged per entry on top of its content, as the reference server does.
pub const ENTRY_OVERHEAD_BYTES: i64 = 256;

impl Store {
    /// The last sequence applied under this checkpoint name (0 when none).
    pub async fn checkpoint(&self, name: &str) -> Result<EventSeq> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM projector_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(EventSeq(seq.unwrap_or(0).max(0) as u64))
    }

    /// The position up to which every event is applied: the smallest checkpoint.
    pub async fn watermark(&self) -> Result<EventSeq> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT min(last_seq) FROM projector_checkpoints")
                .fetch_one(&self.pool)
                .await?;
        Ok(EventSeq(seq.unwrap_or(0).max(0) as u64))
    }

    /// Applies `events` (in log order) and moves checkpoint `name` to the last one, in
    /// one transaction. Returns the new checkpoint.
    pub async fn apply_batch(&self, name: &str, events: &[(EventSeq, Event)]) -> Result<EventSeq> {
        let mut tx = self.pool.begin().await?;
        // The commit waits for the WAL flush (synchronous_commit stays on): the moment
        // it returns, writers are told their event is visible and answer 201. With an
        // unflushed commit, a crash of Postgres took back what clients had already read:
        // the replay from the log restored it, but until then reads were 404 and every
        // write of those users conflicted on a stale sequence (it::pg_restart).
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT last_seq FROM projector_checkpoints WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let mut checkpoint = current.unwrap_or(0);
        // The id of the last event applied: the log's event at the checkpoint must stay
        // this one (see `domain::log_identity`).
        let mut last_id = None;
        // The users' Merkle trees move in this same transaction (exactly-once with the
        // entries); nodes are cached for the batch and written once at its end.
        let mut trees = self.maintain_merkle.then(BatchTrees::default);
        for (seq, event) in events {
            let seq = seq.0 as i64;
            if seq <= checkpoint {
                continue;
            }
            apply(&mut tx, seq, event, trees.as_mut()).await?;
            checkpoint = seq;
            last_id = Some(event.request_id.as_str());
        }
        if let Some(trees) = trees {
            trees.flush(&mut tx).await?;
        }
        sqlx::query(
            "INSERT INTO projector_checkpoints (name, last_seq, last_id) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq,
                last_id = coalesce(excluded.last_id, projector_checkpoints.last_id)",
        )
        .bind(name)
        .bind(checkpoint)
        .bind(last_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(format!("{PROJECTED_CHANNEL}_{}", self.schema))
            .bind(checkpoint.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(EventSeq(checkpoint as u64))
    }
}

async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    seq: i64,
    event: &Event,
    mut trees: Option<&mut BatchTrees>,
) -> Result<()> {
    let user = event.user.to_z32();
    let ts = micros_to_i64(event.ts);
    match &event.change {
        Change::UserSignedUp {
            signup_token,
            limits,
            cookie_session,
            pop_nonce,
        } => {
            let (quota, paths, rate_read, rate_write) = limit_columns(limits);
            // A row that exists already is a user re-stated by a re-seeded log
            // (`store::reseed`): its account sequence is now this event's. A key whose
            // account was deleted starts again from the tombstone: its file subject
            // keeps its sequence in the log (see `account_deletion`).
            sqlx::query(
                "WITH tomb AS (DELETE FROM deleted_users WHERE pubkey = $1 RETURNING file_seq)
                 INSERT INTO users (pubkey, created_us, acct_seq, storage_quota_mb,
                                    allowed_write_paths, rate_read, rate_write, file_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE((SELECT file_seq FROM tomb), 0))
                 ON CONFLICT (pubkey) DO UPDATE SET acct_seq = excluded.acct_seq",
            )
            .bind(&user)
            .bind(ts)
            .bind(seq)
            .bind(quota)
            .bind(paths)
            .bind(rate_read)
            .bind(rate_write)
            .execute(&mut **tx)
            .await?;
            if let Some(token) = signup_token {
                sqlx::query(
                    "UPDATE signup_tokens SET used_by = $2, used_us = $3
                     WHERE token_hash = $1 AND used_by IS NULL",
                )
                .bind(&token.0[..])
                .bind(&user)
                .bind(ts)
                .execute(&mut **tx)
                .await?;
            }
            // A cookie signup opens its session in the same event (after the user row,
            // which the session references).
            if let Some(session) = cookie_session {
                insert_cookie_session(
                    tx,
                    &session.secret_hash,
                    &session.capabilities,
                    &session.auth_token_id,
                    &user,
                    ts,
                )
                .await?;
            }
            if let Some(nonce) = pop_nonce {
                use_nonce(tx, nonce, &user, ts).await?;
            }
            return Ok(());
        }
        Change::GrantSessionCreated {
            grant_id,
            client_id,
            client_key,
            capabilities,
            grant_issued_at,
            grant_expires_at,
            token_hash,
            token_expires_at,
            pop_nonce,
            session_id,
        } => {
            sqlx::query(
                "INSERT INTO grants (grant_id, owner, client_id, client_key, capabilities,
                                     issued_at, expires_at, created_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (grant_id) DO NOTHING",
            )
            .bind(grant_id)
            .bind(&user)
            .bind(client_id)
            .bind(client_key.to_z32())
            .bind(capabilities.join(","))
            .bind(*grant_issued_at as i64)
            .bind(*grant_expires_at as i64)
            .bind(ts)
            .execute(&mut **tx)
            .await?;
            open_grant_session(
                tx,
                &user,
                ts,
                GrantSlot {
                    grant_id,
                    session_id: session_id.as_deref(),
                    token_hash,
                    token_expires_at: *token_expires_at,
                },
            )
            .await?;
            use_nonce(tx, pop_nonce, &user, ts).await?;
        }
        Change::GrantRevoked {
            grant_id,
            pop_nonce,
        } => {
            sqlx::query(
                "UPDATE grants SET revoked_us = $3
                 WHERE grant_id = $1 AND owner = $2 AND revoked_us IS NULL",
            )
            .bind(grant_id)
            .bind(&user)
            .bind(ts)
            .execute(&mut **tx)
            .await?;
            end_grant_sessions(tx, grant_id, &user).await?;
            if let Some(nonce) = pop_nonce {
                use_nonce(tx, nonce, &user, ts).await?;
            }
        }
        Change::CookieSessionCreated {
            secret_hash,
            capabilities,
            auth_token_id,
        } => {
            insert_cookie_session(tx, secret_hash, capabilities, auth_token_id, &user, ts).await?;
        }
        Change::CookieSessionEnded { secret_hash } => {
            sqlx::query("DELETE FROM cookie_sessions WHERE secret_hash = $1 AND owner = $2")
                .bind(&secret_hash.0[..])
                .bind(&user)
                .execute(&mut **tx)
                .await?;
        }
        Change::SignupTokenMinted { token_hash, limits } => {
            let limits = serde_json::to_value(limits)
                .map_err(|e| StoreError::Corrupt(format!("limits of event {seq}: {e}")))?;
            sqlx::query(
                "INSERT INTO signup_tokens (token_hash, created_us, limits)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&token_hash.0[..])
            .bind(ts)
            .bind(limits)
            .execute(&mut **tx)
            .await?;
            // Operator events belong to no user's sequence.
            return Ok(());
        }
        Change::FilePut {
            path,
            content_hash,
            size,
            content_type,
        } => {
            let root = match trees.as_deref_mut() {
                Some(trees) => Some(trees.edit(tx, &user, path, Some(content_hash.0)).await?),
                None => None,
            };
            // One statement: the CTEs all see the table as it was before the upsert, so
            // `old` is the previous version's size for the quota arithmetic.
            let done = sqlx::query(
                "WITH old AS (SELECT size FROM entries WHERE owner = $1 AND path = $2),
                 upsert AS (
                    INSERT INTO entries (owner, path, content_hash, size, content_type, modified_us, seq)
                    SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM users WHERE pubkey = $1)
                    ON CONFLICT (owner, path) DO UPDATE SET
                        content_hash = excluded.content_hash, size = excluded.size,
                        content_type = excluded.content_type, modified_us = excluded.modified_us,
                        seq = excluded.seq
                    WHERE entries.seq < excluded.seq
                 ),
                 feed AS (
                    INSERT INTO events (seq, owner, op, path, content_hash, created_us, private,
                                        merkle_root, content_length, content_type)
                    SELECT $7, $1, 'PUT', $2, $3, $6, $8, $10, $4, $5
                    WHERE EXISTS (SELECT 1 FROM users WHERE pubkey = $1)
                    ON CONFLICT DO NOTHING
                 )
                 UPDATE users SET
                    used_bytes = used_bytes + $4 - COALESCE((SELECT size FROM old), -$9),
                    file_seq = $7
                 WHERE pubkey = $1",
            )
            .bind(&user)
            .bind(path)
            .bind(&content_hash.0[..])
            .bind(*size as i64)
            .bind(content_type)
            .bind(ts)
            .bind(seq)
            .bind(is_private(path))
            .bind(ENTRY_OVERHEAD_BYTES)
            .bind(root.map(event_root))
            .execute(&mut **tx)
            .await?;
            // The final UPDATE touches the user row iff the user exists, which is also
            // when the entry was written: only then does the tree take the change.
            if let (Some(trees), Some(root)) = (trees, root)
                && done.rows_affected() == 1
            {
                trees.adopt(&user, path, root, seq);
            }
            if done.rows_affected() == 0 {
                account_deletion::file_event_of_deleted(tx, &user, seq).await?;
            }
            return Ok(());
        }
        Change::FileDeleted { path } => {
            let root = match trees.as_deref_mut() {
                Some(trees) => Some(trees.edit(tx, &user, path, None).await?),
                None => None,
            };
            let done = sqlx::query(
                "WITH gone AS (DELETE FROM entries WHERE owner = $1 AND path = $2 RETURNING size),
                 feed AS (
                    INSERT INTO events (seq, owner, op, path, content_hash, created_us, private, merkle_root)
                    SELECT $3, $1, 'DEL', $2, NULL, $4, $5, $7
                    WHERE EXISTS (SELECT 1 FROM users WHERE pubkey = $1)
                    ON CONFLICT DO NOTHING
                 )
                 UPDATE users SET
                    used_bytes = used_bytes - COALESCE((SELECT size + $6 FROM gone), 0),
                    file_seq = $3
                 WHERE pubkey = $1",
            )
            .bind(&user)
            .bind(path)
            .bind(seq)
            .bind(ts)
            .bind(is_private(path))
            .bind(ENTRY_OVERHEAD_BYTES)
            .bind(root.map(event_root))
            .execute(&mut **tx)
            .await?;
            if let (Some(trees), Some(root)) = (trees, root)
                && done.rows_affected() == 1
            {
                trees.adopt(&user, path, root, seq);
            }
            if done.rows_affected() == 0 {
                account_deletion::file_event_of_deleted(tx, &user, seq).await?;
            }
            crate::dav_tree::forget_props(tx, &user, path).await?;
            return Ok(());
        }
        Change::AccountDeleted { .. } => {
            if let Some(trees) = trees {
                trees.forget(&user);
            }
            account_deletion::apply(tx, &user, seq, ts).await?;
            // The user row is gone; the tombstone holds the account sequence.
            return Ok(());
        }
        Change::LockAcquired {
            path,
            token_hash,
            expires_us,
            shared,
            deep,
            lock_owner,
        } => {
            // The writer took it only where no lock conflicting with it was live at its
            // version; the user's expired rows go now (judged by the event's time, so a
            // replay removes the same rows).
            sqlx::query(
                "WITH swept AS (
                    DELETE FROM entry_locks WHERE owner = $1 AND expires_us <= $5
                        AND NOT (path = $2 AND token_hash = $3)
                 ),
                 upsert AS (
                    INSERT INTO entry_locks
                        (owner, path, token_hash, expires_us, seq, shared, deep, lock_owner)
                    SELECT $1, $2, $3, $4, $6, $7, $8, $9
                    WHERE EXISTS (SELECT 1 FROM users WHERE pubkey = $1)
                    ON CONFLICT (owner, path, token_hash) DO UPDATE SET
                        expires_us = excluded.expires_us, seq = excluded.seq,
                        shared = excluded.shared, deep = excluded.deep,
                        lock_owner = excluded.lock_owner
                 )
                 UPDATE users SET file_seq = $6 WHERE pubkey = $1",
            )
            .bind(&user)
            .bind(path)
            .bind(&token_hash.0[..])
            .bind(micros_to_i64(*expires_us))
            .bind(ts)
            .bind(seq)
            .bind(shared)
            .bind(deep)
            .bind(lock_owner)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        Change::LockRefreshed {
            path,
            token_hash,
            expires_us,
        } => {
            sqlx::query(
                "WITH refreshed AS (
                    UPDATE entry_locks SET expires_us = $4, seq = $5
                    WHERE owner = $1 AND path = $2 AND token_hash = $3
                 )
                 UPDATE users SET file_seq = $5 WHERE pubkey = $1",
            )
            .bind(&user)
            .bind(path)
            .bind(&token_hash.0[..])
            .bind(micros_to_i64(*expires_us))
            .bind(seq)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        Change::LockReleased { path, token_hash } => {
            sqlx::query(
                "WITH released AS (
                    DELETE FROM entry_locks WHERE owner = $1 AND path = $2 AND token_hash = $3
                 )
                 UPDATE users SET file_seq = $4 WHERE pubkey = $1",
            )
            .bind(&user)
            .bind(path)
            .bind(&token_hash.0[..])
            .bind(seq)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        Change::DirCreated { path } => {
            return crate::dav_tree::dir_created(tx, &user, seq, path).await;
        }
        Change::TreeDeleted { path } => {
            return crate::dav_tree::tree_deleted(tx, trees, &user, seq, ts, path).await;
        }
        Change::PropsPatched { path, props } => {
            return crate::dav_tree::props_patched(tx, &user, seq, path, props).await;
        }
        Change::TreeCopied {
            from,
            to,
            moved,
            shallow,
        } => {
            let copy = crate::dav_tree::Copy {
                from,
                to,
                moved: *moved,
                shallow: *shallow,
            };
            return crate::dav_tree::tree_copied(tx, trees, &user, seq, ts, copy).await;
        }
        Change::UserMoved {
            from, to, arrived, ..
        } => {
            let moved = crate::moves::Moved {
                from,
                to,
                arrived: *arrived,
            };
            return crate::moves::user_moved(tx, &user, seq, ts, moved).await;
        }
        Change::UserDisabled | Change::UserEnabled => {
            sqlx::query("UPDATE users SET disabled = $2 WHERE pubkey = $1")
                .bind(&user)
                .bind(matches!(event.change, Change::UserDisabled))
                .execute(&mut **tx)
                .await?;
        }
        Change::LimitsChanged { limits } => {
            let (quota, paths, rate_read, rate_write) = limit_columns(limits);
            sqlx::query(
                "UPDATE users SET storage_quota_mb = $2, allowed_write_paths = $3,
                                  rate_read = $4, rate_write = $5
                 WHERE pubkey = $1",
            )
            .bind(&user)
            .bind(quota)
            .bind(paths)
            .bind(rate_read)
            .bind(rate_write)
            .execute(&mut **tx)
            .await?;
        }
    }
    // Every account event moves the user's account sequence.
    sqlx::query("UPDATE users SET acct_seq = $2 WHERE pubkey = $1")
        .bind(&user)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The bearer a `GrantSessionCreated` opens, in its slot.
struct GrantSlot<'a> {
    grant_id: &'a str,
    session_id: Option<&'a str>,
    token_hash: &'a Digest,
    token_expires_at: u64,
}

/// Opens a bearer session in its slot of the grant, if the grant belongs to `user`: the
/// slot's previous bearer ends, and so do the grant's sessions expired at the event's
/// time (both judged by the event, so a replay removes exactly the same rows); the
/// grant's issuance window counts the new one. Before slots every session was in the
/// legacy slot, so for those events this ends every earlier session, as it did then.
async fn open_grant_session(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    ts: i64,
    slot: GrantSlot<'_>,
) -> Result<()> {
    let owned = sqlx::query(
        "UPDATE grants SET
            session_window_start_us = CASE
                WHEN session_window_start_us IS NULL OR $3 >= session_window_start_us + $4
                THEN $3 ELSE session_window_start_us END,
            session_window_count = CASE
                WHEN session_window_start_us IS NULL OR $3 >= session_window_start_us + $4
                THEN 1 ELSE session_window_count + 1 END
         WHERE grant_id = $1 AND owner = $2",
    )
    .bind(slot.grant_id)
    .bind(user)
    .bind(ts)
    .bind(domain::session_slots::WINDOW_US as i64)
    .execute(&mut **tx)
    .await?;
    // Another user's grant id: this user's event must not touch it.
    if owned.rows_affected() == 0 {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM grant_sessions WHERE grant_id = $1
         AND (expires_at <= $2 OR session_id IS NOT DISTINCT FROM $3)",
    )
    .bind(slot.grant_id)
    .bind(ts.div_euclid(1_000_000))
    .bind(slot.session_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO grant_sessions (token_hash, grant_id, expires_at, created_us, session_id)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&slot.token_hash.0[..])
    .bind(slot.grant_id)
    .bind(slot.token_expires_at as i64)
    .bind(ts)
    .bind(slot.session_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends the bearer sessions of `grant_id`, if the grant belongs to `user`. A grant id is
/// chosen by the client: one user's event must never touch another user's grant.
async fn end_grant_sessions(
    tx: &mut Transaction<'_, Postgres>,
    grant_id: &str,
    user: &str,
) -> Result<()> {
    sqlx::query(
        "DELETE FROM grant_sessions WHERE grant_id = $1
         AND EXISTS (SELECT 1 FROM grants WHERE grant_id = $1 AND owner = $2)",
    )
    .bind(grant_id)
    .bind(user)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A cookie session and the AuthToken id that opened it, which is used up with it.
async fn insert_cookie_session(
    tx: &mut Transaction<'_, Postgres>,
    secret_hash: &Digest,
    capabilities: &str,
    auth_token_id: &str,
    user: &str,
    ts: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cookie_sessions (secret_hash, owner, capabilities, created_us)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&secret_hash.0[..])
    .bind(user)
    .bind(capabilities)
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    use_nonce(tx, auth_token_id, user, ts).await
}

async fn use_nonce(
    tx: &mut Transaction<'_, Postgres>,
    nonce: &str,
    user: &str,
    ts: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO used_nonces (nonce, owner, used_us) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(nonce)
    .bind(user)
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn is_private(path: &str) -> bool {
    path.starts_with("/priv/")
}

type LimitColumns = (
    Option<i64>,
    Option<serde_json::Value>,
    Option<String>,
    Option<String>,
);

fn limit_columns(limits: &UserLimits) -> LimitColumns {
    let quota = limits.storage.map(|limit| match limit {
        StorageLimit::Unlimited => -1,
        StorageLimit::Megabytes(mb) => i64::try_from(mb).unwrap_or(i64::MAX),
    });
    let paths = limits
        .allowed_write_paths
        .as_ref()
        .map(|paths| serde_json::Value::from(paths.clone()));
    (
        quota,
        paths,
        limits.rate_read.clone(),
        limits.rate_write.clone(),
    )
}

/// How an event row records its tree's root: the empty tree as 32 zero bytes (as
/// `merkle::root_hex` renders it), so that NULL keeps meaning "not recorded".
fn event_root(root: Option<domain::merkle::Hash>) -> Vec<u8> {
    root.unwrap_or([0; 32]).to_vec()
}
