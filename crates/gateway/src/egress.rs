//! Egress by FQDN: the rules (cached from the store, pushed to agents),
//! the proxy on `:17203` that workloads use (HTTP `CONNECT`, absolute-URI
//! HTTP requests, SOCKS5 with remote name resolution), and reachability
//! checks.
//!
//! Never an open proxy: a host with no rule is refused (403 naming the
//! FQDN and the fix; SOCKS5 "not allowed"); an offline agent gives 502
//! ("host unreachable"); what the agent reports (refused, unreachable, not
//! allowed) reaches the client in words.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_mux::{MuxError, MuxStream, ResetCode, pump};
use burrow_store::FqdnRule;
use burrow_wire::egress::{AgentRule, Ports, Target, best_match, encode_rules};
use bytes::Bytes;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::State;
use crate::open::{OPEN_TIMEOUT, OpenFailure};

/// Largest HTTP request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;
/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

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
    fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let u = user.ct_eq(self.user.as_bytes());
        let p = password.ct_eq(self.password.expose().as_bytes());
        bool::from(u & p)
    }
}

/// The rules one agent gets: its FQDN rules, and the internal hosts of its
/// routes (the edge reaches them as egress targets, on the target's port).
/// Entries for one pattern are joined: the options of either, the ports of
/// both (any port if either allows any).
fn agent_rules(rules: &[FqdnRule], routes: &[burrow_store::Route], agent: &str) -> Vec<AgentRule> {
    let fqdn = rules
        .iter()
        .filter(|r| r.agent == agent)
        .map(|r| AgentRule {
            pattern: r.fqdn.clone(),
            tls: r.tls,
            insecure: r.ignore_certificate_errors,
            ports: r.ports.clone(),
        });
    let routed = routes
        .iter()
        .filter(|r| r.agent == agent)
        .filter_map(crate::edge::route_target)
        .map(|t| AgentRule {
            pattern: t.host,
            tls: t.tls,
            insecure: t.insecure,
            ports: Some(Ports::single(t.port)),
        });
    let mut joined: std::collections::BTreeMap<String, AgentRule> = Default::default();
    for r in fqdn.chain(routed) {
        match joined.get_mut(&r.pattern) {
            Some(j) => {
                j.tls |= r.tls;
                j.insecure |= r.insecure;
                j.ports = match (&j.ports, &r.ports) {
                    (Some(a), Some(b)) => Some(a.union(b)),
                    _ => None,
                };
            }
            None => {
                joined.insert(r.pattern.clone(), r);
            }
        }
    }
    joined.into_values().collect()
}

/// Sends `agent` its rules on every live link (or only on `session`).
pub(crate) async fn push(state: &State, agent: &str, only: Option<&burrow_mux::Session>) {
    let rules = state
        .rules
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let routes = state
        .routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let body = Bytes::from(encode_rules(&agent_rules(&rules, &routes, agent)));
    let sessions: Vec<burrow_mux::Session> = match only {
        Some(s) => vec![s.clone()],
        None => state
            .registry
            .links(agent)
            .into_iter()
            .map(|l| l.session)
            .collect(),
    };
    for s in sessions {
        let _ = s
            .send_control(burrow_wire::control::RULES, body.clone())
            .await;
    }
}

/// Re-reads the rules and routes; pushes changed lists to the agents they
/// concern. Returns false if the store could not be read (caches stay).
pub(crate) async fn reload(state: &State) -> bool {
    let Some(store) = &state.config.store else {
        return true;
    };
    let (fresh, mut fresh_routes) = match tokio::try_join!(store.fqdn_rules(), store.routes()) {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "FQDN rules and routes not reloaded");
            return false;
        }
    };
    // A route stored before the gateway had this name (an older version,
    // a new certificate or BURROW_GATEWAY_NAMES entry) is never served.
    let own = &state.config.own_names;
    let (shadowed, kept): (Vec<_>, Vec<_>) = fresh_routes
        .into_iter()
        .partition(|r| own.contains(&r.hostname));
    fresh_routes = kept;
    let before = state
        .shadowed_routes
        .swap(shadowed.len(), std::sync::atomic::Ordering::Relaxed);
    if before != shadowed.len() {
        for r in &shadowed {
            warn!(hostname = %r.hostname, agent = %r.agent, "route ignored: it is one of this gateway's own names (remove it with `burrow remove-route`)");
        }
    }
    let (old, old_routes) = {
        let mut cache = state.rules.write().unwrap_or_else(|p| p.into_inner());
        let mut rcache = state.routes.write().unwrap_or_else(|p| p.into_inner());
        if **cache == fresh && **rcache == fresh_routes {
            return true;
        }
        (
            std::mem::replace(&mut *cache, Arc::new(fresh.clone())),
            std::mem::replace(&mut *rcache, Arc::new(fresh_routes.clone())),
        )
    };
    if *old_routes != fresh_routes {
        state.caddy_kick.notify_one();
    }
    let mut agents: Vec<&str> = old
        .iter()
        .chain(fresh.iter())
        .map(|r| r.agent.as_str())
        .chain(
            old_routes
                .iter()
                .chain(fresh_routes.iter())
                .map(|r| r.agent.as_str()),
        )
        .collect();
    agents.sort_unstable();
    agents.dedup();
    for a in agents {
        let now = agent_rules(&fresh, &fresh_routes, a);
        if agent_rules(&old, &old_routes, a) != now {
            info!(agent = %a, rules = now.len(), "FQDN rules or routes changed; sent to the agent");
            push(state, a, None).await;
        }
    }
    true
}

/// Why the proxy could not open a stream for a client.
#[derive(Debug)]
enum Refusal {
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
        code: ResetCode,
    },
    /// The link failed or the agent took too long.
    Failed { host: String, why: String },
}

impl Refusal {
    fn http(&self) -> (u16, &'static str, String) {
        match self {
            Refusal::NoRule(h) => (
                403,
                "Forbidden",
                format!(
                    "burrow: no FQDN rule for {h}: this gateway is not an open proxy. Route {h} through an agent with: burrow add-fqdn --agent-name AGENT --fqdn {h}\n"
                ),
            ),
            Refusal::Port {
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
            Refusal::Offline { host, agent } => (
                502,
                "Bad Gateway",
                format!(
                    "burrow: agent {agent}, which reaches {host}, is offline (no live link): the tunnel is down\n"
                ),
            ),
            Refusal::Agent { host, agent, code } => {
                let why = match code {
                    ResetCode::Refused => format!("{host} refused the connection (agent {agent})"),
                    ResetCode::NotAllowed => format!(
                        "agent {agent} refused to connect {host}: its rules do not allow it, or it resolves to a link-local or metadata address"
                    ),
                    ResetCode::Unreachable => format!(
                        "agent {agent} cannot reach {host}: name resolution, network, timeout or TLS failed (the agent's log says which)"
                    ),
                    other => format!("agent {agent} could not connect {host} ({other:?})"),
                };
                let status = if *code == ResetCode::NotAllowed {
                    403
                } else {
                    502
                };
                let text = if status == 403 {
                    "Forbidden"
                } else {
                    "Bad Gateway"
                };
                (status, text, format!("burrow: {why}\n"))
            }
            Refusal::Failed { host, why } => {
                (502, "Bad Gateway", format!("burrow: {host}: {why}\n"))
            }
        }
    }

    /// SOCKS5 reply code (RFC 1928).
    fn socks(&self) -> u8 {
        match self {
            Refusal::NoRule(_) | Refusal::Port { .. } => 0x02,
            Refusal::Offline { .. } => 0x04,
            Refusal::Agent {
                code: ResetCode::NotAllowed,
                ..
            } => 0x02,
            Refusal::Agent {
                code: ResetCode::Refused,
                ..
            } => 0x05,
            Refusal::Agent {
                code: ResetCode::Unreachable,
                ..
            } => 0x04,
            Refusal::Agent { .. } | Refusal::Failed { .. } => 0x01,
        }
    }
}

/// Finds the rule, picks the agent's link, opens the stream and waits for
/// the agent to connect the application.
async fn open(
    state: &State,
    host: &str,
    port: u16,
    http_origination: bool,
) -> Result<(MuxStream, String), Refusal> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rule = {
        let rules = state.rules.read().unwrap_or_else(|p| p.into_inner());
        best_match(rules.iter().map(|r| (r.fqdn.as_str(), r)), &host).map(|(_, r)| r.clone())
    };
    let Some(rule) = rule else {
        return Err(Refusal::NoRule(host));
    };
    if let Some(allowed) = rule.ports.as_ref().filter(|p| !p.allows(port)) {
        return Err(Refusal::Port {
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
    match crate::open::open(&state.registry, &rule.agent, &target).await {
        Ok(stream) => Ok((stream, rule.agent.clone())),
        Err(OpenFailure::Offline) => Err(Refusal::Offline {
            host,
            agent: rule.agent.clone(),
        }),
        Err(OpenFailure::Reset(code)) => Err(Refusal::Agent {
            host,
            agent: rule.agent.clone(),
            code,
        }),
        Err(OpenFailure::Timeout) => Err(Refusal::Failed {
            host,
            why: format!(
                "agent {} did not connect within {OPEN_TIMEOUT:?}",
                rule.agent
            ),
        }),
        Err(OpenFailure::Failed(why)) => Err(Refusal::Failed { host, why }),
    }
}

pub(crate) async fn serve(state: Arc<State>, listener: TcpListener) {
    let limiter = crate::limits::Limiter::new("egress proxy", state.config.proxy_caps);
    loop {
        let Some((tcp, client, permit)) = crate::limits::accept(&state, &listener, &limiter).await
        else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let state2 = state.clone();
        state.streams.spawn(async move {
            let _permit = permit;
            let mut tcp = tcp;
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(REQUEST_TIMEOUT, tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return,
            };
            buf.truncate(n);
            if buf[0] == 5 {
                socks5(&state2, Buffered::new(tcp, buf), client).await;
            } else {
                http(&state2, tcp, buf, client).await;
            }
        });
    }
}

async fn reply(tcp: &mut TcpStream, status: u16, reason: &str, extra: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Reads up to the end of the request head; returns (head length, buffer).
async fn read_head(tcp: &mut TcpStream, mut buf: Vec<u8>) -> Option<(usize, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((i + 4, buf));
        }
        if buf.len() >= MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn basic_ok(auth: &ProxyAuth, header: Option<&[u8]>) -> bool {
    use base64::Engine as _;
    let Some(v) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let Some(b64) = v.trim().strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let (u, p) = match raw.iter().position(|b| *b == b':') {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => return false,
    };
    auth.check(u, p)
}

/// Splits `host:port` (IPv6 in brackets); `None` without a valid port.
fn host_port(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port?,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok().filter(|p: &u16| *p > 0)?)),
        None => Some((authority.to_owned(), default_port?)),
    }
}

async fn http(state: &State, mut tcp: TcpStream, first: Vec<u8>, client: SocketAddr) {
    let Some((head_len, buf)) = read_head(&mut tcp, first).await else {
        reply(
            &mut tcp,
            400,
            "Bad Request",
            "",
            "burrow: incomplete or oversized request head\n",
        )
        .await;
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(
        req.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        reply(
            &mut tcp,
            400,
            "Bad Request",
            "",
            "burrow: malformed HTTP request\n",
        )
        .await;
        return;
    }
    let method = req.method.unwrap_or("").to_owned();
    let target = req.path.unwrap_or("").to_owned();
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if let Some(auth) = &state.config.proxy_auth {
        let given = header("proxy-authorization");
        // A request without credentials is the usual first leg of the
        // challenge, not a guess: it is not counted.
        let refused = match given {
            None => Some("proxy credentials required"),
            Some(_) => match state.throttles.proxy.attempt(client.ip()).await {
                Err(_) => Some("too many wrong proxy credentials from this address: retry later"),
                Ok(attempt) if basic_ok(auth, given) => {
                    attempt.succeeded();
                    None
                }
                Ok(attempt) => {
                    attempt.failed("wrong proxy credentials (HTTP)");
                    Some("wrong proxy credentials")
                }
            },
        };
        if let Some(why) = refused {
            reply(
                &mut tcp,
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"burrow\"\r\n",
                &format!("burrow: {why}\n"),
            )
            .await;
            return;
        }
    }
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let (host, port, rewritten) = if connect {
        let Some((h, p)) = host_port(&target, None) else {
            reply(
                &mut tcp,
                400,
                "Bad Request",
                "",
                "burrow: CONNECT needs host:port\n",
            )
            .await;
            return;
        };
        (h, p, None)
    } else {
        let Ok(uri) = target.parse::<http::Uri>() else {
            reply(
                &mut tcp,
                400,
                "Bad Request",
                "",
                "burrow: malformed request target\n",
            )
            .await;
            return;
        };
        match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(a)) => {
                let Some((h, p)) = host_port(a.as_str(), Some(80)) else {
                    reply(
                        &mut tcp,
                        400,
                        "Bad Request",
                        "",
                        "burrow: bad host in request target\n",
                    )
                    .await;
                    return;
                };
                if req
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("host"))
                    .count()
                    > 1
                {
                    reply(
                        &mut tcp,
                        400,
                        "Bad Request",
                        "",
                        "burrow: more than one Host field\n",
                    )
                    .await;
                    return;
                }
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                // The URI's authority is the host (RFC 9112 §3.2.2): the
                // client's Host field, whatever it says, is replaced.
                let authority = a.as_str().rsplit('@').next().unwrap_or_default();
                let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
                for h in req.headers.iter() {
                    let n = h.name.to_ascii_lowercase();
                    if matches!(
                        n.as_str(),
                        "host"
                            | "proxy-authorization"
                            | "proxy-connection"
                            | "connection"
                            | "keep-alive"
                    ) {
                        continue;
                    }
                    head.push_str(h.name);
                    head.push_str(": ");
                    head.push_str(&String::from_utf8_lossy(h.value));
                    head.push_str("\r\n");
                }
                head.push_str("Connection: close\r\n\r\n");
                (h, p, Some(head))
            }
            (Some(_), _) => {
                reply(
                    &mut tcp,
                    400,
                    "Bad Request",
                    "",
                    "burrow: only http:// URLs are proxied as requests; use CONNECT for https\n",
                )
                .await;
                return;
            }
            _ => {
                reply(&mut tcp, 400, "Bad Request", "", "burrow: this is an egress proxy: send CONNECT host:port or an absolute http:// URL\n").await;
                return;
            }
        }
    };
    // TLS origination applies to plain-HTTP requests for a rule marked so,
    // to port 443 unless the URL names one.
    let explicit_port = !connect
        && target
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.port_u16())
            .is_some();
    let origination = rewritten.is_some();
    let port = if origination && !explicit_port && rule_tls(state, &host) {
        443
    } else {
        port
    };
    let (stream, agent) = match open(state, &host, port, origination).await {
        Ok(s) => s,
        Err(r) => {
            let (status, reason, body) = r.http();
            info!(%client, %host, port, status, reason = %body.trim(), "proxy request refused");
            reply(&mut tcp, status, reason, "", &body).await;
            return;
        }
    };
    debug!(%client, %host, port, connect, "proxy stream open");
    let rest = Bytes::copy_from_slice(&buf[head_len..]);
    match rewritten {
        None => {
            if tcp
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_err()
            {
                stream.reset(ResetCode::Cancelled);
                return;
            }
        }
        Some(head) => {
            if stream.send(Bytes::from(head)).await.is_err() {
                return;
            }
        }
    }
    if !rest.is_empty() && stream.send(rest).await.is_err() {
        return;
    }
    let started = (burrow_store::now_micros(), std::time::Instant::now());
    let out = pump(stream, tcp).await;
    debug!(%client, %host, up = out.tcp_to_stream, down = out.stream_to_tcp, error = ?out.error, "proxy stream closed");
    record(state, started, agent, client, &host, port, &out);
}

/// The audit record of one egress stream.
fn record(
    state: &State,
    (at, started): (i64, std::time::Instant),
    agent: String,
    client: SocketAddr,
    host: &str,
    port: u16,
    out: &burrow_mux::PumpOutcome,
) {
    state.record(burrow_store::Traffic {
        at,
        kind: burrow_store::TrafficKind::Egress,
        agent,
        client: client.to_string(),
        target: format!("{host}:{port}"),
        bytes_in: i64::try_from(out.tcp_to_stream).unwrap_or(i64::MAX),
        bytes_out: i64::try_from(out.stream_to_tcp).unwrap_or(i64::MAX),
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        ..burrow_store::Traffic::default()
    });
}

fn rule_tls(state: &State, host: &str) -> bool {
    let rules = state.rules.read().unwrap_or_else(|p| p.into_inner());
    best_match(
        rules.iter().map(|r| (r.fqdn.as_str(), r)),
        &host.to_ascii_lowercase(),
    )
    .is_some_and(|(_, r)| r.tls)
}

async fn socks_reply(tcp: &mut TcpStream, code: u8) {
    let _ = tcp.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await;
}

/// Writes to the connection under a [`Buffered`].
async fn send(b: &mut Buffered, data: &[u8]) -> std::io::Result<()> {
    b.tcp.write_all(data).await
}

/// A connection with bytes already read off it, served first.
struct Buffered {
    tcp: TcpStream,
    pending: Vec<u8>,
    at: usize,
}

impl Buffered {
    fn new(tcp: TcpStream, pending: Vec<u8>) -> Self {
        Buffered {
            tcp,
            pending,
            at: 0,
        }
    }

    /// The connection, and what was buffered but not yet used (a client
    /// that sent data before the reply).
    fn into_parts(self) -> (TcpStream, Bytes) {
        let rest = Bytes::copy_from_slice(&self.pending[self.at..]);
        (self.tcp, rest)
    }
}

async fn read_exact(b: &mut Buffered, buf: &mut [u8]) -> Option<()> {
    let from_pending = (b.pending.len() - b.at).min(buf.len());
    buf[..from_pending].copy_from_slice(&b.pending[b.at..b.at + from_pending]);
    b.at += from_pending;
    if from_pending < buf.len() {
        tokio::time::timeout(REQUEST_TIMEOUT, b.tcp.read_exact(&mut buf[from_pending..]))
            .await
            .ok()?
            .ok()?;
    }
    Some(())
}

/// SOCKS5 (RFC 1928), CONNECT only, names resolved by the agent; user and
/// password (RFC 1929) when the proxy has credentials.
async fn socks5(state: &State, mut tcp: Buffered, client: SocketAddr) {
    let mut hdr = [0u8; 2];
    if read_exact(&mut tcp, &mut hdr).await.is_none() {
        return;
    }
    let mut methods = vec![0u8; usize::from(hdr[1])];
    if read_exact(&mut tcp, &mut methods).await.is_none() {
        return;
    }
    let want = if state.config.proxy_auth.is_some() {
        2
    } else {
        0
    };
    if !methods.contains(&want) {
        let _ = send(&mut tcp, &[5, 0xFF]).await;
        info!(%client, "SOCKS5 client refused: no acceptable authentication method");
        return;
    }
    if send(&mut tcp, &[5, want]).await.is_err() {
        return;
    }
    if let Some(auth) = &state.config.proxy_auth {
        let mut v = [0u8; 2];
        if read_exact(&mut tcp, &mut v).await.is_none() {
            return;
        }
        let mut user = vec![0u8; usize::from(v[1])];
        let mut plen = [0u8; 1];
        if read_exact(&mut tcp, &mut user).await.is_none()
            || read_exact(&mut tcp, &mut plen).await.is_none()
        {
            return;
        }
        let mut pass = vec![0u8; usize::from(plen[0])];
        if read_exact(&mut tcp, &mut pass).await.is_none() {
            return;
        }
        let Ok(attempt) = state.throttles.proxy.attempt(client.ip()).await else {
            let _ = send(&mut tcp, &[1, 1]).await;
            return;
        };
        if !auth.check(&user, &pass) {
            let _ = send(&mut tcp, &[1, 1]).await;
            attempt.failed("wrong proxy credentials (SOCKS5)");
            return;
        }
        attempt.succeeded();
        if send(&mut tcp, &[1, 0]).await.is_err() {
            return;
        }
    }
    let mut req = [0u8; 4];
    if read_exact(&mut tcp, &mut req).await.is_none() {
        return;
    }
    if req[0] != 5 {
        return;
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            if read_exact(&mut tcp, &mut a).await.is_none() {
                return;
            }
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            if read_exact(&mut tcp, &mut a).await.is_none() {
                return;
            }
            std::net::Ipv6Addr::from(a).to_string()
        }
        3 => {
            let mut n = [0u8; 1];
            if read_exact(&mut tcp, &mut n).await.is_none() {
                return;
            }
            let mut name = vec![0u8; usize::from(n[0])];
            if read_exact(&mut tcp, &mut name).await.is_none() {
                return;
            }
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            socks_reply(&mut tcp.tcp, 0x08).await;
            return;
        }
    };
    let mut p = [0u8; 2];
    if read_exact(&mut tcp, &mut p).await.is_none() {
        return;
    }
    let port = u16::from_be_bytes(p);
    if req[1] != 1 {
        socks_reply(&mut tcp.tcp, 0x07).await;
        return;
    }
    let (stream, agent) = match open(state, &host, port, false).await {
        Ok(s) => s,
        Err(r) => {
            let (_, _, why) = r.http();
            info!(%client, %host, port, reason = %why.trim(), "SOCKS5 request refused");
            socks_reply(&mut tcp.tcp, r.socks()).await;
            return;
        }
    };
    socks_reply(&mut tcp.tcp, 0).await;
    let (tcp, rest) = tcp.into_parts();
    if !rest.is_empty() && stream.send(rest).await.is_err() {
        return;
    }
    let started = (burrow_store::now_micros(), std::time::Instant::now());
    let out = pump(stream, tcp).await;
    debug!(%client, %host, up = out.tcp_to_stream, down = out.stream_to_tcp, error = ?out.error, "SOCKS5 stream closed");
    record(state, started, agent, client, &host, port, &out);
}

/// The port a check probes when the rule names none: 443, or the rule's
/// lowest allowed port if 443 is not allowed.
pub(crate) fn default_check_port(ports: Option<&Ports>) -> u16 {
    match ports {
        Some(p) if !p.allows(443) => p.first(),
        _ => 443,
    }
}

/// Result of a reachability check for one rule.
pub(crate) async fn check(state: &State, rule: &FqdnRule) -> String {
    if rule.fqdn.starts_with("*.") {
        return "skipped: a wildcard rule names no host to check".into();
    }
    let port = rule
        .check_port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| default_check_port(rule.ports.as_ref()));
    let target = Target {
        host: rule.fqdn.clone(),
        port,
        tls: rule.tls || rule.check_tls || port == 443,
        insecure: rule.ignore_certificate_errors,
        check: true,
        proxy: None,
    };
    let Some(session) = state.registry.pick(&rule.agent) else {
        return format!("offline: agent {} has no live link", rule.agent);
    };
    let stream = match session.open_with_ack(&target.encode()).await {
        Ok(s) => s,
        Err(e) => return format!("failed: {e}"),
    };
    let read = async {
        stream.opened().await?;
        stream.finish().await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.recv().await? {
            out.extend_from_slice(&chunk);
            if out.len() > 4096 {
                break;
            }
        }
        Ok::<_, MuxError>(String::from_utf8_lossy(&out).trim().to_owned())
    };
    match tokio::time::timeout(OPEN_TIMEOUT + Duration::from_secs(5), read).await {
        Ok(Ok(line)) if !line.is_empty() => line,
        Ok(Ok(_)) => "failed: the agent reported nothing (an older agent?)".into(),
        Ok(Err(MuxError::Reset(ResetCode::NotAllowed))) => {
            "not-allowed: the agent refused the check".into()
        }
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => "timeout: the agent did not answer".into(),
    }
}
