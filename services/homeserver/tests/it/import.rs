//! `homeserver import` (docs/export.md) between two homeservers with their own
//! databases, logs and blob stores: an archive exported from A is imported into B, the
//! signed roots are equal and every file reads back with identical bytes; a second run
//! resumes (writes nothing again); an archive with a flipped byte or a missing entry is
//! refused naming the first bad path, and nothing of it becomes visible on B.

use crate::common;
use homeserver::archive_cli::{Trees, export};
use homeserver::import::import;
use reqwest::StatusCode;

async fn root(s: &common::TestServer, user: &str, private: bool) -> Option<[u8; 32]> {
    s.server
        .state
        .store
        .merkle_root(user, private)
        .await
        .unwrap()
        .root
}

#[tokio::test]
async fn an_archive_moves_a_user_between_homeservers() {
    let a = common::start().await;
    let b = common::start().await;
    let alice = a.user().await;
    let z = alice.z32();
    let big: Vec<u8> = (0..2 * 1024 * 1024 + 3)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("/pub/app/{i:03}.json"),
                format!("{{\"n\":{i}}}").into_bytes(),
            )
        })
        .collect();
    files.push(("/pub/app/big.bin".into(), big));
    files.extend((0..10).map(|i| {
        (
            format!("/priv/notes/{i}"),
            format!("secret {i}").into_bytes(),
        )
    }));
    for (path, content) in &files {
        let r = a
            .http
            .put(a.storage(&alice, path))
            .bearer_auth(&alice.token)
            .body(content.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{path}");
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("alice.archive");
    export(&a.config, &a.keypair, &z, Trees::All, &archive)
        .await
        .unwrap();

    // Refused archives first: nothing of them becomes visible on B.
    let bytes = std::fs::read(&archive).unwrap();
    let needle = b"\"path\":\"/pub/app/017.json\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let content = at + bytes[at..].iter().position(|b| *b == b'\n').unwrap() + 1;
    let mut flipped = bytes.clone();
    flipped[content] ^= 0x20;
    let bad = dir.path().join("flipped.archive");
    std::fs::write(&bad, &flipped).unwrap();
    let error = import(&b.config, &bad).await.unwrap_err().to_string();
    assert!(error.contains("/pub/app/017.json"), "{error}");
    let start = at - "{\"type\":\"entry\",".len();
    let end = content + "{\"n\":17}".len() + 1;
    let mut missing = bytes[..start].to_vec();
    missing.extend_from_slice(&bytes[end..]);
    let bad = dir.path().join("missing.archive");
    std::fs::write(&bad, &missing).unwrap();
    let error = import(&b.config, &bad).await.unwrap_err().to_string();
    assert!(
        error.contains("/pub/app/017.json") && error.contains("missing"),
        "{error}"
    );
    let key = alice.keypair.public_key();
    assert!(b.server.state.store.user(&key).await.unwrap().is_none());
    assert_eq!(
        b.server.state.log.head().await.unwrap().0,
        0,
        "nothing appended on B"
    );

    // The good one.
    let report = import(&b.config, &archive).await.unwrap();
    assert_eq!((report.written, report.skipped, report.deleted), (51, 0, 0));
    for private in [false, true] {
        assert_eq!(root(&a, &z, private).await, root(&b, &z, private).await);
        assert!(root(&b, &z, private).await.is_some());
    }
    for (path, content) in files.iter().filter(|(p, _)| p.starts_with("/pub/")) {
        let r = b.http.get(b.storage(&alice, path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(&r.bytes().await.unwrap()[..], &content[..], "{path}");
    }
    for (path, content) in files.iter().filter(|(p, _)| p.starts_with("/priv/")) {
        let entry = b
            .server
            .state
            .store
            .entry(&key, path)
            .await
            .unwrap()
            .unwrap();
        let mut stream = b
            .server
            .state
            .blobs
            .get(&blobs::BlobHash(entry.content_hash), None)
            .await
            .unwrap();
        let mut read = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            read.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(&read, content, "{path}");
    }

    // Again: everything is there already; nothing is written twice.
    let head = b.server.state.log.head().await.unwrap();
    let again = import(&b.config, &archive).await.unwrap();
    assert_eq!((again.written, again.skipped), (0, 51));
    assert_eq!(b.server.state.log.head().await.unwrap(), head);
}
