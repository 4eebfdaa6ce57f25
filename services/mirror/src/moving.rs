//! Moving a user from one homeserver (A) to another (B), the server side
//! (docs/move.md; the client is `homeserver move`).
//!
//! Both ends take the same statement, signed by the user (`domain::moving`), at
//! `POST /move/<user>`:
//!
//! * **A, the homeserver the user leaves** (`from`): the **seal**. One `user_moved`
//!   event on the user's *file* subject, appended after the user's last write, so the
//!   log orders it with the writes: every write A acknowledged is before it (and in the
//!   final root B must reach); a write that raced it loses its append, reads the user
//!   again and is refused. From then on the user's writes are answered **410 Gone**
//!   naming B, reads are served for the grace period, the republisher leaves the
//!   user's PKARR record alone, and the feeds show one `MOVED` line.
//! * **B, the homeserver the user moves to** (`to`): the **promotion** of B's mirror
//!   of the user (which must exist, from A). Only when A says the user is sealed for B
//!   and B's roots equal A's signed roots (both trees when B holds the read grant): a
//!   `user_moved` event here too (`arrived`), then the mirror is removed and B takes
//!   the user's writes. Until then, 409 with `Retry-After`: the client asks again.
//!   A mirror of a plain homeserver (not ours, which cannot be sealed) is promoted once
//!   it has copied every event of the user there (the client flipped the user's
//!   record first: copy, flip, copy the last delta).
//!
//! Each step can be asked again after a crash: a sealed user is answered with the
//! seal, a promoted one with the promotion, and nothing is appended twice.
//!
//! `GET /move/<user>`: where the user moved to (and when), or where they came from.

use crate::MirrorSet;
use crate::routes::json;
use crate::source::{Source, SourceKind};
use crate::table;
use api::writer::{CommitError, MAX_ATTEMPTS, too_much_contention};
use api::{ApiError, AppState, MaybeSession};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::event::Change;
use domain::merkle;
use domain::moving::{MoveStatement, Refusal};
use domain::{Event, PublicKey};
use log::Expected;
use serde::Deserialize;
use std::time::Duration;

/// How long the client waits before asking B to promote again.
const PROMOTE_RETRY_SECS: u64 = 1;

/// The body of `POST /move/<user>`.
#[derive(Debug, Deserialize)]
pub(crate) struct SignedMove {
    /// A `pubky-move/1` statement (`domain::moving`).
    statement: String,
    /// Hex Ed25519 signature of the statement's bytes by the user's key.
    signature: String,
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Unavailable(format!("users table: {e}"))
}

fn refused(refusal: Refusal) -> ApiError {
    let status = match refusal {
        Refusal::NotSigned(_) => StatusCode::UNAUTHORIZED,
        Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
        Refusal::OtherUser | Refusal::OtherHomeserver | Refusal::Stale => StatusCode::FORBIDDEN,
    };
    ApiError::new(status, refusal.to_string())
}

/// The move resource of a user here; `None` without an account.
async fn status_json(state: &AppState, user: &str) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(row) = table::move_row(&state.store, user).await.map_err(db)? else {
        return Ok(None);
    };
    Ok(Some(serde_json::json!({
        "user": user,
        "homeserver": state.config.public_key.to_z32(),
        "moved_to": row.moved_to.as_ref().map(|(to, _)| to),
        "moved_at": row.moved_to.as_ref().map(|(_, us)| api::rfc3339(*us)),
        "arrived_from": row.arrived_from,
    })))
}

/// `GET /move/<user>`: where the user moved to, or came from; with a session of the
/// user, also their usage and quota here (`used_bytes`, `quota_bytes`: `null` is no
/// limit), which `homeserver move` compares before anything moves.
#[utoipa::path(get, path = "/move/{user}", operation_id = "move_status", tag = "mirror", params(("user" = String, Path, description = "the user's public key (z-base-32)")), responses((status = 200, description = "`{user, homeserver, moved_to, moved_at, arrived_from}`, and `used_bytes`, `quota_bytes` with a session of the user (docs/move.md)", content_type = "application/json"), (status = 404, description = "no such user here")))]
pub(crate) async fn move_status(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    Path(user): Path<String>,
) -> Response {
    let result = async {
        let key = parse_user(&user)?;
        let user = key.to_z32();
        let mut body = status_json(&state, &user)
            .await?
            .ok_or_else(ApiError::not_found)?;
        if session.is_some_and(|s| s.user == key)
            && let Some(row) = state.store.user(&key).await?
        {
            body["used_bytes"] = row.used_bytes.into();
            body["quota_bytes"] = write_api::quota_bytes(&state, &row).into();
        }
        Ok::<_, ApiError>(json(StatusCode::OK, body))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn parse_user(text: &str) -> Result<PublicKey, ApiError> {
    domain::tenant::parse_storage_owner(text)
        .map_err(|_| ApiError::bad_request("Invalid user public key"))
}

/// `POST /move/<user>`: the seal (here is `from`) or the promotion (here is `to`).
#[utoipa::path(post, path = "/move/{user}", operation_id = "move_user", tag = "mirror", params(("user" = String, Path, description = "the user's public key (z-base-32)")), request_body(content = serde_json::Value, description = "`{statement, signature}`: a `pubky-move/1` statement signed by the user (docs/move.md)", content_type = "application/json"), responses((status = 200, description = "sealed (here is `from`) or promoted (here is `to`), now or before: the move resource", content_type = "application/json"), (status = 400, description = "a malformed statement"), (status = 401, description = "not signed by the user"), (status = 403, description = "about another user or other homeservers, or out of the time window"), (status = 404, description = "no such user here"), (status = 409, description = "moved elsewhere already; or (promotion) not mirrored here from `from`, or not caught up yet: `Retry-After`")))]
pub(crate) async fn move_request(
    State(state): State<AppState>,
    Extension(set): Extension<MirrorSet>,
    Path(user): Path<String>,
    Json(body): Json<SignedMove>,
) -> Response {
    let result = async {
        let user = parse_user(&user)?;
        let here = state.config.public_key.clone();
        let statement = domain::moving::verify(
            &user,
            &body.statement,
            &body.signature,
            &here,
            api::now_micros(),
        )
        .map_err(refused)?;
        let change = Change::UserMoved {
            from: statement.from.clone(),
            to: statement.to.clone(),
            arrived: statement.to == here,
            statement: body.statement.clone(),
            signature: body.signature.clone(),
        };
        if statement.from == here && statement.from_gone {
            Err(ApiError::bad_request(
                "The statement says this homeserver is gone (seal:none): it is for the homeserver the user moves to",
            ))
        } else if statement.from == here {
            seal(&state, &set, &statement, change).await
        } else {
            promote(&state, &set, &statement, change).await
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Appends `change` (a `user_moved`) after the user's last file event, unless
/// `done` says the user's row already shows it; returns whether it was appended.
async fn append_move(
    state: &AppState,
    user: &PublicKey,
    change: Change,
    done: impl Fn(&table::MoveRow) -> Result<bool, ApiError>,
) -> Result<bool, ApiError> {
    let _queue = state.lock_user(user).await;
    let request_id = format!("move-{}", uuid::Uuid::now_v7());
    for _ in 0..MAX_ATTEMPTS {
        let row = state
            .store
            .user(user)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let moves = table::move_row(&state.store, &user.to_z32())
            .await
            .map_err(db)?
            .unwrap_or_default();
        if done(&moves)? {
            return Ok(false);
        }
        // This process's writes not projected yet are before the move: wait for them,
        // so the row read next has them and the append goes after them.
        let overlay = state.pending.overlay(user, row.file_seq);
        if let Some(seq) = overlay.last_seq {
            state.wait_visible(seq).await;
            continue;
        }
        let event = Event::new(
            user.clone(),
            api::now_micros(),
            request_id.clone(),
            change.clone(),
        );
        match state.commit(&event, Expected::LastSeq(row.file_seq)).await {
            Ok(_) => return Ok(true),
            Err(CommitError::Conflict) => continue,
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(too_much_contention())
}

/// At the homeserver the user leaves: the seal (see the module docs).
async fn seal(
    state: &AppState,
    set: &MirrorSet,
    statement: &MoveStatement,
    change: Change,
) -> Result<Response, ApiError> {
    let (user, to) = (statement.user.to_z32(), statement.to.to_z32());
    append_move(state, &statement.user, change, |moves| {
        match &moves.moved_to {
            None => Ok(false),
            Some((already, _)) if *already == to => Ok(true),
            Some((other, _)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{user} has moved to the homeserver {other} already"),
            )),
        }
    })
    .await?;
    let body = status_json(state, &user)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let since = table::move_row(&state.store, &user)
        .await
        .map_err(db)?
        .and_then(|m| m.moved_to)
        .map_or_else(api::now_micros, |(_, us)| us);
    set.insert_moved(&user, &to, since);
    tracing::info!(user, to, "user sealed: moved to another homeserver");
    Ok(json(StatusCode::OK, body))
}

/// At the homeserver the user moves to: the promotion of its mirror (see the module
/// docs).
async fn promote(
    state: &AppState,
    set: &MirrorSet,
    statement: &MoveStatement,
    change: Change,
) -> Result<Response, ApiError> {
    let (user, from) = (statement.user.to_z32(), statement.from.to_z32());
    let arrived = |moves: &table::MoveRow| moves.arrived_from.as_deref() == Some(from.as_str());
    match table::get(&state.store, &user).await.map_err(db)? {
        Some(mirror) if mirror.source_key == from => {
            if mirror.source_kind == SourceKind::Plain.as_str() {
                last_delta(&mirror, statement.from_gone).await?;
            } else if statement.from_gone {
                last_verified(state, &mirror).await?;
            } else {
                caught_up(state, &mirror, &statement.to).await?;
            }
            append_move(state, &statement.user, change, |moves| Ok(arrived(moves))).await?;
            table::remove(&state.store, &user).await.map_err(db)?;
            set.remove(&user);
            tracing::info!(user, from, "mirror promoted: the user moved here");
        }
        Some(mirror) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{user} is mirrored here from {}, not from {from}",
                    mirror.source_key
                ),
            ));
        }
        None => {
            let moves = table::move_row(&state.store, &user).await.map_err(db)?;
            if !moves.as_ref().is_some_and(arrived) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{user} is not mirrored here from {from}: nothing to promote"),
                ));
            }
        }
    }
    let body = status_json(state, &user)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(json(StatusCode::OK, body))
}

/// 409 while A still answers at all (a move that says A is gone, `seal:none`).
async fn gone(mirror: &table::MirrorRow, instead: &str) -> Result<(), ApiError> {
    let asked = reqwest::Client::new()
        .get(format!("{}/move/{}", mirror.source_url, mirror.user))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    if asked.is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{} answers at {}: it is not gone; {instead}",
                mirror.source_key, mirror.source_url
            ),
        ));
    }
    Ok(())
}

/// For a move from a plain homeserver (not ours: no seal there, docs/move.md): 409
/// with `Retry-After` until the first copy is done and the mirror has applied every
/// event of the user that A has. The command published the user's record naming
/// this homeserver before asking, so what A still takes comes from clients with a
/// stale record, and what it took up to now is copied. With `gone` (A gone too), only
/// that A does not answer: the copy is taken as it is.
async fn last_delta(mirror: &table::MirrorRow, gone_too: bool) -> Result<(), ApiError> {
    if gone_too {
        return gone(
            mirror,
            "leave out --from-gone: its last changes are then copied",
        )
        .await;
    }
    let not_yet =
        |text: String| ApiError::retry_after(StatusCode::CONFLICT, text, PROMOTE_RETRY_SECS);
    if mirror.last_sync_us.is_none() || mirror.state != "following" {
        return Err(not_yet(format!(
            "the first copy from {} is not done yet ({})",
            mirror.source_url, mirror.state
        )));
    }
    let key = PublicKey::try_from(mirror.source_key.as_str())
        .map_err(|_| ApiError::Unavailable("a mirror with an invalid source key".into()))?;
    let source = Source::new(
        reqwest::Client::new(),
        &mirror.source_url,
        key,
        &mirror.user,
        mirror.read_token.clone(),
    )
    .with_kind(SourceKind::Plain);
    let behind = source
        .events_after(mirror.cursor, 1000)
        .await
        .map_err(|e| {
            not_yet(format!(
                "the homeserver the user leaves does not answer: {e}"
            ))
        })?;
    if behind > 0 {
        return Err(not_yet(format!(
            "{behind} events of the user at {} are not copied here yet",
            mirror.source_url
        )));
    }
    Ok(())
}

/// For a move from a homeserver that is gone (`seal:none`): 409 while A still answers
/// (the user should seal there, or nothing written to A since the copy would be
/// safe), and unless this homeserver's roots equal the last roots of A it verified
/// (`mirrors.source_root_*`, recorded only once the copy reached them).
async fn last_verified(state: &AppState, mirror: &table::MirrorRow) -> Result<(), ApiError> {
    gone(
        mirror,
        "seal the account there (a statement without seal:none)",
    )
    .await?;
    let trees = [
        (false, &mirror.source_root_pub),
        (true, &mirror.source_root_priv),
    ];
    for (private, verified) in trees {
        if private && mirror.read_token.is_none() {
            continue;
        }
        let local = state
            .store
            .merkle_root(&mirror.user, private)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?
            .root;
        let local = merkle::root_hex(local);
        if verified.as_deref() != Some(local.as_str()) {
            return Err(ApiError::retry_after(
                StatusCode::CONFLICT,
                format!(
                    "the {} root here is {local}, the last one of {} verified here is {}",
                    if private { "private" } else { "public" },
                    mirror.source_key,
                    verified.as_deref().unwrap_or("none")
                ),
                PROMOTE_RETRY_SECS,
            ));
        }
    }
    Ok(())
}

/// 409 with `Retry-After` unless A sealed the user for this homeserver and this
/// homeserver's roots equal A's signed ones.
async fn caught_up(
    state: &AppState,
    mirror: &table::MirrorRow,
    here: &PublicKey,
) -> Result<(), ApiError> {
    let not_yet =
        |text: String| ApiError::retry_after(StatusCode::CONFLICT, text, PROMOTE_RETRY_SECS);
    let unreachable = |e: crate::source::SourceError| {
        not_yet(format!(
            "the homeserver the user leaves does not answer: {e}"
        ))
    };
    let key = PublicKey::try_from(mirror.source_key.as_str())
        .map_err(|_| ApiError::Unavailable("a mirror with an invalid source key".into()))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let sealed: serde_json::Value = async {
        http.get(format!("{}/move/{}", mirror.source_url, mirror.user))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
    .await
    .map_err(|e| {
        not_yet(format!(
            "the move status at the homeserver the user leaves: {e}"
        ))
    })?;
    if sealed["moved_to"].as_str() != Some(here.to_z32().as_str()) {
        return Err(not_yet(format!(
            "{} is not sealed for this homeserver at {} yet",
            mirror.user, mirror.source_url
        )));
    }
    let source = Source::new(
        http,
        &mirror.source_url,
        key,
        &mirror.user,
        mirror.read_token.clone(),
    );
    for private in [false, true] {
        if private && !source.has_private() {
            continue;
        }
        let signed = source.signed_root(private).await.map_err(unreachable)?;
        let local = state
            .store
            .merkle_root(&mirror.user, private)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?
            .root;
        if local != signed.root {
            return Err(not_yet(format!(
                "not caught up yet: the {} root here is {}, the final one at {} is {}",
                if private { "private" } else { "public" },
                merkle::root_hex(local),
                mirror.source_url,
                merkle::root_hex(signed.root)
            )));
        }
    }
    Ok(())
}
