//! WebDAV's shared locks and folder locks over real NATS and Postgres, as a WebDAV
//! client sees them: shared locks side by side, exclusive against shared (423), a
//! folder lock of depth infinity holding every change below it until its token is
//! submitted (`If`), lock discovery, refresh through a file under the folder, unlock;
//! the same folder lock honoured by REST, here and in a second write-api process; and
//! the locks rebuilt from the log identical.

use crate::common;
use crate::dav::{dav, method, send, text};

use common::split::spawn;
use common::{TestServer, TestUser, start};
use reqwest::StatusCode;

const LOCKED: &str = "Resource is locked";

fn lockinfo(scope: &str, owner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:{scope}/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>{owner}</D:owner></D:lockinfo>"#
    )
}

/// A `LOCK` over WebDAV: status, `Lock-Token` (without its brackets) and body.
async fn dav_lock(
    s: &TestServer,
    u: &TestUser,
    path: &str,
    scope: &str,
    depth: &str,
) -> (StatusCode, Option<String>, String) {
    let r = send(s, u, "LOCK", path)
        .await
        .header("depth", depth)
        .body(lockinfo(scope, &format!("{scope} holder")))
        .send()
        .await
        .expect("LOCK");
    let token = r.headers().get("lock-token").map(|v| {
        v.to_str()
            .expect("ascii")
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    });
    let (status, body) = text(r).await;
    (status, token, body)
}

async fn dav_put(
    s: &TestServer,
    u: &TestUser,
    path: &str,
    body: &str,
    if_: Option<&str>,
) -> StatusCode {
    let mut request = send(s, u, "PUT", path).await.body(body.to_string());
    if let Some(value) = if_ {
        request = request.header("if", value);
    }
    request.send().await.expect("PUT").status()
}

async fn dav_unlock(s: &TestServer, u: &TestUser, path: &str, token: &str) -> StatusCode {
    send(s, u, "UNLOCK", path)
        .await
        .header("lock-token", format!("<{token}>"))
        .send()
        .await
        .expect("UNLOCK")
        .status()
}

async fn rest_get(s: &TestServer, u: &TestUser, path: &str) -> String {
    let r = s.http.get(s.storage(u, path)).send().await.expect("GET");
    r.text().await.expect("body")
}

/// The `lockdiscovery` property of `path` (PROPFIND, depth 0).
async fn discovery(s: &TestServer, u: &TestUser, path: &str) -> String {
    let r = send(s, u, "PROPFIND", path)
        .await
        .header("depth", "0")
        .body(r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>"#)
        .send()
        .await
        .expect("PROPFIND");
    let (status, body) = text(r).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    body
}

#[tokio::test]
async fn shared_locks_coexist_and_conflict_with_exclusive_ones() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/doc.txt", "v1").await;

    let (status, first, body) = dav_lock(&s, &u, "/pub/doc.txt", "shared", "0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("<D:lockscope><D:shared/></D:lockscope>"),
        "{body}"
    );
    assert!(body.contains("<D:owner>shared holder</D:owner>"), "{body}");
    let first = first.expect("Lock-Token of a new lock");
    assert!(body.contains(&first), "the answer names its token: {body}");
    let (status, second, _) = dav_lock(&s, &u, "/pub/doc.txt", "shared", "0").await;
    assert_eq!(status, StatusCode::OK, "a second shared lock");
    let second = second.expect("Lock-Token");
    assert_ne!(first, second);

    // An exclusive lock conflicts with them, over WebDAV and over REST.
    let (status, token, body) = dav_lock(&s, &u, "/pub/doc.txt", "exclusive", "0").await;
    assert_eq!(
        (status, token, body.as_str()),
        (StatusCode::LOCKED, None, LOCKED)
    );
    let r = s
        .http
        .request(method("LOCK"), s.storage(&u, "/pub/doc.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));

    // Discovery shows both, shared, with their owners and no token.
    let found = discovery(&s, &u, "/pub/doc.txt").await;
    assert_eq!(found.matches("<D:activelock>").count(), 2, "{found}");
    assert_eq!(found.matches("<D:shared/>").count(), 2, "{found}");
    assert_eq!(found.matches("<D:owner>shared holder</D:owner>").count(), 2);
    assert!(
        !found.contains(&first) && !found.contains(&second),
        "{found}"
    );
    // They are projected state: rebuilt from the log, the lock table comes out equal.
    let state = &s.server.state;
    let report = projector::rebuild(
        &state.log,
        &state.store,
        &s.env.database_url,
        "rebuild_dav_locks",
        false,
        false,
    )
    .await
    .expect("rebuild");
    assert!(report.identical(), "{:?}", report.differences);

    // Either holder may write; nobody else.
    assert_eq!(
        dav_put(&s, &u, "/pub/doc.txt", "v2", None).await,
        StatusCode::LOCKED
    );
    // An `If` header that holds without naming a lock (a wrong token, or not
    // `DAV:no-lock`) is not a submitted lock either: 423, not 412.
    let bogus = format!("(<{first}x>) (Not <DAV:no-lock>)");
    assert_eq!(
        dav_put(&s, &u, "/pub/doc.txt", "v2", Some(&bogus)).await,
        StatusCode::LOCKED
    );
    let submitted = format!("(<{second}>)");
    assert_eq!(
        dav_put(&s, &u, "/pub/doc.txt", "v2", Some(&submitted)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(rest_get(&s, &u, "/pub/doc.txt").await, "v2");

    // One unlock leaves the other lock in force; the second frees the file.
    assert_eq!(
        dav_unlock(&s, &u, "/pub/doc.txt", &first).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dav_put(&s, &u, "/pub/doc.txt", "v3", None).await,
        StatusCode::LOCKED
    );
    assert_eq!(
        dav_unlock(&s, &u, "/pub/doc.txt", &second).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dav_put(&s, &u, "/pub/doc.txt", "v3", None).await,
        StatusCode::NO_CONTENT
    );
    assert!(
        !discovery(&s, &u, "/pub/doc.txt")
            .await
            .contains("activelock")
    );

    // Now an exclusive lock shuts a shared one out.
    let (status, exclusive, _) = dav_lock(&s, &u, "/pub/doc.txt", "exclusive", "0").await;
    assert_eq!(status, StatusCode::OK);
    let (status, ..) = dav_lock(&s, &u, "/pub/doc.txt", "shared", "0").await;
    assert_eq!(status, StatusCode::LOCKED);
    // An unknown token unlocks nothing.
    let bogus = "opaquelocktoken:00000000-0000-4000-8000-000000000000";
    assert_eq!(
        dav_unlock(&s, &u, "/pub/doc.txt", bogus).await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        dav_unlock(&s, &u, "/pub/doc.txt", &exclusive.unwrap()).await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_folder_lock_holds_every_change_below_it_until_its_token_is_submitted() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/dir/a.txt", "a").await;
    s.put_ok(&u, "/pub/dir/sub/b.txt", "b").await;
    s.put_ok(&u, "/pub/other.txt", "o").await;

    let (status, token, body) = dav_lock(&s, &u, "/pub/dir/", "exclusive", "infinity").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<D:depth>infinity</D:depth>"), "{body}");
    let root = format!(
        "<D:lockroot><D:href>/dav/{}/pub/dir/</D:href></D:lockroot>",
        u.z32()
    );
    assert!(body.contains(&root), "{body}");
    let token = token.expect("Lock-Token");

    // Without the token: every change below the folder is 423, and changes nothing.
    assert_eq!(
        dav_put(&s, &u, "/pub/dir/sub/b.txt", "x", None).await,
        StatusCode::LOCKED
    );
    assert_eq!(
        dav_put(&s, &u, "/pub/dir/new.txt", "x", None).await,
        StatusCode::LOCKED
    );
    let attempts = [
        send(&s, &u, "DELETE", "/pub/dir/a.txt").await,
        send(&s, &u, "DELETE", "/pub/dir/sub/").await,
        send(&s, &u, "MKCOL", "/pub/dir/made/").await,
        send(&s, &u, "MOVE", "/pub/dir/a.txt")
            .await
            .header("destination", dav(&s, &u, "/pub/moved.txt")),
        send(&s, &u, "COPY", "/pub/other.txt")
            .await
            .header("destination", dav(&s, &u, "/pub/dir/copied.txt")),
        send(&s, &u, "PROPPATCH", "/pub/dir/a.txt").await.body(
            r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x:k xmlns:x="urn:x">v</x:k></D:prop></D:set></D:propertyupdate>"#,
        ),
    ];
    for attempt in attempts {
        let r = attempt.send().await.unwrap();
        let url = r.url().to_string();
        assert_eq!(r.status(), StatusCode::LOCKED, "{url}");
    }
    // REST is held the same way, and a new lock inside the folder conflicts.
    let r = s
        .http
        .put(s.storage(&u, "/pub/dir/sub/b.txt"))
        .bearer_auth(&u.token)
        .body("rest")
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = s
        .http
        .delete(s.storage(&u, "/pub/dir/a.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = s
        .http
        .request(method("LOCK"), s.storage(&u, "/pub/dir/a.txt"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::LOCKED);
    let (status, ..) = dav_lock(&s, &u, "/pub/dir/sub/", "shared", "0").await;
    assert_eq!(status, StatusCode::LOCKED);
    assert_eq!(rest_get(&s, &u, "/pub/dir/sub/b.txt").await, "b");
    assert_eq!(rest_get(&s, &u, "/pub/dir/a.txt").await, "a");
    // Outside the folder nothing is held.
    assert_eq!(
        dav_put(&s, &u, "/pub/other.txt", "o2", None).await,
        StatusCode::NO_CONTENT
    );

    // Lock discovery shows the folder's lock on what lies below it.
    let found = discovery(&s, &u, "/pub/dir/sub/b.txt").await;
    assert!(
        found.contains(&root) && found.contains("<D:exclusive/>"),
        "{found}"
    );

    // With the token, as a plain list or tagged with the folder's URL, over REST too.
    let plain = format!("(<{token}>)");
    let tagged = format!("<{}> (<{token}>)", dav(&s, &u, "/pub/dir/"));
    assert_eq!(
        dav_put(&s, &u, "/pub/dir/sub/b.txt", "b2", Some(&plain)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dav_put(&s, &u, "/pub/dir/new.txt", "n", Some(&tagged)).await,
        StatusCode::CREATED
    );
    let r = s
        .http
        .put(s.storage(&u, "/pub/dir/rest.txt"))
        .bearer_auth(&u.token)
        .header("if", &plain)
        .body("r")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(rest_get(&s, &u, "/pub/dir/sub/b.txt").await, "b2");

    // A refresh through a file under the folder refreshes the folder's lock.
    let r = send(&s, &u, "LOCK", "/pub/dir/a.txt")
        .await
        .header("if", &plain)
        .header("timeout", "Second-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["timeout"], "Second-100");
    assert!(r.text().await.unwrap().contains(&root));

    // Unlocked, the folder is free again.
    assert_eq!(
        dav_unlock(&s, &u, "/pub/dir/", &token).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dav_put(&s, &u, "/pub/dir/sub/b.txt", "b3", None).await,
        StatusCode::NO_CONTENT
    );
    let r = send(&s, &u, "DELETE", "/pub/dir/")
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_depth_0_folder_lock_holds_the_folder_s_members_only() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/d/kept.txt", "k").await;
    let (status, token, body) = dav_lock(&s, &u, "/pub/d/", "exclusive", "0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<D:depth>0</D:depth>"), "{body}");
    // Adding or removing a member needs the token; changing one does not.
    assert_eq!(
        dav_put(&s, &u, "/pub/d/new.txt", "n", None).await,
        StatusCode::LOCKED
    );
    let r = send(&s, &u, "DELETE", "/pub/d/kept.txt")
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::LOCKED);
    assert_eq!(
        dav_put(&s, &u, "/pub/d/kept.txt", "k2", None).await,
        StatusCode::NO_CONTENT
    );
    // The token is the folder's: submitted tagged with the folder's URL (RFC 4918
    // §10.4.3), as the lock does not apply to the new file itself.
    let submitted = format!(
        "<{}> (<{}>)",
        dav(&s, &u, "/pub/d/"),
        token.as_deref().unwrap()
    );
    assert_eq!(
        dav_put(&s, &u, "/pub/d/new.txt", "n", Some(&submitted)).await,
        StatusCode::CREATED
    );
    // Bad input changes nothing: a Depth of 1, a body that is not a lockinfo.
    let r = send(&s, &u, "LOCK", "/pub/d/")
        .await
        .header("depth", "1")
        .body(lockinfo("shared", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::BAD_REQUEST,
            "Depth must be 0 or infinity".into()
        )
    );
    let r = send(&s, &u, "LOCK", "/pub/d/")
        .await
        .body("<not a lockinfo")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = send(&s, &u, "LOCK", "/pub/")
        .await
        .body(lockinfo("shared", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::FORBIDDEN,
            "The drive and its top folders cannot be locked".into()
        )
    );
}

#[tokio::test]
async fn a_folder_lock_taken_over_webdav_holds_in_a_second_write_api() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/team/plan.txt", "v1").await;
    let (status, token, _) = dav_lock(&s, &u, "/pub/team/", "exclusive", "infinity").await;
    assert_eq!(status, StatusCode::OK);
    let token = token.unwrap();

    let data = tempfile::tempdir().unwrap();
    let (_other, other_url) = spawn("write-api", &s.env, data.path(), &[]).await;
    let url = format!("{other_url}/storage/{}/pub/team/plan.txt", u.z32());
    let put = |if_: Option<String>| {
        let mut request = s.http.put(&url).bearer_auth(&u.token).body("v2");
        if let Some(value) = if_ {
            request = request.header("if", value);
        }
        request.send()
    };
    let r = put(None).await.unwrap();
    assert_eq!(text(r).await, (StatusCode::LOCKED, LOCKED.into()));
    let r = put(Some(format!("(<{token}>)"))).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        dav_unlock(&s, &u, "/pub/team/", &token).await,
        StatusCode::NO_CONTENT
    );
    let r = put(None).await.unwrap();
    assert!(
        r.status().is_success(),
        "unlocked here, free there: {}",
        r.status()
    );
}
