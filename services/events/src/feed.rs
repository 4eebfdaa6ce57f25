//! `GET /events/`: the public feed, one line per event and a final `cursor:` line.
//!
//! Only `/pub/` events, whatever the caller's credentials (spec §3.6): private events
//! are served only by authenticated streams. The query stops at the watermark (see
//! `store::feed`), so paging with the returned cursor never skips an event.
//!
//! The body is the reference's byte for byte unless the client asks for
//! `merkle_roots=true`: then each event line is followed by `merkle_root: <hex>`, the
//! owner's public tree root right after that event (docs/merkle.md). Opt-in, because
//! indexers written against the reference treat every line as an event or a cursor.
//!
//! Two headers tell a reader which log the cursor belongs to: `Pubky-Log-Id` changes
//! exactly when the log is replaced (a reader that sees it change should start again
//! from the beginning), and `Pubky-Log-Reseeded-Through: <seq>`, present when the log
//! was re-created from the projections (`homeserver reseed`), says that the events up
//! to that sequence re-state files that already existed rather than new writes.

use crate::params::{RawCursor, feed_params};
use api::{ApiError, AppState};
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Uri, header};

/// The log's short identity (see the module docs).
pub const LOG_ID: HeaderName = HeaderName::from_static("pubky-log-id");
/// The last re-stated event of a re-seeded log (see the module docs).
pub const LOG_RESEEDED_THROUGH: HeaderName = HeaderName::from_static("pubky-log-reseeded-through");
use axum::response::{IntoResponse, Response};

#[utoipa::path(get, path = "/events/", operation_id = "events_feed", tag = "events", params(("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query), ("merkle_roots" = Option<bool>, Query)), responses((status = 200, description = "feed lines `PUT|DEL pubky://<user>/<path>`, then `cursor: <n>`", content_type = "text/plain"), (status = 400, description = "an invalid cursor or limit")))]
pub async fn get(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let params = feed_params(uri.query())?;
    // The replica once it has replayed the log as it is now (`api::reads`).
    let state = state.reading_all().await;
    let after = match params.cursor {
        RawCursor::Seq(seq) => seq,
        RawCursor::Timestamp(us) => state
            .store
            .event_seq_at(us)
            .await?
            .ok_or_else(|| ApiError::bad_request("Invalid cursor"))?,
    };
    let events = if params.limit == 0 {
        Vec::new()
    } else {
        state
            .store
            .public_events(after, u32::from(params.limit))
            .await?
    };
    let marks = state.store.log_marks().await?;
    let mut response = (
        // The reference's type, without a charset (the body is ASCII but for paths,
        // which are UTF-8 either way).
        [(header::CONTENT_TYPE, "text/plain")],
        render(&events, params.merkle_roots),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(id) = marks.id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(LOG_ID, id);
    }
    if let Some(through) = marks.reseeded_through {
        headers.insert(LOG_RESEEDED_THROUGH, HeaderValue::from(through.0));
    }
    Ok(response)
}

/// `PUT pubky://<user>/<path>` lines (each followed by its `merkle_root:` line when
/// `with_roots` and the root is known), then `cursor: <last seq>`; no trailing
/// newline; empty when there are no events.
pub fn render(events: &[store::feed::FeedEvent], with_roots: bool) -> String {
    let Some(last) = events.last() else {
        return String::new();
    };
    let mut body = String::with_capacity(events.len() * 96 + 24);
    for event in events {
        body.push_str(&event.op);
        body.push_str(" pubky://");
        body.push_str(&event.owner);
        body.push_str(&event.path);
        if let Some(to) = &event.moved_to {
            // `MOVED pubky://<user>/pub/ <homeserver>` (docs/move.md).
            body.push(' ');
            body.push_str(to);
        }
        body.push('\n');
        if let (true, Some(root)) = (with_roots, &event.merkle_root) {
            body.push_str("merkle_root: ");
            body.push_str(&hex::encode(root));
            body.push('\n');
        }
    }
    body.push_str("cursor: ");
    body.push_str(&last.seq.0.to_string());
    body
}
