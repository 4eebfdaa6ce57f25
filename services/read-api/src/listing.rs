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
    let paths = state
        .store
        .list(
            &target.owner,
            &ListQuery {
                dir,
                cursor: params.cursor.as_deref(),
                limit: params.limit.unwrap_or(DEFAULT_LIMIT),
                reverse: params.reverse,
                shallow: params.shallow,
            },
        )
        .await?;
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
            "limit" => {
                // Like the reference: empty or unparseable means the default. Unlike
                // it, 0 is refused instead of answering an empty page (spec §11).
                params.limit = match value.parse::<u16>() {
                    Ok(0) => return Err(ApiError::bad_request("Invalid limit: 0")),
                    Ok(n) => Some(u32::from(n).min(MAX_LIMIT)),
                    Err(_) => None,
                }
            }
            "cursor" => params.cursor = parse_cursor(&value)?,
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
        assert_eq!(
            error_text(parse("shallow=maybe")),
            "Invalid boolean parameter"
        );
        assert_eq!(error_text(parse("cursor=nonsense")), "Invalid cursor");
        assert_eq!(
            error_text(parse(&format!("cursor={KEY}/pub//a"))),
            "Invalid cursor"
        );
        let p = parse(&format!("cursor=pubky://{KEY}/pub/a/b.txt")).unwrap();
        assert_eq!(p.cursor.as_deref(), Some("/pub/a/b.txt"));
    }
}
