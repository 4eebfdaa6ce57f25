//! The S3 backend against a real S3 API server: moto's server, started by `make test`
//! (`scripts/services.sh`, `S3_URL`). Each test makes a bucket of its own.
//!
//! moto speaks the S3 REST API over HTTP: signed requests, multipart uploads, ranged
//! GETs, server-side copy and listings are the real protocol, so what passes here is what
//! the store sends to AWS, MinIO or Garage. The last test kills an S3 server of its own
//! (`MOTO_SERVER_BIN`) in the middle of an upload. Buckets and servers come from
//! `testkit::s3`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blobs::{BlobError, BlobHash, BlobStore, PutError, READ_CHUNK, blob_key};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};

async fn store() -> BlobStore {
    BlobStore::new(&testkit::s3::shared_bucket().await).expect("s3 store")
}

fn body(data: &[u8], chunk: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + use<> {
    let pieces: Vec<_> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(pieces)
}

fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761) as u8 ^ (i >> 13) as u8)
        .collect()
}

async fn read_all(store: &BlobStore, hash: &BlobHash, range: Option<(u64, u64)>) -> Vec<u8> {
    let s = store.get(hash, range).await.expect("get");
    let chunks: Vec<Bytes> = s.try_collect().await.expect("read");
    assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
    chunks.concat()
}

/// Every key under `prefix` (listing through S3's ListObjectsV2).
async fn keys(store: &BlobStore, prefix: &str) -> Vec<String> {
    store
        .operator()
        .list_with(prefix)
        .recursive(true)
        .await
        .expect("list")
        .into_iter()
        .filter(|e| e.metadata().is_file())
        .map(|e| e.path().to_string())
        .collect()
}

#[tokio::test]
async fn multipart_upload_then_ranged_and_streamed_reads() {
    let store = store().await;
    // Three parts of 8 MiB and a bit: the multipart path, completed on the server.
    let data = content(17 * 1024 * 1024 + 12_345);
    let stored = store
        .put_stream(body(&data, 64 * 1024), None, "/pub/app/video.bin")
        .await
        .expect("put");
    assert_eq!(stored.hash, BlobHash::of(&data));
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(
        keys(&store, "blobs/").await,
        vec![blob_key(&stored.hash)],
        "one object under its content key"
    );
    assert!(
        keys(&store, "tmp/").await.is_empty(),
        "temporary object removed"
    );
    assert_eq!(
        store.size(&stored.hash).await.expect("size"),
        Some(stored.size)
    );

    // Streamed download: 64 KiB chunks of the whole blob.
    let whole = store.get(&stored.hash, None).await.expect("get");
    assert_eq!(whole.len(), data.len() as u64);
    let mut chunks = 0usize;
    let mut read = Vec::with_capacity(data.len());
    let mut whole = whole;
    while let Some(chunk) = whole.next().await {
        let chunk = chunk.expect("chunk");
        assert!(chunk.len() <= READ_CHUNK);
        chunks += 1;
        read.extend_from_slice(&chunk);
    }
    assert!(chunks >= data.len() / READ_CHUNK, "{chunks} chunks");
    assert!(read == data, "streamed bytes differ");

    // Ranged GETs: across a part boundary, the last byte, an end past the end (clamped).
    let boundary = 8 * 1024 * 1024u64;
    for (start, end) in [
        (0, 0),
        (boundary - 10, boundary + 10),
        (data.len() as u64 - 1, data.len() as u64 - 1),
        (data.len() as u64 - 100, u64::MAX - 1),
    ] {
        let got = read_all(&store, &stored.hash, Some((start, end))).await;
        let end = end.min(data.len() as u64 - 1);
        assert!(got == data[start as usize..=end as usize], "{start}-{end}");
    }
    let s = store
        .get(&stored.hash, Some((boundary, boundary + 99)))
        .await
        .expect("range");
    assert_eq!(s.range(), Some((boundary, boundary + 99)));
    assert_eq!(s.total_size(), data.len() as u64);
    assert!(matches!(
        store
            .get(
                &stored.hash,
                Some((data.len() as u64, data.len() as u64 + 5))
            )
            .await,
        Err(BlobError::RangeNotSatisfiable { .. })
    ));
}

#[tokio::test]
async fn small_and_empty_blobs_deduplicate_and_delete() {
    let store = store().await;
    let a = store
        .put_stream(body(b"hello s3", 3), None, "/pub/a.txt")
        .await
        .expect("put a");
    assert_eq!(a.content_type, "text/plain");
    let again = store
        .put_stream(body(b"hello s3", 8), None, "/pub/b.txt")
        .await
        .expect("put again");
    assert_eq!(a.hash, again.hash);
    let empty = store
        .put_stream(body(b"", 1), None, "/pub/empty")
        .await
        .expect("put empty");
    assert_eq!(read_all(&store, &empty.hash, None).await, b"");
    assert_eq!(read_all(&store, &a.hash, None).await, b"hello s3");
    assert_eq!(keys(&store, "blobs/").await.len(), 2);
    assert_eq!(store.total_bytes().await.expect("total"), 8);
    assert!(keys(&store, "tmp/").await.is_empty());

    store.delete(&a.hash).await.expect("delete");
    store.delete(&a.hash).await.expect("deleting twice is fine");
    assert!(!store.exists(&a.hash).await.expect("exists"));
    assert!(matches!(
        store.get(&a.hash, None).await,
        Err(BlobError::NotFound)
    ));
    assert_eq!(
        store.list().await.expect("list"),
        vec![(empty.hash, 0)],
        "only the empty blob left"
    );
}

#[tokio::test]
async fn limit_and_broken_body_leave_nothing() {
    let store = store().await;
    let data = content(10 * 1024 * 1024);
    let err = store
        .put_stream(body(&data, 1024 * 1024), Some(9 * 1024 * 1024), "/pub/big")
        .await
        .expect_err("over the limit");
    assert!(matches!(err, PutError::TooLarge { .. }), "{err}");

    let broken = stream::iter([
        Ok(Bytes::from(content(9 * 1024 * 1024))),
        Err(std::io::Error::other("client went away")),
    ]);
    let err = store
        .put_stream(broken, None, "/pub/broken")
        .await
        .expect_err("broken body");
    assert!(matches!(err, PutError::Body(_)), "{err}");
    assert!(keys(&store, "blobs/").await.is_empty());
    assert!(keys(&store, "tmp/").await.is_empty());
}

/// S3's LastModified has a resolution of a second or so: the ages here are seconds.
#[tokio::test]
async fn gc_deletes_old_unreferenced_blobs_and_abandoned_uploads() {
    let store = store().await;
    let keep = store
        .put_stream(body(b"referenced", 4), None, "/pub/keep")
        .await
        .expect("put")
        .hash;
    let drop = store
        .put_stream(body(b"unreferenced", 4), None, "/pub/drop")
        .await
        .expect("put")
        .hash;
    let refreshed = store
        .put_stream(body(b"uploaded again", 4), None, "/pub/again")
        .await
        .expect("put")
        .hash;
    store
        .operator()
        .write("tmp/abandoned-upload", b"partial".to_vec())
        .await
        .expect("write a leftover");
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Uploaded after the wait: recent, kept although unreferenced.
    let recent = store
        .put_stream(body(b"just uploaded", 4), None, "/pub/new")
        .await
        .expect("put")
        .hash;
    // A deduplicated put refreshes the old blob (server-side copy): kept too.
    store
        .put_stream(body(b"uploaded again", 5), None, "/pub/again2")
        .await
        .expect("put again");

    let asked = Mutex::new(Vec::new());
    let check = |hashes: &[BlobHash]| {
        asked.lock().expect("lock").extend_from_slice(hashes);
        let referenced: HashSet<BlobHash> = hashes.iter().copied().filter(|h| *h == keep).collect();
        async move { Ok::<_, Infallible>(referenced) }
    };
    let report = store.gc(&check, Duration::from_secs(1)).await.expect("gc");
    assert_eq!(report.scanned, 4);
    assert_eq!(report.deleted, 1);
    assert_eq!(report.temp_deleted, 1);
    assert_eq!(report.bytes_freed, "unreferenced".len() as u64 + 7);
    let asked: HashSet<BlobHash> = asked.into_inner().expect("lock").into_iter().collect();
    assert_eq!(
        asked,
        HashSet::from([keep, drop]),
        "recent blobs are not even asked about"
    );

    for (hash, stored) in [
        (keep, true),
        (drop, false),
        (refreshed, true),
        (recent, true),
    ] {
        assert_eq!(store.exists(&hash).await.expect("exists"), stored, "{hash}");
    }
    assert!(keys(&store, "tmp/").await.is_empty());
}

/// The S3 server dies after the first part of a multipart upload went through: the put
/// fails promptly with a backend error (the HTTP layer answers it with 503 and
/// `Retry-After`; services/homeserver/tests/it/s3.rs checks that end to end).
#[tokio::test]
async fn s3_server_killed_mid_upload_fails_the_put() {
    let s3 = testkit::s3::S3Server::start().await;
    let store = BlobStore::new(&testkit::s3::fresh_bucket(&s3.url()).await).expect("s3 store");
    let kept = store
        .put_stream(body(b"before the crash", 4), None, "/pub/ok")
        .await
        .expect("put before the crash");
    assert!(store.exists(&kept.hash).await.expect("exists"));

    // 12 MiB in pieces of 3: the first 8 MiB part goes out with the third piece, then
    // the server is killed before the rest of the body is produced.
    let server = Arc::new(Mutex::new(Some(s3)));
    let killed = Arc::new(AtomicBool::new(false));
    let first = content(12 * 1024 * 1024);
    let data = Bytes::from(first);
    let piece = data.len() / 4;
    let pieces = (0..4usize).map(move |i| data.slice(i * piece..(i + 1) * piece));
    let (srv, k) = (server.clone(), killed.clone());
    let body = stream::iter(pieces.enumerate()).then(move |(i, piece)| {
        let (srv, k) = (srv.clone(), k.clone());
        async move {
            if i == 3 {
                // The first part has been uploaded by now (opendal sends a part when
                // 8 MiB are buffered); give its request time to complete, then kill.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some(s3) = srv.lock().expect("lock").as_mut() {
                    s3.kill();
                }
                k.store(true, Ordering::SeqCst);
            }
            Ok::<_, Infallible>(piece)
        }
    });
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        store.put_stream(body, None, "/pub/crash.bin"),
    )
    .await
    .expect("the put does not hang")
    .expect_err("the put fails");
    assert!(
        killed.load(Ordering::SeqCst),
        "the server was killed mid-upload"
    );
    assert!(matches!(err, PutError::Backend(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        store.exists(&kept.hash).await.is_err(),
        "the server is down"
    );
}
