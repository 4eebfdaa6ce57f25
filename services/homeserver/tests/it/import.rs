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

    // Signed by another homeserver than the operator expects: refused, nothing written.
    let stranger = domain::Keypair::random().public_key().to_z32();
    let error = homeserver::import::import_signed_by(&b.config, &archive, Some(&stranger))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not by"), "{error}");

    // The good one, signed by A.
    let a_key = a.keypair.public_key().to_z32();
    let report = homeserver::import::import_signed_by(&b.config, &archive, Some(&a_key))
        .await
        .unwrap();
    assert_eq!(report.signers, [a_key]);
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

/// An archive of `n` small public files of `user`, signed by a homeserver key of its
/// own (the importing operator decides whom to trust; the check is the same).
fn synthetic_archive(user: &str, n: usize, path: &std::path::Path) -> [u8; 32] {
    use domain::archive::{self, EndRecord, EntryRecord, TreeRecord};
    use domain::merkle::{self, MemStore, Node};
    let homeserver = domain::Keypair::random();
    let mut files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("/pub/bulk/{i:06}.txt"),
                format!("file number {i}\n").into_bytes(),
            )
        })
        .collect();
    files.sort();
    let values: Vec<(String, [u8; 32])> = files
        .iter()
        .map(|(p, c)| (p.clone(), *blake3::hash(c).as_bytes()))
        .collect();
    let mut nodes = MemStore::default();
    let root = merkle::build(&values, &mut nodes);
    let statement = merkle::root_statement(user, false, root, n as u64, 1);
    let record = TreeRecord {
        kind: "tree".into(),
        user: user.into(),
        tree: "pub".into(),
        root: merkle::root_hex(root),
        seq: n as u64,
        signature: Some(hex::encode(
            homeserver.sign(statement.as_bytes()).to_bytes(),
        )),
        statement,
        signer: homeserver.public_key().to_z32(),
        nodes: nodes.nodes.len() as u64,
        cursor: None,
    };
    let mut out = format!("{}\n", archive::MAGIC).into_bytes();
    out.extend(archive::record_line(&record));
    for node in nodes.nodes.values() {
        out.extend(archive::node_frame(&Node::encode(node)));
    }
    for ((path, content), (_, hash)) in files.iter().zip(&values) {
        out.extend(archive::record_line(&EntryRecord::new(
            path,
            hash,
            content.len() as u64,
            "text/plain",
        )));
        out.extend_from_slice(content);
        out.push(b'\n');
    }
    out.extend(archive::record_line(&EndRecord::new(n as u64, None)));
    std::fs::write(path, out).unwrap();
    root.unwrap()
}

/// `homeserver import` as a process against B, with B's database, log and blobs.
fn import_command(b: &common::TestServer, archive: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"));
    command
        .arg("import")
        .arg(archive)
        .env("DATABASE_URL", &b.config.database_url)
        .env("NATS_URL", &b.config.nats_url)
        .env("HOMESERVER_NATS_STREAM", &b.config.nats_stream)
        .env(
            "HOMESERVER_NATS_SUBJECT_PREFIX",
            &b.config.nats_subject_prefix,
        )
        .env("HOMESERVER_DATA_DIR", &b.config.data_dir)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// `kill -9` of the importer mid-import, then the same command again: it resumes (the
/// files already there are not written again) and ends with B's root equal to the
/// archive's.
#[tokio::test]
async fn an_import_killed_mid_way_resumes_and_ends_equal() {
    let b = common::start().await;
    let user = domain::Keypair::random().public_key();
    let z = user.to_z32();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bulk.archive");
    const FILES: usize = 3000;
    let signed = synthetic_archive(&z, FILES, &archive);

    let mut first = import_command(&b, &archive).spawn().unwrap();
    let store = &b.server.state.store;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE owner = $1")
            .bind(&z)
            .fetch_one(store.pool())
            .await
            .unwrap();
        if count >= 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the import makes progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    let partial: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE owner = $1")
        .bind(&z)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(
        (200..FILES as i64).contains(&partial),
        "killed mid-way: {partial} of {FILES} imported"
    );

    let output = import_command(&b, &archive).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // At least what was visible before the kill is skipped, not written again.
    let skipped: i64 = stdout
        .split(", ")
        .find_map(|part| part.strip_suffix(" already there"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(skipped >= partial, "{stdout}");
    assert_eq!(
        b.server
            .state
            .store
            .merkle_root(&z, false)
            .await
            .unwrap()
            .root,
        Some(signed)
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE owner = $1")
        .bind(&z)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, FILES as i64);
}
