//! `homeserver move` from a homeserver that is not ours (docs/move.md, "From a
//! homeserver that is not ours"): the reference homeserver, or any Pubky homeserver,
//! which cannot be sealed. Copy, flip, copy the last delta:
//!
//! 1. `joined`: as for ours.
//! 2. `mirroring`: B mirrors A as a plain source (listings, reads, A's event stream;
//!    docs/mirror.md, "Sources") with a read grant of `/priv/` at A. A's key is
//!    `--from-key`, or the homeserver the user's PKARR record names.
//! 3. `copied`: B's first copy is done and B follows A closely.
//! 4. `published`: the user's record names B: clients that resolve the user from now
//!    on go to B (whose writes wait for step 5: 409 naming A until then).
//! 5. `promoted`: B's mirror has applied every event A has (the last delta: what A
//!    took from clients with the old record) and has been quiet for [`QUIET`]; B
//!    checks the first itself and then takes the user's writes.
//! 6. `revoked`: the read grant at A is revoked.
//!
//! No `room` step: A has no resource that says how much the account takes (B's
//! quota still refuses the copy's writes that do not fit, and the mirror says so).

use super::{Mover, Refused};
use anyhow::Context;
use domain::PublicKey;
use mirror::source::SourceKind;
use std::time::{Duration, Instant};

/// How long B's copy must stay at A's newest event, after the flip, before B is
/// promoted: writes from clients that still had the old record have landed at A by
/// then, and are copied.
const QUIET: Duration = Duration::from_secs(2);

impl Mover {
    /// Whether A is not one of ours (asked of A once, then recorded).
    pub(super) async fn leaving_a_plain_homeserver(&mut self) -> anyhow::Result<bool> {
        if let Some(kind) = &self.recorded.from_kind {
            return Ok(kind == SourceKind::Plain.as_str());
        }
        if self.args.from_plain {
            self.recorded.from_kind = Some(SourceKind::Plain.as_str().to_owned());
            return Ok(true);
        }
        let (http, from, user) = (&self.http, &self.args.from, &self.z32);
        let (kind, _) = self
            .until("asking A what kind of homeserver it is", || async {
                Ok(Some(mirror::source::discover(http, from, user).await?))
            })
            .await?;
        self.recorded.from_kind = Some(kind.as_str().to_owned());
        Ok(kind == SourceKind::Plain)
    }

    /// A's key: recorded, given, or the homeserver the user's record names now.
    async fn plain_key(&self, config: &crate::config::Config) -> anyhow::Result<PublicKey> {
        let given = self
            .recorded
            .from_key
            .clone()
            .or(self.args.from_key.clone());
        if let Some(text) = given {
            return PublicKey::try_from(text.as_str())
                .map_err(|e| anyhow::anyhow!("A's key `{text}`: {e}"));
        }
        let dht = config.dht_config().context(
            "A is not one of ours and does not tell its key: give --from-key, or a DHT to \
             read your record from (PUBKY_DHT_BOOTSTRAP or HOMESERVER_DHT_MAINNET=true)",
        )?;
        let publisher = pkarr_publish::Publisher::new(&dht)?;
        let user = self.user.public_key();
        let named = self
            .until("reading A's key from your PKARR record", || async {
                Ok(Some(publisher.homeserver_of_user(&user).await?))
            })
            .await?;
        named.ok_or_else(|| {
            Refused("your PKARR record names no homeserver: give --from-key".into()).into()
        })
    }

    /// The steps of the module docs.
    pub(super) async fn steps_from_plain(
        &mut self,
        config: &crate::config::Config,
    ) -> anyhow::Result<()> {
        let from_key = self.plain_key(config).await?;
        let to_key = self.server_key(&self.args.to.clone()).await?;
        self.recorded.from_key = Some(from_key.to_z32());
        self.recorded.to_key = Some(to_key.to_z32());
        if !self.done("mirroring") {
            let kind = Some(SourceKind::Plain.as_str());
            self.mirror(&from_key, &to_key, kind).await?;
            self.record("mirroring")?;
        }
        if !self.done("copied") {
            self.wait_copied().await?;
            self.record("copied")?;
        }
        if !self.done("published") {
            self.publish(config, &to_key).await?;
            self.record("published")?;
        }
        if !self.done("promoted") {
            self.wait_quiet().await?;
            self.promote(&from_key, &to_key).await?;
            self.record("promoted")?;
        }
        self.revoke().await
    }

    /// Until B's mirror is at A's newest event and its cursor has not moved for
    /// [`QUIET`].
    async fn wait_quiet(&self) -> anyhow::Result<()> {
        let still = std::sync::Mutex::new((u64::MAX, Instant::now()));
        self.until("B copies the last changes at A", || async {
            let status = self.mirror_status().await?;
            let cursor = status["cursor"].as_u64().unwrap_or(0);
            let caught_up = status["lag_events"].as_u64() == Some(0);
            let mut still = still.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if !caught_up || still.0 != cursor {
                *still = (cursor, Instant::now());
                return Ok(None);
            }
            Ok((still.1.elapsed() >= QUIET).then_some(()))
        })
        .await
    }
}
