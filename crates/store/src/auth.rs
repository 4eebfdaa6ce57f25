//! Reads of the authentication projections: grants, bearer and cookie sessions,
//! single-use nonces and signup tokens. Only hashes of secrets are stored.

use crate::{Result, Store};
use domain::PublicKey;
use domain::session_slots::{IssuanceWindow, SlotUsage};
use sqlx::Row;

/// A grant (its bearer sessions are in `grant_sessions`, one per slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub grant_id: String,
    pub owner: String,
    pub client_id: String,
    pub client_key: String,
    pub capabilities: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
    pub created_us: i64,
}

/// A bearer session found by its token hash, with its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerSession {
    pub grant: GrantRow,
    pub token_expires_at: i64,
    /// Its slot (`grant-session-slots`); `None` = the legacy slot.
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSession {
    pub owner: String,
    pub capabilities: String,
    pub created_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupTokenRow {
    pub created_us: i64,
    pub used_by: Option<String>,
    pub used_us: Option<i64>,
    pub limits: domain::event::UserLimits,
}

const GRANT_COLUMNS: &str = "g.grant_id, g.owner, g.client_id, g.client_key, g.capabilities,
    g.issued_at, g.expires_at, g.revoked_us IS NOT NULL AS revoked, g.created_us";

fn grant_row(row: &sqlx::postgres::PgRow) -> GrantRow {
    GrantRow {
        grant_id: row.get("grant_id"),
        owner: row.get("owner"),
        client_id: row.get("client_id"),
        client_key: row.get("client_key"),
        capabilities: row.get("capabilities"),
        issued_at: row.get("issued_at"),
        expires_at: row.get("expires_at"),
        revoked: row.get("revoked"),
        created_us: row.get("created_us"),
    }
}

impl Store {
    pub async fn bearer_session(&self, token_hash: &[u8; 32]) -> Result<Option<BearerSession>> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS}, s.expires_at AS token_expires_at, s.session_id
             FROM grant_sessions s JOIN grants g USING (grant_id) WHERE s.token_hash = $1"
        ))
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| BearerSession {
            grant: grant_row(&row),
            token_expires_at: row.get("token_expires_at"),
            session_id: row.get("session_id"),
        }))
    }

    /// What a new session in slot `session_id` of `grant_id` would join at `now` (unix
    /// seconds): the grant's live sessions and issuance window (see
    /// `domain::session_slots`). A grant not projected yet has none of either.
    pub async fn grant_slot_usage(
        &self,
        grant_id: &str,
        session_id: Option<&str>,
        now: i64,
    ) -> Result<SlotUsage> {
        let row = sqlx::query(
            "SELECT
                (SELECT count(*) FROM grant_sessions
                 WHERE grant_id = $1 AND expires_at > $3) AS live,
                EXISTS (SELECT 1 FROM grant_sessions WHERE grant_id = $1 AND expires_at > $3
                        AND session_id IS NOT DISTINCT FROM $2) AS slot_live,
                (SELECT session_window_start_us FROM grants WHERE grant_id = $1) AS window_start_us,
                (SELECT session_window_count FROM grants WHERE grant_id = $1) AS window_count",
        )
        .bind(grant_id)
        .bind(session_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let start: Option<i64> = row.get("window_start_us");
        let count: Option<i32> = row.get("window_count");
        Ok(SlotUsage {
            live_sessions: row.get::<i64, _>("live").max(0) as u64,
            slot_live: row.get("slot_live"),
            window: start.zip(count).map(|(start, count)| IssuanceWindow {
                start_us: start.max(0) as u64,
                count: count.max(0) as u64,
            }),
        })
    }

    pub async fn grant(&self, grant_id: &str) -> Result<Option<GrantRow>> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE grant_id = $1"
        ))
        .bind(grant_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(grant_row))
    }

    /// The user's grants that are neither revoked nor expired at `now` (unix seconds).
    pub async fn active_grants(&self, owner: &PublicKey, now: i64) -> Result<Vec<GrantRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants g
             WHERE owner = $1 AND revoked_us IS NULL AND expires_at > $2 ORDER BY created_us, grant_id"
        ))
        .bind(owner.to_z32())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(grant_row).collect())
    }

    pub async fn cookie_session(&self, secret_hash: &[u8; 32]) -> Result<Option<CookieSession>> {
        let row = sqlx::query(
            "SELECT owner, capabilities, created_us FROM cookie_sessions WHERE secret_hash = $1",
        )
        .bind(&secret_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| CookieSession {
            owner: row.get("owner"),
            capabilities: row.get("capabilities"),
            created_us: row.get("created_us"),
        }))
    }

    /// True when a PoP nonce or AuthToken id was already used.
    pub async fn nonce_used(&self, nonce: &str) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM used_nonces WHERE nonce = $1)")
                .bind(nonce)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn signup_token(&self, token_hash: &[u8; 32]) -> Result<Option<SignupTokenRow>> {
        let row = sqlx::query(
            "SELECT created_us, used_by, used_us, limits FROM signup_tokens WHERE token_hash = $1",
        )
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| SignupTokenRow {
            created_us: row.get("created_us"),
            used_by: row.get("used_by"),
            used_us: row.get("used_us"),
            limits: serde_json::from_value(row.get("limits")).unwrap_or_default(),
        }))
    }
}

/// A transaction holding the advisory lock of one signup token (see
/// [`Store::lock_signup_token`]). Dropping it without [`release`](Self::release) rolls back,
/// which releases the lock too.
pub struct SignupTokenLock(sqlx::Transaction<'static, sqlx::Postgres>);

impl SignupTokenLock {
    pub async fn release(self) -> Result<()> {
        self.0.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Serializes every consumer of one signup token, across processes: the lock is a
    /// transaction-scoped `pg_advisory_xact_lock` on the token hash, held until the
    /// returned guard is released. Signups of *different* users race on different log
    /// subjects, so only this lock keeps two of them from consuming the same token.
    pub async fn lock_signup_token(&self, token_hash: &[u8; 32]) -> Result<SignupTokenLock> {
        let mut tx = self.pool.begin().await?;
        let mut key = [0u8; 8];
        key.copy_from_slice(&token_hash[..8]);
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(i64::from_be_bytes(key))
            .execute(&mut *tx)
            .await?;
        Ok(SignupTokenLock(tx))
    }
}
