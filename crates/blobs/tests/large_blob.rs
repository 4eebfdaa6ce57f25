//! Acceptance: a 100 MiB blob is stored and read back with bounded memory.
//!
//! In its own test binary on purpose: `VmHWM` is the high-water mark of the whole process,
//! so any other test running beside this one would distort the figure.

use std::convert::Infallible;

use blobs::{BlobHash, BlobStore, READ_CHUNK};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

const TOTAL: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const MAX_GROWTH_KIB: u64 = 40 * 1024;

/// Chunk `i` of the body: pseudo-random, different for every chunk, generated on demand.
fn chunk(i: u64) -> Bytes {
    let mut buf = vec![0u8; CHUNK];
    blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut buf);
    Bytes::from(buf)
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

#[tokio::test]
async fn hundred_mib_blob_with_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::fs(dir.path()).expect("open store");
    let chunks = TOTAL / CHUNK as u64;

    // Expected hash, computed the same streaming way (nothing of 100 MiB is ever allocated).
    let mut expected = blake3::Hasher::new();
    for i in 0..chunks {
        expected.update(&chunk(i));
    }
    let expected = BlobHash::from(expected.finalize());

    // Warm up the runtime's blocking pool and allocator, then reset the high-water mark
    // (Linux: writing 5 to clear_refs) so only what follows counts.
    let warm = store
        .put_stream(
            stream::iter([Ok::<_, Infallible>(chunk(u64::MAX))]),
            None,
            "/w",
        )
        .await
        .expect("warm-up put");
    let _: Vec<Bytes> = store
        .get(&warm.hash, None)
        .await
        .expect("get")
        .try_collect()
        .await
        .expect("read");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kib("VmRSS");
    let hwm_before = status_kib("VmHWM");

    let body = stream::iter(0..chunks).map(|i| Ok::<_, Infallible>(chunk(i)));
    let stored = store
        .put_stream(body, None, "/pub/big.bin")
        .await
        .expect("put 100 MiB");
    assert_eq!(stored.size, TOTAL);
    assert_eq!(stored.hash, expected);
    let rss_after_put = status_kib("VmRSS");
    let hwm_after_put = status_kib("VmHWM");

    let mut read = store.get(&stored.hash, None).await.expect("get");
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    let mut max_chunk = 0usize;
    while let Some(bytes) = read.next().await {
        let bytes = bytes.expect("read chunk");
        max_chunk = max_chunk.max(bytes.len());
        len += bytes.len() as u64;
        hasher.update(&bytes);
    }
    assert_eq!(len, TOTAL);
    assert_eq!(BlobHash::from(hasher.finalize()), expected);
    assert!(max_chunk <= READ_CHUNK);

    let rss_after = status_kib("VmRSS");
    let hwm_after = status_kib("VmHWM");
    let growth = hwm_after.saturating_sub(rss_before);
    println!(
        "100 MiB put+get: VmRSS before {rss_before} KiB, after put {rss_after_put} KiB, after get \
         {rss_after} KiB; VmHWM before {hwm_before} KiB, after put {hwm_after_put} KiB, after get \
         {hwm_after} KiB (high-water mark reset: {reset}); peak growth {growth} KiB = {:.1} MiB",
        growth as f64 / 1024.0
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB while storing and reading 100 MiB"
    );
}
