//! `homeserver move`: for users, moving your account from one homeserver of ours (A)
//! to another (B) with your secret key (docs/move.md).
//!
//! The steps, each recorded in a state file as it completes, so that running the
//! command again after any crash (of the command, of A or of B) resumes at the step
//! that did not finish; every step is also safe to repeat on the servers' side:
//!
//! 1. `joined`: sign up at B (with `--signup-token` when B needs one); an account
//!    that exists already is fine.
//! 2. `room`: the account's bytes at A fit in the user's quota at B (both asked with a
//!    session of the user, `GET /move/<user>`); otherwise the command stops here,
//!    before anything moves.
//! 3. `mirroring`: a read grant of `/priv/` at A, handed to B with the user's signed
//!    request for a mirror (`POST /mirror/<user>`): B copies both trees and follows A.
//! 4. `copied`: B's first copy is done and it follows A closely (few events behind).
//! 5. `sealed`: A seals the user with a `pubky-move/1` statement signed by the user
//!    (`POST /move/<user>`): writes to A are answered 410 naming B from now on.
//! 6. `promoted`: B promotes its mirror (`POST /move/<user>`, the same statement) once
//!    it has caught up with A's final roots; the command then compares both servers'
//!    signed roots itself.
//! 7. `published`: the user's PKARR record names B (on the DHT this command is
//!    configured with: `PUBKY_DHT_BOOTSTRAP`, or `HOMESERVER_DHT_MAINNET=true`).
//! 8. `revoked`: the read grant at A is revoked.
//!
//! When A is not one of ours (the reference homeserver: no seal there), the steps are
//! those of [`plain`]: copy, flip the record, copy the last delta.

use anyhow::{Context, bail};
use domain::PublicKey;
use domain::moving::MoveStatement;
use indicatif::{ProgressBar, ProgressStyle};
use pubky_common::capabilities::{Capabilities, Capability};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod plain;

/// The steps in order (see the module docs).
pub const STEPS: [&str; 8] = [
    "joined",
    "room",
    "mirroring",
    "copied",
    "sealed",
    "promoted",
    "published",
    "revoked",
];

/// Events B may still be behind A when A is sealed: the rest is caught up after.
const CLOSE_ENOUGH: u64 = 100;
/// Pause between two looks at a server while waiting.
const POLL: Duration = Duration::from_millis(500);

/// What the command is asked to do.
#[derive(Debug, Clone)]
pub struct MoveArgs {
    /// A's base URL.
    pub from: String,
    /// B's base URL.
    pub to: String,
    pub secret_key: PathBuf,
    pub signup_token: Option<String>,
    /// Where the steps are recorded; default: the secret key file's path + `.move.json`.
    pub state_file: Option<PathBuf>,
    /// How long to wait for one step before giving up (run again to resume).
    pub step_timeout: Duration,
    /// A is gone: B's mirror takes over as it is, without a seal (see
    /// `Mover::steps_from_gone`).
    pub from_gone: bool,
    /// A's key when A is not one of ours; default: the homeserver the user's PKARR
    /// record names.
    pub from_key: Option<String>,
    /// Move from A as from a plain Pubky homeserver even when it is one of ours
    /// (copy, flip, copy the last delta; what the tests exercise that path with).
    pub from_plain: bool,
}

/// The state file: the move's parties and the steps done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Recorded {
    user: String,
    from: String,
    to: String,
    from_key: Option<String>,
    to_key: Option<String>,
    read_token: Option<String>,
    /// `plain` when A is not one of ours (its steps are [`plain`]'s).
    #[serde(default)]
    from_kind: Option<String>,
    done: Vec<String>,
}

struct Mover {
    args: MoveArgs,
    http: reqwest::Client,
    user: domain::Keypair,
    z32: String,
    state_path: PathBuf,
    recorded: Recorded,
    bar: ProgressBar,
}

/// Runs (or resumes) the move; see the module docs.
pub async fn run(config: &crate::config::Config, args: MoveArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.secret_key)
        .with_context(|| format!("cannot read {}", args.secret_key.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret)
        .context("the secret key file holds 64 hex digits")?;
    let user = domain::Keypair::from_secret_key(&secret);
    let z32 = user.public_key().to_z32();
    let state_path = args
        .state_file
        .clone()
        .unwrap_or_else(|| default_state_file(&args.secret_key));
    let from = args.from.trim_end_matches('/').to_owned();
    let to = args.to.trim_end_matches('/').to_owned();
    let recorded = match std::fs::read(&state_path) {
        Ok(bytes) => {
            let recorded: Recorded = serde_json::from_slice(&bytes)
                .with_context(|| format!("the state file {}", state_path.display()))?;
            if recorded.user != z32 || recorded.from != from || recorded.to != to {
                bail!(
                    "{} records another move ({} from {} to {}): remove it or give --state-file",
                    state_path.display(),
                    recorded.user,
                    recorded.from,
                    recorded.to
                );
            }
            recorded
        }
        Err(_) => Recorded {
            user: z32.clone(),
            from: from.clone(),
            to: to.clone(),
            ..Recorded::default()
        },
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut mover = Mover {
        args: MoveArgs { from, to, ..args },
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        user,
        z32,
        state_path,
        recorded,
        bar,
    };
    let result = mover.steps(config).await;
    mover.bar.finish_and_clear();
    result?;
    let checked = match mover.recorded.from_kind.as_deref() {
        Some("plain") => "B holds every change A had",
        _ => "B's roots equal A's final roots",
    };
    println!(
        "moved {} from {} to {}: {checked}, the PKARR record names B",
        mover.z32, mover.args.from, mover.args.to
    );
    Ok(())
}

impl Mover {
    fn done(&self, step: &str) -> bool {
        self.recorded.done.iter().any(|d| d == step)
    }

    /// Records `step` as done (written to a temporary file, then renamed: a crash
    /// leaves the old or the new record, never half of one).
    fn record(&mut self, step: &str) -> anyhow::Result<()> {
        if !self.done(step) {
            self.recorded.done.push(step.to_owned());
        }
        let tmp = self.state_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.recorded)?)?;
        std::fs::rename(&tmp, &self.state_path)?;
        // Not `println` of the bar, which prints nothing when stderr is no terminal.
        self.bar.suspend(|| eprintln!("done: {step}"));
        Ok(())
    }

    async fn steps(&mut self, config: &crate::config::Config) -> anyhow::Result<()> {
        if self.args.from_gone {
            return self.steps_from_gone(config).await;
        }
        if !self.done("joined") {
            self.join().await?;
            self.record("joined")?;
        }
        if self.leaving_a_plain_homeserver().await? {
            return self.steps_from_plain(config).await;
        }
        let from_key = self.server_key(&self.args.from.clone()).await?;
        let to_key = self.server_key(&self.args.to.clone()).await?;
        self.recorded.from_key = Some(from_key.to_z32());
        self.recorded.to_key = Some(to_key.to_z32());
        if !self.done("room") {
            self.check_room(&from_key).await?;
            self.record("room")?;
        }
        if !self.done("mirroring") {
            self.mirror(&from_key, &to_key, None).await?;
            self.record("mirroring")?;
        }
        if !self.done("copied") {
            self.wait_copied().await?;
            self.record("copied")?;
        }
        if !self.done("sealed") {
            self.seal(&from_key, &to_key).await?;
            self.record("sealed")?;
        }
        if !self.done("promoted") {
            self.promote(&from_key, &to_key).await?;
            self.record("promoted")?;
        }
        if !self.done("published") {
            self.publish(config, &to_key).await?;
            self.record("published")?;
        }
        self.revoke().await
    }

    /// Step 8: the read grant at A revoked.
    async fn revoke(&mut self) -> anyhow::Result<()> {
        if self.done("revoked") {
            return Ok(());
        }
        if let Some(token) = &self.recorded.read_token {
            // Best effort: the grant expires within the hour anyway.
            let _ = self
                .http
                .delete(format!("{}/auth/grant/session", self.args.from))
                .bearer_auth(token)
                .send()
                .await;
        }
        self.recorded.read_token = None;
        self.record("revoked")
    }

    /// With `--from-gone`: A does not answer any more, so B's mirror of the account is
    /// promoted as it is (B checks it against the last root of A it verified, and that
    /// A does not answer), then the record names B. Writes A took after B's last copy
    /// are lost with A: this is for a homeserver that is gone, not one that is slow.
    async fn steps_from_gone(&mut self, config: &crate::config::Config) -> anyhow::Result<()> {
        let to_key = self.server_key(&self.args.to.clone()).await?;
        let status = self.http.get(self.mirror_url()).send().await?;
        let from_key = match self.recorded.from_key.clone() {
            Some(key) => key,
            None if status.status().is_success() => {
                let status: serde_json::Value = status.json().await?;
                status["primary"].as_str().unwrap_or_default().to_owned()
            }
            None => {
                return Err(Refused(format!(
                    "B does not mirror this account ({}): with A gone, only a mirror B holds can take over",
                    status.status()
                ))
                .into());
            }
        };
        let from_key = PublicKey::try_from(from_key.as_str())
            .map_err(|e| anyhow::anyhow!("A's key `{from_key}`: {e}"))?;
        self.recorded.from_key = Some(from_key.to_z32());
        self.recorded.to_key = Some(to_key.to_z32());
        if !self.done("promoted") {
            self.promote(&from_key, &to_key).await?;
            self.record("promoted")?;
        }
        if !self.done("published") {
            self.publish(config, &to_key).await?;
            self.record("published")?;
        }
        Ok(())
    }

    /// Tries `attempt` until it gives `Some`, showing `what` and the last error, for at
    /// most the step timeout. An error is shown and tried again (a server down, a
    /// connection cut), except a [`Refused`], which ends the command.
    async fn until<T, F, Fut>(&self, what: &str, mut attempt: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let started = Instant::now();
        self.bar.set_message(what.to_owned());
        loop {
            match attempt().await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(e),
                Err(e) => self.bar.set_message(format!("{what} ({e:#})")),
            }
            if started.elapsed() > self.args.step_timeout {
                bail!("gave up waiting: {what} (run the command again to resume from here)");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Step 1: the account at B.
    async fn join(&self) -> anyhow::Result<()> {
        let secret = self.user.secret_key();
        let keypair = pubky_common::crypto::Keypair::from_secret(&secret);
        let token = pubky_common::auth::AuthToken::sign(
            &keypair,
            Capabilities::from(vec![Capability::root()]),
        );
        let mut url = format!("{}/signup", self.args.to);
        if let Some(signup_token) = &self.args.signup_token {
            url.push_str(&format!("?signup_token={signup_token}"));
        }
        let body = token.serialize();
        self.until("signing up at B", || async {
            let response = self.http.post(&url).body(body.clone()).send().await?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() || (status == 409 && text.contains("already exists")) {
                return Ok(Some(()));
            }
            if status.is_client_error() {
                return Err(Refused(format!("B refused the signup: {status} {text}")).into());
            }
            Ok(None)
        })
        .await
    }

    /// A homeserver's key: the signer of the user's root there.
    async fn server_key(&self, base: &str) -> anyhow::Result<PublicKey> {
        let url = format!("{base}/merkle/{}/root", self.z32);
        self.until(&format!("asking {base} for its key"), || async {
            let root: serde_json::Value = self
                .http
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let signer = root["signer"].as_str().unwrap_or_default();
            Ok(Some(PublicKey::try_from(signer).map_err(|e| {
                anyhow::anyhow!("the homeserver's key `{signer}`: {e}")
            })?))
        })
        .await
    }

    /// The read grant of `/priv/` at A that B mirrors with (made once, kept in the
    /// state file until the last step revokes it).
    async fn read_token(&mut self, from_key: &PublicKey) -> anyhow::Result<String> {
        if let Some(token) = &self.recorded.read_token {
            return Ok(token.clone());
        }
        let secret = self.user.secret_key();
        let keypair = pubky_common::crypto::Keypair::from_secret(&secret);
        let homeserver = pubky_common::crypto::PublicKey::try_from_z32(&from_key.to_z32())
            .map_err(|e| anyhow::anyhow!("A's key: {e}"))?;
        let token =
            crate::pull::read_grant(&self.http, &self.args.from, &homeserver, &keypair).await?;
        self.recorded.read_token = Some(token.clone());
        Ok(token)
    }

    /// The user's `GET /move/<user>` at `base` with `token`: `(used_bytes,
    /// quota_bytes)`.
    async fn usage(&self, base: &str, token: &str) -> anyhow::Result<(u64, Option<u64>)> {
        let body: serde_json::Value = self
            .http
            .get(format!("{base}/move/{}", self.z32))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let used = body["used_bytes"]
            .as_u64()
            .with_context(|| format!("{base} did not say how much the account uses"))?;
        Ok((used, body["quota_bytes"].as_u64()))
    }

    /// Step 2: the account fits in its quota at B (see the module docs).
    async fn check_room(&mut self, from_key: &PublicKey) -> anyhow::Result<()> {
        let token_a = self.read_token(from_key).await?;
        let (at_a, _) = self.usage(&self.args.from, &token_a).await?;
        let secret = self.user.secret_key();
        let keypair = pubky_common::crypto::Keypair::from_secret(&secret);
        let token_b = crate::pull::sign_in(&self.http, &self.args.to, &keypair).await?;
        let at_b = self.usage(&self.args.to, &token_b).await;
        let _ = self
            .http
            .delete(format!("{}/auth/grant/session", self.args.to))
            .bearer_auth(&token_b)
            .send()
            .await;
        if let (used_b, Some(quota)) = at_b?
            && at_a.saturating_add(used_b) > quota
        {
            return Err(Refused(format!(
                "the account takes {at_a} bytes at A, but its quota at B is {quota} bytes \
                 ({used_b} used there): nothing was moved (ask B's operator for more room)"
            ))
            .into());
        }
        Ok(())
    }

    /// Step 3: B mirrors both trees with a read grant of A (`kind`: the mirror's
    /// `source_kind`, when A is not for B to find out).
    async fn mirror(
        &mut self,
        from_key: &PublicKey,
        to_key: &PublicKey,
        kind: Option<&str>,
    ) -> anyhow::Result<()> {
        let token = self.read_token(from_key).await?;
        let url = self.mirror_url();
        self.until("asking B to mirror the account", || async {
            let statement = mirror::routes::request_statement(
                "add",
                &self.z32,
                &to_key.to_z32(),
                &self.args.from,
                api::now_micros(),
            );
            let body = serde_json::json!({
                "statement": statement,
                "signature": self.sign(&statement),
                "source_key": from_key.to_z32(),
                "read_token": token,
                "source_kind": kind,
            });
            let response = self.http.post(&url).json(&body).send().await?;
            let status = response.status();
            if status.is_success() {
                return Ok(Some(()));
            }
            let text = response.text().await.unwrap_or_default();
            if status.is_client_error() {
                return Err(Refused(format!("B refused the mirror: {status} {text}")).into());
            }
            Ok(None)
        })
        .await
    }

    /// B's status resource of its mirror of the account.
    fn mirror_url(&self) -> String {
        format!("{}/mirror/{}", self.args.to, self.z32)
    }

    async fn mirror_status(&self) -> anyhow::Result<serde_json::Value> {
        Ok(self
            .http
            .get(self.mirror_url())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    fn sign(&self, text: &str) -> String {
        hex::encode(self.user.sign(text.as_bytes()).to_bytes())
    }

    /// Step 4: B's first copy done, and B close behind A.
    async fn wait_copied(&self) -> anyhow::Result<()> {
        self.until("B copies the account", || async {
            let status = self.mirror_status().await?;
            self.bar.set_message(format!(
                "B copies the account: {} ({} files, {} bytes, {} events behind)",
                status["state"].as_str().unwrap_or("?"),
                status["entries"],
                status["bytes"],
                status["lag_events"]
            ));
            let lag = status["lag_events"].as_u64();
            let ready = status["state"] == "following" && lag.is_some_and(|l| l <= CLOSE_ENOUGH);
            Ok(ready.then_some(()))
        })
        .await
    }

    /// A fresh statement of this move, signed.
    fn statement(&self, from: &PublicKey, to: &PublicKey) -> serde_json::Value {
        let text = MoveStatement {
            user: self.user.public_key(),
            from: from.clone(),
            to: to.clone(),
            time_us: api::now_micros(),
            from_gone: self.args.from_gone,
        }
        .text();
        serde_json::json!({ "signature": self.sign(&text), "statement": text })
    }

    /// `POST <base>/move/<user>` with a fresh statement: A seals, B promotes.
    async fn post_statement(
        &self,
        base: &str,
        from: &PublicKey,
        to: &PublicKey,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{base}/move/{}", self.z32))
            .json(&self.statement(from, to))
            .send()
            .await
    }

    /// Step 5: A sealed.
    async fn seal(&self, from: &PublicKey, to: &PublicKey) -> anyhow::Result<()> {
        self.until("sealing the account at A", || async {
            let response = self.post_statement(&self.args.from, from, to).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(Some(()));
            }
            let text = response.text().await.unwrap_or_default();
            if status.is_client_error() {
                return Err(Refused(format!("A refused the seal: {status} {text}")).into());
            }
            Ok(None)
        })
        .await
    }

    /// Step 6: B caught up with A's final roots and took over; both servers' signed
    /// roots compared here too.
    async fn promote(&self, from: &PublicKey, to: &PublicKey) -> anyhow::Result<()> {
        self.until("B catches up with A's final roots", || async {
            let response = self.post_statement(&self.args.to, from, to).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(Some(()));
            }
            // B's 409 with Retry-After: not sealed at A, or not caught up yet.
            let later = response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER);
            let text = response.text().await.unwrap_or_default();
            if later || status.is_server_error() {
                self.bar
                    .set_message(format!("B catches up with A's final roots: {text}"));
                return Ok(None);
            }
            Err(Refused(format!("B refused the promotion: {status} {text}")).into())
        })
        .await?;
        if self.args.from_gone || self.recorded.from_kind.as_deref() == Some("plain") {
            // B checked its copy against A's last verified roots, or (a plain A,
            // which signs none) that it holds every event of the user there.
            return Ok(());
        }
        for tree in ["pub", "priv"] {
            let a = self.signed_root(&self.args.from, from, tree).await?;
            let b = self.signed_root(&self.args.to, to, tree).await?;
            if a != b {
                bail!("after the promotion the {tree} roots differ: A {a}, B {b}");
            }
            self.bar
                .suspend(|| eprintln!("{tree} root {a}: equal at A and B, signed by both"));
        }
        Ok(())
    }

    /// The user's root of `tree` at `base`, its signature checked with `key`.
    async fn signed_root(&self, base: &str, key: &PublicKey, tree: &str) -> anyhow::Result<String> {
        let mut request = self
            .http
            .get(format!("{base}/merkle/{}/root?tree={tree}", self.z32));
        let mut session = None;
        if tree == "priv" {
            // The root of the private tree is the user's: a session of theirs reads it.
            let secret = self.user.secret_key();
            let keypair = pubky_common::crypto::Keypair::from_secret(&secret);
            let token = crate::pull::sign_in(&self.http, base, &keypair).await?;
            request = request.bearer_auth(&token);
            session = Some(token);
        }
        let body = async { request.send().await?.error_for_status()?.json().await }.await;
        if let Some(token) = session {
            let _ = self
                .http
                .delete(format!("{base}/auth/grant/session"))
                .bearer_auth(token)
                .send()
                .await;
        }
        let body: serde_json::Value = body?;
        let statement = body["statement"].as_str().unwrap_or_default();
        let mut signature = [0u8; 64];
        let signed = hex::decode_to_slice(
            body["signature"].as_str().unwrap_or_default(),
            &mut signature,
        )
        .is_ok()
            && domain::merkle::verify_root_statement(key, statement, &signature);
        if !signed {
            bail!("{base}'s root statement is not signed by {}", key.to_z32());
        }
        let root = statement
            .lines()
            .find_map(|l| l.strip_prefix("root:"))
            .context("a root statement without a root")?;
        Ok(root.to_owned())
    }

    /// Step 7: the user's PKARR record names B.
    async fn publish(&self, config: &crate::config::Config, to: &PublicKey) -> anyhow::Result<()> {
        let dht = config.dht_config().context(
            "no DHT to publish the record on: set PUBKY_DHT_BOOTSTRAP, or HOMESERVER_DHT_MAINNET=true",
        )?;
        let publisher = pkarr_publish::Publisher::new(&dht)?;
        self.until("publishing the PKARR record that names B", || async {
            publisher.publish_user_homeserver(&self.user, to).await?;
            Ok(Some(()))
        })
        .await
    }
}

/// A refusal by a server: trying again would not help, the command ends with it.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The default state file of a secret key file: its path and `.move.json`.
pub fn default_state_file(secret_key: &Path) -> PathBuf {
    let mut name = secret_key.to_path_buf().into_os_string();
    name.push(".move.json");
    PathBuf::from(name)
}
