//! `homeserver pull`: the user's own copy of their account, with their secret key,
//! from any homeserver that has the export route (`docs/export.md`).
//!
//! It signs in as the SDK does (a grant for a one-off client key, read-only on
//! `/priv/`, and a proof of possession for `POST /auth/grant/session`), downloads the
//! public then the private tree page by page into one archive file, revokes the grant,
//! and verifies the file offline against the signed roots it carries. Pages go to disk
//! as they arrive (bounded memory whatever the account's size); a page that breaks off
//! is asked for again from the same cursor, and a tree that changes between pages
//! (409) is downloaded again from its start.

use crate::archive_file::{ArchiveReader, Item};
use anyhow::{Context, bail};
use domain::archive::{self, EndRecord};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use pubky_common::auth::grant::GrantClaims;
use pubky_common::auth::jws::{ClientId, GrantId, PopNonce, sign_jws};
use pubky_common::auth::pop::PopProofClaims;
use pubky_common::capabilities::Capability;
use pubky_common::crypto::{Keypair, PublicKey};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Entries per page asked for.
const LIMIT: u32 = 1000;
/// Attempts per page (a broken connection) and per tree (the tree changed).
const ATTEMPTS: usize = 5;

/// `homeserver pull --url <homeserver> --secret-key <file> --out <file>`.
pub async fn pull(url: &str, secret_file: &Path, out: &Path) -> anyhow::Result<()> {
    pull_in_pages(url, secret_file, out, LIMIT).await
}

/// [`pull`] with `limit` entries per page.
pub async fn pull_in_pages(
    url: &str,
    secret_file: &Path,
    out: &Path,
    limit: u32,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(secret_file)
        .with_context(|| format!("cannot read {}", secret_file.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret)
        .context("the secret key file holds 64 hex digits")?;
    let user = Keypair::from_secret(&secret);
    let z32 = user.public_key().z32();
    let base = url.trim_end_matches('/');
    let http = reqwest::Client::new();

    let token = sign_in(&http, base, &user).await?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let tmp = out.with_extension("partial");
    let result = async {
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(format!("{}\n", archive::MAGIC).as_bytes())?;
        for tree in ["pub", "priv"] {
            bar.set_message(tree);
            download_tree(&http, base, &z32, tree, &token, &mut file, &bar, limit).await?;
        }
        file.sync_all()?;
        anyhow::Ok(())
    }
    .await;
    bar.finish_and_clear();
    // The grant was for this download only.
    let _ = http
        .delete(format!("{base}/auth/grant/session"))
        .bearer_auth(&token)
        .send()
        .await;
    result?;
    std::fs::rename(&tmp, out)?;
    crate::archive_cli::verify_archive(out)
}

/// A bearer for a read-only grant of `/priv/`, minted with a fresh client key.
pub async fn sign_in(http: &reqwest::Client, base: &str, user: &Keypair) -> anyhow::Result<String> {
    let z32 = user.public_key().z32();
    // The homeserver's key, for the proof's audience: the signer of the user's root.
    let root: serde_json::Value = http
        .get(format!("{base}/merkle/{z32}/root"))
        .send()
        .await?
        .error_for_status()
        .context("the homeserver does not know this user")?
        .json()
        .await?;
    let homeserver = PublicKey::try_from_z32(root["signer"].as_str().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("the homeserver's key: {e}"))?;
    read_grant(http, base, &homeserver, user).await
}

/// [`sign_in`] at a homeserver whose key is known: any Pubky homeserver (the grant
/// exchange is the reference's, section 3.4 of its spec), ours or not.
pub async fn read_grant(
    http: &reqwest::Client,
    base: &str,
    homeserver: &PublicKey,
    user: &Keypair,
) -> anyhow::Result<String> {
    let client = Keypair::random();
    let now = api::now_secs();
    let grant = GrantClaims {
        iss: user.public_key(),
        client_id: ClientId::new("homeserver.pull").map_err(|e| anyhow::anyhow!("{e}"))?,
        caps: vec![Capability::read("/priv/").map_err(|e| anyhow::anyhow!("{e}"))?],
        cnf: client.public_key(),
        jti: GrantId::generate(),
        iat: now,
        exp: now + 3600,
    };
    let pop = PopProofClaims {
        aud: homeserver.clone(),
        gid: grant.jti.clone(),
        nonce: PopNonce::generate(),
        iat: now,
    };
    let body = serde_json::json!({
        "grant": grant.sign(user, "pubky-grant"),
        "pop": sign_jws(&client, "pubky-pop", &pop),
    });
    let response = http
        .post(format!("{base}/auth/grant/session"))
        .json(&body)
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        bail!(
            "sign-in refused: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    let session: serde_json::Value = response.json().await?;
    session["token"]
        .as_str()
        .map(str::to_owned)
        .context("sign-in answered no token")
}

/// Appends one tree section to `file`: the first page's tree record and nodes, every
/// page's entries, one end record.
#[allow(clippy::too_many_arguments)]
async fn download_tree(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    tree: &str,
    token: &str,
    file: &mut std::fs::File,
    bar: &ProgressBar,
    limit: u32,
) -> anyhow::Result<()> {
    let start = file.stream_position()?;
    'tree: for _ in 0..ATTEMPTS {
        file.set_len(start)?;
        file.seek(SeekFrom::Start(start))?;
        let (mut cursor, mut root, mut entries) = (None::<String>, None::<String>, 0u64);
        loop {
            let mut query = format!("tree={tree}&limit={limit}");
            if let (Some(cursor), Some(root)) = (&cursor, &root) {
                query.push_str(&format!("&cursor={}&root={root}", encode(cursor)));
            }
            let url = format!("{base}/export/{user}?{query}");
            let Some(page) = fetch_page(http, &url, token, bar).await? else {
                continue 'tree; // 409: the tree moved; download it again
            };
            let parsed = copy_page(&page, file, root.is_none())?;
            root.get_or_insert(parsed.root);
            entries += parsed.entries;
            match parsed.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        file.write_all(&archive::record_line(&EndRecord::new(entries, None)))?;
        return Ok(());
    }
    bail!("the {tree} tree kept changing during the download")
}

/// One page into a temporary file; `None` on 409 (tree changed). A broken body is
/// fetched again.
async fn fetch_page(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    bar: &ProgressBar,
) -> anyhow::Result<Option<std::fs::File>> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let response = match http.get(url).bearer_auth(token).send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = Some(anyhow::Error::from(e));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if response.status() == reqwest::StatusCode::CONFLICT {
            return Ok(None);
        }
        if !response.status().is_success() {
            let status = response.status();
            bail!(
                "export refused: {status} {}",
                response.text().await.unwrap_or_default()
            );
        }
        let mut page = tempfile()?;
        let mut body = response.bytes_stream();
        let mut broken = false;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    page.write_all(&chunk)?;
                    bar.inc(chunk.len() as u64);
                }
                Err(e) => {
                    last_error = Some(e.into());
                    broken = true;
                    break;
                }
            }
        }
        if !broken {
            page.seek(SeekFrom::Start(0))?;
            return Ok(Some(page));
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the page could not be fetched")))
}

/// An anonymous temporary file (removed when closed).
fn tempfile() -> anyhow::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("pubky-pull-{}", uuid::Uuid::now_v7()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

struct Copied {
    root: String,
    entries: u64,
    next: Option<String>,
}

/// Copies a page's parts into the archive: the tree record and nodes when `first`,
/// then its entries; returns its root, entry count and next cursor.
fn copy_page(
    page: &std::fs::File,
    file: &mut std::fs::File,
    first: bool,
) -> anyhow::Result<Copied> {
    let mut reader = ArchiveReader::new(std::io::BufReader::new(page.try_clone()?))?;
    let magic_end = reader.offset();
    // Positioned reads: a clone of the handle shares its offset with the reader's, so
    // seeking one would move the other under its buffer (a cut content past 8 KiB).
    let mut buf = vec![0u8; 64 * 1024];
    let mut copy = |mut from: u64, to: u64| -> anyhow::Result<()> {
        while from < to {
            let n = buf.len().min((to - from) as usize);
            page.read_exact_at(&mut buf[..n], from)?;
            file.write_all(&buf[..n])?;
            from += n as u64;
        }
        Ok(())
    };
    let (mut root, mut entries) = (String::new(), 0);
    loop {
        let before = reader.offset();
        match reader.next_item()? {
            Some(Item::Tree { record, .. }) => {
                root = record.root;
                if first {
                    copy(magic_end, reader.offset())?;
                }
            }
            Some(Item::Entry { .. }) => {
                copy(before, reader.offset())?;
                entries += 1;
            }
            Some(Item::End(end)) => {
                return Ok(Copied {
                    root,
                    entries,
                    next: end.next,
                });
            }
            None => bail!("the page has no end record"),
        }
    }
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
