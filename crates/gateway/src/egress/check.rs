//! Reachability checks: the agent behind a rule resolves, connects and
//! (for TLS) handshakes with the rule's host, and says how it went.

use std::time::Duration;

use burrow_mux::{MuxError, ResetCode};
use burrow_store::FqdnRule;
use burrow_wire::egress::{Ports, Target};

use crate::open::{OPEN_TIMEOUT, OpenFailure};
use crate::registry::Registry;

/// The port a check probes when the rule names none: 443, or the rule's
/// lowest allowed port if 443 is not allowed.
pub(crate) fn default_check_port(ports: Option<&Ports>) -> u16 {
    match ports {
        Some(p) if !p.allows(443) => p.first(),
        _ => 443,
    }
}

/// Result of a reachability check for one rule, in one line.
pub(crate) async fn check(links: &Registry, rule: &FqdnRule) -> String {
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
    let stream = match crate::open::open(links, &rule.agent, &target).await {
        Ok(s) => s,
        Err(OpenFailure::Offline) => {
            return format!("offline: agent {} has no live link", rule.agent);
        }
        Err(OpenFailure::Reset(r)) if r.code == ResetCode::NotAllowed => {
            return format!("not-allowed: {}", r.or("the agent refused the check"));
        }
        Err(OpenFailure::Reset(r)) => {
            let code = MuxError::Reset(r.code).to_string();
            return format!("failed: {}", r.or(&code));
        }
        Err(OpenFailure::Timeout) => return "timeout: the agent did not answer".into(),
        Err(OpenFailure::Failed(why)) => return format!("failed: {why}"),
    };
    let read = async {
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
