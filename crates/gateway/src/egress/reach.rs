//! What the egress proxy's protocols share: the narrow context they take
//! (rules, the agents' links, the audit sink, client credentials and
//! their throttle), the client credentials, and reaching a host: the rule
//! for it, its ports, the open through the rule's agent, and the refusal
//! in words (HTTP) and as a SOCKS5 reply code.

use std::net::SocketAddr;
use std::sync::Arc;

use burrow_mux::{MuxStream, ResetCode};
use burrow_wire::egress::{Ports, Target};
use subtle::ConstantTimeEq;

use crate::catalog::Catalog;
use crate::open::{OPEN_TIMEOUT, OpenFailure, Refusal};
use crate::registry::Registry;
use crate::throttle::Throttles;
use crate::traffic::AuditSink;

/// Longest a client may take to send its request.
pub(crate) const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Client credentials the proxy asks for (HTTP Basic, SOCKS5 user/pass).
#[derive(Clone)]
pub struct ProxyAuth {
    /// User name.
    pub user: String,
    /// Password.
    pub password: burrow_transport::Secret,
}

impl std::fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for ProxyAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (user, password) = s
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
            .ok_or("proxy credentials are USER:PASSWORD")?;
        Ok(ProxyAuth {
            user: user.into(),
            password: burrow_transport::Secret::new(password),
        })
    }
}

impl ProxyAuth {
    pub(crate) fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let u = user.ct_eq(self.user.as_bytes());
        let p = password.ct_eq(self.password.expose().as_bytes());
        bool::from(u & p)
    }
}

/// What the egress proxy uses of the gateway.
pub(crate) struct Proxy {
    /// FQDN rules.
    pub(crate) catalog: Arc<Catalog>,
    /// The agents' live links.
    pub(crate) links: Arc<Registry>,
    /// Where streams are recorded.
    pub(crate) audit: AuditSink,
    /// Credentials clients must present, if any.
    pub(crate) auth: Option<ProxyAuth>,
    /// Wrong credentials per client address (its `proxy` throttle).
    pub(crate) throttles: Arc<Throttles>,
}

/// Why the proxy could not open a stream for a client.
#[derive(Debug)]
pub(crate) enum NotReached {
    /// No rule for the host.
    NoRule(String),
    /// The rule does not allow the port.
    Port {
        host: String,
        port: u16,
        allowed: Ports,
    },
    /// The rule's agent has no live link.
    Offline { host: String, agent: String },
    /// The agent reported this.
    Agent {
        host: String,
        agent: String,
        refusal: Refusal,
    },
    /// The link failed or the agent took too long.
    Failed { host: String, why: String },
}

impl NotReached {
    /// The agent the rule named, if the refusal got as far as a rule.
    fn agent(&self) -> Option<&str> {
        match self {
            NotReached::Offline { agent, .. } | NotReached::Agent { agent, .. } => Some(agent),
            NotReached::NoRule(_) | NotReached::Port { .. } | NotReached::Failed { .. } => None,
        }
    }

    pub(crate) fn http(&self) -> (u16, &'static str, String) {
        match self {
            NotReached::NoRule(h)
                if h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok() =>
            {
                (
                    403,
                    "Forbidden",
                    format!(
                        "burrow: {h} is an IP address, and FQDN rules match host names only: this gateway is not an open proxy. Ask for the service by a name instead: give the agent the name with --map-host NAME={ip} and route it with: burrow add-fqdn --agent-name AGENT --fqdn NAME\n",
                        ip = h.trim_matches(['[', ']'])
                    ),
                )
            }
            NotReached::NoRule(h) => (
                403,
                "Forbidden",
                format!(
                    "burrow: no FQDN rule for {h}: this gateway is not an open proxy. Route {h} through an agent with: burrow add-fqdn --agent-name AGENT --fqdn {h}\n"
                ),
            ),
            NotReached::Port {
                host,
                port,
                allowed,
            } => (
                403,
                "Forbidden",
                format!(
                    "burrow: the FQDN rule for {host} allows ports {allowed}, not {port}. Allow it with: burrow add-fqdn --fqdn RULE --agent-name AGENT --ports {allowed},{port}\n"
                ),
            ),
            NotReached::Offline { host, agent } => (
                502,
                "Bad Gateway",
                format!(
                    "burrow: agent {agent}, which reaches {host}, is offline (no live link): the tunnel is down\n"
                ),
            ),
            NotReached::Agent {
                host,
                agent,
                refusal,
            } => {
                // The agent's words say what failed; these are for an agent
                // too old to give them.
                let (status, text, what, fallback) = match refusal.code {
                    ResetCode::NotAllowed => (
                        403,
                        "Forbidden",
                        "refused to connect",
                        "its rules do not allow it, or it resolves to a link-local or metadata address",
                    ),
                    ResetCode::TimedOut => (
                        504,
                        "Gateway Timeout",
                        "timed out connecting",
                        "no answer in time",
                    ),
                    code => (
                        502,
                        "Bad Gateway",
                        "could not connect",
                        match code {
                            ResetCode::Refused => "the connection was refused",
                            ResetCode::NameNotFound => "the name does not resolve there",
                            ResetCode::Certificate => "its TLS certificate was refused",
                            ResetCode::Tls => "TLS failed",
                            _ => {
                                "name resolution, network, timeout or TLS failed (the agent's log says which)"
                            }
                        },
                    ),
                };
                let why = refusal.or(fallback);
                (
                    status,
                    text,
                    format!("burrow: agent {agent} {what} {host}: {why}\n"),
                )
            }
            NotReached::Failed { host, why } => {
                (502, "Bad Gateway", format!("burrow: {host}: {why}\n"))
            }
        }
    }

    /// SOCKS5 reply code (RFC 1928).
    pub(crate) fn socks(&self) -> u8 {
        match self {
            NotReached::NoRule(_) | NotReached::Port { .. } => 0x02,
            NotReached::Offline { .. } => 0x04,
            NotReached::Agent { refusal, .. } => match refusal.code {
                ResetCode::NotAllowed => 0x02,
                ResetCode::Refused => 0x05,
                ResetCode::Unreachable | ResetCode::NameNotFound => 0x04,
                ResetCode::TimedOut => 0x06,
                _ => 0x01,
            },
            NotReached::Failed { .. } => 0x01,
        }
    }
}

impl Proxy {
    /// Finds the rule, picks the agent's link, opens the stream and waits for
    /// the agent to connect the application.
    pub(crate) async fn reach(
        &self,
        host: &str,
        port: u16,
        http_origination: bool,
    ) -> Result<(MuxStream, String), NotReached> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let rule = self.catalog.rule_for(&host);
        let Some(rule) = rule else {
            return Err(NotReached::NoRule(host));
        };
        if let Some(allowed) = rule.ports.as_ref().filter(|p| !p.allows(port)) {
            return Err(NotReached::Port {
                host,
                port,
                allowed: allowed.clone(),
            });
        }
        let tls = http_origination && rule.tls;
        let target = Target {
            host: host.clone(),
            port,
            tls,
            insecure: tls && rule.ignore_certificate_errors,
            check: false,
            proxy: None,
        };
        match crate::open::open(&self.links, &rule.agent, &target).await {
            Ok(stream) => Ok((stream, rule.agent.clone())),
            Err(OpenFailure::Offline) => Err(NotReached::Offline {
                host,
                agent: rule.agent.clone(),
            }),
            Err(OpenFailure::Reset(refusal)) => Err(NotReached::Agent {
                host,
                agent: rule.agent.clone(),
                refusal,
            }),
            Err(OpenFailure::Timeout) => Err(NotReached::Failed {
                host,
                why: format!(
                    "agent {} did not connect within {OPEN_TIMEOUT:?}",
                    rule.agent
                ),
            }),
            Err(OpenFailure::Failed(why)) => Err(NotReached::Failed { host, why }),
        }
    }

    /// The audit record of one egress stream; `sent` is what the client
    /// sent before the pump took over (a rewritten request head, bytes
    /// read with the request).
    pub(crate) fn record(
        &self,
        (at, started): (i64, std::time::Instant),
        agent: String,
        client: SocketAddr,
        (host, port): (&str, u16),
        sent: u64,
        out: &burrow_mux::PumpOutcome,
    ) {
        self.audit.record(burrow_store::Traffic {
            at,
            kind: burrow_store::TrafficKind::Egress,
            agent,
            client: client.to_string(),
            target: format!("{host}:{port}"),
            bytes_in: i64::try_from(out.tcp_to_stream.saturating_add(sent)).unwrap_or(i64::MAX),
            bytes_out: i64::try_from(out.stream_to_tcp).unwrap_or(i64::MAX),
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            ..burrow_store::Traffic::default()
        });
    }

    /// The audit record of a refused request: `status` the HTTP status the
    /// client got (0 for SOCKS5), `error` what it was told.
    pub(crate) fn refused(
        &self,
        client: SocketAddr,
        (host, port): (&str, u16),
        r: &NotReached,
        status: u16,
        error: &str,
    ) {
        self.audit.record(burrow_store::Traffic {
            at: burrow_store::now_micros(),
            kind: burrow_store::TrafficKind::Egress,
            agent: r.agent().unwrap_or_default().to_owned(),
            client: client.to_string(),
            target: format!("{host}:{port}"),
            status: i64::from(status),
            error: error.trim().trim_start_matches("burrow: ").to_owned(),
            ..burrow_store::Traffic::default()
        });
    }

    /// Whether the rule for `host` originates TLS.
    pub(crate) fn rule_tls(&self, host: &str) -> bool {
        self.catalog
            .rule_for(&host.to_ascii_lowercase())
            .is_some_and(|r| r.tls)
    }
}
