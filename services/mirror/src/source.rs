//! The primary homeserver as the mirror sees it: its signed roots, its Merkle diff and
//! node routes, file reads, listings and its live event stream, over plain HTTP.
//!
//! Two kinds of primary ([`SourceKind`]): one of ours, read through its signed roots
//! and diffs, and any other Pubky homeserver (the reference one among them), read
//! through the routes every Pubky homeserver has: listings, file reads and
//! `/events-stream` (`crate::plain`).
//!
//! Nothing the primary answers is taken on trust: a root statement must carry a valid
//! signature of the primary's key ([`Source::signed_root`]), nodes are checked by their
//! hashes (`domain::merkle::DiffSession`), and a file's bytes by the value the tree
//! holds for its path (the caller, `sync`).

use domain::PublicKey;
use domain::merkle::{self, Hash};
use futures::StreamExt;
use std::time::Duration;

/// Why a request to the primary failed; the text goes to the mirror's `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The primary did not answer, or answered 5xx: retried with back-off.
    #[error("the primary is unreachable: {0}")]
    Unreachable(String),
    /// The primary answered something the mirror refuses (bad signature, a node or
    /// content that does not match its hash, an unexpected status).
    #[error("{0}")]
    Refused(String),
}

impl From<reqwest::Error> for SourceError {
    fn from(e: reqwest::Error) -> Self {
        SourceError::Unreachable(e.to_string())
    }
}

/// How the mirror reads its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A homeserver of ours: signed roots, diffs, node routes, roots on its stream.
    Merkle,
    /// Any Pubky homeserver: listings, file reads and `/events-stream` only.
    Plain,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Merkle => "merkle",
            SourceKind::Plain => "plain",
        }
    }

    pub fn parse(text: &str) -> Option<SourceKind> {
        match text {
            "merkle" => Some(SourceKind::Merkle),
            "plain" => Some(SourceKind::Plain),
            _ => None,
        }
    }
}

/// What a file read found.
pub enum Remote {
    /// The primary has no such file (deleted since it was listed or announced).
    Missing,
    /// The primary's ETag is the one asked about: the copy here is current.
    Unchanged,
    /// The content type and the response, whose body is the content.
    Body(String, reqwest::Response),
}

/// A root the primary signed, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRoot {
    pub root: Option<Hash>,
    /// The sequence (in the primary's log) of the event that produced it.
    pub seq: u64,
}

/// The one-round-trip diff's answer, its signed root checked.
#[derive(Debug, Clone)]
pub struct RemoteDiff {
    pub to: SignedRoot,
    pub complete: bool,
    pub differences: Vec<merkle::Difference>,
}

/// One event of the primary's stream (`GET /events-stream`, docs in `events::render`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub put: bool,
    pub path: String,
    pub seq: u64,
    /// BLAKE3 of the content (PUT only).
    pub content_hash: Option<Hash>,
    /// The owner's root of the path's tree right after the event, when given (the
    /// inner `None`: the tree is empty).
    pub root: Option<Option<Hash>>,
    /// Whether this frame ends its log event (the only frames that are resume points).
    pub ends_event: bool,
}

/// The primary of one mirrored user.
#[derive(Clone)]
pub struct Source {
    http: reqwest::Client,
    base: String,
    /// The primary's key: the signer of every root statement accepted.
    pub key: PublicKey,
    pub user: String,
    token: Option<String>,
    pub kind: SourceKind,
}

/// How long one request to the primary may take (a file's body excepted: it streams).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the primary is: one of ours answers the user's signed root
/// (`GET /merkle/<user>/root`) and its signer is the key a mirror added without an
/// explicit one pins (trust on first use); any other Pubky homeserver answers that
/// route with a 4xx (the reference: 400, no tenant in the `Host`), so it is a plain
/// source, whose key only the operator or the user can give.
pub async fn discover(
    http: &reqwest::Client,
    url: &str,
    user: &str,
) -> Result<(SourceKind, Option<PublicKey>), SourceError> {
    let base = url.trim_end_matches('/');
    let response = http
        .get(format!("{base}/merkle/{user}/root"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?;
    let status = response.status();
    if status.is_server_error() {
        return Err(SourceError::Unreachable(format!(
            "its signed root: {status}"
        )));
    }
    if !status.is_success() {
        return Ok((SourceKind::Plain, None));
    }
    let body: Option<serde_json::Value> = response.json().await.ok();
    let signer = body.as_ref().and_then(|b| b["signer"].as_str());
    match signer.and_then(|s| PublicKey::try_from(s).ok()) {
        Some(key) => Ok((SourceKind::Merkle, Some(key))),
        // A 200 that is no root statement (a file of that name, say).
        None => Ok((SourceKind::Plain, None)),
    }
}

/// The JSON body of a 200, or the error its status means.
async fn json_body(
    response: reqwest::Response,
    what: &str,
) -> Result<serde_json::Value, SourceError> {
    let status = response.status();
    if status.is_server_error() {
        return Err(SourceError::Unreachable(format!("{what}: {status}")));
    }
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(SourceError::Refused(format!(
            "the primary refused {what}: {status} {text}"
        )));
    }
    Ok(response.json().await?)
}

fn parse_hex(text: Option<&str>) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text?, &mut out).ok()?;
    Some(out)
}

fn root_value(text: Option<&str>) -> Option<Hash> {
    parse_hex(text).filter(|h| *h != [0; 32])
}

impl Source {
    pub fn new(
        http: reqwest::Client,
        url: &str,
        key: PublicKey,
        user: &str,
        token: Option<String>,
    ) -> Self {
        Source {
            http,
            base: url.trim_end_matches('/').to_owned(),
            key,
            user: user.to_owned(),
            token,
            kind: SourceKind::Merkle,
        }
    }

    /// The same source read as `kind`.
    pub fn with_kind(mut self, kind: SourceKind) -> Self {
        self.kind = kind;
        self
    }

    /// Whether the user gave this mirror a read grant for `/priv/`.
    pub fn has_private(&self) -> bool {
        self.token.is_some()
    }

    fn get(&self, url: String) -> reqwest::RequestBuilder {
        let request = self.http.get(url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn tree(private: bool) -> &'static str {
        if private { "priv" } else { "pub" }
    }

    /// Checks a signed root object (`signed_root` of the read-api) against the
    /// primary's key and the tree it should be about.
    fn check_signed(
        &self,
        body: &serde_json::Value,
        private: bool,
    ) -> Result<SignedRoot, SourceError> {
        let statement = body["statement"].as_str().unwrap_or_default();
        let mut signature = [0u8; 64];
        let signed = body["signature"]
            .as_str()
            .is_some_and(|s| hex::decode_to_slice(s, &mut signature).is_ok())
            && merkle::verify_root_statement(&self.key, statement, &signature);
        if !signed {
            return Err(SourceError::Refused(format!(
                "the primary's root statement for {} is not signed by {}",
                self.user,
                self.key.to_z32()
            )));
        }
        // The signature covers the statement only: its lines are the truth.
        let field = |name: &str| {
            statement
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        };
        if field("user") != Some(self.user.as_str()) || field("tree") != Some(Self::tree(private)) {
            return Err(SourceError::Refused(
                "the primary signed a root of another user or tree".into(),
            ));
        }
        let root = field("root")
            .and_then(|r| parse_hex(Some(r)))
            .ok_or_else(|| SourceError::Refused("a root statement without a root".into()))?;
        let seq = field("seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok(SignedRoot {
            root: (root != [0; 32]).then_some(root),
            seq,
        })
    }

    /// The user's current root of one tree, signature checked.
    pub async fn signed_root(&self, private: bool) -> Result<SignedRoot, SourceError> {
        let url = format!(
            "{}/merkle/{}/root?tree={}",
            self.base,
            self.user,
            Self::tree(private)
        );
        let response = self.get(url).timeout(REQUEST_TIMEOUT).send().await?;
        let body = json_body(response, "the signed root").await?;
        self.check_signed(&body, private)
    }

    /// `GET /merkle/<user>/diff?from=<root>`: `None` when the primary no longer holds
    /// `from` (404: the caller diffs node by node instead).
    pub async fn diff(
        &self,
        private: bool,
        from: Option<Hash>,
    ) -> Result<Option<RemoteDiff>, SourceError> {
        let url = format!(
            "{}/merkle/{}/diff?tree={}&from={}&limit=10000",
            self.base,
            self.user,
            Self::tree(private),
            merkle::root_hex(from)
        );
        let response = self.get(url).timeout(REQUEST_TIMEOUT).send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = json_body(response, "a diff").await?;
        let to = self.check_signed(&body["signed_root"], private)?;
        let differences = body["differences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| {
                Some(merkle::Difference {
                    key: d["path"].as_str()?.to_owned(),
                    local: parse_hex(d["from"].as_str()),
                    remote: parse_hex(d["to"].as_str()),
                })
            })
            .collect();
        Ok(Some(RemoteDiff {
            to,
            complete: body["complete"].as_bool().unwrap_or(false),
            differences,
        }))
    }

    /// `POST /merkle/<user>/nodes`: the encodings of `wanted` (checked by the caller's
    /// `DiffSession`, which refuses a node that does not hash to what it asked for).
    pub async fn nodes(&self, private: bool, wanted: &[Hash]) -> Result<Vec<Vec<u8>>, SourceError> {
        let mut out = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(1024) {
            let url = format!(
                "{}/merkle/{}/nodes?tree={}",
                self.base,
                self.user,
                Self::tree(private)
            );
            let body: Vec<u8> = chunk.iter().flatten().copied().collect();
            let mut request = self.http.post(url).body(body).timeout(REQUEST_TIMEOUT);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await?;
            let status = response.status();
            if !status.is_success() {
                return Err(if status.is_server_error() {
                    SourceError::Unreachable(format!("nodes: {status}"))
                } else {
                    SourceError::Refused(format!("the primary refused nodes: {status}"))
                });
            }
            let bytes = response.bytes().await?;
            let mut rest = &bytes[..];
            while rest.len() >= 4 {
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let Some(node) = rest.get(4..4 + len) else {
                    return Err(SourceError::Refused("a truncated node frame".into()));
                };
                out.push(node.to_vec());
                rest = &rest[4 + len..];
            }
        }
        Ok(out)
    }

    /// The current content of a file: its content type and a stream of its bytes.
    /// `None` when the primary has no such file (it changed since).
    pub async fn file(
        &self,
        path: &str,
    ) -> Result<Option<(String, reqwest::Response)>, SourceError> {
        Ok(match self.file_since(path, None).await? {
            Remote::Body(content_type, response) => Some((content_type, response)),
            Remote::Missing | Remote::Unchanged => None,
        })
    }

    /// A file read, conditional on `held` (the hash of the copy here, sent as
    /// `If-None-Match`: a 304 costs no body).
    pub async fn file_since(&self, path: &str, held: Option<&Hash>) -> Result<Remote, SourceError> {
        let encoded = percent_encoding::utf8_percent_encode(path, PATH_SET);
        let url = format!("{}/storage/{}{}", self.base, self.user, encoded);
        let mut request = self.get(url);
        if let Some(hash) = held {
            request = request.header(
                reqwest::header::IF_NONE_MATCH,
                blobs::BlobHash(*hash).etag(),
            );
        }
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Remote::Missing);
        }
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Remote::Unchanged);
        }
        if status.is_server_error() {
            return Err(SourceError::Unreachable(format!("GET {path}: {status}")));
        }
        if !status.is_success() {
            return Err(SourceError::Refused(format!(
                "the primary refused GET {path}: {status}"
            )));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        Ok(Remote::Body(content_type, response))
    }

    /// One page of the deep listing of the user's `/pub/` (or `/priv/`), after the
    /// path `after` (exclusive), in the primary's (byte) order: the paths.
    pub async fn list(
        &self,
        private: bool,
        after: Option<&str>,
        limit: u16,
    ) -> Result<Vec<String>, SourceError> {
        let tree = Self::tree(private);
        let mut url = format!("{}/storage/{}/{tree}/?limit={limit}", self.base, self.user);
        if let Some(after) = after {
            let cursor = format!("{}{after}", self.user);
            let cursor = percent_encoding::utf8_percent_encode(&cursor, PATH_SET);
            url.push_str(&format!("&cursor={cursor}"));
        }
        let response = self.get(url).timeout(REQUEST_TIMEOUT).send().await?;
        let status = response.status();
        // "Directory Not Found": the tree is empty.
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if status.is_server_error() {
            return Err(SourceError::Unreachable(format!(
                "listing /{tree}/: {status}"
            )));
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(SourceError::Refused(format!(
                "the primary refused the listing of /{tree}/: {status} {text}"
            )));
        }
        let prefix = format!("pubky://{}", self.user);
        let text = response.text().await?;
        Ok(text
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter(|path| !path.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The sequence of the user's newest event at the primary (0: none yet), read
    /// backwards from its `/events-stream`: where a copy by listing starts following.
    pub async fn newest_seq(&self) -> Result<u64, SourceError> {
        let mut url = format!(
            "{}/events-stream?user={}&reverse=true&limit=1&path=/pub/",
            self.base, self.user
        );
        if self.token.is_some() {
            url.push_str("&path=/priv/");
        }
        let response = self.get(url).timeout(REQUEST_TIMEOUT).send().await?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(if status.is_server_error() {
                SourceError::Unreachable(format!("events-stream: {status}"))
            } else {
                SourceError::Refused(format!(
                    "the primary refused its event stream: {status} {text}"
                ))
            });
        }
        let text = response.text().await?;
        Ok(cursors(&text).max().unwrap_or(0))
    }

    /// The user's live event stream after `cursor`, with Merkle roots; private paths
    /// too when the mirror holds a read grant.
    pub async fn events(
        &self,
        cursor: u64,
    ) -> Result<impl futures::Stream<Item = Result<StreamEvent, SourceError>> + use<>, SourceError>
    {
        // Roots are ours only: a plain source is not asked for them.
        let roots = match self.kind {
            SourceKind::Merkle => "&merkle_roots=true",
            SourceKind::Plain => "",
        };
        let mut url = format!(
            "{}/events-stream?user={}:{cursor}&live=true{roots}&path=/pub/",
            self.base, self.user
        );
        if self.token.is_some() {
            url.push_str("&path=/priv/");
        }
        let response = self.get(url).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(if status.is_server_error() {
                SourceError::Unreachable(format!("events-stream: {status}"))
            } else {
                let text = response.text().await.unwrap_or_default();
                SourceError::Refused(format!(
                    "the primary refused its event stream: {status} {text}"
                ))
            });
        }
        Ok(frames(response.bytes_stream()))
    }

    /// How many of the user's events the primary has after `cursor` (up to `limit`):
    /// the mirror's lag.
    pub async fn events_after(&self, cursor: u64, limit: u16) -> Result<u64, SourceError> {
        let mut url = format!(
            "{}/events-stream?user={}:{cursor}&limit={limit}&path=/pub/",
            self.base, self.user
        );
        if self.token.is_some() {
            url.push_str("&path=/priv/");
        }
        let response = self.get(url).timeout(Duration::from_secs(5)).send().await?;
        if !response.status().is_success() {
            return Err(SourceError::Unreachable(format!(
                "events-stream: {}",
                response.status()
            )));
        }
        let text = response.text().await?;
        let mut seqs: Vec<u64> = cursors(&text).collect();
        seqs.dedup();
        Ok(seqs.len() as u64)
    }
}

/// The `cursor:` of each frame of an SSE body (a log event of ours may be several
/// frames with one cursor; the reference's frames have no `id:` line).
fn cursors(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: cursor: ")?.trim().parse().ok())
}

/// Characters of a path sent as they are: the path's own `/` and unreserved ones.
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Splits an SSE body into events (frames end with a blank line).
fn frames(
    body: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
) -> impl futures::Stream<Item = Result<StreamEvent, SourceError>> {
    futures::stream::unfold(
        (body, Vec::<u8>::new()),
        |(mut body, mut buffer)| async move {
            loop {
                if let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                    if let Some(event) = parse_frame(&String::from_utf8_lossy(&frame)) {
                        return Some((Ok(event), (body, buffer)));
                    }
                    continue;
                }
                match body.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e.into()), (body, buffer))),
                    None => {
                        let e = SourceError::Unreachable("the event stream ended".into());
                        return Some((Err(e), (body, Vec::new())));
                    }
                }
            }
        },
    )
}

/// One SSE frame of the primary's stream; `None` for comments (keep-alives) and
/// frames that are not file events.
pub fn parse_frame(frame: &str) -> Option<StreamEvent> {
    let mut event = StreamEvent {
        put: false,
        path: String::new(),
        seq: 0,
        content_hash: None,
        root: None,
        ends_event: false,
    };
    let mut kind = None;
    for line in frame.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = Some(k.to_owned());
        } else if let Some(id) = line.strip_prefix("id: ") {
            event.ends_event = id.parse::<u64>().is_ok();
        } else if let Some(data) = line.strip_prefix("data: ") {
            if let Some(url) = data.strip_prefix("pubky://") {
                event.path = url.find('/').map(|i| url[i..].to_owned())?;
            } else if let Some(cursor) = data.strip_prefix("cursor: ") {
                event.seq = cursor.parse().ok()?;
            } else if let Some(hash) = data.strip_prefix("content_hash: ") {
                event.content_hash = blobs::BlobHash::from_base64(hash).ok().map(|h| h.0);
            } else if let Some(root) = data.strip_prefix("merkle_root: ")
                && parse_hex(Some(root)).is_some()
            {
                event.root = Some(root_value(Some(root)));
            }
        }
    }
    event.put = match kind.as_deref()? {
        "PUT" => true,
        "DEL" => false,
        _ => return None,
    };
    (!event.path.is_empty()).then_some(event)
}
