//! `agent.check`: the agent resolves, connects and (with TLS) handshakes
//! with a target, step by step, and says where it failed. Only targets
//! this agent would reach anyway are checked: its allow-list, the FQDN
//! rules the gateway gave it, or its routes' internal URLs (a check is no
//! way to scan the private network).

use std::time::Instant;

use burrow_api::types::{CheckReport, CheckStep};

use crate::AgentState;
use crate::egress::{self, Failure};

/// How the agent may reach a target, if at all.
enum Reach {
    /// The allow-list names it (forwards): any address it resolves to.
    Allowed,
    /// A rule or a route gives it: not this host or link-local addresses
    /// unless the agent allows those.
    Guarded,
}

fn may_reach(state: &AgentState, host: &str, port: u16, target: &str) -> Option<(Reach, String)> {
    let live = state.live();
    if live.allow.allows(target) {
        return Some((Reach::Allowed, "in the allow-list (--allow)".into()));
    }
    if let Some(rule) = egress::rule_for(state, host)
        && rule.ports.as_ref().is_none_or(|p| p.allows(port))
    {
        return Some((Reach::Guarded, format!("FQDN rule {}", rule.pattern)));
    }
    let routed = state.mapping_set().mappings.into_iter().find(|m| {
        burrow_wire::egress::Target::for_internal_url(&m.target, false)
            .is_some_and(|t| t.host.eq_ignore_ascii_case(host) && t.port == port)
    });
    routed.map(|m| (Reach::Guarded, format!("route {}", m.hostname)))
}

/// Checks `target` (`HOST:PORT`).
pub(crate) async fn check(state: &AgentState, target: &str, tls: bool) -> CheckReport {
    let mut steps = Vec::new();
    let ok = run(state, target, tls, &mut steps).await;
    CheckReport {
        target: target.to_owned(),
        ok,
        steps,
    }
}

fn step(
    steps: &mut Vec<CheckStep>,
    name: &str,
    started: Instant,
    r: Result<String, String>,
) -> bool {
    let ok = r.is_ok();
    steps.push(CheckStep {
        step: name.to_owned(),
        ok,
        detail: r.unwrap_or_else(|e| e),
        ms: started.elapsed().as_secs_f64() * 1000.0,
    });
    ok
}

fn words(f: Failure) -> String {
    f.line()
}

async fn run(state: &AgentState, target: &str, tls: bool, steps: &mut Vec<CheckStep>) -> bool {
    let t = Instant::now();
    let parsed = crate::allow::split_host_port(target)
        .and_then(|(h, p)| Some((h.to_ascii_lowercase(), p.parse::<u16>().ok()?)))
        .filter(|(h, p)| !h.is_empty() && *p != 0);
    let Some((host, port)) = parsed else {
        return step(
            steps,
            "allowed",
            t,
            Err(format!("{target:?} is not HOST:PORT")),
        );
    };
    let Some((reach, why)) = may_reach(state, &host, port, target) else {
        return step(
            steps,
            "allowed",
            t,
            Err(format!(
                "not-allowed: this agent reaches {target} for nothing: not in its allow-list (--allow), no FQDN rule of the gateway gives it, and no route of its names it"
            )),
        );
    };
    step(steps, "allowed", t, Ok(why));
    let t = Instant::now();
    let resolved = match reach {
        Reach::Allowed => egress::lookup(state, &host, port).await,
        Reach::Guarded => egress::resolve(state, &host, port).await,
    };
    let addrs = match resolved {
        Ok(a) => a,
        Err(f) => return step(steps, "dns", t, Err(words(f))),
    };
    let listed: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    step(
        steps,
        "dns",
        t,
        Ok(format!("{host} is {}", listed.join(", "))),
    );
    let t = Instant::now();
    let tcp = match egress::connect(state, &host, &addrs).await {
        Ok(tcp) => tcp,
        Err(f) => return step(steps, "tcp", t, Err(words(f))),
    };
    let peer = tcp
        .peer_addr()
        .map_or_else(|_| host.clone(), |a| a.to_string());
    step(steps, "tcp", t, Ok(format!("connected to {peer}")));
    if !tls {
        return true;
    }
    let t = Instant::now();
    match egress::handshake(state, &host, false, tcp).await {
        Ok(s) => {
            let (_, conn) = s.get_ref();
            let version = conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS");
            let cert = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| burrow_transport::tls::describe_cert(c.as_ref()))
                .unwrap_or_default();
            step(
                steps,
                "tls",
                t,
                Ok(format!("{version}, certificate valid{cert}")),
            )
        }
        Err(f) => step(steps, "tls", t, Err(words(f))),
    }
}
