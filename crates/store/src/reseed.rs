//! The projections re-stated as events, for `homeserver reseed` when the log they were
//! built from is lost.
//!
//! Each account, signup token, grant, session and entry becomes the event that would
//! have produced it, so that the new log, replayed into empty projections, yields the
//! same accounts, sessions and files (and so the same Merkle roots). What the
//! projections hold only as history is not re-stated: earlier versions of files,
//! deleted entries, and the single-use nonces (their windows are minutes long).
//!
//! Everything is read in one read-only, repeatable-read transaction: a consistent
//! snapshot even if something still writes (nothing should: a server whose log is lost
//! refuses writes).

use crate::{Result, Store, StoreError};
use domain::PublicKey;
use domain::event::{Change, Digest, StorageLimit, UserLimits};
use sqlx::{Postgres, Row, Transaction};

/// One re-stated change: whose, when (the time the projections recorded), and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restated {
    pub user: PublicKey,
    pub ts: u64,
    pub change: Change,
}

/// How much a snapshot holds, for progress bars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotSize {
    pub users: u64,
    pub entries: u64,
    pub signup_tokens: u64,
}

/// A consistent read of the projections.
pub struct Snapshot {
    tx: Transaction<'static, Postgres>,
}

impl Store {
    pub async fn reseed_snapshot(&self) -> Result<Snapshot> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(Snapshot { tx })
    }
}

fn key(text: &str) -> Result<PublicKey> {
    PublicKey::try_from(text).map_err(|e| StoreError::Corrupt(format!("key {text}: {e}")))
}

fn digest(bytes: &[u8]) -> Result<Digest> {
    <[u8; 32]>::try_from(bytes)
        .map(Digest)
        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))
}

fn micros(us: i64) -> u64 {
    us.max(0) as u64
}

/// A value nobody holds, where an event needs a single-use id or a token hash that
/// the projections did not keep.
fn unguessable() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Snapshot {
    pub async fn size(&mut self) -> Result<SnapshotSize> {
        let (users, entries, signup_tokens): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM entries),
                    (SELECT count(*) FROM signup_tokens)",
        )
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(SnapshotSize {
            users: users as u64,
            entries: entries as u64,
            signup_tokens: signup_tokens as u64,
        })
    }

    /// The signup tokens, as the operator minted them (`homeserver` is the key operator
    /// events belong to). Whether one was used is re-stated by the signup that used it.
    pub async fn signup_tokens(&mut self, homeserver: &PublicKey) -> Result<Vec<Restated>> {
        let rows = sqlx::query(
            "SELECT token_hash, created_us, limits FROM signup_tokens ORDER BY created_us, token_hash",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                let limits: serde_json::Value = row.try_get("limits")?;
                Ok(Restated {
                    user: homeserver.clone(),
                    ts: micros(row.try_get("created_us")?),
                    change: Change::SignupTokenMinted {
                        token_hash: digest(row.try_get("token_hash")?)?,
                        limits: serde_json::from_value(limits)
                            .map_err(|e| StoreError::Corrupt(format!("token limits: {e}")))?,
                    },
                })
            })
            .collect()
    }

    /// Every user's key, in key order.
    pub async fn users(&mut self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT pubkey FROM users ORDER BY pubkey")
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }

    /// The account of `user`: its signup (with its limits and the token it used), its
    /// disabled state, its grants with their live sessions (a revoked grant as a grant
    /// and its revocation), and its cookie sessions.
    pub async fn account(&mut self, user: &str) -> Result<Vec<Restated>> {
        let owner = key(user)?;
        let row = sqlx::query(
            "SELECT created_us, disabled, storage_quota_mb, allowed_write_paths, rate_read,
                    rate_write,
                    (SELECT token_hash FROM signup_tokens WHERE used_by = u.pubkey LIMIT 1) AS token
             FROM users u WHERE pubkey = $1",
        )
        .bind(user)
        .fetch_one(&mut *self.tx)
        .await?;
        let created = micros(row.try_get("created_us")?);
        let quota: Option<i64> = row.try_get("storage_quota_mb")?;
        let paths: Option<serde_json::Value> = row.try_get("allowed_write_paths")?;
        let limits = UserLimits {
            storage: quota.map(|mb| {
                if mb < 0 {
                    StorageLimit::Unlimited
                } else {
                    StorageLimit::Megabytes(mb as u64)
                }
            }),
            allowed_write_paths: paths
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("write paths of {user}: {e}")))?,
            rate_read: row.try_get("rate_read")?,
            rate_write: row.try_get("rate_write")?,
        };
        let token: Option<Vec<u8>> = row.try_get("token")?;
        let restated = |ts: u64, change: Change| Restated {
            user: owner.clone(),
            ts,
            change,
        };
        let mut out = vec![restated(
            created,
            Change::UserSignedUp {
                signup_token: token.as_deref().map(digest).transpose()?,
                limits,
                cookie_session: None,
                pop_nonce: None,
            },
        )];
        if row.try_get::<bool, _>("disabled")? {
            out.push(restated(created, Change::UserDisabled));
        }
        out.extend(self.grants(&owner, user).await?);
        let cookies = sqlx::query(
            "SELECT secret_hash, capabilities, created_us FROM cookie_sessions
             WHERE owner = $1 ORDER BY created_us, secret_hash",
        )
        .bind(user)
        .fetch_all(&mut *self.tx)
        .await?;
        for cookie in &cookies {
            out.push(restated(
                micros(cookie.try_get("created_us")?),
                Change::CookieSessionCreated {
                    secret_hash: digest(cookie.try_get("secret_hash")?)?,
                    capabilities: cookie.try_get("capabilities")?,
                    auth_token_id: unguessable(),
                },
            ));
        }
        Ok(out)
    }

    async fn grants(&mut self, owner: &PublicKey, user: &str) -> Result<Vec<Restated>> {
        let rows = sqlx::query(
            "SELECT g.grant_id, g.client_id, g.client_key, g.capabilities, g.issued_at,
                    g.expires_at, g.revoked_us, g.created_us,
                    s.token_hash, s.expires_at AS token_expires_at, s.created_us AS session_us,
                    s.session_id
             FROM grants g LEFT JOIN grant_sessions s USING (grant_id)
             WHERE g.owner = $1 ORDER BY g.created_us, g.grant_id, s.created_us",
        )
        .bind(user)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out = Vec::new();
        let mut revoked: Vec<(String, u64)> = Vec::new();
        for row in &rows {
            let grant_id: String = row.try_get("grant_id")?;
            let created = micros(row.try_get("created_us")?);
            let token: Option<Vec<u8>> = row.try_get("token_hash")?;
            // A grant without a live session is still a grant (its id stays taken, a
            // revoked one stays revoked): re-stated with a session that is expired from
            // the start and whose token nobody holds.
            let (token_hash, token_expires_at, ts) = match token {
                Some(hash) => (
                    digest(&hash)?,
                    row.try_get::<i64, _>("token_expires_at")?.max(0) as u64,
                    micros(row.try_get("session_us")?),
                ),
                None => (
                    Digest(*blake3::hash(unguessable().as_bytes()).as_bytes()),
                    created / 1_000_000,
                    created,
                ),
            };
            let client_key: String = row.try_get("client_key")?;
            let capabilities: String = row.try_get("capabilities")?;
            out.push(Restated {
                user: owner.clone(),
                ts,
                change: Change::GrantSessionCreated {
                    grant_id: grant_id.clone(),
                    client_id: row.try_get("client_id")?,
                    client_key: key(&client_key)?,
                    capabilities: capabilities
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect(),
                    grant_issued_at: row.try_get::<i64, _>("issued_at")?.max(0) as u64,
                    grant_expires_at: row.try_get::<i64, _>("expires_at")?.max(0) as u64,
                    token_hash,
                    token_expires_at,
                    pop_nonce: unguessable(),
                    session_id: row.try_get("session_id")?,
                },
            });
            if let Some(at) = row.try_get::<Option<i64>, _>("revoked_us")?
                && !revoked.iter().any(|(id, _)| *id == grant_id)
            {
                revoked.push((grant_id, micros(at)));
            }
        }
        out.extend(revoked.into_iter().map(|(grant_id, ts)| Restated {
            user: owner.clone(),
            ts,
            change: Change::GrantRevoked {
                grant_id,
                pop_nonce: None,
            },
        }));
        Ok(out)
    }

    /// Up to `limit` of `user`'s entries after path `after`, in path order.
    pub async fn files(
        &mut self,
        user: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Restated>> {
        let owner = key(user)?;
        let rows = sqlx::query(
            "SELECT path, content_hash, size, content_type, modified_us FROM entries
             WHERE owner = $1 AND path > $2 ORDER BY path LIMIT $3",
        )
        .bind(user)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Restated {
                    user: owner.clone(),
                    ts: micros(row.try_get("modified_us")?),
                    change: Change::FilePut {
                        path: row.try_get("path")?,
                        content_hash: digest(row.try_get("content_hash")?)?,
                        size: row.try_get::<i64, _>("size")?.max(0) as u64,
                        content_type: row.try_get("content_type")?,
                    },
                })
            })
            .collect()
    }
}

impl Snapshot {
    /// `user`'s WebDAV state beyond its files: each `MKCOL` folder (`dir_created`) and
    /// each path's dead properties (one `props_patched` per path), in path order.
    /// Restated after the files, so the properties find their paths.
    pub async fn dav(&mut self, user: &str) -> Result<Vec<Restated>> {
        let owner = key(user)?;
        let dirs: Vec<String> =
            sqlx::query_scalar("SELECT path FROM dav_dirs WHERE owner = $1 ORDER BY path")
                .bind(user)
                .fetch_all(&mut *self.tx)
                .await?;
        // The tables keep no time for these; the account's creation stands in for it.
        let created: i64 =
            sqlx::query_scalar("SELECT COALESCE(created_us, 0) FROM users WHERE pubkey = $1")
                .bind(user)
                .fetch_one(&mut *self.tx)
                .await?;
        let props: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT path, ns, name, xml FROM dav_props WHERE owner = $1 ORDER BY path, ns, name",
        )
        .bind(user)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out: Vec<Restated> = dirs
            .into_iter()
            .map(|path| Restated {
                user: owner.clone(),
                ts: micros(created),
                change: Change::DirCreated { path },
            })
            .collect();
        let mut grouped: Vec<(String, Vec<domain::event::PropChange>)> = Vec::new();
        for (path, ns, name, xml) in props {
            let change = domain::event::PropChange {
                ns,
                name,
                xml: Some(xml),
            };
            match grouped.last_mut() {
                Some((last, changes)) if *last == path => changes.push(change),
                _ => grouped.push((path, vec![change])),
            }
        }
        out.extend(grouped.into_iter().map(|(path, props)| Restated {
            user: owner.clone(),
            ts: micros(created),
            change: Change::PropsPatched { path, props },
        }));
        Ok(out)
    }
}

impl Store {
    /// Prepares the projections to follow a re-seeded log whose first event comes right
    /// after their checkpoint: every user's sequences start over (the re-stated events
    /// set them again as they are projected), the new log's identity is recorded, and
    /// so is the re-seed itself (for the feed's `Pubky-Log-Reseeded-Through`).
    pub async fn adopt_reseeded_log(
        &self,
        identity: &domain::log_identity::LogIdentity,
        through: domain::EventSeq,
        previous: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET file_seq = 0, acct_seq = 0")
            .execute(&mut *tx)
            .await?;
        // A deleted account is not re-stated: in the new log its subjects are empty.
        sqlx::query("DELETE FROM deleted_users")
            .execute(&mut *tx)
            .await?;
        crate::log_identity::record_log_in(&mut tx, identity).await?;
        sqlx::query(
            "UPDATE log_identity SET reseeded_through = $1, reseeded_from = $2 WHERE only_row",
        )
        .bind(crate::seq_param(through))
        .bind(previous)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
