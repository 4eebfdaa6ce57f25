//! Opening a stream: everything `/events-stream` and `/events-ws` do before the first
//! byte, in the reference's order (spec §3.6): parameters, credentials, authorization,
//! unknown users (404 only after authorization, so existence never leaks to someone
//! who may not look), per-user cursors, then the subscription.

use crate::engine::{Engine, Followed, Guard};
use crate::fanout::Fanout;
use crate::params::{
    OperatorParams, RawCursor, StreamParams, operator_stream_params, parse_cursor, stream_params,
};
use api::session::{bearer_session, cookie_session};
use api::tenant::request_tenant;
use api::{ApiError, AppState, Session};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use domain::EventSeq;
use domain::authorization::authorize_stream_read;
use store::streams::UserCursor;

/// What [`open`] hands to a transport.
pub enum Opened {
    Stream(Box<Engine>),
    /// Valid request whose stream is empty by construction (a cursor beyond any
    /// sequence): 200 and an immediately closed stream, as the reference.
    Empty,
}

pub async fn open(
    state: &AppState,
    fanout: &Fanout,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Opened, ApiError> {
    let params = stream_params(uri.query())?;
    let private = params.has_private_filter();
    // Subscribe before anything is read from Postgres (the session included): a
    // revocation projected after the session lookup, or a file event projected after
    // the history's watermark, is then guaranteed to arrive on these receivers.
    let live = params.live.then(|| fanout.subscribe_files());
    let revocations = private.then(|| fanout.subscribe().revocations);
    // Public streams ignore credentials entirely.
    let session = match private {
        true => stream_session(state, uri, headers, &params).await?,
        false => None,
    };
    let keys = params.keys();
    for filter in &params.filters {
        authorize_stream_read(session.as_ref().map(Session::view), &keys, filter)?;
    }
    // Without the fan-out a revocation could not close the stream: refuse rather
    // than serve private events that might outlive their session.
    if private && !fanout.is_up() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Private event streams are temporarily unavailable",
        ));
    }
    // History from the replica once it has replayed the log as it is now (after the
    // subscription, so it joins the live tail without a gap), else from the primary.
    let state = &state.reading_all().await;
    let owners: Vec<String> = dedup(params.users.iter().map(|u| u.z32.clone()).collect());
    let existing = state.store.existing_users(&owners).await?;
    if existing.len() != owners.len() {
        return Err(ApiError::not_found());
    }
    let users = match user_cursors(state, &params, headers).await? {
        Some(users) => users,
        None => return Ok(Opened::Empty),
    };
    let guard = match (session, revocations) {
        (Some(session), Some(revocations)) => Some(Guard {
            user: session.user.to_z32(),
            kind: session.kind,
            revocations,
        }),
        _ => None,
    };
    Ok(Opened::Stream(Box::new(Engine::new(
        state.store.clone(),
        Followed::Users(users),
        params.filters,
        params.reverse,
        params.limit,
        live,
        guard,
    ))))
}

/// Opens the operator's stream (admin API, behind its password): every user's events,
/// private paths included, with one global cursor. No session and no revocation guard:
/// the operator's authority does not end with any user's session.
pub async fn open_operator(
    state: &AppState,
    fanout: &Fanout,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Opened, ApiError> {
    let OperatorParams {
        users,
        cursor,
        filters,
        limit,
        live,
        reverse,
    } = operator_stream_params(uri.query())?;
    let live = live.then(|| fanout.subscribe_files());
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(EventSeq);
    let cursor = match (cursor, last_event_id, reverse) {
        (None, resume, _) => resume,
        (Some(c), None, _) => Some(c),
        (Some(c), Some(resume), false) => Some(c.max(resume)),
        (Some(c), Some(resume), true) => Some(c.min(resume)),
    };
    if cursor.is_some_and(|c| c.0 > i64::MAX as u64) && !reverse {
        return Ok(Opened::Empty);
    }
    let followed = if users.is_empty() {
        Followed::All { cursor }
    } else {
        let owners = dedup(users);
        let existing = state.store.existing_users(&owners).await?;
        if existing.len() != owners.len() {
            return Err(ApiError::not_found());
        }
        Followed::Users(
            owners
                .into_iter()
                .map(|owner| UserCursor { owner, cursor })
                .collect(),
        )
    };
    Ok(Opened::Stream(Box::new(Engine::new(
        state.store.clone(),
        followed,
        filters,
        reverse,
        limit,
        live,
        None,
    ))))
}

fn dedup(mut items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.clone()));
    items
}

/// Credential selection for private streams (spec §3.6): a request that carries
/// `Authorization: Bearer …` is judged by its bearer alone, even an invalid one; else
/// the cookie named after the request's tenant; else the cookie named after the single
/// `user`.
async fn stream_session(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    params: &StreamParams,
) -> Result<Option<Session>, ApiError> {
    let has_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if has_bearer {
        return bearer_session(headers, state).await;
    }
    if let Some(tenant) = request_tenant(uri, headers)
        && let Some(session) = cookie_session(headers, &tenant, state).await?
    {
        return Ok(Some(session));
    }
    match params.users.as_slice() {
        [only] => cookie_session(headers, &only.key, state).await,
        _ => Ok(None),
    }
}

/// Per-user cursors, merged with `Last-Event-ID`. `None` when a cursor lies beyond
/// every possible sequence.
async fn user_cursors(
    state: &AppState,
    params: &StreamParams,
    headers: &HeaderMap,
) -> Result<Option<Vec<UserCursor>>, ApiError> {
    // Everything this request already received: its stream is in global sequence
    // order, so the last id is a resume point for all of its users.
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(EventSeq);
    let mut users: Vec<UserCursor> = Vec::with_capacity(params.users.len());
    for user in &params.users {
        let mut cursor =
            match user.cursor.as_deref() {
                None | Some("") => None,
                Some(text) => match parse_cursor(text) {
                    Some(RawCursor::Seq(seq)) => Some(seq),
                    Some(RawCursor::Timestamp(us)) => {
                        Some(state.store.event_seq_at(us).await?.ok_or_else(|| {
                            ApiError::bad_request(format!("Invalid cursor: {text}"))
                        })?)
                    }
                    None => return Err(ApiError::bad_request(format!("Invalid cursor: {text}"))),
                },
            };
        if let Some(resume) = last_event_id {
            cursor = Some(match (cursor, params.reverse) {
                (None, _) => resume,
                (Some(c), false) => c.max(resume),
                (Some(c), true) => c.min(resume),
            });
        }
        if cursor.is_some_and(|c| c.0 > i64::MAX as u64) && !params.reverse {
            return Ok(None);
        }
        // The same user twice: one cursor, the union of what both asked for.
        match users.iter_mut().find(|u| u.owner == user.z32) {
            Some(existing) => {
                existing.cursor = match (existing.cursor, cursor, params.reverse) {
                    (Some(a), Some(b), false) => Some(a.min(b)),
                    (Some(a), Some(b), true) => Some(a.max(b)),
                    _ => None,
                }
            }
            None => users.push(UserCursor {
                owner: user.z32.clone(),
                cursor,
            }),
        }
    }
    Ok(Some(users))
}
