//! Command line: subcommands, flags with environment fallbacks, validation
//! into the libraries' typed configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burrow_agent::{AgentConfig, AllowList, AllowRule};
use burrow_gateway::{ForwardSpec, Gateway, GatewayConfig};
use burrow_transport::{Secret, TunnelUrl};
use burrow_wire::valid_name;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::info;

/// Burrow: a secure reverse tunnel.
///
/// A gateway runs on a public host; an agent inside a private network dials
/// out to it and carries TCP streams both ways over multiplexed WebSocket
/// links. No inbound firewall rule, no VPN.
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
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: the tunnel endpoint agents dial, and TCP forwards
    /// that carry connections through them.
    Gateway(GatewayArgs),
    /// Run the agent: dial the gateway and connect the targets it asks for
    /// (those the allow-list permits).
    #[command(visible_alias = "agent")]
    Run(AgentArgs),
    /// Try Burrow on one machine: a gateway on 127.0.0.1:17200 and an agent
    /// named `demo` in one process, with a fresh random key, forwarding the
    /// given ports. Nothing is exposed beyond loopback.
    Demo(DemoArgs),
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
    /// agent. Generate one with `openssl rand -base64 32`.
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

/// Gateway flags.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address of the tunnel endpoint (agents dial ws://HOST:PORT/tunnel or /connect).
    #[arg(long, env = "BURROW_LISTEN", default_value = "0.0.0.0:17200")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub psk: PskArgs,
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
}

/// Agent flags.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Gateway tunnel URL, e.g. ws://gateway.example.com:17200/tunnel.
    #[arg(long, env = "CONNECT_URL")]
    pub connect_url: String,
    /// This agent's name: 1-200 letters, digits, '-' and '.'.
    #[arg(long, env = "BURROW_AGENT_NAME")]
    pub agent_name: String,
    #[command(flatten)]
    pub psk: PskArgs,
    /// Target this agent may connect to: HOST:PORT, HOST may be * or *.domain,
    /// PORT may be *. Repeat, or separate with commas. Nothing is allowed by default.
    #[arg(long = "allow", env = "BURROW_ALLOW", value_delimiter = ',')]
    pub allow: Vec<AllowRule>,
    /// Links to keep open to the gateway.
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

fn load_psk(args: PskArgs) -> Result<Secret> {
    let raw = match (args.psk, args.psk_file) {
        (Some(v), _) => v,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the pre-shared key file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => bail!(
            "no pre-shared key: set BURROW_PSK (or --psk / --psk-file) to the same value on gateway and agent; generate one with: openssl rand -base64 32"
        ),
    };
    Ok(Secret::psk(&raw)?)
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

/// Sets up the global subscriber; logs go to stderr.
pub fn init_logging(args: &LogArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {:?}", args.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gateway(args) => gateway(args).await,
        Command::Run(args) => agent(args).await,
        Command::Demo(args) => demo(args).await,
    }
}

async fn gateway(args: GatewayArgs) -> Result<()> {
    let psk = load_psk(args.psk)?;
    let mut config = GatewayConfig::new(psk);
    config.forwards = args.forwards;
    config.heartbeat = args.heartbeat_interval_seconds;
    config.drain_timeout = args.drain_timeout_seconds;
    config.max_connections = args.max_connections;
    let gw = Gateway::bind(config, args.listen).await?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "burrow gateway starting"
    );
    gw.run(shutdown_signal()).await;
    Ok(())
}

fn agent_config(args: AgentArgs) -> Result<AgentConfig> {
    let url = TunnelUrl::parse(&args.connect_url)?;
    if !valid_name(&args.agent_name) {
        bail!(
            "invalid agent name {:?}: use 1-200 letters, digits, '-' and '.'",
            args.agent_name
        );
    }
    if args.max_reconnect_delay_seconds < args.reconnect_delay_seconds {
        bail!("MAX_RECONNECT_DELAY_SECONDS must not be below RECONNECT_DELAY_SECONDS");
    }
    let psk = load_psk(args.psk)?;
    let mut c = AgentConfig::new(url, psk, args.agent_name);
    c.links = usize::from(args.links);
    c.heartbeat = args.heartbeat_interval_seconds;
    c.reconnect_delay = args.reconnect_delay_seconds;
    c.max_reconnect_delay = args.max_reconnect_delay_seconds;
    c.allow = AllowList::new(args.allow);
    c.connect_timeout = args.connect_timeout_seconds;
    c.drain_timeout = args.drain_timeout_seconds;
    Ok(c)
}

async fn agent(args: AgentArgs) -> Result<()> {
    let config = agent_config(args)?;
    info!(version = env!("CARGO_PKG_VERSION"), agent = %config.name, gateway = %config.url.url, links = config.links, "burrow agent starting");
    burrow_agent::run(config, shutdown_signal()).await;
    Ok(())
}

async fn demo(args: DemoArgs) -> Result<()> {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let psk = Secret::psk(&base64::engine::general_purpose::STANDARD.encode(key))?;

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
    let mut gw_config = GatewayConfig::new(psk.clone());
    gw_config.forwards = forwards;
    let gw = Gateway::bind(gw_config, args.listen).await?;
    let tunnel = gw.tunnel_addr()?;
    let url = TunnelUrl::parse(&format!("ws://{tunnel}/tunnel"))?;
    let mut agent = AgentConfig::new(url, psk, "demo".into());
    agent.allow = AllowList::new(allow);
    agent.reconnect_delay = Duration::from_secs(1);

    let stop = tokio_util::sync::CancellationToken::new();
    let gw_stop = stop.clone();
    let agent_stop = stop.clone();
    let gw_task = tokio::spawn(gw.run(async move { gw_stop.cancelled().await }));
    let agent_task = tokio::spawn(burrow_agent::run(agent, async move {
        agent_stop.cancelled().await
    }));
    for f in &args.forwards {
        info!(forward = %f, "demo forward ready: connect to the left side");
    }
    shutdown_signal().await;
    stop.cancel();
    let _ = tokio::join!(agent_task, gw_task);
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

    #[test]
    fn missing_psk_says_how_to_make_one() {
        let none = PskArgs {
            psk: None,
            psk_file: None,
        };
        let e = load_psk(none).expect_err("no key").to_string();
        assert!(e.contains("openssl rand -base64 32"), "{e}");
    }
}
