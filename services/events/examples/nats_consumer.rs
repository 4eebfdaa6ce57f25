//! A third-party consumer of the homeserver's file events, straight from NATS.
//!
//! ```text
//! cargo run -p hs-events --example nats_consumer -- <nats-url> [stream] [subject-prefix] [start-seq]
//! NATS_USER=public-reader NATS_PASSWORD=… \
//!   cargo run -p hs-events --example nats_consumer -- nats://127.0.0.1:4222 HS_EVENTS hs 1
//! ```
//!
//! It uses an *ordered* consumer (ephemeral, flow-controlled, recreated by the client
//! on gaps), filtered to the public file-event subjects `<prefix>.ev.*.*.pub`, which is
//! all the `public-reader` user of `services/events/nats/public-reader.conf` may read
//! (it may not even fetch the stream's info, hence `get_stream_no_info`), and decodes events
//! as plain JSON (the shapes are in `schemas/events/v1/`), so nothing here depends on
//! the homeserver's crates. The stream sequence is the same cursor the HTTP feeds use:
//! persist the last one you processed and restart from the next.

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let stream_name = args.next().unwrap_or_else(|| "HS_EVENTS".into());
    let prefix = args.next().unwrap_or_else(|| "hs".into());
    let start: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);

    // Credentials from the environment (async-nats ignores them in the URL).
    let options = match (std::env::var("NATS_USER"), std::env::var("NATS_PASSWORD")) {
        (Ok(user), Ok(password)) => {
            async_nats::ConnectOptions::with_user_and_password(user, password)
        }
        _ => async_nats::ConnectOptions::new(),
    };
    let client = options.connect(&url).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream_no_info(&stream_name).await?;
    // A name makes async-nats use the `CONSUMER.CREATE.<stream>.<name>.<filter>` API
    // subject, which NATS permissions can restrict to `…ev.*.*.pub` (see the README).
    let filter = format!("{prefix}.ev.*.*.pub");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some(format!("ev-reader-{}-{nanos}", std::process::id())),
            filter_subject: filter.clone(),
            deliver_policy: if start <= 1 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                }
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    eprintln!("following {filter} on {stream_name} from sequence {start}");
    while let Some(message) = messages.next().await {
        let message = message?;
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let event: serde_json::Value = match serde_json::from_slice(&message.payload) {
            Ok(event) => event,
            Err(e) => {
                eprintln!("{seq}: undecodable event on {}: {e}", message.subject);
                continue;
            }
        };
        if event["v"] != 1 {
            eprintln!("{seq}: skipping event of unknown version {}", event["v"]);
            continue;
        }
        let user = event["user"].as_str().unwrap_or("?");
        let path = event["path"].as_str().unwrap_or("?");
        match event["kind"].as_str() {
            Some("file_put") => println!(
                "{seq} PUT pubky://{user}{path} blake3={} size={}",
                event["content_hash"].as_str().unwrap_or("?"),
                event["size"]
            ),
            Some("file_deleted") => println!("{seq} DEL pubky://{user}{path}"),
            other => println!("{seq} {} (ignored)", other.unwrap_or("?")),
        }
    }
    Ok(())
}
