//! The `/drive` web explorer: off by default, its headers and assets over HTTP (here,
//! in `make test`), and the whole page in a real browser (`make e2e-drive`, which
//! runs the ignored test below with Debian's chromium and Playwright).

use crate::common;

use common::start_with;
use reqwest::StatusCode;
use std::path::PathBuf;

const ASSETS: [(&str, &str); 3] = [
    ("/drive", "text/html; charset=utf-8"),
    ("/drive/drive.js", "text/javascript; charset=utf-8"),
    ("/drive/drive.css", "text/css; charset=utf-8"),
];

#[tokio::test]
async fn the_page_is_off_by_default_and_its_paths_are_then_legacy_storage() {
    let s = common::start().await;
    for (path, _) in ASSETS {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert!(
            r.headers().get("content-security-policy").is_none(),
            "{path}"
        );
        // No tenant names whose legacy path this would be: the reference's answer.
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.text().await.unwrap(), "Missing request tenant");
    }
    s.server.shutdown().await;
}

#[tokio::test]
async fn the_page_and_its_assets_carry_the_security_headers() {
    let s = start_with(|c| c.drive_web_explorer = true).await;
    let page = s
        .http
        .get(s.url("/drive?user=anything"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Pubky Drive</title>"));
    assert!(html.contains(r#"id="signin-form""#) && html.contains(r#"id="key""#));
    for (path, content_type) in ASSETS {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let header = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        let policy = header("content-security-policy");
        assert_eq!(policy, drive::CONTENT_SECURITY_POLICY, "{path}");
        // Nothing but this server, and no inline code (stricter than the reference).
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{directive}");
        }
        assert!(
            !policy.contains("unsafe-inline") && !policy.contains("http"),
            "{policy}"
        );
        let head = s.http.head(s.url(path)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
    }
    // Only the exact paths: a trailing slash or another asset name is storage again.
    for path in ["/drive/", "/drive/other.js"] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    let r = s.http.post(s.url("/drive")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    s.server.shutdown().await;
}

/// The page in Debian's chromium, driven by Playwright, at desktop and phone width;
/// screenshots go to `DRIVE_SCREENSHOTS` (docs/drive). Needs `chromium` and
/// `npm ci` in services/drive/e2e: run it with `make e2e-drive`.
#[tokio::test]
#[ignore = "needs chromium and node: make e2e-drive"]
async fn browser_session_in_chromium() {
    let s = start_with(|c| c.drive_web_explorer = true).await;
    let user = s.user().await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("services/drive/e2e/drive.e2e.mjs");
    assert!(
        root.join("services/drive/e2e/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `make e2e-drive` (npm ci in services/drive/e2e)"
    );
    let shots = std::env::var("DRIVE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("drive-e2e"));
    let status = tokio::process::Command::new("node")
        .arg(&script)
        .env("DRIVE_URL", s.url(""))
        .env("DRIVE_KEY", user.z32())
        .env("DRIVE_TOKEN", &user.token)
        .env("DRIVE_SHOTS", &shots)
        .status()
        .await
        .expect("node runs");
    assert!(status.success(), "the browser session failed: {status}");

    // What the two sessions left, read back here: in each folder only the image (the
    // text was deleted), byte-identical PNGs.
    for label in ["desktop", "phone"] {
        let listing = s
            .http
            .get(s.storage(&user, &format!("/pub/{label}-photos/")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            listing,
            format!("pubky://{}/pub/{label}-photos/photo.png", user.z32())
        );
    }
    let desktop = s
        .http
        .get(s.storage(&user, "/pub/desktop-photos/photo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(desktop.headers()["content-type"], "image/png");
    let desktop = desktop.bytes().await.unwrap();
    let phone = s
        .http
        .get(s.storage(&user, "/pub/phone-photos/photo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(phone.bytes().await.unwrap(), desktop);
    assert!(desktop.starts_with(b"\x89PNG\r\n\x1a\n"));
    s.server.shutdown().await;
}
