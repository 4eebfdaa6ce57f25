//! Storage over HTTP against real NATS and Postgres: what an app sees.

use crate::common;

use common::{TestServer, TestUser, start};
use domain::event::{StorageLimit, UserLimits};
use reqwest::StatusCode;

async fn put(
    s: &TestServer,
    u: &TestUser,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    s.http
        .put(s.storage(u, path))
        .bearer_auth(&u.token)
        .body(body)
        .send()
        .await
        .expect("PUT")
}

async fn text(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    (status, r.text().await.expect("body"))
}

#[tokio::test]
async fn files_are_written_read_listed_and_deleted() {
    let s = start().await;
    let u = s.user().await;

    let r = put(&s, &u, "/pub/app/a.json", r#"{"hello":"world"}"#).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        etag.len(),
        46,
        "quoted base64 of a 32-byte BLAKE3 hash: {etag}"
    );

    // Read-your-writes: visible right after the 201, anonymously for /pub/.
    let r = s
        .http
        .get(s.storage(&u, "/pub/app/a.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.headers()["cache-control"], "private, must-revalidate");
    assert!(r.headers().contains_key("last-modified"));
    assert_eq!(r.text().await.unwrap(), r#"{"hello":"world"}"#);

    // Conditional GET.
    let r = s
        .http
        .get(s.storage(&u, "/pub/app/a.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Range.
    let r = s
        .http
        .get(s.storage(&u, "/pub/app/a.json"))
        .header("range", "bytes=2-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-6/17");
    assert_eq!(r.text().await.unwrap(), "hello");

    for path in [
        "/pub/app/b.txt",
        "/pub/app/dir/c.txt",
        "/pub/app/dir/d.txt",
        "/pub/app/dir-e",
    ] {
        assert_eq!(put(&s, &u, path, "x").await.status(), StatusCode::CREATED);
    }
    let owner = u.z32();
    let (status, body) = text(s.http.get(s.storage(&u, "/pub/app/")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let expected: Vec<String> = ["a.json", "b.txt", "dir-e", "dir/c.txt", "dir/d.txt"]
        .iter()
        .map(|p| format!("pubky://{owner}/pub/app/{p}"))
        .collect();
    assert_eq!(body, expected.join("\n"));
    let (_, body) = text(
        s.http
            .get(s.storage(&u, "/pub/app/?shallow=true"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let expected: Vec<String> = ["a.json", "b.txt", "dir-e", "dir/"]
        .iter()
        .map(|p| format!("pubky://{owner}/pub/app/{p}"))
        .collect();
    assert_eq!(body, expected.join("\n"));
    let cursor = format!("{owner}/pub/app/b.txt");
    let (_, body) = text(
        s.http
            .get(s.storage(&u, &format!("/pub/app/?limit=2&cursor={cursor}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        body,
        format!("pubky://{owner}/pub/app/dir-e\npubky://{owner}/pub/app/dir/c.txt")
    );

    let r = s
        .http
        .delete(s.storage(&u, "/pub/app/a.json"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .http
        .get(s.storage(&u, "/pub/app/a.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .http
        .delete(s.storage(&u, "/pub/app/a.json"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_the_reference_texts_and_change_nothing() {
    let s = start().await;
    let u = s.user().await;
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            s.http.put(s.storage(&u, "/pub/a.txt")),
            StatusCode::UNAUTHORIZED,
            "No authenticated session found",
        ),
        (
            s.http.put(s.storage(&u, "/pub/dir/")).bearer_auth(&u.token),
            StatusCode::BAD_REQUEST,
            "Target path must be a file",
        ),
        (
            s.http
                .put(s.storage(&u, "/other/a.txt"))
                .bearer_auth(&u.token),
            StatusCode::FORBIDDEN,
            "Writing to directories other than '/pub/' and '/priv/' is forbidden",
        ),
        (
            s.http
                .put(s.url("/storage/notakey/pub/a"))
                .bearer_auth(&u.token),
            StatusCode::BAD_REQUEST,
            "Invalid storage owner public key",
        ),
        (
            s.http.get(s.url("/storage/")),
            StatusCode::BAD_REQUEST,
            "Missing storage owner or path",
        ),
        (
            s.http.get(s.storage(&u, "/pub/missing.txt")),
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            s.http.get(s.storage(&u, "/pub/nothing/")),
            StatusCode::NOT_FOUND,
            "Directory Not Found",
        ),
        (
            // The directory is looked up before the cursor is read (as the reference).
            s.http.get(s.storage(&u, "/pub/nothing/?cursor=garbage")),
            StatusCode::NOT_FOUND,
            "Directory Not Found",
        ),
        (
            s.http.get(s.storage(&u, "/pub/?shallow=perhaps")),
            StatusCode::BAD_REQUEST,
            "Invalid boolean parameter",
        ),
        (
            s.http.get(s.storage(&u, "/priv/secret.txt")),
            StatusCode::UNAUTHORIZED,
            "Authentication required to read private storage",
        ),
        (
            s.http.get(s.url("/favicon.ico")),
            StatusCode::BAD_REQUEST,
            "Missing request tenant",
        ),
    ];
    for (request, status, body) in cases {
        let (got_status, got_body) = text(request.send().await.unwrap()).await;
        assert_eq!((got_status, got_body.as_str()), (status, body));
    }
    let other = s.user().await;
    let r = s
        .http
        .put(s.storage(&u, "/pub/a.txt"))
        .bearer_auth(&other.token)
        .body("x")
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
    let (status, _) = text(s.http.get(s.storage(&u, "/pub/")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
    s.server.shutdown().await;
}

/// `/info` names what this server implements, in the reference's words and order.
#[tokio::test]
async fn info_advertises_the_implemented_features() {
    let s = start().await;
    let r = s.http.get(s.url("/info")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"features":["path-addressed-storage","grant-proof-logout","grant-session-slots","webdav-locks"]}"#
    );
    s.server.shutdown().await;
}

/// `limit=0` is an empty page and a bad cursor is refused only once the directory is
/// known to exist, both as the reference answers.
#[tokio::test]
async fn listings_answer_limit_zero_and_bad_cursors_as_the_reference() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/dir/a.txt", "a").await;
    let http = &s.http;
    let get = |query: &str| {
        let url = s.storage(&u, &format!("/pub/dir/{query}"));
        async move { text(http.get(url).send().await.unwrap()).await }
    };
    let (status, body) = get("?limit=0").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let (status, body) = get("?limit=0&shallow=true&reverse=true").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let (status, body) = get("?cursor=garbage").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "Invalid cursor")
    );
    let (status, body) = get("?limit=0&cursor=garbage").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "Invalid cursor")
    );
    let (status, body) = get("").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, format!("pubky://{}/pub/dir/a.txt", u.z32()))
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn private_files_never_leak_their_existence() {
    let s = start().await;
    let owner = s.user().await;
    let stranger = s.user().await;
    let scoped = s.user_with(&["/pub/app/:rw"], UserLimits::default()).await;
    assert_eq!(
        put(&s, &owner, "/priv/app/here.txt", "secret")
            .await
            .status(),
        StatusCode::CREATED
    );
    // The under-scoped session writes to its own drive; here it reads someone else's,
    // and its own private data outside its scope.
    for path in ["/priv/app/here.txt", "/priv/app/absent.txt", "/priv/app/"] {
        let anonymous = text(s.http.get(s.storage(&owner, path)).send().await.unwrap()).await;
        assert_eq!(
            anonymous,
            (
                StatusCode::UNAUTHORIZED,
                "Authentication required to read private storage".into()
            ),
            "{path}"
        );
        let other = text(
            s.http
                .get(s.storage(&owner, path))
                .bearer_auth(&stranger.token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            other,
            (
                StatusCode::FORBIDDEN,
                "Session user does not match target tenant".into()
            ),
            "{path}"
        );
        let under = text(
            s.http
                .get(s.storage(&scoped, path))
                .bearer_auth(&scoped.token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            under,
            (
                StatusCode::FORBIDDEN,
                "Session does not have read access to path".into()
            ),
            "{path}"
        );
    }
    for path in ["/priv/app/here.txt", "/priv/app/absent.txt"] {
        let r = s
            .http
            .delete(s.storage(&owner, path))
            .bearer_auth(&stranger.token)
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
    }
    let r = s
        .http
        .get(s.storage(&owner, "/priv/app/here.txt"))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.text().await.unwrap(), "secret");
    s.server.shutdown().await;
}

#[tokio::test]
async fn quota_counts_content_plus_256_bytes_per_entry() {
    let s = start().await;
    let limits = UserLimits {
        storage: Some(StorageLimit::Megabytes(1)),
        ..Default::default()
    };
    let u = s.user_with(&["/:rw"], limits).await;
    let mib = 1024 * 1024;
    // Exactly at the limit fits: 1 MiB - 256 of content plus the entry's 256.
    assert_eq!(
        put(&s, &u, "/pub/big", vec![0u8; mib - 256]).await.status(),
        StatusCode::CREATED
    );
    let r = put(&s, &u, "/pub/one-more", vec![1u8; 1]).await;
    assert_eq!(
        text(r).await,
        (
            StatusCode::INSUFFICIENT_STORAGE,
            "Disk space quota exceeded".into()
        )
    );
    // Overwriting counts only the difference.
    assert_eq!(
        put(&s, &u, "/pub/big", vec![2u8; mib - 256]).await.status(),
        StatusCode::CREATED
    );
    let r = put(&s, &u, "/pub/big", vec![3u8; mib - 255]).await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let r = s
        .http
        .delete(s.storage(&u, "/pub/big"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        put(&s, &u, "/pub/one-more", vec![1u8; 1]).await.status(),
        StatusCode::CREATED
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn collisions_and_preconditions_refuse_writes() {
    let s = start().await;
    let u = s.user().await;
    assert_eq!(
        put(&s, &u, "/pub/a/b.txt", "x").await.status(),
        StatusCode::CREATED
    );
    let r = put(&s, &u, "/pub/a", "file over a directory").await;
    assert_eq!(
        text(r).await,
        (StatusCode::CONFLICT, "File/folder path collision".into())
    );
    let r = put(&s, &u, "/pub/a/b.txt/c", "file under a file").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let etag = put(&s, &u, "/pub/doc.json", "v1").await.headers()["etag"].clone();
    let stale = s
        .http
        .put(s.storage(&u, "/pub/doc.json"))
        .bearer_auth(&u.token)
        .header(
            "if-match",
            "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"",
        )
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let fresh = s
        .http
        .put(s.storage(&u, "/pub/doc.json"))
        .bearer_auth(&u.token)
        .header("if-match", etag)
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::CREATED);
    let create_only = s
        .http
        .put(s.storage(&u, "/pub/doc.json"))
        .bearer_auth(&u.token)
        .header("if-none-match", "*")
        .body("v3")
        .send()
        .await
        .unwrap();
    assert_eq!(create_only.status(), StatusCode::PRECONDITION_FAILED);
    let body = s
        .http
        .get(s.storage(&u, "/pub/doc.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "v2");
    s.server.shutdown().await;
}

#[tokio::test]
async fn concurrent_writers_of_one_user_all_land() {
    let s = start().await;
    let u = s.user().await;
    let writes = (0..40).map(|i| {
        let request = s
            .http
            .put(s.storage(&u, &format!("/pub/many/{i:03}")))
            .bearer_auth(&u.token)
            .body(format!("{i}"));
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(writes).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    let body = s
        .http
        .get(s.storage(&u, "/pub/many/?limit=1000"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.lines().count(), 40);
    let user = s
        .server
        .state
        .store
        .user(&u.keypair.public_key())
        .await
        .unwrap()
        .unwrap();
    let expected: i64 = (0..40)
        .map(|i: i64| format!("{i}").len() as i64 + 256)
        .sum();
    assert_eq!(user.used_bytes, expected);
    s.server.shutdown().await;
}

/// Writes of one user validated while earlier ones are appended but not yet projected
/// still add up against the quota: exactly as many fit as the quota holds.
#[tokio::test]
async fn concurrent_writes_cannot_overrun_the_quota() {
    let s = start().await;
    let limits = UserLimits {
        storage: Some(StorageLimit::Megabytes(1)),
        ..Default::default()
    };
    let u = s.user_with(&["/:rw"], limits).await;
    let size = 200 * 1024;
    let paths: Vec<String> = (0..10).map(|i| format!("/pub/q/{i}")).collect();
    let writes = paths
        .iter()
        .enumerate()
        .map(|(i, path)| put(&s, &u, path, vec![i as u8; size]));
    let statuses: Vec<StatusCode> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    let fits = (1024 * 1024) / (size + 256);
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::INSUFFICIENT_STORAGE)
        .count();
    assert_eq!((created, refused), (fits, 10 - fits), "{statuses:?}");
    let user = s
        .server
        .state
        .store
        .user(&u.keypair.public_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.used_bytes, (fits * (size + 256)) as i64);
    s.server.shutdown().await;
}

#[tokio::test]
async fn cors_echoes_the_origin_and_answers_preflights() {
    let s = start().await;
    let u = s.user().await;
    assert_eq!(
        put(&s, &u, "/pub/cors.txt", "x").await.status(),
        StatusCode::CREATED
    );
    let r = s
        .http
        .get(s.storage(&u, "/pub/cors.txt"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    // Even an early 400 carries CORS headers (the layer is outermost).
    let r = s
        .http
        .get(s.url("/storage/"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let preflight = s
        .http
        .request(reqwest::Method::OPTIONS, s.storage(&u, "/pub/cors.txt"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(preflight.headers()["access-control-allow-methods"], "PUT");
    assert_eq!(
        preflight.headers()["access-control-allow-headers"],
        "authorization"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_configured_maximum_are_refused() {
    let s = common::start_with(|c| c.max_body_bytes = Some(1024)).await;
    let u = s.user().await;
    assert_eq!(
        put(&s, &u, "/pub/small", vec![0u8; 1024]).await.status(),
        StatusCode::CREATED
    );
    let r = put(&s, &u, "/pub/big", vec![0u8; 1025]).await;
    assert_eq!(
        text(r).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large".into())
    );
    // Without a Content-Length the limit is enforced while streaming.
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![1u8; 512])));
    let r = put(&s, &u, "/pub/streamed", reqwest::Body::wrap_stream(chunks)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = s.http.get(s.storage(&u, "/pub/big")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was written");
    s.server.shutdown().await;
}
