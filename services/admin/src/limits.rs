//! Per-user limit overrides on the wire: the JSON of `PATCH /users/{user}/quota` and
//! `POST /generate_signup_token`, and the `{effective, overrides}` answer.
//!
//! Each field of a patch is absent (keep the current override), `null` (back to the
//! server default), `"unlimited"`, or a value — the reference's semantics. Anything
//! else, including an unknown field, is a 422 naming the field, so a typo never
//! silently does nothing. The result is a [`UserLimits`], the form the events carry.

use api::ApiError;
use axum::http::StatusCode;
use domain::event::{StorageLimit, UserLimits};
use serde_json::{Map, Value, json};

/// The spelling of "no limit" in requests and answers.
const UNLIMITED: &str = "unlimited";

/// One field of a patch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// Absent: keep the current override.
    #[default]
    Keep,
    /// `null`: the server's default applies.
    Default,
    Unlimited,
    Value(T),
}

/// A parsed patch of a user's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitsPatch {
    pub storage_quota_mb: Field<u64>,
    pub rate_read: Field<String>,
    pub rate_write: Field<String>,
    pub allowed_write_paths: Field<Vec<String>>,
}

fn invalid(text: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("Invalid quota: {text}"),
    )
}

impl LimitsPatch {
    /// Parses a JSON object; an empty body is the empty patch.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(LimitsPatch::default());
        }
        let value: Value = serde_json::from_slice(body).map_err(invalid)?;
        let Value::Object(fields) = value else {
            return Err(invalid("expected a JSON object"));
        };
        Self::from_fields(fields)
    }

    fn from_fields(fields: Map<String, Value>) -> Result<Self, ApiError> {
        let mut patch = LimitsPatch::default();
        for (name, value) in fields {
            match name.as_str() {
                "storage_quota_mb" => {
                    patch.storage_quota_mb = field(&name, value, |v| {
                        v.as_u64()
                            .ok_or("a whole number of MB (1 MB = 1,048,576 bytes)")
                    })?
                }
                "rate_read" | "rate_write" => {
                    let rate = field(&name, value, |v| {
                        v.as_str()
                            .and_then(parse_rate)
                            .ok_or("a rate like \"100kb/s\" or \"1mb/m\" (kb, mb, gb; /s or /m)")
                    })?;
                    if name == "rate_read" {
                        patch.rate_read = rate;
                    } else {
                        patch.rate_write = rate;
                    }
                }
                "allowed_write_paths" => {
                    patch.allowed_write_paths = field(&name, value, |v| {
                        let list = v.as_array().ok_or("an array of absolute paths")?;
                        list.iter()
                            .map(|p| match p.as_str() {
                                Some(p) if p.starts_with('/') => Ok(p.to_owned()),
                                _ => Err("an array of absolute paths (each starting with /)"),
                            })
                            .collect()
                    })?
                }
                // Named so the refusal is specific: bursts belong to request throttling,
                // which this homeserver does not implement yet.
                "rate_read_burst" | "rate_write_burst" => {
                    return Err(invalid(format!("{name} is not supported")));
                }
                _ => return Err(invalid(format!("unknown field {name}"))),
            }
        }
        Ok(patch)
    }

    /// The overrides after this patch.
    pub fn apply(&self, current: &UserLimits) -> UserLimits {
        let mut limits = current.clone();
        match &self.storage_quota_mb {
            Field::Keep => {}
            Field::Default => limits.storage = None,
            Field::Unlimited => limits.storage = Some(StorageLimit::Unlimited),
            Field::Value(mb) => limits.storage = Some(StorageLimit::Megabytes(*mb)),
        }
        apply_rate(&self.rate_read, &mut limits.rate_read);
        apply_rate(&self.rate_write, &mut limits.rate_write);
        match &self.allowed_write_paths {
            Field::Keep => {}
            // No restriction is the default, so "unlimited" and null coincide.
            Field::Default | Field::Unlimited => limits.allowed_write_paths = None,
            Field::Value(paths) => limits.allowed_write_paths = Some(paths.clone()),
        }
        limits
    }
}

fn apply_rate(field: &Field<String>, slot: &mut Option<String>) {
    match field {
        Field::Keep => {}
        Field::Default => *slot = None,
        Field::Unlimited => *slot = Some(UNLIMITED.to_owned()),
        Field::Value(rate) => *slot = Some(rate.clone()),
    }
}

fn field<T>(
    name: &str,
    value: Value,
    parse: impl FnOnce(&Value) -> Result<T, &'static str>,
) -> Result<Field<T>, ApiError> {
    match &value {
        Value::Null => Ok(Field::Default),
        Value::String(s) if s == UNLIMITED => Ok(Field::Unlimited),
        other => parse(other).map(Field::Value).map_err(|expected| {
            invalid(format!(
                "{name} must be {expected}, \"{UNLIMITED}\" or null, not {other}"
            ))
        }),
    }
}

/// A bandwidth rate in the reference's notation (see [`api::bandwidth::Bandwidth`]),
/// returned in lower case.
pub fn parse_rate(text: &str) -> Option<String> {
    text.parse::<api::bandwidth::Bandwidth>()
        .ok()
        .map(|_| text.trim().to_ascii_lowercase())
}

/// The overrides as the API shows them: `null` where the default applies.
pub fn overrides_json(limits: &UserLimits) -> Value {
    json!({
        "storage_quota_mb": match limits.storage {
            None => Value::Null,
            Some(StorageLimit::Unlimited) => json!(UNLIMITED),
            Some(StorageLimit::Megabytes(mb)) => json!(mb),
        },
        "rate_read": limits.rate_read,
        "rate_write": limits.rate_write,
        "allowed_write_paths": limits.allowed_write_paths,
    })
}

/// What applies to the user: overrides resolved against the server's defaults.
/// `allowed_write_paths` is `null` when writes are not restricted.
pub fn effective_json(limits: &UserLimits, server: &api::ServerConfig) -> Value {
    let storage = match limits.storage {
        Some(StorageLimit::Megabytes(mb)) => Some(mb),
        Some(StorageLimit::Unlimited) => None,
        None => server.default_quota_mb,
    };
    let rate = |user_override: &Option<String>, default| {
        match api::bandwidth::effective(user_override.as_deref(), default) {
            None => json!(UNLIMITED),
            // The override as written, or the default in bytes per second.
            Some(_) if user_override.is_some() => json!(user_override),
            Some(rate) => json!(rate.to_string()),
        }
    };
    json!({
        "storage_quota_mb": storage.map_or(json!(UNLIMITED), |mb| json!(mb)),
        "rate_read": rate(&limits.rate_read, server.rate_read),
        "rate_write": rate(&limits.rate_write, server.rate_write),
        "allowed_write_paths": limits.allowed_write_paths,
    })
}

/// A user row's overrides in the events' form.
pub fn user_limits(user: &store::users::UserRow) -> UserLimits {
    UserLimits {
        storage: user
            .storage_quota_mb
            .map(|mb| u64::try_from(mb).map_or(StorageLimit::Unlimited, StorageLimit::Megabytes)),
        allowed_write_paths: user.allowed_write_paths.clone(),
        rate_read: user.rate_read.clone(),
        rate_write: user.rate_write.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Patches of the known fields with values of every JSON kind, rates that are
    /// often almost right, and bodies that are not JSON at all.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let name = prop::sample::select(vec![
            "storage_quota_mb",
            "rate_read",
            "rate_write",
            "allowed_write_paths",
            "rate_read_burst",
            "other",
        ]);
        let value = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[0-9]{0,6} ?[kKmMgGtb]{0,3}(/[smhd]?)?".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            prop::collection::vec("/?[a-z/]{0,8}", 0..3).prop_map(Value::from),
        ];
        prop_oneof![
            prop::collection::btree_map(name, value, 0..5)
                .prop_map(|fields| { serde_json::to_vec(&fields).unwrap_or_default() }),
            prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest! {
        // PROPTEST_CASES sets the count (`make fuzz`).
        #[test]
        fn limits_and_rates_never_panic(body in body(), rate in any::<String>()) {
            if let Err(e) = LimitsPatch::parse(&body) {
                let (status, text) = e.client_answer().expect("a client error");
                prop_assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                prop_assert!(text.starts_with("Invalid quota: "), "{}", text);
            }
            if let Some(lower) = parse_rate(&rate) {
                prop_assert_eq!(parse_rate(&lower), Some(lower.clone()));
            }
        }
    }

    fn patch(json: &str) -> Result<LimitsPatch, String> {
        LimitsPatch::parse(json.as_bytes()).map_err(|e| match e {
            ApiError::Client(status, text) | ApiError::ClientRetry(status, text, _) => {
                format!("{} {text}", status.as_u16())
            }
            ApiError::Unavailable(text) => text,
            ApiError::Moved { user, to } => api::error::moved_text(&user, &to),
        })
    }

    #[test]
    fn absent_keeps_null_resets_unlimited_and_values_set() {
        let current = UserLimits {
            storage: Some(StorageLimit::Megabytes(5)),
            allowed_write_paths: Some(vec!["/pub/a/".into()]),
            rate_read: Some("1mb/s".into()),
            rate_write: None,
        };
        let p = patch(r#"{"storage_quota_mb":null,"rate_write":"unlimited","rate_read":"2MB/s"}"#)
            .unwrap();
        let next = p.apply(&current);
        assert_eq!(next.storage, None);
        assert_eq!(next.allowed_write_paths, Some(vec!["/pub/a/".into()]));
        assert_eq!(next.rate_read.as_deref(), Some("2mb/s"));
        assert_eq!(next.rate_write.as_deref(), Some("unlimited"));
        let next = patch(r#"{"storage_quota_mb":"unlimited","allowed_write_paths":[]}"#)
            .unwrap()
            .apply(&current);
        assert_eq!(next.storage, Some(StorageLimit::Unlimited));
        assert_eq!(next.allowed_write_paths, Some(vec![]));
        assert_eq!(patch("").unwrap().apply(&current), current);
    }

    #[test]
    fn invalid_values_are_422_naming_the_field() {
        for (body, needle) in [
            (r#"{"storage_quota_mb":-1}"#, "storage_quota_mb must be"),
            (r#"{"storage_quota_mb":"5"}"#, "storage_quota_mb must be"),
            (r#"{"rate_read":"fast"}"#, "rate_read must be"),
            (
                r#"{"allowed_write_paths":["pub/x"]}"#,
                "allowed_write_paths must be",
            ),
            (r#"{"quota":1}"#, "unknown field quota"),
            (
                r#"{"rate_read_burst":5}"#,
                "rate_read_burst is not supported",
            ),
            ("[1]", "expected a JSON object"),
            ("{", "Invalid quota: "),
        ] {
            let err = patch(body).unwrap_err();
            assert!(err.starts_with("422 Invalid quota: "), "{body}: {err}");
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn rates_follow_the_reference_notation() {
        for ok in ["1kb/s", "100KB/s", "5mb/m", "1gb/s"] {
            assert!(parse_rate(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "0kb/s", "kb/s", "1tb/s", "1kb/h", "1 kb/s", "-1kb/s", "1kb",
        ] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }
}
