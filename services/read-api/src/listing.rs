//! Directory listings (spec §3.5): deep or shallow, paged by an exclusive cursor, in
//! byte order, one `pubky://<owner><path>` per line.

use api::tenant::StorageTarget;
use api::{ApiError, AppState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domain::EntryPath;
use domain::tenant::parse_storage_owner;
use store::entries::ListQuery;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Default, PartialEq, Eq)]
struct ListParams {
    limit: Option<u32>,
    /// As written: checked only once the directory is known to exist, as the
    /// reference does (a garbage cursor on a missing directory is a 404).
    cursor: Option<String>,
    shallow: bool,
    reverse: bool,
}

pub async fn list(
    state: &AppState,
    target: &StorageTarget,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let params = parse(query.unwrap_or_default())?;
    let dir = target.path.as_str();
    if !state.store.dir_exists(&target.owner, dir).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "Directory Not Found",
        ));
    }
    let cursor = match params.cursor.as_deref() {
        Some(text) => parse_cursor(text)?,
        None => None,
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    let paths = if limit == 0 {
        Vec::new()
    } else {
        let query = ListQuery {
            dir,
            cursor: cursor.as_deref(),
            limit,
            reverse: params.reverse,
            shallow: params.shallow,
        };
        state.store.list(&target.owner, &query).await?
    };
    let owner = target.owner.to_z32();
    let body = paths
        .iter()
        .map(|path| format!("pubky://{owner}{path}"))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

fn parse(query: &str) -> Result<ListParams, ApiError> {
    let mut params = ListParams::default();
    for (key, value) in crate::query_pairs(query) {
        match key {
            // Like the reference: empty or unparseable means the default, 0 an empty
            // page.
            "limit" => {
                params.limit = value
                    .parse::<u16>()
                    .ok()
                    .map(|n| u32::from(n).min(MAX_LIMIT))
            }
            "cursor" => params.cursor = Some(value),
            "shallow" => params.shallow = parse_bool(&value)?,
            "reverse" => params.reverse = parse_bool(&value)?,
            _ => {}
        }
    }
    Ok(params)
}

/// `true|yes|1|""` and `false|no|0`, any case.
pub fn parse_bool(value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(ApiError::bad_request("Invalid boolean parameter")),
    }
}

/// `[pubky://]<owner>/<canonical path>`; only the path is used.
fn parse_cursor(value: &str) -> Result<Option<String>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    let invalid = || ApiError::bad_request("Invalid cursor");
    let value = value.strip_prefix("pubky://").unwrap_or(value);
    let (owner, path) = value.split_once('/').ok_or_else(invalid)?;
    parse_storage_owner(owner).map_err(|_| invalid())?;
    let path = EntryPath::parse_canonical(&format!("/{path}")).map_err(|_| invalid())?;
    Ok(Some(path.as_str().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // PROPTEST_CASES sets the count (`make fuzz`).
        #[test]
        fn listing_query_and_cursor_parsers_never_panic(
            pairs in prop::collection::vec(
                (
                    prop::sample::select(vec!["limit", "cursor", "shallow", "reverse", "x"]),
                    prop_oneof![
                        any::<String>(),
                        "(pubky://)?[0-9a-z]{0,52}(/[a-z.]{0,6}){0,4}/?",
                        "[0-9]{0,7}",
                    ],
                ),
                0..6,
            ),
            raw in any::<String>(),
        ) {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            for query in [query.as_str(), raw.as_str()] {
                let Ok(params) = parse(query).map_err(|e| {
                    let (status, text) = e.client_answer().expect("a client error");
                    assert_eq!(status, 400);
                    assert_eq!(text, "Invalid boolean parameter");
                }) else {
                    continue;
                };
                if let Some(cursor) = params.cursor
                    && let Err(e) = parse_cursor(&cursor)
                {
                    prop_assert_eq!(
                        e.client_answer(),
                        Some((axum::http::StatusCode::BAD_REQUEST, "Invalid cursor"))
                    );
                }
            }
        }
    }

    const KEY: &str = "8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo";

    fn error_text(r: Result<ListParams, ApiError>) -> String {
        match r {
            Err(ApiError::Client(_, text)) => text,
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn query_parameters_follow_the_reference() {
        assert_eq!(parse("").unwrap(), ListParams::default());
        let p = parse("shallow&reverse=YES&limit=5000").unwrap();
        assert!(p.shallow && p.reverse);
        assert_eq!(p.limit, Some(MAX_LIMIT));
        assert_eq!(parse("limit=abc").unwrap().limit, None);
        assert_eq!(parse("limit=0").unwrap().limit, Some(0));
        assert_eq!(
            error_text(parse("shallow=maybe")),
            "Invalid boolean parameter"
        );
        // Cursors are kept as written until the directory is found.
        assert_eq!(
            parse("cursor=nonsense").unwrap().cursor.as_deref(),
            Some("nonsense")
        );
    }

    #[test]
    fn cursors_name_a_path_under_any_key() {
        assert_eq!(parse_cursor("").unwrap(), None);
        assert_eq!(
            error_text(parse_cursor("nonsense").map(|_| ListParams::default())),
            "Invalid cursor"
        );
        assert_eq!(
            error_text(parse_cursor(&format!("{KEY}/pub//a")).map(|_| ListParams::default())),
            "Invalid cursor"
        );
        let cursor = parse_cursor(&format!("pubky://{KEY}/pub/a/b.txt")).unwrap();
        assert_eq!(cursor.as_deref(), Some("/pub/a/b.txt"));
    }
}
