//! `GET /events-ws`: the same subscription as `/events-stream`, as JSON text frames
//! `{"type","user","path","cursor","content_hash","ts"}`.
//!
//! A client resumes with `user=<z32>:<cursor>` (the last `cursor` it received).
//! Slow clients: the writer awaits each send, so a client that does not read stops
//! its own engine, falls behind the fan-out ring and is closed with 1013 ("try again
//! later"); others are unaffected. On server shutdown a stream is closed with 1012
//! (service restart) and a reason that names the cursor to resume from.

use crate::engine::End;
use crate::fanout::Fanout;
use crate::open::{Opened, open};
use crate::render::ws_json;
use api::{ApiError, AppState};
use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const PING_INTERVAL: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/events-ws", operation_id = "events_websocket", tag = "events", responses((status = 101, description = "a WebSocket of the same events as /events-stream"), (status = 400, description = "invalid parameters")))]
pub async fn get(
    State(state): State<AppState>,
    Extension(fanout): Extension<Fanout>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Parameters and authorization first, so that their texts are the same as SSE's.
    let opened = open(&state, &fanout, &uri, &headers).await?;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let shutdown = state.shutdown.clone();
    let metrics = state.metrics.clone();
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _counted = metrics.stream_opened("ws");
        run(socket, opened, shutdown).await
    }))
}

enum Step {
    Event(Result<crate::fanout::FileEvent, End>),
    ClientGone,
    Ignore,
    Ping,
    ShuttingDown,
}

async fn run(socket: WebSocket, opened: Opened, shutdown: CancellationToken) {
    let (mut sink, mut incoming) = socket.split();
    let mut engine = match opened {
        Opened::Stream(engine) => engine,
        Opened::Empty => {
            let _ = sink.send(close(End::Complete)).await;
            return;
        }
    };
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    loop {
        let step = tokio::select! {
            biased;
            () = shutdown.cancelled() => Step::ShuttingDown,
            next = engine.next() => Step::Event(next),
            message = incoming.next() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Step::ClientGone,
                Some(Ok(_)) => Step::Ignore,
            },
            _ = ping.tick() => Step::Ping,
        };
        match step {
            Step::Event(Ok(event)) => {
                if sink
                    .send(Message::Text(ws_json(&event).into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Step::Event(Err(end)) => {
                let _ = sink.send(close(end)).await;
                return;
            }
            Step::ShuttingDown => {
                let _ = sink.send(restart(engine.last_sent())).await;
                return;
            }
            Step::ClientGone => return,
            Step::Ignore => {}
            Step::Ping => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The close frame of a server shutdown: 1012 (service restart) and, when something was
/// sent, the cursor to resume from (`user=<key>:<cursor>`).
fn restart(last_sent: Option<domain::EventSeq>) -> Message {
    let reason = match last_sent {
        Some(seq) => format!("server restarting: resume from cursor {}", seq.0),
        None => "server restarting: reconnect".to_string(),
    };
    Message::Close(Some(CloseFrame {
        code: close_code::RESTART,
        reason: reason.into(),
    }))
}

fn close(end: End) -> Message {
    let (code, reason) = match end {
        End::Complete => (close_code::NORMAL, "complete"),
        End::Lagged => (close_code::AGAIN, "lagged: resume from your cursor"),
        End::Revoked => (close_code::POLICY, "session ended"),
        End::Unavailable => (close_code::ERROR, "temporarily unavailable"),
    };
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
