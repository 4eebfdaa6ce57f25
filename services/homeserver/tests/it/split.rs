//! The split deployment: projector, write-api and read-api as separate processes.
//! A GET sent to the read-api right after the write-api answered sees the write.

use crate::common;

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `homeserver <service>` on an ephemeral port; returns it with its base URL.
async fn spawn(service: &str, env: &testkit::TestEnv, data: &std::path::Path) -> (Child, String) {
    spawn_with(service, env, data, &[]).await
}

async fn spawn_with(
    service: &str,
    env: &testkit::TestEnv,
    data: &std::path::Path,
    vars: &[(&str, &str)],
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .arg(service)
        .envs(vars.iter().copied())
        .env("HOMESERVER_TLS_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &env.database_url)
        .env("NATS_URL", &env.nats_url)
        .env("HOMESERVER_NATS_STREAM", &env.log.stream)
        .env("HOMESERVER_NATS_SUBJECT_PREFIX", &env.log.subject_prefix)
        .env("HOMESERVER_DATA_DIR", data)
        .env("HOMESERVER_HTTP_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn homeserver");
    if service == "projector" {
        return (child, String::new());
    }
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("service starts")
        .expect("read stdout")
        .expect("a line");
    let url = line
        .split(' ')
        .find(|word| word.starts_with("http://"))
        .expect("a URL on the first line")
        .to_string();
    (child, url)
}

#[tokio::test]
async fn reads_from_another_process_see_every_acknowledged_write() {
    let env = testkit::TestEnv::new().await;
    let data = tempfile::tempdir().unwrap();
    let _projector = spawn("projector", &env, data.path()).await;
    let (_writer, write_url) = spawn("write-api", &env, data.path()).await;
    let (_reader, read_url) = spawn("read-api", &env, data.path()).await;
    let (_events, events_url) = spawn("events", &env, data.path()).await;
    let (_gateway, gateway_url) = spawn_with(
        "gateway",
        &env,
        data.path(),
        &[
            ("HOMESERVER_GATEWAY_WRITE_API", &write_url),
            ("HOMESERVER_GATEWAY_READ_API", &read_url),
            ("HOMESERVER_GATEWAY_EVENTS", &events_url),
        ],
    )
    .await;

    let (user, token) = common::user_via_log(&env).await;

    let http = reqwest::Client::new();
    let owner = user.public_key().to_z32();
    for i in 0..25 {
        let path = format!("/storage/{owner}/pub/split/{i}.txt");
        let put = http
            .put(format!("{write_url}{path}"))
            .bearer_auth(token.as_str())
            .body(format!("version {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), reqwest::StatusCode::CREATED);
        let get = http.get(format!("{read_url}{path}")).send().await.unwrap();
        assert_eq!(
            get.status(),
            reqwest::StatusCode::OK,
            "write {i} visible at once"
        );
        assert_eq!(get.text().await.unwrap(), format!("version {i}"));
    }
    // The same through the gateway, which forwards by method and path.
    let path = format!("/storage/{owner}/pub/split/via-gateway.txt");
    let put = http
        .put(format!("{gateway_url}{path}"))
        .bearer_auth(token.as_str())
        .body("through the gateway")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), reqwest::StatusCode::CREATED);
    let get = http
        .get(format!("{gateway_url}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "through the gateway");
    let feed = http
        .get(format!("{gateway_url}/events/"))
        .send()
        .await
        .unwrap();
    let feed = feed.text().await.unwrap();
    assert!(
        feed.contains(&format!("PUT pubky://{owner}/pub/split/via-gateway.txt")),
        "{feed}"
    );

    let del = http
        .delete(format!("{write_url}/storage/{owner}/pub/split/0.txt"))
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), reqwest::StatusCode::NO_CONTENT);
    let gone = http
        .get(format!("{read_url}/storage/{owner}/pub/split/0.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admin_api_runs_as_a_service_of_its_own() {
    // The rest of the homeserver in this process; the admin API in another one, on the
    // same log and database.
    let s = common::start().await;
    let user = s.user().await;
    let data = tempfile::tempdir().unwrap();
    let (_admin, admin_url) = spawn_with(
        "admin-api",
        &s.env,
        data.path(),
        &[
            ("HOMESERVER_ADMIN_LISTEN", "127.0.0.1:0"),
            ("HOMESERVER_ADMIN_PASSWORD", "split secret"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{admin_url}/users/{}/disable", user.z32()))
        .header("X-Admin-Password", "split secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // Answered once projected (by this process's projector): the write-api here sees it.
    let r = http
        .put(s.storage(&user, "/pub/after-disable.txt"))
        .bearer_auth(&user.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(r.text().await.unwrap(), "User is disabled");
    let info: serde_json::Value = http
        .get(format!("{admin_url}/info"))
        .header("X-Admin-Password", "split secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            info["num_users"].as_i64(),
            info["num_disabled_users"].as_i64()
        ),
        (Some(1), Some(1))
    );

    // Without a password the service refuses to start, and says why.
    let output = Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .arg("admin-api")
        .env("HOMESERVER_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("HOMESERVER_ADMIN_PASSWORD")
        .env("HOMESERVER_DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("there is no default password"), "{stderr}");
}
