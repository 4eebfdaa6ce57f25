//! The operator CLI against a running homeserver.

use crate::common;

#[tokio::test]
async fn admin_signup_token_mints_a_token_the_server_accepts() {
    let s = common::start_with(|c| {
        c.signup_mode = api::SignupMode::TokenRequired;
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some("cli test password".into());
    })
    .await;
    let admin_url = format!("http://{}", s.server.admin_addr.expect("admin listener"));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeserver"))
        .args(["admin", "signup-token", "--storage-mb", "5"])
        .env("HOMESERVER_ADMIN_URL", &admin_url)
        .env("HOMESERVER_ADMIN_PASSWORD", "cli test password")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run homeserver admin signup-token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 14, "XXXX-XXXX-XXXX: {token}");

    let r = s
        .http
        .get(s.url(&format!("/signup_tokens/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "valid");
    let r = s
        .http
        .get(s.url("/signup_tokens/AAAA-AAAA-AAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
}
