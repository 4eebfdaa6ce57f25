//! The events service: the public feed `GET /events/`, Server-Sent Events on
//! `GET /events-stream` and WebSocket on `GET /events-ws` (spec §3.6).
//!
//! # Shape
//!
//! * History comes from the `events` projection in Postgres, never past the watermark
//!   (DESIGN §3: the cursor is the JetStream stream sequence, and a feed only serves
//!   events up to the point where every earlier one is projected), so a client that
//!   follows its cursor never misses an event, across restarts of anything.
//! * The live tail comes from one [`Fanout`] per instance: one ordered JetStream
//!   consumer feeding a broadcast channel, publishing an event only once it is
//!   projected. A stream subscribes before reading history and drops live events it
//!   already sent, so nothing falls between the phases (see `engine`).
//! * Private streams close when their grant is revoked or their cookie session ends:
//!   the fan-out also carries those account events.
//!
//! # Wiring
//!
//! `AppState` belongs to the shared HTTP layer and has no field for the fan-out, so
//! [`router`] takes the [`Fanout`] as an argument and installs it as an axum
//! `Extension` layer on its own routes: the returned `Router<AppState>` merges with the
//! other services' routers unchanged, and each process that serves events starts
//! exactly one fan-out:
//!
//! ```text
//! let fanout = events::Fanout::spawn(state.log.clone(), state.progress.clone(), state.store.clone());
//! let app = Router::new().merge(events::router(fanout)).with_state(state);
//! ```
//!
//! The `Progress` given to the fan-out must follow the projector: in-process it is the
//! projector's own; a separate events process runs `Progress::follow(&store)`.

mod engine;
mod fanout;
mod feed;
mod open;
mod params;
mod render;
mod sse;
mod ws;

pub use api::rfc3339;
pub use engine::End;
pub use fanout::{CAPACITY, Fanout, FileEvent, Op, Revocation, Subscription};
pub use params::MAX_USERS;
pub use render::{FrameExtras, content_hash_base64, sse_frame, ws_json};
pub use sse::KEEP_ALIVE_INTERVAL;

use api::AppState;
use axum::Extension;
use axum::Router;
use axum::routing::get;

/// The events routes, with `fanout` as their live source.
pub fn router(fanout: Fanout) -> Router<AppState> {
    Router::new()
        .route("/events/", get(feed::get))
        .route("/events-stream", get(sse::get))
        .route("/events-ws", get(ws::get))
        .layer(Extension(fanout))
}

/// The operator's stream, `GET /events-stream` over every user including `/priv/`
/// paths, for the admin API's router. It has no authorization of its own: whoever
/// mounts it must put it behind the operator's credentials.
pub fn operator_router(fanout: Fanout) -> Router<AppState> {
    Router::new()
        .route("/events-stream", get(sse::get_operator))
        .layer(Extension(fanout))
}

/// The client-facing feeds in the OpenAPI document (`homeserver::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(feed::get, sse::get, ws::get))]
pub struct ApiDoc;

/// The operator's stream, for the admin API's document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(sse::get_operator))]
pub struct OperatorApiDoc;
