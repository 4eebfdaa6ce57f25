//! Merkle roots, proofs and the diff protocol over HTTP against real NATS and
//! Postgres: what a client or a mirroring homeserver sees.

use crate::common;

use common::{TestServer, TestUser, start};
use domain::merkle::{self, DiffSession, Difference, Hash, MemStore, Proof};
use reqwest::StatusCode;
use std::collections::BTreeMap;

async fn put(s: &TestServer, u: &TestUser, path: &str, body: &str) {
    let r = s
        .http
        .put(s.storage(u, path))
        .bearer_auth(&u.token)
        .body(body.to_owned())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED, "PUT {path}");
}

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
        put(&s, &u, &path, &body).await;
        files.insert(path, hash_of(&body));
    }
    put(&s, &u, "/priv/secret.txt", "hidden").await;

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

    // Proofs: of a present path (its content hash), of an absent one; private refused.
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
    assert_eq!(status, StatusCode::BAD_REQUEST);

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
    put(&s, &u, "/pub/app/posts/010.json", "changed").await;
    put(&s, &u, "/pub/app/posts/new.json", "new").await;
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
        put(&s, &u, &format!("/pub/app/{n}.txt"), &format!("v{n}")).await;
    }
    put(&s, &u, "/pub/app/3.txt", "rewritten").await;
    put(&s, &u, "/priv/a.txt", "private").await;
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
