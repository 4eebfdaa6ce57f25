//! WebDAV over real NATS and Postgres, continued: `COPY`/`MOVE` as one event, dead
//! properties, the storage locks, the admin WebDAV and the split deployment (the
//! basics, authentication and bad input are in `dav`).

use crate::common;
use crate::dav::{dav, method, propfind, pub_root, send, status_of, text};

// Shared and folder locks (`dav_ops::dav_locks::…`), in a file of their own.
#[path = "dav_locks.rs"]
mod dav_locks;

use base64::Engine;
use common::{TestServer, TestUser, start};
use reqwest::{Method, StatusCode};

/// The feed lines (`op path`) of the events after `after`, with their sequence.
async fn lines_after(s: &TestServer, after: i64) -> Vec<(i64, String)> {
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT seq, op, path FROM events WHERE seq > $1 ORDER BY seq, line")
            .bind(after)
            .fetch_all(s.server.state.store.pool())
            .await
            .unwrap();
    rows.into_iter()
        .map(|(seq, op, path)| (seq, format!("{op} {path}")))
        .collect()
}

async fn last_seq(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM events")
        .fetch_one(s.server.state.store.pool())
        .await
        .unwrap()
}

fn to(s: &TestServer, u: &TestUser, path: &str) -> String {
    dav(s, u, path)
}

#[tokio::test]
async fn copy_and_move_of_a_folder_are_one_event_each() {
    let s = start().await;
    let u = s.user().await;
    for (path, body) in [
        ("/pub/a/one.txt", "1"),
        ("/pub/a/sub/two.txt", "22"),
        ("/pub/a/sub/deeper/three.txt", "333"),
    ] {
        s.put_ok(&u, path, body).await;
    }
    assert_eq!(
        status_of(send(&s, &u, "MKCOL", "/pub/a/empty/").await).await,
        StatusCode::CREATED
    );

    // A file: copy, refuse to overwrite with Overwrite: F, overwrite.
    let copy_file = |dest: &'static str, overwrite: &'static str| {
        let s = &s;
        let u = &u;
        async move {
            send(s, u, "COPY", "/pub/a/one.txt")
                .await
                .header("destination", to(s, u, dest))
                .header("overwrite", overwrite)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        copy_file("/pub/one-copy.txt", "T").await,
        StatusCode::CREATED
    );
    assert_eq!(
        copy_file("/pub/one-copy.txt", "F").await,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        copy_file("/pub/one-copy.txt", "T").await,
        StatusCode::NO_CONTENT
    );
    let r = s
        .http
        .get(s.storage(&u, "/pub/one-copy.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "1");

    // A folder copy: one event, a PUT line per file, the empty folder copied too.
    let before = last_seq(&s).await;
    let r = send(&s, &u, "COPY", "/pub/a/")
        .await
        .header("destination", to(&s, &u, "/pub/b/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let lines = lines_after(&s, before).await;
    assert!(
        lines.iter().all(|(seq, _)| *seq == lines[0].0),
        "one event: {lines:?}"
    );
    assert_eq!(
        lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
        vec![
            "PUT /pub/b/one.txt",
            "PUT /pub/b/sub/deeper/three.txt",
            "PUT /pub/b/sub/two.txt"
        ]
    );
    let (_, body) = propfind(&s, &u, "/pub/b/", "1").await;
    assert!(body.contains("/pub/b/empty/</D:href>"), "{body}");

    // A folder move: one event, DEL lines for the source, PUT lines for the target.
    let before = last_seq(&s).await;
    let r = send(&s, &u, "MOVE", "/pub/a")
        .await
        .header("destination", to(&s, &u, "/pub/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let lines = lines_after(&s, before).await;
    assert!(
        lines.iter().all(|(seq, _)| *seq == lines[0].0),
        "one event: {lines:?}"
    );
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0].1, "DEL /pub/a/one.txt");
    assert_eq!(lines[5].1, "PUT /pub/c/sub/two.txt");
    let (status, _) = propfind(&s, &u, "/pub/a/", "0").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = s
        .http
        .get(s.storage(&u, "/pub/c/sub/deeper/three.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "333");

    // A Depth: 0 copy of a folder makes the folder only.
    let r = send(&s, &u, "COPY", "/pub/c/")
        .await
        .header("destination", to(&s, &u, "/pub/shallow/"))
        .header("depth", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, body) = propfind(&s, &u, "/pub/shallow/", "1").await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body.matches("<D:response>").count(), 1, "{body}");

    // Quota, tree and projections: as if the same files had been written over REST.
    let reference = s.user().await;
    for (path, body) in [
        ("/pub/one-copy.txt", "1"),
        ("/pub/b/one.txt", "1"),
        ("/pub/b/sub/two.txt", "22"),
        ("/pub/b/sub/deeper/three.txt", "333"),
        ("/pub/c/one.txt", "1"),
        ("/pub/c/sub/two.txt", "22"),
        ("/pub/c/sub/deeper/three.txt", "333"),
    ] {
        s.put_ok(&reference, path, body).await;
    }
    assert_eq!(pub_root(&s, &u).await, pub_root(&s, &reference).await);
    let pool = s.server.state.store.pool();
    let used = |who: String| async move {
        sqlx::query_scalar::<_, i64>("SELECT used_bytes FROM users WHERE pubkey = $1")
            .bind(who)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    assert_eq!(used(u.z32()).await, used(reference.z32()).await);
    let state = &s.server.state;
    let report = projector::verify(&state.log, &state.store, &u.keypair.public_key())
        .await
        .unwrap()
        .unwrap();
    assert!(report.ok(), "{report:?}");
    let report = projector::rebuild(
        &state.log,
        &state.store,
        &s.env.database_url,
        "rebuild_dav",
        false,
        false,
    )
    .await
    .expect("rebuild");
    assert!(report.identical(), "{:?}", report.differences);
}

#[tokio::test]
async fn copy_and_move_refusals_change_nothing() {
    let s = start().await;
    let u = s
        .user_with(
            &["/:rw"],
            domain::event::UserLimits {
                storage: Some(domain::event::StorageLimit::Megabytes(1)),
                ..Default::default()
            },
        )
        .await;
    let other = s.user().await;
    let big = "x".repeat(700 * 1024);
    s.put_ok(&u, "/pub/big/file.bin", &big).await;
    s.put_ok(&u, "/pub/f.txt", "f").await;
    let before = last_seq(&s).await;

    let attempt = |name: &'static str, from: &'static str, dest: Option<String>| {
        let s = &s;
        let u = &u;
        async move {
            let mut request = send(s, u, name, from).await;
            if let Some(dest) = dest {
                request = request.header("destination", dest);
            }
            text(request.send().await.unwrap()).await
        }
    };
    assert_eq!(
        attempt("COPY", "/pub/f.txt", None).await,
        (StatusCode::BAD_REQUEST, "Missing Destination header".into())
    );
    assert_eq!(
        attempt("MOVE", "/pub/f.txt", Some(to(&s, &other, "/pub/f.txt"))).await,
        (
            StatusCode::FORBIDDEN,
            "Session user does not match target tenant".into()
        )
    );
    assert_eq!(
        attempt("MOVE", "/pub/f.txt", Some(to(&s, &u, "/etc/f.txt"))).await,
        (
            StatusCode::FORBIDDEN,
            "Writing to directories other than '/pub/' and '/priv/' is forbidden".into()
        )
    );
    assert_eq!(
        attempt("COPY", "/pub/f.txt", Some(to(&s, &u, "/pub/no/parent.txt")))
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        attempt("COPY", "/pub/big/", Some(to(&s, &u, "/pub/big/inner/")))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        attempt("COPY", "/pub/missing/", Some(to(&s, &u, "/pub/x/")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        attempt("COPY", "/pub/big/", Some(to(&s, &u, "/pub/big2/"))).await,
        (
            StatusCode::INSUFFICIENT_STORAGE,
            "Disk space quota exceeded".into()
        )
    );
    // A lock on a file inside the source holds the move.
    let r = s
        .http
        .request(method("LOCK"), s.storage(&u, "/pub/big/file.bin"))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let file_seq = || async {
        sqlx::query_scalar::<_, i64>("SELECT file_seq FROM users WHERE pubkey = $1")
            .bind(u.z32())
            .fetch_one(s.server.state.store.pool())
            .await
            .unwrap()
    };
    let after_lock = file_seq().await;
    assert_eq!(
        attempt("MOVE", "/pub/big/", Some(to(&s, &u, "/pub/moved/"))).await,
        (StatusCode::LOCKED, "Resource is locked".into())
    );
    assert_eq!(file_seq().await, after_lock, "nothing appended");
    assert_eq!(lines_after(&s, before).await.len(), 0, "no file changed");
}

#[tokio::test]
async fn dav_locks_are_the_storage_locks() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/doc.txt", "v1").await;

    let r = send(&s, &u, "LOCK", "/pub/doc.txt")
        .await
        .body(r#"<?xml version="1.0"?><lockinfo xmlns="DAV:"><lockscope><exclusive/></lockscope><locktype><write/></locktype></lockinfo>"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.headers()["lock-token"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(
        body.contains(&format!("<D:href>/dav/{}/pub/doc.txt</D:href>", u.z32())),
        "{body}"
    );

    // Held over REST too, and released over REST with the same token.
    let r = s
        .http
        .put(s.storage(&u, "/pub/doc.txt"))
        .bearer_auth(&u.token)
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::LOCKED);
    // A false If condition (a wrong entity tag with the right token) is a 412.
    let r = send(&s, &u, "PUT", "/pub/doc.txt")
        .await
        .header("if", format!("({token} [\"not-the-etag\"])"))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = send(&s, &u, "PUT", "/pub/doc.txt")
        .await
        .header("if", format!("({token})"))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .http
        .request(method("UNLOCK"), s.storage(&u, "/pub/doc.txt"))
        .bearer_auth(&u.token)
        .header("lock-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(&s, &u, "UNLOCK", "/pub/doc.txt")
        .await
        .header("lock-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            StatusCode::CONFLICT,
            "No lock with this token on this path".into()
        )
    );
    // Folders can be locked (`dav_locks`), but not the drive's top folders.
    let r = send(&s, &u, "LOCK", "/pub/").await.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_admin_webdav_reaches_every_drive() {
    let s = common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some("secret".into());
    })
    .await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/user.txt", "mine").await;
    let admin = s.server.admin_addr.expect("admin listener");
    let url = |path: &str| format!("http://{admin}{path}");
    let basic = |credentials: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    };

    let r = s
        .http
        .request(method("PROPFIND"), url("/dav/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic");
    for wrong in ["admin:nope", "root:secret"] {
        let r = s
            .http
            .request(method("PROPFIND"), url("/dav/"))
            .header("authorization", basic(wrong))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let operator = basic("admin:secret");
    let r = s
        .http
        .request(Method::OPTIONS, url("/dav/"))
        .header("authorization", &operator)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().contains_key("dav"),
        "OPTIONS reaches WebDAV, not CORS"
    );
    let r = s
        .http
        .request(method("PROPFIND"), url("/dav/"))
        .header("authorization", &operator)
        .header("depth", "1")
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert!(
        body.contains(&format!("<D:href>/dav/{}/</D:href>", u.z32())),
        "{body}"
    );

    // The operator writes and reads a user's drive; REST sees it.
    let r = s
        .http
        .put(url(&format!("/dav/{}/pub/from-admin.txt", u.z32())))
        .header("authorization", &operator)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .http
        .get(s.storage(&u, "/pub/from-admin.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = s
        .http
        .request(method("PROPFIND"), url(&format!("/dav/{}/pub/", u.z32())))
        .header("authorization", &operator)
        .header("depth", "1")
        .send()
        .await
        .unwrap();
    let (_, body) = text(r).await;
    assert!(
        body.contains("user.txt") && body.contains("from-admin.txt"),
        "{body}"
    );
    // Not a user route: a user's token is no admin credential.
    let r = s
        .http
        .request(method("PROPFIND"), url(&format!("/dav/{}/pub/", u.z32())))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dead_properties_are_events_that_travel_with_the_file() {
    let s = start().await;
    let u = s.user().await;
    s.put_ok(&u, "/pub/doc.txt", "x").await;
    let set = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/z"><D:set><D:prop><Z:colour>blue <Z:b>bold</Z:b></Z:colour><Z:gone>soon</Z:gone></D:prop></D:set><D:remove><D:prop><Z:gone/></D:prop></D:remove></D:propertyupdate>"#;
    let r = send(&s, &u, "PROPPATCH", "/pub/doc.txt")
        .await
        .body(set)
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert!(body.contains("HTTP/1.1 200 OK"), "{body}");

    let ask = r#"<propfind xmlns="DAV:"><prop><z:colour xmlns:z="http://example.com/z"/><z:gone xmlns:z="http://example.com/z"/></prop></propfind>"#;
    let read = |path: &'static str| {
        let s = &s;
        let u = &u;
        async move {
            let r = send(s, u, "PROPFIND", path)
                .await
                .header("depth", "0")
                .body(ask)
                .send()
                .await
                .unwrap();
            text(r).await
        }
    };
    let (status, body) = read("/pub/doc.txt").await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert!(
        body.contains(r#"xmlns:R="http://example.com/z""#)
            && body.contains(">blue <Z:b>bold</Z:b></R:colour>"),
        "{body}"
    );
    assert!(
        body.contains(r#"xmlns:Z="http://example.com/z""#),
        "the value's prefix is declared: {body}"
    );
    assert!(body.contains("404 Not Found"), "gone was removed: {body}");

    // A move carries the properties; the old path has none.
    let r = send(&s, &u, "MOVE", "/pub/doc.txt")
        .await
        .header("destination", dav(&s, &u, "/pub/moved.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, body) = read("/pub/moved.txt").await;
    assert!(body.contains(">blue <Z:b>bold</Z:b></R:colour>"), "{body}");

    // Live properties cannot be set: nothing changes.
    let live = r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getetag>x</D:getetag><z:a xmlns:z="urn:z">1</z:a></D:prop></D:set></D:propertyupdate>"#;
    let r = send(&s, &u, "PROPPATCH", "/pub/moved.txt")
        .await
        .body(live)
        .send()
        .await
        .unwrap();
    let (_, body) = text(r).await;
    assert!(
        body.contains("403 Forbidden") && body.contains("424 Failed Dependency"),
        "{body}"
    );
    let r = send(&s, &u, "PROPPATCH", "/pub/moved.txt")
        .await
        .body("not xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let state = &s.server.state;
    let report = projector::rebuild(
        &state.log,
        &state.store,
        &s.env.database_url,
        "rebuild_dav_props",
        false,
        false,
    )
    .await
    .expect("rebuild");
    assert!(report.identical(), "{:?}", report.differences);
}

/// The split deployment: WebDAV through the gateway reaches the write-api process, which
/// serves it whole (reads too), on the log and database the other processes share.
#[tokio::test]
async fn webdav_through_the_gateway_of_a_split_deployment() {
    use common::split::spawn;
    let env = testkit::TestEnv::new().await;
    let data = tempfile::tempdir().unwrap();
    let (_projector, _) = spawn("projector", &env, data.path(), &[]).await;
    let (_writer, write_url) = spawn("write-api", &env, data.path(), &[]).await;
    let (_reader, read_url) = spawn("read-api", &env, data.path(), &[]).await;
    let (_events, events_url) = spawn("events", &env, data.path(), &[]).await;
    let (_gateway, gateway_url) = spawn(
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
    let base = format!("{gateway_url}/dav/{}", user.public_key().to_z32());
    let call = |name: &str, path: &str| {
        http.request(method(name), format!("{base}{path}"))
            .bearer_auth(token.as_str())
    };
    let r = call("OPTIONS", "/").send().await.unwrap();
    assert_eq!(r.headers()["dav"], "1, 2");
    assert_eq!(
        call("MKCOL", "/pub/split/").send().await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        call("PUT", "/pub/split/a.txt")
            .body("through the gateway")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let r = call("MOVE", "/pub/split/")
        .header("destination", format!("{base}/pub/moved/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call("PROPFIND", "/pub/moved/")
        .header("depth", "1")
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert!(body.contains("/pub/moved/a.txt</D:href>"), "{body}");
    // The read-api process sees the move.
    let r = http
        .get(format!(
            "{read_url}/storage/{}/pub/moved/a.txt",
            user.public_key().to_z32()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "through the gateway");
}
