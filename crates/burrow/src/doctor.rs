//! `burrow doctor`: walks the whole path from where the agent runs, in
//! order, each check ok / failed / skipped with a fix in plain words:
//! configuration, the gateway's DNS, TCP (directly or through the proxy),
//! TLS and the thumbprint, clock skew, the token endpoint, a link's hello
//! and round trip, then every rule's and route's target from the agent.
//! With an admin key and `--agent-name`, from an operator's machine: the
//! agent is asked through the gateway instead.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use burrow_agent::{AgentConfig, AgentMode};
use burrow_api::Endpoint;
use burrow_api::types::{AgentInfo, CheckReport};
use burrow_transport::tls::Thumbprint;
use burrow_transport::{Scheme, TunnelUrl};
use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::AgentArgs;

/// Longest each network step may take.
const STEP: Duration = Duration::from_secs(10);
/// Client assertions are refused past this skew.
const MAX_SKEW: i64 = 60;

/// `burrow doctor` flags: the agent's own (the same variables and
/// `--config` file as `burrow run`), and how to ask through the gateway.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// From an operator's machine: ask agent --agent-name through the
    /// gateway's admin API (CONNECT_URL) with this admin key, instead of
    /// checking from here.
    #[arg(long, env = "BURROW_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// File holding that admin key.
    #[arg(long, env = "BURROW_ADMIN_KEY_FILE", conflicts_with = "admin_key")]
    pub admin_key_file: Option<std::path::PathBuf>,
    /// Print JSON for scripts instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Failed,
    Skipped,
}

/// One check.
#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Status,
    detail: String,
    fix: Option<String>,
}

/// Every check, in order.
#[derive(Debug, Default, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
}

impl Report {
    fn ok(&mut self, check: &str, detail: impl Into<String>) {
        self.push(check, Status::Ok, detail.into(), None);
    }

    fn failed(&mut self, check: &str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(check, Status::Failed, detail.into(), Some(fix.into()));
    }

    fn skipped(&mut self, check: &str, why: impl Into<String>) {
        self.push(check, Status::Skipped, why.into(), None);
    }

    fn push(&mut self, check: &str, status: Status, detail: String, fix: Option<String>) {
        self.checks.push(Check {
            check: check.to_owned(),
            status,
            detail,
            fix,
        });
    }

    fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Failed)
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok     ",
                Status::Failed => "FAILED ",
                Status::Skipped => "skipped",
            };
            out.push_str(&format!("{mark} {:<18} {}\n", c.check, c.detail));
            if let Some(f) = &c.fix {
                out.push_str(&format!("        {:<18} fix: {f}\n", ""));
            }
        }
        out.push_str(if self.ok {
            "every check passed\n"
        } else {
            "some checks failed\n"
        });
        out
    }
}

/// Runs the checks and prints them; an error when one failed (exit 1).
pub async fn run(args: DoctorArgs) -> Result<()> {
    let json = args.json;
    let admin_key = crate::secrets::value_or_file(
        args.admin_key.clone(),
        args.admin_key_file.as_deref(),
        "admin API key",
        false,
    )?;
    let mut report = match admin_key {
        Some(key) => remote(args.agent, key).await?,
        None => local(args.agent).await,
    };
    report.ok = report.passed();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    if !report.ok {
        anyhow::bail!("burrow doctor: some checks failed");
    }
    Ok(())
}

fn unix_now(offset: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    now.saturating_add(offset)
}

/// The checks from where the agent runs.
async fn local(args: AgentArgs) -> Report {
    let mut r = Report::default();
    let offset = args.key_pair.clock_offset_seconds;
    let pins = args.gateway_thumbprint.clone();
    let key_pem = args.key_pair.private_key_pem_path.clone();
    let config = match crate::cli::agent_config(args) {
        Ok(c) => c,
        Err(e) => {
            r.failed(
                "configuration",
                format!("{e:#}"),
                "correct the setting named above (burrow run --help lists them)",
            );
            r.skipped("the rest", "needs a configuration that checks out");
            return r;
        }
    };
    if let Some(path) = &key_pem
        && let Ok(pem) = std::fs::read_to_string(path)
        && let Some(bits) = burrow_auth::pubkey::rsa_private_bits(&pem)
        && bits < 2048
    {
        r.failed(
            "configuration",
            format!(
                "{} is a {bits}-bit RSA key; the gateway takes 2048 bits and more",
                path.display()
            ),
            "make a new pair with burrow keygen and add it with burrow add-key",
        );
        r.skipped("the rest", "needs a configuration that checks out");
        return r;
    }
    r.ok("configuration", describe(&config));
    let AgentMode::Poll(dialer) = &config.mode else {
        r.skipped("gateway", "listening mode: the gateway dials this agent");
        return r;
    };
    let url = dialer.url.clone();
    let Some(tcp) = reach_gateway(&mut r, &url, dialer.proxy()).await else {
        r.skipped("the rest", "needs a connection to the gateway");
        return r;
    };
    let Some(date) = tls_and_date(&mut r, &url, tcp, &pins).await else {
        r.skipped("the rest", "needs the gateway's TLS handshake");
        return r;
    };
    clock(&mut r, date, offset);
    let agent = burrow_agent::Agent::new(config);
    match agent.try_token().await {
        None => r.skipped(
            "token endpoint",
            "no key pair: the pre-shared key or certificate is presented",
        ),
        Some(Ok(())) => r.ok("token endpoint", "an access token was issued for this key"),
        Some(Err(e)) => {
            let text = e.to_string();
            let fix = if text.contains("future")
                || text.contains("expired")
                || text.contains("not yet")
            {
                "sync this host's clock (NTP, chrony)"
            } else if text.contains("401") || text.contains("400") {
                "the key is not (or no longer) registered: on the operator's machine, burrow add-key --agent-name NAME --key-name K --public-key FILE.pub"
            } else {
                "check AUTH_SERVER_DOMAIN and that the gateway answers"
            };
            r.failed("token endpoint", text, fix);
        }
    }
    let hello = match agent.try_hello().await {
        Ok(h) => {
            let replica = h
                .replica
                .as_deref()
                .map(|x| format!(", replica {x}"))
                .unwrap_or_default();
            r.ok(
                "link hello",
                format!("accepted by gateway version {}{replica}", h.gateway_version),
            );
            r.ok(
                "round trip",
                format!(
                    "{:.1} ms (connect, upgrade and hello)",
                    h.round_trip.as_secs_f64() * 1000.0
                ),
            );
            Some(h)
        }
        Err(e) => {
            r.failed("link hello", e, "see the reason: a wrong key or name, an unregistered agent, or a certificate the gateway does not trust");
            None
        }
    };
    let rules = hello.map(|h| h.rules).unwrap_or_default();
    let targets = targets(&mut r, &rules, &agent.routes());
    for (name, target, tls) in targets {
        let report = agent.check(&target, tls).await;
        step_report(&mut r, &name, &report);
    }
    r
}

/// What to check for each rule and route: (label, `HOST:PORT`, TLS). A
/// rule is checked on its one port, else 443, with TLS there or when it
/// originates TLS (and validates certificates); a wildcard rule names no
/// host and is said to be skipped.
fn targets(
    r: &mut Report,
    rules: &[burrow_wire::egress::AgentRule],
    routes: &[(String, String)],
) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for rule in rules {
        let label = format!("rule {}", rule.pattern);
        if rule.pattern.starts_with("*.") {
            r.skipped(&label, "a wildcard rule: no one host to check");
            continue;
        }
        let port = rule
            .ports
            .as_ref()
            .and_then(|p| p.to_string().parse::<u16>().ok())
            .unwrap_or(443);
        let tls = (rule.tls || port == 443) && !rule.insecure;
        out.push((label, format!("{}:{port}", rule.pattern), tls));
    }
    for (host, url) in routes {
        if let Some(t) = burrow_wire::egress::Target::for_internal_url(url, false) {
            out.push((
                format!("route {host}"),
                format!("{}:{}", t.host, t.port),
                t.tls,
            ));
        }
    }
    out
}

/// A target check's outcome as one line.
fn step_report(r: &mut Report, name: &str, report: &CheckReport) {
    let detail = report
        .steps
        .iter()
        .map(|s| format!("{}: {}", s.step, s.detail))
        .collect::<Vec<_>>()
        .join("; ");
    if report.ok {
        r.ok(name, format!("{} reached ({detail})", report.target));
        return;
    }
    let failed = report.steps.iter().find(|s| !s.ok);
    let fix = match failed.map(|s| s.step.as_str()) {
        Some("dns") => {
            "the agent's DNS does not know the name: fix it there, or give the agent --map-host NAME=IP"
        }
        Some("tcp") => {
            "the service does not answer there: start it, or correct the rule's host or port"
        }
        Some("tls") => {
            "the certificate is not acceptable: renew it, give the agent its CA with --egress-ca-file, or mark the rule --ignore-certificate-validation-errors"
        }
        _ => "the agent may not reach this target: correct the rule or --allow",
    };
    r.failed(name, format!("{}: {detail}", report.target), fix);
}

fn describe(c: &AgentConfig) -> String {
    let auth = if let Some(a) = &c.auth {
        format!("key pair (client id {})", a.client_id)
    } else if c.psk.is_some() {
        "pre-shared key".to_owned()
    } else {
        "certificate only".to_owned()
    };
    let name = if c.name.is_empty() {
        "(registered name)"
    } else {
        &c.name
    };
    let url = match &c.mode {
        AgentMode::Poll(d) => d.url.url.clone(),
        AgentMode::Listen { addr, .. } => format!("listening on {addr}"),
    };
    format!("agent {name}, gateway {url}, {auth}")
}

/// DNS and TCP towards the gateway, directly or through its proxy.
async fn reach_gateway(
    r: &mut Report,
    url: &TunnelUrl,
    proxy: Option<&burrow_transport::proxy::ProxyUrl>,
) -> Option<TcpStream> {
    let dns_of = match proxy {
        Some(p) => p.authority.clone(),
        None => url.authority.clone(),
    };
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(STEP, tokio::net::lookup_host(dns_of.as_str())).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                let (what, fix) = match proxy {
                    Some(_) => ("the proxy", "correct HTTPS_PROXY, or this host's DNS"),
                    None => (
                        "the gateway",
                        "correct CONNECT_URL, or this host's DNS (/etc/resolv.conf)",
                    ),
                };
                r.failed(
                    "gateway DNS",
                    format!("cannot resolve {what} {dns_of}: {e}"),
                    fix,
                );
                return None;
            }
            Err(_) => {
                r.failed(
                    "gateway DNS",
                    format!("resolving {dns_of} took over {} s", STEP.as_secs()),
                    "check this host's DNS servers",
                );
                return None;
            }
        };
    let listed: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    match proxy {
        Some(p) => r.ok(
            "gateway DNS",
            format!(
                "proxy {} is {} (the proxy resolves {})",
                p.authority,
                listed.join(", "),
                url.host
            ),
        ),
        None => r.ok(
            "gateway DNS",
            format!("{} is {}", url.host, listed.join(", ")),
        ),
    }
    match proxy {
        Some(p) => match burrow_transport::proxy::connect_via(p, &url.authority, STEP).await {
            Ok(tcp) => {
                r.ok(
                    "TCP connect",
                    format!("through proxy {} to {}", p.authority, url.authority),
                );
                Some(tcp)
            }
            Err(e) => {
                r.failed("TCP connect", format!("through proxy {}: {e}", p.authority), "start the proxy or correct HTTPS_PROXY (NO_PROXY lists hosts reached directly)");
                None
            }
        },
        None => {
            let mut last = String::new();
            for a in &addrs {
                match tokio::time::timeout(STEP, TcpStream::connect(a)).await {
                    Ok(Ok(tcp)) => {
                        r.ok("TCP connect", format!("connected to {a}"));
                        return Some(tcp);
                    }
                    Ok(Err(e)) => last = format!("{a}: {e}"),
                    Err(_) => last = format!("{a}: no answer within {} s", STEP.as_secs()),
                }
            }
            r.failed("TCP connect", last, "the gateway does not answer there: check that it runs, its port, and firewalls on the way (set HTTPS_PROXY if outbound traffic must use a proxy)");
            None
        }
    }
}

/// The TLS handshake (version, the certificate against the pin), then the
/// gateway's clock from an HTTP answer's `Date`: the gateway's time, in
/// seconds since the epoch.
async fn tls_and_date(
    r: &mut Report,
    url: &TunnelUrl,
    tcp: TcpStream,
    pins: &[Thumbprint],
) -> Option<i64> {
    if url.scheme == Scheme::Ws {
        r.skipped(
            "TLS",
            "ws:// has no TLS on the link (a TLS proxy in front carries it, if any)",
        );
        return date_of(r, tcp, &url.host).await;
    }
    let any = match burrow_agent::AppTls::new(Arc::new(rustls::RootCertStore::empty()), Vec::new())
    {
        Ok(t) => t.insecure,
        Err(e) => {
            r.failed("TLS", format!("no TLS client: {e}"), "a bug: report it");
            return None;
        }
    };
    let name = match rustls::pki_types::ServerName::try_from(url.host.clone()) {
        Ok(n) => n,
        Err(e) => {
            r.failed(
                "TLS",
                format!("{} is not a TLS server name: {e}", url.host),
                "correct CONNECT_URL",
            );
            return None;
        }
    };
    let tls = match tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(any).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            r.failed("TLS", format!("the handshake failed: {e}"), "the port answers but not with TLS: is CONNECT_URL's scheme right (wss:// or tls://; ws:// behind a TLS proxy)?");
            return None;
        }
        Err(_) => {
            r.failed(
                "TLS",
                "no handshake within 10 s",
                "something on the way holds the connection: check the proxy or load balancer",
            );
            return None;
        }
    };
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("TLS");
    let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
        r.failed(
            "TLS",
            "the gateway presented no certificate",
            "a gateway always has one: is this Burrow's port?",
        );
        return None;
    };
    let seen = Thumbprint::of_der(cert.as_ref());
    if pins.is_empty() {
        r.ok(
            "TLS",
            format!(
                "{version}; certificate {seen} (validated against the CA roots when the link dials)"
            ),
        );
    } else if pins.contains(&seen) {
        r.ok(
            "TLS",
            format!("{version}; the gateway's certificate is the pinned {seen}"),
        );
    } else {
        let pinned: Vec<String> = pins.iter().map(ToString::to_string).collect();
        r.failed(
            "TLS",
            format!("{version}; the gateway presents certificate {seen}, not the pinned {}", pinned.join(", ")),
            format!("if {seen} is your gateway's (burrow thumbprint on the gateway prints it), set GATEWAY_THUMBPRINT={seen}; otherwise something between here and the gateway presents its own certificate"),
        );
        return None;
    }
    date_of(r, tls, &url.host).await
}

/// The `Date` of the gateway's answer to `GET /healthz`.
async fn date_of<S: AsyncRead + AsyncWrite + Unpin>(
    r: &mut Report,
    mut io: S,
    host: &str,
) -> Option<i64> {
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let read = async {
        io.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let head = match tokio::time::timeout(STEP, read).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => {
            r.failed(
                "clock",
                "the gateway did not answer GET /healthz",
                "is this Burrow's tunnel port?",
            );
            return None;
        }
    };
    let date = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("date"))
            .map(|(_, v)| v.trim().to_owned())
    });
    match date.and_then(|d| httpdate::parse_http_date(&d).ok()) {
        Some(t) => Some(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        ),
        None => {
            r.failed(
                "clock",
                "the gateway's answer has no Date",
                "is this Burrow's tunnel port?",
            );
            None
        }
    }
}

fn clock(r: &mut Report, gateway: i64, offset: i64) {
    let skew = unix_now(offset) - gateway;
    let words = match skew {
        0 => "in step with the gateway's".to_owned(),
        s if s > 0 => format!("{s} s ahead of the gateway's"),
        s => format!("{} s behind the gateway's", -s),
    };
    if skew.abs() > MAX_SKEW {
        r.failed(
            "clock",
            format!(
                "this host's clock is {words}; client assertions are refused past {MAX_SKEW} s"
            ),
            "sync this host's clock (NTP, chrony, systemd-timesyncd)",
        );
    } else {
        r.ok(
            "clock",
            format!("this host's clock is {words} (within {MAX_SKEW} s)"),
        );
    }
}

/// The checks through the gateway: the agent's own answers.
async fn remote(args: AgentArgs, key: String) -> Result<Report> {
    let mut r = Report::default();
    let name = args.agent_name.clone().unwrap_or_default();
    crate::manage::check_name("agent", &name)?;
    let connect_url = args.connect_url.clone().ok_or_else(|| {
        crate::manage::UsageError(
            "set CONNECT_URL (--connect-url): the gateway whose admin API to ask".into(),
        )
    })?;
    let api = crate::manage::Api::new(&crate::manage::ApiArgs {
        connect_url: connect_url.split(',').next().unwrap_or_default().to_owned(),
        admin_key: Some(key),
        admin_key_file: None,
        gateway_thumbprint: args.gateway_thumbprint.clone(),
        ca_file: args.ca_file.clone(),
        json: false,
    })?;
    let info: AgentInfo = match api
        .call(
            &Endpoint::AgentInfo {
                agent: name.clone(),
            },
            crate::manage::NONE,
        )
        .await
    {
        Ok(i) => i,
        Err(e) => {
            r.failed("agent", format!("{e:#}"), "start the agent (or run burrow doctor where it runs to see why it does not connect)");
            return Ok(r);
        }
    };
    let up = info.links.iter().filter(|l| l.state == "connected").count();
    let detail = format!(
        "agent {name} version {}, {up} of {} links up, {}",
        info.version,
        info.links.len(),
        info.os
    );
    if up == 0 {
        r.failed(
            "agent",
            detail,
            "see each link's last failure: burrow agent-info --agent-name NAME",
        );
    } else {
        r.ok("agent", detail);
    }
    for l in &info.links {
        let replica = l.replica.clone().unwrap_or_else(|| "-".into());
        let rtt = l
            .rtt_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        r.ok(
            &format!("link {}", l.index),
            format!("{} on replica {replica}, round trip {rtt}", l.state),
        );
    }
    // `agent-info` shows each rule as its line on the link, tab as space.
    let lines: String = info
        .rules
        .iter()
        .map(|l| format!("{}\n", l.replacen(' ', "\t", 1)))
        .collect();
    let rules = burrow_wire::egress::decode_rules(lines.as_bytes());
    let routes: Vec<(String, String)> = info
        .routes
        .iter()
        .map(|r| (r.hostname.clone(), r.target.clone()))
        .collect();
    let targets = targets(&mut r, &rules, &routes);
    for (label, target, tls) in targets {
        let e = Endpoint::AgentCheck {
            agent: name.clone(),
            target: target.clone(),
            tls,
        };
        match api.call::<CheckReport>(&e, crate::manage::NONE).await {
            Ok(report) => step_report(&mut r, &label, &report),
            Err(err) => r.failed(
                &label,
                format!("{target}: {err:#}"),
                "ask again; the agent may be reconnecting",
            ),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_routes_give_one_target_each_whichever_side_reads_them() {
        let encoded = burrow_wire::egress::encode_rules(&burrow_wire::egress::decode_rules(
            b"git.internal\ttls\nsmtp.internal\tports=25\nfeed.internal\ttls,insecure\n\
              ssh.internal\tports=22,443\n*.corp.internal\t\n",
        ));
        // As agent-info shows them, then read back as the remote doctor does.
        let shown: String = encoded
            .lines()
            .map(|l| {
                format!(
                    "{}\n",
                    l.trim_end().replace('\t', " ").replacen(' ', "\t", 1)
                )
            })
            .collect();
        let rules = burrow_wire::egress::decode_rules(shown.as_bytes());
        assert_eq!(rules, burrow_wire::egress::decode_rules(encoded.as_bytes()));
        let mut r = Report::default();
        let routes = [(
            "app.example.com".to_owned(),
            "https://10.0.0.5:8443".to_owned(),
        )];
        let t = targets(&mut r, &rules, &routes);
        let want = [
            ("rule git.internal", "git.internal:443", true),
            ("rule smtp.internal", "smtp.internal:25", false),
            ("rule feed.internal", "feed.internal:443", false),
            ("rule ssh.internal", "ssh.internal:443", true),
            ("route app.example.com", "10.0.0.5:8443", true),
        ];
        let got: Vec<(&str, &str, bool)> = t
            .iter()
            .map(|(l, a, tls)| (l.as_str(), a.as_str(), *tls))
            .collect();
        assert_eq!(got, want);
        assert_eq!(r.checks.len(), 1, "the wildcard is skipped");
        assert_eq!(r.checks[0].status, Status::Skipped);
    }
}
