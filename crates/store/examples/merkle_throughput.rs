//! Measures what maintaining the Merkle trees costs the projector: applies the same
//! file events, in batches of 500 (the projector's default), to two fresh databases,
//! one with the trees and one without, and prints events per second for each.
//!
//! `DATABASE_URL=... NATS_URL=... cargo run -p hs-store --example merkle_throughput [events] [users]`
//!
//! A measurement, not a test: the figures depend on the machine.

use domain::event::{Change, Digest, UserLimits};
use domain::{Event, EventSeq, Keypair};
use hs_store::Store;
use std::time::Instant;

fn events(count: u64, users: u64) -> Vec<(EventSeq, Event)> {
    let keys: Vec<Keypair> = (0..users)
        .map(|n| Keypair::from_secret_key(&[(n + 1) as u8; 32]))
        .collect();
    let mut out = Vec::new();
    let mut seq = 0;
    for key in &keys {
        seq += 1;
        let signup = Change::UserSignedUp {
            signup_token: None,
            limits: UserLimits::default(),
            cookie_session: None,
            pop_nonce: None,
        };
        out.push((
            EventSeq(seq),
            Event::new(key.public_key(), 1, "r".into(), signup),
        ));
    }
    for n in 0..count {
        seq += 1;
        let key = &keys[(n % users) as usize];
        // Mostly new files, every tenth an overwrite of an earlier one.
        let file = if n % 10 == 9 { n / 2 } else { n };
        let path = format!("/pub/example.com/posts/{file:08}.json");
        let change = Change::FilePut {
            content_hash: Digest(*blake3::hash(&n.to_le_bytes()).as_bytes()),
            path,
            size: 100,
            content_type: "application/json".into(),
        };
        out.push((
            EventSeq(seq),
            Event::new(key.public_key(), 1, "r".into(), change),
        ));
    }
    out
}

async fn run(events: &[(EventSeq, Event)], merkle: bool) -> f64 {
    let env = testkit::TestEnv::new().await;
    let mut store = Store::connect(&env.database_url, 2)
        .await
        .expect("database");
    store.migrate().await.expect("migrations");
    if !merkle {
        store = store.without_merkle_for_measurement();
    }
    let start = Instant::now();
    for batch in events.chunks(500) {
        store.apply_batch("p", batch).await.expect("batch");
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(50_000);
    let users: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
        .clamp(1, 255);
    let events = events(count, users);
    // Alternate to even out the machine's noise.
    for _ in 0..2 {
        let without = run(&events, false).await;
        let with = run(&events, true).await;
        println!(
            "{count} file events, {users} users: without trees {without:.0} events/s, with trees {with:.0} events/s ({:.0}%)",
            100.0 * with / without
        );
    }
}
