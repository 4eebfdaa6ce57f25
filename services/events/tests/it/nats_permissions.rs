//! Public file events straight from NATS, with private ones kept out by permissions.
//!
//! A nats-server of the test's own runs with the authorization in
//! `services/events/nats/public-reader.conf` (the file operators are told to use). The
//! homeserver's user appends public and private file events and an account event; the
//! `public-reader` user gets exactly the public ones through a consumer filtered to
//! `hs.ev.*.*.pub`, and every other way to the private ones is refused by the server.

use async_nats::jetstream::{self, consumer};
use domain::event::{Change, Digest, public_files_filter};
use domain::{Event, EventSeq, Keypair};
use futures::StreamExt;
use log::{EventLog, Expected, LogConfig};
use std::process::Stdio;
use std::time::Duration;

const HS_PASSWORD: &str = "homeserver-secret";
const READER_PASSWORD: &str = "reader-secret";

/// A nats-server with JetStream and the documented authorization, killed on drop.
struct PermissionedNats {
    port: u16,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl PermissionedNats {
    async fn start() -> Self {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
            panic!(
                "NATS_SERVER_BIN is not set: run the tests with `make test` \
                 (scripts/services.sh installs the pinned nats-server)"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let authorization = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats/public-reader.conf"),
        )
        .unwrap();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n{authorization}",
            dir.path().join("js").display()
        );
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = tokio::process::Command::new(&bin)
            .arg("-c")
            .arg(&config_path)
            .env("HOMESERVER_NATS_PASSWORD", HS_PASSWORD)
            .env("PUBLIC_READER_NATS_PASSWORD", READER_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let nats = PermissionedNats {
            port,
            _child: child,
            _dir: dir,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nats;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server with the permissions configuration did not start");
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }
}

fn file_event(user: &Keypair, change: Change) -> Event {
    Event::new(
        user.public_key(),
        api::now_micros(),
        uuid::Uuid::now_v7().to_string(),
        change,
    )
}

fn put(user: &Keypair, path: &str) -> Event {
    file_event(
        user,
        Change::FilePut {
            path: path.into(),
            content_hash: Digest(*blake3::hash(path.as_bytes()).as_bytes()),
            size: 3,
            content_type: "application/json".into(),
        },
    )
}

/// The server refused or never answered (a permission violation gets no reply).
fn refused<T, E: std::fmt::Display>(what: &str, outcome: Result<T, E>) {
    assert!(
        outcome.is_err(),
        "{what} should be refused to public-reader"
    );
}

#[tokio::test]
async fn a_public_reader_gets_public_file_events_and_nothing_else() {
    let nats = PermissionedNats::start().await;
    let log = EventLog::connect(LogConfig::new(nats.url("homeserver", HS_PASSWORD)))
        .await
        .expect("the homeserver's user connects and creates the stream");
    let (alice, bob) = (Keypair::random(), Keypair::random());
    let mut public = Vec::new();
    let mut private = Vec::new();
    public.push(
        log.append(&put(&alice, "/pub/app/post"), Expected::Any)
            .await
            .unwrap(),
    );
    private.push(
        log.append(&put(&alice, "/priv/app/diary"), Expected::Any)
            .await
            .unwrap(),
    );
    private.push(
        log.append(&file_event(&bob, Change::UserDisabled), Expected::Any)
            .await
            .unwrap(),
    );
    public.push(
        log.append(
            &file_event(
                &bob,
                Change::FileDeleted {
                    path: "/pub/app/x".into(),
                },
            ),
            Expected::Any,
        )
        .await
        .unwrap(),
    );
    private.push(
        log.append(
            &file_event(
                &bob,
                Change::FileDeleted {
                    path: "/priv/app/y".into(),
                },
            ),
            Expected::Any,
        )
        .await
        .unwrap(),
    );

    let reader = async_nats::ConnectOptions::with_user_and_password(
        "public-reader".into(),
        READER_PASSWORD.into(),
    )
    .connect(format!("127.0.0.1:{}", nats.port))
    .await
    .expect("public-reader connects");
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(reader.clone());
    let stream = js.get_stream_no_info("HS_EVENTS").await.unwrap();
    let consumer_with = |filter: &str| consumer::pull::OrderedConfig {
        name: Some(format!("reader-{}", uuid::Uuid::new_v4().simple())),
        filter_subject: filter.to_string(),
        ..Default::default()
    };

    // The documented way: exactly the public file events, in log order.
    let mut messages = stream
        .create_consumer(consumer_with(&public_files_filter("hs")))
        .await
        .expect("a consumer on the public subjects")
        .messages()
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..public.len() {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("public events arrive")
            .unwrap()
            .unwrap();
        let event = Event::from_json(&message.payload).unwrap();
        assert!(
            event
                .change
                .visibility()
                .is_some_and(|v| v.token() == "pub")
        );
        seen.push(EventSeq(message.info().unwrap().stream_sequence));
    }
    assert_eq!(seen, public);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), messages.next())
            .await
            .is_err(),
        "nothing but the public events"
    );

    // Every other way to the private events is refused by the server.
    for filter in ["hs.ev.*.*.priv", "hs.ev.>", "hs.>", "hs.acct.>", ""] {
        refused(
            &format!("a consumer with filter {filter:?}"),
            stream.create_consumer(consumer_with(filter)).await,
        );
    }
    // Control: the same calls work for the homeserver's own user.
    let own = jetstream::new(log.client().clone())
        .get_stream("HS_EVENTS")
        .await
        .unwrap();
    assert!(own.direct_get(private[0].0).await.is_ok());
    assert!(own.get_raw_message(private[0].0).await.is_ok());
    for seq in &private {
        refused("a direct get", stream.direct_get(seq.0).await);
        refused("a stream message get", stream.get_raw_message(seq.0).await);
    }
    refused(
        "stream info (it can list subjects)",
        js.get_stream("HS_EVENTS").await,
    );
    // A plain subscription is refused too: it receives nothing of what follows.
    let mut snoop = reader.subscribe("hs.>").await.unwrap();
    reader.flush().await.unwrap();
    log.append(&put(&alice, "/priv/app/later"), Expected::Any)
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), snoop.next())
            .await
            .map_or(true, |message| message.is_none()),
        "a plain subscription must not see events"
    );
}
