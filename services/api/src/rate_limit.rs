//! Request-count rate limits (429), counted across every instance of a service.
//!
//! Rules have the reference's shape (`[[drive.rate_limits]]`, spec §5.8): a path glob,
//! an optional method, a quota `<n>r/<s|m|h|d>`, the key that is counted (`ip` or
//! `user`, the request's tenant), an optional burst and a whitelist of IPs or keys.
//!
//! Where the reference counts in process memory, so that N instances behind a load
//! balancer allow N times the quota, these counts are NATS counters
//! ([`log::counter::WindowCounters`]) that every instance increments: one round trip
//! per limited request, fixed windows of the quota's period, `n + burst` requests per
//! window. If NATS cannot count, the request goes through (and a warning is logged):
//! a limiter outage must not become an outage of the service.

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};

/// One rule as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct RateLimitRule {
    /// Glob over the URI path, or over the storage path (`/pub/…`) of `/storage/<user>/…`
    /// requests: `*` within one segment, `**` across segments, `?` one character.
    pub path: String,
    /// Only requests of this method; all methods when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `<n>r/<s|m|h|d>`, n ≥ 1.
    pub quota: String,
    pub key: RateLimitKey,
    /// Requests allowed per window on top of the quota.
    #[serde(default)]
    pub burst: u32,
    /// IPs or z-base-32 user keys that this rule never limits.
    #[serde(default)]
    pub whitelist: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// The client's IP: first parseable `X-Forwarded-For` entry, else `X-Real-IP`, else
    /// the peer address.
    Ip,
    /// The request's tenant (the owner of the storage path), not the signed-in user.
    User,
}

impl RateLimitRule {
    /// The reference's built-in rule: signup token lookups, 10 a minute per IP.
    pub fn signup_token_lookups() -> Self {
        RateLimitRule {
            path: "/signup_tokens/*".into(),
            method: Some("GET".into()),
            quota: "10r/m".into(),
            key: RateLimitKey::Ip,
            burst: 0,
            whitelist: Vec::new(),
        }
    }
}

/// A quota: `count` requests per `period_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub period_secs: u64,
}

impl std::str::FromStr for Quota {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid rate limit quota {text:?} (expected <n>r/<s|m|h|d>)");
        let (count, period) = text.split_once("r/").ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let period_secs = match period.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        if count == 0 {
            return Err(invalid());
        }
        Ok(Quota { count, period_secs })
    }
}

/// A rule ready to be checked.
#[derive(Debug, Clone)]
struct CompiledRule {
    path: String,
    method: Option<Method>,
    quota: Quota,
    key: RateLimitKey,
    allowed: u64,
    whitelist: Vec<String>,
}

/// The configured rules and the shared counters.
#[derive(Clone)]
pub struct RateLimits {
    rules: Vec<CompiledRule>,
    counters: log::counter::WindowCounters,
}

impl RateLimits {
    /// Checks every rule's syntax; an invalid rule is a configuration error at start.
    pub fn new(rules: &[RateLimitRule], log: &log::EventLog) -> Result<Self, String> {
        let rules = rules
            .iter()
            .map(|rule| {
                let quota: Quota = rule.quota.parse()?;
                let method = match &rule.method {
                    Some(m) => Some(
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| format!("invalid rate limit method {m:?}"))?,
                    ),
                    None => None,
                };
                Ok(CompiledRule {
                    path: rule.path.clone(),
                    method,
                    quota,
                    key: rule.key,
                    allowed: u64::from(quota.count) + u64::from(rule.burst),
                    whitelist: rule.whitelist.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(RateLimits {
            rules,
            counters: log::counter::WindowCounters::new(log),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The middleware: counts the request against every rule it falls under and answers
/// 429 once one of them is exhausted.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limits) = state.rate_limits.as_deref() else {
        return next.run(request).await;
    };
    // The counters to increment are named before any await: a request body is not
    // `Sync`, so the request itself cannot be held across one.
    let counters = match counters_of(limits, &request) {
        Ok(counters) => counters,
        Err(refusal) => return refusal.into_response(),
    };
    match count(limits, counters).await {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal,
    }
}

/// One counter a request adds to: its rule and the counter's subject tokens.
struct Counted<'a> {
    rule: &'a CompiledRule,
    name: String,
}

/// The counters of the rules `request` falls under. The client IP and the tenant are
/// only worked out when a matching rule is keyed by them.
fn counters_of<'a>(
    limits: &'a RateLimits,
    request: &Request,
) -> Result<Vec<Counted<'a>>, ApiError> {
    let uri_path = request.uri().path();
    if uri_path == "/info" {
        return Ok(Vec::new());
    }
    let matched_path = storage_path(uri_path).unwrap_or(uri_path);
    let mut counted = Vec::new();
    for (index, rule) in limits.rules.iter().enumerate() {
        let method_matches = rule.method.as_ref().is_none_or(|m| m == request.method());
        if !method_matches || !glob_matches(&rule.path, matched_path) {
            continue;
        }
        let key = match rule.key {
            RateLimitKey::Ip => client_ip(request).map(|ip| ip.to_string()),
            RateLimitKey::User => {
                crate::tenant::request_tenant(request.uri(), request.headers()).map(|k| k.to_z32())
            }
        };
        let Some(key) = key else {
            return Err(ApiError::bad_request(
                "Failed to extract key for rate limiting",
            ));
        };
        if rule.whitelist.iter().any(|allowed| allowed == &key) {
            continue;
        }
        // Subjects carry neither IPs nor keys: a hash names the counter.
        let name = format!("{index}.{}", &blake3::hash(key.as_bytes()).to_hex()[..32]);
        counted.push(Counted { rule, name });
    }
    Ok(counted)
}

async fn count(limits: &RateLimits, counted: Vec<Counted<'_>>) -> Result<(), Response> {
    if counted.is_empty() {
        return Ok(());
    }
    if !limits.counters.is_connected() {
        // Without NATS every increment would wait for its timeout: let it through now.
        tracing::warn!("rate limit not checked: NATS is disconnected");
        return Ok(());
    }
    let now = crate::now_secs();
    for Counted { rule, name } in counted {
        let period = rule.quota.period_secs;
        match limits.counters.increment(period, now / period, &name).await {
            Ok(count) if count > rule.allowed => {
                let retry_after = (period - now % period).max(1);
                return Err(too_many_requests(retry_after));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "rate limit not checked: the counters are unavailable");
            }
        }
    }
    Ok(())
}

fn too_many_requests(retry_after: u64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Rate limit exceeded",
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// `/pub/a` of `/storage/<user>/pub/a`.
fn storage_path(uri_path: &str) -> Option<&str> {
    let rest = uri_path.strip_prefix("/storage/")?;
    let slash = rest.find('/')?;
    Some(&rest[slash..])
}

fn client_ip(request: &Request) -> Option<IpAddr> {
    forwarded_ip(request.headers()).or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
    })
}

/// The first parseable `X-Forwarded-For` entry, else `X-Real-IP` (as the reference).
pub fn forwarded_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header_text("x-forwarded-for")
        .and_then(|list| list.split(',').find_map(|ip| ip.trim().parse().ok()))
        .or_else(|| header_text("x-real-ip").and_then(|ip| ip.trim().parse().ok()))
}

/// Glob match: `**` any characters, `*` any characters but `/`, `?` one character but
/// `/`, everything else literally.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Dynamic programming over (pattern position, text position): no backtracking blowup.
    let mut reachable = vec![false; t.len() + 1];
    reachable[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; t.len() + 1];
        if p[i] == b'*' && p.get(i + 1) == Some(&b'*') {
            let mut any = false;
            for j in 0..=t.len() {
                any |= reachable[j];
                next[j] = any;
            }
            i += 2;
        } else if p[i] == b'*' {
            for j in 0..=t.len() {
                next[j] = reachable[j] || (j > 0 && next[j - 1] && t[j - 1] != b'/');
            }
            i += 1;
        } else {
            for j in 1..=t.len() {
                next[j] =
                    reachable[j - 1] && (p[i] == t[j - 1] || (p[i] == b'?' && t[j - 1] != b'/'));
            }
            i += 1;
        }
        reachable = next;
    }
    reachable[t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_like_the_reference() {
        assert_eq!(
            "10r/m".parse::<Quota>(),
            Ok(Quota {
                count: 10,
                period_secs: 60
            })
        );
        assert_eq!("1r/s".parse::<Quota>().map(|q| q.period_secs), Ok(1));
        assert_eq!("5r/d".parse::<Quota>().map(|q| q.period_secs), Ok(86_400));
        for bad in ["0r/m", "10/m", "10r/w", "r/m", "-1r/s", ""] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob_matches(
            "/signup_tokens/*",
            "/signup_tokens/ABCD-EFGH-IJKL"
        ));
        assert!(!glob_matches("/signup_tokens/*", "/signup_tokens/a/b"));
        assert!(glob_matches("/pub/**", "/pub/a/b/c.json"));
        assert!(glob_matches("/pub/**/*.json", "/pub/a/b/c.json"));
        assert!(!glob_matches("/pub/**/*.json", "/pub/a/b/c.txt"));
        assert!(glob_matches("/events-stream", "/events-stream"));
        assert!(!glob_matches("/events-stream", "/events-streams"));
        assert!(glob_matches("/p?b/*", "/pub/x"));
        assert!(!glob_matches("/pub/?", "/pub//"));
        assert!(glob_matches("**", "/anything/at/all"));
    }

    #[test]
    fn storage_requests_are_matched_on_their_storage_path() {
        assert_eq!(storage_path("/storage/abc/pub/a.txt"), Some("/pub/a.txt"));
        assert_eq!(storage_path("/storage/abc"), None);
        assert_eq!(storage_path("/pub/a.txt"), None);
    }

    #[test]
    fn the_client_ip_comes_from_forwarding_headers_first() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("nonsense, 10.0.0.7, 10.0.0.8"),
        );
        headers.insert("x-real-ip", HeaderValue::from_static("10.0.0.9"));
        assert_eq!(forwarded_ip(&headers), "10.0.0.7".parse().ok());
        headers.remove("x-forwarded-for");
        assert_eq!(forwarded_ip(&headers), "10.0.0.9".parse().ok());
        headers.remove("x-real-ip");
        assert_eq!(forwarded_ip(&headers), None);
    }
}
