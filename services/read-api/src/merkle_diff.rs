//! `GET /merkle/<user>/diff?from=<root>`: the paths that changed in one of a user's
//! trees since a root the server still holds, in one round trip (docs/merkle.md,
//! "Diff protocol").
//!
//! The answer carries the signed current root, so a client applies the changes to its
//! copy and checks the root it gets against the signature: nothing in the answer has to
//! be trusted. A root whose nodes are gone (collected, or never stored because it was
//! in the middle of a projected batch) is a 404 and the client diffs node by node with
//! `POST /merkle/<user>/nodes` instead.

use crate::merkle::{finish, json_response, owner, query_param, requested_tree, signed_root};
use api::{ApiError, AppState, MaybeSession};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::merkle::{self, Hash};

/// Differences one answer lists by default and at most. A client that is further
/// behind than that gets the first ones (`complete: false`); the node protocol is the
/// better tool for it anyway, since it moves whole subtrees' worth of changes.
pub const DEFAULT_LIMIT: usize = 1_000;
pub const MAX_LIMIT: usize = 10_000;

struct DiffParams {
    from: Option<Hash>,
    private: bool,
    limit: usize,
}

impl DiffParams {
    /// Hex roots and numbers need no percent-decoding: the raw values are read.
    fn parse(query: Option<&str>) -> Result<DiffParams, ApiError> {
        let from = query_param(query, "from")
            .ok_or_else(|| ApiError::bad_request("Missing `from` query parameter"))?;
        let mut root = [0u8; 32];
        hex::decode_to_slice(from, &mut root)
            .map_err(|_| ApiError::bad_request("`from` is a root: 64 hex digits"))?;
        let private = requested_tree(query)?.unwrap_or(false);
        let limit = match query_param(query, "limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("`limit` is a number from 1 to {MAX_LIMIT}"))
                })?,
        };
        Ok(DiffParams {
            from: (root != [0; 32]).then_some(root),
            private,
            limit,
        })
    }
}

#[utoipa::path(get, path = "/merkle/{user}/diff", operation_id = "merkle_diff", tag = "merkle", params(("user" = String, Path, description = "the user's public key (z-base-32)"), ("from" = String, Query, description = "a root the server still holds"), ("tree" = Option<String>, Query), ("limit" = Option<u32>, Query)), responses((status = 200, description = "the paths that differ", content_type = "application/json"), (status = 404, description = "unknown root (collected): diff with POST nodes")))]
pub async fn diff(
    State(state): State<AppState>,
    session: MaybeSession,
    Path(segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match DiffParams::parse(query.as_deref()) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let result = async {
        // A diff of the private tree names private paths: the owner's read of `/priv/`.
        let (owner, state) = owner(&state, &segment, &session, params.private, "/priv/").await?;
        let user = owner.to_z32();
        let diff = state
            .store
            .merkle_diff(&user, params.private, params.from, params.limit)
            .await?
            .ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, format!(
                    "Unknown root {}: its nodes are not stored here; diff with POST /merkle/{user}/nodes",
                    merkle::root_hex(params.from)
                ))
            })?;
        let differences: Vec<serde_json::Value> = diff
            .differences
            .iter()
            .map(|d| {
                serde_json::json!({
                    "path": d.key,
                    "from": d.local.map(hex::encode),
                    "to": d.remote.map(hex::encode),
                })
            })
            .collect();
        Ok::<_, ApiError>(json_response(serde_json::json!({
            "user": user,
            "tree": if params.private { "priv" } else { "pub" },
            "from": merkle::root_hex(params.from),
            "to": merkle::root_hex(diff.to.root),
            "seq": diff.to.seq,
            "complete": diff.complete,
            "differences": differences,
            "signed_root": signed_root(&state, &owner, params.private, diff.to),
        })))
    }
    .await;
    finish(result, params.private)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // PROPTEST_CASES sets the count (`make fuzz`).
        #[test]
        fn diff_query_parser_never_panics(
            query in prop_oneof![
                any::<String>(),
                "(from=[0-9a-fA-F]{0,66})?(&tree=(pub|priv|x)?)?(&limit=-?[0-9]{0,6})?",
            ]
        ) {
            if let Err(e) = DiffParams::parse(Some(&query)) {
                let (status, text) = e.client_answer().expect("a client error");
                prop_assert_eq!(status, 400);
                prop_assert!(
                    [
                        "Missing `from` query parameter",
                        "`from` is a root: 64 hex digits",
                        "Unknown tree: expected `tree=pub` or `tree=priv`",
                        "`limit` is a number from 1 to 10000",
                    ]
                    .contains(&text),
                    "{}",
                    text
                );
            }
        }
    }
}
