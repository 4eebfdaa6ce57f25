//! The `If` header (RFC 4918 §10.4), parsed strictly and evaluated.
//!
//! The REST routes only pick the lock tokens out of `If` (as the reference does);
//! WebDAV clients also send entity tags and `Not`, and expect a false condition to
//! stop the request with 412 (§10.4.1). A header that does not follow the grammar is a
//! 400 before anything is looked up or changed.

use api::ApiError;

pub const MALFORMED: &str = "Malformed If header";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A state token (`<opaquelocktoken:…>`, or any other URI such as `DAV:no-lock`).
    Token(String),
    /// An entity tag in `[…]`, quotes included.
    ETag(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub not: bool,
    pub subject: Subject,
}

/// One parenthesized list; true when all its conditions are.
pub type List = Vec<Condition>;

/// Lists of one resource: the tagged URL's path, or `None` for the request's resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub resource: Option<String>,
    pub lists: Vec<List>,
}

/// Parses every `If` header value of a request; empty when there is none.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Tagged>, ApiError> {
    let mut out = Vec::new();
    for value in values {
        out.extend(parse_one(value).ok_or_else(|| ApiError::bad_request(MALFORMED))?);
    }
    Ok(out)
}

fn parse_one(value: &str) -> Option<Vec<Tagged>> {
    let mut rest = value.trim_start();
    let mut out: Vec<Tagged> = Vec::new();
    let mut tagged_form: Option<bool> = None;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            // A resource tag: only in the tagged form, and followed by lists.
            if tagged_form == Some(false) {
                return None;
            }
            tagged_form = Some(true);
            let end = after.find('>')?;
            let url = &after[..end];
            if url.is_empty() || url.contains(char::is_whitespace) {
                return None;
            }
            out.push(Tagged {
                resource: Some(url.to_string()),
                lists: Vec::new(),
            });
            rest = after[end + 1..].trim_start();
            if !rest.starts_with('(') {
                return None;
            }
        } else if let Some(after) = rest.strip_prefix('(') {
            let (list, remaining) = parse_list(after)?;
            match (tagged_form, out.last_mut()) {
                (Some(true), Some(last)) => last.lists.push(list),
                (None | Some(false), _) => {
                    tagged_form = Some(false);
                    match out.last_mut() {
                        Some(last) => last.lists.push(list),
                        None => out.push(Tagged {
                            resource: None,
                            lists: vec![list],
                        }),
                    }
                }
                (Some(true), None) => return None,
            }
            rest = remaining.trim_start();
        } else {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The conditions of a list up to its `)`, and what follows.
fn parse_list(mut rest: &str) -> Option<(List, &str)> {
    let mut list = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(')') {
            return (!list.is_empty()).then_some((list, after));
        }
        let mut not = false;
        // By bytes: the header may hold any UTF-8, and a character boundary need not
        // fall after the third byte (`make fuzz` found the panic a `rest[..3]` made).
        if rest
            .as_bytes()
            .get(..3)
            .is_some_and(|b| b.eq_ignore_ascii_case(b"not"))
        {
            not = true;
            rest = rest[3..].trim_start();
        }
        if let Some(after) = rest.strip_prefix('<') {
            let end = after.find('>')?;
            let token = &after[..end];
            // A state token is an absolute URI: it has a scheme.
            if !token.contains(':') || token.contains(char::is_whitespace) {
                return None;
            }
            list.push(Condition {
                not,
                subject: Subject::Token(token.to_string()),
            });
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let tag = after[..end].trim();
            let quoted = tag.trim_start_matches("W/");
            if quoted.len() < 2 || !quoted.starts_with('"') || !quoted.ends_with('"') {
                return None;
            }
            list.push(Condition {
                not,
                subject: Subject::ETag(tag.to_string()),
            });
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
}

/// Every lock token (`opaquelocktoken:…`) the header names, negated or not: the
/// tokens a client submits as its own (§10.4.1 asks a server to take them as
/// submitted whether or not their condition holds).
pub fn lock_tokens(tagged: &[Tagged]) -> Vec<domain::lock::LockToken> {
    let tokens: Vec<String> = tagged
        .iter()
        .flat_map(|t| &t.lists)
        .flatten()
        .filter_map(|c| match &c.subject {
            Subject::Token(token) => Some(format!("<{token}>")),
            Subject::ETag(_) => None,
        })
        .collect();
    domain::lock::if_tokens(tokens.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_multibyte_character_where_not_may_stand_is_malformed_not_a_panic() {
        assert!(parse(["(\u{10020}x <opaquelocktoken:a>)"]).is_err());
        assert!(parse(["(é<opaquelocktoken:a>)"]).is_err());
    }

    proptest! {
        // PROPTEST_CASES sets the count (`make fuzz`).
        #[test]
        fn if_header_parser_never_panics(
            value in prop_oneof![
                any::<String>(),
                "[<>()\\[\\] \"a-z:/-]{0,40}",
                "(<[a-z:/]{0,12}> )?\\((Not )?<opaquelocktoken:[0-9a-f-]{0,36}>( \\[\"[a-z0-9]{0,4}\"\\])?\\)",
            ]
        ) {
            if let Err(e) = parse([value.as_str()]) {
                let (status, text) = e.client_answer().expect("a client error");
                prop_assert_eq!(status, 400);
                prop_assert_eq!(text, MALFORMED);
            }
        }
    }

    fn ok(value: &str) -> Vec<Tagged> {
        parse([value]).unwrap_or_else(|_| panic!("{value} should parse"))
    }

    #[test]
    fn the_rfc_examples_parse() {
        let t = ok("(<urn:uuid:181d4fae-7d8c-11d0-a765-00a0c91e6bf2> [\"I am an ETag\"])");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].lists[0].len(), 2);
        let t = ok("(Not <DAV:no-lock> [\"I am another ETag\"])");
        assert!(t[0].lists[0][0].not);
        let t = ok(
            "<http://www.example.com/specs/> (<urn:uuid:181d4fae-7d8c-11d0-a765-00a0c91e6bf2>) <http://www.example.com/other> ([W/\"x\"]) (Not <DAV:no-lock>)",
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].lists.len(), 2);
        let t = ok("(<opaquelocktoken:a>) (<opaquelocktoken:b>)");
        assert_eq!(t[0].lists.len(), 2);
        assert_eq!(lock_tokens(&t).len(), 2);
    }

    #[test]
    fn malformed_headers_are_refused() {
        for value in [
            "",
            "garbage",
            "<opaquelocktoken:a>",
            "(<opaquelocktoken:a>",
            "()",
            "(opaquelocktoken:a)",
            "([unquoted])",
            "(<nocolon>)",
            "(<opaquelocktoken:a>) <http://x/> (<opaquelocktoken:b>)",
        ] {
            assert!(parse([value]).is_err(), "{value:?} should be refused");
        }
    }
}
