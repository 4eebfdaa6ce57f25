//! WebDAV at `/dav/<user>/` over real NATS and Postgres: the three ways to present a
//! session, the same authorization as REST, and bad input refused with a clear 4xx
//! that changes nothing.

use crate::common;

use base64::Engine;
use common::{TestServer, TestUser, start};
use reqwest::{Method, StatusCode};

pub fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("method")
}

pub fn dav(s: &TestServer, u: &TestUser, path: &str) -> String {
    s.url(&format!("/dav/{}{}", u.z32(), path))
}

pub async fn propfind(
    s: &TestServer,
    u: &TestUser,
    path: &str,
    depth: &str,
) -> (StatusCode, String) {
    let r = s
        .http
        .request(method("PROPFIND"), dav(s, u, path))
        .bearer_auth(&u.token)
        .header("depth", depth)
        .send()
        .await
        .expect("PROPFIND");
    (r.status(), r.text().await.expect("body"))
}

pub async fn text(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    (status, r.text().await.expect("body"))
}

#[tokio::test]
async fn sessions_by_bearer_basic_and_cookie() {
    let s = start().await;
    let u = s.user().await;
    let url = dav(&s, &u, "/");

    let r = s
        .http
        .request(method("PROPFIND"), &url)
        .header("depth", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"pubky\"");
    assert_eq!(r.text().await.unwrap(), "Unauthorized");

    let (status, body) = propfind(&s, &u, "/", "0").await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert!(
        body.contains(&format!("<D:href>/dav/{}/</D:href>", u.z32())),
        "{body}"
    );
    assert!(body.contains("<D:collection/>"), "{body}");

    // Basic: the user name is ignored, the password is the bearer token.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", u.z32(), u.token));
    let r = s
        .http
        .request(method("PROPFIND"), &url)
        .header("authorization", format!("Basic {basic}"))
        .header("depth", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MULTI_STATUS);
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{}:nope", u.z32()));
    let r = s
        .http
        .request(method("PROPFIND"), &url)
        .header("authorization", format!("Basic {wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The session cookie of the drive the URL names.
    let (z32, cookie) = s.cookie_signup().await;
    let r = s
        .http
        .request(method("PROPFIND"), s.url(&format!("/dav/{z32}/")))
        .header("cookie", cookie)
        .header("depth", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MULTI_STATUS);
}

#[tokio::test]
async fn read_only_methods_show_what_rest_stored() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/docs/a b.txt", "hello").await;
    s.put_ok(&u, "/pub/docs/sub/c.txt", "deeper").await;
    s.put_ok(&u, "/priv/secret.txt", "mine").await;

    let r = s
        .http
        .request(Method::OPTIONS, dav(&s, &u, "/"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["dav"].to_str().unwrap().starts_with('1'));
    assert!(r.headers()["allow"].to_str().unwrap().contains("PROPFIND"));

    let (status, body) = propfind(&s, &u, "/pub/docs/", "1").await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    let base = format!("/dav/{}/pub/docs/", u.z32());
    assert!(body.contains(&format!("<D:href>{base}</D:href>")), "{body}");
    assert!(
        body.contains(&format!("<D:href>{base}a%20b.txt</D:href>")),
        "{body}"
    );
    assert!(
        body.contains(&format!("<D:href>{base}sub/</D:href>")),
        "{body}"
    );
    assert!(
        body.contains("<D:getcontentlength>5</D:getcontentlength>"),
        "{body}"
    );
    assert!(
        !body.contains("c.txt"),
        "depth 1 stops at the children: {body}"
    );

    // Depth 0 of a collection named without its slash; the top folders always exist.
    let (status, body) = propfind(&s, &u, "/pub/docs", "0").await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body.matches("<D:response>").count(), 1, "{body}");
    let (status, body) = propfind(&s, &u, "/", "1").await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert!(
        body.contains(&format!("/dav/{}/priv/</D:href>", u.z32())),
        "{body}"
    );

    // A named property that does not exist is reported 404 in its own propstat.
    let r = s
        .http
        .request(method("PROPFIND"), dav(&s, &u, "/pub/docs/a%20b.txt"))
        .bearer_auth(&u.token)
        .header("depth", "0")
        .body(r#"<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/><x:nope xmlns:x="urn:x"/></prop></propfind>"#)
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert!(body.contains("<D:getetag>&quot;"), "{body}");
    assert!(body.contains(r#"<R:nope xmlns:R="urn:x"/>"#), "{body}");
    assert!(body.contains("HTTP/1.1 404 Not Found"), "{body}");

    // Depth infinity on a collection, as RFC 4918 §9.1 allows: 403 + precondition.
    let (status, body) = propfind(&s, &u, "/pub/", "infinity").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("<D:propfind-finite-depth/>"), "{body}");

    let r = s
        .http
        .get(dav(&s, &u, "/pub/docs/a%20b.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("etag"));
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = s
        .http
        .head(dav(&s, &u, "/priv/secret.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "4");
    let r = s
        .http
        .get(dav(&s, &u, "/pub/missing.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let s = start().await;
    let u = s.user().await;
    let other = s.user().await;
    s.put_ok(&other, "/pub/theirs.txt", "x").await;

    let (status, body) = propfind(&s, &u, "/etc/", "1").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "Reading from directories other than '/pub/' and '/priv/' is forbidden"
        )
    );
    let r = s
        .http
        .request(method("PROPFIND"), dav(&s, &other, "/pub/"))
        .bearer_auth(&u.token)
        .header("depth", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::FORBIDDEN,
            "Session user does not match target tenant".into()
        )
    );
    // `..` is resolved before the drive is chosen: no way into a foreign drive.
    let r = s
        .http
        .get(s.url(&format!(
            "/dav/{}/pub/../../{}/pub/theirs.txt",
            u.z32(),
            other.z32()
        )))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    for body in ["this is not xml", "<propfind xmlns=\"DAV:\"><prop>"] {
        let r = s
            .http
            .request(method("PROPFIND"), dav(&s, &u, "/pub/"))
            .bearer_auth(&u.token)
            .header("depth", "0")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (
                StatusCode::BAD_REQUEST,
                "The request body is not well-formed XML".into()
            )
        );
    }
    let r = s
        .http
        .request(method("PROPFIND"), s.url("/dav/not-a-key/"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("Invalid user in WebDAV path"), "{body}");
}

pub async fn send(s: &TestServer, u: &TestUser, name: &str, path: &str) -> reqwest::RequestBuilder {
    s.http
        .request(method(name), dav(s, u, path))
        .bearer_auth(&u.token)
}

pub async fn status_of(builder: reqwest::RequestBuilder) -> StatusCode {
    builder.send().await.expect("request").status()
}

/// The `/merkle/<user>/root` root of the public tree.
pub async fn pub_root(s: &TestServer, u: &TestUser) -> serde_json::Value {
    let r = s
        .http
        .get(s.url(&format!("/merkle/{}/root", u.z32())))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    body["root"].clone()
}

#[tokio::test]
async fn put_delete_mkcol_and_a_folder_delete_in_one_event() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/keep.txt", "kept").await;

    assert_eq!(
        status_of(send(&s, &u, "MKCOL", "/pub/album/").await).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status_of(send(&s, &u, "MKCOL", "/pub/album/").await).await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        status_of(send(&s, &u, "MKCOL", "/pub/no/such/").await).await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        status_of(send(&s, &u, "MKCOL", "/pub/bodied/").await.body("<x/>")).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // The empty folder exists for WebDAV.
    let (status, body) = propfind(&s, &u, "/pub/", "1").await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert!(body.contains("/pub/album/</D:href>"), "{body}");

    assert_eq!(
        status_of(send(&s, &u, "PUT", "/pub/nope/x.txt").await.body("x")).await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        status_of(send(&s, &u, "PUT", "/pub/album/a.txt").await.body("A")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status_of(send(&s, &u, "PUT", "/pub/album/a.txt").await.body("A2")).await,
        StatusCode::NO_CONTENT
    );
    let r = s
        .http
        .get(s.storage(&u, "/pub/album/a.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "A2", "REST sees the WebDAV write");
    assert_eq!(
        status_of(send(&s, &u, "MKCOL", "/pub/album/sub").await).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status_of(send(&s, &u, "PUT", "/pub/album/sub/b.txt").await.body("BB")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status_of(send(&s, &u, "PUT", "/pub/album").await.body("x")).await,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // A folder delete: one event, one DEL line per file, the quota and tree updated.
    let pool = s.server.state.store.pool();
    let before: i64 = sqlx::query_scalar("SELECT max(seq) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        status_of(send(&s, &u, "DELETE", "/pub/album/").await).await,
        StatusCode::NO_CONTENT
    );
    let lines: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT seq, op, path FROM events WHERE seq > $1 ORDER BY seq, line")
            .bind(before)
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, lines[1].0, "one event: {lines:?}");
    assert_eq!(
        lines
            .iter()
            .map(|(_, op, path)| format!("{op} {path}"))
            .collect::<Vec<_>>(),
        vec!["DEL /pub/album/a.txt", "DEL /pub/album/sub/b.txt"]
    );
    let (status, _) = propfind(&s, &u, "/pub/album/", "0").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let used: i64 = sqlx::query_scalar("SELECT used_bytes FROM users WHERE pubkey = $1")
        .bind(u.z32())
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(used, 4 + 256, "only keep.txt is charged");
    let reference = s.user().await;
    s.put_ok(&reference, "/pub/keep.txt", "kept").await;
    assert_eq!(pub_root(&s, &u).await, pub_root(&s, &reference).await);

    assert_eq!(
        status_of(send(&s, &u, "DELETE", "/pub/").await).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status_of(send(&s, &u, "DELETE", "/pub/album/").await).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(send(&s, &u, "DELETE", "/pub/keep.txt").await).await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn writes_honour_locks_and_refuse_bad_input() {
    let s = start().await;
    let u = s.user().await;
    let other = s.user().await;
    s.put_ok(&u, "/pub/dir/locked.txt", "x").await;
    s.put_ok(&other, "/pub/theirs.txt", "x").await;

    let r = send(&s, &u, "PUT", "/etc/x.txt")
        .await
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::FORBIDDEN,
            "Writing to directories other than '/pub/' and '/priv/' is forbidden".into()
        )
    );
    let r = s
        .http
        .delete(dav(&s, &other, "/pub/theirs.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::FORBIDDEN,
            "Session user does not match target tenant".into()
        )
    );
    let r = s
        .http
        .get(s.storage(&other, "/pub/theirs.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the foreign file is untouched");

    let r = send(&s, &u, "PUT", "/pub/new.txt")
        .await
        .header("if", "(garbage")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (StatusCode::BAD_REQUEST, "Malformed If header".into())
    );
    let r = send(&s, &u, "PUT", "/pub/new.txt")
        .await
        .header(
            "if",
            "(<opaquelocktoken:7a0b9f3e-0000-4000-8000-000000000000>)",
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::PRECONDITION_FAILED,
        "unknown lock token"
    );
    let r = s
        .http
        .get(s.storage(&u, "/pub/new.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was written");

    // A lock taken over REST holds the whole folder against a WebDAV delete.
    let r = s
        .http
        .request(method("LOCK"), s.storage(&u, "/pub/dir/locked.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.headers()["lock-token"].to_str().unwrap().to_string();
    let r = send(&s, &u, "DELETE", "/pub/dir/")
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (StatusCode::LOCKED, "Resource is locked".into())
    );
    assert_eq!(
        status_of(send(&s, &u, "PUT", "/pub/dir/locked.txt").await.body("y")).await,
        StatusCode::LOCKED
    );
    let r = send(&s, &u, "DELETE", "/pub/dir/")
        .await
        .header("if", format!("({token})"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
