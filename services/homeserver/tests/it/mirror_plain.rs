//! Mirroring from a plain Pubky homeserver (docs/mirror.md, "Sources"): the code path
//! that mirrors the reference homeserver, exercised here without it by forcing the
//! plain kind against a homeserver of ours, which has the same listing, file and
//! `/events-stream` routes. The run against the reference binary itself is
//! `mirror_reference` (ignored; `make e2e-reference-mirror`).

use crate::common::{self, TestServer, TestUser};
use crate::mirror::{PASSWORD, json, wait_status};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every file of `user` under `dir` (`/pub/` or `/priv/`) at `base`, by the deep
/// listing (paged as a client pages it) and a read of each: path to bytes.
pub(crate) async fn files(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    dir: &str,
    token: Option<&str>,
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/storage/{user}{dir}?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={user}{c}"));
        }
        let mut request = http.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let r = request.send().await.unwrap();
        if r.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(r.status(), StatusCode::OK, "GET {url}");
        let text = r.text().await.unwrap();
        let prefix = format!("pubky://{user}");
        let page: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        for path in &page {
            let mut get = http.get(format!("{base}/storage/{user}{path}"));
            if let Some(token) = token {
                get = get.bearer_auth(token);
            }
            let r = get.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "GET {path}");
            out.insert(path.clone(), r.bytes().await.unwrap().to_vec());
        }
        if page.len() < 100 {
            break;
        }
        cursor = page.last().cloned();
    }
    out
}

/// The entries of `user` under `dir` in `server`'s store: path, content hash, size.
async fn entries(server: &TestServer, u: &TestUser, dir: &str) -> Vec<(String, [u8; 32], u64)> {
    let store = &server.server.state.store;
    let owner = u.keypair.public_key();
    let rows = store
        .entries_between(&owner, dir, None, None)
        .await
        .unwrap();
    rows.into_iter()
        .map(|e| (e.path, e.content_hash, e.size))
        .collect()
}

/// Waits (up to 60 s) until B's copy equals A's: the public tree as a client sees it
/// (listing, then every file's bytes), the private one by its entries (a session made
/// at A does not read at B); returns the number of files.
async fn wait_equal(a: &TestServer, b: &TestServer, u: &TestUser) -> usize {
    let z32 = u.z32();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let on_a = files(&a.http, &a.url(""), &z32, "/pub/", None).await;
        let on_b = files(&b.http, &b.url(""), &z32, "/pub/", None).await;
        let (priv_a, priv_b) = (entries(a, u, "/priv/").await, entries(b, u, "/priv/").await);
        if on_a == on_b && priv_a == priv_b {
            return on_a.len() + priv_a.len();
        }
        assert!(Instant::now() < deadline, "B's copy never equalled A's");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /mirrors` on B's admin API forcing the plain kind, with A's key given (a
/// plain source cannot tell it).
async fn add_plain(b: &TestServer, a: &TestServer, u: &TestUser) -> Value {
    let admin = b.server.admin_addr.expect("admin listener");
    let r = b
        .http
        .post(format!("http://{admin}/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({
            "user": u.z32(), "source": a.url(""), "source_kind": "plain",
            "source_key": a.keypair.public_key().to_z32(), "read_token": u.token,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_plain_source_is_copied_by_listing_followed_live_and_resumed_after_a_restart() {
    let a = common::start().await;
    let b = common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
        c.mirror_anti_entropy_secs = 1;
    })
    .await;
    let u = a.user().await;
    let z32 = u.z32();
    // More than one page of A's listing (1,000) is not needed to page: the walk asks
    // for pages of 1,000, the nested directories and the large file are what matter.
    for n in 0..120 {
        let dir = ["posts", "posts/2026", "likes/deep/er"][n % 3];
        a.put_ok(
            &u,
            &format!("/pub/app/{dir}/{n:03}.json"),
            &format!("{{\"n\":{n}}}"),
        )
        .await;
    }
    let big: String = (0..300_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    a.put_ok(&u, "/pub/app/big.txt", &big).await;
    a.put_ok(&u, "/priv/app/secret.txt", "with the grant only")
        .await;

    let added = add_plain(&b, &a, &u).await;
    assert_eq!(added["source_kind"], "plain");
    let status = wait_status(&b.url(""), &z32, |s| s["state"] == "following").await;
    assert_eq!(wait_equal(&a, &b, &u).await, 122);
    // No source root is shown: a plain source signs none.
    assert!(status["source_roots"].is_null(), "{status:#}");
    assert_eq!(status["primary"], a.keypair.public_key().to_z32());
    let status = wait_status(&b.url(""), &z32, |s| s["entries"] == 122).await;
    assert!(status["last_error"].is_null(), "{status:#}");
    // Reads carry the primary, writes are refused naming it, as for any mirror.
    let r = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/big.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["pubky-mirror-primary"],
        a.keypair.public_key().to_z32().as_str()
    );
    assert_eq!(r.text().await.unwrap(), big);

    // Live: a new file, an overwrite, a deletion.
    a.put_ok(&u, "/pub/app/new.txt", "new").await;
    a.put_ok(&u, "/pub/app/posts/000.json", "overwritten").await;
    a.delete_ok(&u, "/pub/app/posts/2026/001.json").await;
    assert_eq!(wait_equal(&a, &b, &u).await, 122);
    let status = wait_status(&b.url(""), &z32, |s| s["lag_events"] == 0).await;
    let applied = status["events_applied"].as_u64().unwrap();
    assert_eq!(
        applied,
        122 + 3,
        "each file copied once, each change applied once"
    );

    // B stops; A changes meanwhile; B restarted resumes from its cursor.
    let b = b.restart().await;
    a.put_ok(&u, "/pub/app/while-b-was-down.txt", "missed?")
        .await;
    a.delete_ok(&u, "/pub/app/likes/deep/er/002.json").await;
    a.put_ok(&u, "/priv/app/secret.txt", "changed while B was down")
        .await;
    assert_eq!(wait_equal(&a, &b, &u).await, 122);
    let status = wait_status(&b.url(""), &z32, |s| {
        s["lag_events"] == 0 && s["events_applied"].as_u64() >= Some(applied + 3)
    })
    .await;
    assert_eq!(
        status["events_applied"].as_u64().unwrap(),
        applied + 3,
        "after the restart only the three changes are applied, nothing is copied again: {status:#}"
    );
    let owner = u.keypair.public_key();
    let private = b.server.state.store.entry(&owner, "/priv/app/secret.txt");
    let private = private.await.unwrap();
    let private = private.expect("the private file is mirrored with the grant");
    assert_eq!(
        private.content_hash,
        *blake3::hash(b"changed while B was down").as_bytes()
    );
    let on_b = json(&b.http, &b.url(&format!("/mirror/{z32}"))).await;
    assert_eq!(on_b["entries"], 122);
}

#[tokio::test]
async fn a_user_moves_from_a_plain_homeserver_by_copy_flip_and_last_delta() {
    use crate::common::sdk::{Dht, sdk_key, start_on};
    let dht = Dht::start().await;
    let a = start_on(&dht, |_| {}).await;
    let b = start_on(&dht, |_| {}).await;
    let u = a.user().await;
    let z32 = u.z32();
    for n in 0..40 {
        a.put_ok(&u, &format!("/pub/app/{n:02}.txt"), &format!("public {n}"))
            .await;
    }
    a.put_ok(&u, "/priv/app/secret.txt", "private").await;

    // `homeserver move --from-plain --from-key <A>`: A is read as any Pubky homeserver
    // (it is not asked to seal), and its key is given (a plain A cannot tell it).
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, hex::encode(u.keypair.secret_key())).unwrap();
    let mut config = homeserver::config::Config::default();
    dht.configure(&mut config);
    let args = homeserver::move_cli::MoveArgs {
        from: a.url(""),
        to: b.url(""),
        secret_key: secret.clone(),
        signup_token: None,
        state_file: None,
        step_timeout: Duration::from_secs(60),
        from_gone: false,
        from_key: Some(a.keypair.public_key().to_z32()),
        from_plain: true,
    };
    homeserver::move_cli::run(&config, args.clone())
        .await
        .expect("the move from a plain homeserver");
    let state: Value = serde_json::from_slice(
        &std::fs::read(homeserver::move_cli::default_state_file(&secret)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["done"],
        serde_json::json!([
            "joined",
            "mirroring",
            "copied",
            "published",
            "promoted",
            "revoked"
        ]),
        "no seal, no room step: {state:#}"
    );
    // The SDK resolves the user to B; B holds A's files and takes writes.
    let user = u.keypair.public_key();
    let resolved = dht.sdk().get_homeserver_of(&sdk_key(&user)).await;
    assert_eq!(resolved.unwrap(), Some(sdk_key(&b.keypair.public_key())));
    let on_a = files(&a.http, &a.url(""), &z32, "/pub/", None).await;
    assert_eq!(on_a.len(), 40);
    assert_eq!(files(&b.http, &b.url(""), &z32, "/pub/", None).await, on_a);
    assert_eq!(
        entries(&a, &u, "/priv/").await,
        entries(&b, &u, "/priv/").await
    );
    let r = b
        .http
        .get(b.url(&format!("/mirror/{z32}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the mirror became the account"
    );
    let token_b = crate::moving::session_at(&b, &u.keypair).await;
    let r = b
        .http
        .put(b.url(&format!("/storage/{z32}/pub/app/new.txt")))
        .bearer_auth(&token_b)
        .body("on B")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A was not sealed (it cannot be, in general): a write there after the command
    // ended is taken by A and never reaches B (docs/move.md, the window).
    a.put_ok(&u, "/pub/app/late.txt", "lost to B").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/late.txt")));
    assert_eq!(r.send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // Run again: every step is recorded, nothing is done twice.
    homeserver::move_cli::run(&config, args)
        .await
        .expect("a second run");
}
