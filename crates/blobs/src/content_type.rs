//! Content-type detection at write time (spec §5.4).
//!
//! Magic bytes win over the path's extension, so a PNG uploaded as `x.txt` is served as
//! `image/png`; the extension is the fallback for formats without a signature (text, JSON);
//! `application/octet-stream` is the last resort. The request's `Content-Type` header is
//! ignored by design.
//!
//! The reference server sniffs the first body chunk as the network delivered it. We sniff
//! the first [`SNIFF_LEN`] bytes instead, however they were chunked, so the detected type
//! depends only on the content and the path: the same bytes always get the same type. For
//! any first chunk at least that long (the usual case) the two agree.

/// How many leading bytes are offered to the magic-byte matchers.
pub const SNIFF_LEN: usize = 8 * 1024;

/// The fallback for content with no signature and no known extension.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Detects the content type from the leading bytes of the content and the path it is stored at.
pub fn detect(prefix: &[u8], path_hint: &str) -> String {
    if let Some(kind) = infer::get(prefix) {
        return kind.mime_type().to_owned();
    }
    // Only the last segment counts: a dot in a folder name is not an extension.
    let name = path_hint.rsplit('/').next().unwrap_or(path_hint);
    match mime_guess::from_path(name).first_raw() {
        Some(mime) => mime.to_owned(),
        None => OCTET_STREAM.to_owned(),
    }
}

/// Collects the first [`SNIFF_LEN`] bytes of a stream without holding more.
#[derive(Default)]
pub(crate) struct Sniffer {
    buf: Vec<u8>,
}

impl Sniffer {
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let room = SNIFF_LEN.saturating_sub(self.buf.len());
        if room > 0 {
            self.buf.extend_from_slice(&chunk[..room.min(chunk.len())]);
        }
    }

    pub(crate) fn detect(&self, path_hint: &str) -> String {
        detect(&self.buf, path_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn magic_bytes_win() {
        assert_eq!(detect(PNG, "/pub/a.txt"), "image/png");
    }

    #[test]
    fn extension_fallback() {
        assert_eq!(detect(b"{}", "/pub/app/x.json"), "application/json");
        assert_eq!(detect(b"hello", "/pub/a.txt"), "text/plain");
        assert_eq!(detect(b"hello", "/pub/noext"), OCTET_STREAM);
        assert_eq!(detect(b"hello", "/pub/dir.json/noext"), OCTET_STREAM);
        assert_eq!(detect(b"", ""), OCTET_STREAM);
    }

    #[test]
    fn sniffer_is_independent_of_chunking() {
        let mut s = Sniffer::default();
        for b in PNG {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.detect("/a.txt"), "image/png");
        let mut s = Sniffer::default();
        s.feed(&vec![0u8; SNIFF_LEN * 2]);
        assert_eq!(s.buf.len(), SNIFF_LEN);
    }
}
