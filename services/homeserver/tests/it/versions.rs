//! Version history over HTTP against real NATS and Postgres: a file's earlier versions
//! listed and read back by sequence, with a file read's authorization, validators and
//! ranges; expiry after the retention; blob GC keeping exactly the retained versions;
//! and the published SDK reading an old version over Pubky TLS.

use crate::common;

use common::sdk::{Dht, new_user, start_on, within};
use common::{TestServer, TestUser, start, start_with};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

fn hash_b64(body: &str) -> String {
    blobs::BlobHash::of(body.as_bytes()).to_base64()
}

/// The sequence of `u`'s last file event: the version a write just made.
async fn last_seq(s: &TestServer, u: &TestUser) -> u64 {
    let row = s.server.state.store.user(&u.keypair.public_key()).await;
    row.expect("store").expect("user").file_seq.0
}

async fn put(s: &TestServer, u: &TestUser, path: &str, body: &str) -> u64 {
    s.put_ok(u, path, body).await;
    last_seq(s, u).await
}

async fn delete(s: &TestServer, u: &TestUser, path: &str) -> u64 {
    s.delete_ok(u, path).await;
    last_seq(s, u).await
}

fn versions_url(s: &TestServer, u: &TestUser, path: &str, query: &str) -> String {
    s.url(&format!("/versions/{}{path}{query}", u.z32()))
}

async fn text(r: reqwest::Response) -> (StatusCode, String) {
    (r.status(), r.text().await.expect("body"))
}

async fn list(s: &TestServer, u: &TestUser, path: &str, query: &str) -> Value {
    let r = s
        .http
        .get(versions_url(s, u, path, query))
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn column<'a>(page: &'a Value, key: &str) -> Vec<&'a Value> {
    page["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| &v[key])
        .collect()
}

fn seqs(page: &Value) -> Vec<u64> {
    column(page, "seq")
        .into_iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn versions_are_listed_newest_first_and_read_back_by_sequence() {
    let s = start().await;
    let u = s.user().await;
    let path = "/pub/app/doc.txt";
    let bodies = ["one", "two, longer", "three!"];
    let mut puts = Vec::new();
    for body in bodies {
        puts.push(put(&s, &u, path, body).await);
    }
    let other_path_seq = put(&s, &u, "/pub/app/other.txt", "other").await;
    let del = delete(&s, &u, path).await;

    let page = list(&s, &u, path, "").await;
    assert_eq!(seqs(&page), [del, puts[2], puts[1], puts[0]]);
    let ops: Vec<_> = column(&page, "op").into_iter().cloned().collect();
    assert_eq!(ops, ["DEL", "PUT", "PUT", "PUT"]);
    let hashes: Vec<_> = column(&page, "content_hash").into_iter().cloned().collect();
    assert_eq!(
        hashes,
        [
            Value::Null,
            hash_b64(bodies[2]).into(),
            hash_b64(bodies[1]).into(),
            hash_b64(bodies[0]).into()
        ]
    );
    let lengths: Vec<_> = column(&page, "content_length")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(
        lengths,
        [Value::Null, 6.into(), 11.into(), 3.into()],
        "as written"
    );
    assert_eq!(page["versions"][1]["content_type"], "text/plain");
    let current: Vec<_> = column(&page, "current").into_iter().cloned().collect();
    assert_eq!(
        current,
        [true, false, false, false],
        "the deletion is current"
    );
    let readable: Vec<_> = column(&page, "readable").into_iter().cloned().collect();
    assert_eq!(readable, [false, true, true, true]);
    let ts = page["versions"][0]["ts"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-08-01T12:00:00.123456Z".len(),
        "{ts}"
    );
    assert_eq!(page["retention_secs"], 30 * 24 * 3600);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["path"], path);

    // The file is deleted, yet each earlier version reads back byte for byte with
    // its validators: what an undelete needs.
    let r = s.http.get(s.storage(&u, path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for (seq, body) in puts.iter().zip(bodies) {
        let r = s
            .http
            .get(versions_url(&s, &u, path, &format!("?seq={seq}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h["etag"], format!("\"{}\"", hash_b64(body)).as_str());
        assert_eq!(h["pubky-version"], seq.to_string().as_str());
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["content-length"], body.len().to_string().as_str());
        assert!(h.contains_key("last-modified"));
        assert_eq!(r.bytes().await.unwrap(), body.as_bytes());
    }

    // HEAD, Range and conditional requests behave as on the current file.
    let old = versions_url(&s, &u, path, &format!("?seq={}", puts[1]));
    let r = s.http.head(&old).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "11");
    assert_eq!(r.headers()["pubky-version"], puts[1].to_string().as_str());
    let r = s.http.get(&old).header("range", "bytes=5-10").send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 5-10/11");
    assert_eq!(r.bytes().await.unwrap(), "longer".as_bytes());
    let etag = format!("\"{}\"", hash_b64(bodies[1]));
    let r = s.http.get(&old).header("if-none-match", &etag).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::NOT_MODIFIED);

    // Sequences that are not a readable version of this path, and bad input.
    let nobody = domain::Keypair::random().public_key().to_z32();
    let cases = [
        (
            format!("?seq={del}"),
            StatusCode::NOT_FOUND,
            "deleted this path",
        ),
        (
            format!("?seq={other_path_seq}"),
            StatusCode::NOT_FOUND,
            "is not a version of this path",
        ),
        ("?seq=abc".into(), StatusCode::BAD_REQUEST, "Invalid seq"),
        ("?seq=0".into(), StatusCode::BAD_REQUEST, "Invalid seq"),
        ("?limit=0".into(), StatusCode::BAD_REQUEST, "Invalid limit"),
        (
            "?cursor=x".into(),
            StatusCode::BAD_REQUEST,
            "Invalid cursor",
        ),
    ];
    for (query, status, message) in cases {
        let r = s.http.get(versions_url(&s, &u, path, &query)).send().await;
        let (got, body) = text(r.unwrap()).await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body.contains(message), "{query}: {body}");
    }
    for url in [
        versions_url(&s, &u, "/pub/app/never.txt", ""),
        versions_url(&s, &u, "/pub/app/never.txt", "?seq=1"),
        s.url(&format!("/versions/{nobody}/pub/app/doc.txt")),
    ] {
        let (status, body) = text(s.http.get(&url).send().await.unwrap()).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "Not Found")
        );
    }
    let r = s
        .http
        .get(versions_url(&s, &u, "/pub/app/", ""))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), StatusCode::BAD_REQUEST, "a directory");

    // Paging: newest first, `next_cursor` until the oldest.
    let first = list(&s, &u, path, "?limit=2").await;
    assert_eq!(seqs(&first), [del, puts[2]]);
    assert_eq!(first["next_cursor"], puts[2]);
    let second = list(&s, &u, path, &format!("?limit=2&cursor={}", puts[2])).await;
    assert_eq!(seqs(&second), [puts[1], puts[0]]);
    assert_eq!(second["next_cursor"], Value::Null);
    s.server.shutdown().await;
}

#[tokio::test]
async fn private_versions_are_authorized_like_private_file_reads() {
    let s = start().await;
    let owner = s.user().await;
    let other = s.user().await;
    let path = "/priv/app/secret.txt";
    let v1 = put(&s, &owner, path, "first secret").await;
    put(&s, &owner, path, "second secret").await;

    // Anonymous: 401, other user: 403, with the texts of a file read, whether or not
    // the path (or the version) exists.
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(&other.token), StatusCode::FORBIDDEN),
    ] {
        let with = |request: reqwest::RequestBuilder| match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let file_read = with(s.http.get(s.storage(&owner, path))).send().await;
        let (file_status, file_text) = text(file_read.unwrap()).await;
        assert_eq!(file_status, status);
        for (p, query) in [
            (path, String::new()),
            (path, format!("?seq={v1}")),
            ("/priv/app/absent.txt", String::new()),
            ("/priv/app/absent.txt", "?seq=1".into()),
        ] {
            let r = with(s.http.get(versions_url(&s, &owner, p, &query))).send();
            let r = r.await.unwrap();
            assert_eq!(r.headers()["cache-control"], "no-store");
            assert_eq!(text(r).await, (status, file_text.clone()), "{p}{query}");
        }
    }

    // The owner reads the history and the old version.
    let r = s
        .http
        .get(versions_url(&s, &owner, path, ""))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["versions"].as_array().unwrap().len(), 2);
    let r = s
        .http
        .get(versions_url(&s, &owner, path, &format!("?seq={v1}")))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), "first secret".as_bytes());
    s.server.shutdown().await;
}

#[tokio::test]
async fn with_zero_retention_only_the_current_version_is_readable() {
    let s = start_with(|config| config.version_retention_secs = 0).await;
    let u = s.user().await;
    let path = "/pub/app/note.txt";
    let v1 = put(&s, &u, path, "old").await;
    let v2 = put(&s, &u, path, "new").await;

    let page = list(&s, &u, path, "").await;
    assert_eq!(page["retention_secs"], 0);
    let readable: Vec<_> = column(&page, "readable").into_iter().cloned().collect();
    assert_eq!(readable, [true, false]);
    let (status, body) = text(
        s.http
            .get(versions_url(&s, &u, path, &format!("?seq={v1}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(body.contains("expired"), "{body}");
    let r = s
        .http
        .get(versions_url(&s, &u, path, &format!("?seq={v2}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), "new".as_bytes());

    // Deleting the file replaces its last version too.
    delete(&s, &u, path).await;
    let r = s
        .http
        .get(versions_url(&s, &u, path, &format!("?seq={v2}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
    s.server.shutdown().await;
}

#[tokio::test]
async fn blob_gc_keeps_the_blobs_of_retained_versions_only() {
    let s = start().await;
    let u = s.user().await;
    let path = "/pub/app/photo.bin";
    let v1 = put(&s, &u, path, "version one").await;
    put(&s, &u, path, "version two").await;
    let state = &s.server.state;
    let old = blobs::BlobHash::of(b"version one");
    let new = blobs::BlobHash::of(b"version two");

    // `homeserver gc` with the server's retention (30 days) and no grace period.
    let retention = s.config.version_retention();
    homeserver::collect_garbage(&state.store, &state.blobs, Duration::ZERO, retention)
        .await
        .expect("gc");
    assert!(state.blobs.exists(&old).await.unwrap(), "retained version");
    let url = versions_url(&s, &u, path, &format!("?seq={v1}"));
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), "version one".as_bytes());

    // The same run once the version has expired (a retention of zero): its blob goes,
    // the current one stays, and the old version now answers 410.
    let report =
        homeserver::collect_garbage(&state.store, &state.blobs, Duration::ZERO, Duration::ZERO)
            .await
            .expect("gc");
    assert_eq!(report.deleted, 1, "{report:?}");
    assert!(!state.blobs.exists(&old).await.unwrap(), "expired version");
    assert!(state.blobs.exists(&new).await.unwrap(), "current version");
    let (status, body) = text(s.http.get(&url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(body.contains("no longer stored"), "{body}");
    s.server.shutdown().await;
}

/// The published SDK's HTTP client (`pubky` 0.17.1) sends any request to
/// `https://<homeserver>/...` over Pubky TLS: an app reads an old version with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_reads_an_old_version_over_pubky_tls() {
    within(Duration::from_secs(120), "versions over Pubky TLS", async {
        let dht = Dht::start().await;
        let hs = start_on(&dht, |_| {}).await;
        let pubky = dht.sdk();
        let (signer, session) = new_user(&pubky, &hs.server.public_key).await;
        let path = "/pub/versions.test/profile.json";
        session
            .storage()
            .put(path, "{\"v\":1}")
            .await
            .expect("put 1");
        session
            .storage()
            .put(path, "{\"v\":2}")
            .await
            .expect("put 2");

        let base = format!(
            "https://{}/versions/{}{path}",
            hs.server.public_key.to_z32(),
            signer.public_key().z32()
        );
        let client = pubky.client();
        let get = |url: String| async move {
            client
                .request_async(reqwest::Method::GET, url.parse().expect("URL"))
                .await
                .expect("request resolves")
                .send()
                .await
                .expect("response")
        };
        let page = get(base.clone()).await.text().await.expect("list");
        let page: Value = serde_json::from_str(&page).expect("JSON");
        let oldest = page["versions"][1]["seq"].as_u64().expect("two versions");
        assert_eq!(page["versions"][0]["current"], true);
        let r = get(format!("{base}?seq={oldest}")).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["pubky-version"], oldest.to_string().as_str());
        assert_eq!(r.text().await.expect("body"), "{\"v\":1}");
        hs.server.shutdown().await;
    })
    .await;
}
