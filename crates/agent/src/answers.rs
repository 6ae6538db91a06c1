//! What the agent answers its gateway on a link (`agent.*` methods of
//! [`burrow_api::link`]): what it is and holds, a check of a target it
//! reaches, and its log lines. Nothing here changes the agent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use burrow_api::link::{
    AgentAbout, AgentCheck, AgentLogTail, CheckTarget, LogQuery, MAX_LOG_LINES, MAX_LOG_WAIT_MS,
};
use burrow_api::types::{AgentInfo, AgentLinkInfo, AgentLogs, AgentRoute};
use burrow_rpc::Router;
use burrow_transport::logtap::{self, Line};

use crate::AgentState;
use crate::status::micros;

/// The methods the gateway's requests are answered with.
pub(crate) fn router(state: &Arc<AgentState>) -> Router {
    let (a, b) = (state.clone(), state.clone());
    Router::new()
        .call::<AgentAbout, _, _>(move |()| {
            let state = a.clone();
            async move { Ok(info(&state)) }
        })
        .call::<AgentCheck, _, _>(move |CheckTarget { target, tls }| {
            let state = b.clone();
            async move { Ok(crate::check::check(&state, &target, tls).await) }
        })
        .call::<AgentLogTail, _, _>(|q| async move { logs(q).await })
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn info(state: &AgentState) -> AgentInfo {
    let links = state.links.snapshot();
    let open_streams = links.iter().map(|l| l.open_streams).sum();
    let rules = state
        .rules
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let rules = burrow_wire::egress::encode_rules(&rules)
        .lines()
        .map(|l| l.trim_end().replace('\t', " "))
        .collect();
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        started_at: micros(state.started),
        uptime_seconds: SystemTime::now()
            .duration_since(state.started)
            .map_or(0, |d| d.as_secs()),
        settings: state.settings(),
        links: links
            .iter()
            .map(|l| AgentLinkInfo {
                index: count(l.index),
                state: serde_json::to_value(l.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                replica: l.gateway_replica.clone(),
                rtt_ms: l.rtt_ms,
                open_streams: count(l.open_streams),
                last_failure: l.last_failure.clone(),
            })
            .collect(),
        open_streams: count(open_streams),
        rules,
        allow: state.live().allow.rules(),
        routes: state
            .mapping_set()
            .mappings
            .into_iter()
            .map(|m| AgentRoute {
                hostname: m.hostname,
                target: m.target,
                enabled: m.enabled,
            })
            .collect(),
    }
}

/// Lines after `q.after` (or the latest), waiting up to `q.wait_ms` for
/// the first when there is none yet.
async fn logs(q: LogQuery) -> Result<AgentLogs, String> {
    let wanted = logtap::level(q.level.as_deref())?;
    let max = q.max.clamp(1, MAX_LOG_LINES);
    let after = q.after.unwrap_or(i64::MIN);
    let keep = |l: &Line| l.level <= wanted && l.at > after;
    // Subscribed before the kept lines are read: nothing falls between.
    let mut live = logtap::tap().subscribe();
    let mut lines = logtap::tap().recent(max, keep);
    if lines.is_empty() && q.after.is_some() && q.wait_ms > 0 {
        let wait = Duration::from_millis(q.wait_ms.min(MAX_LOG_WAIT_MS));
        let first = tokio::time::timeout(wait, async {
            loop {
                match live.recv().await {
                    Ok(l) if keep(&l) => return Some(l),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await;
        if let Ok(Some(l)) = first {
            // Lines logged with it come along.
            lines = logtap::tap().recent(max, keep);
            if lines.is_empty() {
                lines.push(l);
            }
        }
    }
    let last = lines.last().map(|l| l.at).or(q.after);
    Ok(AgentLogs {
        lines: lines.iter().map(|l| l.to_api()).collect(),
        last,
    })
}
