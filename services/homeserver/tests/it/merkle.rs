//! Merkle roots, proofs and the diff protocol over HTTP against real NATS and
//! Postgres: what a client or a mirroring homeserver sees.

use crate::common;

use common::{TestServer, start, start_with};
use domain::merkle::{self, DiffSession, Difference, Hash, MemStore, Proof};
use reqwest::StatusCode;
use std::collections::BTreeMap;

async fn json(s: &TestServer, path: &str) -> (StatusCode, serde_json::Value) {
    let r = s.http.get(s.url(path)).send().await.expect("GET");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

fn hash_of(body: &str) -> Hash {
    *blake3::hash(body.as_bytes()).as_bytes()
}

fn parse_root(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).expect("64 hex digits");
    (hash != [0; 32]).then_some(hash)
}

#[tokio::test]
async fn roots_are_signed_proofs_verify_and_a_diff_finds_the_changed_paths() {
    let s = start().await;
    let u = s.user().await;
    let mut files = BTreeMap::new();
    for n in 0..60 {
        let path = format!("/pub/app/posts/{n:03}.json");
        let body = format!("{{\"n\":{n}}}");
        s.put_ok(&u, &path, &body).await;
        files.insert(path, hash_of(&body));
    }
    s.put_ok(&u, "/priv/secret.txt", "hidden").await;

    // The signed root: the homeserver's signature over the statement, and the same
    // root the client computes from what it wrote (the tree depends only on the set).
    let (status, signed) = json(&s, &format!("/merkle/{}/root", u.z32())).await;
    assert_eq!(status, StatusCode::OK);
    let statement = signed["statement"].as_str().unwrap();
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signed["signature"].as_str().unwrap(), &mut signature).unwrap();
    assert!(merkle::verify_root_statement(
        &s.keypair.public_key(),
        statement,
        &signature
    ));
    assert!(!merkle::verify_root_statement(
        &s.keypair.public_key(),
        &statement.replace("tree:pub", "tree:priv"),
        &signature
    ));
    let root = parse_root(signed["root"].as_str().unwrap());
    let entries: Vec<(String, Hash)> = files.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut local = MemStore::default();
    let local_root = merkle::build(&entries, &mut local);
    assert_eq!(root, local_root);
    assert!(statement.contains(&format!("user:{}\n", u.z32())));
    assert!(statement.contains(&format!("root:{}\n", signed["root"].as_str().unwrap())));

    // Reads of files and listings carry the root of their tree.
    let r = s
        .http
        .get(s.storage(&u, "/pub/app/posts/001.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["pubky-merkle-root"],
        signed["root"].as_str().unwrap()
    );
    let r = s
        .http
        .get(s.storage(&u, "/pub/app/posts/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["pubky-merkle-root"],
        signed["root"].as_str().unwrap()
    );
    let r = s
        .http
        .get(s.storage(&u, "/priv/secret.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let private_root = r.headers()["pubky-merkle-root"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(private_root, signed["root"].as_str().unwrap());
    assert_ne!(parse_root(&private_root), None);
    // Without access, no private root leaks.
    let r = s
        .http
        .get(s.storage(&u, "/priv/secret.txt"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("pubky-merkle-root"));

    // Proofs: of a present path (its content hash), of an absent one; a private one
    // needs a session (see `the_private_tree_is_served_to_its_readers_only`).
    for (path, expected) in [
        (
            "/pub/app/posts/007.json",
            Some(files["/pub/app/posts/007.json"]),
        ),
        ("/pub/app/posts/999.json", None),
    ] {
        let (status, body) = json(&s, &format!("/merkle/{}/proof?path={path}", u.z32())).await;
        assert_eq!(status, StatusCode::OK);
        let proof = Proof {
            nodes: body["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| hex::decode(n.as_str().unwrap()).unwrap())
                .collect(),
        };
        assert_eq!(merkle::verify(root, path, &proof), Ok(expected), "{path}");
    }
    let (status, _) = json(
        &s,
        &format!("/merkle/{}/proof?path=/priv/secret.txt", u.z32()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A node by its hash is the bytes that hash to it.
    let root_hex = signed["root"].as_str().unwrap();
    let r = s
        .http
        .get(s.url(&format!("/merkle/{}/nodes/{root_hex}", u.z32())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.bytes().await.unwrap();
    assert_eq!(Some(*blake3::hash(&body).as_bytes()), root);
    let r = s
        .http
        .get(s.url(&format!("/merkle/{}/nodes/{}", u.z32(), "ab".repeat(32))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A client whose copy is stale (one file changed since, one deleted, one new on
    // the server) learns exactly those paths through the diff rounds.
    s.put_ok(&u, "/pub/app/posts/010.json", "changed").await;
    s.put_ok(&u, "/pub/app/posts/new.json", "new").await;
    let r = s
        .http
        .delete(s.storage(&u, "/pub/app/posts/020.json"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (_, signed) = json(&s, &format!("/merkle/{}/root", u.z32())).await;
    let server_root = parse_root(signed["root"].as_str().unwrap());

    let mut session = DiffSession::new(&local, local_root, server_root);
    let mut rounds = 0;
    while !session.wants().is_empty() {
        rounds += 1;
        assert!(rounds <= 10, "a 62-entry tree is a few levels deep");
        let body: Vec<u8> = session.wants().iter().flatten().copied().collect();
        let r = s
            .http
            .post(s.url(&format!("/merkle/{}/nodes", u.z32())))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = r.bytes().await.unwrap();
        let mut nodes = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            nodes.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        assert!(rest.is_empty());
        session.receive(&nodes).unwrap();
    }
    let found = session.finish().unwrap();
    assert_eq!(
        found,
        vec![
            Difference {
                key: "/pub/app/posts/010.json".into(),
                local: Some(files["/pub/app/posts/010.json"]),
                remote: Some(hash_of("changed")),
            },
            Difference {
                key: "/pub/app/posts/020.json".into(),
                local: Some(files["/pub/app/posts/020.json"]),
                remote: None,
            },
            Difference {
                key: "/pub/app/posts/new.json".into(),
                local: None,
                remote: Some(hash_of("new")),
            },
        ]
    );
}

#[tokio::test]
async fn merkle_requests_are_checked() {
    let s = start().await;
    let u = s.user().await;
    let (status, _) = json(&s, "/merkle/not-a-key/root").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let stranger = domain::Keypair::random().public_key().to_z32();
    let (status, _) = json(&s, &format!("/merkle/{stranger}/root")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A user without files has the empty root.
    let (status, signed) = json(&s, &format!("/merkle/{}/root", u.z32())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(signed["root"], "0".repeat(64));
    assert_eq!(signed["seq"], 0);
    let r = s
        .http
        .post(s.url(&format!("/merkle/{}/nodes", u.z32())))
        .body(vec![0u8; 33])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (status, _) = json(&s, &format!("/merkle/{}/nodes/xyz", u.z32())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn run_verify(s: &TestServer, user: &str) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .args(["verify", user])
        .env("DATABASE_URL", &s.env.database_url)
        .env("NATS_URL", &s.env.nats_url)
        .env("HOMESERVER_NATS_STREAM", &s.env.log.stream)
        .env("HOMESERVER_NATS_SUBJECT_PREFIX", &s.env.log.subject_prefix)
        .env("HOMESERVER_DATA_DIR", &s.config.data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run homeserver verify");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn verify_recomputes_the_trees_from_entries_and_log_and_catches_tampering() {
    let s = start().await;
    let u = s.user().await;
    for n in 0..20 {
        s.put_ok(&u, &format!("/pub/app/{n}.txt"), &format!("v{n}"))
            .await;
    }
    s.put_ok(&u, "/pub/app/3.txt", "rewritten").await;
    s.put_ok(&u, "/priv/a.txt", "private").await;
    let r = s
        .http
        .delete(s.storage(&u, "/pub/app/5.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let (ok, out) = run_verify(&s, &u.z32()).await;
    assert!(ok, "{out}");
    assert!(out.contains("pub: 19 entries"), "{out}");
    assert!(out.contains("priv: 1 entries"), "{out}");
    assert!(out.contains("merkle trees verified"), "{out}");

    // A stored root that no longer matches the entries is reported.
    let pool = sqlx::PgPool::connect(&s.env.database_url).await.unwrap();
    sqlx::query("UPDATE merkle_roots SET root = $1 WHERE owner = $2 AND NOT private")
        .bind(vec![7u8; 32])
        .bind(u.z32())
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = run_verify(&s, &u.z32()).await;
    assert!(!ok, "{out}");
    assert!(out.contains("MISMATCH"), "{out}");

    let (ok, _) = run_verify(&s, &domain::Keypair::random().public_key().to_z32()).await;
    assert!(!ok, "an unknown user is an error");
}

/// A new bearer session for an existing user, with `caps`.
async fn session(s: &TestServer, user: &domain::Keypair, caps: &[&str]) -> String {
    let token = domain::secret::BearerToken::from_random(rand::random());
    append_account_event(s, common::session_event(user, caps, &token)).await;
    token.as_str().to_string()
}

/// Appends one of the user's account events and waits until it is projected.
async fn append_account_event(s: &TestServer, event: domain::Event) {
    let state = &s.server.state;
    let last = state
        .store
        .user(&event.user)
        .await
        .unwrap()
        .expect("user exists")
        .acct_seq;
    let seq = state
        .log
        .append(&event, log::Expected::LastSeq(last))
        .await
        .expect("append");
    assert!(
        state
            .progress
            .wait_for(seq, std::time::Duration::from_secs(10))
            .await
    );
}

async fn get_as(s: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = s.http.get(s.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("GET")
}

/// The nodes a `POST .../nodes` answered, in order.
fn split_nodes(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut nodes = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        nodes.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    assert!(rest.is_empty());
    nodes
}

async fn post_nodes(
    s: &TestServer,
    user: &str,
    query: &str,
    hashes: &[Hash],
    token: Option<&str>,
) -> reqwest::Response {
    let body: Vec<u8> = hashes.iter().flatten().copied().collect();
    let mut request = s
        .http
        .post(s.url(&format!("/merkle/{user}/nodes{query}")))
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("POST nodes")
}

/// Walks a tree over HTTP, one request per level, as a mirroring client would; the
/// nodes found, and whether every node the walk needed was served.
async fn walk(
    s: &TestServer,
    user: &str,
    private: bool,
    root: Option<Hash>,
    token: Option<&str>,
) -> (MemStore, bool) {
    let query = if private { "?tree=priv" } else { "" };
    let mut store = MemStore::default();
    let mut wanted: Vec<Hash> = root.into_iter().collect();
    let mut complete = true;
    while !wanted.is_empty() {
        let r = post_nodes(s, user, query, &wanted, token).await;
        assert_eq!(r.status(), StatusCode::OK);
        let nodes = split_nodes(&r.bytes().await.unwrap());
        complete &= nodes.len() == wanted.len();
        wanted.clear();
        for encoding in nodes {
            let node = merkle::Node::decode(&encoding).unwrap();
            wanted.extend(node.children().filter(|c| !store.nodes.contains_key(c)));
            store.insert(node);
        }
    }
    (store, complete)
}

async fn signed_root(s: &TestServer, user: &str, query: &str, token: Option<&str>) -> Option<Hash> {
    let r = get_as(s, &format!("/merkle/{user}/root{query}"), token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    parse_root(body["root"].as_str().unwrap())
}

#[tokio::test]
async fn the_private_tree_is_served_to_its_readers_only() {
    let s = start().await;
    let u = s.user().await;
    let other = s.user().await;
    let user = u.z32();
    let mut private = BTreeMap::new();
    for (path, body) in [
        ("/priv/app/a.txt", "alpha"),
        ("/priv/app/b.txt", "beta"),
        ("/priv/other/c.txt", "gamma"),
    ] {
        s.put_ok(&u, path, body).await;
        private.insert(path.to_string(), hash_of(body));
    }
    s.put_ok(&u, "/pub/open.txt", "open").await;
    let entries: Vec<(String, Hash)> = private.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let expected_root = merkle::build(&entries, &mut MemStore::default());
    let app_reader = session(&s, &u.keypair, &["/priv/app/:r"]).await;
    let public_only = session(&s, &u.keypair, &["/pub/:rw"]).await;

    // Refusals: the storage read's statuses and texts, never cacheable.
    let root_path = format!("/merkle/{user}/root?tree=priv");
    for (token, status, text) in [
        (
            None,
            StatusCode::UNAUTHORIZED,
            "Authentication required to read private storage",
        ),
        (
            Some(other.token.as_str()),
            StatusCode::FORBIDDEN,
            "Session user does not match target tenant",
        ),
        (
            Some(public_only.as_str()),
            StatusCode::FORBIDDEN,
            "Session does not have read access to path",
        ),
        // Roots and nodes cover all of /priv/: a narrower scope is not enough.
        (
            Some(app_reader.as_str()),
            StatusCode::FORBIDDEN,
            "Session does not have read access to path",
        ),
    ] {
        let r = get_as(&s, &root_path, token).await;
        assert_eq!(r.status(), status, "{token:?}");
        assert_eq!(r.headers()[reqwest::header::CACHE_CONTROL], "no-store");
        assert_eq!(r.text().await.unwrap(), text);
    }
    // The refusal does not depend on whether the user exists.
    let stranger = domain::Keypair::random().public_key().to_z32();
    let r = get_as(&s, &format!("/merkle/{stranger}/root?tree=priv"), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The owner gets the signed private root, which is the tree of the private entries.
    let r = get_as(&s, &root_path, Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[reqwest::header::CACHE_CONTROL], "no-store");
    let signed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(signed["tree"], "priv");
    let statement = signed["statement"].as_str().unwrap();
    assert!(statement.contains("\ntree:priv\n"), "{statement}");
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signed["signature"].as_str().unwrap(), &mut signature).unwrap();
    assert!(merkle::verify_root_statement(
        &s.keypair.public_key(),
        statement,
        &signature
    ));
    let root = parse_root(signed["root"].as_str().unwrap());
    assert_eq!(root, expected_root);
    let root_hex = signed["root"].as_str().unwrap();

    // Nodes: for the owner, never publicly cacheable; refused to others; never on the
    // public tree.
    let node_path = format!("/merkle/{user}/nodes/{root_hex}?tree=priv");
    let r = get_as(&s, &node_path, Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[reqwest::header::CACHE_CONTROL], "no-store");
    assert_eq!(
        Some(*blake3::hash(&r.bytes().await.unwrap()).as_bytes()),
        root
    );
    assert_eq!(
        get_as(&s, &node_path, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&s, &node_path, Some(&other.token)).await.status(),
        StatusCode::FORBIDDEN
    );
    let public_node = format!("/merkle/{user}/nodes/{root_hex}");
    for token in [None, Some(u.token.as_str())] {
        assert_eq!(
            get_as(&s, &public_node, token).await.status(),
            StatusCode::NOT_FOUND
        );
        let r = post_nodes(&s, &user, "", &[root.unwrap()], token).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.bytes().await.unwrap().is_empty());
    }
    let r = post_nodes(&s, &user, "?tree=priv", &[root.unwrap()], None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (walked, complete) = walk(&s, &user, true, root, Some(&u.token)).await;
    assert!(complete);
    assert_eq!(merkle::entries(&walked, root).unwrap(), entries);

    // Proofs of private paths: for a session that may read the path.
    for (path, token) in [
        ("/priv/app/a.txt", u.token.as_str()),
        ("/priv/app/a.txt", app_reader.as_str()),
        ("/priv/app/zzz.txt", app_reader.as_str()),
        ("/priv/other/c.txt", u.token.as_str()),
    ] {
        let r = get_as(
            &s,
            &format!("/merkle/{user}/proof?path={path}"),
            Some(token),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[reqwest::header::CACHE_CONTROL], "no-store");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["tree"], "priv");
        assert_eq!(parse_root(body["root"].as_str().unwrap()), root);
        let proof = Proof {
            nodes: body["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| hex::decode(n.as_str().unwrap()).unwrap())
                .collect(),
        };
        assert_eq!(
            merkle::verify(root, path, &proof),
            Ok(private.get(path).copied()),
            "{path}"
        );
    }
    for (path, token, status) in [
        ("/priv/app/a.txt", None, StatusCode::UNAUTHORIZED),
        (
            "/priv/app/a.txt",
            Some(other.token.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "/priv/other/c.txt",
            Some(app_reader.as_str()),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let r = get_as(&s, &format!("/merkle/{user}/proof?path={path}"), token).await;
        assert_eq!(r.status(), status, "{path} {token:?}");
    }

    // A browser's cookie session reaches the private tree too.
    let secret = domain::secret::CookieSecret::from_random(rand::random());
    append_account_event(
        &s,
        domain::Event::new(
            u.keypair.public_key(),
            api::now_micros(),
            uuid::Uuid::now_v7().to_string(),
            domain::event::Change::CookieSessionCreated {
                secret_hash: domain::event::Digest(secret.hash()),
                capabilities: "/:rw".into(),
                auth_token_id: uuid::Uuid::new_v4().simple().to_string()[..22].to_string(),
            },
        ),
    )
    .await;
    let r = s
        .http
        .get(s.url(&root_path))
        .header("cookie", format!("{user}={}", secret.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Bad requests; the public tree is as before.
    for path in [
        format!("/merkle/{user}/root?tree=private"),
        format!("/merkle/{user}/nodes/{root_hex}?tree="),
        format!("/merkle/{user}/proof?path=/pub/open.txt&tree=priv"),
        format!("/merkle/{user}/proof?path=/priv/app/a.txt&tree=pub"),
    ] {
        let r = get_as(&s, &path, Some(&u.token)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    let public_root = signed_root(&s, &user, "?tree=pub", None).await;
    assert_eq!(public_root, signed_root(&s, &user, "", None).await);
    assert_eq!(
        public_root,
        merkle::build(
            &[("/pub/open.txt".to_string(), hash_of("open"))],
            &mut MemStore::default()
        )
    );
    let r = get_as(
        &s,
        &format!("/merkle/{user}/nodes/{}", merkle::root_hex(public_root)),
        None,
    )
    .await;
    assert_eq!(
        r.headers()[reqwest::header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
}

/// Counts the stored nodes of a user's trees.
async fn node_count(pool: &sqlx::PgPool, user: &str) -> usize {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM merkle_nodes WHERE owner = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap();
    n as usize
}

async fn run_merkle_gc(s: &TestServer, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .arg("merkle-gc")
        .args(args)
        .env("DATABASE_URL", &s.env.database_url)
        .env("HOMESERVER_DATA_DIR", &s.config.data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run homeserver merkle-gc");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn garbage_collection_keeps_current_and_recently_replaced_roots_walkable() {
    let s = start_with(|config| config.merkle_gc_interval_secs = 0).await;
    let u = s.user().await;
    let user = u.z32();
    let pool = sqlx::PgPool::connect(&s.env.database_url).await.unwrap();
    for n in 0..40 {
        s.put_ok(&u, &format!("/pub/app/{n}.txt"), &format!("v{n}"))
            .await;
    }
    for n in 0..8 {
        s.put_ok(&u, &format!("/priv/app/{n}.txt"), &format!("p{n}"))
            .await;
    }
    // Many overwrites, each a new root of one tree.
    for round in 0..20 {
        s.put_ok(&u, "/pub/app/7.txt", &format!("r{round}")).await;
        s.put_ok(&u, "/priv/app/3.txt", &format!("r{round}")).await;
    }
    let first_pub = signed_root(&s, &user, "", None).await;
    let (before_last, _) = walk(&s, &user, false, first_pub, None).await;
    let before_entries = merkle::entries(&before_last, first_pub).unwrap();
    // The last overwrite: a client still diffing against `first_pub` must be able to
    // finish, so it stays; every older root left the grace period.
    s.put_ok(&u, "/pub/app/9.txt", "last").await;
    sqlx::query("UPDATE merkle_root_history SET replaced_us = 0 WHERE owner = $1 AND root <> $2")
        .bind(&user)
        .bind(first_pub.unwrap().to_vec())
        .execute(&pool)
        .await
        .unwrap();
    let before = node_count(&pool, &user).await;

    let out = run_merkle_gc(&s, &[]).await;
    assert!(out.contains("2 trees swept"), "{out}");
    let pub_root = signed_root(&s, &user, "", None).await;
    let priv_root = signed_root(&s, &user, "?tree=priv", Some(&u.token)).await;
    let (pub_nodes, complete) = walk(&s, &user, false, pub_root, None).await;
    assert!(complete, "every node of the current public root is served");
    let (priv_nodes, complete) = walk(&s, &user, true, priv_root, Some(&u.token)).await;
    assert!(complete, "every node of the current private root is served");
    let (old_nodes, complete) = walk(&s, &user, false, first_pub, None).await;
    assert!(
        complete,
        "the root replaced within the grace period is whole"
    );
    assert_eq!(
        merkle::entries(&old_nodes, first_pub).unwrap(),
        before_entries
    );
    let mut kept: std::collections::HashSet<Hash> = pub_nodes.nodes.keys().copied().collect();
    kept.extend(old_nodes.nodes.keys());
    kept.extend(priv_nodes.nodes.keys());
    let after = node_count(&pool, &user).await;
    assert_eq!(after, kept.len());
    assert!(after < before, "{after} < {before}");
    assert!(
        out.contains(&format!("{} deleted", before - after)),
        "{out}"
    );
    let (ok, out) = run_verify(&s, &user).await;
    assert!(ok, "{out}");

    // Without a grace period, only the current roots remain.
    run_merkle_gc(&s, &["--grace-secs", "0"]).await;
    assert_eq!(
        node_count(&pool, &user).await,
        pub_nodes.nodes.len() + priv_nodes.nodes.len()
    );
    let (_, complete) = walk(&s, &user, false, first_pub, None).await;
    assert!(!complete);
    let (ok, out) = run_verify(&s, &user).await;
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_during_writes_leaves_trees_that_verify() {
    // The periodic collection every second, without a grace period, plus back-to-back
    // collections from here while files are rewritten.
    let s = start_with(|config| {
        config.merkle_gc_interval_secs = 1;
        config.merkle_gc_grace_secs = 0;
    })
    .await;
    let u = s.user().await;
    let user = u.z32();
    let store = s.server.state.store.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let mut deleted = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let report = store
                    .merkle_gc(std::time::Duration::ZERO, store::merkle_gc::GcScope::All)
                    .await
                    .unwrap();
                assert_eq!(report.failed, 0);
                deleted += report.deleted;
            }
            deleted
        })
    };
    for round in 0..60 {
        let path = if round % 3 == 0 {
            format!("/priv/app/{}.txt", round % 4)
        } else {
            format!("/pub/app/{}.txt", round % 5)
        };
        // Two contents only: trees, and so nodes, come back after being collected.
        s.put_ok(&u, &path, &format!("{}", (round / 7) % 2)).await;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(collector.await.unwrap() > 0);
    assert!(
        s.server
            .state
            .metrics
            .render()
            .contains("merkle_nodes_collected_total")
    );
    let (ok, out) = run_verify(&s, &user).await;
    assert!(ok, "{out}");
    for (query, private) in [("", false), ("?tree=priv", true)] {
        let root = signed_root(&s, &user, query, Some(&u.token)).await;
        let (_, complete) = walk(&s, &user, private, root, Some(&u.token)).await;
        assert!(complete);
    }
}
