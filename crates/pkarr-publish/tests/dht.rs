//! Publishing and resolving on a local Mainline testnet (127.0.0.1 only, 3 nodes).
//!
//! Every pkarr client here is built with `no_default_network()`, the testnet bootstrap and
//! a 150 ms DHT request timeout, so nothing leaves the machine and each DHT round trip
//! stays short. Each test owns its testnet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hs_pkarr_publish::packet::{PacketSpec, build_homeserver_packet_at};
use hs_pkarr_publish::{
    DhtConfig, HomeserverRefresh, Publisher, RefreshReason, RepublishSchedule, RetryPolicy,
    RoundReport, UserRepublish, run_republish_loop,
};
use mainline::Testnet;
use pkarr::dns::rdata::{RData, SVCB, SVCParam};
use pkarr::{Client, Keypair, PublicKey, ResolvePolicy, SignedPacket, Timestamp};
use tokio_util::sync::CancellationToken;

const DHT_TIMEOUT: Duration = Duration::from_millis(150);
/// Upper bound for any single DHT operation in these tests (a hang guard, not a timing).
const GUARD: Duration = Duration::from_secs(20);

async fn testnet() -> Testnet {
    tokio::task::spawn_blocking(|| Testnet::builder(3).build().expect("local testnet"))
        .await
        .expect("testnet thread")
}

fn publisher(net: &Testnet) -> Arc<Publisher> {
    Arc::new(Publisher::new(&DhtConfig::local(&net.bootstrap, DHT_TIMEOUT)).expect("publisher"))
}

/// A second, independent client: what another machine would see.
fn resolver(net: &Testnet) -> Client {
    Client::builder()
        .no_default_network()
        .bootstrap(&net.bootstrap)
        .dht_report_policy(pkarr::dht::ReportPolicy::testnet())
        .dht_request_timeout(DHT_TIMEOUT)
        .build()
        .expect("resolver client")
}

async fn resolve(client: &Client, key: &PublicKey) -> SignedPacket {
    tokio::time::timeout(GUARD, client.resolve(key, ResolvePolicy::NetworkOnly))
        .await
        .expect("resolve within the guard")
        .expect("packet resolvable")
}

fn spec(tls_port: u16) -> PacketSpec {
    PacketSpec {
        public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls_port,
        icann: Some(("localhost".to_string(), 6286)),
    }
}

fn apex_https(packet: &SignedPacket) -> Vec<SVCB<'static>> {
    packet
        .resource_records("@")
        .filter_map(|rr| match &rr.rdata {
            RData::HTTPS(https) => Some(https.0.clone().into_owned()),
            _ => None,
        })
        .collect()
}

fn user_packet(user: &Keypair, homeserver: &PublicKey) -> SignedPacket {
    let target = homeserver.to_z32();
    let mut pubky = SVCB::new(0, target.as_str().try_into().expect("name"));
    pubky.set_param(SVCParam::Port(1)); // any param: must survive byte for byte
    SignedPacket::builder()
        .https("_pubky".try_into().expect("name"), pubky, 3600)
        .txt(
            "_app".try_into().expect("name"),
            "hello".try_into().expect("txt"),
            3600,
        )
        .sign(user)
        .expect("user packet")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_the_homeserver_packet_resolvable_by_another_client() {
    let net = testnet().await;
    let publisher = publisher(&net);
    let keypair = Keypair::random();

    tokio::time::timeout(GUARD, publisher.publish_homeserver(&keypair, &spec(6287)))
        .await
        .expect("guard")
        .expect("first publish");

    let other = resolver(&net);
    let packet = resolve(&other, &keypair.public_key()).await;

    let https = apex_https(&packet);
    let tls = https
        .iter()
        .find(|r| r.priority == 1)
        .expect("Pubky TLS record");
    assert!(matches!(tls.target.to_string().as_str(), "" | "."));
    assert_eq!(tls.get_param(3), Some(&SVCParam::Port(6287)));

    let icann = https
        .iter()
        .find(|r| r.priority == 10)
        .expect("ICANN record");
    assert_eq!(icann.target.to_string(), "localhost");
    assert_eq!(
        icann.get_param(65280),
        Some(&SVCParam::Unknown(
            65280,
            6286u16.to_be_bytes().to_vec().into()
        ))
    );

    let a: Vec<Ipv4Addr> = packet
        .resource_records("@")
        .filter_map(|rr| match &rr.rdata {
            RData::A(a) => Some(a.address.into()),
            _ => None,
        })
        .collect();
    assert_eq!(a, vec![Ipv4Addr::LOCALHOST]);

    // What the SDK does with it: the first HTTPS endpoint of the key is the `.` target,
    // reachable at the A record + port.
    let endpoint = tokio::time::timeout(GUARD, other.resolve_https_endpoint(&keypair.to_z32()))
        .await
        .expect("guard")
        .expect("endpoint");
    assert_eq!(endpoint.target(), ".");
    assert_eq!(
        endpoint.to_socket_addrs(),
        vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 6287))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_leaves_a_fresh_packet_alone() {
    let net = testnet().await;
    let publisher = publisher(&net);
    let keypair = Keypair::random();
    let spec = spec(6287);
    publisher
        .publish_homeserver(&keypair, &spec)
        .await
        .expect("publish");
    let other = resolver(&net);
    let before = resolve(&other, &keypair.public_key()).await;

    let outcome = tokio::time::timeout(GUARD, publisher.refresh_homeserver(&keypair, &spec))
        .await
        .expect("guard")
        .expect("refresh");
    assert!(
        matches!(outcome, HomeserverRefresh::Fresh { .. }),
        "{outcome:?}"
    );

    let after = resolve(&other, &keypair.public_key()).await;
    assert_eq!(after.timestamp(), before.timestamp());
    assert_eq!(after.as_bytes(), before.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_republishes_a_stale_packet() {
    let net = testnet().await;
    let publisher = publisher(&net);
    let keypair = Keypair::random();
    let spec = spec(6287);

    // Same records, signed two hours ago.
    let two_hours = 2 * 60 * 60 * 1_000_000;
    let old = build_homeserver_packet_at(&keypair, &spec, Timestamp::now() - two_hours)
        .expect("old packet");
    publisher.client().publish(&old).await.expect("publish old");
    let other = resolver(&net);
    assert_eq!(
        resolve(&other, &keypair.public_key()).await.timestamp(),
        old.timestamp()
    );

    let outcome = tokio::time::timeout(GUARD, publisher.refresh_homeserver(&keypair, &spec))
        .await
        .expect("guard")
        .expect("refresh");
    assert!(
        matches!(
            outcome,
            HomeserverRefresh::Published {
                reason: RefreshReason::Stale,
                ..
            }
        ),
        "{outcome:?}"
    );

    let after = resolve(&other, &keypair.public_key()).await;
    assert!(after.timestamp() > old.timestamp());
    assert!(hs_pkarr_publish::packet::same_records(&after, &old));

    // A tiny threshold makes even the packet just published stale.
    let impatient = Publisher::new(&DhtConfig::local(&net.bootstrap, DHT_TIMEOUT))
        .expect("publisher")
        .with_stale_after(Duration::ZERO);
    let outcome = impatient
        .refresh_homeserver(&keypair, &spec)
        .await
        .expect("refresh");
    assert!(
        matches!(
            outcome,
            HomeserverRefresh::Published {
                reason: RefreshReason::Stale,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(resolve(&other, &keypair.public_key()).await.timestamp() > after.timestamp());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_publishes_when_missing_or_changed() {
    let net = testnet().await;
    let publisher = publisher(&net);
    let keypair = Keypair::random();

    let outcome = publisher
        .refresh_homeserver(&keypair, &spec(6287))
        .await
        .expect("refresh");
    assert!(
        matches!(
            outcome,
            HomeserverRefresh::Published {
                reason: RefreshReason::Missing,
                ..
            }
        ),
        "{outcome:?}"
    );

    // The TLS port moved: the network's packet is recent but wrong.
    let outcome = publisher
        .refresh_homeserver(&keypair, &spec(7000))
        .await
        .expect("refresh");
    assert!(
        matches!(
            outcome,
            HomeserverRefresh::Published {
                reason: RefreshReason::Changed,
                ..
            }
        ),
        "{outcome:?}"
    );
    let packet = resolve(&resolver(&net), &keypair.public_key()).await;
    let https = apex_https(&packet);
    let tls = https.iter().find(|r| r.priority == 1).expect("TLS record");
    assert_eq!(tls.get_param(3), Some(&SVCParam::Port(7000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_packets_are_republished_unchanged_only_when_ours() {
    let net = testnet().await;
    let publisher = publisher(&net);
    let homeserver = Keypair::random().public_key();
    let user_client = resolver(&net);

    let ours = Keypair::random();
    let original = user_packet(&ours, &homeserver);
    user_client.publish(&original).await.expect("user publish");

    let outcome = tokio::time::timeout(
        GUARD,
        publisher.republish_user(&ours.public_key(), &homeserver),
    )
    .await
    .expect("guard")
    .expect("republish");
    match outcome {
        UserRepublish::Republished { stored_on } => assert!(stored_on > 0),
        other => panic!("expected Republished, got {other:?}"),
    }
    // Never re-signed: a third client sees the user's exact bytes (signature, timestamp,
    // records).
    let seen = resolve(&resolver(&net), &ours.public_key()).await;
    assert_eq!(seen.as_bytes(), original.as_bytes());

    let elsewhere = Keypair::random();
    user_client
        .publish(&user_packet(&elsewhere, &Keypair::random().public_key()))
        .await
        .expect("user publish");
    assert_eq!(
        publisher
            .republish_user(&elsewhere.public_key(), &homeserver)
            .await
            .expect("republish"),
        UserRepublish::NotOurs
    );

    // No `_pubky` record at all: not ours either.
    let no_record = Keypair::random();
    user_client
        .publish(
            &SignedPacket::builder()
                .txt(
                    "_x".try_into().expect("name"),
                    "y".try_into().expect("txt"),
                    60,
                )
                .sign(&no_record)
                .expect("packet"),
        )
        .await
        .expect("publish");
    assert_eq!(
        publisher
            .republish_user(&no_record.public_key(), &homeserver)
            .await
            .expect("republish"),
        UserRepublish::NotOurs
    );

    assert_eq!(
        tokio::time::timeout(
            GUARD,
            publisher.republish_user(&Keypair::random().public_key(), &homeserver)
        )
        .await
        .expect("guard")
        .expect("republish"),
        UserRepublish::Missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_runs_rounds_until_cancelled() {
    let net = testnet().await;
    let publisher = publisher(&net);
    let keypair = Keypair::random();
    let spec = spec(6287);
    publisher
        .publish_homeserver(&keypair, &spec)
        .await
        .expect("publish");

    let user_client = resolver(&net);
    let ours = Keypair::random();
    user_client
        .publish(&user_packet(&ours, &keypair.public_key()))
        .await
        .expect("publish");
    let theirs = Keypair::random();
    user_client
        .publish(&user_packet(&theirs, &Keypair::random().public_key()))
        .await
        .expect("publish");

    let users = vec![
        ours.public_key(),
        theirs.public_key(),
        Keypair::random().public_key(),
    ];
    let schedule = RepublishSchedule {
        initial_delay: Duration::ZERO,
        interval: Duration::from_millis(50),
        jitter: Duration::from_millis(20),
        retry: RetryPolicy {
            attempts: 2,
            ..RetryPolicy::default()
        },
        concurrency: 2,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RoundReport>();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_republish_loop(
        Arc::clone(&publisher),
        keypair.clone(),
        spec,
        schedule,
        move || {
            let users = users.clone();
            async move { Ok::<_, std::convert::Infallible>(users) }
        },
        move |report: &RoundReport| {
            let _ = tx.send(report.clone());
        },
        cancel.clone(),
    ));

    for round in 0..2 {
        let report = tokio::time::timeout(GUARD, rx.recv())
            .await
            .expect("a round within the guard")
            .expect("report");
        assert_eq!(
            (
                report.republished,
                report.not_ours,
                report.missing,
                report.failed
            ),
            (1, 1, 1, 0),
            "round {round}: {report:?}"
        );
        assert!(
            matches!(report.homeserver, Some(Ok(HomeserverRefresh::Fresh { .. }))),
            "round {round}: {report:?}"
        );
    }

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("loop stops promptly after cancel")
        .expect("loop task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_publish_fails_clearly_without_a_reachable_dht() {
    // A bootstrap address where nothing answers: a bound UDP socket that never replies.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let address = silent.local_addr().expect("addr").to_string();
    let publisher = Publisher::new(&DhtConfig::local(&[address], DHT_TIMEOUT)).expect("publisher");

    let error = tokio::time::timeout(
        GUARD,
        publisher.publish_homeserver(&Keypair::random(), &spec(6287)),
    )
    .await
    .expect("fails within the guard")
    .expect_err("nothing to publish to");
    assert!(
        error.to_string().contains("publishing the packet of"),
        "{error}"
    );
}
