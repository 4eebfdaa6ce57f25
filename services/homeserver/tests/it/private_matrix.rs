//! The private-data matrix over HTTP (spec §3.5, §4.7): existence under `/priv/` is never
//! leaked to a caller who may not see it.
//!
//! For every kind of unauthorized caller — anonymous, another tenant's session, and the
//! owner's own session scoped to `/pub/app/:rw` only — and every verb (GET, HEAD, PUT,
//! DELETE, and a listing GET), the request is made against a path that exists and one
//! that does not. Both must get the same status, the same body and the same
//! representation headers, and those must be the reference texts:
//!
//! | caller      | read (GET, HEAD, listing)                          | write (PUT, DELETE)                                 |
//! |-------------|----------------------------------------------------|-----------------------------------------------------|
//! | anonymous   | 401 `Authentication required to read private storage` | 401 `No authenticated session found`             |
//! | other user  | 403 `Session user does not match target tenant`    | 403 `Session user does not match target tenant`     |
//! | under-scoped| 403 `Session does not have read access to path`    | 403 `Session does not have write access to path`    |
//!
//! HEAD responses carry no body. None of the refused writes may change anything. Finally
//! the owner's root session gets 200 / 201 / 204 (and 404 for what does not exist).
//!
//! A second test runs the same matrix and checks that every refusal on a private path is
//! `cache-control: no-store` without `etag`/`last-modified` (§3.5).

use crate::common;

use common::{TestServer, TestUser};
use domain::Keypair;
use domain::secret::BearerToken;
use log::Expected;
use reqwest::{Method, StatusCode};

const EXISTING: &str = "/priv/app/here.txt";
const ABSENT: &str = "/priv/app/absent.txt";
const DIR: &str = "/priv/app/";
const ABSENT_DIR: &str = "/priv/absent/";

/// A kind of caller: name, bearer token, and the expected refusal of reads and writes.
type Caller<'a> = (
    &'a str,
    Option<&'a str>,
    (StatusCode, &'a str),
    (StatusCode, &'a str),
);

/// What a response shows a caller: status, body, and the headers that could tell an
/// existing resource from an absent one.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: StatusCode,
    body: String,
    headers: Vec<(&'static str, Option<String>)>,
}

async fn request(
    s: &TestServer,
    owner: &TestUser,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Seen {
    let mut builder = s.http.request(method.clone(), s.storage(owner, path));
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    if method == Method::PUT {
        builder = builder.body("overwritten?");
    }
    let r = builder.send().await.expect("request");
    let status = r.status();
    let headers = [
        "content-type",
        "content-length",
        "cache-control",
        "etag",
        "last-modified",
    ]
    .into_iter()
    .map(|name| {
        (
            name,
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("<binary>").to_string()),
        )
    })
    .collect();
    let body = r.text().await.expect("body");
    Seen {
        status,
        body,
        headers,
    }
}

/// A second bearer session for an existing user, with only `caps`.
async fn extra_session(s: &TestServer, user: &Keypair, caps: &[&str]) -> String {
    let token = BearerToken::from_random(rand::random());
    let seq = s
        .server
        .state
        .log
        .append(&common::session_event(user, caps, &token), Expected::Any)
        .await
        .expect("append session");
    assert!(
        s.server
            .state
            .progress
            .wait_for(seq, std::time::Duration::from_secs(10))
            .await,
        "session projected"
    );
    token.as_str().to_string()
}

#[tokio::test]
async fn private_paths_leak_nothing_to_unauthorized_callers() {
    tokio::time::timeout(std::time::Duration::from_secs(120), run(false))
        .await
        .expect("matrix finishes within 2 minutes");
}

/// Spec §3.5: on a private path *every* status carries `cache-control: no-store` (and
/// error responses no `etag`/`last-modified`), refused writes included.
#[tokio::test]
async fn private_refusals_are_never_cacheable() {
    tokio::time::timeout(std::time::Duration::from_secs(120), run(true))
        .await
        .expect("matrix finishes within 2 minutes");
}

/// Runs the matrix; with `cache_headers`, checks the caching headers instead of the
/// statuses and bodies.
async fn run(cache_headers: bool) {
    let s = common::start().await;
    let owner = s.user().await;
    let stranger = s.user().await;
    let scoped = extra_session(&s, &owner.keypair, &["/pub/app/:rw"]).await;

    let r = s
        .http
        .put(s.storage(&owner, EXISTING))
        .bearer_auth(&owner.token)
        .body("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The under-scoped session works where it is scoped.
    let r = s
        .http
        .put(s.storage(&owner, "/pub/app/ok.txt"))
        .bearer_auth(&scoped)
        .body("fine")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    const READ_401: &str = "Authentication required to read private storage";
    const WRITE_401: &str = "No authenticated session found";
    const TENANT_403: &str = "Session user does not match target tenant";
    const READ_403: &str = "Session does not have read access to path";
    const WRITE_403: &str = "Session does not have write access to path";
    let callers: [Caller; 3] = [
        (
            "anonymous",
            None,
            (StatusCode::UNAUTHORIZED, READ_401),
            (StatusCode::UNAUTHORIZED, WRITE_401),
        ),
        (
            "another tenant",
            Some(&stranger.token),
            (StatusCode::FORBIDDEN, TENANT_403),
            (StatusCode::FORBIDDEN, TENANT_403),
        ),
        (
            "under-scoped owner",
            Some(&scoped),
            (StatusCode::FORBIDDEN, READ_403),
            (StatusCode::FORBIDDEN, WRITE_403),
        ),
    ];
    let verbs = [
        ("GET", Method::GET, EXISTING, ABSENT, false),
        ("HEAD", Method::HEAD, EXISTING, ABSENT, false),
        ("listing", Method::GET, DIR, ABSENT_DIR, false),
        ("PUT", Method::PUT, EXISTING, ABSENT, true),
        ("DELETE", Method::DELETE, EXISTING, ABSENT, true),
    ];
    let mut failures = Vec::new();
    let mut header_failures = Vec::new();
    for (who, token, read, write) in callers {
        for (verb, method, present, absent, writes) in &verbs {
            let here = request(&s, &owner, method.clone(), present, token).await;
            let gone = request(&s, &owner, method.clone(), absent, token).await;
            let (status, text) = if *writes { write } else { read };
            let body = if *method == Method::HEAD { "" } else { text };
            let case = format!("{who} {verb}");
            if here != gone {
                failures.push(format!(
                    "{case}: existing and absent differ:\n  {here:?}\n  {gone:?}"
                ));
            }
            if (here.status, here.body.as_str()) != (status, body) {
                failures.push(format!(
                    "{case}: got {} {:?}, expected {status} {body:?}",
                    here.status, here.body
                ));
            }
            let header = |name| {
                here.headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, v)| v.clone())
            };
            if header("cache-control").as_deref() != Some("no-store") {
                header_failures.push(format!(
                    "{case}: cache-control {:?}, expected no-store",
                    header("cache-control")
                ));
            }
            if header("etag").is_some() || header("last-modified").is_some() {
                header_failures.push(format!("{case}: error response carries validators"));
            }
        }
    }
    if cache_headers {
        assert!(header_failures.is_empty(), "{}", header_failures.join("\n"));
        s.server.shutdown().await;
        return;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing the refused writes attempted happened.
    let root = Some(owner.token.as_str());
    let r = request(&s, &owner, Method::GET, EXISTING, root).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "secret"));
    let r = request(&s, &owner, Method::GET, ABSENT, root).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, "Not Found")
    );

    // The owner's root session.
    let r = request(&s, &owner, Method::HEAD, EXISTING, root).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, ""));
    let r = request(&s, &owner, Method::HEAD, ABSENT, root).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::NOT_FOUND, ""));
    let r = request(&s, &owner, Method::GET, DIR, root).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, format!("pubky://{}{EXISTING}", owner.z32()))
    );
    let r = request(&s, &owner, Method::GET, ABSENT_DIR, root).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, "Directory Not Found")
    );
    let r = request(&s, &owner, Method::PUT, EXISTING, root).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = request(&s, &owner, Method::DELETE, EXISTING, root).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let r = request(&s, &owner, Method::DELETE, ABSENT, root).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = request(&s, &owner, Method::GET, EXISTING, root).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "deleted");
    s.server.shutdown().await;
}
