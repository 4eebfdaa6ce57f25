//! The admin API and the operator CLI against real NATS and Postgres: every admin
//! action through HTTP and through `homeserver admin …`, and what users then meet
//! (507 over an overridden quota, 403 when disabled or outside the allowed paths).

use crate::common;

use common::{TestServer, TestUser};
use domain::EventSeq;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

const PASSWORD: &str = "correct horse battery staple";

async fn start() -> TestServer {
    common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
    })
    .await
}

fn admin_base(s: &TestServer) -> String {
    format!("http://{}", s.server.admin_addr.expect("admin listener"))
}

fn admin(s: &TestServer, method: Method, path: &str) -> reqwest::RequestBuilder {
    s.http
        .request(method, format!("{}{path}", admin_base(s)))
        .header("X-Admin-Password", PASSWORD)
}

async fn text(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let r = request.send().await.expect("request");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

async fn json_of(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let (status, body) = text(request).await;
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON: {body}"));
    (status, value)
}

async fn put(s: &TestServer, u: &TestUser, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    text(
        s.http
            .put(s.storage(u, path))
            .bearer_auth(&u.token)
            .body(body),
    )
    .await
}

async fn delete(s: &TestServer, u: &TestUser, path: &str) -> (StatusCode, String) {
    text(s.http.delete(s.storage(u, path)).bearer_auth(&u.token)).await
}

/// `homeserver admin <args>` against this server: (success, stdout, stderr).
async fn cli(s: &TestServer, args: &[&str]) -> (bool, String, String) {
    cli_with_password(s, PASSWORD, args).await
}

async fn cli_with_password(
    s: &TestServer,
    password: &str,
    args: &[&str],
) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .arg("admin")
        .args(args)
        .env("HOMESERVER_ADMIN_URL", admin_base(s))
        .env("HOMESERVER_ADMIN_PASSWORD", password)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run homeserver admin");
    (
        output.status.success(),
        String::from_utf8(output.stdout).expect("utf-8 stdout"),
        String::from_utf8(output.stderr).expect("utf-8 stderr"),
    )
}

/// Every event in the log so far (bounded: stops at the head).
async fn log_events(s: &TestServer) -> Vec<domain::Event> {
    let head = s.server.state.log.head().await.expect("head");
    let mut stream = Box::pin(
        s.server
            .state
            .log
            .read(EventSeq(1), None)
            .await
            .expect("read"),
    );
    let mut events = Vec::new();
    while let Some(logged) = stream.next().await {
        let logged = logged.expect("event");
        events.push(logged.event);
        if logged.seq >= head {
            break;
        }
    }
    events
}

/// The operator's events in the log, as `(kind, user)`.
async fn operator_events(s: &TestServer) -> Vec<(&'static str, String)> {
    log_events(s)
        .await
        .into_iter()
        .filter(|e| e.request_id.starts_with(admin::REQUEST_ID_PREFIX))
        .map(|e| (e.change.kind(), e.user.to_z32()))
        .collect()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn the_password_is_required_and_compared_exactly() {
    let s = start().await;
    let base = admin_base(&s);
    let (status, body) = text(s.http.get(format!("{base}/"))).await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_snapshot!(body, @"Homeserver - Admin Endpoint");

    let user = s.user().await.z32();
    let protected = [
        (Method::GET, "/info".to_string()),
        (Method::GET, "/generate_signup_token".into()),
        (Method::POST, "/generate_signup_token".into()),
        (Method::GET, "/signup_tokens".into()),
        (Method::GET, "/events-stream".into()),
        (Method::DELETE, format!("/webdav/{user}/pub/a.txt")),
        (Method::POST, format!("/users/{user}/disable")),
        (Method::POST, format!("/users/{user}/enable")),
        (Method::GET, format!("/users/{user}/quota")),
        (Method::PATCH, format!("/users/{user}/quota")),
    ];
    for (method, path) in &protected {
        let url = format!("{base}{path}");
        let (status, body) = text(s.http.request(method.clone(), &url)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(body, "Missing admin password", "{method} {path}");
        for wrong in ["", "correct horse", "Correct horse battery staple"] {
            let request = s
                .http
                .request(method.clone(), &url)
                .header("X-Admin-Password", wrong);
            let (status, body) = text(request).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {wrong:?}"
            );
            assert_eq!(body, "Invalid admin password", "{method} {path}");
        }
    }
    let (_, body) = text(s.http.get(format!("{base}/info"))).await;
    insta::assert_snapshot!(body, @"Missing admin password");
    let request = s
        .http
        .get(format!("{base}/info"))
        .header("X-Admin-Password", "admin");
    let (_, body) = text(request).await;
    insta::assert_snapshot!(body, @"Invalid admin password");
    // Nothing was done by the refused requests.
    assert!(operator_events(&s).await.is_empty());

    // The CLI reports the server's refusal and fails.
    let (ok, stdout, stderr) = cli_with_password(&s, "admin", &["info"]).await;
    assert!(!ok && stdout.is_empty());
    assert!(
        stderr.contains("401 Unauthorized: Invalid admin password"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_admin_listener_without_a_password_refuses_to_start() {
    let config = homeserver::config::Config {
        admin_listen: Some(([127, 0, 0, 1], 0).into()),
        admin_password: None,
        ..Default::default()
    };
    let error = homeserver::start_all(&config, &domain::Keypair::random())
        .await
        .err()
        .expect("refused");
    insta::assert_snapshot!(error.to_string(), @"admin_listen is set (127.0.0.1:0) but admin_password is not: set HOMESERVER_ADMIN_PASSWORD (there is no default password), or unset HOMESERVER_ADMIN_LISTEN to run without the admin API");
    let config = homeserver::config::Config {
        admin_password: Some(String::new()),
        ..config
    };
    assert!(
        homeserver::start_all(&config, &domain::Keypair::random())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn info_describes_the_server_over_http_and_cli() {
    let s = start().await;
    let alice = s.user().await;
    let bob = s.user().await;
    assert_eq!(
        put(&s, &alice, "/pub/a.bin", vec![7; 3 * 1024 * 1024])
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, _) = text(admin(
        &s,
        Method::POST,
        &format!("/users/{}/disable", bob.z32()),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = text(admin(&s, Method::GET, "/generate_signup_token")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, info) = json_of(admin(&s, Method::GET, "/info")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        info,
        json!({
            "num_users": 2,
            "num_disabled_users": 1,
            "total_disk_used_mb": 3,
            "num_signup_codes": 1,
            "num_unused_signup_codes": 1,
            "public_key": s.keypair.public_key().to_z32(),
            "pkarr_pubky_address": null,
            "pkarr_icann_domain": null,
            "version": env!("CARGO_PKG_VERSION"),
        })
    );

    let (ok, stdout, stderr) = cli(&s, &["info"]).await;
    assert!(ok, "{stderr}");
    let stdout = stdout.replace(&s.keypair.public_key().to_z32(), "<public key>");
    insta::assert_snapshot!(stdout, @r"
    public key:          <public key>
    version:             0.1.0
    users:               2 (1 disabled)
    signup tokens:       1 (1 unused)
    storage used:        3 MB
    pkarr pubky address: -
    pkarr icann domain:  -
    ");
}

#[tokio::test]
async fn signup_tokens_are_minted_with_limits_and_listed() {
    let s = common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
        c.signup_mode = api::SignupMode::TokenRequired;
    })
    .await;
    let (status, plain) = text(admin(&s, Method::GET, "/generate_signup_token")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plain.len(), 14, "XXXX-XXXX-XXXX: {plain}");
    let request = admin(&s, Method::POST, "/generate_signup_token")
        .json(&json!({"storage_quota_mb": 1, "allowed_write_paths": ["/pub/app/"]}));
    let (status, limited) = text(request).await;
    assert_eq!(status, StatusCode::OK);
    let request =
        admin(&s, Method::POST, "/generate_signup_token").body(r#"{"storage_quota_mb":-5}"#);
    let (status, body) = text(request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_snapshot!(body, @r#"Invalid quota: storage_quota_mb must be a whole number of MB (1 MB = 1,048,576 bytes), "unlimited" or null, not -5"#);

    // The server accepts both; the limited one carries its limits.
    for token in [&plain, &limited] {
        let (_, status) = json_of(s.http.get(s.url(&format!("/signup_tokens/{token}")))).await;
        assert_eq!(status["status"], "valid");
    }
    let row = s
        .server
        .state
        .store
        .signup_token(&sha2::Sha256::digest(limited.as_bytes()).into())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        row.limits.storage,
        Some(domain::event::StorageLimit::Megabytes(1))
    );
    assert_eq!(
        row.limits.allowed_write_paths,
        Some(vec!["/pub/app/".to_string()])
    );

    // A signup with the limited token: it becomes used, by that user.
    let user = domain::Keypair::random();
    let mut signup = common::signup_event(&user, row.limits.clone());
    if let domain::event::Change::UserSignedUp { signup_token, .. } = &mut signup.change {
        *signup_token = Some(domain::event::Digest(
            sha2::Sha256::digest(limited.as_bytes()).into(),
        ));
    }
    let seq = s
        .server
        .state
        .log
        .append(&signup, log::Expected::LastSeq(EventSeq(0)))
        .await
        .unwrap();
    assert!(
        s.server
            .state
            .progress
            .wait_for(seq, std::time::Duration::from_secs(10))
            .await
    );

    let (status, page) = json_of(admin(&s, Method::GET, "/signup_tokens")).await;
    assert_eq!(status, StatusCode::OK);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(items[0]["token_hash"], sha256_hex(&plain));
    assert_eq!(items[0]["used_by"], Value::Null);
    assert_eq!(items[1]["token_hash"], sha256_hex(&limited));
    assert_eq!(items[1]["used_by"], user.public_key().to_z32());
    assert!(items[1]["used_at"].is_string());
    assert!(
        items.iter().all(|i| i.get("token").is_none()),
        "the text is never stored"
    );

    let (_, used) = json_of(admin(&s, Method::GET, "/signup_tokens?state=used")).await;
    assert_eq!(used["items"].as_array().unwrap().len(), 1);
    let (_, unused) = json_of(admin(&s, Method::GET, "/signup_tokens?state=unused")).await;
    assert_eq!(unused["items"][0]["token_hash"], sha256_hex(&plain));
    let (_, first) = json_of(admin(&s, Method::GET, "/signup_tokens?limit=1")).await;
    assert_eq!(first["next_cursor"], sha256_hex(&plain));
    let (_, second) = json_of(admin(
        &s,
        Method::GET,
        &format!("/signup_tokens?limit=1&cursor={}", sha256_hex(&plain)),
    ))
    .await;
    assert_eq!(second["items"][0]["token_hash"], sha256_hex(&limited));
    let (status, body) = text(admin(&s, Method::GET, "/signup_tokens?state=spent")).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Invalid state: spent (all, used or unused)"
        )
    );

    // Through the CLI.
    let (ok, token, stderr) = cli(&s, &["signup-token", "--storage-mb", "5"]).await;
    assert!(ok, "{stderr}");
    let token = token.trim();
    assert_eq!(token.len(), 14, "only the token on stdout: {token}");
    let (ok, listing, stderr) = cli(&s, &["signup-tokens", "--state", "unused"]).await;
    assert!(ok, "{stderr}");
    assert!(listing.starts_with("token sha-256"), "{listing}");
    assert!(listing.contains(&sha256_hex(token)) && listing.contains(&sha256_hex(&plain)));
    assert!(
        !listing.contains(&sha256_hex(&limited)),
        "used tokens are not unused"
    );

    let minted: Vec<_> = operator_events(&s)
        .await
        .into_iter()
        .filter(|(kind, _)| *kind == "signup_token_minted")
        .collect();
    assert_eq!(minted.len(), 3, "every mint is an operator event");
}

/// A user disabled while their upload is still streaming: the write is checked again
/// under the user's lock, so it is refused and nothing of it becomes visible.
#[tokio::test]
async fn a_disable_during_an_upload_refuses_the_upload() {
    let s = start().await;
    let u = s.user().await;
    use futures::SinkExt;
    let (mut chunks, body) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let upload = s
        .http
        .put(s.storage(&u, "/pub/late.bin"))
        .bearer_auth(&u.token)
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let upload = tokio::spawn(upload);
    chunks.send(Ok(vec![1u8; 64 * 1024])).await.unwrap();
    let (status, _) = text(admin(
        &s,
        Method::POST,
        &format!("/users/{}/disable", u.z32()),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    chunks.send(Ok(vec![2u8; 64 * 1024])).await.unwrap();
    drop(chunks);
    let response = upload.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().await.unwrap(), "User is disabled");
    let r = s
        .http
        .get(s.storage(&u, "/pub/late.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "nothing of it is visible"
    );
}

#[tokio::test]
async fn a_disabled_user_cannot_write_but_can_read_and_delete_until_enabled() {
    let s = start().await;
    let u = s.user().await;
    assert_eq!(
        put(&s, &u, "/pub/a.txt", b"a".to_vec()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, &u, "/pub/b.txt", b"b".to_vec()).await.0,
        StatusCode::CREATED
    );

    let (status, body) = text(admin(
        &s,
        Method::POST,
        &format!("/users/{}/disable", u.z32()),
    ))
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Ok"));
    let (status, body) = put(&s, &u, "/pub/c.txt", b"c".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    insta::assert_snapshot!(body, @"User is disabled");
    let r = s
        .http
        .get(s.storage(&u, "/pub/a.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "reads still work");
    assert_eq!(
        delete(&s, &u, "/pub/b.txt").await.0,
        StatusCode::NO_CONTENT,
        "deletes still work"
    );

    let (status, body) = text(admin(
        &s,
        Method::POST,
        &format!("/users/{}/enable", u.z32()),
    ))
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Ok"));
    assert_eq!(
        put(&s, &u, "/pub/c.txt", b"c".to_vec()).await.0,
        StatusCode::CREATED
    );

    // Unknown and malformed users.
    let stranger = domain::Keypair::random().public_key().to_z32();
    for action in ["disable", "enable"] {
        let (status, _) = text(admin(
            &s,
            Method::POST,
            &format!("/users/{stranger}/{action}"),
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) =
            text(admin(&s, Method::POST, &format!("/users/nobody/{action}"))).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_REQUEST, "Invalid public key: nobody")
        );
    }

    // The same through the CLI.
    let (ok, stdout, stderr) = cli(&s, &["disable", &u.z32()]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("user {} disabled\n", u.z32()));
    assert_eq!(
        put(&s, &u, "/pub/d.txt", b"d".to_vec()).await.0,
        StatusCode::FORBIDDEN
    );
    let (ok, stdout, stderr) = cli(&s, &["enable", &u.z32()]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("user {} enabled\n", u.z32()));
    assert_eq!(
        put(&s, &u, "/pub/d.txt", b"d".to_vec()).await.0,
        StatusCode::CREATED
    );
    let (ok, _, stderr) = cli(&s, &["disable", &stranger]).await;
    assert!(!ok);
    assert!(stderr.contains("404 Not Found: Not Found"), "{stderr}");

    // Four actions, four events on the user's log, marked as the operator's.
    let user = u.z32();
    assert_eq!(
        operator_events(&s).await,
        vec![
            ("user_disabled", user.clone()),
            ("user_enabled", user.clone()),
            ("user_disabled", user.clone()),
            ("user_enabled", user),
        ]
    );
}

#[tokio::test]
async fn a_quota_override_limits_the_user_and_is_shown_with_the_effective_value() {
    let s = common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
        c.default_quota_mb = Some(100);
    })
    .await;
    let u = s.user().await;
    let quota = format!("/users/{}/quota", u.z32());
    let (status, body) = json_of(admin(&s, Method::GET, &quota)).await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!(body, @r#"
    {
      "effective": {
        "allowed_write_paths": null,
        "rate_read": "unlimited",
        "rate_write": "unlimited",
        "storage_quota_mb": 100
      },
      "overrides": {
        "allowed_write_paths": null,
        "rate_read": null,
        "rate_write": null,
        "storage_quota_mb": null
      }
    }
    "#);

    let request = admin(&s, Method::PATCH, &quota)
        .json(&json!({"storage_quota_mb": 1, "rate_read": "100kb/s"}));
    let (status, body) = json_of(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["effective"]["storage_quota_mb"], 1);
    assert_eq!(body["overrides"]["storage_quota_mb"], 1);
    assert_eq!(body["overrides"]["rate_read"], "100kb/s");

    // 1 MiB: a first file of 1 MiB − 256 fits exactly, anything more is 507.
    assert_eq!(
        put(&s, &u, "/pub/big.bin", vec![1; 1024 * 1024 - 256])
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, body) = put(&s, &u, "/pub/one-more.bin", vec![1]).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    insta::assert_snapshot!(body, @"Disk space quota exceeded");

    // Absent keeps, "unlimited" lifts, null returns to the default.
    let request = admin(&s, Method::PATCH, &quota).json(&json!({"storage_quota_mb": "unlimited"}));
    let (_, body) = json_of(request).await;
    assert_eq!(body["effective"]["storage_quota_mb"], "unlimited");
    assert_eq!(
        body["overrides"]["rate_read"], "100kb/s",
        "absent fields are kept"
    );
    assert_eq!(
        put(&s, &u, "/pub/one-more.bin", vec![1; 2 * 1024 * 1024])
            .await
            .0,
        StatusCode::CREATED
    );
    let request = admin(&s, Method::PATCH, &quota)
        .json(&json!({"storage_quota_mb": null, "rate_read": null}));
    let (_, body) = json_of(request).await;
    assert_eq!(body["effective"]["storage_quota_mb"], 100);
    assert_eq!(
        body["overrides"],
        json!({"storage_quota_mb": null, "rate_read": null, "rate_write": null, "allowed_write_paths": null})
    );

    // Invalid patches change nothing.
    for (patch, expected) in [
        (
            r#"{"storage_quota_mb":1.5}"#,
            r#"Invalid quota: storage_quota_mb must be a whole number of MB (1 MB = 1,048,576 bytes), "unlimited" or null, not 1.5"#,
        ),
        (
            r#"{"rate_write":"fast"}"#,
            r#"Invalid quota: rate_write must be a rate like "100kb/s" or "1mb/m" (kb, mb, gb; /s or /m), "unlimited" or null, not "fast""#,
        ),
        (r#"{"storage":5}"#, "Invalid quota: unknown field storage"),
        (
            r#"{"rate_read_burst":5}"#,
            "Invalid quota: rate_read_burst is not supported",
        ),
    ] {
        let (status, body) = text(admin(&s, Method::PATCH, &quota).body(patch)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{patch}");
        assert_eq!(body, expected);
    }
    let stranger = domain::Keypair::random().public_key().to_z32();
    let (status, _) = text(admin(&s, Method::GET, &format!("/users/{stranger}/quota"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        text(admin(&s, Method::PATCH, &format!("/users/{stranger}/quota")).body("{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Through the CLI: 1 MiB again, then a 2 MiB file does not fit.
    let (ok, stdout, stderr) = cli(
        &s,
        &[
            "quota",
            "set",
            &u.z32(),
            "--storage-mb",
            "4",
            "--rate-write",
            "1mb/s",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    insta::assert_snapshot!(stdout, @r"
    limit                effective            override
    storage_quota_mb     4                    4
    rate_read            unlimited            -
    rate_write           1mb/s                1mb/s
    allowed_write_paths  any                  -
    ");
    let (status, _) = put(&s, &u, "/pub/two.bin", vec![1; 2 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "3 MiB used of 4");
    let (ok, stdout, stderr) = cli(&s, &["quota", "get", &u.z32()]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("storage_quota_mb     4"), "{stdout}");
    let (ok, _, stderr) = cli(&s, &["quota", "set", &u.z32(), "--rate-read", "fast"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("422 Unprocessable Entity: Invalid quota: rate_read must be"),
        "{stderr}"
    );

    let kinds: Vec<_> = operator_events(&s)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kinds,
        vec!["limits_changed"; 4],
        "one event per successful change"
    );
}

#[tokio::test]
async fn allowed_write_paths_restrict_the_user_but_not_the_operator() {
    let s = start().await;
    let u = s.user().await;
    assert_eq!(
        put(&s, &u, "/pub/other.txt", b"x".to_vec()).await.0,
        StatusCode::CREATED
    );
    let quota = format!("/users/{}/quota", u.z32());
    let request = admin(&s, Method::PATCH, &quota)
        .json(&json!({"allowed_write_paths": ["/pub/app/", "/pub/exact.txt"]}));
    let (status, body) = json_of(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["effective"]["allowed_write_paths"],
        json!(["/pub/app/", "/pub/exact.txt"])
    );

    assert_eq!(
        put(&s, &u, "/pub/app/a.txt", b"a".to_vec()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, &u, "/pub/exact.txt", b"a".to_vec()).await.0,
        StatusCode::CREATED
    );
    let (status, body) = put(&s, &u, "/pub/exact.txt.bak", b"a".to_vec()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    insta::assert_snapshot!(body, @"Write to this path is not allowed");
    let (status, _) = delete(&s, &u, "/pub/other.txt").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "deletes are writes too");
    // The operator's delete ignores the user's write paths.
    let (status, _) = text(admin(
        &s,
        Method::DELETE,
        &format!("/webdav/{}/pub/other.txt", u.z32()),
    ))
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Read-only through the CLI, then back to unrestricted.
    let (ok, stdout, stderr) = cli(
        &s,
        &["quota", "set", &u.z32(), "--allowed-write-paths", "none"],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("allowed_write_paths  none (read-only)     none (read-only)"),
        "{stdout}"
    );
    assert_eq!(
        put(&s, &u, "/pub/app/b.txt", b"b".to_vec()).await.0,
        StatusCode::FORBIDDEN
    );
    let (ok, _, stderr) = cli(
        &s,
        &["quota", "set", &u.z32(), "--allowed-write-paths", "default"],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        put(&s, &u, "/pub/anywhere.txt", b"b".to_vec()).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn the_operator_deletes_entries_and_the_feed_shows_it() {
    let s = start().await;
    let u = s.user().await;
    for path in ["/pub/a.txt", "/pub/b.txt", "/priv/secret.txt"] {
        assert_eq!(
            put(&s, &u, path, b"x".to_vec()).await.0,
            StatusCode::CREATED
        );
    }
    let url = format!("/webdav/{}/pub/a.txt", u.z32());
    let (status, body) = text(admin(&s, Method::DELETE, &url)).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let r = s
        .http
        .get(s.storage(&u, "/pub/a.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, _) = text(admin(&s, Method::DELETE, &url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already gone");
    let stranger = domain::Keypair::random().public_key().to_z32();
    let (status, _) = text(admin(
        &s,
        Method::DELETE,
        &format!("/webdav/{stranger}/pub/a.txt"),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = text(admin(
        &s,
        Method::DELETE,
        &format!("/webdav/{}/pub/", u.z32()),
    ))
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "Target path must be a file")
    );

    let (ok, stdout, stderr) = cli(&s, &["delete", &u.z32(), "/pub/b.txt"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("deleted pubky://{}/pub/b.txt\n", u.z32()));
    let (ok, stdout, stderr) = cli(&s, &["delete", &u.z32(), "/priv/secret.txt"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        format!("deleted pubky://{}/priv/secret.txt\n", u.z32())
    );

    // Names that need percent-encoding in a URL are the CLI's business, not the user's.
    let odd = "/pub/a b#c?d%.txt";
    let encoded = "/pub/a%20b%23c%3Fd%25.txt";
    assert_eq!(
        put(&s, &u, encoded, b"x".to_vec()).await.0,
        StatusCode::CREATED
    );
    let (ok, stdout, stderr) = cli(&s, &["delete", &u.z32(), odd]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("deleted pubky://{}{odd}\n", u.z32()));
    let r = s.http.get(s.storage(&u, encoded)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let (_, feed) = text(s.http.get(s.url("/events/"))).await;
    let deletions: Vec<&str> = feed.lines().filter(|l| l.starts_with("DEL ")).collect();
    assert_eq!(
        deletions,
        vec![
            format!("DEL pubky://{}/pub/a.txt", u.z32()),
            format!("DEL pubky://{}/pub/b.txt", u.z32()),
            format!("DEL pubky://{}{odd}", u.z32()),
        ],
        "the public feed shows public deletions only: {feed}"
    );
    let deleted = operator_events(&s).await;
    assert_eq!(deleted, vec![("file_deleted", u.z32()); 4]);
    // The user's usage went down with them.
    let row = s
        .server
        .state
        .store
        .user(&u.keypair.public_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.used_bytes, 0);
}

#[tokio::test]
async fn the_admin_stream_shows_every_users_private_events() {
    let s = start().await;
    let alice = s.user().await;
    let bob = s.user().await;
    assert_eq!(
        put(&s, &alice, "/pub/a.txt", b"a".to_vec()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, &alice, "/priv/diary.txt", b"d".to_vec()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&s, &bob, "/priv/keys.txt", b"k".to_vec()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        delete(&s, &bob, "/priv/keys.txt").await.0,
        StatusCode::NO_CONTENT
    );

    let lines = |body: &str| -> Vec<String> {
        body.lines()
            .filter(|l| l.starts_with("event: ") || l.starts_with("data: pubky://"))
            .map(|l| {
                l.replace(&alice.z32(), "<alice>")
                    .replace(&bob.z32(), "<bob>")
            })
            .collect()
    };
    let (status, body) = text(admin(&s, Method::GET, "/events-stream")).await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_debug_snapshot!(lines(&body), @r#"
    [
        "event: PUT",
        "data: pubky://<alice>/pub/a.txt",
        "event: PUT",
        "data: pubky://<alice>/priv/diary.txt",
        "event: PUT",
        "data: pubky://<bob>/priv/keys.txt",
        "event: DEL",
        "data: pubky://<bob>/priv/keys.txt",
    ]
    "#);
    // Filters: users, paths, a global cursor, limit, reverse.
    let (_, body) = text(admin(
        &s,
        Method::GET,
        &format!("/events-stream?user={}&path=/priv/", alice.z32()),
    ))
    .await;
    assert_eq!(
        lines(&body),
        vec!["event: PUT", "data: pubky://<alice>/priv/diary.txt"]
    );
    let cursor: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("data: cursor: "))
        .and_then(|c| c.parse().ok())
        .expect("cursor");
    let (_, body) = text(admin(
        &s,
        Method::GET,
        &format!("/events-stream?cursor={cursor}"),
    ))
    .await;
    assert_eq!(
        lines(&body)[1],
        "data: pubky://<bob>/priv/keys.txt",
        "after the cursor"
    );
    let (_, body) = text(admin(
        &s,
        Method::GET,
        "/events-stream?reverse=true&limit=1",
    ))
    .await;
    assert_eq!(
        lines(&body),
        vec!["event: DEL", "data: pubky://<bob>/priv/keys.txt"]
    );
    let (status, body) = text(admin(&s, Method::GET, "/events-stream?cursor=abc")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "Invalid cursor: abc")
    );

    // The public stream of the same user still hides private events.
    let (_, body) = text(
        s.http
            .get(s.url(&format!("/events-stream?user={}&path=/priv/", alice.z32()))),
    )
    .await;
    assert!(!body.contains("diary"), "{body}");

    // Live: a private write after the subscription arrives.
    let mut live = admin(&s, Method::GET, "/events-stream?live=true&path=/priv/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        put(&s, &alice, "/priv/later.txt", b"l".to_vec()).await.0,
        StatusCode::CREATED
    );
    let mut received = String::new();
    for _ in 0..50 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), live.chunk())
            .await
            .expect("live event in time")
            .unwrap()
            .expect("stream open");
        received.push_str(&String::from_utf8_lossy(&chunk));
        if received.contains("/priv/later.txt") {
            break;
        }
    }
    assert!(
        received.contains(&format!("pubky://{}/priv/later.txt", alice.z32())),
        "{received}"
    );

    // The CLI prints the stream.
    let (ok, stdout, stderr) = cli(&s, &["events", "--user", &bob.z32(), "--path", "/priv/"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        lines(&stdout),
        vec![
            "event: PUT",
            "data: pubky://<bob>/priv/keys.txt",
            "event: DEL",
            "data: pubky://<bob>/priv/keys.txt"
        ]
    );
}
