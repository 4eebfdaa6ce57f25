//! Keeping a copy in sync through the Merkle endpoints: the one-round-trip diff from a
//! root the server still holds (also driven by the published SDK over Pubky TLS), and
//! trees rebuilt from the entries when they are missing (as after the change of node
//! format).

use crate::common;

use common::sdk::{Dht, new_user, start_on, within};
use common::{TestServer, start};
use domain::merkle::{self, Hash, MemStore};
use reqwest::StatusCode;
use std::collections::BTreeMap;

/// GET with an optional bearer token: status, body text.
async fn get(s: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = s.http.get(s.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.expect("GET");
    (r.status(), r.text().await.expect("body"))
}

fn hash_of(body: &str) -> Hash {
    *blake3::hash(body.as_bytes()).as_bytes()
}

fn root_of(files: &BTreeMap<String, Hash>) -> Option<Hash> {
    let entries: Vec<(String, Hash)> = files.iter().map(|(k, v)| (k.clone(), *v)).collect();
    merkle::build(&entries, &mut MemStore::default())
}

fn hex_opt(value: &serde_json::Value) -> Option<Hash> {
    value.as_str().map(|text| {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text, &mut hash).expect("64 hex digits");
        hash
    })
}

#[tokio::test]
async fn a_copy_catches_up_from_its_root_in_one_round_trip_and_verifies_the_result() {
    let s = start().await;
    let u = s.user().await;
    let mut files = BTreeMap::new();
    for n in 0..40 {
        let (path, body) = (
            format!("/pub/app/posts/{n:03}.json"),
            format!("{{\"n\":{n}}}"),
        );
        s.put_ok(&u, &path, &body).await;
        files.insert(path, hash_of(&body));
    }
    s.put_ok(&u, "/priv/notes.txt", "v1").await;
    let (status, text) = get(&s, &format!("/merkle/{}/root", u.z32()), None).await;
    assert_eq!(status, StatusCode::OK);
    let synced: serde_json::Value = serde_json::from_str(&text).expect("json");
    let synced_root = synced["root"].as_str().expect("root").to_owned();
    assert_eq!(hex_opt(&synced["root"]), root_of(&files));

    // The server moves on: one changed, one added, one removed, one private change.
    s.put_ok(&u, "/pub/app/posts/007.json", "{\"n\":\"seven\"}")
        .await;
    s.put_ok(&u, "/pub/app/posts/new.json", "{}").await;
    s.delete_ok(&u, "/pub/app/posts/020.json").await;
    s.put_ok(&u, "/priv/notes.txt", "v2").await;

    let url = format!("/merkle/{}/diff?from={synced_root}", u.z32());
    let (status, text) = get(&s, &url, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    println!(
        "one-round-trip diff of 3 changed paths among 41: {} B",
        text.len()
    );
    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["complete"], true);
    let differences: Vec<(String, Option<Hash>, Option<Hash>)> = answer["differences"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            (
                d["path"].as_str().expect("path").to_owned(),
                hex_opt(&d["from"]),
                hex_opt(&d["to"]),
            )
        })
        .collect();
    let p = |n: &str| format!("/pub/app/posts/{n}.json");
    assert_eq!(
        differences,
        vec![
            (
                p("007"),
                Some(hash_of("{\"n\":7}")),
                Some(hash_of("{\"n\":\"seven\"}"))
            ),
            (p("020"), Some(hash_of("{\"n\":20}")), None),
            (p("new"), None, Some(hash_of("{}"))),
        ]
    );

    // The client applies the changes to its copy and checks the signed root.
    let mut copy = files.clone();
    for (path, _, to) in &differences {
        match to {
            Some(value) => copy.insert(path.clone(), *value),
            None => copy.remove(path),
        };
    }
    let signed = &answer["signed_root"];
    let mut signature = [0u8; 64];
    hex::decode_to_slice(
        signed["signature"].as_str().expect("signed"),
        &mut signature,
    )
    .expect("hex");
    assert!(merkle::verify_root_statement(
        &s.keypair.public_key(),
        signed["statement"].as_str().expect("statement"),
        &signature
    ));
    assert_eq!(hex_opt(&signed["root"]), root_of(&copy));
    assert_eq!(signed["root"], answer["to"]);

    // The private tree's diff is the owner's only.
    let private = format!("/merkle/{}/diff?from={}&tree=priv", u.z32(), "0".repeat(64));
    assert_eq!(get(&s, &private, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, text) = get(&s, &private, Some(&u.token)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["differences"][0]["path"], "/priv/notes.txt");
    assert_eq!(answer["differences"][0]["from"], serde_json::Value::Null);
    assert_eq!(answer["tree"], "priv");

    // A limit cuts the list and says so.
    let (_, text) = get(&s, &format!("{url}&limit=1"), None).await;
    let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["complete"], false);
    assert_eq!(answer["differences"].as_array().map(Vec::len), Some(1));

    // A root the server never had: the client must use the node protocol.
    let unknown = format!("/merkle/{}/diff?from={}", u.z32(), "ab".repeat(32));
    let (status, text) = get(&s, &unknown, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.starts_with("Unknown root"), "{text}");
    for (query, message) in [
        ("", "Missing `from` query parameter"),
        ("?from=xyz", "`from` is a root: 64 hex digits"),
        ("?from=00&tree=all", "`from` is a root: 64 hex digits"),
        (
            &*format!("?from={}&tree=all", "0".repeat(64)),
            "Unknown tree: expected `tree=pub` or `tree=priv`",
        ),
        (
            &*format!("?from={}&limit=0", "0".repeat(64)),
            "`limit` is a number from 1 to 10000",
        ),
    ] {
        let (status, text) = get(&s, &format!("/merkle/{}/diff{query}", u.z32()), None).await;
        assert_eq!((status, text.as_str()), (StatusCode::BAD_REQUEST, message));
    }
}

#[tokio::test]
async fn missing_trees_are_rebuilt_from_the_entries_when_the_projector_starts() {
    let s = start().await;
    let u = s.user().await;
    let mut files = BTreeMap::new();
    for n in 0..25 {
        let (path, body) = (format!("/pub/app/{n}.txt"), format!("{n}"));
        s.put_ok(&u, &path, &body).await;
        files.insert(path, hash_of(&body));
    }
    s.put_ok(&u, "/priv/a.txt", "private").await;
    let (_, before) = get(&s, &format!("/merkle/{}/root", u.z32()), None).await;
    let before: serde_json::Value = serde_json::from_str(&before).expect("json");

    // What migration 0005 does to every user: the trees are gone.
    let pool = sqlx::PgPool::connect(&s.env.database_url)
        .await
        .expect("db");
    for table in ["merkle_nodes", "merkle_roots"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE owner = $1"))
            .bind(u.z32())
            .execute(&pool)
            .await
            .expect("delete");
    }
    let s = s.restart().await;
    // Until the projector has rebuilt the tree, its root is unavailable, never empty
    // (a mirror told "empty" would delete its copy).
    let root_url = format!("/merkle/{}/root", u.z32());
    let mut answer = get(&s, &root_url, None).await;
    for _ in 0..100 {
        if answer.0 != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        answer = get(&s, &root_url, None).await;
    }
    let (status, after) = answer;
    assert_eq!(status, StatusCode::OK, "{after}");
    let after: serde_json::Value = serde_json::from_str(&after).expect("json");
    assert_eq!(hex_opt(&after["root"]), root_of(&files));
    assert_eq!(
        (&after["root"], &after["seq"]),
        (&before["root"], &before["seq"])
    );
    // The rebuilt tree is complete and goes on being maintained.
    s.put_ok(&u, "/pub/app/late.txt", "late").await;
    files.insert("/pub/app/late.txt".into(), hash_of("late"));
    let (_, now) = get(&s, &format!("/merkle/{}/root", u.z32()), None).await;
    let now: serde_json::Value = serde_json::from_str(&now).expect("json");
    assert_eq!(hex_opt(&now["root"]), root_of(&files));
    let private_roots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM merkle_roots WHERE owner = $1 AND private")
            .bind(u.z32())
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(private_roots, 1);
}

/// What an app using the published SDK does: its HTTP client reaches the Merkle
/// endpoints over Pubky TLS like any other homeserver URL, checks the signed root
/// against the homeserver's key, and catches up with one diff request.
#[tokio::test]
async fn the_sdk_verifies_a_signed_root_and_catches_up_over_pubky_tls() {
    within(
        std::time::Duration::from_secs(120),
        "merkle over Pubky TLS",
        async {
            let dht = Dht::start().await;
            let hs = start_on(&dht, |_| {}).await;
            let pubky = dht.sdk();
            let (signer, session) = new_user(&pubky, &hs.server.public_key).await;
            let mut files = BTreeMap::new();
            for (path, body) in [
                ("/pub/merkle.test/a.json", "1"),
                ("/pub/merkle.test/b.json", "2"),
            ] {
                session.storage().put(path, body).await.expect("put");
                files.insert(path.to_string(), hash_of(body));
            }
            let base = format!(
                "https://{}/merkle/{}",
                hs.server.public_key.to_z32(),
                signer.public_key().z32()
            );
            let client = pubky.client();
            let get = |url: String| async move {
                let response = client
                    .request_async(reqwest::Method::GET, url.parse().expect("URL"))
                    .await
                    .expect("request resolves")
                    .send()
                    .await
                    .expect("response");
                assert_eq!(response.status().as_u16(), 200, "{url}");
                let text = response.text().await.expect("body");
                serde_json::from_str::<serde_json::Value>(&text).expect("JSON")
            };
            let verified = |signed: &serde_json::Value| {
                let mut signature = [0u8; 64];
                hex::decode_to_slice(
                    signed["signature"].as_str().expect("signed"),
                    &mut signature,
                )
                .expect("hex");
                merkle::verify_root_statement(
                    &hs.server.public_key,
                    signed["statement"].as_str().expect("statement"),
                    &signature,
                )
            };
            let first = get(format!("{base}/root")).await;
            assert!(verified(&first));
            assert_eq!(hex_opt(&first["root"]), root_of(&files));

            session
                .storage()
                .put("/pub/merkle.test/c.json", "3")
                .await
                .expect("put");
            files.insert("/pub/merkle.test/c.json".into(), hash_of("3"));
            let diff = get(format!(
                "{base}/diff?from={}",
                first["root"].as_str().expect("root")
            ))
            .await;
            assert_eq!(diff["differences"][0]["path"], "/pub/merkle.test/c.json");
            assert_eq!(diff["differences"].as_array().map(Vec::len), Some(1));
            assert!(verified(&diff["signed_root"]));
            assert_eq!(hex_opt(&diff["signed_root"]["root"]), root_of(&files));
            hs.server.shutdown().await;
        },
    )
    .await;
}
