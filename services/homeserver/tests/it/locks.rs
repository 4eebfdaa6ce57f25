//! Storage locks (`LOCK`/`UNLOCK`, `webdav-locks`) against the reference's statuses and
//! texts, over real NATS and Postgres: in one process, across a restart, and across two
//! write-api processes sharing one log.

use crate::common;

use common::split::spawn;
use common::{TestServer, TestUser, start};
use reqwest::{Method, StatusCode};

const LOCKED: &str = "Resource is locked";
const IF_NOT_LIVE: &str = "The If header does not name the live lock on this path";

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("method")
}

async fn lock(http: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    http.request(method("LOCK"), url)
        .bearer_auth(token)
        .send()
        .await
        .expect("LOCK")
}

/// The `opaquelocktoken:` URI of a LOCK answer (from its `Lock-Token` header).
fn lock_token(r: &reqwest::Response) -> String {
    let value = r.headers()["lock-token"].to_str().expect("ascii");
    value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .expect("Lock-Token in angle brackets")
        .to_string()
}

async fn text(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    (status, r.text().await.expect("body"))
}

async fn put_if(
    s: &TestServer,
    u: &TestUser,
    path: &str,
    if_header: Option<&str>,
) -> reqwest::Response {
    let mut request = s
        .http
        .put(s.storage(u, path))
        .bearer_auth(&u.token)
        .body("content");
    if let Some(value) = if_header {
        request = request.header("if", value);
    }
    request.send().await.expect("PUT")
}

#[tokio::test]
async fn lock_and_unlock_answer_as_the_reference() {
    let s = start().await;
    let u = s.user().await;
    let other = s.user().await;
    let url = s.storage(&u, "/pub/doc.txt");

    // Refusals, in the reference's order of checks.
    let r = s.http.request(method("LOCK"), &url).send().await.unwrap();
    assert_eq!(
        text(r).await,
        (StatusCode::UNAUTHORIZED, "Unauthorized".into())
    );
    let r = lock(&s.http, &s.storage(&u, "/pub/dir/"), &u.token).await;
    assert_eq!(
        text(r).await,
        (StatusCode::BAD_REQUEST, "Target path must be a file".into())
    );
    let r = lock(&s.http, &s.storage(&u, "/other/doc.txt"), &u.token).await;
    assert_eq!(
        text(r).await,
        (
            StatusCode::FORBIDDEN,
            "Writing to directories other than '/pub/' and '/priv/' is forbidden".into()
        )
    );
    let r = lock(&s.http, &url, &other.token).await;
    assert_eq!(
        text(r).await,
        (
            StatusCode::FORBIDDEN,
            "Session user does not match target tenant".into()
        )
    );
    let shared = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
    let r = s
        .http
        .request(method("LOCK"), &url)
        .bearer_auth(&u.token)
        .body(shared)
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::BAD_REQUEST,
            "Only exclusive write locks are supported".into()
        )
    );
    let r = s
        .http
        .request(method("LOCK"), &url)
        .bearer_auth(&u.token)
        .body(vec![b' '; 16 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "lockinfo body too large".into()
        )
    );
    // Another method on /storage: 405 naming the six it has.
    let r = s
        .http
        .request(method("PROPFIND"), &url)
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD, PUT, DELETE, LOCK, UNLOCK");

    // A new lock on a path with no file: 200 (nothing is created), default 30 s.
    let lockinfo = r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>"#;
    let r = s
        .http
        .request(method("LOCK"), &url)
        .bearer_auth(&u.token)
        .body(lockinfo)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    assert_eq!(r.headers()["timeout"], "Second-30");
    let token = lock_token(&r);
    assert!(token.starts_with("opaquelocktoken:"), "{token}");
    let body = r.text().await.unwrap();
    let expected = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:prop xmlns:D=\"DAV:\"><D:lockdiscovery><D:activelock>\
<D:locktype><D:write/></D:locktype><D:lockscope><D:exclusive/></D:lockscope><D:depth>0</D:depth>\
<D:timeout>Second-30</D:timeout><D:locktoken><D:href>{token}</D:href></D:locktoken>\
<D:lockroot><D:href>/storage/{}/pub/doc.txt</D:href></D:lockroot></D:activelock></D:lockdiscovery></D:prop>",
        u.z32()
    );
    assert_eq!(body, expected);
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "LOCK creates no file");

    // Locked: a second LOCK, and writes without the token.
    let r = lock(&s.http, &url, &u.token).await;
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = put_if(&s, &u, "/pub/doc.txt", None).await;
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let wrong = "(<opaquelocktoken:00000000-0000-4000-8000-000000000000>)";
    let r = put_if(&s, &u, "/pub/doc.txt", Some(wrong)).await;
    assert_eq!(
        text(r).await,
        (StatusCode::PRECONDITION_FAILED, IF_NOT_LIVE.into())
    );
    // The legacy route obeys the lock too, and has no LOCK.
    let legacy = s.url("/pub/doc.txt");
    let r = s
        .http
        .put(&legacy)
        .header("pubky-host", u.z32())
        .bearer_auth(&u.token)
        .body("legacy")
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = s
        .http
        .request(method("LOCK"), &legacy)
        .header("pubky-host", u.z32())
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // With the token (tagged list, as WebDAV clients send it) the write goes through.
    let tagged = format!("<{url}> (<{token}>)");
    let r = put_if(&s, &u, "/pub/doc.txt", Some(&tagged)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .http
        .delete(&url)
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = put_if(&s, &u, "/pub/doc.txt", Some(&format!("(<{token}>)"))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Reads are not locked.
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(text(r).await, (StatusCode::OK, "content".into()));

    // Refresh: the If header names the lock; no new Lock-Token, the lifetime asked for
    // (clamped to the 600 s maximum).
    let r = s
        .http
        .request(method("LOCK"), &url)
        .bearer_auth(&u.token)
        .header("if", format!("(<{token}>)"))
        .header("timeout", "Second-100000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["timeout"], "Second-600");
    assert!(r.headers().get("lock-token").is_none());
    assert!(r.text().await.unwrap().contains(&token));
    let r = s
        .http
        .request(method("LOCK"), &url)
        .bearer_auth(&u.token)
        .header("if", wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (StatusCode::PRECONDITION_FAILED, IF_NOT_LIVE.into())
    );

    // UNLOCK.
    let unlock = |lock_token: Option<String>| {
        let mut request = s.http.request(method("UNLOCK"), &url).bearer_auth(&u.token);
        if let Some(value) = lock_token {
            request = request.header("lock-token", value);
        }
        request.send()
    };
    let r = unlock(None).await.unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::BAD_REQUEST,
            "Missing or malformed Lock-Token header".into()
        )
    );
    let r = unlock(Some("<urn:uuid:x>".into())).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = unlock(Some("<opaquelocktoken:nope>".into())).await.unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::CONFLICT,
            "No lock with this token on this path".into()
        )
    );
    let r = unlock(Some(format!("<{token}>"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = unlock(Some(token.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "already gone");

    // After the unlock: the old token is refused, a plain write goes through.
    let r = put_if(&s, &u, "/pub/doc.txt", Some(&format!("(<{token}>)"))).await;
    assert_eq!(
        text(r).await,
        (StatusCode::PRECONDITION_FAILED, IF_NOT_LIVE.into())
    );
    let r = put_if(&s, &u, "/pub/doc.txt", None).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Timeouts: Infinite is the maximum; a 1-second lock runs out and a new lock
    // replaces it.
    let r = s
        .http
        .request(method("LOCK"), s.storage(&u, "/priv/notes.txt"))
        .bearer_auth(&u.token)
        .header("timeout", "Infinite, Second-4100000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["timeout"], "Second-600");
    let r = s
        .http
        .request(method("LOCK"), &url)
        .bearer_auth(&u.token)
        .header("timeout", "Second-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["timeout"], "Second-1");
    let short = lock_token(&r);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = put_if(&s, &u, "/pub/doc.txt", Some(&format!("(<{short}>)"))).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED, "expired");
    let r = lock(&s.http, &url, &u.token).await;
    assert_eq!(r.status(), StatusCode::OK, "an expired lock is replaced");
    assert_ne!(lock_token(&r), short);
    // An expired lock can still be unlocked with its token... once replaced it cannot.
    let r = unlock(Some(format!("<{short}>"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // `/info` advertises the feature.
    let r = s.http.get(s.url("/info")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("\"webdav-locks\""));
}

#[tokio::test]
async fn locks_are_events_and_survive_a_restart() {
    let s = start().await;
    let u = s.user().await;
    let url = s.storage(&u, "/priv/held.txt");
    let r = lock(&s.http, &url, &u.token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = lock_token(&r);

    // The log has it, as a file event of the user, without the token itself.
    let owner = u.keypair.public_key();
    let mut found = Vec::new();
    {
        use futures::StreamExt;
        let filter = domain::event::concurrency_subject(
            &s.env.log.subject_prefix,
            domain::event::SubjectFamily::Files,
            &owner,
        );
        let stream = s
            .server
            .state
            .log
            .read(domain::EventSeq(1), Some(filter))
            .await
            .expect("read");
        let mut stream = Box::pin(stream);
        while let Ok(Some(Ok(logged))) =
            tokio::time::timeout(std::time::Duration::from_secs(2), stream.next()).await
        {
            found.push(logged.event);
        }
    }
    assert_eq!(found.len(), 1);
    let json = String::from_utf8(found[0].to_json()).unwrap();
    assert!(json.contains(r#""kind":"lock_acquired""#), "{json}");
    assert!(json.contains(r#""path":"/priv/held.txt""#), "{json}");
    assert!(
        !json.contains(&token[16..]),
        "no token in the event: {json}"
    );

    let s = s.restart().await;
    let url = s.storage(&u, "/priv/held.txt");
    let r = put_if(&s, &u, "/priv/held.txt", None).await;
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = put_if(&s, &u, "/priv/held.txt", Some(&format!("(<{token}>)"))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .http
        .request(method("UNLOCK"), &url)
        .bearer_auth(&u.token)
        .header("lock-token", format!("<{token}>"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Lock events move the user's file sequence with the writes: the next write is
    // appended after them without a conflict.
    let r = put_if(&s, &u, "/priv/held.txt", None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_lock_taken_through_one_write_api_holds_in_another() {
    let env = testkit::TestEnv::new().await;
    let data = tempfile::tempdir().unwrap();
    let (_projector, _) = spawn("projector", &env, data.path(), &[]).await;
    let (_a, a_url) = spawn("write-api", &env, data.path(), &[]).await;
    let (_b, b_url) = spawn("write-api", &env, data.path(), &[]).await;
    let (user, bearer) = common::user_via_log(&env).await;
    let bearer = bearer.as_str().to_string();
    let http = reqwest::Client::new();
    let path = format!("/storage/{}/pub/shared.txt", user.public_key().to_z32());
    let (at_a, at_b) = (format!("{a_url}{path}"), format!("{b_url}{path}"));

    let r = lock(&http, &at_a, &bearer).await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = lock_token(&r);
    let put = |url: String, if_header: Option<String>| {
        let mut request = http.put(url).bearer_auth(&bearer).body("from b");
        if let Some(value) = if_header {
            request = request.header("if", value);
        }
        request.send()
    };
    let r = put(at_b.clone(), None).await.unwrap();
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = lock(&http, &at_b, &bearer).await;
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = put(at_b.clone(), Some(format!("(<{token}>)")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .request(method("UNLOCK"), &at_b)
        .bearer_auth(&bearer)
        .header("lock-token", format!("<{token}>"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = put(at_a.clone(), None).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "unlocked through b, free in a"
    );

    // Twenty LOCKs of one path at once, half through each process: exactly one wins.
    let racers = (0..20).map(|i| {
        let url = if i % 2 == 0 {
            at_a.clone()
        } else {
            at_b.clone()
        };
        let http = http.clone();
        let bearer = bearer.clone();
        async move { lock(&http, &url, &bearer).await.status() }
    });
    let statuses = futures::future::join_all(racers).await;
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let locked = statuses
        .iter()
        .filter(|s| **s == StatusCode::LOCKED)
        .count();
    assert_eq!((won, locked), (1, 19), "{statuses:?}");
}
