//! `GET /events-stream`: Server-Sent Events.
//!
//! The body is written by hand rather than with `axum::response::Sse` because the
//! reference's bytes are exact (field order, `cache-control: no-store` instead of axum's
//! `no-cache`). The response head goes out as soon as the handler returns: hyper
//! flushes it when the body first has nothing ready, so the SDK's `subscribe()` returns
//! before the first event.

use crate::engine::{End, Engine};
use crate::fanout::Fanout;
use crate::open::{Opened, open, open_operator};
use crate::render::{KEEP_ALIVE, sse_frame};
use api::{ApiError, AppState};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;

/// Idle time after which a keep-alive comment is sent.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

pub async fn get(
    State(state): State<AppState>,
    Extension(fanout): Extension<Fanout>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(respond(open(&state, &fanout, &uri, &headers).await?))
}

/// The operator's `GET /events-stream` (admin API): every user, private paths
/// included. Mounted only behind the admin password.
pub async fn get_operator(
    State(state): State<AppState>,
    Extension(fanout): Extension<Fanout>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(respond(
        open_operator(&state, &fanout, &uri, &headers).await?,
    ))
}

fn respond(opened: Opened) -> Response {
    let body = match opened {
        Opened::Empty => Body::empty(),
        Opened::Stream(engine) => Body::from_stream(frames(engine, KEEP_ALIVE_INTERVAL)),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("pubky-host, Authorization, Cookie"),
    );
    response
}

enum Step {
    Event(Result<crate::fanout::FileEvent, End>),
    KeepAlive,
}

/// The SSE byte stream of one subscription; ends when the engine ends.
pub fn frames(
    engine: Box<Engine>,
    keep_alive: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::unfold(Some(engine), move |engine| async move {
        let mut engine = engine?;
        let step = tokio::select! {
            next = engine.next() => Step::Event(next),
            _ = tokio::time::sleep(keep_alive) => Step::KeepAlive,
        };
        match step {
            Step::Event(Ok(event)) => Some((Ok(sse_frame(&event)), Some(engine))),
            Step::Event(Err(end)) => {
                tracing::debug!(?end, "event stream ended");
                None
            }
            Step::KeepAlive => Some((Ok(Bytes::from_static(KEEP_ALIVE)), Some(engine))),
        }
    })
}
