//! Mirroring from the reference homeserver (crates.io `pubky-homeserver` 0.17.1) into
//! ours (docs/mirror.md, "Sources"). Ignored in `make test`: it needs the reference's
//! binary, named by `REFERENCE_BIN`; `make e2e-reference-mirror` builds it once into
//! `.tools/` and runs this.
//!
//! The reference runs as its own process on its own Postgres database, publishing its
//! PKARR packet on a private loopback DHT (it refuses to start when that publish
//! fails; its configuration is the benchmark's, `bench/src/server.rs`). A user signs
//! up there with the published SDK and writes a few hundred files (nested, a few
//! private, one of 3 MiB); our homeserver is told to mirror the user from it without
//! being told what it is (it finds a plain source), and the copy is compared with the
//! source as a client sees it: the listing and every file's bytes. Then the user
//! writes, overwrites and deletes more and the live follow is compared again.

use crate::common::TestServer;
use crate::common::sdk::{self, Dht};
use crate::mirror::{PASSWORD, wait_status};
use crate::mirror_plain::files;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The reference homeserver, as a process.
struct Reference {
    child: Child,
    base: String,
    key: domain::PublicKey,
    _dir: tempfile::TempDir,
    /// Its own database (dropped with it).
    _db: testkit::TestEnv,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_reference(binary: &PathBuf, dht: &Dht) -> Reference {
    let db = testkit::TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let keypair = pubky_common::crypto::Keypair::random();
    keypair
        .write_secret_key_file(&dir.path().join("secret"))
        .unwrap();
    let port = testkit::free_port;
    let (http, tls, admin, dead_relay) = (port(), port(), port(), port());
    let bootstrap = dht
        .bootstrap()
        .iter()
        .map(|b| format!("{b:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    // As the benchmark's (`bench/src/server.rs`, which says why the relay is dead).
    let config = format!(
        r#"[general]
database_url = {:?}
signup_mode = "open"

[drive]
pubky_listen_socket = "127.0.0.1:{tls}"
icann_listen_socket = "127.0.0.1:{http}"

[storage]
type = "file_system"

[admin]
enabled = true
listen_socket = "127.0.0.1:{admin}"
admin_password = "mirror"

[metrics]
enabled = false

[pkdns]
public_ip = "127.0.0.1"
icann_domain = "localhost"
user_keys_republisher_interval = 0
dht_bootstrap_nodes = [{bootstrap}]
dht_relay_nodes = ["http://127.0.0.1:{dead_relay}"]
dht_request_timeout_ms = 200

[logging]
level = "warn"
module_levels = []
"#,
        db.database_url
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let log = std::fs::File::create(dir.path().join("reference.log")).unwrap();
    let mut child = Command::new(binary)
        .arg("--data-dir")
        .arg(dir.path())
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.path().join("reference.log"));
            panic!(
                "the reference exited at start ({status}): {}",
                log.unwrap_or_default()
            );
        }
        if let Ok(r) = reqwest::get(format!("{base}/")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reference is not ready in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = domain::PublicKey::try_from(keypair.public_key().z32().as_str()).unwrap();
    Reference {
        child,
        base,
        key,
        _dir: dir,
        _db: db,
    }
}

/// The private files of the user at the reference (listing and reads with the
/// grant), as path and BLAKE3, and the same of B's entries.
async fn private_hashes(
    reference: &Reference,
    b: &TestServer,
    user: &domain::PublicKey,
    token: &str,
) -> (BTreeMap<String, [u8; 32]>, BTreeMap<String, [u8; 32]>) {
    let http = reqwest::Client::new();
    let z32 = user.to_z32();
    let there = files(&http, &reference.base, &z32, "/priv/", Some(token)).await;
    let there = there
        .into_iter()
        .map(|(path, bytes)| (path, *blake3::hash(&bytes).as_bytes()))
        .collect();
    let store = &b.server.state.store;
    let here = store
        .entries_between(user, "/priv/", None, None)
        .await
        .unwrap();
    let here = here.into_iter().map(|e| (e.path, e.content_hash)).collect();
    (there, here)
}

/// Waits (up to 120 s) until B's copy equals the reference's; returns the number of
/// public files, their bytes and the private files.
async fn wait_equal(
    reference: &Reference,
    b: &TestServer,
    user: &domain::PublicKey,
    token: &str,
) -> (usize, usize, usize) {
    let z32 = user.to_z32();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let there = files(&b.http, &reference.base, &z32, "/pub/", None).await;
        let here = files(&b.http, &b.url(""), &z32, "/pub/", None).await;
        let (priv_there, priv_here) = private_hashes(reference, b, user, token).await;
        if there == here && priv_there == priv_here {
            let bytes = there.values().map(Vec::len).sum();
            return (there.len(), bytes, priv_there.len());
        }
        assert!(
            Instant::now() < deadline,
            "B's copy never equalled the reference's: {} public files there, {} here",
            there.len(),
            here.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
#[ignore = "needs the reference homeserver binary: make e2e-reference-mirror"]
async fn the_reference_homeserver_is_mirrored_and_followed() {
    let binary = PathBuf::from(
        std::env::var("REFERENCE_BIN")
            .expect("REFERENCE_BIN: the reference's binary (make e2e-reference-mirror)"),
    );
    let dht = Dht::start().await;
    let reference = start_reference(&binary, &dht).await;
    println!("reference {} at {}", reference.key.to_z32(), reference.base);

    // A user of the reference, signed up and writing through the published SDK.
    let pubky = dht.sdk();
    let keypair = pubky::Keypair::random();
    let signer = pubky.signer(keypair.clone());
    let reference_key = sdk::sdk_key(&reference.key);
    signer.signup(&reference_key, None).await.expect("signup");
    let session = signer
        .signin_blocking(sdk::client_id("mirror.test"))
        .await
        .expect("signin");
    let user = domain::PublicKey::try_from(keypair.public_key().z32().as_str()).unwrap();
    let storage = session.storage();
    let started = Instant::now();
    for n in 0..300 {
        let dir = ["posts", "posts/2026/12", "tags/x", "follows"][n % 4];
        let body = format!("{{\"n\":{n},\"text\":\"{}\"}}", "x".repeat(n * 7 % 900));
        let path = format!("/pub/mirror.test/{dir}/{n:04}.json");
        storage.put(path.as_str(), body).await.expect("put");
    }
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    storage
        .put("/pub/mirror.test/blobs/big.bin", big)
        .await
        .expect("put big");
    for n in 0..5 {
        let path = format!("/priv/mirror.test/{n}.txt");
        storage
            .put(path.as_str(), format!("secret {n}"))
            .await
            .expect("put private");
    }
    println!(
        "wrote 301 public files (one of 3 MiB) and 5 private ones at the reference in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Ours mirrors the user, told only where the source is, its key and the grant.
    let b = sdk::start_on(&dht, |c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
        c.mirror_anti_entropy_secs = 5;
    })
    .await;
    let http = reqwest::Client::new();
    let reference_common =
        pubky_common::crypto::PublicKey::try_from_z32(&reference.key.to_z32()).unwrap();
    let token = homeserver::pull::read_grant(&http, &reference.base, &reference_common, &keypair)
        .await
        .expect("a read grant of /priv/ at the reference");
    let admin = b.server.admin_addr.expect("admin listener");
    let started = Instant::now();
    let added = http
        .post(format!("http://{admin}/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({
            "user": user.to_z32(), "source": reference.base,
            "source_key": reference.key.to_z32(), "read_token": token,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let added: Value = added.json().await.unwrap();
    assert_eq!(
        added["source_kind"], "plain",
        "the reference is found to be plain"
    );
    // Timed by the status (the comparison itself reads every file twice), then compared.
    let status = wait_status(&b.url(""), &user.to_z32(), |s| {
        s["state"] == "following" && s["entries"] == 306 && s["lag_events"] == 0
    })
    .await;
    let copied = started.elapsed();
    assert!(status["source_roots"].is_null(), "{status:#}");
    let (public, bytes, private) = wait_equal(&reference, &b, &user, &token).await;
    assert_eq!((public, private), (301, 5));
    println!(
        "initial copy: {public} public files ({bytes} bytes) and {private} private ones in \
         {:.1} s, equal by listing and bytes; status {}, source_roots {}",
        copied.as_secs_f64(),
        status["state"],
        status["source_roots"]
    );

    // Live: new files, overwrites, deletions, a private change.
    let started = Instant::now();
    for n in 300..350 {
        let path = format!("/pub/mirror.test/live/{n:04}.json");
        storage
            .put(path.as_str(), format!("{{\"n\":{n}}}"))
            .await
            .expect("put");
    }
    for n in (0..40).step_by(4) {
        let path = format!("/pub/mirror.test/posts/{n:04}.json");
        storage
            .put(path.as_str(), "overwritten")
            .await
            .expect("overwrite");
    }
    for n in (1..80).step_by(4) {
        let path = format!("/pub/mirror.test/posts/2026/12/{n:04}.json");
        storage.delete(path.as_str()).await.expect("delete");
    }
    storage
        .put("/priv/mirror.test/0.txt", "changed")
        .await
        .expect("private change");
    storage
        .delete("/priv/mirror.test/4.txt")
        .await
        .expect("private delete");
    let writing = started.elapsed();
    let status = wait_status(&b.url(""), &user.to_z32(), |s| {
        s["lag_events"] == 0 && s["events_applied"] == 306 + 82
    })
    .await;
    let followed = started.elapsed();
    let (public, bytes, private) = wait_equal(&reference, &b, &user, &token).await;
    assert_eq!((public, private), (301 + 50 - 20, 4));
    println!(
        "live follow: 50 new, 10 overwritten, 20 deleted public files and 2 private changes \
         applied {:.1} s after the last write was answered, equal by listing and bytes: \
         {public} public files ({bytes} bytes), {private} private; changes applied in all {} \
         (each file and change once), last error {}",
        (followed - writing).as_secs_f64(),
        status["events_applied"],
        status["last_error"]
    );

    // The move: `homeserver move` from the reference to ours (no seal there: copy,
    // flip, copy the last delta). A's key is read from the user's PKARR record, which
    // the SDK published naming the reference.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, hex::encode(keypair.secret_key())).unwrap();
    let mut config = homeserver::config::Config::default();
    dht.configure(&mut config);
    let args = homeserver::move_cli::MoveArgs {
        from: reference.base.clone(),
        to: b.url(""),
        secret_key: secret,
        signup_token: None,
        state_file: None,
        step_timeout: Duration::from_secs(120),
        from_gone: false,
        from_key: None,
        from_plain: false,
    };
    let started = Instant::now();
    storage
        .put("/pub/mirror.test/before-the-move.txt", "copied")
        .await
        .expect("put");
    homeserver::move_cli::run(&config, args)
        .await
        .expect("the move from the reference");
    let moved = started.elapsed();
    // A fresh SDK: the first one cached the record that named the reference.
    let pubky = dht.sdk();
    let resolved = pubky
        .get_homeserver_of(&keypair.public_key())
        .await
        .unwrap();
    assert_eq!(resolved, Some(sdk::sdk_key(&b.server.public_key)));
    let there = files(&http, &reference.base, &user.to_z32(), "/pub/", None).await;
    let here = files(&http, &b.url(""), &user.to_z32(), "/pub/", None).await;
    assert_eq!(there, here, "B holds the reference's files after the move");
    // The user signs in where the record points now and writes there.
    let session = pubky
        .signer(keypair.clone())
        .signin_blocking(sdk::client_id("mirror.test"))
        .await
        .expect("signin at B");
    session
        .storage()
        .put("/pub/mirror.test/after-the-move.txt", "on B")
        .await
        .expect("a write at B after the move");
    let on_b = b
        .http
        .get(b.url(&format!(
            "/storage/{}/pub/mirror.test/after-the-move.txt",
            user.to_z32()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.text().await.unwrap(), "on B");
    println!(
        "move: reference -> ours in {:.1} s ({} public files equal, the SDK resolves the user \
         to ours and writes there)",
        moved.as_secs_f64(),
        here.len()
    );
}
