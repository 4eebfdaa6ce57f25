//! `GET /events-stream`: Server-Sent Events.
//!
//! The body is written by hand rather than with `axum::response::Sse` because the
//! reference's bytes are exact (field order, `cache-control: no-store` instead of axum's
//! `no-cache`). The response head goes out as soon as the handler returns: hyper
//! flushes it when the body first has nothing ready, so the SDK's `subscribe()` returns
//! before the first event.
//!
//! On shutdown (`AppState::shutdown`) every stream ends with [`shutdown_frame`], which
//! gives its resume cursor, so the server's drain does not wait for streams that would
//! otherwise never end.

use crate::engine::{End, Engine};
use crate::fanout::Fanout;
use crate::open::{Opened, open, open_operator};
use crate::params::frame_extras;
use crate::render::{FrameExtras, KEEP_ALIVE, sse_frame};
use api::metrics::StreamGuard;
use api::{ApiError, AppState};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use domain::EventSeq;
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Idle time after which a keep-alive comment is sent.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/events-stream", tag = "events", operation_id = "events_stream", params(("user" = Option<String>, Query, description = "one or more users, `user=<key>[:<cursor>]`"), ("live" = Option<bool>, Query), ("limit" = Option<u32>, Query), ("reverse" = Option<bool>, Query), ("path" = Option<String>, Query)), responses((status = 200, description = "Server-Sent Events", content_type = "text/event-stream"), (status = 400, description = "invalid parameters")))]
pub async fn get(
    State(state): State<AppState>,
    Extension(fanout): Extension<Fanout>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let opened = open(&state, &fanout, &uri, &headers).await;
    respond(&state, opened, &uri)
}

/// The operator's `GET /events-stream` (admin API): every user, private paths
/// included. Mounted only behind the admin password.
#[utoipa::path(get, path = "/events-stream", tag = "admin", operation_id = "operator_events_stream", responses((status = 200, description = "Server-Sent Events of every user, private paths included", content_type = "text/event-stream"), (status = 401, description = "no or a wrong admin password")))]
pub async fn get_operator(
    State(state): State<AppState>,
    Extension(fanout): Extension<Fanout>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let opened = open_operator(&state, &fanout, &uri, &headers).await;
    respond(&state, opened, &uri)
}

/// The stream, or the refusal, with the headers the reference puts on every answer of
/// its stream route, refusals included: `no-store` and the `Vary` of credentials.
fn respond(state: &AppState, opened: Result<Opened, ApiError>, uri: &Uri) -> Response {
    // The opt-in lines are checked after everything the reference checks, so that a
    // request it would refuse gets its refusal here too.
    let opened = opened.and_then(|opened| Ok((opened, frame_extras(uri.query())?)));
    let mut response = match opened {
        Err(refused) => refused.into_response(),
        Ok((opened, extras)) => {
            let body = match opened {
                Opened::Empty => Body::empty(),
                Opened::Stream(engine) => {
                    let open = OpenStream {
                        engine,
                        extras,
                        shutdown: state.shutdown.clone(),
                        _counted: state.metrics.stream_opened("sse"),
                    };
                    Body::from_stream(frames(open, KEEP_ALIVE_INTERVAL))
                }
            };
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            response
        }
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("pubky-host, Authorization, Cookie"),
    );
    response
}

/// One open stream: its engine, the process's shutdown signal, and its count in
/// `event_stream_active_connections` (released when the body is dropped).
pub struct OpenStream {
    pub engine: Box<Engine>,
    /// The data lines beyond the reference's that the client asked for.
    pub extras: FrameExtras,
    pub shutdown: CancellationToken,
    pub _counted: StreamGuard,
}

enum Step {
    Event(Result<crate::fanout::FileEvent, End>),
    KeepAlive,
    ShuttingDown,
}

/// The SSE byte stream of one subscription; ends when the engine ends, or with
/// [`shutdown_frame`] when the server shuts down.
pub fn frames(
    open: OpenStream,
    keep_alive: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::unfold(Some(open), move |open| async move {
        let mut open = open?;
        let step = tokio::select! {
            biased;
            () = open.shutdown.cancelled() => Step::ShuttingDown,
            next = open.engine.next() => Step::Event(next),
            _ = tokio::time::sleep(keep_alive) => Step::KeepAlive,
        };
        match step {
            Step::Event(Ok(event)) => {
                let frame = sse_frame(&event, open.extras);
                Some((Ok(frame), Some(open)))
            }
            Step::Event(Err(end)) => {
                tracing::debug!(?end, "event stream ended");
                None
            }
            Step::KeepAlive => Some((Ok(Bytes::from_static(KEEP_ALIVE)), Some(open))),
            // The last item: the stream ends after it (`None` state).
            Step::ShuttingDown => Some((Ok(shutdown_frame(open.engine.last_sent())), None)),
        }
    })
}

/// The frame that ends a stream when the server shuts down. It dispatches no event
/// (a comment, `retry:` and `id:` only), so clients that do not know it skip it, while
/// `EventSource` records the `id` and reconnects after `retry` ms with it as
/// `Last-Event-ID`, which resumes exactly after the last event sent. A stream that sent
/// nothing yet has no `id`: the client resumes with its original request.
pub fn shutdown_frame(last_sent: Option<EventSeq>) -> Bytes {
    let retry_ms = api::error::RETRY_AFTER_SECS * 1000;
    Bytes::from(match last_sent {
        Some(seq) => format!(
            ": server shutting down; resume with Last-Event-ID: {seq}\nretry: {retry_ms}\nid: {seq}\n\n",
            seq = seq.0
        ),
        None => format!(
            ": server shutting down; reconnect with the same request\nretry: {retry_ms}\n\n"
        ),
    })
}
