//! Egress streams: connections the gateway's proxy asks for by FQDN.
//!
//! The agent serves one only if the FQDN rules the gateway gave it match
//! the host (a gateway cannot make it an open proxy by accident), never to
//! a link-local or cloud metadata address (unless allowed), and can speak
//! TLS to the application itself (TLS origination) or run a reachability
//! check and report the result instead of relaying.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use burrow_api::link::{Fetched, MAX_PROBE_BODY, Mapping, Probe};
use burrow_mux::{MuxStream, ResetCode, pump};
use burrow_transport::probe;
use burrow_wire::egress::{AgentRule, Target, best_match};
use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tracing::{debug, warn};

use crate::AgentState;
use crate::metrics::Kind;

/// Is `ip` the agent host itself: loopback (127.0.0.0/8, ::1) or the
/// unspecified address (0.0.0.0, ::, which connects to this host)?
pub fn is_loopback_or_unspecified(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

/// Is `ip` link-local or a cloud metadata address (169.254.0.0/16,
/// fe80::/10, fd00:ec2::254)?
pub fn is_link_local_or_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            let metadata: std::net::Ipv6Addr =
                std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
            v6 == metadata
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// What went wrong reaching an application, as a check reports it and
/// as a refused stream tells the gateway (a code and these words).
#[derive(Debug)]
pub(crate) enum Failure {
    NotAllowed(String),
    Dns(String),
    Refused(String),
    Timeout(String),
    Unreachable(String),
    Certificate(String),
    Tls(String),
}

impl Failure {
    fn code(&self) -> ResetCode {
        match self {
            Failure::NotAllowed(_) => ResetCode::NotAllowed,
            Failure::Dns(_) => ResetCode::NameNotFound,
            Failure::Refused(_) => ResetCode::Refused,
            Failure::Timeout(_) => ResetCode::TimedOut,
            Failure::Unreachable(_) => ResetCode::Unreachable,
            Failure::Certificate(_) => ResetCode::Certificate,
            Failure::Tls(_) => ResetCode::Tls,
        }
    }

    /// What happened, in words.
    fn detail(&self) -> &str {
        match self {
            Failure::NotAllowed(d)
            | Failure::Dns(d)
            | Failure::Refused(d)
            | Failure::Timeout(d)
            | Failure::Unreachable(d)
            | Failure::Certificate(d)
            | Failure::Tls(d) => d,
        }
    }

    /// One line: `kind: detail`.
    pub(crate) fn line(&self) -> String {
        let kind = match self {
            Failure::NotAllowed(_) => "not-allowed",
            Failure::Dns(_) => "dns",
            Failure::Refused(_) => "refused",
            Failure::Timeout(_) => "timeout",
            Failure::Unreachable(_) => "unreachable",
            Failure::Certificate(_) => "certificate",
            Failure::Tls(_) => "tls",
        };
        format!("{kind}: {}", self.detail())
    }

    /// Refuses `stream` with this failure's code and words.
    pub(crate) fn refuse(&self, stream: &MuxStream) {
        stream.reset_because(self.code(), self.detail());
    }
}

pub(crate) fn rule_for(state: &AgentState, host: &str) -> Option<AgentRule> {
    let rules = state.rules.read().unwrap_or_else(|p| p.into_inner());
    best_match(rules.iter().map(|r| (r.pattern.as_str(), r)), host).map(|(_, r)| r.clone())
}

/// The addresses of `host`: the host map (`--map-host`) first, then an
/// IP literal, then DNS. The one resolver for everything the agent dials:
/// forwards, egress and routes.
pub(crate) async fn lookup(
    state: &AgentState,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Failure> {
    let host = host.trim_end_matches('.');
    let mapped = state.live().map_hosts.get(host).copied();
    let addrs: Vec<SocketAddr> = if let Some(ip) = mapped {
        vec![SocketAddr::new(ip, port)]
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        let lookup = tokio::net::lookup_host((host, port));
        match tokio::time::timeout(state.config.connect_timeout, lookup).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return Err(Failure::Dns(format!(
                    "cannot resolve {host}: {e} (give the agent its address with --map-host {host}=IP if DNS here does not know it)"
                )));
            }
            Err(_) => return Err(Failure::Dns(format!("resolving {host} timed out"))),
        }
    };
    if addrs.is_empty() {
        return Err(Failure::Dns(format!("{host} has no address")));
    }
    Ok(addrs)
}

/// Resolves ([`lookup`]), drops forbidden addresses.
pub(crate) async fn resolve(
    state: &AgentState,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Failure> {
    let addrs = lookup(state, host, port).await?;
    let forbidden = |ip: IpAddr| {
        if !state.config.allow_link_local && is_link_local_or_metadata(ip) {
            Some(
                "a link-local or cloud metadata address; the agent never connects there (--allow-link-local to override)",
            )
        } else if !state.config.allow_loopback && is_loopback_or_unspecified(ip) {
            Some(
                "the agent's own host (loopback or unspecified); the agent connects there only with --allow-loopback",
            )
        } else {
            None
        }
    };
    let (blocked, ok): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| forbidden(a.ip()).is_some());
    if ok.is_empty() {
        let (ip, why) = blocked
            .first()
            .map(|a| (a.ip().to_string(), forbidden(a.ip()).unwrap_or_default()))
            .unwrap_or_default();
        return Err(Failure::NotAllowed(format!(
            "{host} resolves to {ip}, {why}"
        )));
    }
    Ok(ok)
}

pub(crate) async fn connect(
    state: &AgentState,
    host: &str,
    addrs: &[SocketAddr],
) -> Result<TcpStream, Failure> {
    let mut last = Failure::Unreachable(format!("{host}: no address"));
    for a in addrs {
        match tokio::time::timeout(state.config.connect_timeout, TcpStream::connect(a)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Failure::Refused(format!("{host} ({a}) refused the connection"));
            }
            Ok(Err(e)) => last = Failure::Unreachable(format!("{host} ({a}): {e}")),
            Err(_) => {
                last = Failure::Timeout(format!(
                    "connecting {host} ({a}) took longer than {} s",
                    state.config.connect_timeout.as_secs()
                ));
            }
        }
    }
    Err(last)
}

pub(crate) async fn handshake(
    state: &AgentState,
    host: &str,
    insecure: bool,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let tls = state.config.app_tls.as_ref().ok_or_else(|| {
        Failure::Tls("this agent has no CA roots for applications (--egress-ca-file)".into())
    })?;
    let cfg = if insecure {
        tls.insecure.clone()
    } else {
        tls.validating.clone()
    };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| Failure::Tls(format!("{host} is not a TLS server name: {e}")))?;
    match tokio::time::timeout(
        state.config.connect_timeout,
        TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            if let Some(why) = burrow_transport::tls::cert_problem(&e) {
                return Err(Failure::Certificate(format!(
                    "{host}: {why} (or mark the rule --ignore-certificate-validation-errors)"
                )));
            }
            let cert = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            if cert {
                Err(Failure::Certificate(format!("{host}: {e}")))
            } else {
                Err(Failure::Tls(format!("{host}: {e}")))
            }
        }
        Err(_) => Err(Failure::Timeout(format!(
            "the TLS handshake with {host} took longer than {} s",
            state.config.connect_timeout.as_secs()
        ))),
    }
}

enum Connected {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Who a PROXY protocol header names as the client.
#[derive(Clone, Copy)]
enum Client {
    /// The one the gateway reported (`Target::proxy`).
    Reported,
    /// This agent itself (the inspector's own request), when the service
    /// expects a header at all.
    Agent { proxy: bool },
}

async fn reach(state: &AgentState, t: &Target, client: Client) -> Result<Connected, Failure> {
    let Some(rule) = rule_for(state, &t.host) else {
        return Err(Failure::NotAllowed(format!(
            "no FQDN rule of the gateway gives this agent {}",
            t.host
        )));
    };
    if !t.check && t.tls && !rule.tls {
        return Err(Failure::NotAllowed(format!(
            "the rule for {} does not allow TLS origination",
            t.host
        )));
    }
    if t.insecure && !rule.insecure {
        return Err(Failure::NotAllowed(format!(
            "the rule for {} does not allow skipping certificate validation",
            t.host
        )));
    }
    if let Some(p) = rule.ports.as_ref().filter(|p| !p.allows(t.port)) {
        return Err(Failure::NotAllowed(format!(
            "the rule for {} allows ports {p}, not {}",
            t.host, t.port
        )));
    }
    let addrs = resolve(state, &t.host, t.port).await?;
    let mut tcp = connect(state, &t.host, &addrs).await?;
    let _ = tcp.set_nodelay(true);
    let addrs = match client {
        Client::Reported => t.proxy,
        Client::Agent { proxy: false } => None,
        Client::Agent { proxy: true } => tcp.local_addr().ok().zip(tcp.peer_addr().ok()),
    };
    if let (Some((src, dst)), false) = (addrs, t.check) {
        use tokio::io::AsyncWriteExt as _;
        let header = burrow_wire::egress::proxy_v2_header(src, dst);
        tcp.write_all(&header).await.map_err(|e| {
            Failure::Unreachable(format!("{}: sending the PROXY header: {e}", t.host))
        })?;
    }
    if t.tls {
        return Ok(Connected::Tls(Box::new(
            handshake(state, &t.host, t.insecure, tcp).await?,
        )));
    }
    Ok(Connected::Plain(tcp))
}

/// Copies both ways between the stream and the application's TLS
/// connection, half-closing each side at its EOF. Many servers close
/// without a TLS close_notify; that counts as a clean end of the response,
/// as browsers and curl treat it.
async fn relay_tls(
    stream: MuxStream,
    tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> (std::io::Result<u64>, std::io::Result<u64>) {
    use tokio::io::AsyncWriteExt as _;
    let (mut sr, mut sw) = tokio::io::split(stream);
    let (mut tr, mut tw) = tokio::io::split(tls);
    let from_app = async {
        let n = match tokio::io::copy(&mut tr, &mut sw).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        sw.shutdown().await?;
        Ok(n)
    };
    let to_app = async {
        let n = tokio::io::copy(&mut sr, &mut tw).await?;
        tw.shutdown().await?;
        Ok(n)
    };
    tokio::join!(from_app, to_app)
}

/// Serves one egress stream.
pub(crate) async fn serve(state: Arc<AgentState>, stream: MuxStream, t: Target) {
    let result = reach(&state, &t, Client::Reported).await;
    if t.check {
        let line = match &result {
            Ok(_) => "ok".to_owned(),
            Err(f) => f.line(),
        };
        debug!(host = %t.host, port = t.port, result = %line, "reachability check");
        if stream.confirm_opened().await.is_ok() {
            let _ = stream.send(Bytes::from(format!("{line}\n"))).await;
            let _ = stream.finish().await;
            // Wait for the gateway's end, so the stream closes cleanly
            // instead of being reset (which would discard the answer).
            let _ = tokio::time::timeout(state.config.connect_timeout, async {
                while let Ok(Some(_)) = stream.recv().await {}
            })
            .await;
        }
        return;
    }
    let metrics = state.metrics.as_ref();
    let conn = match result {
        Ok(c) => c,
        Err(f) => {
            warn!(event = crate::event::EGRESS_REFUSED, host = %t.host, port = t.port, reason = %f.line(), "refused egress stream");
            if let Some(m) = metrics {
                m.failed(Kind::Egress);
            }
            f.refuse(&stream);
            return;
        }
    };
    if stream.confirm_opened().await.is_err() {
        return;
    }
    let _active = metrics.map(|m| m.active(Kind::Egress));
    let (from_gateway, to_gateway) = match conn {
        Connected::Plain(tcp) => {
            let out = pump(stream, tcp).await;
            debug!(up = out.tcp_to_stream, down = out.stream_to_tcp, error = ?out.error, "egress stream closed");
            (out.stream_to_tcp, out.tcp_to_stream)
        }
        Connected::Tls(tls) => {
            let (up, down) = relay_tls(stream, *tls).await;
            debug!(up = ?up, down = ?down, "egress TLS stream closed");
            (
                down.as_ref().map_or(0, |n| *n),
                up.as_ref().map_or(0, |n| *n),
            )
        }
    };
    if let Some(m) = metrics {
        m.carried(Kind::Egress, from_gateway, to_gateway);
    }
}

/// Fetches `probe` straight from `mapping`'s internal service, as the
/// agent reaches it for the edge (the same rules, the same TLS), for the
/// request inspector. `Host` is the internal URL's host (and port).
pub(crate) async fn inspect(state: &AgentState, mapping: &Mapping, probe: &Probe) -> Fetched {
    let via = format!("{} straight from the agent", mapping.target);
    let started = std::time::Instant::now();
    let fetching = async {
        let method = probe.check().map_err(|(_, why)| why)?;
        let t = Target::for_internal_url(&mapping.target, mapping.ignore_certificate_errors)
            .ok_or_else(|| {
                format!(
                    "{} is not an http:// or https:// URL with a host",
                    mapping.target
                )
            })?;
        let client = Client::Agent {
            proxy: mapping.proxy_protocol,
        };
        let io = match reach(state, &t, client).await.map_err(|f| f.line())? {
            Connected::Plain(tcp) => Either::Left(tcp),
            Connected::Tls(tls) => Either::Right(*tls),
        };
        probe::fetch(
            io,
            method,
            &t.http_host(),
            &probe.path,
            MAX_PROBE_BODY,
            started,
        )
        .await
    };
    probe::fetched(via, started, fetching).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_metadata_addresses_are_recognised() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                is_link_local_or_metadata(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{ip}"
            );
        }
        for ip in ["127.0.0.1", "10.0.0.5", "fd00:ec2::253", "::1", "8.8.8.8"] {
            assert!(
                !is_link_local_or_metadata(ip.parse().unwrap_or(IpAddr::from([169, 254, 0, 1]))),
                "{ip}"
            );
        }
    }

    #[test]
    fn the_agents_own_host_is_recognised() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                is_loopback_or_unspecified(ip.parse().unwrap_or(IpAddr::from([8, 8, 8, 8]))),
                "{ip}"
            );
        }
        for ip in ["10.0.0.5", "169.254.169.254", "8.8.8.8", "fe80::1"] {
            assert!(
                !is_loopback_or_unspecified(ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
                "{ip}"
            );
        }
    }

    #[tokio::test]
    async fn names_that_resolve_to_the_agents_own_host_are_refused_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let rules = vec![
            AgentRule {
                pattern: "self.test".into(),
                tls: false,
                insecure: false,
                ports: None,
            },
            AgentRule {
                pattern: "zero.test".into(),
                tls: false,
                insecure: false,
                ports: None,
            },
        ];
        for allow in [false, true] {
            let mode = crate::AgentMode::Listen {
                addr: "127.0.0.1:0".parse().expect("addr"),
                gateway: Vec::new(),
            };
            let mut config = crate::AgentConfig::new(mode, None, "edge".into());
            config.allow_loopback = allow;
            config
                .map_hosts
                .insert("self.test".into(), IpAddr::from([127, 0, 0, 1]));
            config
                .map_hosts
                .insert("zero.test".into(), IpAddr::from([0, 0, 0, 0]));
            let state = AgentState::new(config);
            *state.rules.write().expect("rules") = rules.clone();
            for host in ["self.test", "zero.test"] {
                let r = resolve(&state, host, port).await;
                if allow {
                    assert!(r.is_ok(), "{host}: {:?}", r.err().map(|f| f.line()));
                } else {
                    let why = r.err().map(|f| f.line()).unwrap_or_default();
                    assert!(
                        why.starts_with("not-allowed") && why.contains("--allow-loopback"),
                        "{host}: {why}"
                    );
                }
            }
        }
    }

    /// The agent end of a link over an in-memory pipe, and the gateway's.
    fn linked(state: &Arc<AgentState>) -> burrow_mux::Session {
        use tokio_util::codec::{FramedRead, FramedWrite};
        let (a, b) = tokio::io::duplex(256 * 1024);
        let (ar, aw) = tokio::io::split(a);
        let link = burrow_transport::Link {
            reader: Box::pin(FramedRead::new(ar, burrow_wire::FrameCodec)),
            writer: Box::pin(FramedWrite::new(aw, burrow_wire::FrameCodec)),
            peer: None,
            peer_cert: None,
        };
        let st = state.clone();
        let ack = burrow_wire::HelloAck {
            version: burrow_wire::PROTOCOL_VERSION,
            software_version: "test".into(),
            capabilities: vec![],
        };
        tokio::spawn(async move { crate::link::serve(&st, link, &ack, None).await });
        let (br, bw) = tokio::io::split(b);
        let (gw, _incoming) = burrow_mux::Session::new(
            FramedRead::new(br, burrow_wire::FrameCodec),
            FramedWrite::new(bw, burrow_wire::FrameCodec),
            burrow_mux::Config {
                dialer: false,
                heartbeat: None,
                ..burrow_mux::Config::default()
            },
        );
        gw
    }

    async fn open(
        gw: &burrow_mux::Session,
        target: &str,
    ) -> Result<MuxStream, burrow_mux::MuxError> {
        let s = gw.open_with_ack(target).await?;
        tokio::time::timeout(std::time::Duration::from_secs(10), s.opened())
            .await
            .map_err(|_| burrow_mux::MuxError::Reset(ResetCode::Cancelled))??;
        Ok(s)
    }

    #[tokio::test]
    async fn the_agent_serves_only_what_the_gateways_rules_give_it() {
        use burrow_wire::egress::{AgentRule, encode_rules};
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let echo_port = echo.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mode = crate::AgentMode::Listen {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway: Vec::new(),
        };
        let mut config = crate::AgentConfig::new(mode, None, "edge".into());
        // The echo service is on this host.
        config.allow_loopback = true;
        config
            .map_hosts
            .insert("allowed.test".into(), IpAddr::from([127, 0, 0, 1]));
        config
            .map_hosts
            .insert("meta.test".into(), IpAddr::from([169, 254, 169, 254]));
        config
            .map_hosts
            .insert("narrow.test".into(), IpAddr::from([127, 0, 0, 1]));
        let state = AgentState::new(config);
        let gw = linked(&state);
        let code = |r: Result<MuxStream, burrow_mux::MuxError>| match r {
            Err(burrow_mux::MuxError::Reset(c)) => Some(c),
            _ => None,
        };
        // Before any rules: nothing.
        let t = format!("egress:allowed.test:{echo_port}");
        assert_eq!(code(open(&gw, &t).await), Some(ResetCode::NotAllowed));
        let rules = vec![
            AgentRule {
                pattern: "allowed.test".into(),
                tls: false,
                insecure: false,
                ports: None,
            },
            AgentRule {
                pattern: "meta.test".into(),
                tls: false,
                insecure: false,
                ports: None,
            },
            AgentRule {
                pattern: "narrow.test".into(),
                tls: false,
                insecure: false,
                ports: Some(burrow_wire::egress::Ports::single(
                    echo_port.wrapping_add(1).max(1),
                )),
            },
        ];
        gw.send_control(
            burrow_wire::control::RULES,
            Bytes::from(encode_rules(&rules)),
        )
        .await
        .expect("rules");
        for _ in 0..500 {
            if state.rules.read().map(|r| r.len()).unwrap_or(0) == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // Allowed: relayed.
        let s = open(&gw, &t).await.expect("allowed");
        s.send(Bytes::from_static(b"ping")).await.expect("send");
        assert_eq!(s.recv().await.expect("recv").as_deref(), Some(&b"ping"[..]));
        // A host the rules do not name, TLS origination the rule does not
        // allow, a metadata address, a refused port, a malformed target.
        assert_eq!(
            code(open(&gw, &format!("egress:other.test:{echo_port}")).await),
            Some(ResetCode::NotAllowed)
        );
        assert_eq!(
            code(open(&gw, &format!("egress:allowed.test:{echo_port};tls")).await),
            Some(ResetCode::NotAllowed)
        );
        assert_eq!(
            code(open(&gw, "egress:meta.test:80").await),
            Some(ResetCode::NotAllowed)
        );
        // A port the rule does not list, though the host is reachable.
        assert_eq!(
            code(open(&gw, &format!("egress:narrow.test:{echo_port}")).await),
            Some(ResetCode::NotAllowed)
        );
        assert_eq!(
            code(open(&gw, &format!("egress:allowed.test:{closed}")).await),
            Some(ResetCode::Refused)
        );
        assert_eq!(
            code(open(&gw, "egress:allowed.test").await),
            Some(ResetCode::NotAllowed)
        );
        // A fixed-forward target is still governed by the (empty) allow-list.
        assert_eq!(
            code(open(&gw, &format!("127.0.0.1:{echo_port}")).await),
            Some(ResetCode::NotAllowed)
        );
        // Rules withdrawn: refused again.
        gw.send_control(burrow_wire::control::RULES, Bytes::new())
            .await
            .expect("rules");
        for _ in 0..500 {
            if state.rules.read().map(|r| r.is_empty()).unwrap_or(false) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        assert_eq!(code(open(&gw, &t).await), Some(ResetCode::NotAllowed));
    }
}
