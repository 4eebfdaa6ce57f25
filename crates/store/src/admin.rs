//! Reads for the operator (admin API): server-wide counts and the signup-token list.
//!
//! Separate from the per-request queries of the public services because these scan
//! whole tables (counts, sums); they serve an operator's occasional request, never a
//! client's hot path.

use crate::{Result, Store};
use sqlx::Row;

/// Server-wide figures for `GET /info` of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    pub num_users: i64,
    pub num_disabled_users: i64,
    /// Sum of every user's accounted bytes (content plus per-entry overhead).
    pub used_bytes: i64,
    pub num_signup_tokens: i64,
    pub num_unused_signup_tokens: i64,
}

/// Which signup tokens a listing wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    All,
    Used,
    Unused,
}

/// One signup token as the operator sees it: its hash (the text is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupTokenListRow {
    pub token_hash: [u8; 32],
    pub created_us: i64,
    pub used_by: Option<String>,
    pub used_us: Option<i64>,
}

impl Store {
    pub async fn server_stats(&self) -> Result<ServerStats> {
        let row = sqlx::query(
            "SELECT
                (SELECT count(*) FROM users) AS num_users,
                (SELECT count(*) FROM users WHERE disabled) AS num_disabled_users,
                (SELECT coalesce(sum(used_bytes), 0)::bigint FROM users) AS used_bytes,
                (SELECT count(*) FROM signup_tokens) AS num_signup_tokens,
                (SELECT count(*) FROM signup_tokens WHERE used_by IS NULL) AS num_unused",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ServerStats {
            num_users: row.get("num_users"),
            num_disabled_users: row.get("num_disabled_users"),
            used_bytes: row.get("used_bytes"),
            num_signup_tokens: row.get("num_signup_tokens"),
            num_unused_signup_tokens: row.get("num_unused"),
        })
    }

    /// Up to `limit` signup tokens in `state`, oldest first, strictly after the token
    /// whose hash is `after` (keyset paging on `(created_us, token_hash)`; an unknown
    /// `after` yields an empty page rather than restarting from the beginning).
    pub async fn signup_tokens_page(
        &self,
        state: TokenState,
        after: Option<[u8; 32]>,
        limit: u32,
    ) -> Result<Vec<SignupTokenListRow>> {
        let state_filter = match state {
            TokenState::All => "",
            TokenState::Used => "AND t.used_by IS NOT NULL",
            TokenState::Unused => "AND t.used_by IS NULL",
        };
        let sql = format!(
            "SELECT t.token_hash, t.created_us, t.used_by, t.used_us FROM signup_tokens t
             WHERE ($1::bytea IS NULL OR (t.created_us, t.token_hash) >
                   (SELECT c.created_us, c.token_hash FROM signup_tokens c WHERE c.token_hash = $1))
             {state_filter}
             ORDER BY t.created_us, t.token_hash
             LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after.as_ref().map(|h| &h[..]))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let hash: Vec<u8> = row.get("token_hash");
                let mut token_hash = [0u8; 32];
                if hash.len() == 32 {
                    token_hash.copy_from_slice(&hash);
                }
                SignupTokenListRow {
                    token_hash,
                    created_us: row.get("created_us"),
                    used_by: row.get("used_by"),
                    used_us: row.get("used_us"),
                }
            })
            .collect())
    }
}
