//! Burrow's admin API (`/api/v1` on the gateway's tunnel port), typed at
//! both ends: the gateway parses requests into an [`Endpoint`] and answers
//! with the [`types`]; the `burrow` CLI builds the same [`Endpoint`] and
//! reads the same types back. [`openapi::document`] describes every
//! endpoint as OpenAPI 3.1 (`docs/api.json`, held against the server by a
//! test).
//!
//! Names in paths are checked as they are when created ([`validate`]);
//! every query parameter is checked, and an unknown one is refused, with a
//! 400 that names it.

#![forbid(unsafe_code)]

pub mod link;
pub mod openapi;
pub mod types;
pub mod validate;

use std::collections::BTreeMap;

pub use validate::Invalid;

/// Where the API lives.
pub const PREFIX: &str = "/api/v1";

/// `GET /traffic` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficQuery {
    /// `http`, `egress` or `forward`.
    pub kind: Option<String>,
    /// Records of this agent.
    pub agent: Option<String>,
    /// Records for this host (HTTP).
    pub host: Option<String>,
    /// Records with this status.
    pub status: Option<i64>,
    /// Records at or after this time (µs).
    pub since: Option<i64>,
    /// Records before this time (µs).
    pub until: Option<i64>,
    /// Most records (1-1000, default 100).
    pub limit: Option<i64>,
    /// Records skipped (0-100000).
    pub offset: Option<i64>,
}

/// Most records one traffic page holds.
pub const MAX_TRAFFIC_LIMIT: i64 = 1000;
/// Deepest traffic offset: page further back with `until`.
pub const MAX_TRAFFIC_OFFSET: i64 = 100_000;

/// One admin API call: what it acts on, with its path and query checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /agents`: [`Vec<types::Agent>`].
    ListAgents,
    /// `POST /agents` with [`types::NewAgent`]: [`types::Registered`].
    Register,
    /// `DELETE /agents/{agent}`: [`types::Unregistered`].
    Unregister {
        /// The agent.
        agent: String,
    },
    /// `GET /agents/{agent}/keys`: [`Vec<types::Key>`].
    ListKeys {
        /// The agent.
        agent: String,
    },
    /// `POST /agents/{agent}/keys` with [`types::NewKey`]: [`types::Key`].
    AddKey {
        /// The agent.
        agent: String,
    },
    /// `DELETE /agents/{agent}/keys/{key}[?force=true]`: [`types::KeyRemoved`].
    RemoveKey {
        /// The agent.
        agent: String,
        /// The key.
        key: String,
        /// Remove the agent's last key too.
        force: bool,
    },
    /// `GET /fqdn-rules[?check=true]`: [`Vec<types::Rule>`].
    ListRules {
        /// Run each rule's reachability check.
        check: bool,
    },
    /// `PUT /fqdn-rules/{fqdn}` with [`types::RuleRequest`]: [`types::Rule`].
    PutRule {
        /// The rule's host name or `*.domain`, lowercase.
        fqdn: String,
    },
    /// `DELETE /fqdn-rules/{fqdn}`: [`types::RuleRemoved`].
    RemoveRule {
        /// The rule, lowercase.
        fqdn: String,
    },
    /// `GET /routes`: [`Vec<types::Route>`].
    ListRoutes,
    /// `PUT /routes/{hostname}` with [`types::RouteRequest`]: [`types::Route`].
    PutRoute {
        /// The public host name, lowercase.
        hostname: String,
    },
    /// `DELETE /routes/{hostname}`: [`types::RouteRemoved`].
    RemoveRoute {
        /// The route, lowercase.
        hostname: String,
    },
    /// `GET /traffic?…`: [`types::TrafficPage`].
    Traffic(TrafficQuery),
    /// `POST /admin-keys` with [`types::NewAdminKey`]: [`types::AdminKeyCreated`].
    CreateAdminKey,
    /// `GET /admin-keys`: [`Vec<types::AdminKeyInfo>`].
    ListAdminKeys,
    /// `DELETE /admin-keys/{id}`: [`types::AdminKeyRevoked`].
    RevokeAdminKey {
        /// The key's id.
        id: String,
    },
    /// `GET /agents/{agent}/info`: [`types::AgentInfo`], asked of the agent.
    AgentInfo {
        /// The agent.
        agent: String,
    },
    /// `GET /agents/{agent}/check?target=HOST:PORT[&tls=true]`:
    /// [`types::CheckReport`], the agent's own check.
    AgentCheck {
        /// The agent.
        agent: String,
        /// `HOST:PORT`.
        target: String,
        /// Also handshake TLS and validate the certificate.
        tls: bool,
    },
    /// `GET /agents/{agent}/logs[?level=&after=&wait=&max=]`:
    /// [`types::AgentLogs`], the agent's log lines.
    AgentLogs {
        /// The agent.
        agent: String,
        /// The query.
        query: LogsQuery,
    },
}

/// `GET /agents/{agent}/logs` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsQuery {
    /// The least severe level wanted: `error`, `warn`, `info` (default),
    /// `debug` or `trace`.
    pub level: Option<String>,
    /// Only lines after this time (µs); absent: the latest lines.
    pub after: Option<i64>,
    /// With `after` and no line yet, wait up to this many seconds (0-25)
    /// for one: a live tail asks again and again.
    pub wait: Option<i64>,
    /// Most lines (1-500, default 100).
    pub max: Option<i64>,
}

/// Levels a log query may name.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

impl LogsQuery {
    fn parse(q: &BTreeMap<String, String>) -> Result<Self, Invalid> {
        only(q, &["level", "after", "wait", "max"])?;
        let level = q.get("level").map(|l| l.to_ascii_lowercase());
        if let Some(l) = &level
            && !LOG_LEVELS.contains(&l.as_str())
        {
            return Err(Invalid::bad_request(format!(
                "query parameter level: unknown level {l:?}: use {}",
                LOG_LEVELS.join(", ")
            )));
        }
        Ok(LogsQuery {
            level,
            after: number(q, "after", 0..=i64::MAX)?,
            wait: number(q, "wait", 0..=25)?,
            max: number(q, "max", 1..=500)?,
        })
    }

    fn encode(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(l) = &self.level {
            s.append_pair("level", l);
        }
        for (k, v) in [
            ("after", self.after),
            ("wait", self.wait),
            ("max", self.max),
        ] {
            if let Some(v) = v {
                s.append_pair(k, &v.to_string());
            }
        }
        s.finish()
    }
}

/// Checks a check's target: `HOST:PORT` (`[v6]:PORT`), the port 1-65535.
pub fn check_target(target: &str) -> Result<(), Invalid> {
    let bad = |why: &str| {
        Invalid::bad_request(format!(
            "target {target:?}: {why} (give HOST:PORT, e.g. git.internal:443)"
        ))
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.len() > 253 || host.contains(['/', ' ', '@', '[', ']']) {
        return Err(bad("not a host name or IP address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(bad("the port must be 1-65535")),
    }
}

/// `.` or `..`, as such or percent-encoded (`%2e`, RFC 3986 §2.3).
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

/// Query parameters, each at most once.
fn query_params(query: Option<&str>) -> Result<BTreeMap<String, String>, Invalid> {
    let mut out = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(Invalid::bad_request(format!(
                "query parameter {k} is given more than once"
            )));
        }
    }
    Ok(out)
}

/// Refuses parameters the endpoint does not take.
fn only(q: &BTreeMap<String, String>, known: &[&str]) -> Result<(), Invalid> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if known.is_empty() => Err(Invalid::bad_request(format!(
            "unknown query parameter {k}: this endpoint takes none"
        ))),
        Some(k) => Err(Invalid::bad_request(format!(
            "unknown query parameter {k}: this endpoint takes {}",
            known.join(", ")
        ))),
    }
}

fn flag(q: &BTreeMap<String, String>, name: &str) -> Result<bool, Invalid> {
    match q.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(Invalid::bad_request(format!(
            "query parameter {name} must be true or false, not {v:?}"
        ))),
    }
}

fn number(
    q: &BTreeMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, Invalid> {
    let Some(v) = q.get(name) else {
        return Ok(None);
    };
    match v.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(Invalid::bad_request(format!(
            "query parameter {name} must be a number from {} to {}, not {v:?}",
            range.start(),
            range.end()
        ))),
    }
}

impl TrafficQuery {
    fn parse(q: &BTreeMap<String, String>) -> Result<Self, Invalid> {
        only(
            q,
            &[
                "kind", "agent", "host", "status", "since", "until", "limit", "offset",
            ],
        )?;
        let kind = q.get("kind").cloned();
        if let Some(k) = &kind
            && !["http", "egress", "forward", "auth"].contains(&k.as_str())
        {
            return Err(Invalid::bad_request(format!(
                "query parameter kind: unknown traffic kind {k:?}: use http, egress, forward or auth"
            )));
        }
        let time = 0..=i64::MAX;
        let offset = number(q, "offset", 0..=MAX_TRAFFIC_OFFSET).map_err(|e| {
            Invalid::bad_request(format!("{}: page further back with until", e.message))
        })?;
        Ok(TrafficQuery {
            kind,
            agent: q.get("agent").cloned(),
            host: q.get("host").cloned(),
            status: number(q, "status", 0..=999)?,
            since: number(q, "since", time.clone())?,
            until: number(q, "until", time)?,
            limit: number(q, "limit", 1..=MAX_TRAFFIC_LIMIT)?,
            offset,
        })
    }

    fn encode(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        let nums = [
            ("status", self.status),
            ("since", self.since),
            ("until", self.until),
            ("limit", self.limit),
            ("offset", self.offset),
        ];
        for (k, v) in [
            ("kind", &self.kind),
            ("agent", &self.agent),
            ("host", &self.host),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        for (k, v) in nums {
            if let Some(v) = v {
                s.append_pair(k, &v.to_string());
            }
        }
        s.finish()
    }
}

impl Endpoint {
    /// Parses a request's method, path (with [`PREFIX`]) and query. A path
    /// no endpoint serves is a 404; a bad name or parameter a 400.
    pub fn parse(method: &str, path: &str, query: Option<&str>) -> Result<Self, Invalid> {
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return Err(Invalid::not_found());
        };
        let rest = rest.trim_end_matches('/');
        // `.` and `..` (also percent-encoded) are dot segments: a client or
        // proxy that normalises the path would act on another resource than
        // the one named, so they are refused rather than interpreted.
        if rest.split('/').any(is_dot_segment) {
            return Err(Invalid::bad_request(
                "paths with `.` or `..` segments are refused: name the resource itself",
            ));
        }
        let parts: Vec<&str> = rest.split('/').skip(1).collect();
        // Every name in the path is checked as names are when created.
        match parts.as_slice() {
            ["agents", name, ..] => validate::name("agent", name)?,
            ["fqdn-rules", fqdn] => validate::fqdn(fqdn)?,
            ["routes", hostname] => validate::route_name(hostname)?,
            _ => {}
        }
        if let ["agents", _, "keys", key] = parts.as_slice() {
            validate::name("key", key)?;
        }
        let q = query_params(query)?;
        let owned = |s: &str| s.to_owned();
        let e = match (method, parts.as_slice()) {
            ("GET", ["agents"]) => Endpoint::ListAgents,
            ("POST", ["agents"]) => Endpoint::Register,
            ("DELETE", ["agents", a]) => Endpoint::Unregister { agent: owned(a) },
            ("GET", ["agents", a, "keys"]) => Endpoint::ListKeys { agent: owned(a) },
            ("POST", ["agents", a, "keys"]) => Endpoint::AddKey { agent: owned(a) },
            ("DELETE", ["agents", a, "keys", k]) => {
                only(&q, &["force"])?;
                return Ok(Endpoint::RemoveKey {
                    agent: owned(a),
                    key: owned(k),
                    force: flag(&q, "force")?,
                });
            }
            ("GET", ["fqdn-rules"]) => {
                only(&q, &["check"])?;
                return Ok(Endpoint::ListRules {
                    check: flag(&q, "check")?,
                });
            }
            ("PUT", ["fqdn-rules", f]) => Endpoint::PutRule {
                fqdn: f.to_ascii_lowercase(),
            },
            ("DELETE", ["fqdn-rules", f]) => Endpoint::RemoveRule {
                fqdn: f.to_ascii_lowercase(),
            },
            ("GET", ["routes"]) => Endpoint::ListRoutes,
            ("PUT", ["routes", h]) => Endpoint::PutRoute {
                hostname: h.to_ascii_lowercase(),
            },
            ("DELETE", ["routes", h]) => Endpoint::RemoveRoute {
                hostname: h.to_ascii_lowercase(),
            },
            ("GET", ["traffic"]) => return Ok(Endpoint::Traffic(TrafficQuery::parse(&q)?)),
            ("POST", ["admin-keys"]) => Endpoint::CreateAdminKey,
            ("GET", ["admin-keys"]) => Endpoint::ListAdminKeys,
            ("DELETE", ["admin-keys", id]) => Endpoint::RevokeAdminKey {
                id: (*id).to_owned(),
            },
            ("GET", ["agents", a, "info"]) => Endpoint::AgentInfo { agent: owned(a) },
            ("GET", ["agents", a, "check"]) => {
                only(&q, &["target", "tls"])?;
                let target = q.get("target").ok_or_else(|| {
                    Invalid::bad_request("query parameter target (HOST:PORT) is required")
                })?;
                check_target(target)?;
                return Ok(Endpoint::AgentCheck {
                    agent: owned(a),
                    target: target.clone(),
                    tls: flag(&q, "tls")?,
                });
            }
            ("GET", ["agents", a, "logs"]) => {
                return Ok(Endpoint::AgentLogs {
                    agent: owned(a),
                    query: LogsQuery::parse(&q)?,
                });
            }
            _ => return Err(Invalid::not_found()),
        };
        only(&q, &[])?;
        Ok(e)
    }

    /// The HTTP method.
    pub fn method(&self) -> &'static str {
        self.operation().method
    }

    /// The path and query, with [`PREFIX`].
    pub fn path_and_query(&self) -> String {
        let p = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let path = match self {
            Endpoint::ListAgents | Endpoint::Register => "/agents".to_owned(),
            Endpoint::Unregister { agent } => format!("/agents/{}", p(agent)),
            Endpoint::ListKeys { agent } | Endpoint::AddKey { agent } => {
                format!("/agents/{}/keys", p(agent))
            }
            Endpoint::RemoveKey { agent, key, force } => format!(
                "/agents/{}/keys/{}{}",
                p(agent),
                p(key),
                if *force { "?force=true" } else { "" }
            ),
            Endpoint::ListRules { check } => {
                format!("/fqdn-rules{}", if *check { "?check=true" } else { "" })
            }
            Endpoint::PutRule { fqdn } | Endpoint::RemoveRule { fqdn } => {
                format!("/fqdn-rules/{}", p(fqdn))
            }
            Endpoint::ListRoutes => "/routes".to_owned(),
            Endpoint::PutRoute { hostname } | Endpoint::RemoveRoute { hostname } => {
                format!("/routes/{}", p(hostname))
            }
            Endpoint::Traffic(q) => {
                let q = q.encode();
                if q.is_empty() {
                    "/traffic".to_owned()
                } else {
                    format!("/traffic?{q}")
                }
            }
            Endpoint::CreateAdminKey | Endpoint::ListAdminKeys => "/admin-keys".to_owned(),
            Endpoint::RevokeAdminKey { id } => format!("/admin-keys/{}", p(id)),
            Endpoint::AgentInfo { agent } => format!("/agents/{}/info", p(agent)),
            Endpoint::AgentCheck { agent, target, tls } => format!(
                "/agents/{}/check?target={}{}",
                p(agent),
                p(target),
                if *tls { "&tls=true" } else { "" }
            ),
            Endpoint::AgentLogs { agent, query } => {
                let q = query.encode();
                if q.is_empty() {
                    format!("/agents/{}/logs", p(agent))
                } else {
                    format!("/agents/{}/logs?{q}", p(agent))
                }
            }
        };
        format!("{PREFIX}{path}")
    }

    /// How the endpoint is documented.
    pub fn operation(&self) -> &'static openapi::Operation {
        let id = match self {
            Endpoint::ListAgents => "listAgents",
            Endpoint::Register => "registerAgent",
            Endpoint::Unregister { .. } => "unregisterAgent",
            Endpoint::ListKeys { .. } => "listKeys",
            Endpoint::AddKey { .. } => "addKey",
            Endpoint::RemoveKey { .. } => "removeKey",
            Endpoint::ListRules { .. } => "listFqdnRules",
            Endpoint::PutRule { .. } => "putFqdnRule",
            Endpoint::RemoveRule { .. } => "removeFqdnRule",
            Endpoint::ListRoutes => "listRoutes",
            Endpoint::PutRoute { .. } => "putRoute",
            Endpoint::RemoveRoute { .. } => "removeRoute",
            Endpoint::Traffic(_) => "listTraffic",
            Endpoint::CreateAdminKey => "createAdminKey",
            Endpoint::ListAdminKeys => "listAdminKeys",
            Endpoint::RevokeAdminKey { .. } => "revokeAdminKey",
            Endpoint::AgentInfo { .. } => "agentInfo",
            Endpoint::AgentCheck { .. } => "agentCheck",
            Endpoint::AgentLogs { .. } => "agentLogs",
        };
        openapi::operation(id)
    }
}

#[cfg(test)]
mod tests;
