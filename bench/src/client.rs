//! The client side: accounts made through the real grant protocol, and the
//! Pubky-app shaped data the workloads write.
//!
//! Signup and signin are the two grant exchanges the published SDK performs
//! (reference spec section 3.4), signed with `pubky-common` 0.17.1, sent over plain
//! HTTP: `POST /auth/grant/signup` with a 5-minute root grant for client id
//! `pubky.signup`, then `POST /auth/grant/session` with a root grant for the bench's
//! client id, which answers the bearer token every later write carries. So a server
//! cannot win by skipping signature checks that the real clients rely on.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use pubky_common::auth::grant::GrantClaims;
use pubky_common::auth::jws::{ClientId, GrantId, PopNonce, sign_jws};
use pubky_common::auth::pop::PopProofClaims;
use pubky_common::capabilities::Capability;
use pubky_common::crypto::{Keypair, PublicKey};
use rand::Rng;
use serde::Deserialize;

/// A signed-up user and its bearer token.
#[derive(Clone, Debug)]
pub struct User {
    pub z32: String,
    pub token: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `{grant, pop}` for `user` asking `homeserver` for `caps` as `client_id`.
fn grant_request(
    user: &Keypair,
    homeserver: &PublicKey,
    client_id: &str,
    lifetime_secs: u64,
) -> Result<serde_json::Value> {
    let client = Keypair::random();
    let now = unix_now();
    let grant = GrantClaims {
        iss: user.public_key(),
        client_id: ClientId::new(client_id).map_err(|e| anyhow::anyhow!("client id: {e}"))?,
        caps: vec![Capability::root()],
        cnf: client.public_key(),
        jti: GrantId::generate(),
        iat: now,
        exp: now + lifetime_secs,
    };
    let pop = PopProofClaims {
        aud: homeserver.clone(),
        gid: grant.jti.clone(),
        nonce: PopNonce::generate(),
        iat: now,
    };
    Ok(serde_json::json!({
        "grant": grant.sign(user, "pubky-grant"),
        "pop": sign_jws(&client, "pubky-pop", &pop),
    }))
}

#[derive(Deserialize)]
struct SessionResponse {
    token: String,
}

/// Creates a fresh account on the server at `base` and signs it in.
pub async fn signup(http: &reqwest::Client, base: &str, homeserver: &PublicKey) -> Result<User> {
    let user = Keypair::random();
    let resp = http
        .post(format!("{base}/auth/grant/signup"))
        .json(&grant_request(&user, homeserver, "pubky.signup", 300)?)
        .send()
        .await
        .context("signup request")?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("signup: {status} {}", resp.text().await.unwrap_or_default());
    }
    let resp = http
        .post(format!("{base}/auth/grant/session"))
        .json(&grant_request(
            &user,
            homeserver,
            "bench.pubky.app",
            86_400,
        )?)
        .send()
        .await
        .context("session request")?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("signin: {status} {}", resp.text().await.unwrap_or_default());
    }
    let session: SessionResponse = resp.json().await.context("session body")?;
    Ok(User {
        z32: user.public_key().z32(),
        token: session.token,
    })
}

/// The kinds of small objects Pubky apps write, with the sizes and the share of
/// writes they have in the mix.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Post,
    Tag,
    Follow,
    Profile,
    FileMeta,
}

impl Kind {
    /// Share of small writes, in percent: posts and tags dominate a social feed.
    const MIX: [(Kind, u32); 5] = [
        (Kind::Post, 40),
        (Kind::Tag, 25),
        (Kind::Follow, 20),
        (Kind::FileMeta, 10),
        (Kind::Profile, 5),
    ];

    pub fn pick(rng: &mut impl Rng) -> Kind {
        let mut roll = rng.gen_range(0..100);
        for (kind, share) in Self::MIX {
            if roll < share {
                return kind;
            }
            roll -= share;
        }
        Kind::Post
    }

    /// Target body size in bytes.
    pub fn size(self) -> usize {
        match self {
            Kind::Post => 130,
            Kind::Tag => 150,
            Kind::Follow => 30,
            Kind::Profile => 300,
            Kind::FileMeta => 200,
        }
    }

    /// The path under the user, unique per `id` except for the one profile.
    pub fn path(self, id: u64) -> String {
        match self {
            Kind::Post => format!("/pub/pubky.app/posts/{id:013X}"),
            Kind::Tag => format!("/pub/pubky.app/tags/{id:013X}"),
            Kind::Follow => format!("/pub/pubky.app/follows/{id:013X}"),
            Kind::Profile => "/pub/pubky.app/profile.json".to_string(),
            Kind::FileMeta => format!("/pub/pubky.app/files/{id:013X}"),
        }
    }
}

/// A JSON object of exactly `size` bytes (at least the skeleton's length) that
/// differs per `id`, so a stale read is always detected.
pub fn json_body(size: usize, id: u64) -> Vec<u8> {
    let head = format!("{{\"id\":\"{id:013X}\",\"v\":\"");
    let tail = "\"}";
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(size.max(head.len() + tail.len()));
    body.extend_from_slice(head.as_bytes());
    body.extend(std::iter::repeat_n(b'x', pad));
    body.extend_from_slice(tail.as_bytes());
    body
}

/// Deterministic pseudo-random bytes (cheap to make, incompressible enough that no
/// layer can shortcut them).
pub fn blob_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Picks users with a Zipf(1.0) distribution: a few users write most of the data,
/// as in real social apps.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Zipf { cumulative }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.gen_range(0.0..total);
        self.cumulative
            .partition_point(|c| *c <= x)
            .min(self.cumulative.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_sizes_and_are_json() {
        for kind in [
            Kind::Post,
            Kind::Tag,
            Kind::Follow,
            Kind::Profile,
            Kind::FileMeta,
        ] {
            let body = json_body(kind.size(), 42);
            assert_eq!(body.len(), kind.size());
            let _: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        }
    }

    #[test]
    fn zipf_favours_the_first_users() {
        let zipf = Zipf::new(100);
        let mut rng = rand::thread_rng();
        let mut first = 0;
        for _ in 0..10_000 {
            let i = zipf.sample(&mut rng);
            assert!(i < 100);
            if i == 0 {
                first += 1;
            }
        }
        // P(rank 1) = 1 / H(100) ~ 0.19
        assert!((1_500..2_400).contains(&first), "{first}");
    }
}
