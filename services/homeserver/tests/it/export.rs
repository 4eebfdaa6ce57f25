//! Account export (`GET /export/<user>`, `homeserver export`, `homeserver
//! verify-archive`; docs/export.md) against real NATS and Postgres: who may export which
//! tree, pages and their cursor, byte-exact contents, and the refusal of an archive with
//! a flipped byte or a missing entry naming the first bad path.

use crate::common;
use homeserver::archive_file::{ArchiveReader, Item, verify};
use reqwest::StatusCode;

/// Fetches one page; its status and body.
async fn page(
    s: &common::TestServer,
    token: Option<&str>,
    owner: &str,
    query: &str,
) -> (StatusCode, Vec<u8>) {
    let mut request = s.http.get(s.url(&format!("/export/{owner}?{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

/// The pieces of a page: bytes up to (not including) its end record, where its entries
/// start, its entries `(path, content)`, and its `next` cursor.
struct Page {
    head_and_entries: Vec<u8>,
    entries_start: usize,
    entries: Vec<(String, Vec<u8>)>,
    next: Option<String>,
    root: String,
}

fn split(body: &[u8]) -> Page {
    let mut reader = ArchiveReader::new(body).unwrap();
    let (mut entries_start, mut before_end) = (0, 0);
    let mut entries = Vec::new();
    let (mut next, mut root) = (None, String::new());
    loop {
        let offset = reader.offset() as usize;
        match reader.next_item().unwrap() {
            Some(Item::Tree { record, .. }) => {
                root = record.root;
                entries_start = reader.offset() as usize;
            }
            Some(Item::Entry { record, offset, .. }) => {
                let start = offset as usize;
                entries.push((
                    record.path,
                    body[start..start + record.size as usize].to_vec(),
                ));
            }
            Some(Item::End(end)) => {
                next = end.next;
                before_end = offset;
            }
            None => break,
        }
    }
    Page {
        head_and_entries: body[..before_end].to_vec(),
        entries_start,
        entries,
        next,
        root,
    }
}

/// Follows the pages of one tree with `limit`, and assembles them into one archive.
async fn export_by_pages(
    s: &common::TestServer,
    token: Option<&str>,
    owner: &str,
    tree: &str,
    limit: u32,
) -> (Vec<u8>, Vec<(String, Vec<u8>)>, usize) {
    let (status, body) = page(s, token, owner, &format!("tree={tree}&limit={limit}")).await;
    assert_eq!(status, StatusCode::OK);
    let first = split(&body);
    let mut archive = first.head_and_entries.clone();
    let mut entries = first.entries.clone();
    let mut next = first.next.clone();
    let mut pages = 1;
    while let Some(cursor) = next {
        let query = format!(
            "tree={tree}&limit={limit}&cursor={}&root={}",
            urlencode(&cursor),
            first.root
        );
        let (status, body) = page(s, token, owner, &query).await;
        assert_eq!(status, StatusCode::OK, "page after {cursor}");
        let page = split(&body);
        assert_eq!(page.root, first.root);
        archive.extend_from_slice(&page.head_and_entries[page.entries_start..]);
        entries.extend(page.entries);
        next = page.next;
        pages += 1;
    }
    archive.extend(domain::archive::record_line(
        &domain::archive::EndRecord::new(entries.len() as u64, None),
    ));
    (archive, entries, pages)
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn export_pages_verify_and_are_byte_exact() {
    let s = common::start().await;
    let alice = s.user().await;
    let bob = s.user().await;
    let a = alice.z32();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 7)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let mut public = vec![
        ("/pub/app/a.txt".to_string(), b"alpha".to_vec()),
        ("/pub/app/b c.txt".to_string(), b"with a space".to_vec()),
        ("/pub/app/big.bin".to_string(), big.clone()),
        ("/pub/app/empty".to_string(), Vec::new()),
        ("/pub/z/last.json".to_string(), b"{}".to_vec()),
    ];
    let private = vec![
        ("/priv/app/one".to_string(), b"secret one".to_vec()),
        ("/priv/app/two".to_string(), b"secret two".to_vec()),
    ];
    for (path, content) in public.iter().chain(&private) {
        let r = s
            .http
            .put(s.url(&format!("/storage/{a}{}", urlencode(path))))
            .bearer_auth(&alice.token)
            .body(content.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{path}");
    }
    public.sort();

    // Public: anyone, one page or many, the same verified bytes.
    let (status, body) = page(&s, None, &a, "tree=pub").await;
    assert_eq!(status, StatusCode::OK);
    let whole = split(&body);
    assert_eq!(whole.entries, public);
    assert!(whole.next.is_none());
    let trees = verify(&body[..], |_, _| {}).unwrap();
    assert_eq!((trees.len(), trees[0].entries), (1, 5));
    let metrics = s.server.state.metrics.render();
    assert!(
        metrics.contains("export_entries_total{service=\"all\"} 5")
            || metrics
                .lines()
                .any(|l| l.starts_with("export_entries_total") && l.ends_with(" 5")),
        "{metrics}"
    );
    let (archive, entries, pages) = export_by_pages(&s, None, &a, "pub", 2).await;
    assert_eq!(pages, 3);
    assert_eq!(entries, public);
    verify(&archive[..], |_, _| {}).unwrap();

    // Private: 401 anonymous, 403 another user, the owner gets it.
    let (status, body) = page(&s, None, &a, "tree=priv").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, b"Authentication required to read private storage");
    let (status, _) = page(&s, Some(&bob.token), &a, "tree=priv").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (archive, entries, _) = export_by_pages(&s, Some(&alice.token), &a, "priv", 1).await;
    assert_eq!(entries, private);
    let trees = verify(&archive[..], |_, _| {}).unwrap();
    assert_eq!(trees[0].record.tree, "priv");

    // Bad input and unknown users.
    let (status, _) = page(&s, None, &a, "tree=all").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = page(&s, None, &a, "limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let stranger = domain::Keypair::random().public_key().to_z32();
    let (status, _) = page(&s, None, &stranger, "tree=pub").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A resumed export whose tree moved since its first page: 409, start again.
    let (_, first) = page(&s, None, &a, "tree=pub&limit=2").await;
    let first = split(&first);
    s.put_ok(&alice, "/pub/app/new.txt", "moved").await;
    let query = format!(
        "tree=pub&limit=2&cursor={}&root={}",
        urlencode(first.next.as_deref().unwrap()),
        first.root
    );
    let (status, _) = page(&s, None, &a, &query).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The operator's export: both trees in one file, verified offline.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.archive");
    homeserver::archive_cli::export(
        &s.config,
        &s.keypair,
        &a,
        homeserver::archive_cli::Trees::All,
        &file,
    )
    .await
    .unwrap();
    homeserver::archive_cli::verify_archive(&file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let trees = verify(&bytes[..], |_, _| {}).unwrap();
    assert_eq!(
        trees
            .iter()
            .map(|t| (t.record.tree.as_str(), t.entries))
            .collect::<Vec<_>>(),
        [("pub", 6), ("priv", 2)]
    );
    assert_eq!(trees[0].record.signer, s.keypair.public_key().to_z32());

    // One flipped byte in big.bin's content: refused, naming it.
    let at = find(&bytes, b"\"path\":\"/pub/app/big.bin\"");
    let content = at + bytes[at..].iter().position(|b| *b == b'\n').unwrap() + 1;
    let mut flipped = bytes.clone();
    flipped[content + 1000] ^= 1;
    let error = verify(&flipped[..], |_, _| {}).unwrap_err().to_string();
    assert!(
        error.contains("/pub/app/big.bin") && error.contains("content does not match"),
        "{error}"
    );

    // A missing entry (a.txt's record and content cut out): refused, naming it.
    let start = find(&bytes, b"{\"type\":\"entry\",\"path\":\"/pub/app/a.txt\"");
    let record_end = start + bytes[start..].iter().position(|b| *b == b'\n').unwrap() + 1;
    let end = record_end + b"alpha".len() + 1;
    let mut missing = bytes[..start].to_vec();
    missing.extend_from_slice(&bytes[end..]);
    let error = verify(&missing[..], |_, _| {}).unwrap_err().to_string();
    assert!(
        error.contains("/pub/app/a.txt") && error.contains("missing"),
        "{error}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(needle)))
}

/// `homeserver pull`: the user, with only their secret key, downloads both trees page
/// by page into one archive that verifies offline.
#[tokio::test]
async fn a_user_pulls_their_own_archive_with_their_key() {
    let s = common::start().await;
    let alice = s.user().await;
    for i in 0..7 {
        s.put_ok(&alice, &format!("/pub/p/{i}"), &format!("public {i}"))
            .await;
    }
    for i in 0..3 {
        s.put_ok(&alice, &format!("/priv/q/{i}"), &format!("private {i}"))
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, hex::encode(alice.keypair.secret_key())).unwrap();
    let out = dir.path().join("mine.archive");
    // Pages of 2 entries: the archive is assembled from several.
    homeserver::pull::pull_in_pages(&s.url(""), &secret, &out, 2)
        .await
        .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let trees = verify(&bytes[..], |_, _| {}).unwrap();
    assert_eq!(
        trees
            .iter()
            .map(|t| (t.record.tree.as_str(), t.entries))
            .collect::<Vec<_>>(),
        [("pub", 7), ("priv", 3)]
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("private 2") && text.contains("public 6"));
}

/// An export cut off in the middle of a page resumes from that page's cursor: the
/// page asked for again holds the same entries, and the pages still add up to an
/// archive that verifies.
#[tokio::test]
async fn an_export_cut_off_mid_page_resumes_from_its_cursor() {
    use futures::StreamExt;
    let s = common::start().await;
    let alice = s.user().await;
    let a = alice.z32();
    let big = "x".repeat(256 * 1024);
    for i in 0..6 {
        s.put_ok(&alice, &format!("/pub/f/{i}"), &format!("{i}{big}"))
            .await;
    }
    let (_, first) = page(&s, None, &a, "tree=pub&limit=2").await;
    let first = split(&first);
    let cursor = first.next.clone().unwrap();
    let query = format!(
        "tree=pub&limit=2&cursor={}&root={}",
        urlencode(&cursor),
        first.root
    );
    // Read a little of the second page, then drop the connection.
    let response = s
        .http
        .get(s.url(&format!("/export/{a}?{query}")))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let chunk = body.next().await.unwrap().unwrap();
    assert!(
        chunk.len() < 2 * big.len(),
        "only part of the page was read"
    );
    drop(body);
    // The same cursor again: the whole page.
    let (status, again) = page(&s, None, &a, &query).await;
    assert_eq!(status, StatusCode::OK);
    let again = split(&again);
    let names: Vec<&str> = again.entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["/pub/f/2", "/pub/f/3"]);
    assert_eq!(again.entries[0].1, format!("2{big}").into_bytes());
    let (archive, entries, _) = export_by_pages(&s, None, &a, "pub", 2).await;
    assert_eq!(entries.len(), 6);
    verify(&archive[..], |_, _| {}).unwrap();
}
