//! `GET /events/`: format, parameters and error texts.

use crate::common;

use common::{Env, key};

async fn get(env: &Env, query: &str) -> (u16, String, String) {
    let response = reqwest::get(env.url(&format!("/events/{query}")))
        .await
        .expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_feed_lines_cursor_and_limits() {
    let env = Env::start().await;
    let (alice, bob) = (key(1).public_key(), key(2).public_key());
    env.signup(&alice).await; // 1
    env.signup(&bob).await; // 2
    env.put(&alice, "/pub/a.com/a.txt").await; // 3
    env.put(&alice, "/priv/secret.txt").await; // 4: never in the feed
    env.put(&bob, "/pub/b.com/x_%.txt").await; // 5
    env.del(&alice, "/pub/a.com/a.txt").await; // 6
    env.settle().await;
    let (a, b) = (alice.to_z32(), bob.to_z32());

    let (status, content_type, body) = get(&env, "").await;
    // The reference's content type: no charset.
    assert_eq!((status, content_type.as_str()), (200, "text/plain"));
    assert_eq!(
        body,
        format!(
            "PUT pubky://{a}/pub/a.com/a.txt\nPUT pubky://{b}/pub/b.com/x_%.txt\nDEL pubky://{a}/pub/a.com/a.txt\ncursor: 6"
        )
    );
    // Paging by cursor, with and without the pubky:// prefix; limits.
    let (_, _, page) = get(&env, "?limit=1").await;
    assert_eq!(page, format!("PUT pubky://{a}/pub/a.com/a.txt\ncursor: 3"));
    let (_, _, page) = get(&env, "?cursor=3&limit=1").await;
    assert_eq!(
        page,
        format!("PUT pubky://{b}/pub/b.com/x_%.txt\ncursor: 5")
    );
    let (_, _, page) = get(&env, "?cursor=pubky://5").await;
    assert_eq!(page, format!("DEL pubky://{a}/pub/a.com/a.txt\ncursor: 6"));
    // The end, limit=0, unparseable limits fall back to the default, the largest
    // cursor (digits beyond u64 are refused below, as the reference refuses them).
    for query in ["?cursor=6", "?limit=0", "?cursor=18446744073709551615"] {
        assert_eq!(get(&env, query).await.2, "", "{query}");
    }
    for query in [
        "?limit=abc",
        "?limit=",
        "?limit=-1",
        "?limit=70000",
        "?limit=5000",
    ] {
        assert!(get(&env, query).await.2.ends_with("cursor: 6"), "{query}");
    }
    // Booleans of the shared listing extractor are validated (and ignored).
    for query in ["?reverse=true", "?shallow=", "?reverse=NO"] {
        assert_eq!(get(&env, query).await.0, 200, "{query}");
    }

    let mut cases = String::new();
    for query in [
        "?cursor=abc",
        "?cursor=-1",
        "?cursor=1.5",
        "?cursor=pubky://",
        "?cursor=ZZZZZZZZZZZZY",
        "?cursor=0000000000002a",
        "?cursor=18446744073709551616",
        "?cursor=9999999999999999999999999999999999999999",
        "?reverse=maybe",
        "?shallow=2",
    ] {
        let (status, content_type, body) = get(&env, query).await;
        cases.push_str(&format!("{query} -> {status} {content_type} {body}\n"));
    }
    insta::assert_snapshot!("feed_errors", cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_timestamp_cursor_names_an_event() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    env.signup(&alice).await;
    let ts = 1_700_000_000_123_456u64;
    env.put_at(&alice, "/pub/first", ts).await; // 2
    env.put(&alice, "/pub/second").await; // 3
    env.settle().await;
    let legacy = crockford(ts);
    assert_eq!(legacy.len(), 13);
    assert!(legacy.bytes().any(|b| b.is_ascii_alphabetic()), "{legacy}");
    let (status, _, body) = get(&env, &format!("?cursor={legacy}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("PUT pubky://{}/pub/second\ncursor: 3", alice.to_z32())
    );
    // Lower case decodes too; a timestamp naming no event is an invalid cursor.
    let (status, _, _) = get(&env, &format!("?cursor={}", legacy.to_lowercase())).await;
    assert_eq!(status, 200);
    let (status, _, body) = get(&env, &format!("?cursor={}", crockford(ts + 1))).await;
    assert_eq!((status, body.as_str()), (400, "Invalid cursor"));
}

/// pubky-timestamp's string form: Crockford base32 of the 8 big-endian bytes.
fn crockford(us: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bits = u128::from(us) << 1;
    (0..13)
        .rev()
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}
