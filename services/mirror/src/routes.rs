//! The mirror's HTTP routes.
//!
//! Client API: `GET /mirror/<user>` (the status resource, public: it shows hashes and
//! counts, never a path or the read grant) and `POST /mirror/<user>` (the user starts
//! or stops a mirror with a statement signed by their key). Admin API (behind its
//! password): `GET /mirrors`, `POST /mirrors`, `GET /mirrors/<user>` and
//! `DELETE /mirrors/<user>`. Both ways of adding end in [`add`].

use crate::MirrorSet;
use crate::source::{self, Source, SourceKind};
use crate::table::{self, MirrorRow, NewMirror};
use api::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use domain::PublicKey;
use domain::merkle;
use serde::Deserialize;
use std::time::Duration;

/// How far apart the signed request's time and this server's clock may be.
const REQUEST_WINDOW_US: u64 = 300_000_000;

/// The client API's routes.
pub fn router(set: MirrorSet) -> Router<AppState> {
    Router::new()
        .route("/mirror/{user}", get(status).post(user_request))
        .route(
            "/move/{user}",
            get(crate::moving::move_status).post(crate::moving::move_request),
        )
        .layer(Extension(set))
}

/// The admin API's routes (the caller puts them behind the admin password).
pub fn admin_router(set: MirrorSet) -> Router<AppState> {
    Router::new()
        .route("/mirrors", get(list).post(admin_add))
        .route("/mirrors/{user}", get(admin_status).delete(admin_remove))
        .layer(Extension(set))
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Unavailable(format!("mirrors table: {e}"))
}

fn parse_user(text: &str) -> Result<PublicKey, ApiError> {
    domain::tenant::parse_storage_owner(text)
        .map_err(|_| ApiError::bad_request("Invalid user public key"))
}

/// What adding a mirror needs.
#[derive(Debug, Clone, Deserialize)]
pub struct AddRequest {
    pub user: String,
    /// The primary's base URL (`http://host:port`).
    pub source: String,
    /// The primary's key; absent: the signer of the user's root there, pinned now.
    #[serde(default)]
    pub source_key: Option<String>,
    /// A bearer session at the primary with read access to `/priv/`, granted by the
    /// user; absent: the public tree only.
    #[serde(default)]
    pub read_token: Option<String>,
    /// `merkle` (a homeserver of ours) or `plain` (any Pubky homeserver: listings and
    /// `/events-stream` only); absent: asked of the source (ours answers the user's
    /// signed root, others do not).
    #[serde(default)]
    pub source_kind: Option<String>,
}

/// Records a mirror (new, or its source or grant changed) and starts it in this
/// process at once.
pub async fn add(
    state: &AppState,
    set: &MirrorSet,
    request: AddRequest,
    started_by: &'static str,
) -> Result<MirrorRow, ApiError> {
    let user = parse_user(&request.user)?.to_z32();
    let url = url_of(&request.source)?;
    let given = match &request.source_key {
        Some(text) => Some(
            PublicKey::try_from(text.as_str())
                .map_err(|_| ApiError::bad_request("Invalid source_key"))?,
        ),
        None => None,
    };
    let forced = match request.source_kind.as_deref() {
        None => None,
        Some(text) => Some(SourceKind::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "`source_kind` is `merkle` (ours) or `plain` (any Pubky homeserver)",
            )
        })?),
    };
    let unreadable = |e: source::SourceError| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("Cannot read the user's signed root at {url}: {e}"),
        )
    };
    let (kind, key) = match (forced, given) {
        // Nothing to ask of the source.
        (Some(kind), Some(key)) => (kind, key),
        (forced, given) => {
            let http = reqwest::Client::new();
            let (found, signer) = source::discover(&http, &url, &user)
                .await
                .map_err(unreadable)?;
            let kind = forced.unwrap_or(found);
            match (kind, given.or(signer)) {
                (_, Some(key)) => (kind, key),
                (SourceKind::Plain, None) => {
                    return Err(ApiError::bad_request(
                        "The source signs no roots (not a homeserver of ours), so its key cannot \
                         be read from it: give `source_key`",
                    ));
                }
                (SourceKind::Merkle, None) => {
                    return Err(unreadable(source::SourceError::Refused(
                        "it answers no signed root: add it with `source_kind: plain`".into(),
                    )));
                }
            }
        }
    };
    if key == state.config.public_key {
        return Err(ApiError::bad_request(
            "The source is this homeserver: a user cannot mirror to where they are",
        ));
    }
    // A user whose data lives here is not overwritten by a copy from elsewhere (the
    // sync would delete every file the source lacks).
    let mirrored = table::get(&state.store, &user).await.map_err(db)?.is_some();
    let (entries, _) = table::local_totals(&state.store, &user).await.map_err(db)?;
    if !mirrored && entries > 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{user} has data on this homeserver: it cannot become a mirror of another"),
        ));
    }
    let new = NewMirror {
        user: user.clone(),
        source_url: url,
        source_key: key.to_z32(),
        source_kind: kind.as_str(),
        read_token: request.read_token.filter(|t| !t.is_empty()),
        started_by,
    };
    table::upsert(&state.store, &new).await.map_err(db)?;
    set.insert(&user, &new.source_key);
    table::get(&state.store, &user)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::Unavailable("the mirror vanished".into()))
}

fn url_of(text: &str) -> Result<String, ApiError> {
    let trimmed = text.trim_end_matches('/');
    let ok = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && reqwest::Url::parse(trimmed).is_ok();
    if !ok {
        return Err(ApiError::bad_request(
            "`source` is the primary's base URL: http(s)://host[:port]",
        ));
    }
    Ok(trimmed.to_owned())
}

/// The user's events the primary has after the mirror's cursor (up to 1,000); `None`
/// when the primary does not answer within a few seconds.
async fn ask_lag(row: &MirrorRow) -> Option<u64> {
    let key = PublicKey::try_from(row.source_key.as_str()).ok()?;
    let source = Source::new(
        reqwest::Client::new(),
        &row.source_url,
        key,
        &row.user,
        row.read_token.clone(),
    );
    let asked = source.events_after(row.cursor, 1000);
    tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .ok()?
        .ok()
}

/// The status resource of one mirror.
pub async fn status_json(state: &AppState, set: &MirrorSet, row: &MirrorRow) -> serde_json::Value {
    let roots = async |private| {
        state
            .store
            .merkle_root(&row.user, private)
            .await
            .ok()
            .map(|r| merkle::root_hex(r.root))
    };
    let (local_pub, local_priv) = (roots(false).await, roots(true).await);
    let (entries, bytes) = table::local_totals(&state.store, &row.user)
        .await
        .unwrap_or_default();
    // The lag: the user's events the primary has after the cursor (null when the
    // primary does not answer within a few seconds).
    let lag = match set.cached_lag(&row.user, row.cursor) {
        Some(lag) => lag,
        None => {
            let lag = ask_lag(row).await;
            set.cache_lag(&row.user, row.cursor, lag);
            lag
        }
    };
    // A plain source signs no roots: there is none to show, not a guessed one.
    let source_roots = match SourceKind::parse(&row.source_kind) {
        Some(SourceKind::Plain) => serde_json::Value::Null,
        _ => serde_json::json!({ "pub": row.source_root_pub, "priv": row.source_root_priv }),
    };
    serde_json::json!({
        "user": row.user,
        "source": row.source_url,
        "source_kind": row.source_kind,
        "primary": row.source_key,
        "started_by": row.started_by,
        "state": row.state,
        "private": row.read_token.is_some(),
        "local_roots": { "pub": local_pub, "priv": local_priv },
        "source_roots": source_roots,
        "cursor": row.cursor,
        "source_seq": row.source_seq,
        "lag_events": lag,
        "entries": entries,
        "bytes": bytes,
        "events_applied": row.events_applied,
        "last_error": row.last_error,
        "last_error_at": row.last_error_us.map(api::rfc3339),
        "last_sync_at": row.last_sync_us.map(api::rfc3339),
        "created_at": api::rfc3339(row.created_us),
    })
}

/// A JSON answer that no cache keeps (mirror and move resources change by the second).
pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// `GET /mirror/<user>`: the status resource.
#[utoipa::path(get, path = "/mirror/{user}", operation_id = "mirror_status", tag = "mirror", params(("user" = String, Path, description = "the user's public key (z-base-32)")), responses((status = 200, description = "source, state, local and source roots, lag, entries, bytes, last error (docs/mirror.md)", content_type = "application/json"), (status = 404, description = "the user is not mirrored here")))]
pub(crate) async fn status(
    State(state): State<AppState>,
    Extension(set): Extension<MirrorSet>,
    Path(user): Path<String>,
) -> Response {
    let result = async {
        let user = parse_user(&user)?.to_z32();
        let row = table::get(&state.store, &user).await.map_err(db)?;
        let row = row.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{user} is not mirrored here"),
            )
        })?;
        Ok::<_, ApiError>(json(StatusCode::OK, status_json(&state, &set, &row).await))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /mirrors/<user>` (admin): the status resource.
#[utoipa::path(get, path = "/mirrors/{user}", operation_id = "admin_mirror_status", tag = "admin", params(("user" = String, Path, description = "the user's public key (z-base-32)")), responses((status = 200, description = "the mirror's status (docs/mirror.md)", content_type = "application/json"), (status = 401, description = "no or a wrong admin password"), (status = 404, description = "the user is not mirrored here")))]
pub(crate) async fn admin_status(
    state: State<AppState>,
    set: Extension<MirrorSet>,
    user: Path<String>,
) -> Response {
    status(state, set, user).await
}

/// `GET /mirrors`: every mirror, without the lag (one request to each primary would
/// make the listing slow).
#[utoipa::path(get, path = "/mirrors", operation_id = "list_mirrors", tag = "admin", responses((status = 200, description = "every mirror with its state", content_type = "application/json"), (status = 401, description = "no or a wrong admin password")))]
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    match table::list(&state.store).await {
        Ok(rows) => {
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "user": r.user, "source": r.source_url, "primary": r.source_key,
                        "source_kind": r.source_kind,
                        "state": r.state, "cursor": r.cursor, "private": r.read_token.is_some(),
                        "started_by": r.started_by, "last_error": r.last_error,
                    })
                })
                .collect();
            json(StatusCode::OK, serde_json::json!({ "mirrors": rows }))
        }
        Err(e) => db(e).into_response(),
    }
}

/// `POST /mirrors` (admin): `{user, source, source_key?, read_token?, source_kind?}`.
#[utoipa::path(post, path = "/mirrors", operation_id = "add_mirror", tag = "admin", request_body(content = serde_json::Value, description = "`{user, source, source_key?, read_token?, source_kind?}`", content_type = "application/json"), responses((status = 201, description = "added (or changed): the mirror's status", content_type = "application/json"), (status = 400, description = "an invalid user, source or key"), (status = 401, description = "no or a wrong admin password"), (status = 502, description = "the source does not answer with the user's signed root")))]
pub(crate) async fn admin_add(
    State(state): State<AppState>,
    Extension(set): Extension<MirrorSet>,
    Json(request): Json<AddRequest>,
) -> Response {
    match add(&state, &set, request, "operator").await {
        Ok(row) => json(StatusCode::CREATED, status_json(&state, &set, &row).await),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /mirrors/<user>` (admin).
#[utoipa::path(delete, path = "/mirrors/{user}", operation_id = "remove_mirror", tag = "admin", params(("user" = String, Path, description = "the user's public key (z-base-32)")), responses((status = 204, description = "removed; the copy stays, writable"), (status = 401, description = "no or a wrong admin password"), (status = 404, description = "the user is not mirrored here")))]
pub(crate) async fn admin_remove(
    State(state): State<AppState>,
    Extension(set): Extension<MirrorSet>,
    Path(user): Path<String>,
) -> Response {
    remove(&state, &set, &user)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn remove(state: &AppState, set: &MirrorSet, user: &str) -> Result<Response, ApiError> {
    let user = parse_user(user)?.to_z32();
    if !table::remove(&state.store, &user).await.map_err(db)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{user} is not mirrored here"),
        ));
    }
    set.remove(&user);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The body of `POST /mirror/<user>`.
#[derive(Debug, Deserialize)]
pub(crate) struct SignedRequest {
    statement: String,
    /// Hex Ed25519 signature of the statement by the user's key.
    signature: String,
    #[serde(default)]
    source_key: Option<String>,
    #[serde(default)]
    read_token: Option<String>,
    #[serde(default)]
    source_kind: Option<String>,
}

/// The statement a user signs to start (`add`) or stop (`remove`) a mirror of their
/// data on the homeserver `mirror` (z32), from `source` (URL).
pub fn request_statement(
    action: &str,
    user: &str,
    mirror: &str,
    source: &str,
    time_us: u64,
) -> String {
    format!(
        "pubky-mirror-request/1\naction:{action}\nuser:{user}\nmirror:{mirror}\nsource:{source}\ntime:{time_us}\n"
    )
}

/// `POST /mirror/<user>`: `{statement, signature, source_key?, read_token?, source_kind?}`.
#[utoipa::path(post, path = "/mirror/{user}", operation_id = "request_mirror", tag = "mirror", params(("user" = String, Path, description = "the user's public key (z-base-32)")), request_body(content = serde_json::Value, description = "`{statement, signature, source_key?, read_token?, source_kind?}`: a `pubky-mirror-request/1` statement signed by the user (docs/mirror.md)", content_type = "application/json"), responses((status = 201, description = "added: the mirror's status", content_type = "application/json"), (status = 204, description = "removed"), (status = 400, description = "a malformed statement"), (status = 401, description = "not signed by the user"), (status = 403, description = "about another user or homeserver, or out of the time window")))]
pub(crate) async fn user_request(
    State(state): State<AppState>,
    Extension(set): Extension<MirrorSet>,
    Path(user): Path<String>,
    Json(body): Json<SignedRequest>,
) -> Response {
    let result = async {
        let key = parse_user(&user)?;
        let mut signature = [0u8; 64];
        let signed = hex::decode_to_slice(&body.signature, &mut signature).is_ok()
            && key
                .verify(body.statement.as_bytes(), &signature.into())
                .is_ok();
        if !signed {
            return Err(ApiError::unauthorized(format!(
                "The mirror request is not signed by {}",
                key.to_z32()
            )));
        }
        let field = |name: &str| {
            body.statement
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or_default()
        };
        if !body.statement.starts_with("pubky-mirror-request/1\n") {
            return Err(ApiError::bad_request(
                "Unknown statement: expected pubky-mirror-request/1",
            ));
        }
        if field("user") != key.to_z32() || field("mirror") != state.config.public_key.to_z32() {
            return Err(ApiError::forbidden(
                "The statement is about another user or another homeserver",
            ));
        }
        let time: u64 = field("time").parse().unwrap_or(0);
        if api::now_micros().abs_diff(time) > REQUEST_WINDOW_US {
            return Err(ApiError::forbidden(
                "The statement's time is more than 5 minutes from this server's clock",
            ));
        }
        match field("action") {
            "add" => {
                let request = AddRequest {
                    user: key.to_z32(),
                    source: field("source").to_owned(),
                    source_key: body.source_key,
                    read_token: body.read_token,
                    source_kind: body.source_kind,
                };
                let row = add(&state, &set, request, "user").await?;
                Ok(json(
                    StatusCode::CREATED,
                    status_json(&state, &set, &row).await,
                ))
            }
            "remove" => remove(&state, &set, &key.to_z32()).await,
            _ => Err(ApiError::bad_request("`action` is add or remove")),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The client API's mirror routes in the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    status,
    user_request,
    crate::moving::move_status,
    crate::moving::move_request
))]
pub struct ApiDoc;

/// The admin API's mirror routes in its OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, admin_add, admin_status, admin_remove))]
pub struct AdminApiDoc;
