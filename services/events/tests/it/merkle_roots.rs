//! Merkle roots on feed and stream lines: every file event carries the owner's root
//! right after it, in history and live, and the value is the root of exactly the
//! entries the owner had at that point (recomputed here from scratch).

use crate::common;

use common::{Env, key, read_until};
use domain::merkle::{self, Hash, MemStore};
use std::collections::BTreeMap;
use std::time::Duration;

/// The root a tree holding exactly `entries` has, whatever the order it was built in.
fn root_of(entries: &BTreeMap<String, Hash>) -> String {
    let sorted: Vec<(String, Hash)> = entries.iter().map(|(k, v)| (k.clone(), *v)).collect();
    merkle::root_hex(merkle::build(&sorted, &mut MemStore::default()))
}

/// The test helper's content hash for a put of `path`.
fn content(path: &str) -> Hash {
    *blake3::hash(path.as_bytes()).as_bytes()
}

/// `(cursor, merkle_root)` of every complete SSE frame.
fn frame_roots(text: &str) -> Vec<(u64, Option<String>)> {
    text.split("\n\n")
        .filter(|frame| frame.starts_with("event: "))
        .map(|frame| {
            let field = |name: &str| {
                frame.lines().find_map(|l| {
                    l.strip_prefix(&format!("data: {name}: "))
                        .map(str::to_string)
                })
            };
            let cursor = field("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
            (cursor, field("merkle_root"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_event_carries_the_owners_root_in_history_live_and_the_feed() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    let a = alice.to_z32();
    env.signup(&alice).await;

    // The expected root after each public event, tracked alongside.
    let mut public = BTreeMap::new();
    let mut expected: Vec<(u64, String)> = Vec::new();
    for path in ["/pub/a.txt", "/pub/b.txt", "/pub/dir/c.txt"] {
        let seq = env.put(&alice, path).await;
        public.insert(path.to_string(), content(path));
        expected.push((seq.0, root_of(&public)));
    }
    // A private write changes the private tree only.
    env.put(&alice, "/priv/secret.txt").await;
    let seq = env.del(&alice, "/pub/a.txt").await;
    public.remove("/pub/a.txt");
    expected.push((seq.0, root_of(&public)));
    // Deleting the last entries empties the tree: 64 zeros, not a missing line.
    let mut emptied = public.clone();
    for path in ["/pub/b.txt", "/pub/dir/c.txt"] {
        let seq = env.del(&alice, path).await;
        emptied.remove(path);
        expected.push((seq.0, root_of(&emptied)));
    }
    assert_eq!(
        expected.last().map(|(_, r)| r.as_str()),
        Some(&*"0".repeat(64))
    );
    env.settle().await;

    // Without the opt-in, a stream's data is the reference's: no root lines.
    let plain_stream = reqwest::get(env.url(&format!("/events-stream?user={a}")))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(frame_roots(&plain_stream).len(), expected.len());
    assert!(!plain_stream.contains("merkle_root"), "{plain_stream}");

    // History, then one live event.
    let url = env.url(&format!(
        "/events-stream?user={a}&live=true&merkle_roots=true"
    ));
    let mut response = reqwest::get(url).await.expect("request");
    let mut text = String::new();
    read_until(&mut response, &mut text, Duration::from_secs(10), |t| {
        frame_roots(t).len() >= expected.len()
    })
    .await;
    let seq = env.put(&alice, "/pub/live.txt").await;
    let mut live = BTreeMap::new();
    live.insert("/pub/live.txt".to_string(), content("/pub/live.txt"));
    expected.push((seq.0, root_of(&live)));
    read_until(&mut response, &mut text, Duration::from_secs(10), |t| {
        frame_roots(t).len() >= expected.len()
    })
    .await;
    let got: Vec<(u64, String)> = frame_roots(&text)
        .into_iter()
        .map(|(cursor, root)| (cursor, root.expect("every frame has a merkle_root line")))
        .collect();
    assert_eq!(got, expected);

    // The plain feed is the reference's byte for byte unless roots are asked for.
    let feed = |query: &'static str| {
        let url = env.url(&format!("/events/{query}"));
        async move {
            reqwest::get(url)
                .await
                .expect("request")
                .text()
                .await
                .expect("body")
        }
    };
    let plain = feed("").await;
    assert!(!plain.contains("merkle_root"), "{plain}");
    assert_eq!(plain.lines().count(), expected.len() + 1);
    let with_roots = feed("?merkle_roots=true").await;
    let lines: Vec<&str> = with_roots.lines().collect();
    let pairs: Vec<(String, String)> = lines[..lines.len() - 1]
        .chunks(2)
        .map(|pair| {
            let root = pair[1].strip_prefix("merkle_root: ").expect("root line");
            (pair[0].to_string(), root.to_string())
        })
        .collect();
    let plain_lines: Vec<&str> = plain.lines().collect();
    assert_eq!(
        pairs.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        plain_lines[..plain_lines.len() - 1]
    );
    assert_eq!(
        pairs.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        expected.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>()
    );
    assert_eq!(lines.last(), plain_lines.last());
    let (status, body) = {
        let r = reqwest::get(env.url("/events/?merkle_roots=maybe"))
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    assert_eq!((status, body.as_str()), (400, "Invalid boolean parameter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_stream_carries_the_private_trees_root() {
    let env = Env::start().await;
    let alice = key(1).public_key();
    let a = alice.to_z32();
    env.signup(&alice).await;
    env.put(&alice, "/pub/public.txt").await;
    let seq = env.put(&alice, "/priv/app/one.txt").await;
    let (token, _) = env.session(&alice, &["/priv/:r"]).await;
    env.settle().await;
    let mut private = BTreeMap::new();
    private.insert(
        "/priv/app/one.txt".to_string(),
        content("/priv/app/one.txt"),
    );
    let text = reqwest::Client::new()
        .get(env.url(&format!(
            "/events-stream?user={a}&path=/priv/&merkle_roots=1"
        )))
        .bearer_auth(token.as_str())
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(frame_roots(&text), vec![(seq.0, Some(root_of(&private)))]);
}
