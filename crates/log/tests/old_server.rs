//! Debian's nats-server 2.9.10 accepts the headers this log relies on and silently
//! ignores some of them; connecting to it must fail with a clear message instead.

use std::time::Duration;

const DEBIAN_NATS: &str = "/usr/sbin/nats-server";

#[tokio::test]
async fn a_server_older_than_the_minimum_is_refused() {
    assert!(
        std::path::Path::new(DEBIAN_NATS).exists(),
        "this test runs Debian's old nats-server ({DEBIAN_NATS}, package nats-server)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut server = tokio::process::Command::new(DEBIAN_NATS)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let mut outcome = None;
    for _ in 0..50 {
        match hs_log::EventLog::connect(hs_log::LogConfig::new(&url)).await {
            Err(hs_log::LogError::Connect { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => {
                outcome = Some(other);
                break;
            }
        }
    }
    server.kill().await.unwrap();
    match outcome {
        Some(Err(e @ hs_log::LogError::ServerTooOld { .. })) => {
            let text = e.to_string();
            assert!(text.contains("2.9.10 is too old"), "{text}");
            assert!(text.contains("needs 2.14 or newer"), "{text}");
        }
        Some(Err(e)) => panic!("refused for the wrong reason: {e}"),
        Some(Ok(_)) => panic!("a 2.9 server was accepted"),
        None => panic!("the old server never came up"),
    }
}
