//! The wire forms of one event: SSE frame bytes and WebSocket JSON.
//!
//! The SSE frame is the reference's (spec §3.6) with additions the published SDK
//! ignores (its parser skips unknown `key: value` data lines and handles standard
//! `id:` fields): after the reference's lines a `data: ts: …` line, a
//! `data: merkle_root: <hex>` line (the owner's tree root right after the event, see
//! docs/merkle.md), and an `id:` line, so that browsers' `EventSource` resends
//! `Last-Event-ID` on reconnect.

use crate::fanout::{FileEvent, Op};
use api::rfc3339;
use bytes::Bytes;

/// The form of a content hash in SSE and WebSocket events: the ETag's, without quotes.
pub fn content_hash_base64(hash: &[u8; 32]) -> String {
    blobs::BlobHash(*hash).to_base64()
}

pub fn sse_frame(event: &FileEvent) -> Bytes {
    let mut out = String::with_capacity(256);
    out.push_str("event: ");
    out.push_str(event.op.as_str());
    out.push_str("\ndata: pubky://");
    out.push_str(&event.owner);
    out.push_str(&event.path);
    out.push_str("\ndata: cursor: ");
    out.push_str(&event.seq.0.to_string());
    if let (Op::Put, Some(hash)) = (event.op, &event.content_hash) {
        out.push_str("\ndata: content_hash: ");
        out.push_str(&content_hash_base64(hash));
    }
    out.push_str("\ndata: ts: ");
    out.push_str(&rfc3339(event.ts_us));
    if let Some(root) = &event.merkle_root {
        out.push_str("\ndata: merkle_root: ");
        out.push_str(&hex::encode(root));
    }
    out.push_str("\nid: ");
    out.push_str(&event.seq.0.to_string());
    out.push_str("\n\n");
    Bytes::from(out)
}

/// The keep-alive comment.
pub const KEEP_ALIVE: &[u8] = b":\n\n";

#[derive(serde::Serialize)]
struct Json<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    user: &'a str,
    path: &'a str,
    cursor: u64,
    content_hash: Option<String>,
    ts: String,
    merkle_root: Option<String>,
}

pub fn ws_json(event: &FileEvent) -> String {
    let json = Json {
        kind: event.op.as_str(),
        user: &event.owner,
        path: &event.path,
        cursor: event.seq.0,
        content_hash: event.content_hash.as_ref().map(content_hash_base64),
        ts: rfc3339(event.ts_us),
        merkle_root: event.merkle_root.map(hex::encode),
    };
    serde_json::to_string(&json).unwrap_or_default()
}
