//! The gateway's settings (validated by the binary before use), the
//! listening agents it dials, and the errors of starting it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_transport::tls::LiveIdentity;
use burrow_transport::{Secret, TunnelUrl};

use crate::edge::caddy::CaddyConfig;
use crate::egress::ProxyAuth;
use crate::forward_spec::ForwardSpec;
use crate::limits::Caps;
use crate::names::OwnNames;
use crate::tokens::{TokenKeyError, TokenKeySource};
use crate::traffic::AuditConfig;
use crate::trust::Trust;

/// A listening agent the gateway dials: `NAME=tls://host:port`.
#[derive(Debug, Clone)]
pub struct AgentEndpoint {
    /// The agent's name (its hello must say the same).
    pub name: String,
    /// Where it listens.
    pub url: TunnelUrl,
}

impl std::str::FromStr for AgentEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s.split_once('=').ok_or_else(|| {
            format!("invalid agent endpoint {s:?}: expected NAME=tls://HOST:PORT")
        })?;
        if !burrow_wire::valid_name(name) {
            return Err(format!(
                "invalid agent endpoint {s:?}: agent names are 1-200 letters, digits, '-' and '.', not only dots"
            ));
        }
        let url = TunnelUrl::parse(url).map_err(|e| e.to_string())?;
        if url.scheme != burrow_transport::Scheme::Tls {
            return Err(format!(
                "invalid agent endpoint {s:?}: listening agents are dialed with tls://HOST:PORT"
            ));
        }
        Ok(AgentEndpoint {
            name: name.to_owned(),
            url,
        })
    }
}

/// Gateway settings, validated by the binary before use.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Pre-shared key agents must present, if any.
    pub psk: Option<Secret>,
    /// The gateway's certificate; `None` serves plain `ws://` (behind a TLS
    /// proxy only).
    pub tls: Option<Arc<LiveIdentity>>,
    /// Agent certificates trusted per agent name.
    pub trust: Trust,
    /// Refuse agents that present no trusted certificate, even with the key.
    pub require_agent_certificate: bool,
    /// Listening agents to dial.
    pub agent_endpoints: Vec<AgentEndpoint>,
    /// Registered agents, keys, admin keys; `None` disables the admin API.
    pub store: Option<burrow_store::Store>,
    /// Most agents that may be registered.
    pub max_agents: usize,
    /// The tunnel audience access tokens are issued for (`API_AUDIENCE`);
    /// `None` keeps the one stored on first start.
    pub audience: Option<String>,
    /// How long an access token lives.
    pub access_token_lifetime: Duration,
    /// Where the access-token signing key lives.
    pub token_key: TokenKeySource,
    /// How often live links are checked against the stored keys, so a key
    /// removed through another replica (or the database) closes its links;
    /// FQDN rules are re-read as often.
    pub revocation_check: Duration,
    /// Where the egress proxy listens (HTTP CONNECT, absolute http://,
    /// SOCKS5); `None`: no proxy.
    pub proxy_listen: Option<SocketAddr>,
    /// Credentials proxy clients must present.
    pub proxy_auth: Option<ProxyAuth>,
    /// Where the HTTP edge redirects visitors to HTTPS; `None`: not served.
    pub edge_http: Option<SocketAddr>,
    /// Where the HTTPS edge serves routes; `None`: not served.
    pub edge_https: Option<SocketAddr>,
    /// The edge's certificate (a wildcard for the public domain).
    pub edge_tls: Option<Arc<LiveIdentity>>,
    /// Routes must be under this domain (`BURROW_PUBLIC_DOMAIN`), if set.
    pub public_domain: Option<String>,
    /// The gateway's own host names, which can never be routes.
    pub own_names: OwnNames,
    /// Caddy mode: keep routes in Caddy through its Admin API.
    pub caddy: Option<CaddyConfig>,
    /// Origins browsers may call the admin API from (`*`: any).
    pub allowed_origins: Vec<String>,
    /// The traffic audit trail's queue and retention.
    pub audit: AuditConfig,
    /// Links to keep to each listening agent.
    pub links_per_endpoint: usize,
    /// First delay before redialing a listening agent; doubles per failure.
    pub reconnect_delay: Duration,
    /// Cap on that delay.
    pub max_reconnect_delay: Duration,
    /// TCP forwards to serve.
    pub forwards: Vec<ForwardSpec>,
    /// Heartbeat interval on agent links; three silent intervals drop one.
    pub heartbeat: Duration,
    /// On shutdown, how long open streams may take to finish.
    pub drain_timeout: Duration,
    /// Most forwarded connections open at once; more are refused.
    pub max_connections: usize,
    /// Caps on the tunnel endpoint's connections.
    pub tunnel_caps: Caps,
    /// Caps on each edge listener's (HTTPS, HTTP) connections.
    pub edge_caps: Caps,
    /// Caps on the egress proxy's connections.
    pub proxy_caps: Caps,
    /// Most live links one agent may hold.
    pub max_links_per_agent: usize,
    /// This replica's id among those sharing the database.
    pub replica_id: String,
    /// Where agents and other replicas reach this replica itself
    /// (`--advertise-url`); `None`: only through the shared name.
    pub advertise_url: Option<TunnelUrl>,
    /// More certificates other replicas may present on peer links (the
    /// gateway's own is always trusted).
    pub peer_trust: Vec<burrow_transport::tls::Thumbprint>,
    /// Most handshakes under way at once (agent hellos and token
    /// requests); more are told to retry (503 with `Retry-After`).
    pub max_handshakes: usize,
    /// Where `/metrics` (and the probes `/healthz`, `/ready`) are served
    /// when the gateway binds its own listeners ([`crate::Gateway::bind`];
    /// else [`crate::Listeners::with_metrics`]); `None`: no metrics are
    /// kept.
    pub metrics_listen: Option<SocketAddr>,
}

impl GatewayConfig {
    /// Settings with the documented defaults, the given key and TLS
    /// identity.
    pub fn new(psk: Option<Secret>, tls: Option<Arc<LiveIdentity>>) -> Self {
        GatewayConfig {
            psk,
            tls,
            trust: Trust::default(),
            require_agent_certificate: false,
            agent_endpoints: Vec::new(),
            store: None,
            max_agents: burrow_store::DEFAULT_MAX_AGENTS,
            audience: None,
            access_token_lifetime: Duration::from_secs(burrow_auth::access::DEFAULT_LIFETIME),
            token_key: TokenKeySource::default(),
            revocation_check: Duration::from_secs(2),
            proxy_listen: None,
            proxy_auth: None,
            edge_http: None,
            edge_https: None,
            edge_tls: None,
            public_domain: None,
            own_names: OwnNames::new(["localhost"]),
            caddy: None,
            allowed_origins: vec!["*".into()],
            audit: AuditConfig::default(),
            links_per_endpoint: 2,
            reconnect_delay: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(300),
            forwards: Vec::new(),
            heartbeat: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            tunnel_caps: Caps {
                total: 4096,
                per_address: 512,
            },
            edge_caps: Caps {
                total: 4096,
                per_address: 256,
            },
            proxy_caps: Caps {
                total: 1024,
                per_address: 256,
            },
            max_links_per_agent: 16,
            max_handshakes: 256,
            replica_id: default_replica_id(),
            advertise_url: None,
            peer_trust: Vec::new(),
            metrics_listen: None,
        }
    }
}

/// A replica id: the host name (a pod's name in Kubernetes) and four
/// random hex digits, so processes on one host differ.
pub fn default_replica_id() -> String {
    use rand::Rng as _;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| burrow_wire::valid_name(h) && h.len() < 180)
        .unwrap_or_else(|| "gateway".to_owned());
    format!("{host}-{:04x}", rand::rng().random::<u16>())
}

/// Errors starting a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] burrow_transport::tls::TlsError),
    /// The database could not provide the token settings.
    #[error("database: {0}")]
    Store(#[from] burrow_store::StoreError),
    /// The access-token key could not be had.
    #[error(transparent)]
    TokenKey(#[from] TokenKeyError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
