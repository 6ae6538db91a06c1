//! Requests on the link between an agent and its gateway
//! ([`burrow_rpc`]): what each method takes and answers, shared by both
//! ends. Agent to gateway: `gateway.*`. Gateway to agent: `agent.*`.

use burrow_rpc::{Call, Follow};
use serde::{Deserialize, Serialize};

pub use crate::types::LogLine;
use crate::types::{AgentInfo, CheckReport, TrafficRecord};

/// One published route the agent keeps (a "mapping" in Octoporty's words).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The public host name (under the gateway's public domain).
    pub hostname: String,
    /// The internal URL: `http://host:port` or `https://host:port`.
    pub target: String,
    /// Skip certificate validation towards an `https://` target.
    #[serde(default)]
    pub ignore_certificate_errors: bool,
    /// Send PROXY protocol v2 to the internal service.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Published (false: kept, not served).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `gateway.mappings.sync`: every mapping the agent holds, replacing what
/// it published before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSet {
    /// The gateway host name the agent was configured with
    /// (`Agent__GatewayFqdn`): unknown hosts under its parent domain get
    /// this agent's landing page.
    pub gateway_fqdn: Option<String>,
    /// The mappings, enabled or not.
    pub mappings: Vec<Mapping>,
}

/// What became of one mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingState {
    /// The mapping's host name.
    pub hostname: String,
    /// Served at the edge now.
    pub published: bool,
    /// Why it is not, in words.
    pub problem: Option<String>,
}

/// `gateway.mappings.sync`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    /// One per mapping, in the order sent.
    pub mappings: Vec<MappingState>,
    /// The landing domain the gateway took for this agent, if any.
    pub landing_domain: Option<String>,
    /// Why the landing domain was not taken.
    pub landing_problem: Option<String>,
}

/// Replace the agent's published mappings.
pub struct SyncMappings;
impl Call for SyncMappings {
    const METHOD: &'static str = "gateway.mappings.sync";
    type Request = MappingSet;
    type Response = Synced;
}

/// `gateway.info`'s answer: the gateway as this agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayFacts {
    /// Its software version.
    pub version: String,
    /// When it started (µs since the epoch).
    pub started_at: i64,
    /// Seconds since.
    pub uptime_seconds: u64,
    /// The public domain routes live under, if it has one.
    pub public_domain: Option<String>,
    /// Whether it keeps Caddy's routes.
    pub caddy: bool,
    /// The name it knows this agent by.
    pub agent_name: String,
    /// This agent's live links there.
    pub links: usize,
}

/// Ask the gateway about itself.
pub struct GatewayInfo;
impl Call for GatewayInfo {
    const METHOD: &'static str = "gateway.info";
    type Request = ();
    type Response = GatewayFacts;
}

/// `gateway.traffic`: filters over this agent's audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficFilter {
    /// `http`, `egress` or `forward`.
    pub kind: Option<String>,
    /// Records for this host (HTTP).
    pub host: Option<String>,
    /// Records with this status.
    pub status: Option<i64>,
    /// At or after (µs).
    pub since: Option<i64>,
    /// Before (µs).
    pub until: Option<i64>,
    /// Most records (1-1000).
    pub limit: i64,
    /// Records skipped (0-100000).
    pub offset: i64,
}

/// `gateway.traffic`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficSlice {
    /// Newest first.
    pub records: Vec<TrafficRecord>,
    /// Whether older records match too.
    pub more: bool,
}

/// This agent's traffic, as the gateway recorded it.
pub struct Traffic;
impl Call for Traffic {
    const METHOD: &'static str = "gateway.traffic";
    type Request = TrafficFilter;
    type Response = TrafficSlice;
}

/// `gateway.logs`: which lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilter {
    /// The least severe level wanted (default `INFO`).
    pub level: Option<String>,
    /// Lines already logged to send first (at most 500).
    pub backlog: usize,
}

/// The gateway's log lines about this agent, then live ones.
pub struct GatewayLogs;
impl Follow for GatewayLogs {
    const METHOD: &'static str = "gateway.logs";
    type Request = LogFilter;
    type Item = LogLine;
}

/// The landing page the gateway shows for unknown hosts under this
/// agent's domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandingPage {
    /// The domain it is shown under (from the agent's gateway FQDN).
    pub domain: Option<String>,
    /// This agent's page; `None`: the gateway's own.
    pub html: Option<String>,
    /// The gateway's own page, for preview and reset.
    pub default_html: String,
}

/// Largest landing page.
pub const MAX_LANDING_HTML: usize = 256 * 1024;

/// Read the landing page.
pub struct GetLanding;
impl Call for GetLanding {
    const METHOD: &'static str = "gateway.landing.get";
    type Request = ();
    type Response = LandingPage;
}

/// Set the landing page (`None`: back to the gateway's own).
pub struct SetLanding;
impl Call for SetLanding {
    const METHOD: &'static str = "gateway.landing.set";
    type Request = Option<String>;
    type Response = LandingPage;
}

/// `gateway.caddy`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaddyView {
    /// Whether the gateway keeps Caddy's routes.
    pub enabled: bool,
    /// Caddy's Admin API, when it does.
    pub admin_url: Option<String>,
    /// The routes Burrow keeps there for this agent, as Caddy holds them.
    pub routes: Vec<serde_json::Value>,
    /// Why Caddy could not be read.
    pub problem: Option<String>,
}

/// The Caddy routes Burrow keeps for this agent.
pub struct CaddyRoutes;
impl Call for CaddyRoutes {
    const METHOD: &'static str = "gateway.caddy";
    type Request = ();
    type Response = CaddyView;
}

/// A request the inspector sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// `GET` or `HEAD`.
    pub method: String,
    /// One of this agent's mappings.
    pub hostname: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Longest path and query the inspector sends.
pub const MAX_PROBE_PATH: usize = 2048;

impl Probe {
    /// The method to send once the probe is checked: `GET` or `HEAD` (it
    /// never changes anything at the service), a path that starts with
    /// `/`, is visible ASCII (no spaces, no control characters) and at most
    /// [`MAX_PROBE_PATH`] bytes. Otherwise the field at fault and why.
    pub fn check(&self) -> Result<ProbeMethod, (&'static str, String)> {
        let method = match self.method.to_ascii_uppercase().as_str() {
            "GET" => ProbeMethod::Get,
            "HEAD" => ProbeMethod::Head,
            m => {
                return Err((
                    "method",
                    format!("method {m:?}: the inspector sends GET or HEAD"),
                ));
            }
        };
        let p = &self.path;
        let bad = |why: String| Err(("path", why));
        if !p.starts_with('/') {
            return bad("the path must start with /".into());
        }
        if p.len() > MAX_PROBE_PATH {
            return bad(format!(
                "the path is {} bytes; at most {MAX_PROBE_PATH}",
                p.len()
            ));
        }
        if !p.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(
                "the path must be visible ASCII: percent-encode spaces and other characters".into(),
            );
        }
        Ok(method)
    }
}

/// A method the inspector sends: one that asks without changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMethod {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
}

impl ProbeMethod {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMethod::Get => "GET",
            ProbeMethod::Head => "HEAD",
        }
    }
}

/// What a fetch got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetched {
    /// Where it was fetched from, in words.
    pub via: String,
    /// The status, or 0 when there was no answer.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// Time to the answer's head (ms), connecting included.
    pub head_ms: f64,
    /// Time to the end of the body kept (ms).
    pub total_ms: f64,
    /// The first [`MAX_PROBE_BODY`] bytes of the body, base64.
    pub body_base64: String,
    /// Whether the body was longer.
    pub truncated: bool,
    /// Why there was no answer.
    pub error: Option<String>,
}

impl Fetched {
    /// No answer, for `why`, after `took`.
    pub fn failed(via: String, why: String, took: std::time::Duration) -> Fetched {
        let ms = took.as_secs_f64() * 1000.0;
        Fetched {
            via,
            status: 0,
            headers: Vec::new(),
            head_ms: ms,
            total_ms: ms,
            body_base64: String::new(),
            truncated: false,
            error: Some(why),
        }
    }

    /// An answer.
    pub fn answered(
        via: String,
        status: u16,
        headers: Vec<(String, String)>,
        (head, total): (std::time::Duration, std::time::Duration),
        body: &[u8],
        truncated: bool,
    ) -> Fetched {
        use base64::Engine as _;
        Fetched {
            via,
            status,
            headers,
            head_ms: head.as_secs_f64() * 1000.0,
            total_ms: total.as_secs_f64() * 1000.0,
            body_base64: base64::engine::general_purpose::STANDARD.encode(body),
            truncated,
            error: None,
        }
    }
}

/// Body bytes the inspector keeps.
pub const MAX_PROBE_BODY: usize = 128 * 1024;

/// Fetch through the public edge, as a visitor would.
pub struct InspectEdge;
impl Call for InspectEdge {
    const METHOD: &'static str = "gateway.inspect";
    type Request = Probe;
    type Response = Fetched;
}

/// `agent.info`: the agent says what it is and holds.
pub struct AgentAbout;
impl Call for AgentAbout {
    const METHOD: &'static str = "agent.info";
    type Request = ();
    type Response = AgentInfo;
}

/// `agent.check`: what to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTarget {
    /// `HOST:PORT`.
    pub target: String,
    /// Also handshake TLS and validate the certificate.
    pub tls: bool,
}

/// The agent resolves, connects and (with TLS) handshakes with a target,
/// if its allow-list, the gateway's rules or its routes give it that
/// target.
pub struct AgentCheck;
impl Call for AgentCheck {
    const METHOD: &'static str = "agent.check";
    type Request = CheckTarget;
    type Response = CheckReport;
}

/// `agent.logs`: which lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// The least severe level wanted (default `INFO`).
    pub level: Option<String>,
    /// Only lines logged after this time (µs); `None`: the latest.
    pub after: Option<i64>,
    /// Most lines (at most [`MAX_LOG_LINES`]).
    pub max: usize,
    /// With no line to send yet, wait up to this long for one (at most
    /// [`MAX_LOG_WAIT_MS`]).
    pub wait_ms: u64,
}

/// Most lines one `agent.logs` answer holds.
pub const MAX_LOG_LINES: usize = 500;
/// Longest `agent.logs` waits for a line.
pub const MAX_LOG_WAIT_MS: u64 = 25_000;

/// The agent's recent log lines, or the next ones (a live tail, asked
/// again and again).
pub struct AgentLogTail;
impl Call for AgentLogTail {
    const METHOD: &'static str = "agent.logs";
    type Request = LogQuery;
    type Response = crate::types::AgentLogs;
}
