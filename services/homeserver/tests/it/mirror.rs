//! Mirroring (docs/mirror.md): homeserver B keeps a live, verified, read-only copy of a
//! user whose primary is homeserver A. In-process pairs for the behaviour (copy,
//! follow, refusal, status, a corrupt source, drift repaired by anti-entropy); the
//! faults of processes are in `mirror_process`.

use crate::common::{self, TestServer, TestUser};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) const PASSWORD: &str = "mirror-test-password";

/// A homeserver with an admin listener and a quick anti-entropy round.
async fn start_b() -> TestServer {
    common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
        c.mirror_anti_entropy_secs = 1;
    })
    .await
}

fn admin_url(s: &TestServer, path: &str) -> String {
    format!(
        "http://{}{path}",
        s.server.admin_addr.expect("admin listener")
    )
}

/// `POST /mirrors` on B's admin API.
pub(crate) async fn add_mirror(
    b: &TestServer,
    user: &str,
    source: &str,
    token: Option<&str>,
) -> Value {
    let r = b
        .http
        .post(admin_url(b, "/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .json(&serde_json::json!({ "user": user, "source": source, "read_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

pub(crate) async fn json(http: &reqwest::Client, url: &str) -> Value {
    let r = http.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

/// The public and private roots of `user` at `base`, read with `token` for the latter.
async fn roots(http: &reqwest::Client, base: &str, user: &str, token: &str) -> (String, String) {
    let public = json(http, &format!("{base}/merkle/{user}/root")).await;
    let private: Value = http
        .get(format!("{base}/merkle/{user}/root?tree=priv"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        public["root"].as_str().unwrap().to_owned(),
        private["root"].as_str().unwrap_or("none").to_owned(),
    )
}

/// Waits (up to 60 s) until B's mirror status satisfies `done`; returns it.
pub(crate) async fn wait_status(b_url: &str, user: &str, done: impl Fn(&Value) -> bool) -> Value {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http.get(format!("{b_url}/mirror/{user}")).send().await;
        if let Ok(r) = r
            && r.status() == StatusCode::OK
        {
            let status: Value = r.json().await.unwrap();
            if done(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "mirror status: {status:#}");
        }
        assert!(Instant::now() < deadline, "no mirror status at {b_url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the mirror's local roots equal A's current roots.
async fn in_step(a: &TestServer, b: &TestServer, u: &TestUser) -> bool {
    let z32 = u.z32();
    let (base_a, base_b) = (a.url(""), b.url(""));
    let on_a = roots(&a.http, &base_a, &z32, &u.token).await;
    let status = json(&b.http, &format!("{base_b}/mirror/{z32}")).await;
    status["local_roots"]["pub"] == on_a.0.as_str()
        && status["local_roots"]["priv"] == on_a.1.as_str()
}

async fn wait_in_step(a: &TestServer, b: &TestServer, u: &TestUser) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !in_step(a, b, u).await {
        assert!(Instant::now() < deadline, "B never caught up with A");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_user_is_mirrored_and_followed_and_b_refuses_writes_naming_a() {
    let a = common::start().await;
    let b = start_b().await;
    let u = a.user().await;
    let z32 = u.z32();
    for n in 0..20 {
        a.put_ok(
            &u,
            &format!("/pub/app/posts/{n:02}.json"),
            &format!("{{\"n\":{n}}}"),
        )
        .await;
    }
    a.put_ok(&u, "/priv/app/secret.txt", "only with the grant")
        .await;

    let added = add_mirror(&b, &z32, &a.url(""), Some(&u.token)).await;
    assert_eq!(added["primary"], a.keypair.public_key().to_z32());
    wait_in_step(&a, &b, &u).await;

    // Reads: the same API, the same bytes, a header naming the primary.
    let r = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/posts/07.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["pubky-mirror-primary"],
        a.keypair.public_key().to_z32().as_str()
    );
    assert_eq!(r.text().await.unwrap(), "{\"n\":7}");

    // A write on A (a change, an addition, a deletion) appears on B; roots equal.
    a.put_ok(&u, "/pub/app/posts/07.json", "{\"n\":\"seven\"}")
        .await;
    a.put_ok(&u, "/pub/app/new.txt", "new").await;
    a.delete_ok(&u, "/pub/app/posts/03.json").await;
    a.put_ok(&u, "/priv/app/secret.txt", "changed").await;
    wait_in_step(&a, &b, &u).await;
    let r = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/posts/07.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "{\"n\":\"seven\"}");
    let gone = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/posts/03.json")));
    assert_eq!(gone.send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // B's feed shows the mirrored writes like any other (same projections).
    let feed = b
        .http
        .get(b.url("/events/?limit=1000"))
        .send()
        .await
        .unwrap();
    let feed = feed.text().await.unwrap();
    assert!(
        feed.contains(&format!("PUT pubky://{z32}/pub/app/new.txt")),
        "{feed}"
    );
    assert!(feed.contains(&format!("DEL pubky://{z32}/pub/app/posts/03.json")));

    // Writes to the mirrored user on B: 409, naming A; nothing changes.
    let token = u.token.clone();
    let put = b
        .http
        .put(b.url(&format!("/storage/{z32}/pub/app/new.txt")))
        .bearer_auth(&token)
        .body("on B")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CONFLICT);
    let primary = a.keypair.public_key().to_z32();
    assert_eq!(put.headers()["pubky-mirror-primary"], primary.as_str());
    let text = put.text().await.unwrap();
    assert!(
        text.contains(&primary) && text.contains("read-only"),
        "{text}"
    );
    let delete = b
        .http
        .delete(b.url(&format!("/storage/{z32}/pub/app/new.txt")));
    assert_eq!(delete.send().await.unwrap().status(), StatusCode::CONFLICT);
    // WebDAV too: writes refused, reads served.
    let mkcol = reqwest::Method::from_bytes(b"MKCOL").unwrap();
    let dav = b
        .http
        .request(mkcol, b.url(&format!("/dav/{z32}/pub/app/dir/")));
    let dav = dav.bearer_auth(&token).send().await.unwrap();
    assert_eq!(dav.status(), StatusCode::CONFLICT);
    let dav_put = b.http.put(b.url(&format!("/dav/{z32}/pub/app/new.txt")));
    let dav_put = dav_put
        .bearer_auth(&token)
        .body("via dav")
        .send()
        .await
        .unwrap();
    assert_eq!(dav_put.status(), StatusCode::CONFLICT);
    let dav_get = b.http.get(b.url(&format!("/dav/{z32}/pub/app/new.txt")));
    let dav_get = dav_get.bearer_auth(&token).send().await.unwrap();
    assert_ne!(dav_get.status(), StatusCode::CONFLICT);

    // The status resource.
    let status = wait_status(&b.url(""), &z32, |s| s["lag_events"] == 0).await;
    let on_a = roots(&a.http, &a.url(""), &z32, &u.token).await;
    assert_eq!(status["source"], a.url("").trim_end_matches('/'));
    assert_eq!(status["state"], "following");
    assert_eq!(status["source_roots"]["pub"], on_a.0.as_str());
    assert_eq!(status["local_roots"]["priv"], on_a.1.as_str());
    assert_eq!(
        status["entries"], 21,
        "20 posts, one new, one deleted, one private"
    );
    assert!(status["bytes"].as_u64().unwrap() > 0);
    assert!(status["last_error"].is_null(), "{status:#}");
    assert_eq!(status["started_by"], "operator");

    // Listed, then removed: writable again (B is no longer the user's mirror).
    let list = b
        .http
        .get(admin_url(&b, "/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .send()
        .await
        .unwrap();
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["mirrors"][0]["user"], z32.as_str());
    let removed = b
        .http
        .delete(admin_url(&b, &format!("/mirrors/{z32}")))
        .header("X-Admin-Password", PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let status = b
        .http
        .get(b.url(&format!("/mirror/{z32}")))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_grant_only_public_data_is_mirrored_and_a_user_can_ask_with_a_signed_request() {
    let a = common::start().await;
    let b = start_b().await;
    let u = a.user().await;
    let z32 = u.z32();
    a.put_ok(&u, "/pub/app/a.txt", "public").await;
    a.put_ok(&u, "/priv/app/b.txt", "private").await;

    // The user's own request, signed with their key.
    let mirror_key = b.keypair.public_key().to_z32();
    let source = a.url("");
    let source = source.trim_end_matches('/');
    let statement =
        ::mirror::routes::request_statement("add", &z32, &mirror_key, source, api::now_micros());
    let forged = domain::Keypair::random().sign(statement.as_bytes());
    let url = b.url(&format!("/mirror/{z32}"));
    let refused = b
        .http
        .post(&url)
        .json(&serde_json::json!({ "statement": statement, "signature": hex::encode(forged.to_bytes()) }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        b.http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "a refused request changes nothing"
    );
    let signature = u.keypair.sign(statement.as_bytes());
    let accepted = b
        .http
        .post(&url)
        .json(&serde_json::json!({ "statement": statement, "signature": hex::encode(signature.to_bytes()) }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED);

    let status = wait_status(&b.url(""), &z32, |s| {
        s["entries"] == 1 && s["state"] == "following"
    })
    .await;
    assert_eq!(status["started_by"], "user");
    assert_eq!(status["private"], false);
    let public = b.http.get(b.url(&format!("/storage/{z32}/pub/app/a.txt")));
    assert_eq!(public.send().await.unwrap().text().await.unwrap(), "public");
}

/// Finds the blob file holding `content` under `dir` (the fs blob store).
fn blob_file(dir: &Path, content: &[u8]) -> std::path::PathBuf {
    let name = hex::encode(blake3::hash(content).as_bytes());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().and_then(|n| n.to_str()) == Some(name.as_str()) {
                return path;
            }
        }
    }
    panic!("no blob {name} under {}", dir.display());
}

#[tokio::test]
async fn a_source_serving_one_flipped_byte_is_detected_and_nothing_of_it_is_served() {
    let a = common::start().await;
    let b = start_b().await;
    let u = a.user().await;
    let z32 = u.z32();
    let good = "a good file";
    let bad: String = (0..5000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    a.put_ok(&u, "/pub/app/good.txt", good).await;
    a.put_ok(&u, "/pub/app/bad.txt", &bad).await;
    // A's disk flips one byte of bad.txt's content: A still serves it, with its ETag.
    let file = blob_file(&a.config.data_dir, bad.as_bytes());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[2500] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    add_mirror(&b, &z32, &a.url(""), None).await;
    let status = wait_status(&b.url(""), &z32, |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("/pub/app/bad.txt"))
    })
    .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("does not match its hash"), "{error}");
    assert_ne!(status["state"], "following");

    // The good file is copied; nothing of the bad one is served, now or later.
    let good_on_b = b
        .http
        .get(b.url(&format!("/storage/{z32}/pub/app/good.txt")));
    assert_eq!(good_on_b.send().await.unwrap().text().await.unwrap(), good);
    for _ in 0..3 {
        let bad_on_b = b
            .http
            .get(b.url(&format!("/storage/{z32}/pub/app/bad.txt")));
        assert_eq!(
            bad_on_b.send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let feed = b
        .http
        .get(b.url("/events/?limit=1000"))
        .send()
        .await
        .unwrap();
    assert!(!feed.text().await.unwrap().contains("bad.txt"));
}

#[tokio::test]
async fn drift_on_the_mirror_is_repaired_by_the_periodic_root_comparison() {
    let a = common::start().await;
    let b = start_b().await;
    let u = a.user().await;
    let z32 = u.z32();
    a.put_ok(&u, "/pub/app/one.txt", "one").await;
    a.put_ok(&u, "/pub/app/two.txt", "two").await;
    add_mirror(&b, &z32, &a.url(""), None).await;
    wait_in_step(&a, &b, &u).await;

    // Drift: an event in B's log that did not come from A (a bug, an operator's hand).
    let key = u.keypair.public_key();
    let row = b.server.state.store.user(&key).await.unwrap().unwrap();
    let event = domain::Event::new(
        key,
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        domain::event::Change::FileDeleted {
            path: "/pub/app/one.txt".into(),
        },
    );
    let seq = b
        .server
        .state
        .log
        .append(&event, log::Expected::LastSeq(row.file_seq))
        .await
        .unwrap();
    b.server
        .state
        .progress
        .wait_for(seq, Duration::from_secs(10))
        .await;

    // No event of A says so; the next root comparison (every second here) finds B's
    // root is not A's signed one and copies the file back by diff.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = b
            .http
            .get(b.url(&format!("/storage/{z32}/pub/app/one.txt")))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            assert_eq!(r.text().await.unwrap(), "one");
            break;
        }
        assert!(Instant::now() < deadline, "the drift was never repaired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_in_step(&a, &b, &u).await;
}

/// `homeserver admin mirror …` against B's admin listener: stdout, or the failure.
async fn cli(b: &TestServer, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .arg("admin")
        .arg("--url")
        .arg(admin_url(b, ""))
        .arg("mirror")
        .args(args)
        .env("HOMESERVER_ADMIN_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_operator_adds_lists_shows_and_removes_a_mirror_from_the_command_line() {
    let a = common::start().await;
    let b = start_b().await;
    let u = a.user().await;
    let z32 = u.z32();
    a.put_ok(&u, "/pub/app/x.txt", "x").await;
    let source = a.url("");
    let added = cli(&b, &["add", &z32, "--source", &source]).await;
    assert!(added.contains(&a.keypair.public_key().to_z32()), "{added}");
    wait_status(&b.url(""), &z32, |s| {
        s["entries"] == 1 && s["state"] == "following"
    })
    .await;
    let list = cli(&b, &["list"]).await;
    assert!(list.contains(&z32) && list.contains("following"), "{list}");
    let status = cli(&b, &["status", &z32]).await;
    assert!(
        status.contains("lag (events)") && status.contains("entries             1"),
        "{status}"
    );
    cli(&b, &["remove", &z32]).await;
    assert!(!cli(&b, &["list"]).await.contains(&z32));
}

#[tokio::test]
async fn a_user_with_data_here_is_not_overwritten_by_a_mirror() {
    let a = common::start().await;
    let b = start_b().await;
    let local = b.user().await;
    b.put_ok(&local, "/pub/app/mine.txt", "lives on B").await;
    let r = b
        .http
        .post(admin_url(&b, "/mirrors"))
        .header("X-Admin-Password", PASSWORD)
        .json(
            &serde_json::json!({ "user": local.z32(), "source": a.url(""),
            "source_key": a.keypair.public_key().to_z32() }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("has data on this homeserver")
    );
    b.put_ok(&local, "/pub/app/mine.txt", "still writable")
        .await;
}
