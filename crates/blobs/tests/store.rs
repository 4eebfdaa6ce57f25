//! The blob store against a real filesystem in a temporary folder.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use blobs::{
    BlobError, BlobHash, BlobStore, BlobStoreConfig, GcReport, PutError, READ_CHUNK, blob_key,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

fn store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::fs(dir.path()).expect("open store");
    (dir, store)
}

/// A body made of `chunk`-sized pieces, like a network stream.
fn body(data: &[u8], chunk: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + use<> {
    let pieces: Vec<_> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(pieces)
}

/// Deterministic, non-repeating test content.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761) as u8 ^ (i >> 13) as u8)
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn read_all(store: &BlobStore, hash: &BlobHash, range: Option<(u64, u64)>) -> Vec<u8> {
    let s = store.get(hash, range).await.expect("get");
    let chunks: Vec<Bytes> = s.try_collect().await.expect("read");
    assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
    chunks.concat()
}

fn set_age(root: &Path, key: &str, age: Duration) {
    let f = std::fs::File::open(root.join(key)).expect("open blob");
    f.set_modified(SystemTime::now() - age).expect("set mtime");
}

#[tokio::test]
async fn round_trip() {
    let (_dir, store) = store();
    let data = content(300_000);
    let stored = store
        .put_stream(body(&data, 16 * 1024), None, "/pub/app/data.bin")
        .await
        .expect("put");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.hash, BlobHash::of(&data));
    assert!(store.exists(&stored.hash).await.expect("exists"));
    assert_eq!(
        store.size(&stored.hash).await.expect("size"),
        Some(data.len() as u64)
    );

    let s = store.get(&stored.hash, None).await.expect("get");
    assert_eq!(s.total_size(), data.len() as u64);
    assert_eq!(s.len(), data.len() as u64);
    assert_eq!(read_all(&store, &stored.hash, None).await, data);

    store.delete(&stored.hash).await.expect("delete");
    assert!(!store.exists(&stored.hash).await.expect("exists"));
    store
        .delete(&stored.hash)
        .await
        .expect("delete is idempotent");
    assert!(matches!(
        store.get(&stored.hash, None).await,
        Err(BlobError::NotFound)
    ));
    assert_eq!(store.size(&stored.hash).await.expect("size"), None);
}

#[tokio::test]
async fn hash_is_blake3_of_the_bytes() {
    let (_dir, store) = store();
    for data in [
        Vec::new(),
        b"hello world".to_vec(),
        content(5 * 1024 * 1024 + 7),
    ] {
        let stored = store
            .put_stream(body(&data, 100_000), None, "/pub/x")
            .await
            .expect("put");
        assert_eq!(stored.hash.as_bytes(), blake3::hash(&data).as_bytes());
        assert_eq!(stored.hash.to_hex(), blake3::hash(&data).to_hex().as_str());
        assert_eq!(read_all(&store, &stored.hash, None).await, data);
    }
}

#[tokio::test]
async fn layout_is_content_addressed() {
    let (dir, store) = store();
    let stored = store
        .put_stream(body(b"abc", 1), None, "/pub/a.txt")
        .await
        .expect("put");
    let hex = blake3::hash(b"abc").to_hex().to_string();
    let key = format!("blobs/{}/{}", &hex[..2], hex);
    assert_eq!(blob_key(&stored.hash), key);
    assert_eq!(
        std::fs::read(dir.path().join(&key)).expect("blob file"),
        b"abc"
    );
    assert!(files_under(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn identical_content_is_stored_once() {
    let (dir, store) = store();
    let data = content(100_000);
    let a = store
        .put_stream(body(&data, 1000), None, "/pub/a.bin")
        .await
        .expect("put a");
    let b = store
        .put_stream(body(&data, 77_777), None, "/pub/other/b.bin")
        .await
        .expect("put b");
    assert_eq!(a.hash, b.hash);
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
    assert!(files_under(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.total_bytes().await.expect("total"), data.len() as u64);
}

#[tokio::test]
async fn content_types() {
    let (_dir, store) = store();
    let cases: [(&[u8], &str, &str); 5] = [
        (PNG, "/pub/pic.txt", "image/png"),
        (PNG, "/pub/pic", "image/png"),
        (br#"{"a":1}"#, "/pub/app/x.json", "application/json"),
        (b"plain words", "/pub/notes.txt", "text/plain"),
        (
            b"\x00\x01\x02 unknown",
            "/pub/blob",
            "application/octet-stream",
        ),
    ];
    for (data, path, expected) in cases {
        // One-byte chunks: detection must not depend on how the network split the body.
        let stored = store
            .put_stream(body(data, 1), None, path)
            .await
            .expect("put");
        assert_eq!(stored.content_type, expected, "{path}");
    }
}

#[tokio::test]
async fn limit_exceeded_leaves_nothing() {
    let (dir, store) = store();
    let data = content(3 * 1024 * 1024);
    let limit = 2 * 1024 * 1024 + 1;
    let err = store
        .put_stream(body(&data, 256 * 1024), Some(limit), "/pub/big")
        .await
        .expect_err("over the limit");
    assert!(
        matches!(err, PutError::TooLarge { limit: l } if l == limit),
        "{err:?}"
    );
    assert!(files_under(&dir.path().join("blobs")).is_empty());
    assert!(files_under(&dir.path().join("tmp")).is_empty());

    // Exactly at the limit is allowed.
    let stored = store
        .put_stream(
            body(&data[..limit as usize], 256 * 1024),
            Some(limit),
            "/pub/big",
        )
        .await
        .expect("at the limit");
    assert_eq!(stored.size, limit);
}

#[tokio::test]
async fn limit_stops_reading_the_body() {
    let (_dir, store) = store();
    let pulled = Mutex::new(0usize);
    let chunks = stream::iter(0..1000).map(|_| {
        *pulled.lock().expect("lock") += 1;
        Ok::<_, Infallible>(Bytes::from(vec![7u8; 1024]))
    });
    let err = store
        .put_stream(chunks, Some(10 * 1024), "/pub/x")
        .await
        .expect_err("too large");
    assert!(matches!(err, PutError::TooLarge { .. }));
    assert_eq!(*pulled.lock().expect("lock"), 11);
}

#[tokio::test]
async fn broken_stream_leaves_nothing() {
    let (dir, store) = store();
    // More than the write buffer, so a temporary file exists when the stream breaks.
    let chunks: Vec<Result<Bytes, io::Error>> = vec![
        Ok(Bytes::from(content(3 * 1024 * 1024))),
        Ok(Bytes::from_static(b"more")),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
        Ok(Bytes::from_static(b"never read")),
    ];
    let err = store
        .put_stream(stream::iter(chunks), None, "/pub/x.bin")
        .await
        .expect_err("broken body");
    match &err {
        PutError::Body(source) => assert!(source.to_string().contains("client went away")),
        other => panic!("expected PutError::Body, got {other:?}"),
    }
    assert!(files_under(&dir.path().join("blobs")).is_empty());
    assert!(files_under(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn abandoned_upload_is_cleaned_up() {
    let (dir, store) = store();
    let first = stream::iter([Ok::<_, Infallible>(Bytes::from(content(2 * 1024 * 1024)))]);
    let hangs = first.chain(stream::pending());
    let put = store.put_stream(hangs, None, "/pub/x");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), put)
            .await
            .is_err()
    );
    // The drop guard spawned the removal.
    for _ in 0..50 {
        if files_under(&dir.path().join("tmp")).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(files_under(&dir.path().join("tmp")).is_empty());
    assert!(files_under(&dir.path().join("blobs")).is_empty());
}

#[tokio::test]
async fn range_reads() {
    let (_dir, store) = store();
    let data = content(200_003);
    let n = data.len() as u64;
    let h = store
        .put_stream(body(&data, 50_000), None, "/pub/r")
        .await
        .expect("put")
        .hash;

    assert_eq!(read_all(&store, &h, Some((0, 0))).await, &data[..1]);
    assert_eq!(
        read_all(&store, &h, Some((n - 1, n - 1))).await,
        &data[data.len() - 1..]
    );
    assert_eq!(
        read_all(&store, &h, Some((65_000, 140_000))).await,
        &data[65_000..=140_000]
    );
    assert_eq!(read_all(&store, &h, Some((0, n - 1))).await, data);
    // An end past the blob is clamped, as HTTP asks.
    assert_eq!(
        read_all(&store, &h, Some((n - 10, u64::MAX))).await,
        &data[data.len() - 10..]
    );

    let s = store.get(&h, Some((10, 19))).await.expect("get");
    assert_eq!(
        (s.len(), s.total_size(), s.range()),
        (10, n, Some((10, 19)))
    );

    for bad in [(n, n), (n + 5, n + 10), (10, 9)] {
        assert!(
            matches!(
                store.get(&h, Some(bad)).await,
                Err(BlobError::RangeNotSatisfiable { .. })
            ),
            "{bad:?}"
        );
    }

    let empty = store
        .put_stream(body(b"", 1), None, "/pub/e")
        .await
        .expect("put empty")
        .hash;
    let s = store.get(&empty, None).await.expect("get empty");
    assert!(s.is_empty());
    assert_eq!(s.range(), None);
    assert!(read_all(&store, &empty, None).await.is_empty());
    assert!(matches!(
        store.get(&empty, Some((0, 0))).await,
        Err(BlobError::RangeNotSatisfiable { .. })
    ));
}

#[tokio::test]
async fn gc_deletes_only_old_unreferenced_blobs() {
    let (dir, store) = store();
    let root = dir.path();
    let two_hours = Duration::from_secs(2 * 3600);
    let grace = Duration::from_secs(3600);

    let put = |data: &'static [u8]| {
        let store = store.clone();
        async move {
            store
                .put_stream(body(data, 4), None, "/pub/x")
                .await
                .expect("put")
        }
    };
    let referenced = put(b"referenced and old").await;
    let garbage = put(b"unreferenced and old").await;
    let recent = put(b"unreferenced but recent").await;
    set_age(root, &blob_key(&referenced.hash), two_hours);
    set_age(root, &blob_key(&garbage.hash), two_hours);

    // Leftovers of crashed uploads.
    std::fs::write(root.join("tmp/old-upload"), b"12345").expect("write tmp");
    set_age(root, "tmp/old-upload", two_hours);
    std::fs::write(root.join("tmp/live-upload"), b"123").expect("write tmp");

    let asked: Mutex<Vec<BlobHash>> = Mutex::new(Vec::new());
    let keep = referenced.hash;
    let check = |hashes: &[BlobHash]| {
        asked.lock().expect("lock").extend_from_slice(hashes);
        let answer: HashSet<BlobHash> = hashes.iter().copied().filter(|h| *h == keep).collect();
        async move { Ok::<_, Infallible>(answer) }
    };
    let report = store.gc(&check, grace).await.expect("gc");

    assert_eq!(
        report,
        GcReport {
            scanned: 3,
            deleted: 1,
            temp_deleted: 1,
            bytes_freed: garbage.size + 5,
        }
    );
    assert!(store.exists(&referenced.hash).await.expect("exists"));
    assert!(store.exists(&recent.hash).await.expect("exists"));
    assert!(!store.exists(&garbage.hash).await.expect("exists"));
    assert!(!root.join("tmp/old-upload").exists());
    assert!(root.join("tmp/live-upload").exists());
    // Recent blobs are not even sent to the reference check.
    let asked = asked.into_inner().expect("lock");
    assert!(!asked.contains(&recent.hash));
    assert!(asked.contains(&garbage.hash));
}

#[tokio::test]
async fn deduplicated_put_protects_an_old_blob_from_gc() {
    let (dir, store) = store();
    let data = b"uploaded again after its last reference was deleted";
    let first = store
        .put_stream(body(data, 8), None, "/pub/a")
        .await
        .expect("put");
    set_age(
        dir.path(),
        &blob_key(&first.hash),
        Duration::from_secs(7200),
    );

    // The same content arrives again; its event is not projected yet.
    let again = store
        .put_stream(body(data, 8), None, "/pub/b")
        .await
        .expect("put again");
    assert_eq!(again.hash, first.hash);

    let nothing_referenced = |_: &[BlobHash]| async { Ok::<_, Infallible>(HashSet::new()) };
    let report = store
        .gc(&nothing_referenced, Duration::from_secs(3600))
        .await
        .expect("gc");
    assert_eq!(report.deleted, 0);
    assert!(store.exists(&first.hash).await.expect("exists"));
}

#[tokio::test]
async fn gc_stops_when_the_reference_check_fails() {
    let (dir, store) = store();
    let stored = store
        .put_stream(body(b"x", 1), None, "/pub/x")
        .await
        .expect("put");
    set_age(
        dir.path(),
        &blob_key(&stored.hash),
        Duration::from_secs(7200),
    );
    let failing =
        |_: &[BlobHash]| async { Err::<HashSet<BlobHash>, _>(io::Error::other("db down")) };
    let err = store
        .gc(&failing, Duration::from_secs(60))
        .await
        .expect_err("gc must fail");
    assert!(matches!(err, blobs::GcError::ReferenceCheck(_)));
    assert!(store.exists(&stored.hash).await.expect("exists"));
}

#[tokio::test]
async fn config_deserializes_and_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: BlobStoreConfig = serde_json::from_value(serde_json::json!({
        "type": "fs",
        "root": dir.path().join("nested/blobs"),
    }))
    .expect("fs config");
    let store = BlobStore::new(&fs).expect("open fs");
    let h = store
        .put_stream(body(b"hi", 1), None, "/pub/hi.txt")
        .await
        .expect("put")
        .hash;
    assert!(store.exists(&h).await.expect("exists"));

    let s3: BlobStoreConfig = serde_json::from_value(serde_json::json!({
        "type": "s3",
        "endpoint": "http://127.0.0.1:9",
        "region": "us-east-1",
        "bucket": "homeserver",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "very-secret",
        "root": "/prod",
    }))
    .expect("s3 config");
    assert!(!format!("{s3:?}").contains("very-secret"));
    let store = BlobStore::new(&s3).expect("s3 operator builds without I/O");
    assert_eq!(store.operator().info().scheme().to_string(), "s3");
    assert_eq!(store.operator().info().name(), "homeserver");

    let no_root: BlobStoreConfig = serde_json::from_value(serde_json::json!({
        "type": "s3", "endpoint": "https://s3.example", "region": "r", "bucket": "b",
        "access_key_id": "a", "secret_access_key": "s",
    }))
    .expect("root is optional");
    assert!(matches!(no_root, BlobStoreConfig::S3 { root: None, .. }));

    let unknown = serde_json::from_value::<BlobStoreConfig>(serde_json::json!({"type": "gcs"}));
    assert!(unknown.is_err());
}

/// No S3 server is reachable here, so this only proves that S3 requests are really made
/// (an HTTP transport is installed and requests are signed): a fake endpoint answers 404
/// to a HEAD, which must come back as "not stored" rather than a configuration error.
#[tokio::test]
async fn s3_backend_sends_signed_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        String::from_utf8_lossy(&request).into_owned()
    });

    let config = BlobStoreConfig::S3 {
        endpoint: format!("http://{addr}"),
        region: "us-east-1".into(),
        bucket: "homeserver".into(),
        access_key_id: "AKIAEXAMPLE".into(),
        secret_access_key: "secret".into(),
        root: Some("/prod".into()),
    };
    let store = BlobStore::new(&config).expect("s3 store");
    let hash = BlobHash::of(b"x");
    assert!(!store.exists(&hash).await.expect("HEAD answered 404"));

    let request = server.await.expect("server");
    let hex = hash.to_hex();
    let first_line = request.lines().next().unwrap_or_default();
    assert_eq!(
        first_line,
        format!("HEAD /homeserver/prod/blobs/{}/{hex} HTTP/1.1", &hex[..2])
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: aws4-hmac-sha256 credential=akiaexample/"),
        "{request}"
    );
}
