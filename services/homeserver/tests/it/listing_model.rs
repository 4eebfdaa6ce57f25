//! Model-based test of directory listings (spec §3.5) over HTTP.
//!
//! `proptest` is not a dev-dependency of `homeserver` (and this test may not touch
//! `Cargo.toml`), so cases come from a hand-rolled generator seeded by `rand` with fixed
//! seeds: every run checks the same cases, and a failure names its seed.
//!
//! Each case draws a small tree of file paths under `/pub/d/` from an alphabet built to
//! stress byte order around the directory separator: `a`, `a-b` ('-' < '/'), `a.b`,
//! `a0` ('0' is the byte after '/'), `a_`, `ab`, `-a`, nested with `/`. The paths are
//! written through HTTP for a fresh user. A write that would collide with an existing
//! file/folder must be a 409 (§5.1) and is left out of the model; the others must be 201.
//!
//! Then deep and shallow listings, forward and reverse, are paged with random `limit`s,
//! each next page's cursor being the last line of the previous page (for shallow listings
//! that is often a `…/dir/` line), and random cursors pointing *inside* a child directory
//! are tried too (they must act like that directory's cursor). Each page must equal the
//! page cut from an in-memory model: a `BTreeSet` of paths; shallow = immediate children,
//! directories rendered once as `name/`, in byte order of the rendered names; cursors are
//! exclusive. Paging must end with an empty page exactly where the model runs out.

use crate::common;

use common::{TestServer, TestUser};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use std::collections::BTreeSet;

const CASES: u64 = 24;
const DIR: &str = "/pub/d/";
const NAMES: &[&str] = &["a", "a-b", "a.b", "a0", "a_", "ab", "-a", "b"];

/// A random relative path of 1 to 3 segments.
fn random_path(rng: &mut StdRng) -> String {
    let depth = match rng.gen_range(0..10) {
        0..=4 => 1,
        5..=7 => 2,
        _ => 3,
    };
    (0..depth)
        .map(|_| NAMES[rng.gen_range(0..NAMES.len())])
        .collect::<Vec<_>>()
        .join("/")
}

/// Would writing `path` collide with the files in `model` (§5.1)?
fn collides(model: &BTreeSet<String>, path: &str) -> bool {
    let under = format!("{path}/");
    if model.iter().any(|p| p.starts_with(&under)) {
        return true;
    }
    path.match_indices('/')
        .any(|(i, _)| model.contains(&path[..i]))
}

/// The shallow children of `model` (relative paths), rendered.
fn shallow(model: &BTreeSet<String>) -> BTreeSet<String> {
    model
        .iter()
        .map(|p| match p.find('/') {
            Some(i) => p[..=i].to_string(),
            None => p.clone(),
        })
        .collect()
}

/// Where a relative cursor lands in the shallow view: inside a child directory it
/// stands for that directory.
fn shallow_cursor(cursor: &str) -> String {
    match cursor.find('/') {
        Some(i) => cursor[..=i].to_string(),
        None => cursor.to_string(),
    }
}

/// The model's page: up to `limit` items strictly after (before, if `reverse`) `cursor`.
fn model_page(
    items: &BTreeSet<String>,
    cursor: Option<&str>,
    limit: usize,
    reverse: bool,
) -> Vec<String> {
    use std::ops::Bound::{Excluded, Unbounded};
    let range = |lo, hi| items.range::<str, _>((lo, hi));
    if reverse {
        let hi = cursor.map_or(Unbounded, Excluded);
        range(Unbounded, hi).rev().take(limit).cloned().collect()
    } else {
        let lo = cursor.map_or(Unbounded, Excluded);
        range(lo, Unbounded).take(limit).cloned().collect()
    }
}

struct Lister<'a> {
    s: &'a TestServer,
    u: &'a TestUser,
    prefix: String,
}

impl Lister<'_> {
    /// One listing page, as paths relative to `DIR`.
    async fn page(
        &self,
        shallow: bool,
        reverse: bool,
        limit: usize,
        cursor: Option<&str>,
    ) -> Vec<String> {
        let mut query = vec![("limit", limit.to_string())];
        if shallow {
            query.push(("shallow", "true".into()));
        }
        if reverse {
            query.push(("reverse", "true".into()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        let r = self
            .s
            .http
            .get(self.s.storage(self.u, DIR))
            .query(&query)
            .send()
            .await
            .expect("GET listing");
        let status = r.status();
        let body = r.text().await.expect("listing body");
        assert_eq!(status, StatusCode::OK, "{query:?}: {body}");
        if body.is_empty() {
            return Vec::new();
        }
        body.split('\n')
            .map(|line| {
                line.strip_prefix(&self.prefix)
                    .unwrap_or_else(|| panic!("{line:?} starts with {:?}", self.prefix))
                    .to_string()
            })
            .collect()
    }

    /// The cursor for a relative path, in one of the accepted spellings.
    fn cursor(&self, rel: &str, rng: &mut StdRng) -> String {
        let full = format!("{}{DIR}{rel}", self.u.z32());
        if rng.gen_bool(0.5) {
            format!("pubky://{full}")
        } else {
            full
        }
    }
}

#[tokio::test]
async fn listings_match_the_model() {
    let s = common::start().await;
    for seed in 0..CASES {
        let mut rng = StdRng::seed_from_u64(0x1157_0000 + seed);
        let u = s.user().await;

        let mut model = BTreeSet::new();
        let count = rng.gen_range(1..=10);
        for _ in 0..count {
            let rel = random_path(&mut rng);
            let r = s
                .http
                .put(s.storage(&u, &format!("{DIR}{rel}")))
                .bearer_auth(&u.token)
                .body(rel.clone())
                .send()
                .await
                .expect("PUT");
            let expected = if collides(&model, &rel) {
                StatusCode::CONFLICT
            } else {
                StatusCode::CREATED
            };
            assert_eq!(
                r.status(),
                expected,
                "seed {seed}: PUT {rel} over {model:?}"
            );
            if expected == StatusCode::CREATED {
                model.insert(rel);
            }
        }

        let lister = Lister {
            s: &s,
            u: &u,
            prefix: format!("pubky://{}{DIR}", u.z32()),
        };
        let shallow_model = shallow(&model);
        for shallow_mode in [false, true] {
            let items = if shallow_mode { &shallow_model } else { &model };
            for reverse in [false, true] {
                let ctx = format!("seed {seed}, shallow {shallow_mode}, reverse {reverse}");
                // Unpaged, with the maximum limit.
                let all = lister.page(shallow_mode, reverse, 1000, None).await;
                let expected = model_page(items, None, usize::MAX, reverse);
                assert_eq!(all, expected, "{ctx}: whole listing of {model:?}");

                // Paged by following the last line.
                let mut cursor: Option<String> = None;
                let mut seen = Vec::new();
                for step in 0.. {
                    assert!(step <= items.len() + 1, "{ctx}: paging terminates");
                    let limit = rng.gen_range(1..=4);
                    let wire = cursor.as_deref().map(|c| lister.cursor(c, &mut rng));
                    let page = lister
                        .page(shallow_mode, reverse, limit, wire.as_deref())
                        .await;
                    let expected = model_page(items, cursor.as_deref(), limit, reverse);
                    assert_eq!(
                        page, expected,
                        "{ctx}: page {step} (limit {limit}, cursor {cursor:?}) of {model:?}"
                    );
                    let Some(last) = page.last() else { break };
                    cursor = Some(last.clone());
                    seen.extend(page);
                }
                assert_eq!(seen, all, "{ctx}: pages add up to the whole listing");

                // Cursors that are arbitrary (possibly absent, possibly inside a child
                // directory) paths.
                for _ in 0..3 {
                    let rel = random_path(&mut rng);
                    let limit = rng.gen_range(1..=6);
                    let wire = lister.cursor(&rel, &mut rng);
                    let page = lister.page(shallow_mode, reverse, limit, Some(&wire)).await;
                    let effective = if shallow_mode {
                        shallow_cursor(&rel)
                    } else {
                        rel.clone()
                    };
                    let expected = model_page(items, Some(&effective), limit, reverse);
                    assert_eq!(
                        page, expected,
                        "{ctx}: arbitrary cursor {rel} (limit {limit}) of {model:?}"
                    );
                }
            }
        }
    }
}
