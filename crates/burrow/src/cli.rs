//! Command line: subcommands, flags with environment fallbacks, validation
//! into the libraries' typed configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_agent::{AgentConfig, AgentMode, AllowList, AllowRule};
use burrow_gateway::{AgentEndpoint, ForwardSpec, Gateway, GatewayConfig, Trust, TrustEntry};
use burrow_transport::proxy::ProxyEnv;
use burrow_transport::tls::{
    IdentitySource, LiveIdentity, ServerTrust, Thumbprint, client_config, roots_from_pem_file,
    system_roots,
};
use burrow_transport::{Dialer, Scheme, Secret, TunnelUrl};
use burrow_wire::valid_name;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::{info, warn};

use crate::identity::{IdentityArgs, ThumbprintArgs, reload_on_sighup};

/// Burrow: a secure reverse tunnel.
///
/// A gateway runs on a public host; an agent inside a private network dials
/// out to it and carries TCP streams over multiplexed links (WebSocket over
/// TLS, or raw TLS). Each side pins the other's certificate by SHA-256
/// thumbprint. No inbound firewall rule, no VPN.
#[derive(Debug, Parser)]
#[command(name = "burrow", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Logging options (all subcommands).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format: `text` for people, `json` for log shippers.
    #[arg(long, global = true, env = "BURROW_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `burrow_mux=debug,info`.
    #[arg(long, global = true, env = "BURROW_LOG", default_value = "info")]
    pub log_level: String,
    /// Also write the log to files, rolled daily: /var/log/burrow/agent.log
    /// writes agent.YYYY-MM-DD.log in /var/log/burrow (created if missing;
    /// Octoporty's Logging__FilePath). The console log stays as it is.
    #[arg(long, global = true, env = "BURROW_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Log files kept: older ones are deleted when a new day's file starts.
    #[arg(long, global = true, env = "BURROW_LOG_FILE_KEEP", default_value_t = 31, value_parser = clap::value_parser!(u16).range(1..))]
    pub log_file_keep: u16,
    /// Format of the log files.
    #[arg(
        long,
        global = true,
        env = "BURROW_LOG_FILE_FORMAT",
        default_value = "json"
    )]
    pub log_file_format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: the TLS tunnel endpoint agents dial (or that dials
    /// listening agents), and TCP forwards that carry connections through
    /// them.
    Gateway(GatewayArgs),
    /// Run the agent: dial the gateway (or, with --listen, let the gateway
    /// dial in) and connect the targets it asks for (those the allow-list
    /// permits).
    #[command(visible_alias = "agent")]
    Run(AgentArgs),
    /// Try Burrow on one machine: a gateway on 127.0.0.1:17200 and an agent
    /// named `demo` in one process, forwarding the given ports. The agent
    /// is registered in a SQLite store with a fresh key pair and
    /// authenticates with RFC 7523 client assertions; fresh self-signed
    /// certificates are pinned both ways. Nothing is exposed beyond
    /// loopback; the store lives in a temporary directory removed at exit.
    Demo(DemoArgs),
    /// Print the SHA-256 thumbprint of PEM certificates (or of the gateway
    /// and agent certificates in the data directory).
    Thumbprint(ThumbprintArgs),
    /// Make an agent key pair: ConnectionAgent-NAME.pem (private, 0600) and
    /// ConnectionAgent-NAME.pem.pub, as `openssl genrsa 2048` and
    /// `openssl rsa -pubout` make them.
    Keygen(crate::keygen::KeygenArgs),
    #[command(flatten)]
    Manage(crate::manage::Manage),
    #[command(flatten)]
    Ask(crate::ask::Ask),
    /// Manage admin API keys.
    #[command(subcommand)]
    AdminKey(crate::manage::AdminKeyCmd),
    /// Configuration files (`--config FILE`).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Walk the whole path from where the agent runs, with its settings
    /// (the same variables and --config file as `burrow run`), each check
    /// ok, failed or skipped with a fix: configuration, the gateway's DNS,
    /// TCP (directly or through HTTPS_PROXY), TLS and the thumbprint
    /// against the pin, clock skew, the token endpoint, a link's hello and
    /// round trip, then every FQDN rule's and route's target from the
    /// agent. With an admin key (BURROW_ADMIN_KEY) and --agent-name, from
    /// an operator's machine: asks the agent through the gateway. Exit 0
    /// when every check passed, 1 otherwise.
    Doctor(crate::doctor::DoctorArgs),
    /// Exit 0 if the agent (or gateway) on this machine is ready, 1 if
    /// not, saying why: an exec probe for containers. Asks the probe
    /// listener (the agent's --health-listen, the gateway's
    /// --metrics-listen) for /ready.
    Ready(ReadyArgs),
}

/// `burrow config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Check a configuration file without starting anything: every key
    /// known (an unknown one is named with the closest known key), every
    /// value valid as its flag's would be. Exit 0 valid, 2 not.
    /// Variables of this shell are not read.
    Check {
        /// The TOML file.
        file: PathBuf,
        /// Whose file it is: `gateway` or `agent`. Default: the role its
        /// keys fit.
        #[arg(long)]
        role: Option<String>,
    },
}

/// `burrow ready` flags.
#[derive(Debug, Args)]
pub struct ReadyArgs {
    /// The probe listener to ask: the agent's BURROW_HEALTH_LISTEN (a
    /// wildcard address is asked on loopback).
    #[arg(long = "health-listen", env = "BURROW_HEALTH_LISTEN", value_parser = parse_listen)]
    pub addr: Option<SocketAddr>,
    /// Ask /healthz (alive) instead of /ready.
    #[arg(long)]
    pub alive: bool,
    /// Longest wait for the answer.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub timeout_seconds: Duration,
}

/// A listen address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct ListenOrOff(pub Option<SocketAddr>);

fn parse_listen_or_off(s: &str) -> Result<ListenOrOff, String> {
    if matches!(s, "off" | "none" | "") {
        return Ok(ListenOrOff(None));
    }
    s.parse()
        .map(|a| ListenOrOff(Some(a)))
        .map_err(|_| format!("{s:?} is not IP:PORT (or `off`)"))
}

/// IP:PORT, or a bare PORT on every address.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not IP:PORT or a port number"))
}

fn parse_replica_id(s: &str) -> Result<String, String> {
    if burrow_wire::valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?}: a replica id is 1-200 letters, digits, '-' and '.', not only dots"
        ))
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s} must be more than 0 and at most 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The pre-shared key, the same on gateway and agent.
#[derive(Debug, Args)]
pub struct PskArgs {
    /// Pre-shared key: at least 32 characters, the same on gateway and
    /// agent. Generate one with `openssl rand -base64 32`. Optional where
    /// agents are trusted by certificate (--trust-agent).
    #[arg(
        long,
        env = "BURROW_PSK",
        hide_env_values = true,
        conflicts_with = "psk_file"
    )]
    pub psk: Option<String>,
    /// File holding the pre-shared key (first line).
    #[arg(long, env = "BURROW_PSK_FILE")]
    pub psk_file: Option<PathBuf>,
}

/// `--config FILE`.
#[derive(Debug, Clone, Args)]
pub struct ConfigFile {
    /// Settings from this TOML file: each flag is a key without its `--`
    /// (`connect-url = "wss://…"`, `allow = ["db:5432"]`, `allow-loopback =
    /// true`), or its variable's name. Variables and flags override it.
    /// Edits and SIGHUP reload what can change while running; the rest
    /// waits for a restart. Check one with `burrow config check FILE`.
    #[arg(
        id = "config_file",
        long = "config",
        env = "BURROW_CONFIG",
        value_name = "FILE"
    )]
    pub path: Option<PathBuf>,
}

/// Gateway flags.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub config: ConfigFile,
    /// Address of the tunnel endpoint: agents dial wss://HOST:PORT/tunnel
    /// (or /connect) or tls://HOST:PORT; browsers get a page with the
    /// gateway's thumbprint.
    /// A bare port (as Octoporty's Gateway__Port) means 0.0.0.0:PORT.
    #[arg(long, env = "BURROW_LISTEN", default_value = "0.0.0.0:17200", value_parser = parse_listen)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub psk: PskArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Serve plain ws:// without TLS. Only behind a TLS-terminating proxy
    /// (Caddy, a load balancer) on a trusted network.
    #[arg(long, env = "BURROW_NO_TLS")]
    pub no_tls: bool,
    /// Trust a client certificate for an agent: AGENT=THUMBPRINT (the
    /// thumbprint the agent prints at start). An agent with trusted
    /// thumbprints must present one of them. Repeat for rotation (old and
    /// new), or separate with commas.
    #[arg(
        long = "trust-agent",
        env = "BURROW_TRUST_AGENT",
        value_delimiter = ','
    )]
    pub trust_agent: Vec<TrustEntry>,
    /// File of AGENT THUMBPRINT lines (# comments), re-read when it
    /// changes: add or remove thumbprints without a restart.
    #[arg(long, env = "BURROW_TRUST_FILE")]
    pub trust_file: Option<PathBuf>,
    /// Refuse any agent without a trusted certificate, even with the key.
    #[arg(long, env = "BURROW_REQUIRE_AGENT_CERTIFICATE")]
    pub require_agent_certificate: bool,
    /// Listening agent to dial: NAME=tls://HOST:PORT. Its certificate must
    /// be trusted with --trust-agent NAME=THUMBPRINT. Repeatable.
    #[arg(
        long = "agent-endpoint",
        env = "BURROW_AGENT_ENDPOINT",
        value_delimiter = ','
    )]
    pub agent_endpoints: Vec<AgentEndpoint>,
    /// First delay before redialing a listening agent; doubles per failure.
    #[arg(long, env = "RECONNECT_DELAY_SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub reconnect_delay_seconds: Duration,
    /// Cap on the redial delay.
    #[arg(long, env = "MAX_RECONNECT_DELAY_SECONDS", default_value = "300", value_parser = parse_seconds)]
    pub max_reconnect_delay_seconds: Duration,
    /// Database for agents, keys and admin keys: sqlite://PATH or
    /// postgres://USER@HOST/DB. Default: burrow.db in the data directory.
    #[arg(long, env = "BURROW_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the database URL (first line), for a URL with a
    /// password.
    #[arg(
        long,
        env = "BURROW_DATABASE_URL_FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<PathBuf>,
    /// Most agents that may be registered.
    #[arg(long, env = "BURROW_MAX_AGENTS", default_value_t = burrow_store::DEFAULT_MAX_AGENTS)]
    pub max_agents: usize,
    /// Admin API key to create on start instead of a random bootstrap key
    /// (bk_<12 hex>_<secret>, e.g. from a secret store).
    #[arg(long, env = "BURROW_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// File holding that admin API key (first line).
    #[arg(long, env = "BURROW_ADMIN_KEY_FILE", conflicts_with = "admin_key")]
    pub admin_key_file: Option<PathBuf>,
    /// Lifetime of the bootstrap admin key this start creates (the random
    /// one a fresh database gets, or BURROW_ADMIN_KEY the first time): 30m,
    /// 1h, 7d. Default: never expires. Replace it before then with
    /// `burrow admin-key replace ID`.
    #[arg(long, env = "BURROW_BOOTSTRAP_KEY_EXPIRES_IN", value_parser = crate::manage::parse_duration)]
    pub bootstrap_key_expires_in: Option<std::time::Duration>,
    /// File holding the access-token signing key (64+ hex characters,
    /// e.g. `openssl rand -hex 32`), the same on every replica. Default:
    /// `token-key` in the data directory (created, mode 0600) with SQLite;
    /// the database's settings with PostgreSQL. The key itself may be
    /// given in BURROW_TOKEN_KEY instead.
    #[arg(long, env = "BURROW_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,
    /// Audience of the access tokens agents present (API_AUDIENCE).
    /// Default: one made on first start and kept in the database.
    #[arg(long, env = "BURROW_API_AUDIENCE")]
    pub api_audience: Option<String>,
    /// Egress proxy address (HTTP CONNECT, http:// requests, SOCKS5) for
    /// workloads reaching private FQDNs through agents; `off` disables it.
    /// Keep it on loopback (or a private network) or set --proxy-auth.
    #[arg(long, env = "BURROW_PROXY_LISTEN", default_value = "127.0.0.1:17203", value_parser = parse_listen_or_off)]
    pub proxy_listen: ListenOrOff,
    /// Credentials egress proxy clients must present: USER:PASSWORD (HTTP
    /// Basic proxy auth, SOCKS5 user/password).
    #[arg(long, env = "BURROW_PROXY_AUTH", hide_env_values = true)]
    pub proxy_auth: Option<String>,
    /// File holding the proxy credentials, USER:PASSWORD (first line).
    #[arg(long, env = "BURROW_PROXY_AUTH_FILE", conflicts_with = "proxy_auth")]
    pub proxy_auth_file: Option<PathBuf>,
    /// The edge's plain HTTP port: redirects visitors to HTTPS; `off`
    /// disables it.
    #[arg(long, env = "BURROW_EDGE_HTTP_LISTEN", default_value = "0.0.0.0:17280", value_parser = parse_listen_or_off)]
    pub edge_http_listen: ListenOrOff,
    /// The edge's HTTPS port: published routes (add-route), HTTP/2 and
    /// HTTP/1.1, routed by host name; `off` disables it.
    #[arg(long, env = "BURROW_EDGE_HTTPS_LISTEN", default_value = "0.0.0.0:17243", value_parser = parse_listen_or_off)]
    pub edge_https_listen: ListenOrOff,
    /// The edge's certificate (PEM; a wildcard for the public domain).
    /// Default: a self-signed one made on first start (edge-cert.pem).
    #[arg(long, env = "BURROW_EDGE_TLS_CERT", requires = "edge_tls_key")]
    pub edge_tls_cert: Option<PathBuf>,
    /// The edge certificate's private key (PEM).
    #[arg(long, env = "BURROW_EDGE_TLS_KEY", requires = "edge_tls_cert")]
    pub edge_tls_key: Option<PathBuf>,
    /// Routes must be host names under this domain, e.g.
    /// tunnel.example.com for *.tunnel.example.com.
    #[arg(long, env = "BURROW_PUBLIC_DOMAIN")]
    pub public_domain: Option<String>,
    /// The gateway's own host names (the ones agents and admins reach it
    /// by), comma-separated. With `localhost`, its certificate's DNS names
    /// and CONNECT_URL's host, they can never be routes. Set them in Caddy
    /// mode, where the certificate is Caddy's.
    #[arg(
        long = "gateway-name",
        env = "BURROW_GATEWAY_NAMES",
        value_delimiter = ','
    )]
    pub gateway_names: Vec<String>,
    /// The URL agents dial this gateway by, as `register` prints it (e.g.
    /// wss://gateway.example.com:17200/connect): its host is one of the
    /// gateway's own names.
    #[arg(long, env = "CONNECT_URL")]
    pub connect_url: Option<String>,
    /// Caddy mode: keep a Caddy route per published host through Caddy's
    /// Admin API (e.g. http://localhost:2019), so Caddy terminates TLS and
    /// proxies visitors to this gateway. Run the gateway with --no-tls
    /// behind it.
    #[arg(long, env = "BURROW_CADDY_ADMIN_URL")]
    pub caddy_admin_url: Option<String>,
    /// The Caddy HTTP server whose routes Burrow manages (srv0 is the first
    /// site block of a Caddyfile).
    #[arg(long, env = "BURROW_CADDY_SERVER", default_value = "srv0")]
    pub caddy_server: String,
    /// Where Caddy reaches this gateway. Default: the tunnel port, on
    /// 127.0.0.1 when it listens on all addresses.
    #[arg(long, env = "BURROW_CADDY_UPSTREAM")]
    pub caddy_upstream: Option<String>,
    /// Withdraw a host's Caddy route while its agent is offline, restore it
    /// when the agent returns. Off by default: Caddy reloads can drop
    /// long-lived connections.
    #[arg(long, env = "BURROW_REMOVE_ROUTES_ON_TUNNEL_UNAVAILABLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub remove_routes_on_tunnel_unavailable: bool,
    /// Origins a browser may call the admin API from, comma-separated, or
    /// `*` for any. Set it to your own origins in production.
    #[arg(
        long,
        env = "BURROW_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub allowed_origins: Vec<String>,
    /// Traffic audit records (every tunneled HTTP request and TCP stream)
    /// older than this many days are deleted.
    #[arg(long, env = "BURROW_AUDIT_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_retention_days: u32,
    /// At most this many traffic audit records are kept (oldest go first).
    #[arg(long, env = "BURROW_AUDIT_MAX_RECORDS", default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub audit_max_records: i64,
    /// Traffic audit records waiting to be written, at most; beyond it
    /// they are dropped (and counted), never slowing traffic.
    #[arg(long, env = "BURROW_AUDIT_QUEUE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_queue: u32,
    /// Lifetime of access tokens; agents renew them with a third left.
    #[arg(long, env = "BURROW_ACCESS_TOKEN_LIFETIME_SECONDS", default_value = "600", value_parser = parse_seconds)]
    pub access_token_lifetime_seconds: Duration,
    /// TCP forward LISTEN=AGENT:HOST:PORT, e.g. 127.0.0.1:15432=home:db.internal:5432.
    /// Repeat the flag, or separate with commas in the variable.
    #[arg(long = "forward", env = "BURROW_FORWARD", value_delimiter = ',')]
    pub forwards: Vec<ForwardSpec>,
    /// Heartbeat interval on agent links; a link silent for 3 intervals is dropped.
    #[arg(long, env = "HEARTBEAT_INTERVAL_SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub heartbeat_interval_seconds: Duration,
    /// On SIGINT/SIGTERM, how long open streams may take to finish.
    #[arg(long, env = "BURROW_DRAIN_TIMEOUT_SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub drain_timeout_seconds: Duration,
    /// Most forwarded connections open at once; more are refused.
    #[arg(long, env = "BURROW_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most connections open at once on the tunnel endpoint (agent links,
    /// admin API, token endpoint); more are closed at accept.
    #[arg(long, env = "BURROW_TUNNEL_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub tunnel_max_connections: u32,
    /// Most connections open at once on each edge port (HTTPS, HTTP).
    #[arg(long, env = "BURROW_EDGE_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub edge_max_connections: u32,
    /// Most connections open at once on the egress proxy.
    #[arg(long, env = "BURROW_PROXY_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub proxy_max_connections: u32,
    /// Most connections one source address may hold open on each of those
    /// listeners (the tunnel endpoint allows twice as many: agents behind
    /// one NAT).
    #[arg(long, env = "BURROW_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,
    /// How often the gateway re-reads FQDN rules, routes and agents' keys
    /// from the database as a fallback (closing links whose key was
    /// removed). Replicas on PostgreSQL are also told of each change at
    /// once (LISTEN/NOTIFY).
    #[arg(long, env = "BURROW_SWEEP_INTERVAL_SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub sweep_interval_seconds: Duration,
    /// Most agent handshakes (link hellos and token requests) under way at
    /// once; more are answered 503 with Retry-After, and agents come back
    /// after it (with jitter): a reconnect storm after a restart queues
    /// instead of swamping the gateway and its database.
    #[arg(long, env = "BURROW_MAX_HANDSHAKES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_handshakes: u32,
    /// This replica's id among gateways sharing one database (shown in
    /// list-agents, told to agents). Default: the host name (a pod's name)
    /// and four random hex digits.
    #[arg(long, env = "BURROW_REPLICA_ID", value_parser = parse_replica_id)]
    pub replica_id: Option<String>,
    /// Where agents and other replicas reach this replica itself, e.g.
    /// wss://10.0.0.5:17200/connect or tls://gw-1.internal:17200. Kept in
    /// the database: agents dial it to spread their links over replicas,
    /// and replicas carry connections for agents they hold no link of to
    /// the replica that does (mutual TLS, each presenting the gateway's
    /// certificate). Without it, replicas are reached only through the
    /// shared name, and do not carry for each other.
    #[arg(long, env = "BURROW_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Trust another replica presenting this certificate on a peer link
    /// (SHA-256 thumbprint); the gateway's own certificate is always
    /// trusted. Repeat, or separate with commas, while replicas move to a
    /// new certificate.
    #[arg(
        long = "peer-thumbprint",
        env = "BURROW_PEER_THUMBPRINT",
        value_delimiter = ','
    )]
    pub peer_thumbprints: Vec<Thumbprint>,
    /// Serve Prometheus metrics at /metrics here (with the probes /healthz
    /// and /ready), e.g. 127.0.0.1:9090, or 0.0.0.0:9090 in a pod; `off`
    /// (the default) keeps no metrics. Nothing here asks for credentials:
    /// keep it off the public internet.
    #[arg(long, env = "BURROW_METRICS_LISTEN", default_value = "off", value_parser = parse_listen_or_off)]
    pub metrics_listen: ListenOrOff,
}

/// Agent flags.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub config: ConfigFile,
    /// Gateway tunnel URL (polling mode): wss://gateway.example.com:17200/tunnel,
    /// tls://gateway.example.com:17200, or ws://… behind a TLS proxy.
    /// Several, comma-separated (gateway replicas without one shared
    /// name): links dial them in turn.
    #[arg(long, env = "CONNECT_URL", conflicts_with = "listen")]
    pub connect_url: Option<String>,
    /// Gateway host name: sets CONNECT_URL to wss://GATEWAY_FQDN/tunnel.
    #[arg(long, env = "GATEWAY_FQDN", conflicts_with = "listen")]
    pub gateway_fqdn: Option<String>,
    /// Listening mode: serve TLS here and let the gateway dial this agent
    /// (--agent-endpoint on the gateway). Needs GATEWAY_THUMBPRINT.
    #[arg(long, env = "BURROW_AGENT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// This agent's name: 1-200 letters, digits, '-' and '.', not only dots. Optional
    /// with key-pair authentication (the name it was registered with).
    #[arg(long, env = "BURROW_AGENT_NAME")]
    pub agent_name: Option<String>,
    #[command(flatten)]
    pub psk: PskArgs,
    #[command(flatten)]
    pub key_pair: KeyPairArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub ui: crate::ui::UiArgs,
    /// Trust only the gateway certificate with this SHA-256 thumbprint (the
    /// gateway prints it at start). Give two, comma-separated, while the
    /// gateway's certificate is being replaced.
    #[arg(long, env = "GATEWAY_THUMBPRINT", value_delimiter = ',')]
    pub gateway_thumbprint: Vec<Thumbprint>,
    /// Trust gateway certificates issued by these CA roots (PEM) instead of
    /// a thumbprint. Without either, the system's roots are used.
    #[arg(long, env = "BURROW_CA_FILE", conflicts_with = "gateway_thumbprint")]
    pub ca_file: Option<PathBuf>,
    /// Target this agent may connect to: HOST:PORT, HOST may be * or *.domain,
    /// PORT may be *. Repeat, or separate with commas. Nothing is allowed by default.
    #[arg(long = "allow", env = "BURROW_ALLOW", value_delimiter = ',')]
    pub allow: Vec<AllowRule>,
    /// Links to keep open to the gateway. Streams are spread over them; each
    /// link runs, with its streams, on a thread of its own. With gateway
    /// replicas, links go to as many distinct replicas as there are.
    #[arg(long, env = "BURROW_LINKS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub links: u16,
    /// Heartbeat interval; a link silent for 3 intervals is dropped.
    #[arg(long, env = "HEARTBEAT_INTERVAL_SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub heartbeat_interval_seconds: Duration,
    /// First delay before redialing a lost link; doubles per failure.
    #[arg(long, env = "RECONNECT_DELAY_SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub reconnect_delay_seconds: Duration,
    /// Cap on the redial delay.
    #[arg(long, env = "MAX_RECONNECT_DELAY_SECONDS", default_value = "300", value_parser = parse_seconds)]
    pub max_reconnect_delay_seconds: Duration,
    /// Timeout for connecting a target.
    #[arg(long, env = "BURROW_CONNECT_TIMEOUT_SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub connect_timeout_seconds: Duration,
    /// On SIGINT/SIGTERM, how long open streams may take to finish.
    #[arg(long, env = "BURROW_DRAIN_TIMEOUT_SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub drain_timeout_seconds: Duration,
    /// Resolve NAME to IP before DNS (a hosts entry) for everything the
    /// agent dials: forwards, egress and routes. NAME=IP, repeatable or
    /// comma-separated.
    #[arg(long = "map-host", env = "BURROW_MAP_HOST", value_delimiter = ',', value_parser = parse_map_host)]
    pub map_hosts: Vec<(String, std::net::IpAddr)>,
    /// Let egress reach link-local and cloud metadata addresses
    /// (169.254.0.0/16, fe80::/10, fd00:ec2::254), refused by default.
    #[arg(long, env = "BURROW_ALLOW_LINK_LOCAL")]
    pub allow_link_local: bool,
    /// Let egress and routes reach this host itself: loopback
    /// (127.0.0.0/8, ::1) and the unspecified address (0.0.0.0, ::),
    /// refused by default, whether a name resolves there (DNS or
    /// --map-host) or a route names it.
    #[arg(long, env = "BURROW_ALLOW_LOOPBACK")]
    pub allow_loopback: bool,
    /// Publish an internal HTTP service from here: HOSTNAME=URL, e.g.
    /// app.tunnel.example.com=http://10.0.0.5:8080. The gateway accepts
    /// names under its public domain (BURROW_PUBLIC_DOMAIN). Repeatable or
    /// comma-separated.
    #[arg(long = "route", env = "BURROW_ROUTES", value_delimiter = ',', value_parser = parse_route)]
    pub routes: Vec<(String, String)>,
    /// Certificates (PEM) for the applications the agent speaks TLS to
    /// (TLS origination, reachability checks): CAs that sign them, or a
    /// service's own certificate, self-signed or not, which is then trusted
    /// as that certificate (pinned: its names and dates are not checked).
    /// Default: the system's roots.
    #[arg(long, env = "BURROW_EGRESS_CA_FILE")]
    pub egress_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub health_listen: HealthListen,
}

/// Where the agent's probes and metrics listen.
#[derive(Debug, Args)]
pub struct HealthListen {
    /// Serve probes here: /healthz (alive), /ready (at least one link to
    /// the gateway is up; 503 with the reason otherwise), and Prometheus
    /// metrics at /metrics. E.g. 127.0.0.1:17290, or 0.0.0.0:17290 in a
    /// pod. `off` (the default): not served, no metrics kept. `burrow
    /// ready` asks it.
    #[arg(long = "health-listen", env = "BURROW_HEALTH_LISTEN", default_value = "off", value_parser = parse_listen_or_off)]
    pub addr: ListenOrOff,
}

fn parse_route(s: &str) -> Result<(String, String), String> {
    let (host, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected HOSTNAME=URL"))?;
    if !burrow_wire::egress::valid_pattern(host) || host.starts_with("*.") {
        return Err(format!("{s:?}: {host:?} is not a host name"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{s:?}: the internal URL must be http://HOST:PORT or https://HOST:PORT"
        ));
    }
    Ok((host.to_ascii_lowercase(), url.to_owned()))
}

fn parse_map_host(s: &str) -> Result<(String, std::net::IpAddr), String> {
    let (name, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=IP"))?;
    let ip = ip
        .parse()
        .map_err(|_| format!("{s:?}: {ip:?} is not an IP address"))?;
    if !burrow_wire::egress::valid_pattern(name) || name.starts_with("*.") {
        return Err(format!("{s:?}: {name:?} is not a host name"));
    }
    Ok((name.to_ascii_lowercase(), ip))
}

/// Key-pair authentication of an agent: the values `burrow register`
/// printed, and the private key whose public key was registered.
#[derive(Debug, Args)]
pub struct KeyPairArgs {
    /// The agent's client id, as `burrow register` printed it. Setting it
    /// switches the agent to key-pair authentication.
    #[arg(long, env = "AUTH_SERVER_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Host[:port] of the token endpoint (https://DOMAIN/oauth2/token), as
    /// `burrow register` printed it. Default: the CONNECT_URL's host.
    #[arg(long, env = "AUTH_SERVER_DOMAIN")]
    pub auth_server_domain: Option<String>,
    /// Audience of the tunnel, as `burrow register` printed it.
    #[arg(long, env = "API_AUDIENCE")]
    pub api_audience: Option<String>,
    /// The agent's private key, PEM (RSA 2048+, EC P-256 or Ed25519).
    #[arg(
        long,
        env = "AUTH_SERVER_PRIVATE_KEY_PEM",
        hide_env_values = true,
        allow_hyphen_values = true,
        conflicts_with = "private_key_pem_path"
    )]
    pub private_key_pem: Option<String>,
    /// File holding the agent's private key, PEM.
    #[arg(long, env = "AUTH_SERVER_PRIVATE_KEY_PEM_PATH")]
    pub private_key_pem_path: Option<PathBuf>,
    /// Registered name of the key (optional: without it the gateway finds
    /// the key among the agent's keys).
    #[arg(long, env = "AUTH_SERVER_KEY_NAME")]
    pub key_name: Option<String>,
    /// For tests only: seconds added to this host's clock when signing
    /// client assertions (plays a host whose clock is off).
    #[arg(
        long,
        env = "BURROW_TEST_CLOCK_OFFSET_SECONDS",
        hide = true,
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub clock_offset_seconds: i64,
}

/// Demo flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// LISTEN=TARGET, e.g. 127.0.0.1:15432=127.0.0.1:5432: connections to
    /// LISTEN travel gateway -> tunnel -> agent -> TARGET. Repeatable.
    #[arg(long = "forward", required = true, value_delimiter = ',')]
    pub forwards: Vec<String>,
    /// Tunnel endpoint address.
    #[arg(long, default_value = "127.0.0.1:17200")]
    pub listen: SocketAddr,
}

fn load_optional_psk(args: PskArgs) -> Result<Option<Secret>> {
    let raw = match (args.psk, args.psk_file) {
        (Some(v), _) => v,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the pre-shared key file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    Ok(Some(Secret::psk(&raw)?))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!(signal = "SIGINT", "signal received"),
        _ = term => info!(signal = "SIGTERM", "signal received"),
    }
}

/// The log filter for `--log-level LEVEL`.
fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter> {
    // rustls warns of every client that sends an IP literal as SNI (a
    // client's quirk, not a fault here): quiet unless asked for by name.
    let directives = if level.contains("rustls") {
        level.to_owned()
    } else {
        format!("{level},rustls::msgs::handshake=error")
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .with_context(|| format!("invalid --log-level {level:?}"))
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Changes the log filter of every log output (a configuration reload).
static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Logs through `filter` (from [`log_filter`]) from now on.
fn set_log_filter(filter: tracing_subscriber::EnvFilter) -> Result<()> {
    LOG_FILTER
        .get()
        .context("logging is not set up")?
        .reload(filter)
        .context("the log level cannot be changed")
}

/// Sets up the global subscriber; logs go to stderr.
pub fn init_logging(args: &LogArgs) -> Result<()> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(&args.log_level)?);
    let _ = LOG_FILTER.set(handle);
    type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
    fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> Boxed
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let l = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi);
        match format {
            LogFormat::Text => l.boxed(),
            LogFormat::Json => l
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .boxed(),
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut layers = vec![
        layer(args.log_format, std::io::stderr, ansi),
        burrow_transport::logtap::layer().boxed(),
    ];
    if let Some(path) = &args.log_file {
        layers.push(layer(
            args.log_file_format,
            log_file(path, args.log_file_keep)?,
            false,
        ));
    }
    tracing_subscriber::registry()
        .with(layers.with_filter(filter))
        .init();
    Ok(())
}

/// Where `--log-file PATH` writes: DIR/NAME.EXT names files
/// DIR/NAME.YYYY-MM-DD.EXT (directory, prefix, extension).
fn log_file_names(path: &Path) -> Result<(PathBuf, String, Option<String>)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .with_context(|| format!("--log-file {}: not a file name", path.display()))?;
    // Octoporty's default names its file `agent-.log`, the date going
    // where the dash is.
    let (stem, ext) = match file.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.trim_end_matches(['-', '_', '.']), Some(e)),
        _ => (file.as_str(), None),
    };
    let prefix = if stem.is_empty() { "burrow" } else { stem };
    Ok((dir.to_path_buf(), prefix.to_owned(), ext.map(str::to_owned)))
}

/// The agent's log files as its web UI reads them.
pub fn log_files(args: &LogArgs) -> Result<Option<burrow_ui::LogFiles>> {
    let Some(path) = &args.log_file else {
        return Ok(None);
    };
    let (dir, prefix, suffix) = log_file_names(path)?;
    Ok(Some(burrow_ui::LogFiles {
        dir,
        prefix,
        suffix,
        json: matches!(args.log_file_format, LogFormat::Json),
    }))
}

/// The daily rolling writer for `path` ([`log_file_names`]), keeping
/// `keep` files.
fn log_file(path: &Path, keep: u16) -> Result<tracing_appender::rolling::RollingFileAppender> {
    use tracing_appender::rolling::{Builder, Rotation};
    let (dir, prefix, suffix) = log_file_names(path)?;
    burrow_transport::files::ensure_writable_dir(&dir, "log file directory")?;
    let mut b = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(prefix)
        .max_log_files(usize::from(keep));
    if let Some(ext) = suffix {
        b = b.filename_suffix(ext);
    }
    b.build(&dir)
        .with_context(|| format!("cannot open the log file in {}", dir.display()))
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli, startup: crate::reload::Startup) -> Result<()> {
    match cli.command {
        Command::Gateway(args) => {
            let path = args.config.path.clone();
            gateway(args, (startup, path)).await
        }
        Command::Run(args) => {
            let path = args.config.path.clone();
            agent(args, &cli.log, (startup, path)).await
        }
        Command::Demo(args) => demo(args).await,
        Command::Thumbprint(args) => crate::identity::thumbprint(args),
        Command::Keygen(args) => crate::keygen::run(args),
        Command::Manage(cmd) => crate::manage::run(cmd).await,
        Command::Ask(cmd) => crate::ask::run(cmd).await,
        Command::AdminKey(cmd) => crate::manage::admin_key(cmd).await,
        Command::Ready(args) => ready(args).await,
        Command::Doctor(args) => crate::doctor::run(args).await,
        Command::Config(ConfigCmd::Check { file, role }) => {
            match crate::settings::check_file(&file, role.as_deref()) {
                Ok(report) => {
                    print!("{report}");
                    Ok(())
                }
                Err(e) => Err(crate::manage::UsageError(e.to_string()).into()),
            }
        }
    }
}

/// `burrow ready`: 0 when the probe listener answers 200, else the reason
/// and exit code 1.
async fn ready(args: ReadyArgs) -> Result<()> {
    let Some(mut addr) = args.addr else {
        bail!(
            "burrow ready asks the probe listener: set BURROW_HEALTH_LISTEN (as the agent has it) or --health-listen HOST:PORT"
        );
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = if args.alive { "/healthz" } else { "/ready" };
    match burrow_ops::check(addr, path, args.timeout_seconds).await {
        Ok(said) => {
            println!("{said}");
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}

/// The start-up and, with `--config`, the file: reloaded on SIGHUP and on
/// change.
type Reload = (crate::reload::Startup, Option<PathBuf>);

/// What a gateway changes on reload.
const GATEWAY_LIVE: &[&str] = &["--forward", "--log-level"];
/// What an agent changes on reload.
const AGENT_LIVE: &[&str] = &["--allow", "--map-host", "--route", "--log-level"];

/// Applies a reloaded gateway configuration: the log level and forwards.
async fn reload_gateway(
    reloader: &burrow_gateway::Reloader,
    parsed: crate::settings::Parsed,
) -> Result<Vec<String>, String> {
    let Command::Gateway(args) = parsed.cli.command else {
        return Err("the command line no longer runs a gateway".into());
    };
    // Checked before anything changes.
    let filter = log_filter(&parsed.cli.log.log_level).map_err(|e| format!("{e:#}"))?;
    let (added, removed) = reloader
        .set_forwards(&args.forwards)
        .await
        .map_err(|e| e.to_string())?;
    let mut changed: Vec<String> = added.iter().map(|f| format!("forward {f} added")).collect();
    changed.extend(removed.iter().map(|f| format!("forward {f} removed")));
    set_log_filter(filter).map_err(|e| format!("{e:#}"))?;
    Ok(changed)
}

/// Applies a reloaded agent configuration: allow-list, host map, routes,
/// log level.
async fn reload_agent(
    agent: &burrow_agent::Agent,
    parsed: crate::settings::Parsed,
) -> Result<Vec<String>, String> {
    let effective = parsed.effective();
    let Command::Run(args) = parsed.cli.command else {
        return Err("the command line no longer runs an agent".into());
    };
    // Checked before anything changes.
    let filter = log_filter(&parsed.cli.log.log_level).map_err(|e| format!("{e:#}"))?;
    let new = burrow_agent::Reloadable {
        allow: AllowList::new(args.allow),
        map_hosts: args.map_hosts.into_iter().collect(),
        routes: args.routes,
        settings: settings_shown(effective),
    };
    let changed: Vec<String> = agent
        .reload(new)
        .await
        .into_iter()
        .map(str::to_owned)
        .collect();
    set_log_filter(filter).map_err(|e| format!("{e:#}"))?;
    Ok(changed)
}

async fn gateway(args: GatewayArgs, reload: Reload) -> Result<()> {
    let psk = load_optional_psk(args.psk)?;
    let mut trust = Trust::new(args.trust_agent);
    if let Some(path) = args.trust_file {
        trust = trust.with_file(path)?;
    }
    if args.max_reconnect_delay_seconds < args.reconnect_delay_seconds {
        bail!("MAX_RECONNECT_DELAY_SECONDS must not be below RECONNECT_DELAY_SECONDS");
    }
    let tls = if args.no_tls {
        if !args.agent_endpoints.is_empty() {
            bail!(
                "--agent-endpoint needs TLS: listening agents verify the gateway's certificate; remove --no-tls"
            );
        }
        None
    } else {
        let id = args.identity.load("gateway")?;
        reload_on_sighup(id.clone());
        Some(id)
    };
    for ep in &args.agent_endpoints {
        if trust.for_agent(&ep.name).is_empty() {
            bail!(
                "--agent-endpoint {}: no certificate is trusted for agent {}; add --trust-agent {}=THUMBPRINT (the listening agent prints it at start)",
                ep.url.url,
                ep.name,
                ep.name
            );
        }
    }
    let data_dir = args.identity.data_dir();
    burrow_transport::files::ensure_writable_dir(&data_dir, "data directory")?;
    burrow_transport::files::warn_if_shared_dir(&data_dir);
    let database_url = crate::secrets::value_or_file(
        args.database_url.clone(),
        args.database_url_file.as_deref(),
        "database URL",
        false,
    )?;
    let admin_key = crate::secrets::value_or_file(
        args.admin_key.clone(),
        args.admin_key_file.as_deref(),
        "admin API key",
        false,
    )?;
    let proxy_auth = crate::secrets::value_or_file(
        args.proxy_auth.clone(),
        args.proxy_auth_file.as_deref(),
        "proxy credentials",
        false,
    )?
    .map(|v| v.parse::<burrow_gateway::ProxyAuth>())
    .transpose()
    .map_err(anyhow::Error::msg)?;
    // Listeners first: the database pool's connections take ephemeral
    // ports, which could be a listen port in that range.
    let listeners = burrow_gateway::Listeners::bind(
        args.listen,
        args.proxy_listen.0,
        args.edge_http_listen.0,
        args.edge_https_listen.0,
        &args.forwards,
    )
    .await?
    .with_metrics(args.metrics_listen.0)
    .await?;
    let store = match &database_url {
        Some(url) => burrow_store::Store::open(url).await,
        None => burrow_store::Store::open_in(&data_dir).await,
    }
    .context("cannot open the database")?;
    let token_key = token_key_source(args.token_key_file.as_deref(), store.backend(), &data_dir)?;
    let lifetime = args.bootstrap_key_expires_in;
    match burrow_gateway::admin::bootstrap(&store, admin_key.as_deref(), lifetime)
        .await
        .map_err(anyhow::Error::msg)?
    {
        Some(token) => {
            let expires = match lifetime {
                Some(d) => format!(
                    "; expires in {}, replace it with `burrow admin-key replace`",
                    crate::manage::duration_words(d)
                ),
                None => String::new(),
            };
            println!("Bootstrap admin API key (shown once; keep it safe{expires}): {token}");
            info!(
                "bootstrap admin API key created and printed on standard output (never in this log)"
            );
        }
        None => info!(backend = ?store.backend(), "database ready"),
    }
    let connect_host = match &args.connect_url {
        Some(u) => Some(
            TunnelUrl::parse(u)
                .with_context(|| format!("invalid CONNECT_URL {u:?}"))?
                .host,
        ),
        None => None,
    };
    let own_names = burrow_gateway::OwnNames::new(
        std::iter::once("localhost".to_owned())
            .chain(tls.iter().flat_map(|id| id.dns_names()))
            .chain(connect_host)
            .chain(args.gateway_names.iter().cloned()),
    );
    info!(names = %own_names.names().join(","), "the gateway's own names (never routes)");
    let mut config = GatewayConfig::new(psk, tls);
    config.own_names = own_names;
    config.token_key = token_key;
    config.store = Some(store);
    config.max_agents = args.max_agents;
    config.audience = args.api_audience;
    config.proxy_listen = args.proxy_listen.0;
    if let Some(admin_url) = args.caddy_admin_url {
        // Empty: the tunnel port as bound (the gateway fills it in).
        let upstream = args.caddy_upstream.unwrap_or_default();
        config.caddy = Some(burrow_gateway::CaddyConfig {
            admin_url,
            server: args.caddy_server,
            upstream,
            remove_when_unavailable: args.remove_routes_on_tunnel_unavailable,
            interval: Duration::from_secs(2),
        });
    }
    config.allowed_origins = args
        .allowed_origins
        .into_iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    config.audit = burrow_gateway::AuditConfig {
        queue: args.audit_queue as usize,
        max_age: Duration::from_secs(u64::from(args.audit_retention_days) * 86_400),
        max_records: args.audit_max_records,
    };
    config.edge_http = args.edge_http_listen.0;
    config.edge_https = args.edge_https_listen.0;
    config.public_domain = args.public_domain.map(|d| {
        d.trim_start_matches("*.")
            .trim_end_matches('.')
            .to_ascii_lowercase()
    });
    if config.edge_https.is_some() {
        let source = match (args.edge_tls_cert, args.edge_tls_key) {
            (Some(cert), Some(key)) => IdentitySource::Files { cert, key },
            _ => IdentitySource::Generated {
                dir: args.identity.data_dir(),
                role: "edge".into(),
                names: match &config.public_domain {
                    Some(d) => vec![format!("*.{d}"), d.clone()],
                    None => vec!["localhost".into()],
                },
            },
        };
        let id = LiveIdentity::load(source).context("cannot load the edge certificate")?;
        reload_on_sighup(id.clone());
        config.edge_tls = Some(id);
    }
    config.proxy_auth = proxy_auth;
    config.access_token_lifetime = args.access_token_lifetime_seconds;
    config.trust = trust;
    config.require_agent_certificate = args.require_agent_certificate;
    config.agent_endpoints = args.agent_endpoints;
    config.reconnect_delay = args.reconnect_delay_seconds;
    config.max_reconnect_delay = args.max_reconnect_delay_seconds;
    config.forwards = args.forwards;
    config.metrics_listen = args.metrics_listen.0;
    config.max_handshakes = args.max_handshakes as usize;
    config.revocation_check = args.sweep_interval_seconds;
    if let Some(id) = args.replica_id {
        config.replica_id = id;
    }
    config.advertise_url = args
        .advertise_url
        .as_deref()
        .map(burrow_transport::TunnelUrl::parse)
        .transpose()
        .context("--advertise-url")?;
    config.peer_trust = args.peer_thumbprints;
    config.heartbeat = args.heartbeat_interval_seconds;
    config.drain_timeout = args.drain_timeout_seconds;
    config.max_connections = args.max_connections;
    let per = args.max_connections_per_address as usize;
    let caps = |total: u32, per: usize| burrow_gateway::Caps {
        total: total as usize,
        per_address: per.min(total as usize),
    };
    config.tunnel_caps = caps(args.tunnel_max_connections, per.saturating_mul(2));
    config.edge_caps = caps(args.edge_max_connections, per);
    config.proxy_caps = caps(args.proxy_max_connections, per);
    let gw = Gateway::with_listeners(config, listeners).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "burrow gateway starting"
    );
    if let (startup, Some(path)) = reload {
        let reloader = gw.reloader();
        tokio::spawn(crate::reload::watch(
            startup,
            path,
            GATEWAY_LIVE,
            move |p| {
                let reloader = reloader.clone();
                async move { reload_gateway(&reloader, p).await }
            },
        ));
    }
    gw.run(shutdown_signal()).await;
    Ok(())
}

/// Where the access-token key comes from: BURROW_TOKEN_KEY, the operator's
/// key file, a file of its own beside a SQLite database, or PostgreSQL.
fn token_key_source(
    file: Option<&std::path::Path>,
    backend: burrow_store::Backend,
    data_dir: &std::path::Path,
) -> Result<burrow_gateway::TokenKeySource> {
    use burrow_gateway::TokenKeySource;
    if let Some(v) = std::env::var("BURROW_TOKEN_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        if file.is_some() {
            bail!("BURROW_TOKEN_KEY and BURROW_TOKEN_KEY_FILE both set: keep one");
        }
        return Ok(TokenKeySource::Given(Secret::new(v)));
    }
    if let Some(path) = file {
        burrow_transport::files::warn_if_readable(path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token key file {}", path.display()))?;
        return Ok(TokenKeySource::Given(Secret::new(text.trim())));
    }
    Ok(match backend {
        burrow_store::Backend::Sqlite => TokenKeySource::File(data_dir.join("token-key")),
        burrow_store::Backend::Postgres => TokenKeySource::Store,
    })
}

/// How the agent trusts the gateway: pinned thumbprints, a CA file, or the
/// system roots.
pub(crate) fn gateway_trust(
    pins: Vec<Thumbprint>,
    ca_file: Option<&std::path::Path>,
) -> Result<ServerTrust> {
    Ok(match (pins.is_empty(), ca_file) {
        (false, _) => ServerTrust::Pinned(pins),
        (true, Some(f)) => roots_from_pem_file(f)?,
        (true, None) => system_roots()?,
    })
}

/// The dialer for a polling agent.
fn polling_dialer(
    url: TunnelUrl,
    identity: Option<Arc<LiveIdentity>>,
    trust: &ServerTrust,
) -> Result<Dialer> {
    let tls = if url.scheme.is_tls() {
        Some(client_config(
            identity,
            trust,
            "the gateway",
            "set GATEWAY_THUMBPRINT to the thumbprint the gateway printed at start",
            url.scheme.alpn(),
        )?)
    } else {
        None
    };
    let dialer = Dialer::new(url, tls, &ProxyEnv::from_env()?)?;
    if let Some(p) = dialer.proxy() {
        info!(event = burrow_agent::event::LINKS_VIA_PROXY, proxy = ?p, "links go through the HTTP proxy (HTTPS_PROXY / HTTP_PROXY)");
    }
    Ok(dialer)
}

pub(crate) fn agent_config(args: AgentArgs) -> Result<AgentConfig> {
    let key_pair = args.key_pair.client_id.is_some();
    let name = match args.agent_name.clone() {
        Some(n) if !valid_name(&n) => {
            bail!("invalid agent name {n:?}: use 1-200 letters, digits, '-' and '.', not only dots")
        }
        Some(n) => n,
        None if key_pair => String::new(),
        None => bail!(
            "no agent name: set BURROW_AGENT_NAME (--agent-name), or register the agent with a key pair and set AUTH_SERVER_CLIENT_ID"
        ),
    };
    if args.max_reconnect_delay_seconds < args.reconnect_delay_seconds {
        bail!("MAX_RECONNECT_DELAY_SECONDS must not be below RECONNECT_DELAY_SECONDS");
    }
    // Several URLs, comma-separated: the first is the gateway's (the
    // token endpoint's default host); links take them in turn.
    let mut urls = args
        .connect_url
        .as_deref()
        .map(|u| u.split(',').map(str::trim).filter(|u| !u.is_empty()))
        .into_iter()
        .flatten();
    let first_url = urls.next().map(str::to_owned);
    let more_urls = urls
        .map(TunnelUrl::parse)
        .collect::<Result<Vec<_>, _>>()
        .context("CONNECT_URL")?;
    let url = match (&first_url, &args.gateway_fqdn, args.listen) {
        (Some(u), _, _) => Some(TunnelUrl::parse(u)?),
        (None, Some(fqdn), _) => Some(TunnelUrl::parse(&format!("wss://{fqdn}/tunnel"))?),
        (None, None, Some(_)) => None,
        (None, None, None) => bail!(
            "no gateway: set CONNECT_URL (e.g. wss://gateway.example.com:17200/tunnel) or GATEWAY_FQDN, or --listen ADDR for listening mode"
        ),
    };
    let psk = load_optional_psk(args.psk)?;
    let plain = url.as_ref().is_some_and(|u| u.scheme == Scheme::Ws);
    if psk.is_none() && plain && !key_pair {
        bail!(
            "no pre-shared key: a ws:// link carries no certificate, so set BURROW_PSK (generate one with: openssl rand -base64 32), or use wss:// or tls://"
        );
    }
    let identity = if plain {
        None
    } else {
        let id = args.identity.load("agent")?;
        reload_on_sighup(id.clone());
        Some(id)
    };
    let auth = if key_pair {
        let trust = gateway_trust(args.gateway_thumbprint.clone(), args.ca_file.as_deref())?;
        Some(key_pair_auth(
            args.key_pair,
            url.as_ref(),
            identity.clone(),
            &trust,
        )?)
    } else {
        None
    };
    let mode = match (url, args.listen) {
        (Some(url), _) => {
            let trust = if url.scheme == Scheme::Ws {
                warn!(
                    "CONNECT_URL is ws://: the link is not encrypted unless a TLS proxy carries it"
                );
                if !args.gateway_thumbprint.is_empty() || args.ca_file.is_some() {
                    warn!(
                        "GATEWAY_THUMBPRINT and --ca-file do not apply to ws:// (no TLS on the link)"
                    );
                }
                // Unused without TLS.
                ServerTrust::Pinned(Vec::new())
            } else {
                gateway_trust(args.gateway_thumbprint, args.ca_file.as_deref())?
            };
            AgentMode::Poll(polling_dialer(url, identity.clone(), &trust)?)
        }
        (None, addr) => {
            let addr = addr.context("no gateway URL and no --listen address")?;
            if args.gateway_thumbprint.is_empty() {
                bail!(
                    "listening mode needs GATEWAY_THUMBPRINT (the thumbprint the gateway prints at start): the agent serves only that gateway"
                );
            }
            AgentMode::Listen {
                addr,
                gateway: args.gateway_thumbprint,
            }
        }
    };
    let mut c = AgentConfig::new(mode, psk, name);
    // The host alone (a port may follow the name).
    c.gateway_fqdn = args
        .gateway_fqdn
        .as_deref()
        .map(|f| f.rsplit_once(':').map_or(f, |(host, _)| host).to_owned());
    c.identity = identity;
    c.auth = auth;
    c.links = usize::from(args.links);
    c.more_urls = more_urls;
    c.heartbeat = args.heartbeat_interval_seconds;
    c.reconnect_delay = args.reconnect_delay_seconds;
    c.max_reconnect_delay = args.max_reconnect_delay_seconds;
    c.allow = AllowList::new(args.allow);
    c.connect_timeout = args.connect_timeout_seconds;
    c.drain_timeout = args.drain_timeout_seconds;
    c.map_hosts = args.map_hosts.into_iter().collect();
    c.routes = args.routes;
    c.allow_link_local = args.allow_link_local;
    c.allow_loopback = args.allow_loopback;
    c.health_listen = args.health_listen.addr.0;
    let (roots, given) = match &args.egress_ca_file {
        Some(f) => burrow_transport::tls::certs_from_pem_file(f)?,
        None => match system_roots() {
            Ok(ServerTrust::Roots(r)) => (r, Vec::new()),
            _ => (Arc::new(rustls::RootCertStore::empty()), Vec::new()),
        },
    };
    c.app_tls = Some(burrow_agent::AppTls::new(roots, given)?);
    Ok(c)
}

/// Key-pair settings from Octopus Connection Agent's variables, checked now so a typo is a
/// start-up error, not a retry loop.
fn key_pair_auth(
    args: KeyPairArgs,
    url: Option<&TunnelUrl>,
    identity: Option<Arc<LiveIdentity>>,
    trust: &ServerTrust,
) -> Result<burrow_agent::KeyPairAuth> {
    let client_id = args.client_id.unwrap_or_default();
    let audience = args
        .api_audience
        .context("API_AUDIENCE is not set: use the value `burrow register` printed")?;
    let pem = match (args.private_key_pem, args.private_key_pem_path) {
        (Some(p), _) => p,
        (None, Some(path)) => std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read AUTH_SERVER_PRIVATE_KEY_PEM_PATH {}",
                path.display()
            )
        })?,
        (None, None) => bail!(
            "no private key: set AUTH_SERVER_PRIVATE_KEY_PEM (the PEM text) or AUTH_SERVER_PRIVATE_KEY_PEM_PATH (its file)"
        ),
    };
    // Signing once proves the key is usable, without showing it anywhere.
    burrow_auth::assertion::sign(pem.as_bytes(), &client_id, None, &audience, 0, 1)
        .map_err(|e| anyhow::anyhow!("the agent's private key: {e}"))?;
    if let Some(k) = args.key_name.as_ref().filter(|k| !valid_name(k)) {
        bail!(
            "invalid AUTH_SERVER_KEY_NAME {k:?}: use 1-200 letters, digits, '-' and '.', not only dots"
        );
    }
    let domain = match (args.auth_server_domain, url) {
        (Some(d), _) => d,
        (None, Some(u)) => u.authority.clone(),
        (None, None) => {
            bail!("AUTH_SERVER_DOMAIN is not set: use the value `burrow register` printed")
        }
    };
    let base = if domain.starts_with("https://") || domain.starts_with("http://") {
        domain
    } else {
        format!("https://{domain}")
    };
    let tls = if base.starts_with("https://") {
        Some(client_config(
            identity,
            trust,
            "the token endpoint",
            "set GATEWAY_THUMBPRINT to the thumbprint the gateway printed at start",
            burrow_transport::tls::ALPN_HTTP1,
        )?)
    } else {
        None
    };
    let server = burrow_transport::client::HttpClient::new(&base, tls, &ProxyEnv::from_env()?)?;
    Ok(burrow_agent::KeyPairAuth {
        server,
        client_id,
        audience,
        key_name: args.key_name,
        private_pem: Secret::new(pem),
        clock_offset_secs: args.clock_offset_seconds,
    })
}

/// The effective settings as `agent-info` shows them.
pub(crate) fn settings_shown(
    effective: Vec<(String, String, String)>,
) -> Vec<burrow_api::types::Setting> {
    effective
        .into_iter()
        .map(|(name, value, source)| burrow_api::types::Setting {
            name,
            value,
            source,
        })
        .collect()
}

async fn agent(args: AgentArgs, log: &LogArgs, reload: Reload) -> Result<()> {
    let (ui_args, ids) = (args.ui.clone(), args.identity.clone());
    let mut config = agent_config(args)?;
    config.settings = settings_shown(reload.0.effective.clone());
    let ui = crate::ui::prepare(&ui_args, &ids, config.identity.clone(), log_files(log)?).await?;
    let gateway = match &config.mode {
        AgentMode::Poll(d) => d.url.url.clone(),
        AgentMode::Listen { addr, .. } => format!("(listening on {addr})"),
    };
    let client_id = config
        .auth
        .as_ref()
        .map(|a| a.client_id.clone())
        .unwrap_or_default();
    // A key-pair agent without a name is named by the gateway (the name
    // registered for its client id), in its first token.
    let agent = if config.name.is_empty() {
        "(the name registered for client_id, from the gateway)".to_owned()
    } else {
        config.name.clone()
    };
    info!(version = env!("CARGO_PKG_VERSION"), %agent, %client_id, %gateway, links = config.links, "burrow agent starting");
    let agent = burrow_agent::Agent::new(config);
    if let (startup, Some(path)) = reload {
        let agent = agent.clone();
        tokio::spawn(crate::reload::watch(startup, path, AGENT_LIVE, move |p| {
            let agent = agent.clone();
            async move { reload_agent(&agent, p).await }
        }));
    }
    let stop_ui = tokio_util::sync::CancellationToken::new();
    if let Some(cfg) = ui {
        let ui = burrow_ui::Ui::bind(cfg, agent.clone()).await?;
        tokio::spawn(ui.run(stop_ui.clone()));
    }
    let out = agent.run(shutdown_signal()).await;
    stop_ui.cancel();
    out?;
    Ok(())
}

async fn demo(args: DemoArgs) -> Result<()> {
    let mut forwards = Vec::new();
    let mut allow = Vec::new();
    for f in &args.forwards {
        let (listen, target) = f
            .split_once('=')
            .with_context(|| format!("invalid --forward {f:?}: expected LISTEN=TARGET, e.g. 127.0.0.1:15432=127.0.0.1:5432"))?;
        let spec: ForwardSpec = format!("{listen}=demo:{target}").parse()?;
        if !spec.listen.ip().is_loopback() {
            bail!("demo forwards listen on loopback only; {listen} is not a loopback address");
        }
        allow.push(target.parse::<AllowRule>()?);
        forwards.push(spec);
    }
    // Everything the real thing keeps, in a directory removed at exit: the
    // SQLite store, the agent registered with a fresh P-256 key pair.
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let store = burrow_store::Store::open_in(dir.path()).await?;
    let admin = burrow_gateway::admin::bootstrap(&store, None, None)
        .await
        .map_err(anyhow::Error::msg)?
        .context("a fresh database has no admin key yet")?;
    let pair = burrow_auth::keygen::generate(burrow_auth::keygen::KeyKind::P256)?;
    let client_id = "burrow-demo".to_owned();
    let key = burrow_store::AgentKey {
        agent: "demo".into(),
        name: "demo-key".into(),
        algorithm: pair.public.algorithm.name().into(),
        bits: i64::try_from(pair.public.algorithm.bits()).unwrap_or(0),
        fingerprint: pair.public.fingerprint.clone(),
        public_pem: pair.public.pem.clone(),
        created_at: burrow_store::now_micros(),
    };
    store
        .register_agent("demo", &client_id, &key, 1, &[])
        .await?;

    let ephemeral = |name: &str| {
        LiveIdentity::load(IdentitySource::Ephemeral {
            names: vec![name.to_owned()],
        })
    };
    let (gw_id, agent_id) = (ephemeral("localhost")?, ephemeral("demo")?);
    let agent_thumbprint = agent_id.thumbprint();
    let audience = "urn:burrow:demo".to_owned();
    let mut gw_config = GatewayConfig::new(None, Some(gw_id.clone()));
    gw_config.forwards = forwards;
    gw_config.store = Some(store.clone());
    gw_config.audience = Some(audience.clone());
    gw_config.trust = Trust::new([TrustEntry {
        agent: "demo".into(),
        thumbprint: agent_id.thumbprint(),
    }]);
    let gw = Gateway::bind(gw_config, args.listen).await?;
    let tunnel = gw.tunnel_addr()?;
    let url = TunnelUrl::parse(&format!("wss://{tunnel}/tunnel"))?;
    let trust = ServerTrust::Pinned(vec![gw_id.thumbprint()]);
    let dialer = polling_dialer(url, Some(agent_id.clone()), &trust)?;
    let token_tls = client_config(
        Some(agent_id.clone()),
        &trust,
        "the token endpoint",
        "the demo pins its own gateway",
        burrow_transport::tls::ALPN_HTTP1,
    )?;
    let server = burrow_transport::client::HttpClient::new(
        &format!("https://{tunnel}"),
        Some(token_tls),
        &ProxyEnv::default(),
    )?;
    let mut agent = AgentConfig::new(AgentMode::Poll(dialer), None, String::new());
    agent.auth = Some(burrow_agent::KeyPairAuth {
        server,
        client_id,
        audience,
        key_name: None,
        private_pem: Secret::new(pair.private_pem),
        clock_offset_secs: 0,
    });
    agent.identity = Some(agent_id);
    agent.allow = AllowList::new(allow);
    agent.reconnect_delay = Duration::from_secs(1);

    let stop = tokio_util::sync::CancellationToken::new();
    let gw_stop = stop.clone();
    let agent_stop = stop.clone();
    let gw_task = tokio::spawn(gw.run(async move { gw_stop.cancelled().await }));
    let agent_task = tokio::spawn(burrow_agent::run(agent, async move {
        agent_stop.cancelled().await
    }));
    info!(gateway = %gw_id.thumbprint(), agent = %agent_thumbprint, "demo link: wss:// with both certificates pinned; the agent authenticates with a P-256 key pair");
    for f in &args.forwards {
        info!(forward = %f, "demo forward ready: connect to the left side");
    }
    println!(
        "Demo running. Manage it from another shell while it runs:\n  CONNECT_URL=wss://{tunnel}/connect GATEWAY_THUMBPRINT={} BURROW_ADMIN_KEY={admin} burrow list-agents",
        gw_id.thumbprint()
    );
    shutdown_signal().await;
    stop.cancel();
    let _ = tokio::join!(agent_task, gw_task);
    store.close().await;
    drop(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_are_validated() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("NaN").is_err());
    }
}
