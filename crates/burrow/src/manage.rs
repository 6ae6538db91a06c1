//! The management commands (Octopus Connection Agent's `register`,
//! `unregister`, `list-agents`, `add-key`, `remove-key`, `list-keys`, plus
//! `admin-key create`): thin clients of the gateway's admin API.
//!
//! Output is a table (or env lines for `register`) by default, JSON with
//! `--json`. Exit codes: 0 done, 1 the gateway refused or could not be
//! reached, 2 bad input (caught here or by the gateway).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use burrow_api::types::{
    AdminKeyCreated, AdminKeyInfo, AdminKeyRevoked, Agent, ErrorBody, Key, KeyRemoved, NewAdminKey,
    NewAgent, NewKey, Registered, Route, RouteRemoved, RouteRequest, Rule, RuleRemoved,
    RuleRequest, Unregistered,
};
use burrow_api::{Endpoint, validate};
use burrow_transport::client::{HttpClient, HttpResponse};
use burrow_transport::proxy::ProxyEnv;
use burrow_transport::tls::{ALPN_HTTP1, Thumbprint, client_config};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bad input: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How to reach the admin API.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The gateway, as agents reach it: wss://HOST:PORT/connect,
    /// tls://HOST:PORT, or https://HOST:PORT. The admin API is
    /// /api/v1 on that host and port.
    #[arg(long, env = "CONNECT_URL")]
    pub connect_url: String,
    /// Admin API key (bk_...): the bootstrap key the gateway printed on
    /// first start, or one from `burrow admin-key create`. Also
    /// --octopus-cloud-instance-api-key, as Octopus Connection Agent's
    /// commands take it.
    #[arg(
        long,
        env = "BURROW_ADMIN_KEY",
        hide_env_values = true,
        visible_aliases = ["api-key", "octopus-cloud-instance-api-key"],
        required_unless_present = "admin_key_file"
    )]
    pub admin_key: Option<String>,
    /// File holding the admin API key (first line).
    #[arg(long, env = "BURROW_ADMIN_KEY_FILE", conflicts_with = "admin_key")]
    pub admin_key_file: Option<PathBuf>,
    /// Trust only the gateway certificate with this SHA-256 thumbprint
    /// (the gateway prints it at start). Without it (or --ca-file), the
    /// system's CA roots are used.
    #[arg(long, env = "GATEWAY_THUMBPRINT", value_delimiter = ',')]
    pub gateway_thumbprint: Vec<Thumbprint>,
    /// Trust gateway certificates issued by these CA roots (PEM).
    #[arg(long, env = "BURROW_CA_FILE", conflicts_with = "gateway_thumbprint")]
    pub ca_file: Option<PathBuf>,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An agent's public key, as PEM text or a file holding it.
#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    /// The key's name: 1-200 letters, digits, '-' and '.', not only dots.
    #[arg(long)]
    pub key_name: String,
    /// The public key: PEM text ("$(cat ConnectionAgent-NAME.pem.pub)") or
    /// the path of a PEM file. RSA 2048+ bits, EC P-256 or Ed25519.
    #[arg(long, allow_hyphen_values = true)]
    pub public_key: String,
}

/// Management subcommands.
#[derive(Debug, Subcommand)]
pub enum Manage {
    /// Register an agent with its first public key; prints the variables
    /// the agent needs (AUTH_SERVER_DOMAIN, AUTH_SERVER_CLIENT_ID,
    /// API_AUDIENCE, CONNECT_URL) as env lines.
    Register {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent's name: 1-200 letters, digits, '-' and '.', not only dots.
        #[arg(long)]
        agent_name: String,
        #[command(flatten)]
        key: PublicKeyArgs,
        /// An FQDN (or *.domain) this agent reaches; repeatable.
        #[arg(long)]
        fqdn: Vec<String>,
        /// How to print the agent's four variables: `env` (NAME=value
        /// lines, for an env file or `docker run --env-file`), `export`
        /// (shell lines: `eval "$(burrow register ... --format export)"`)
        /// or `json` (as --json).
        #[arg(long, value_enum, default_value_t = EnvFormat::Env)]
        format: EnvFormat,
    },
    /// Delete an agent and all its keys; its live links are closed.
    Unregister {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent.
        #[arg(long)]
        agent_name: String,
    },
    /// Show every registered agent: connected or not, links (on each
    /// gateway replica), round trip, uptime, last seen, version, remote
    /// address. With --agent-name, one agent in detail.
    ListAgents {
        #[command(flatten)]
        api: ApiArgs,
        /// Show only this agent, in detail.
        #[arg(long)]
        agent_name: Option<String>,
    },
    /// Authorize another public key for an agent (key rotation).
    AddKey {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent.
        #[arg(long)]
        agent_name: String,
        #[command(flatten)]
        key: PublicKeyArgs,
    },
    /// Revoke a public key; live links authenticated with it close within
    /// seconds. The agent's last key needs --force.
    RemoveKey {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent.
        #[arg(long)]
        agent_name: String,
        /// The key to revoke.
        #[arg(long)]
        key_name: String,
        /// Remove the agent's last key (it can no longer connect).
        #[arg(long)]
        force: bool,
    },
    /// Route an FQDN (or *.domain) through an agent: workloads reach it
    /// through the gateway's egress proxy. Creates the rule, or updates it.
    AddFqdn {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent that reaches the application.
        #[arg(long)]
        agent_name: String,
        /// The application's host name, or *.domain for every host under it
        /// (the most specific rule wins).
        #[arg(long)]
        fqdn: String,
        /// Do not validate the application's certificate where Burrow itself
        /// speaks TLS to it (TLS origination, the reachability check): for
        /// internal-CA or self-signed certificates.
        #[arg(long)]
        ignore_certificate_validation_errors: bool,
        /// TLS origination: a plain http://FQDN/ request through the proxy
        /// reaches the application over HTTPS (port 443 unless the URL
        /// names one).
        #[arg(long)]
        tls: bool,
        /// Port the reachability check connects to (default 443).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        check_port: Option<u16>,
        /// The check also completes a TLS handshake and validates the
        /// certificate (always done on port 443 and for --tls rules).
        #[arg(long)]
        check_tls: bool,
        /// The only ports workloads may reach through this rule, as
        /// 22,443,8000-8100 (default: any port). Anything else is refused
        /// with 403 at the gateway and again by the agent. Updating a rule
        /// without --ports allows any port again.
        #[arg(long, value_name = "PORTS")]
        ports: Option<burrow_wire::egress::Ports>,
    },
    /// Remove an FQDN rule: new connections to it are refused at once;
    /// open ones go on.
    RemoveFqdn {
        #[command(flatten)]
        api: ApiArgs,
        /// The rule's FQDN, as listed.
        #[arg(long)]
        fqdn: String,
        /// If given, the rule must belong to this agent.
        #[arg(long)]
        agent_name: Option<String>,
    },
    /// Show the FQDN rules: FQDN, agent, options, when changed; --check
    /// asks each agent to resolve, connect and (for HTTPS) handshake.
    ListFqdn {
        #[command(flatten)]
        api: ApiArgs,
        /// Check each rule's application from its agent: ok, dns, refused,
        /// timeout, certificate, ...
        #[arg(long)]
        check: bool,
    },
    /// Publish an internal HTTP service on a public host name: visitors to
    /// https://HOSTNAME on the gateway's edge reach TARGET through the
    /// agent. Creates the route, or updates it.
    AddRoute {
        #[command(flatten)]
        api: ApiArgs,
        /// The public host name (under BURROW_PUBLIC_DOMAIN if the gateway
        /// has one).
        #[arg(long)]
        hostname: String,
        /// The agent that reaches the service.
        #[arg(long)]
        agent_name: String,
        /// The internal URL: http://10.0.0.5:8080 or https://nas.lan:5001.
        #[arg(long)]
        target: String,
        /// Do not validate an https:// target's certificate.
        #[arg(long)]
        ignore_certificate_validation_errors: bool,
        /// Send PROXY protocol v2 to the service, so it sees the visitor's
        /// address (the service must expect it).
        #[arg(long)]
        proxy_protocol: bool,
    },
    /// Unpublish a route.
    RemoveRoute {
        #[command(flatten)]
        api: ApiArgs,
        /// The public host name.
        #[arg(long)]
        hostname: String,
    },
    /// Show the routes: host name, agent, internal URL, options, changed.
    ListRoutes {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show an agent's keys: name, algorithm, size, fingerprint, created.
    ListKeys {
        #[command(flatten)]
        api: ApiArgs,
        /// The agent.
        #[arg(long)]
        agent_name: String,
    },
}

/// How `register` prints the agent's variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    /// `NAME=value` lines.
    Env,
    /// `export NAME='value'` lines for a POSIX shell.
    Export,
    /// JSON (as `--json`).
    Json,
}

/// `value` quoted for a POSIX shell (single quotes; a quote inside as
/// `'\''`).
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `burrow admin-key` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminKeyCmd {
    /// Create an admin API key (shown once), e.g. a short-lived one for
    /// registering agents: --expires-in 1h.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime: 90s, 30m, 1h, 7d. Default: never expires.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List the admin API keys: id, name, created, expires, last used,
    /// revoked (never the keys themselves). `*` marks the key in use.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke an admin API key by its id (as `list` shows it). The last
    /// key that works cannot be revoked: create or replace one first.
    Revoke {
        #[command(flatten)]
        api: ApiArgs,
        /// The key's id (the 12 hex digits after `bk_`).
        id: String,
    },
    /// Replace an admin API key: create one with the same name (shown
    /// once), then revoke the old one, e.g. the bootstrap key.
    Replace {
        #[command(flatten)]
        api: ApiArgs,
        /// The id of the key to replace.
        id: String,
        /// The new key's lifetime: 90s, 30m, 1h, 7d. Default: never expires.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
}

/// A lifetime in words: `90 s`, `30 min`, `2 h`, `1 day`, `7 days`.
pub fn duration_words(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        86_400 => "1 day".into(),
        _ if s.is_multiple_of(86_400) => format!("{} days", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{} min", s / 60),
        _ => format!("{s} s"),
    }
}

/// `30s`, `15m`, `1h`, `7d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use 30s, 15m, 1h or 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    let secs = n
        .checked_mul(mult)
        .filter(|v| *v > 0 && *v <= 3650 * 86_400)
        .ok_or_else(|| format!("{s:?} must be more than 0 and at most 3650 days"))?;
    Ok(Duration::from_secs(secs))
}

/// The admin API's origin for a connect URL.
fn api_origin(connect_url: &str) -> Result<String, UsageError> {
    let bad = || {
        UsageError(format!(
            "invalid --connect-url {connect_url:?}: expected wss://HOST:PORT/connect, tls://HOST:PORT or https://HOST:PORT"
        ))
    };
    let (scheme, rest) = connect_url.split_once("://").ok_or_else(bad)?;
    let authority = rest
        .split('/')
        .next()
        .filter(|a| !a.is_empty())
        .ok_or_else(bad)?;
    let origin = match scheme {
        "wss" | "https" => format!("https://{authority}"),
        "ws" | "http" => format!("http://{authority}"),
        "tls" if authority.contains(':') => format!("https://{authority}"),
        "tls" => format!("https://{authority}:17200"),
        _ => return Err(bad()),
    };
    Ok(origin)
}

pub(crate) struct Api {
    client: HttpClient,
    key: String,
    pub(crate) json: bool,
}

impl Api {
    pub(crate) fn new(a: &ApiArgs) -> Result<Self> {
        let origin = api_origin(&a.connect_url)?;
        let tls = if origin.starts_with("https://") {
            let trust =
                crate::cli::gateway_trust(a.gateway_thumbprint.clone(), a.ca_file.as_deref())?;
            Some(client_config(
                None,
                &trust,
                "the gateway",
                "pass --gateway-thumbprint (GATEWAY_THUMBPRINT) with the thumbprint the gateway printed at start",
                ALPN_HTTP1,
            )?)
        } else {
            None
        };
        let client = HttpClient::new(&origin, tls, &ProxyEnv::from_env()?)?;
        Ok(Api {
            client,
            key: crate::secrets::value_or_file(
                a.admin_key.clone(),
                a.admin_key_file.as_deref(),
                "admin API key",
                false,
            )?
            .context("no admin API key: set BURROW_ADMIN_KEY_FILE or BURROW_ADMIN_KEY")?
            .trim()
            .to_owned(),
            json: a.json,
        })
    }

    /// Calls the API; a refusal becomes an error with the gateway's
    /// message (exit 2 for bad input, 1 otherwise).
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let mut headers = vec![(header::AUTHORIZATION, format!("Bearer {}", self.key))];
        let bytes = match body {
            Some(v) => {
                headers.push((header::CONTENT_TYPE, "application/json".into()));
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let method = Method::from_bytes(endpoint.method().as_bytes())?;
        let HttpResponse { status, body, .. } = self
            .client
            .request(
                method,
                &endpoint.path_and_query(),
                &headers,
                bytes,
                Duration::from_secs(30),
            )
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.client.base()))?;
        if status.is_success() {
            return serde_json::from_slice(&body).with_context(|| {
                format!(
                    "the gateway's answer to {} {} is not what this burrow expects (a different version?)",
                    endpoint.method(),
                    endpoint.path_and_query()
                )
            });
        }
        let msg = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => e.error,
            Err(_) => String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(300)
                .collect::<String>(),
        };
        let msg = if msg.is_empty() {
            "no reason given".to_owned()
        } else {
            msg
        };
        let msg = format!("the gateway refused (HTTP {}): {msg}", status.as_u16());
        if status == StatusCode::BAD_REQUEST {
            return Err(UsageError(msg).into());
        }
        Err(anyhow::anyhow!(msg))
    }

    pub(crate) fn print<T: Serialize>(&self, v: &T, table: impl FnOnce(&T) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{}", table(v));
        }
    }
}

/// No request body.
pub(crate) const NONE: Option<&()> = None;

pub(crate) fn check_name(what: &str, name: &str) -> Result<(), UsageError> {
    validate::name(what, name).map_err(|e| UsageError(e.message))
}

fn check_fqdn(fqdn: &str) -> Result<(), UsageError> {
    validate::fqdn(fqdn).map_err(|e| UsageError(e.message))
}

/// The public key's PEM: the text given, or the file it names.
fn public_key(arg: &str) -> Result<String, UsageError> {
    let pem = if arg.trim_start().starts_with("-----BEGIN") {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).map_err(|e| {
            UsageError(format!(
                "--public-key is neither PEM text nor a readable file ({arg}: {e})"
            ))
        })?
    };
    burrow_auth::pubkey::KeyInfo::from_pem(&pem).map_err(|e| UsageError(e.to_string()))?;
    Ok(pem)
}

/// Micros since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn time(us: Option<i64>) -> String {
    let Some(us) = us else {
        return "-".into();
    };
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// "added" or "updated", from a create-or-update answer's `created`.
fn added_or_updated(created: Option<bool>) -> &'static str {
    if created == Some(true) {
        "added"
    } else {
        "updated"
    }
}

/// An optional value for a table: `-` when absent.
pub(crate) fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_owned(), str::to_owned)
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn keys_table(keys: &[Key]) -> String {
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                k.key_name.clone(),
                k.algorithm.clone(),
                k.bits.to_string(),
                k.fingerprint.clone(),
                time(Some(k.created_at)),
            ]
        })
        .collect();
    table(
        &[
            "KEY NAME",
            "ALGORITHM",
            "BITS",
            "FINGERPRINT",
            "CREATED (UTC)",
        ],
        rows,
    )
}

pub(crate) fn rtt(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"))
}

/// `45 s`, `12 min`, `3 h 20 min`, `2 days 4 h`.
pub(crate) fn uptime(secs: Option<u64>) -> String {
    let Some(s) = secs else {
        return "-".into();
    };
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `REPLICA:LINKS` for each replica holding links, most first.
fn per_replica(g: &Agent) -> String {
    if g.replicas.is_empty() {
        return "-".into();
    }
    g.replicas
        .iter()
        .map(|r| {
            let d = if r.draining { " (draining)" } else { "" };
            format!("{}:{}{d}", r.replica, r.links)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One agent, field by field, then its links on each replica.
fn agent_detail(g: &Agent) -> String {
    let state = if g.connected {
        "connected"
    } else {
        "disconnected"
    };
    let mut out = String::new();
    for (k, v) in [
        ("agent", g.agent_name.clone()),
        ("state", state.to_owned()),
        ("links", g.links.to_string()),
        ("round trip", rtt(g.rtt_ms)),
        ("uptime", uptime(g.uptime_seconds)),
        ("last seen (UTC)", time(g.last_seen)),
        ("version", opt(g.version.as_deref())),
        ("remote address", opt(g.remote_address.as_deref())),
        ("client id", g.client_id.clone()),
        ("registered (UTC)", time(Some(g.created_at))),
    ] {
        out.push_str(&format!("{k:<17} {v}\n"));
    }
    if !g.replicas.is_empty() {
        out.push('\n');
        let rows = g
            .replicas
            .iter()
            .map(|r| {
                vec![
                    r.replica.clone(),
                    r.links.to_string(),
                    rtt(r.rtt_ms),
                    time(Some(r.since)),
                    if r.draining { "draining" } else { "serving" }.into(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["REPLICA", "LINKS", "ROUND TRIP", "UP SINCE (UTC)", "STATE"],
            rows,
        ));
    }
    out
}

fn agents_table(agents: &[Agent]) -> String {
    let rows = agents
        .iter()
        .map(|g| {
            let state = if g.connected {
                "connected"
            } else {
                "disconnected"
            };
            vec![
                g.agent_name.clone(),
                state.into(),
                g.links.to_string(),
                per_replica(g),
                rtt(g.rtt_ms),
                uptime(g.uptime_seconds),
                time(g.last_seen),
                opt(g.version.as_deref()),
                opt(g.remote_address.as_deref()),
                g.client_id.clone(),
            ]
        })
        .collect();
    table(
        &[
            "AGENT",
            "STATE",
            "LINKS",
            "ON REPLICAS",
            "ROUND TRIP",
            "UPTIME",
            "LAST SEEN (UTC)",
            "VERSION",
            "REMOTE ADDRESS",
            "CLIENT ID",
        ],
        rows,
    )
}

/// A rule's ports for people: the list, or `any`.
fn ports_text(ports: Option<&str>) -> String {
    ports.map_or_else(|| "any".to_owned(), str::to_owned)
}

fn rules_table(rules: &[Rule]) -> String {
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            let mut opts = Vec::new();
            if r.tls {
                opts.push("tls".to_owned());
            }
            if r.ignore_certificate_validation_errors {
                opts.push("ignore-certificate-validation-errors".to_owned());
            }
            if let Some(p) = r.check_port {
                opts.push(format!("check-port={p}"));
            }
            if r.check_tls {
                opts.push("check-tls".to_owned());
            }
            let mut row = vec![
                r.fqdn.clone(),
                r.agent_name.clone(),
                ports_text(r.ports.as_deref()),
                if opts.is_empty() {
                    "-".into()
                } else {
                    opts.join(",")
                },
                time(Some(r.updated_at)),
            ];
            if let Some(c) = &r.check {
                row.push(c.clone());
            }
            row
        })
        .collect();
    let checked = rows.first().is_some_and(|r| r.len() == 6);
    let mut header = vec!["FQDN", "AGENT", "PORTS", "OPTIONS", "CHANGED (UTC)"];
    if checked {
        header.push("CHECK");
    }
    table(&header, rows)
}

fn routes_table(routes: &[Route]) -> String {
    let rows = routes
        .iter()
        .map(|r| {
            let mut o = Vec::new();
            if r.ignore_certificate_validation_errors {
                o.push("ignore-certificate-validation-errors");
            }
            if r.proxy_protocol {
                o.push("proxy-protocol");
            }
            let opts = if o.is_empty() {
                "-".to_owned()
            } else {
                o.join(",")
            };
            vec![
                r.hostname.clone(),
                r.agent_name.clone(),
                r.target.clone(),
                opts,
                time(Some(r.updated_at)),
            ]
        })
        .collect();
    table(
        &["HOSTNAME", "AGENT", "TARGET", "OPTIONS", "CHANGED (UTC)"],
        rows,
    )
}

/// Runs a management command.
pub async fn run(cmd: Manage) -> Result<()> {
    match cmd {
        Manage::Register {
            api,
            agent_name,
            key,
            fqdn,
            format,
        } => {
            check_name("agent", &agent_name)?;
            check_name("key", &key.key_name)?;
            let pem = public_key(&key.public_key)?;
            let connect_url = api.connect_url.clone();
            let mut a = Api::new(&api)?;
            a.json |= format == EnvFormat::Json;
            let req = NewAgent {
                agent_name,
                key_name: key.key_name,
                public_key: pem,
                fqdns: fqdn,
            };
            let mut v: Registered = a.call(&Endpoint::Register, Some(&req)).await?;
            // The agent dials what the operator dialed.
            v.env.CONNECT_URL = connect_url;
            a.print(&v, |v| {
                let e = &v.env;
                [
                    ("AUTH_SERVER_DOMAIN", &e.AUTH_SERVER_DOMAIN),
                    ("AUTH_SERVER_CLIENT_ID", &e.AUTH_SERVER_CLIENT_ID),
                    ("API_AUDIENCE", &e.API_AUDIENCE),
                    ("CONNECT_URL", &e.CONNECT_URL),
                ]
                .iter()
                .map(|(k, v)| match format {
                    EnvFormat::Export => format!("export {k}={}\n", shell_quote(v)),
                    _ => format!("{k}={v}\n"),
                })
                .collect()
            });
        }
        Manage::Unregister { api, agent_name } => {
            check_name("agent", &agent_name)?;
            let a = Api::new(&api)?;
            let e = Endpoint::Unregister {
                agent: agent_name.clone(),
            };
            let v: Unregistered = a.call(&e, NONE).await?;
            a.print(&v, |v| {
                format!(
                    "unregistered agent {agent_name} ({} live links closed)\n",
                    v.links_closed
                )
            });
        }
        Manage::ListAgents { api, agent_name } => {
            let a = Api::new(&api)?;
            let v: Vec<Agent> = a.call(&Endpoint::ListAgents, NONE).await?;
            match agent_name {
                None => a.print(&v, |v| agents_table(v)),
                Some(name) => {
                    check_name("agent", &name)?;
                    let Some(one) = v.into_iter().find(|g| g.agent_name == name) else {
                        return Err(UsageError(format!(
                            "no agent named {name:?} is registered (list-agents shows them all)"
                        ))
                        .into());
                    };
                    a.print(&one, agent_detail);
                }
            }
        }
        Manage::AddKey {
            api,
            agent_name,
            key,
        } => {
            check_name("agent", &agent_name)?;
            check_name("key", &key.key_name)?;
            let pem = public_key(&key.public_key)?;
            let a = Api::new(&api)?;
            let req = NewKey {
                key_name: key.key_name,
                public_key: pem,
            };
            let e = Endpoint::AddKey { agent: agent_name };
            let v: Key = a.call(&e, Some(&req)).await?;
            a.print(&v, |v| keys_table(std::slice::from_ref(v)));
        }
        Manage::RemoveKey {
            api,
            agent_name,
            key_name,
            force,
        } => {
            check_name("agent", &agent_name)?;
            check_name("key", &key_name)?;
            let a = Api::new(&api)?;
            let e = Endpoint::RemoveKey {
                agent: agent_name.clone(),
                key: key_name.clone(),
                force,
            };
            let v: KeyRemoved = a.call(&e, NONE).await?;
            a.print(&v, |v| {
                format!(
                    "removed key {key_name} of agent {agent_name} ({} live links closed)\n",
                    v.links_closed
                )
            });
        }
        Manage::AddFqdn {
            api,
            agent_name,
            fqdn,
            ignore_certificate_validation_errors,
            tls,
            check_port,
            check_tls,
            ports,
        } => {
            check_name("agent", &agent_name)?;
            check_fqdn(&fqdn)?;
            if let (Some(p), Some(c)) = (&ports, check_port)
                && !p.allows(c)
            {
                return Err(UsageError(format!(
                    "--check-port {c} is not among --ports {p}: the check could never connect"
                ))
                .into());
            }
            let a = Api::new(&api)?;
            let req = RuleRequest {
                agent_name,
                ignore_certificate_validation_errors,
                tls,
                check_port,
                check_tls: Some(check_tls),
                ports: ports.map(|p| p.to_string()),
            };
            let e = Endpoint::PutRule {
                fqdn: fqdn.to_ascii_lowercase(),
            };
            let v: Rule = a.call(&e, Some(&req)).await?;
            a.print(&v, |v| {
                format!(
                    "{} FQDN rule {} -> agent {} (ports: {})\n",
                    added_or_updated(v.created),
                    v.fqdn,
                    v.agent_name,
                    ports_text(v.ports.as_deref())
                )
            });
        }
        Manage::RemoveFqdn {
            api,
            fqdn,
            agent_name,
        } => {
            check_fqdn(&fqdn)?;
            let fqdn = fqdn.to_ascii_lowercase();
            let a = Api::new(&api)?;
            if let Some(agent) = &agent_name {
                let rules: Vec<Rule> = a.call(&Endpoint::ListRules { check: false }, NONE).await?;
                let owner = rules
                    .into_iter()
                    .find(|r| r.fqdn == fqdn)
                    .map(|r| r.agent_name);
                if let Some(owner) = owner.filter(|o| o != agent) {
                    anyhow::bail!(
                        "the rule for {fqdn} belongs to agent {owner}, not {agent}; nothing removed"
                    );
                }
            }
            let v: RuleRemoved = a.call(&Endpoint::RemoveRule { fqdn }, NONE).await?;
            a.print(&v, |v| format!("removed FQDN rule {}\n", v.fqdn));
        }
        Manage::ListFqdn { api, check } => {
            let a = Api::new(&api)?;
            let v: Vec<Rule> = a.call(&Endpoint::ListRules { check }, NONE).await?;
            a.print(&v, |v| rules_table(v));
        }
        Manage::AddRoute {
            api,
            hostname,
            agent_name,
            target,
            ignore_certificate_validation_errors,
            proxy_protocol,
        } => {
            check_name("agent", &agent_name)?;
            validate::route_name(&hostname).map_err(|e| UsageError(e.message))?;
            let a = Api::new(&api)?;
            let req = RouteRequest {
                agent_name,
                target,
                ignore_certificate_validation_errors,
                proxy_protocol,
            };
            let e = Endpoint::PutRoute {
                hostname: hostname.to_ascii_lowercase(),
            };
            let v: Route = a.call(&e, Some(&req)).await?;
            a.print(&v, |v| {
                format!(
                    "{} route https://{} -> agent {} -> {}\n",
                    added_or_updated(v.created),
                    v.hostname,
                    v.agent_name,
                    v.target
                )
            });
        }
        Manage::RemoveRoute { api, hostname } => {
            let a = Api::new(&api)?;
            let e = Endpoint::RemoveRoute {
                hostname: hostname.to_ascii_lowercase(),
            };
            let v: RouteRemoved = a.call(&e, NONE).await?;
            a.print(&v, |v| format!("removed route {}\n", v.hostname));
        }
        Manage::ListRoutes { api } => {
            let a = Api::new(&api)?;
            let v: Vec<Route> = a.call(&Endpoint::ListRoutes, NONE).await?;
            a.print(&v, |v| routes_table(v));
        }
        Manage::ListKeys { api, agent_name } => {
            check_name("agent", &agent_name)?;
            let a = Api::new(&api)?;
            let e = Endpoint::ListKeys { agent: agent_name };
            let v: Vec<Key> = a.call(&e, NONE).await?;
            a.print(&v, |v| keys_table(v));
        }
    }
    Ok(())
}

/// Runs `burrow admin-key ...`.
pub async fn admin_key(cmd: AdminKeyCmd) -> Result<()> {
    match cmd {
        AdminKeyCmd::Create {
            api,
            name,
            expires_in,
        } => {
            check_name("admin key", &name)?;
            let a = Api::new(&api)?;
            let v = create_admin_key(&a, name, expires_in).await?;
            a.print(&v, created_admin_key);
        }
        AdminKeyCmd::List { api } => {
            let a = Api::new(&api)?;
            let v: Vec<AdminKeyInfo> = a.call(&Endpoint::ListAdminKeys, NONE).await?;
            a.print(&v, |v| admin_keys_table(v));
        }
        AdminKeyCmd::Revoke { api, id } => {
            let id = key_id(&id)?;
            let a = Api::new(&api)?;
            let v: AdminKeyRevoked = a.call(&Endpoint::RevokeAdminKey { id }, NONE).await?;
            a.print(&v, |v| format!("admin API key {} revoked\n", v.id));
        }
        AdminKeyCmd::Replace {
            api,
            id,
            expires_in,
        } => {
            let id = key_id(&id)?;
            let a = Api::new(&api)?;
            let keys: Vec<AdminKeyInfo> = a.call(&Endpoint::ListAdminKeys, NONE).await?;
            let old = keys.iter().find(|k| k.id == id).with_context(|| {
                format!("no admin API key with id {id} (burrow admin-key list shows them)")
            })?;
            let new = create_admin_key(&a, old.name.clone(), expires_in).await?;
            // The new key is made; if the revoke fails, say so with it, so
            // it is not lost and the old one can be revoked again.
            let revoked: Result<AdminKeyRevoked> = a
                .call(&Endpoint::RevokeAdminKey { id: id.clone() }, NONE)
                .await;
            a.print(&new, created_admin_key);
            match revoked {
                Ok(_) => eprintln!("# admin API key {id} revoked; use the new key from now on"),
                Err(e) => {
                    return Err(e.context(format!(
                        "the new key above was created, but {id} was not revoked: revoke it with `burrow admin-key revoke {id}`"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// An admin key id, as given: `ID`, or the `bk_ID` prefix of a key.
fn key_id(given: &str) -> Result<String, UsageError> {
    let id = given
        .trim()
        .trim_start_matches(burrow_auth::admin_key::PREFIX);
    let id = id.split('_').next().unwrap_or_default();
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(UsageError(format!(
            "{given:?} is not an admin API key id: give the 12 hex digits `burrow admin-key list` shows"
        )))
    }
}

async fn create_admin_key(
    a: &Api,
    name: String,
    expires_in: Option<Duration>,
) -> Result<AdminKeyCreated> {
    let req = NewAdminKey {
        name,
        expires_in_seconds: expires_in.map(|d| d.as_secs()),
    };
    a.call(&Endpoint::CreateAdminKey, Some(&req)).await
}

fn created_admin_key(v: &AdminKeyCreated) -> String {
    let expires = match v.expires_at {
        None => "never expires".to_owned(),
        Some(t) => format!("expires {} UTC", time(Some(t))),
    };
    format!(
        "{}\n# admin API key {} ({expires}); shown once, keep it safe\n",
        v.key, v.id
    )
}

fn admin_keys_table(keys: &[AdminKeyInfo]) -> String {
    let now = burrow_store::now_micros();
    let rows = keys
        .iter()
        .map(|k| {
            let state = if k.revoked {
                "revoked"
            } else if k.expires_at.is_some_and(|t| t <= now) {
                "expired"
            } else {
                "active"
            };
            vec![
                format!("{}{}", k.id, if k.current { " *" } else { "" }),
                k.name.clone(),
                state.to_owned(),
                time(Some(k.created_at)),
                time(k.expires_at),
                time(k.last_used_at),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "STATE",
            "CREATED (UTC)",
            "EXPIRES (UTC)",
            "LAST USED (UTC)",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("wss://h:1/connect"), "'wss://h:1/connect'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "0s", "1y", "-1h", "99999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_urls_map_to_the_admin_api() {
        for (url, origin) in [
            ("wss://gw.example.com/connect", "https://gw.example.com"),
            ("wss://127.0.0.1:17200/tunnel", "https://127.0.0.1:17200"),
            ("ws://127.0.0.1:8080/connect", "http://127.0.0.1:8080"),
            ("tls://gw:17200", "https://gw:17200"),
            ("tls://gw", "https://gw:17200"),
            ("https://gw:9443", "https://gw:9443"),
        ] {
            assert_eq!(api_origin(url).ok().as_deref(), Some(origin), "{url}");
        }
        for bad in ["gw", "ftp://gw", "wss://"] {
            assert!(api_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time(Some(1_700_000_000_000_000_i64)), "2023-11-14 22:13:20");
        assert_eq!(time(None), "-");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], vec![vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
