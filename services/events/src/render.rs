//! The wire forms of one event: SSE frame bytes and WebSocket JSON.
//!
//! The SSE frame's data is the reference's (spec §3.6), byte for byte, followed by an
//! `id:` line so that browsers' `EventSource` resends `Last-Event-ID` on reconnect (a
//! field, not data: no client sees it in an event's data). Two more data lines are
//! opt-in, because every `EventSource` client sees the data lines of every frame:
//! `timestamps=true` adds `data: ts: <RFC 3339>` and `merkle_roots=true` adds
//! `data: merkle_root: <hex>` (the owner's tree root right after the event, see
//! docs/merkle.md), in that order after the reference's lines. A log event that
//! changes several files is several frames, and only its last one carries the `id:`:
//! a client cut off in the middle resumes from the event before and gets the whole
//! event again, never half of it.

use crate::fanout::{FileEvent, Op};
use api::rfc3339;
use bytes::Bytes;

/// The form of a content hash in SSE and WebSocket events: the ETag's, without quotes.
pub fn content_hash_base64(hash: &[u8; 32]) -> String {
    blobs::BlobHash(*hash).to_base64()
}

/// The data lines of an SSE frame beyond the reference's, as the client asked for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameExtras {
    /// `data: ts: <RFC 3339>`: when the homeserver accepted the write.
    pub ts: bool,
    /// `data: merkle_root: <hex>`: the owner's root right after the event.
    pub merkle_root: bool,
}

pub fn sse_frame(event: &FileEvent, extras: FrameExtras) -> Bytes {
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
    if let Some(to) = &event.moved_to {
        out.push_str("\ndata: moved_to: ");
        out.push_str(to);
    }
    if extras.ts {
        out.push_str("\ndata: ts: ");
        out.push_str(&rfc3339(event.ts_us));
    }
    if let (true, Some(root)) = (extras.merkle_root, &event.merkle_root) {
        out.push_str("\ndata: merkle_root: ");
        out.push_str(&hex::encode(root));
    }
    if event.ends_event() {
        out.push_str("\nid: ");
        out.push_str(&event.seq.0.to_string());
    }
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
    /// Only on events that change several files: this frame's place and their number.
    /// A client resumes from the `cursor` of a frame whose `line` is `lines - 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<u32>,
    /// Only on `MOVED` events: the homeserver the user lives on from then on.
    #[serde(skip_serializing_if = "Option::is_none")]
    moved_to: Option<&'a str>,
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
        line: (event.lines > 1).then_some(event.line),
        lines: (event.lines > 1).then_some(event.lines),
        moved_to: event.moved_to.as_deref(),
    };
    serde_json::to_string(&json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::EventSeq;

    fn line(line: u32, lines: u32) -> FileEvent {
        FileEvent {
            seq: EventSeq(7),
            line,
            lines,
            owner: "o".into(),
            op: Op::Del,
            path: format!("/pub/{line}"),
            content_hash: None,
            ts_us: 0,
            merkle_root: None,
            moved_to: None,
        }
    }

    #[test]
    fn only_the_last_line_of_an_event_is_a_resume_point() {
        let frames: Vec<String> = (0..3)
            .map(|i| {
                String::from_utf8(sse_frame(&line(i, 3), FrameExtras::default()).to_vec()).unwrap()
            })
            .collect();
        assert!(!frames[0].contains("\nid: ") && !frames[1].contains("\nid: "));
        assert!(frames[2].ends_with("\nid: 7\n\n"), "{}", frames[2]);
        assert!(
            String::from_utf8(sse_frame(&line(0, 1), FrameExtras::default()).to_vec())
                .unwrap()
                .ends_with("\nid: 7\n\n")
        );

        let json: serde_json::Value = serde_json::from_str(&ws_json(&line(1, 3))).unwrap();
        assert_eq!(
            (json["line"].as_u64(), json["lines"].as_u64()),
            (Some(1), Some(3))
        );
        let single: serde_json::Value = serde_json::from_str(&ws_json(&line(0, 1))).unwrap();
        assert!(single.get("line").is_none() && single.get("lines").is_none());
    }
}
