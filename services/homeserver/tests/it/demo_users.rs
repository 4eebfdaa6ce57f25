//! `POST /generate_demo_user` on the admin listener: off by default (404), and when
//! enabled a usable account with a seeded tree and a long-lived bearer.

use crate::common;

use reqwest::StatusCode;
use serde_json::Value;

const PASSWORD: &str = "demo password";

async fn start(enabled: bool) -> common::TestServer {
    common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some(PASSWORD.into());
        c.admin_demo_users = enabled;
        c.drive_web_explorer = true;
    })
    .await
}

fn generate(s: &common::TestServer, query: &str) -> reqwest::RequestBuilder {
    let admin = s.server.admin_addr.expect("admin listener");
    s.http
        .post(format!("http://{admin}/generate_demo_user{query}"))
        .header("X-Admin-Password", PASSWORD)
}

#[tokio::test]
async fn demo_users_are_off_by_default() {
    let s = start(false).await;
    let r = generate(&s, "").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_demo_user_can_read_and_write_at_once() {
    let s = start(true).await;
    let admin = s.server.admin_addr.expect("admin listener");
    let r = s
        .http
        .post(format!("http://{admin}/generate_demo_user"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "needs the admin password"
    );
    for (query, text) in [
        ("?capabilities=nope", "Invalid capabilities: "),
        ("?client_id=", "Invalid client_id: "),
        ("?lifetime_days=100000", "lifetime_days is too large"),
    ] {
        let r = generate(&s, query).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = r.text().await.unwrap();
        assert!(body.starts_with(text), "{query}: {body}");
    }

    let r = generate(&s, "").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let demo: Value = r.json().await.unwrap();
    let key = demo["public_key"].as_str().unwrap();
    let token = demo["token"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    let secret = hex::decode(demo["secret_key"].as_str().unwrap()).unwrap();
    let keypair = domain::Keypair::from_secret_key(&secret.try_into().unwrap());
    assert_eq!(keypair.public_key().to_z32(), key);
    let now = api::now_secs();
    let expires = demo["expires_at"].as_u64().unwrap();
    assert!((now + 364 * 86400..=now + 366 * 86400).contains(&expires));
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:{token}"));
    assert_eq!(demo["basic_auth"], format!("Basic {basic}"));
    let drive = demo["drive_url"].as_str().unwrap();
    assert!(
        drive.starts_with("http://localhost:") && drive.ends_with(&format!("/drive?user={key}")),
        "{drive}"
    );
    let seeded: Vec<&str> = demo["seeded_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(seeded.len(), 12);
    assert!(
        seeded.contains(&"/pub/README.txt") && seeded.contains(&"/priv/drive/documents/welcome.md")
    );

    // The files are there, the private ones only with the token; the token writes.
    let url = |path: &str| s.url(&format!("/storage/{key}{path}"));
    let r = s
        .http
        .get(url("/pub/photos/harbour.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    let r = s
        .http
        .get(url("/priv/drive/documents/welcome.md"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .http
        .get(url("/priv/drive/documents/welcome.md"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .put(url("/pub/mine.txt"))
        .bearer_auth(token)
        .body("written by the demo user")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Unseeded, with narrower capabilities.
    let r = generate(
        &s,
        "?seed=false&capabilities=/pub/app/:rw&client_id=demo.app&lifetime_days=1",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let demo: Value = r.json().await.unwrap();
    assert_eq!(demo["seeded_files"].as_array().unwrap().len(), 0);
    let key = demo["public_key"].as_str().unwrap();
    let token = demo["token"].as_str().unwrap();
    let put = |path: &str| {
        s.http
            .put(s.url(&format!("/storage/{key}{path}")))
            .bearer_auth(token)
            .body("x")
            .send()
    };
    assert_eq!(
        put("/pub/app/a.txt").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        put("/pub/other/a.txt").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}
