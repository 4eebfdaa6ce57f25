//! `homeserver admin …`: the operator's commands, as a client of the admin API.
//!
//! Every command is one HTTP request to a running server's admin listener (`--url`,
//! password from `HOMESERVER_ADMIN_PASSWORD` or `--password`) rather than a write to
//! the log from this process. Why: the admin API is then the only code path for
//! operator actions — the same validation, the same events (marked as the
//! operator's), the same password gate — and the operator needs the admin URL and
//! password only, not credentials for NATS and Postgres; it works the same against a
//! split deployment or a remote server.
//!
//! Output is for people and scripts: results on stdout (`signup-token` prints only the
//! token), errors on stderr with the server's status and text, exit status 1.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Base URL of the admin API (also HOMESERVER_ADMIN_URL).
    #[arg(
        long,
        global = true,
        env = "HOMESERVER_ADMIN_URL",
        default_value = "http://127.0.0.1:6288"
    )]
    pub url: String,
    /// Admin password; prefer HOMESERVER_ADMIN_PASSWORD (a flag shows in `ps`).
    #[arg(
        long,
        global = true,
        env = "HOMESERVER_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    #[command(subcommand)]
    pub action: AdminAction,
}

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// Server info: public key, announced addresses, version, users, tokens, storage.
    Info,
    /// Mint a single-use signup token and print it.
    SignupToken {
        /// Storage limit of the account it creates: MiB or `unlimited` (default: the
        /// server's).
        #[arg(long)]
        storage_mb: Option<String>,
    },
    /// List signup tokens (their SHA-256; the text is never stored).
    SignupTokens {
        /// all, used or unused.
        #[arg(long, default_value = "all")]
        state: String,
        #[arg(long)]
        limit: Option<u32>,
        /// The `next cursor` printed by the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Refuse the user's writes (reads, deletes and sign-in still work).
    Disable {
        /// The user's public key (z-base-32).
        user: String,
    },
    /// Allow the user's writes again.
    Enable {
        /// The user's public key (z-base-32).
        user: String,
    },
    /// A user's limits: effective values and overrides.
    #[command(subcommand)]
    Quota(QuotaAction),
    /// Delete one entry of a user (ignores the user's allowed write paths).
    Delete {
        /// The user's public key (z-base-32).
        user: String,
        /// The entry, e.g. `/pub/app/post.json`.
        path: String,
    },
    /// Mirrors of users whose primary is another homeserver (docs/mirror.md).
    #[command(subcommand)]
    Mirror(MirrorAction),
    /// Every user's events, private paths included, as Server-Sent Events.
    Events {
        /// Only these users (repeatable); default every user.
        #[arg(long)]
        user: Vec<String>,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        limit: Option<u16>,
        /// Only these paths (repeatable; a directory ends with `/`).
        #[arg(long)]
        path: Vec<String>,
        /// Keep the stream open for new events.
        #[arg(long)]
        live: bool,
        #[arg(long)]
        reverse: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MirrorAction {
    /// Start mirroring a user (read-only here) from their primary homeserver.
    Add {
        /// The user's public key (z-base-32).
        user: String,
        /// The primary's base URL, e.g. `http://10.0.0.5:6286`.
        #[arg(long)]
        source: String,
        /// The primary's public key; default: the signer of the user's root there.
        #[arg(long)]
        source_key: Option<String>,
        /// A bearer session at the primary that can read the user's `/priv/`
        /// (granted by the user); without it only public data is mirrored.
        #[arg(long, env = "HOMESERVER_MIRROR_READ_TOKEN", hide_env_values = true)]
        read_token: Option<String>,
        /// `merkle` (a homeserver of ours) or `plain` (any Pubky homeserver, e.g. the
        /// reference: listings and its event stream; needs `--source-key`); default:
        /// asked of the source.
        #[arg(long)]
        source_kind: Option<String>,
    },
    /// Every mirror with its state.
    List,
    /// One mirror's status: roots, lag, entries, bytes, last error.
    Status {
        /// The user's public key (z-base-32).
        user: String,
    },
    /// Stop mirroring a user (the copy stays, no longer read-only).
    Remove {
        /// The user's public key (z-base-32).
        user: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaAction {
    /// Show the user's limits.
    Get {
        /// The user's public key (z-base-32).
        user: String,
    },
    /// Change overrides; each value is a limit, `unlimited`, or `default` (the
    /// server's). Options not given keep their current override.
    Set {
        /// The user's public key (z-base-32).
        user: String,
        /// MiB.
        #[arg(long)]
        storage_mb: Option<String>,
        /// e.g. `100kb/s`, `1mb/s`.
        #[arg(long)]
        rate_read: Option<String>,
        /// Like `--rate-read`.
        #[arg(long)]
        rate_write: Option<String>,
        /// Comma-separated paths (a prefix ends with `/`), `none` (read-only) or
        /// `default` (unrestricted).
        #[arg(long)]
        allowed_write_paths: Option<String>,
    },
}

struct Client {
    http: reqwest::Client,
    url: String,
    password: String,
}

impl Client {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url.trim_end_matches('/')))
            .header("X-Admin-Password", &self.password)
    }

    /// A request to `segments` below the base URL, each segment percent-encoded (an
    /// entry's name may contain `?`, `#` or `%`).
    fn request_segments(
        &self,
        method: reqwest::Method,
        segments: &[&str],
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let mut url = reqwest::Url::parse(&self.url)
            .with_context(|| format!("--url {:?} is not a URL", self.url))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--url {:?} cannot have a path", self.url))?
            .pop_if_empty()
            .extend(segments);
        Ok(self
            .http
            .request(method, url)
            .header("X-Admin-Password", &self.password))
    }

    /// Sends and returns the body of a 2xx answer; anything else is an error that
    /// carries the server's status and text.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.url))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        bail!("{status}: {}", text.trim())
    }

    async fn text(&self, request: reqwest::RequestBuilder) -> anyhow::Result<String> {
        Ok(self.send(request).await?.text().await?)
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        Ok(self.send(request).await?.json().await?)
    }
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let password = args
        .password
        .filter(|p| !p.is_empty())
        .context("no admin password: set HOMESERVER_ADMIN_PASSWORD (or pass --password)")?;
    let client = Client {
        http: reqwest::Client::new(),
        url: args.url,
        password,
    };
    use reqwest::Method;
    match args.action {
        AdminAction::Info => {
            let info = client.json(client.request(Method::GET, "/info")).await?;
            print!("{}", render_info(&info));
        }
        AdminAction::SignupToken { storage_mb } => {
            let mut body = serde_json::Map::new();
            if let Some(value) = storage_mb {
                body.insert("storage_quota_mb".into(), limit_value(&value)?);
            }
            let request = client
                .request(Method::POST, "/generate_signup_token")
                .json(&body);
            println!("{}", client.text(request).await?.trim());
        }
        AdminAction::SignupTokens {
            state,
            limit,
            cursor,
        } => {
            let mut query = vec![("state", state)];
            query.extend(limit.map(|l| ("limit", l.to_string())));
            query.extend(cursor.map(|c| ("cursor", c)));
            let page = client
                .json(client.request(Method::GET, "/signup_tokens").query(&query))
                .await?;
            print!("{}", render_tokens(&page));
        }
        AdminAction::Disable { user } => {
            let path = format!("/users/{user}/disable");
            client.text(client.request(Method::POST, &path)).await?;
            println!("user {user} disabled");
        }
        AdminAction::Enable { user } => {
            let path = format!("/users/{user}/enable");
            client.text(client.request(Method::POST, &path)).await?;
            println!("user {user} enabled");
        }
        AdminAction::Quota(QuotaAction::Get { user }) => {
            let path = format!("/users/{user}/quota");
            let quota = client.json(client.request(Method::GET, &path)).await?;
            print!("{}", render_quota(&quota));
        }
        AdminAction::Quota(QuotaAction::Set {
            user,
            storage_mb,
            rate_read,
            rate_write,
            allowed_write_paths,
        }) => {
            let mut body = serde_json::Map::new();
            if let Some(value) = storage_mb {
                body.insert("storage_quota_mb".into(), limit_value(&value)?);
            }
            for (name, value) in [("rate_read", rate_read), ("rate_write", rate_write)] {
                if let Some(value) = value {
                    let value = match value.as_str() {
                        "default" => Value::Null,
                        _ => Value::String(value),
                    };
                    body.insert(name.into(), value);
                }
            }
            if let Some(value) = allowed_write_paths {
                let value = match value.as_str() {
                    "default" => Value::Null,
                    "none" => Value::Array(Vec::new()),
                    list => list
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.to_owned()))
                        .collect(),
                };
                body.insert("allowed_write_paths".into(), value);
            }
            let path = format!("/users/{user}/quota");
            let quota = client
                .json(client.request(Method::PATCH, &path).json(&body))
                .await?;
            print!("{}", render_quota(&quota));
        }
        AdminAction::Delete { user, path } => {
            let path = if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            };
            let mut segments = vec!["webdav", user.as_str()];
            segments.extend(path.split('/').skip(1));
            client
                .send(client.request_segments(Method::DELETE, &segments)?)
                .await?;
            println!("deleted pubky://{user}{path}");
        }
        AdminAction::Mirror(action) => mirror_command(&client, action).await?,
        AdminAction::Events {
            user,
            cursor,
            limit,
            path,
            live,
            reverse,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            query.extend(user.into_iter().map(|u| ("user", u)));
            query.extend(path.into_iter().map(|p| ("path", p)));
            query.extend(cursor.map(|c| ("cursor", c)));
            query.extend(limit.map(|l| ("limit", l.to_string())));
            if live {
                query.push(("live", "true".into()));
            }
            if reverse {
                query.push(("reverse", "true".into()));
            }
            let mut response = client
                .send(client.request(Method::GET, "/events-stream").query(&query))
                .await?;
            use std::io::Write;
            let mut stdout = std::io::stdout();
            while let Some(chunk) = response.chunk().await? {
                stdout.write_all(&chunk)?;
                stdout.flush()?;
            }
        }
    }
    Ok(())
}

async fn mirror_command(client: &Client, action: MirrorAction) -> anyhow::Result<()> {
    use reqwest::Method;
    match action {
        MirrorAction::Add {
            user,
            source,
            source_key,
            read_token,
            source_kind,
        } => {
            let body = serde_json::json!({
                "user": user, "source": source, "source_key": source_key, "read_token": read_token,
                "source_kind": source_kind,
            });
            let status = client
                .json(client.request(Method::POST, "/mirrors").json(&body))
                .await?;
            print!("{}", render_mirror(&status));
        }
        MirrorAction::List => {
            let list = client.json(client.request(Method::GET, "/mirrors")).await?;
            let mut out = format!(
                "{:<52}  {:<10}  {:<8}  {}\n",
                "user", "state", "private", "source"
            );
            for m in list["mirrors"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{:<52}  {:<10}  {:<8}  {}\n",
                    cell(&m["user"]),
                    cell(&m["state"]),
                    cell(&m["private"]),
                    cell(&m["source"])
                ));
            }
            print!("{out}");
        }
        MirrorAction::Status { user } => {
            let path = format!("/mirrors/{user}");
            let status = client.json(client.request(Method::GET, &path)).await?;
            print!("{}", render_mirror(&status));
        }
        MirrorAction::Remove { user } => {
            let path = format!("/mirrors/{user}");
            client.send(client.request(Method::DELETE, &path)).await?;
            println!("mirror of {user} removed (the copy stays)");
        }
    }
    Ok(())
}

/// One mirror's status resource, one field a line.
pub fn render_mirror(status: &Value) -> String {
    let mut out = String::new();
    for (label, value) in [
        ("user", &status["user"]),
        ("source", &status["source"]),
        ("primary", &status["primary"]),
        ("source kind", &status["source_kind"]),
        ("state", &status["state"]),
        ("local root (pub)", &status["local_roots"]["pub"]),
        ("source root (pub)", &status["source_roots"]["pub"]),
        ("local root (priv)", &status["local_roots"]["priv"]),
        ("source root (priv)", &status["source_roots"]["priv"]),
        ("lag (events)", &status["lag_events"]),
        ("entries", &status["entries"]),
        ("bytes", &status["bytes"]),
        ("last error", &status["last_error"]),
    ] {
        out.push_str(&format!("{label:<19} {}\n", cell(value)));
    }
    out
}

/// A storage limit argument: MiB, `unlimited`, or `default`.
fn limit_value(text: &str) -> anyhow::Result<Value> {
    match text {
        "default" => Ok(Value::Null),
        "unlimited" => Ok(Value::String(text.to_owned())),
        mb => Ok(Value::from(mb.parse::<u64>().with_context(|| {
            format!("--storage-mb must be MiB, `unlimited` or `default`, not {mb:?}")
        })?)),
    }
}

/// A JSON value for a table cell: `-` for null (the default applies).
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "none (read-only)".into(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

pub fn render_info(info: &Value) -> String {
    let field = |name: &str| cell(&info[name]);
    format!(
        "public key:          {}\n\
         version:             {}\n\
         users:               {} ({} disabled)\n\
         signup tokens:       {} ({} unused)\n\
         storage used:        {} MB\n\
         pkarr pubky address: {}\n\
         pkarr icann domain:  {}\n",
        field("public_key"),
        field("version"),
        field("num_users"),
        field("num_disabled_users"),
        field("num_signup_codes"),
        field("num_unused_signup_codes"),
        field("total_disk_used_mb"),
        field("pkarr_pubky_address"),
        field("pkarr_icann_domain"),
    )
}

pub fn render_quota(quota: &Value) -> String {
    let mut out = format!("{:<20} {:<20} {}\n", "limit", "effective", "override");
    for name in [
        "storage_quota_mb",
        "rate_read",
        "rate_write",
        "allowed_write_paths",
    ] {
        let mut effective = cell(&quota["effective"][name]);
        if name == "allowed_write_paths" && quota["effective"][name].is_null() {
            effective = "any".into();
        }
        out.push_str(&format!(
            "{name:<20} {effective:<20} {}\n",
            cell(&quota["overrides"][name])
        ));
    }
    out
}

pub fn render_tokens(page: &Value) -> String {
    let mut out = format!(
        "{:<64}  {:<20}  {:<20}  {}\n",
        "token sha-256", "created", "used", "used by"
    );
    for item in page["items"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<64}  {:<20}  {:<20}  {}\n",
            cell(&item["token_hash"]),
            cell(&item["created_at"]),
            cell(&item["used_at"]),
            cell(&item["used_by"]),
        ));
    }
    if let Some(next) = page["next_cursor"].as_str() {
        out.push_str(&format!("next cursor: {next}\n"));
    }
    out
}
