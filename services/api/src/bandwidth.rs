//! Bandwidth limits: transfers are slowed down, never refused (spec §5.7).
//!
//! A limit such as `100kb/s` applies per key: an authenticated user (their reads and
//! their writes, each with its own limit) or, for anonymous reads, the client IP. All
//! transfers of one key in this process draw from one token bucket, so ten parallel
//! downloads share the user's rate instead of multiplying it. Buckets are per process:
//! several instances each grant the rate (request *counts* are shared through NATS,
//! see [`crate::rate_limit`]; bytes are too many events to count remotely).

use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A transfer rate in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    pub bytes_per_sec: u64,
}

impl std::fmt::Display for Bandwidth {
    /// In the largest unit that divides it (`5mb/s`), else in bytes (`1500b/s`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.bytes_per_sec;
        for (shift, unit) in [(30, "gb"), (20, "mb"), (10, "kb")] {
            if n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}/s", n >> shift);
            }
        }
        write!(f, "{n}b/s")
    }
}

impl std::str::FromStr for Bandwidth {
    type Err = String;

    /// `<n>kb/s`, `<n>mb/s`, `<n>gb/s` (binary units), or the same per minute (`/m`).
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid bandwidth {text:?} (expected e.g. 100kb/s or 5mb/m)");
        let lower = text.trim().to_ascii_lowercase();
        let (amount, per) = lower.split_once('/').ok_or_else(invalid)?;
        let per_secs = match per {
            "s" => 1,
            "m" => 60,
            _ => return Err(invalid()),
        };
        let (digits, unit) = amount.split_at(
            amount
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(invalid)?,
        );
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        let unit_bytes: u64 = match unit {
            "kb" => 1 << 10,
            "mb" => 1 << 20,
            "gb" => 1 << 30,
            _ => return Err(invalid()),
        };
        let bytes_per_sec = count.saturating_mul(unit_bytes) / per_secs;
        if bytes_per_sec == 0 {
            return Err(invalid());
        }
        Ok(Bandwidth { bytes_per_sec })
    }
}

/// The rate that applies to a user: their override (`"unlimited"` or a rate), else the
/// server's default; `None` = not limited.
pub fn effective(user_override: Option<&str>, default: Option<Bandwidth>) -> Option<Bandwidth> {
    match user_override {
        Some("unlimited") => None,
        Some(rate) => rate.parse().ok().or(default),
        None => default,
    }
}

/// The bucket a file download draws from: the signed-in reader's (their override or
/// the default read rate), else the client IP's (the anonymous read rate).
pub async fn read_bucket(
    state: &crate::AppState,
    reader: Option<&domain::PublicKey>,
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Result<Option<Arc<Bucket>>, crate::ApiError> {
    match reader {
        Some(reader) => {
            let user = state.store.user(reader).await?;
            let rate = effective(
                user.as_ref().and_then(|u| u.rate_read.as_deref()),
                state.config.rate_read,
            );
            Ok(rate.map(|rate| {
                state
                    .throttles
                    .bucket(&format!("read:{}", reader.to_z32()), rate)
            }))
        }
        None => {
            let ip = crate::rate_limit::forwarded_ip(headers).or(peer);
            Ok(match (state.config.unauthenticated_ip_rate_read, ip) {
                (Some(rate), Some(ip)) => Some(state.throttles.bucket(&format!("ip:{ip}"), rate)),
                _ => None,
            })
        }
    }
}

/// The bucket an upload draws from: the writing user's override or the default.
pub fn write_bucket(state: &crate::AppState, user: &store::users::UserRow) -> Option<Arc<Bucket>> {
    effective(user.rate_write.as_deref(), state.config.rate_write).map(|rate| {
        state
            .throttles
            .bucket(&format!("write:{}", user.pubkey), rate)
    })
}

/// The token bucket of one key: holds at most one second's worth of bytes.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: Bandwidth) -> Self {
        let rate = rate.bytes_per_sec as f64;
        Bucket {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Reserves `bytes` and returns how long to wait before sending them. Reservations
    /// go into debt, so concurrent transfers of one key queue behind each other.
    fn reserve(&self, bytes: usize) -> Duration {
        let Ok(mut state) = self.state.lock() else {
            return Duration::ZERO;
        };
        let (available, last) = &mut *state;
        let now = Instant::now();
        *available =
            (*available + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
        *last = now;
        *available -= bytes as f64;
        if *available >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*available / self.rate)
        }
    }
}

/// The buckets of this process, by key. Held weakly: a bucket lives as long as a
/// transfer uses it.
#[derive(Debug, Default)]
pub struct Throttles {
    buckets: Mutex<HashMap<String, Weak<Bucket>>>,
}

impl Throttles {
    pub fn bucket(&self, key: &str, rate: Bandwidth) -> Arc<Bucket> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Arc::new(Bucket::new(rate));
        };
        if let Some(bucket) = buckets.get(key).and_then(Weak::upgrade)
            && bucket.rate == rate.bytes_per_sec as f64
        {
            return bucket;
        }
        if buckets.len() > 4096 {
            buckets.retain(|_, bucket| bucket.strong_count() > 0);
        }
        let bucket = Arc::new(Bucket::new(rate));
        buckets.insert(key.to_owned(), Arc::downgrade(&bucket));
        bucket
    }
}

/// Pieces a chunk is cut into, so that a slow rate is paced smoothly.
const PIECE: usize = 16 * 1024;

/// `stream`, paced by `bucket` (unchanged without one).
pub fn throttled<S, E>(
    stream: S,
    bucket: Option<Arc<Bucket>>,
) -> futures::stream::BoxStream<'static, Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let Some(bucket) = bucket else {
        return stream.boxed();
    };
    stream
        .flat_map(|item| {
            let pieces: Vec<Result<Bytes, E>> = match item {
                Ok(mut chunk) => {
                    let mut pieces = Vec::with_capacity(chunk.len() / PIECE + 1);
                    while chunk.len() > PIECE {
                        pieces.push(Ok(chunk.split_to(PIECE)));
                    }
                    pieces.push(Ok(chunk));
                    pieces
                }
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        })
        .then(move |item| {
            let bucket = bucket.clone();
            async move {
                if let Ok(piece) = &item {
                    let wait = bucket.reserve(piece.len());
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                item
            }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_parse_like_the_reference() {
        let rate = |s: &str| s.parse::<Bandwidth>().map(|b| b.bytes_per_sec);
        assert_eq!(rate("1kb/s"), Ok(1024));
        assert_eq!(rate("5MB/s"), Ok(5 << 20));
        assert_eq!(rate("1gb/s"), Ok(1 << 30));
        assert_eq!(rate("60kb/m"), Ok(1024));
        let shown = |s: &str| s.parse::<Bandwidth>().map(|b| b.to_string());
        assert_eq!(shown("2048kb/s"), Ok("2mb/s".into()));
        assert_eq!(shown("1kb/m"), Ok("17b/s".into()));
        for bad in ["", "kb/s", "10/s", "10kb", "10kb/h", "0kb/s", "10tb/s"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_key_shares_one_bucket_and_debt_becomes_waiting() {
        let throttles = Throttles::default();
        let rate = Bandwidth {
            bytes_per_sec: 1000,
        };
        let a = throttles.bucket("user:x", rate);
        let b = throttles.bucket("user:x", rate);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            a.reserve(1000),
            Duration::ZERO,
            "one second's worth is free"
        );
        let wait = b.reserve(500);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        drop((a, b));
        let c = throttles.bucket("user:x", rate);
        assert_eq!(
            c.reserve(1000),
            Duration::ZERO,
            "a new transfer after the last ended"
        );
    }
}
