//! The OpenAPI documents (`homeserver::openapi`) against the code: the committed copies
//! under `schemas/` are what the code generates and what each listener serves at
//! `/openapi.json`, and the paths they document are exactly the routes the routers
//! register (read from the routers' source, so a new route without an annotated handler
//! fails here). `UPDATE_OPENAPI=1` rewrites the committed copies.

use crate::common;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn committed(name: &str, generated: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let path = repo().join("schemas").join(name);
    let text = generated.to_pretty_json().unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "schemas/{name} is not what the code generates: run \
         `UPDATE_OPENAPI=1 cargo test -p homeserver --test it openapi` and commit it"
    );
    serde_json::from_str(&text).unwrap()
}

/// The paths a router source registers with `.route("…"`, in the documents' spelling:
/// `{owner}` is `{user}`, `{*rest}` is `{user}/{path}`, `{*path}` is `{path}`.
fn routes_in(source: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let literal = rest.trim_start();
        if let Some(literal) = literal.strip_prefix('"') {
            let end = literal.find('"').unwrap();
            paths.insert(
                literal[..end]
                    .replace("{owner}", "{user}")
                    .replace("{*rest}", "{user}/{path}")
                    .replace("{*path}", "{path}"),
            );
        }
    }
    paths
}

#[tokio::test]
async fn the_documents_are_generated_served_and_match_the_routers() {
    let public = committed("openapi.json", &homeserver::openapi::public());
    let admin = committed("openapi-admin.json", &homeserver::openapi::admin());
    assert_eq!(public["openapi"], "3.1.0");

    // Served by each listener, as committed.
    let s = common::start_with(|c| {
        c.admin_listen = Some(([127, 0, 0, 1], 0).into());
        c.admin_password = Some("secret".into());
    })
    .await;
    let served = |url: String| {
        let http = s.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    assert_eq!(served(s.url("/openapi.json")).await, public);
    let admin_addr = s.server.admin_addr.unwrap();
    assert_eq!(
        served(format!("http://{admin_addr}/openapi.json")).await,
        admin
    );

    // Every route the routers register is documented, and nothing else is. Not
    // routes of their own: the gateway's proxy (it forwards the same paths), the
    // bare `/storage` and `/storage/` (400 `Missing storage owner or path`).
    let mut registered = BTreeSet::new();
    for dir in std::fs::read_dir(repo().join("services")).unwrap() {
        let dir = dir.unwrap().path();
        if dir.ends_with("gateway") {
            continue;
        }
        for file in walk(&dir.join("src")) {
            registered.extend(routes_in(&std::fs::read_to_string(file).unwrap()));
        }
    }
    registered.remove("/storage");
    registered.remove("/storage/");
    // Legacy owner-relative storage is the client router's fallback.
    registered.insert("/{path}".into());
    let documented: BTreeSet<String> = [&public, &admin]
        .iter()
        .flat_map(|doc| doc["paths"].as_object().unwrap().keys().cloned())
        .collect();
    assert_eq!(documented, registered);

    // Operation ids are unique (generated clients name their functions after them).
    let mut ids = BTreeSet::new();
    for doc in [&public, &admin] {
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(
                    ids.insert((doc["info"]["title"].to_string(), id.to_owned())),
                    "{method} {path}: {id} twice"
                );
            }
        }
    }

    // Methods: the storage route has each of its methods documented.
    let storage = &public["paths"]["/storage/{user}/{path}"];
    for method in ["get", "put", "delete"] {
        assert!(storage[method].is_object(), "{method} /storage documented");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
