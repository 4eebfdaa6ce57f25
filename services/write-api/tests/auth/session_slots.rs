//! Grant session slots (`grant-session-slots`): several bearers per grant, one per
//! `session_id`, under the reference's cap (409 `grant_session_limit_reached`) and
//! issuance window (429 `grant_session_rate_limited`), shared by every instance.

use super::common::{Instance, TestEnv};
use super::{Client, Signer, error, events_since, token_of};
use api::SignupMode;
use domain::session_slots::SlotLimits;
use pubky_common::auth::grant::GrantClaims;
use pubky_common::capabilities::Capability;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::num::NonZeroU64;

fn limits(max: u64, per_minute: u64) -> SlotLimits {
    SlotLimits {
        max_sessions_per_grant: NonZeroU64::new(max).unwrap(),
        session_issuance_per_minute: NonZeroU64::new(per_minute).unwrap(),
    }
}

async fn instance(env: &TestEnv, slots: SlotLimits) -> Instance {
    env.instance_with(|config| config.grant_session_slots = slots)
        .await
}

/// `{grant, pop[, session_id]}` with a fresh PoP.
fn body(signer: &Signer, grant: &GrantClaims, slot: Option<&str>) -> Value {
    let mut body = signer.body(grant);
    if let Some(slot) = slot {
        body["session_id"] = json!(slot);
    }
    body
}

async fn exchange(
    client: &Client,
    signer: &Signer,
    grant: &GrantClaims,
    slot: Option<&str>,
) -> reqwest::Response {
    client
        .post_json("/auth/grant/session", &body(signer, grant, slot))
        .await
}

/// A bearer for `slot`, which must be granted.
async fn bearer(
    client: &Client,
    signer: &Signer,
    grant: &GrantClaims,
    slot: Option<&str>,
) -> Value {
    let response = exchange(client, signer, grant, slot).await;
    assert_eq!(response.status(), StatusCode::OK, "slot {slot:?}");
    response.json().await.unwrap()
}

/// `GET /auth/grant/session` with `token`: its status and body.
async fn session_of(client: &Client, token: &str) -> (StatusCode, Value) {
    let response = client
        .with_bearer(Method::GET, "/auth/grant/session", token)
        .await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn signed_up(client: &Client, env: &TestEnv) -> Signer {
    let signer = Signer::new(env);
    assert_eq!(
        client.signup(&signer, None).await.status(),
        StatusCode::NO_CONTENT
    );
    signer
}

#[tokio::test]
async fn slots_hold_several_bearers_rotate_and_stop_at_the_cap() {
    let env = TestEnv::start(SignupMode::Open).await;
    let server = instance(&env, limits(3, 100)).await;
    let client = Client::new(&server);
    let alice = signed_up(&client, &env).await;
    let grant = alice.app_grant(vec![Capability::root()]);

    // The legacy slot and two named ones: three live bearers of one grant.
    let legacy = bearer(&client, &alice, &grant, None).await;
    assert!(legacy["session"].get("session_id").is_none(), "{legacy}");
    let tab_a = bearer(&client, &alice, &grant, Some("tab-a")).await;
    assert_eq!(tab_a["session"]["session_id"], "tab-a");
    // A UUID, the longest id (36 bytes).
    let uuid = "0f8b3c2e-7d4a-4b1e-9c6a-2f5d8e1a3b7c";
    let tab_b = bearer(&client, &alice, &grant, Some(uuid)).await;
    for (session, slot) in [
        (&legacy, None),
        (&tab_a, Some("tab-a")),
        (&tab_b, Some(uuid)),
    ] {
        let (status, info) = session_of(&client, &token_of(session)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info.get("session_id").and_then(Value::as_str), slot);
        assert_eq!(info["grant_id"], grant.jti.to_string());
    }

    // A fourth slot is refused; nothing is appended and nobody is signed out.
    let head = server.state.log.head().await.unwrap();
    let refused = exchange(&client, &alice, &grant, Some("tab-c")).await;
    insta::assert_snapshot!("slots_limit_reached", error(refused).await);
    assert!(events_since(&server, head).await.is_empty());
    for session in [&legacy, &tab_a, &tab_b] {
        assert_eq!(
            session_of(&client, &token_of(session)).await.0,
            StatusCode::OK
        );
    }

    // Rotating a slot at the cap is allowed: its old bearer ends, the others live on.
    let tab_a2 = bearer(&client, &alice, &grant, Some("tab-a")).await;
    assert_eq!(
        session_of(&client, &token_of(&tab_a)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        session_of(&client, &token_of(&tab_a2)).await.0,
        StatusCode::OK
    );
    let legacy2 = bearer(&client, &alice, &grant, None).await;
    assert_eq!(
        session_of(&client, &token_of(&legacy)).await.0,
        StatusCode::UNAUTHORIZED
    );
    for session in [&legacy2, &tab_a2, &tab_b] {
        assert_eq!(
            session_of(&client, &token_of(session)).await.0,
            StatusCode::OK
        );
    }
    // The slot is recorded in the event (public interface of the log).
    let head = server.state.log.head().await.unwrap();
    bearer(&client, &alice, &grant, Some("tab-a")).await;
    let events = events_since(&server, head).await;
    let [event] = events.as_slice() else {
        panic!("one exchange, one event: {events:?}");
    };
    let domain::Change::GrantSessionCreated { session_id, .. } = &event.change else {
        panic!("not a session: {event:?}");
    };
    assert_eq!(session_id.as_deref(), Some("tab-a"));

    // Another grant of the same user has slots of its own.
    let other = alice.app_grant(vec![Capability::root()]);
    bearer(&client, &alice, &other, Some("tab-c")).await;

    // Malformed ids are refused by the JSON extractor with the reference's texts.
    for (name, slot) in [
        ("slots_empty_id", String::new()),
        ("slots_long_id", "s".repeat(37)),
    ] {
        let response = exchange(&client, &alice, &grant, Some(&slot)).await;
        insta::assert_snapshot!(name, error(response).await);
    }
    let response = client
        .post_json("/auth/grant/session", &{
            let mut b = alice.body(&grant);
            b["session_id"] = json!(42);
            b
        })
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Signing out one slot's bearer revokes the grant: every slot ends.
    let logout = client
        .with_bearer(Method::DELETE, "/auth/grant/session", &token_of(&tab_b))
        .await;
    assert_eq!(logout.status(), StatusCode::OK);
    for session in [&legacy2, &tab_a2, &tab_b] {
        assert_eq!(
            session_of(&client, &token_of(session)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn the_cap_and_the_window_hold_across_instances() {
    let env = TestEnv::start(SignupMode::Open).await;
    let slots = limits(2, 3);
    let (a, b) = (instance(&env, slots).await, instance(&env, slots).await);
    let (ca, cb) = (Client::new(&a), Client::new(&b));
    let alice = signed_up(&ca, &env).await;
    let grant = alice.app_grant(vec![Capability::root()]);

    // One slot taken; two new slots race on two instances: exactly one gets in.
    bearer(&ca, &alice, &grant, Some("first")).await;
    let (ra, rb) = tokio::join!(
        exchange(&ca, &alice, &grant, Some("x")),
        exchange(&cb, &alice, &grant, Some("y"))
    );
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);

    // Two issuances so far in this window (the refusal appended nothing); a third (a
    // rotation) on the other instance is allowed, a fourth on either is refused until
    // the window closes.
    bearer(&cb, &alice, &grant, Some("first")).await;
    let head = a.state.log.head().await.unwrap();
    for client in [&ca, &cb] {
        let refused = exchange(client, &alice, &grant, Some("first")).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        insta::assert_snapshot!("slots_rate_limited", error(refused).await);
    }
    assert!(
        events_since(&a, head).await.is_empty(),
        "refusals append nothing"
    );
    // The window is the grant's: another grant of the same user is not limited by it.
    let other = alice.app_grant(vec![Capability::root()]);
    bearer(&cb, &alice, &other, None).await;
    env.finish().await;
}
