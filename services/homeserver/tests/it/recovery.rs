//! Recovery from a lost log: `homeserver reseed` re-creates it from the projections,
//! after which every account and file reads back, writes work again, and the feed
//! marks the re-stated events.

use crate::common;
use crate::log_pairing::delete_stream;
use domain::EventSeq;
use domain::event::Origin;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use std::collections::BTreeMap;

async fn roots(server: &common::TestServer, users: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for user in users {
        for private in [false, true] {
            let root = server
                .server
                .state
                .store
                .merkle_root(user, private)
                .await
                .expect("root");
            out.insert(
                format!("{user} {private}"),
                domain::merkle::root_hex(root.root),
            );
        }
    }
    out
}

async fn feed(server: &common::TestServer, after: u64) -> reqwest::Response {
    let response = server
        .http
        .get(server.url(&format!("/events/?cursor={after}&limit=1000")))
        .send()
        .await
        .expect("feed");
    assert_eq!(response.status(), StatusCode::OK);
    response
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

#[tokio::test]
async fn a_lost_log_is_reseeded_from_the_projections() {
    let server = common::start().await;
    let alice = server.user().await;
    let (bob, bob_cookie) = server.cookie_signup().await;
    let mut files = Vec::new();
    for i in 0..30 {
        let path = format!("/pub/reseed/{i:02}.txt");
        server.put_ok(&alice, &path, &format!("alice {i}")).await;
        files.push((alice.z32(), path, format!("alice {i}")));
    }
    server
        .put_ok(&alice, "/priv/secret.txt", "only alice")
        .await;
    server.put_ok(&alice, "/pub/reseed/gone.txt", "gone").await;
    server.delete_ok(&alice, "/pub/reseed/gone.txt").await;
    let bob_put = server
        .http
        .put(server.url(&format!("/storage/{bob}/pub/bob.txt")))
        .header(COOKIE, &bob_cookie)
        .body("bob's")
        .send()
        .await
        .expect("PUT");
    assert_eq!(bob_put.status(), StatusCode::CREATED);
    files.push((bob.clone(), "/pub/bob.txt".into(), "bob's".into()));

    // WebDAV state beyond files: an empty folder and a dead property.
    let dav = |path: &str| server.url(&format!("/dav/{}{path}", alice.z32()));
    let mkcol = server
        .http
        .request(
            reqwest::Method::from_bytes(b"MKCOL").unwrap(),
            dav("/pub/empty/"),
        )
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("MKCOL");
    assert_eq!(mkcol.status(), StatusCode::CREATED);
    let proppatch = server
        .http
        .request(reqwest::Method::from_bytes(b"PROPPATCH").unwrap(), dav("/pub/reseed/00.txt"))
        .bearer_auth(&alice.token)
        .body(r#"<propertyupdate xmlns="DAV:"><set><prop><z:tag xmlns:z="urn:z">kept</z:tag></prop></set></propertyupdate>"#)
        .send()
        .await
        .expect("PROPPATCH");
    assert_eq!(proppatch.status(), StatusCode::MULTI_STATUS);

    let users = [alice.z32(), bob.clone()];
    let roots_before = roots(&server, &users).await;
    let before = feed(&server, 0).await;
    let log_id_before = header(&before, "pubky-log-id").expect("a log id");
    assert_eq!(header(&before, "pubky-log-reseeded-through"), None);
    let body = before.text().await.expect("feed");
    let cursor: u64 = body
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("cursor: "))
        .and_then(|c| c.parse().ok())
        .expect("cursor line");

    // A log that is still there has nothing to re-seed.
    let refused = homeserver::recovery::reseed(&server.config, &server.keypair, false, false)
        .await
        .expect_err("refused");
    assert!(
        refused.to_string().contains("nothing to re-seed"),
        "{refused}"
    );

    // The log is lost; the projections are intact.
    let stopped = server.stop().await;
    delete_stream(&stopped.config.log_config()).await;
    let report = homeserver::recovery::reseed(&stopped.config, &stopped.keypair, false, false)
        .await
        .expect("reseed");
    assert_eq!(report.users, 2);
    assert_eq!(report.entries, 32, "30 + the private file + bob's");
    assert!(
        report.first.0 > cursor,
        "the new log goes on after the old one"
    );
    assert_eq!(report.trees_compared, 4);
    let server = stopped.start().await;

    // Everything reads back, with its bytes, and the trees are the same.
    for (owner, path, body) in &files {
        let read = server
            .http
            .get(server.url(&format!("/storage/{owner}{path}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(read.status(), StatusCode::OK, "{path}");
        assert_eq!(&read.text().await.expect("body"), body);
    }
    let secret = server
        .http
        .get(server.storage(&alice, "/priv/secret.txt"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(secret.text().await.expect("body"), "only alice");
    let gone = server
        .http
        .get(server.storage(&alice, "/pub/reseed/gone.txt"))
        .send()
        .await
        .expect("GET");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(roots(&server, &users).await, roots_before);

    // Sessions survived (bearer and cookie), and writes work again.
    server
        .put_ok(&alice, "/pub/reseed/after.txt", "after")
        .await;
    let bob_again = server
        .http
        .put(server.url(&format!("/storage/{bob}/pub/bob.txt")))
        .header(COOKIE, &bob_cookie)
        .body("bob's second")
        .send()
        .await
        .expect("PUT");
    assert_eq!(bob_again.status(), StatusCode::CREATED);

    // The feed goes on from the old cursor: first the re-stated files, marked, then the
    // new writes; and it says the log changed.
    let after = feed(&server, cursor).await;
    assert_ne!(header(&after, "pubky-log-id"), Some(log_id_before));
    assert_eq!(
        header(&after, "pubky-log-reseeded-through"),
        Some(report.last.0.to_string())
    );
    let body = after.text().await.expect("feed");
    let lines: Vec<&str> = body.lines().collect();
    let restated = lines
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains("/pub/reseed/"))
        .count();
    assert!(restated >= 31, "30 re-stated files and the new one: {body}");
    assert!(
        !body.contains("gone.txt"),
        "a deleted file is not re-stated: {body}"
    );
    let new_write = format!("PUT pubky://{}/pub/reseed/after.txt", alice.z32());
    assert!(lines.contains(&new_write.as_str()), "{body}");
    let bob_line = format!("PUT pubky://{bob}/pub/bob.txt");
    assert_eq!(
        lines.iter().filter(|l| **l == bob_line).count(),
        2,
        "re-stated once, written once: {body}"
    );

    // In the log itself, the re-stated events say where they come from.
    let first = server
        .server
        .state
        .log
        .event_at(report.first)
        .await
        .expect("first event");
    assert!(
        matches!(first.event.origin, Some(Origin::Reseed { ref previous_log }) if previous_log == &report.previous),
        "{:?}",
        first.event.origin
    );
    let newest = server.server.state.log.head().await.expect("head");
    let last_write = server
        .server
        .state
        .log
        .event_at(newest)
        .await
        .expect("event");
    assert_eq!(last_write.event.origin, None);
    assert!(newest > report.last && report.last >= EventSeq(report.first.0 + 30));
    // WebDAV's folders and dead properties are re-stated too: they read back, and a
    // replay of the new log gives the same rows (the history tables differ by design:
    // the re-seeded log starts from the state, not from the history).
    let propfind = server
        .http
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            server.url(&format!("/dav/{}/pub/reseed/00.txt", alice.z32())),
        )
        .bearer_auth(&alice.token)
        .header("depth", "0")
        .send()
        .await
        .expect("PROPFIND")
        .text()
        .await
        .expect("body");
    assert!(propfind.contains(">kept</R:tag>"), "{propfind}");
    let state = &server.server.state;
    let rebuilt = projector::rebuild(
        &state.log,
        &state.store,
        &server.env.database_url,
        "rebuild_reseeded",
        false,
        false,
    )
    .await
    .expect("rebuild");
    let dav_differences: Vec<_> = rebuilt
        .differences
        .iter()
        .filter(|(table, _)| table.starts_with("dav_"))
        .collect();
    assert!(dav_differences.is_empty(), "{:?}", rebuilt.differences);
    server.server.shutdown().await;
}

/// One acknowledged write of the drill.
struct Acked {
    user: usize,
    path: String,
    body: Vec<u8>,
    at: std::time::Instant,
}

/// Writes `total` small files from `writers` users at once, and takes a backup into
/// `dir` once `backup_after` of them are acknowledged, while the writes go on.
async fn write_and_back_up(
    server: &common::TestServer,
    users: &[common::TestUser],
    total: usize,
    backup_after: usize,
    dir: &std::path::Path,
) -> (
    Vec<Acked>,
    std::time::Instant,
    homeserver::recovery::BackupManifest,
    f64,
) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (index, user) in users.iter().enumerate() {
        let (http, url, token) = (
            server.http.clone(),
            server.storage(user, "/pub/drill/"),
            user.token.clone(),
        );
        let (done, writers) = (done.clone(), users.len());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in (index..total).step_by(writers) {
                let path = format!("/pub/drill/{i:07}.txt");
                let body =
                    format!("write {i} of user {index}: {}", "x".repeat(i % 97)).into_bytes();
                let response = http
                    .put(format!("{url}{i:07}.txt"))
                    .bearer_auth(&token)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("PUT");
                // 202: acknowledged, not yet visible (the projector lags under load).
                assert!(
                    [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&response.status()),
                    "{path}: {}",
                    response.status()
                );
                acked.push(Acked {
                    user: index,
                    path,
                    body,
                    at: std::time::Instant::now(),
                });
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            acked
        }));
    }
    for _ in 0..20_000 {
        if done.load(std::sync::atomic::Ordering::Relaxed) >= backup_after {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let manifest = homeserver::recovery::backup(&server.config, dir, false)
        .await
        .expect("backup");
    let seconds = started.elapsed().as_secs_f64();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("writer"));
    }
    (acked, started, manifest, seconds)
}

/// The public Merkle root of `user` right after event `seq`, from the feed's record.
async fn public_root_at(database_url: &str, user: &str, seq: u64) -> String {
    let pool = sqlx::PgPool::connect(database_url).await.expect("db");
    let root: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT merkle_root FROM events WHERE owner = $1 AND NOT private AND seq <= $2
         ORDER BY seq DESC, line DESC LIMIT 1",
    )
    .bind(user)
    .bind(seq as i64)
    .fetch_optional(&pool)
    .await
    .expect("root")
    .flatten();
    hex::encode(root.unwrap_or(vec![0; 32]))
}

/// The drill: write under load, back up, wipe NATS, Postgres, the blob store and the
/// key, restore, let the projector rebuild: every write acknowledged before the backup
/// reads back with its bytes, every user's root is its value at the backup's position.
async fn backup_drill(total: usize) {
    let server = common::start().await;
    let users: Vec<common::TestUser> =
        futures::future::join_all((0..8).map(|_| server.user())).await;
    let backup = tempfile::tempdir().expect("tempdir");
    let dir = backup.path().join("backup");
    let write_started = std::time::Instant::now();
    let (acked, backup_started, manifest, backup_seconds) =
        write_and_back_up(&server, &users, total, total / 2, &dir).await;
    let write_seconds = write_started.elapsed().as_secs_f64();
    let original_database = server.config.database_url.clone();
    let homeserver_key = server.keypair.public_key();

    // The machine is wiped: the log, the database, the blobs and the key.
    let mut stopped = server.stop().await;
    delete_stream(&stopped.config.log_config()).await;
    stopped.config.database_url = testkit::TestEnv::new().await.database_url;
    std::fs::remove_dir_all(stopped.config.data_dir.join("blobs")).expect("wipe blobs");
    std::fs::remove_file(stopped.config.data_dir.join("secret")).expect("wipe key");

    let restore_started = std::time::Instant::now();
    let report = homeserver::recovery::restore(&stopped.config, &dir, false)
        .await
        .expect("restore");
    let restore_seconds = restore_started.elapsed().as_secs_f64();
    assert!(report.last_seq >= manifest.last_seq);
    // The roots the original server had right after the restored log's last event.
    let mut expected_roots = Vec::new();
    for user in &users {
        expected_roots.push(public_root_at(&original_database, &user.z32(), report.last_seq).await);
    }
    let restored_key = pkarr_publish::identity::load(&stopped.config.data_dir.join("secret"))
        .expect("restored key");
    assert_eq!(restored_key.public_key(), homeserver_key);
    let rebuild_started = std::time::Instant::now();
    let server = stopped.start().await;
    assert!(
        server
            .server
            .state
            .progress
            .wait_for(
                EventSeq(report.last_seq),
                std::time::Duration::from_secs(1800)
            )
            .await,
        "the projections are rebuilt up to the backup"
    );
    let rebuild_seconds = rebuild_started.elapsed().as_secs_f64();

    let before_backup: Vec<&Acked> = acked.iter().filter(|a| a.at < backup_started).collect();
    assert!(before_backup.len() >= total / 2);
    // Read back many at once: one at a time, each waits out a delayed ACK.
    let reads = futures::stream::iter(before_backup.iter().map(|write| {
        let request = server
            .http
            .get(server.storage(&users[write.user], &write.path))
            .send();
        async move {
            let read = request.await.expect("GET");
            assert_eq!(read.status(), StatusCode::OK, "{}", write.path);
            assert_eq!(
                read.bytes().await.expect("body").as_ref(),
                write.body.as_slice()
            );
        }
    }))
    .buffer_unordered(64);
    reads.collect::<Vec<()>>().await;
    for (user, expected) in users.iter().zip(&expected_roots) {
        let root = server
            .server
            .state
            .store
            .merkle_root(&user.z32(), false)
            .await
            .expect("root");
        assert_eq!(
            &domain::merkle::root_hex(root.root),
            expected,
            "{}",
            user.z32()
        );
    }
    let size = |path: &std::path::Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup drill: {total} writes in {write_seconds:.1}s; backup of {} events ({} bytes of \
         log snapshot, {} blobs of {} bytes) in {backup_seconds:.1}s while writing; restore in \
         {restore_seconds:.1}s; projections rebuilt in {rebuild_seconds:.1}s; manifest {} bytes; \
         {} writes acknowledged before the backup read back",
        report.last_seq,
        manifest.log.bytes,
        report.manifest.blobs,
        report.manifest.blob_bytes,
        size(&dir.join("manifest.json")),
        before_backup.len()
    );
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_a_wiped_machine() {
    backup_drill(400).await;
}

/// `make drill-backup`: the same drill with `DRILL_WRITES` writes (100,000 unless set).
#[tokio::test]
#[ignore = "minutes long: run by `make drill-backup`"]
async fn backup_drill_at_scale() {
    let total = std::env::var("DRILL_WRITES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    backup_drill(total).await;
}
