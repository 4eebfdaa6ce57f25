//! `POST /generate_demo_user` (the reference's branch feature behind `[admin]
//! demo_users`): a ready-to-use account for trying the server out — a new key, the
//! account, optionally a small tree of sample files, and a long-lived bearer token.
//!
//! Why in the admin API: it hands out a secret key and a bearer that outlives ordinary
//! sessions, so only the operator may call it, and only when configured to (off by
//! default; disabled, the route does not exist). Everything it does is ordinary events
//! (`user_signed_up`, `grant_session_created`, one `file_put` per sample file), so a
//! demo user is a user like any other: the log has it, rebuilds reproduce it, and a
//! sign-out or `DELETE /auth/grant/session/{grant_id}` revokes its token.

use api::writer::CommitError;
use api::{ApiError, AppState, now_micros};
use axum::Extension;
use axum::Json;
use axum::extract::{RawQuery, State};
use base64::Engine;
use domain::capability::Capabilities;
use domain::event::{Change, Digest, UserLimits};
use domain::secret::BearerToken;
use domain::{Event, EventSeq, Keypair};
use log::Expected;
use serde::Serialize;
use std::sync::Arc;

use crate::AdminConfig;

const DEFAULT_CAPABILITIES: &str = "/:rw";
const DEFAULT_CLIENT_ID: &str = "demo.webdav";
const DEFAULT_LIFETIME_DAYS: u64 = 365;
/// A lifetime beyond this many days cannot be a grant expiry (and is surely a typo).
const MAX_LIFETIME_DAYS: u64 = 36_500;

/// A 1×1 PNG, for the sample photos.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The sample tree written when `seed` is true: the reference's paths (its generated
/// `/pub/pubky.app/` tree is left out; its content is cosmetic).
fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    vec![
        (
            "/pub/README.txt",
            text(
                "This is a demo account on a Pubky homeserver.\nFiles under /pub/ are public; files under /priv/ only you can read.\n",
            ),
        ),
        (
            "/pub/index.html",
            text(
                "<!doctype html><title>Pubky demo</title><h1>Hello from a Pubky homeserver</h1>\n",
            ),
        ),
        ("/pub/photos/harbour.png", PIXEL_PNG.to_vec()),
        ("/pub/photos/ridge.png", PIXEL_PNG.to_vec()),
        ("/pub/photos/orchard.png", PIXEL_PNG.to_vec()),
        (
            "/pub/photos/captions.txt",
            text(
                "harbour.png: the harbour at dawn\nridge.png: the ridge walk\norchard.png: the orchard in May\n",
            ),
        ),
        (
            "/priv/drive/documents/welcome.md",
            text("# Welcome\n\nThis folder is private to you.\n"),
        ),
        (
            "/priv/drive/documents/reading-list.md",
            text("# Reading list\n\n- The Pubky protocol\n- Mainline DHT\n"),
        ),
        (
            "/priv/drive/documents/expenses.csv",
            text("date,item,amount\n2026-01-05,coffee,3.20\n2026-01-06,train,12.00\n"),
        ),
        ("/priv/drive/photos/scan-0001.png", PIXEL_PNG.to_vec()),
        (
            "/priv/drive/projects/pubky-demo/notes.md",
            text("# Notes\n\nTry LOCK, PUT and the /drive page.\n"),
        ),
        (
            "/priv/drive/projects/pubky-demo/todo.txt",
            text("- upload a file\n- share a public link\n"),
        ),
    ]
}

#[derive(Serialize)]
pub(crate) struct DemoUser {
    public_key: String,
    /// The 32-byte secret key, lowercase hex; not kept anywhere by the server.
    secret_key: String,
    token: String,
    grant_id: String,
    expires_at: u64,
    basic_auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    drive_url: Option<String>,
    seeded_files: Vec<String>,
}

struct Params {
    capabilities: Vec<String>,
    client_id: String,
    lifetime_days: u64,
    seed: bool,
}

fn params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut capabilities = DEFAULT_CAPABILITIES.to_string();
    let mut client_id = DEFAULT_CLIENT_ID.to_string();
    let mut lifetime_days = DEFAULT_LIFETIME_DAYS;
    let mut seed = true;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = url::form_urlencoded::parse(format!("v={value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        match key {
            "capabilities" => capabilities = value,
            "client_id" => client_id = value,
            "lifetime_days" => {
                lifetime_days = value
                    .parse()
                    .map_err(|e| ApiError::bad_request(format!("Invalid lifetime_days: {e}")))?;
            }
            "seed" => {
                seed = value
                    .parse()
                    .map_err(|e| ApiError::bad_request(format!("Invalid seed: {e}")))?;
            }
            _ => {}
        }
    }
    let parsed: Capabilities = capabilities
        .parse()
        .map_err(|e| ApiError::bad_request(format!("Invalid capabilities: {e}")))?;
    if !domain::jws::is_client_id(&client_id) {
        return Err(ApiError::bad_request(
            "Invalid client_id: must be 1 to 253 bytes",
        ));
    }
    if lifetime_days > MAX_LIFETIME_DAYS {
        return Err(ApiError::bad_request("lifetime_days is too large"));
    }
    let rendered = parsed.to_string();
    Ok(Params {
        capabilities: rendered
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        client_id,
        lifetime_days,
        seed,
    })
}

/// `POST /generate_demo_user?capabilities&client_id&lifetime_days&seed`.
#[utoipa::path(post, path = "/generate_demo_user", operation_id = "generate_demo_user", tag = "admin", responses((status = 200, description = "a demo user's key and session (only with `admin_demo_users`)", content_type = "application/json"), (status = 401, description = "no or a wrong admin password")))]
pub(crate) async fn generate(
    State(state): State<AppState>,
    Extension(config): Extension<Arc<AdminConfig>>,
    RawQuery(query): RawQuery,
) -> Result<Json<DemoUser>, ApiError> {
    let params = params(query.as_deref())?;
    let keypair = Keypair::random();
    let user = keypair.public_key();
    let z32 = user.to_z32();

    // The account: the operator's action stands in for a signup token.
    let signup = Event::new(
        user.clone(),
        now_micros(),
        crate::request_id(),
        Change::UserSignedUp {
            signup_token: None,
            limits: UserLimits::default(),
            cookie_session: None,
            pop_nonce: None,
        },
    );
    let acct = commit(&state, &signup, EventSeq(0)).await?;

    // A personal access token: a grant whose client key nobody holds, and one bearer
    // session that lives as long as the grant.
    let now = now_micros() / 1_000_000;
    let expires_at = now + params.lifetime_days * 24 * 3600;
    let token = BearerToken::from_random(rand::random());
    let grant_id =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let session = Event::new(
        user.clone(),
        now_micros(),
        crate::request_id(),
        Change::GrantSessionCreated {
            grant_id: grant_id.clone(),
            client_id: params.client_id.clone(),
            client_key: Keypair::random().public_key(),
            capabilities: params.capabilities.clone(),
            grant_issued_at: now,
            grant_expires_at: expires_at,
            token_hash: Digest(token.hash()),
            token_expires_at: expires_at,
            pop_nonce: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(rand::random::<[u8; 16]>()),
            session_id: None,
        },
    );
    commit(&state, &session, acct).await?;

    let mut seeded_files = Vec::new();
    if params.seed {
        let mut file_seq = EventSeq(0);
        for (path, bytes) in sample_files() {
            let body =
                futures::stream::once(
                    async move { Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)) },
                );
            let stored = state
                .blobs
                .put_stream(body, None, path)
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            let put = Event::new(
                user.clone(),
                now_micros(),
                crate::request_id(),
                Change::FilePut {
                    path: path.to_string(),
                    content_hash: Digest(stored.hash.0),
                    size: stored.size,
                    content_type: stored.content_type.clone(),
                },
            );
            file_seq = commit(&state, &put, file_seq).await?;
            seeded_files.push(path.to_string());
        }
    }
    tracing::info!(user = %z32, seeded = seeded_files.len(), "operator generated a demo user");

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{z32}:{}", token.as_str()));
    Ok(Json(DemoUser {
        public_key: z32.clone(),
        secret_key: hex::encode(keypair.secret_key()),
        token: token.as_str().to_string(),
        grant_id,
        expires_at,
        basic_auth: format!("Basic {basic}"),
        drive_url: config
            .demo_base_url
            .as_ref()
            .map(|base| format!("{base}/drive?user={z32}")),
        seeded_files,
    }))
}

/// Appends an event of the brand-new user (nobody else can write it yet); a conflict
/// would mean the random key was taken, which is a 503 like any other contention.
async fn commit(state: &AppState, event: &Event, expected: EventSeq) -> Result<EventSeq, ApiError> {
    match state.commit(event, Expected::LastSeq(expected)).await {
        Ok(committed) => Ok(committed.seq),
        Err(CommitError::Conflict) => Err(api::writer::too_much_contention()),
        Err(CommitError::Api(e)) => Err(e),
    }
}
