//! The Merkle endpoints (docs/merkle.md): a user's signed root, tree nodes by hash
//! (one, or many in one round trip for the diff protocol), inclusion/absence proofs,
//! and the root header on storage reads.
//!
//! Routes live under `/merkle/<user>/...`, outside `/storage/` and the legacy
//! `/pub/`, `/priv/` paths, so they can never shadow a file. Each user has a public
//! tree and a private one (`?tree=priv`; proofs pick the tree of their path). A private
//! tree's nodes name private paths, so reading it is authorized exactly as a storage
//! read of `/priv/` (of the proved path, for a proof), with the same 401/403 and before
//! the user is looked up; its responses are never cacheable by shared caches.

use api::{ApiError, AppState, MaybeSession};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::merkle::{self, Hash};
use domain::tenant::parse_storage_owner;
use domain::{EntryPath, PublicKey};
use percent_encoding::percent_decode_str;
use std::time::{SystemTime, UNIX_EPOCH};

/// The header carrying the current root of the tree a read path belongs to.
pub const ROOT_HEADER: HeaderName = HeaderName::from_static("pubky-merkle-root");

/// Most node hashes one `POST .../nodes` may ask for (a diff round wants one node per
/// differing subtree of a level; a client with more asks in several requests).
pub const MAX_NODES_PER_REQUEST: usize = 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/merkle/{owner}/root", get(root))
        .route("/merkle/{owner}/nodes", axum::routing::post(nodes))
        .route("/merkle/{owner}/nodes/{hash}", get(node))
        .route("/merkle/{owner}/proof", get(proof))
        .route("/merkle/{owner}/diff", get(crate::merkle_diff::diff))
}

/// The value of query parameter `name`, still percent-encoded.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        pair.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// `?tree=pub` or `?tree=priv`: `Some(private)`; `None` when absent.
pub(crate) fn requested_tree(query: Option<&str>) -> Result<Option<bool>, ApiError> {
    match query_param(query, "tree") {
        None => Ok(None),
        Some("pub") => Ok(Some(false)),
        Some("priv") => Ok(Some(true)),
        Some(_) => Err(ApiError::bad_request(
            "Unknown tree: expected `tree=pub` or `tree=priv`",
        )),
    }
}

/// The user a request is about, and the state to read their projections with (the
/// replica once it has their writes: `api::reads`). For the private tree the read of
/// `path` is authorized first, as a storage read of it would be, so a refusal is the
/// same whether the user exists or not.
pub(crate) async fn owner(
    state: &AppState,
    segment: &str,
    session: &MaybeSession,
    private: bool,
    path: &str,
) -> Result<(PublicKey, AppState), ApiError> {
    let owner = parse_storage_owner(segment)
        .map_err(|_| ApiError::bad_request("Invalid user public key"))?;
    if private {
        let path = EntryPath::parse_canonical(path)
            .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}")))?;
        domain::authorization::authorize_read(session.0.as_ref().map(|s| s.view()), &owner, &path)?;
    }
    let state = state.reading_user(&owner).await;
    if state.store.user(&owner).await?.is_none() {
        return Err(ApiError::not_found());
    }
    Ok((owner, state))
}

/// A private tree's answers, refusals included, vary with the credentials and must not
/// be stored by shared caches (as for private storage reads).
pub(crate) fn finish(result: Result<Response, ApiError>, private: bool) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if private {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::VARY,
            HeaderValue::from_static("Authorization, Cookie"),
        );
    }
    response
}

/// `GET /merkle/<user>/root[?tree=priv]`: the user's root, signed by the homeserver.
#[utoipa::path(get, path = "/merkle/{user}/root", operation_id = "merkle_root", tag = "merkle", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("tree" = Option<String>, Query, description = "`priv` for the private tree (its readers only)")), responses((status = 200, description = "the root, signed by the homeserver", content_type = "application/json"), (status = 404, description = "unknown user")))]
pub(crate) async fn root(
    State(state): State<AppState>,
    session: MaybeSession,
    Path(segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let private = match requested_tree(query.as_deref()) {
        Ok(tree) => tree.unwrap_or(false),
        Err(e) => return e.into_response(),
    };
    let result = async {
        let (owner, state) = owner(&state, &segment, &session, private, "/priv/").await?;
        let root = state.store.merkle_root(&owner.to_z32(), private).await?;
        Ok::<_, ApiError>(json_response(signed_root(&state, &owner, private, root)))
    }
    .await;
    finish(result, private)
}

/// The statement about one of `owner`'s roots and the homeserver's signature over it
/// (`signature` is null when the server has no signing key, as in some tests).
pub(crate) fn signed_root(
    state: &AppState,
    owner: &PublicKey,
    private: bool,
    root: store::merkle::TreeRoot,
) -> serde_json::Value {
    let user = owner.to_z32();
    let time_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let statement = merkle::root_statement(&user, private, root.root, root.seq, time_us);
    let signature = state
        .config
        .root_signer
        .as_ref()
        .map(|signer| hex::encode(signer.0.sign(statement.as_bytes()).to_bytes()));
    serde_json::json!({
        "user": user,
        "tree": if private { "priv" } else { "pub" },
        "root": merkle::root_hex(root.root),
        "seq": root.seq,
        "time": time_us,
        "statement": statement,
        "signer": state.config.public_key.to_z32(),
        "signature": signature,
    })
}

/// A JSON answer that no cache may keep (roots move).
pub(crate) fn json_response(body: serde_json::Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn parse_hash(text: &str) -> Result<Hash, ApiError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|_| ApiError::bad_request("A node hash is 64 hex digits"))?;
    Ok(hash)
}

/// `GET /merkle/<user>/nodes/<hash>[?tree=priv]`: one node's encoding.
#[utoipa::path(get, path = "/merkle/{user}/nodes/{hash}", operation_id = "merkle_node", tag = "merkle", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("hash" = String, Path, description = "the node hash, 64 hex digits")), responses((status = 200, description = "the node encoding", content_type = "application/octet-stream"), (status = 404, description = "unknown node")))]
pub(crate) async fn node(
    State(state): State<AppState>,
    session: MaybeSession,
    Path((segment, hash)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let private = match requested_tree(query.as_deref()) {
        Ok(tree) => tree.unwrap_or(false),
        Err(e) => return e.into_response(),
    };
    let result = async {
        let hash = parse_hash(&hash)?;
        let (owner, state) = owner(&state, &segment, &session, private, "/priv/").await?;
        let mut found = state
            .store
            .merkle_nodes(&owner.to_z32(), private, &[hash])
            .await?;
        let (_, body) = found.pop().ok_or_else(ApiError::not_found)?;
        Ok::<_, ApiError>(
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    // A node never changes: its address is its hash (`finish` replaces
                    // this for a private node).
                    (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                ],
                body,
            )
                .into_response(),
        )
    }
    .await;
    finish(result, private)
}

/// `POST /merkle/<user>/nodes[?tree=priv]`: the body is wanted node hashes, 32 raw
/// bytes each; the answer is each known one as a 4-byte big-endian length and its
/// encoding, in the order asked (unknown hashes, and nodes of the other tree, are left
/// out). One diff round is one such request.
#[utoipa::path(post, path = "/merkle/{user}/nodes", operation_id = "merkle_nodes", tag = "merkle", params(("user" = String, Path, description = "the user's public key (z-base-32)")), request_body(content = Vec<u8>, description = "node hashes, 32 bytes each", content_type = "application/octet-stream"), responses((status = 200, description = "each known node as a 4-byte big-endian length and its encoding", content_type = "application/octet-stream"), (status = 400, description = "a body that is not whole hashes")))]
pub(crate) async fn nodes(
    State(state): State<AppState>,
    session: MaybeSession,
    Path(segment): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let private = match requested_tree(query.as_deref()) {
        Ok(tree) => tree.unwrap_or(false),
        Err(e) => return e.into_response(),
    };
    let result = async {
        if !body.len().is_multiple_of(32) {
            return Err(ApiError::bad_request(
                "The body is node hashes of 32 bytes each",
            ));
        }
        if body.len() / 32 > MAX_NODES_PER_REQUEST {
            return Err(ApiError::bad_request(format!(
                "At most {MAX_NODES_PER_REQUEST} node hashes per request"
            )));
        }
        let (owner, state) = owner(&state, &segment, &session, private, "/priv/").await?;
        let hashes: Vec<Hash> = body
            .chunks_exact(32)
            .map(|chunk| {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect();
        let found = state
            .store
            .merkle_nodes(&owner.to_z32(), private, &hashes)
            .await?;
        let mut out = Vec::new();
        for (_, node) in found {
            out.extend_from_slice(&(node.len() as u32).to_be_bytes());
            out.extend_from_slice(&node);
        }
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], out).into_response())
    }
    .await;
    finish(result, private)
}

/// `GET /merkle/<user>/proof?path=...`: the inclusion or absence proof of a path under
/// the current root of its tree (the private one for `/priv/...`, for its readers).
#[utoipa::path(get, path = "/merkle/{user}/proof", operation_id = "merkle_proof", tag = "merkle", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("path" = String, Query, description = "the entry path")), responses((status = 200, description = "an inclusion or absence proof under the current root", content_type = "application/json"), (status = 400, description = "no or invalid path")))]
pub(crate) async fn proof(
    State(state): State<AppState>,
    session: MaybeSession,
    Path(segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let path = query_param(query.as_deref(), "path")
        .ok_or_else(|| ApiError::bad_request("Missing `path` query parameter"))
        .and_then(|path| {
            percent_decode_str(path)
                .decode_utf8()
                .map(|path| path.into_owned())
                .map_err(|_| ApiError::bad_request("Path is not valid UTF-8"))
        });
    let path = match path {
        Ok(path) => path,
        Err(e) => return e.into_response(),
    };
    let private = store::merkle::is_private_path(&path);
    let result = async {
        if requested_tree(query.as_deref())?.is_some_and(|tree| tree != private) {
            return Err(ApiError::bad_request(
                "The path is not in the requested tree",
            ));
        }
        let (owner, state) = owner(&state, &segment, &session, private, &path).await?;
        let (root, proof) = state.store.merkle_proof(&owner.to_z32(), &path).await?;
        let value = merkle::verify(root.root, &path, &proof)
            .map_err(|e| store::StoreError::Corrupt(format!("stored proof: {e}")))?;
        let body = serde_json::json!({
            "user": owner.to_z32(),
            "tree": if private { "priv" } else { "pub" },
            "path": path,
            "root": merkle::root_hex(root.root),
            "seq": root.seq,
            "value": value.map(hex::encode),
            "nodes": proof.nodes.iter().map(hex::encode).collect::<Vec<_>>(),
        });
        Ok::<_, ApiError>(json_response(body))
    }
    .await;
    finish(result, private)
}

/// Adds the root of the tree `path` belongs to to a successful read's response. The
/// read was authorized before, so a private path's root is only shown to its readers.
pub async fn add_root_header(
    state: &AppState,
    owner: &PublicKey,
    path: &str,
    response: &mut Response,
) {
    let status = response.status();
    if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
        return;
    }
    let private = store::merkle::is_private_path(path);
    // The header is an extra: a failed lookup leaves it out rather than failing a read
    // that has already succeeded.
    if let Ok(root) = state.store.merkle_root(&owner.to_z32(), private).await
        && let Ok(value) = HeaderValue::from_str(&merkle::root_hex(root.root))
    {
        response.headers_mut().insert(ROOT_HEADER, value);
    }
}
