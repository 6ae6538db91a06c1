//! Questions for a connected agent, asked over its link's requests
//! (`agent.*` of [`burrow_api::link`]): `agent-info`, `agent-check`,
//! `agent-logs`. This replica asks on one of its own links to the agent;
//! an agent whose links are on other replicas is named with them.

use std::time::Duration;

use burrow_api::LogsQuery;
use burrow_api::link::{
    AgentAbout, AgentCheck, AgentLogTail, CheckTarget, LogQuery, MAX_LOG_WAIT_MS,
};
use burrow_rpc::{Options, Rpc, RpcError};
use http::{Response, StatusCode};

use super::call::Call;
use super::error::{Body, Refusal, json};

/// Lines an `agent-logs` answer holds unless asked otherwise.
const DEFAULT_LINES: usize = 100;

/// An agent's link here that answers requests, or why there is none.
async fn rpc_for(call: &Call<'_>, agent: &str) -> Result<Rpc, Refusal> {
    let mut live: Vec<_> = call
        .admin
        .links
        .links(agent)
        .into_iter()
        .filter(|l| !l.session.is_closed())
        .collect();
    live.sort_by_key(|l| std::cmp::Reverse(l.since));
    if let Some(l) = live.first() {
        return Ok(l.rpc.clone());
    }
    let me = &call.admin.replica_id;
    let elsewhere: Vec<String> = call
        .store
        .presence(agent)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|p| &p.replica.id != me)
        .map(|p| {
            if p.replica.advertise_url.is_empty() {
                p.replica.id
            } else {
                format!("{} ({})", p.replica.id, p.replica.advertise_url)
            }
        })
        .collect();
    if elsewhere.is_empty() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "agent {agent} has no live link: it is not connected (list-agents shows when it was last seen)"
            ),
        ));
    }
    Err(Refusal::new(
        StatusCode::CONFLICT,
        format!(
            "agent {agent}'s links are on another gateway replica: {}; ask that replica (its URL as CONNECT_URL)",
            elsewhere.join(", ")
        ),
    ))
}

/// The refusal for a request the agent did not answer.
fn unanswered(agent: &str, e: RpcError) -> Refusal {
    let status = match &e {
        RpcError::Unsupported { .. } | RpcError::UnknownMethod { .. } => {
            StatusCode::NOT_IMPLEMENTED
        }
        RpcError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        RpcError::Busy(_) | RpcError::TooMany => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    Refusal::new(status, format!("agent {agent}: {e}"))
}

/// `GET /agents/{agent}/info`.
pub(super) async fn info(call: &Call<'_>, agent: &str) -> Result<Response<Body>, Refusal> {
    let rpc = rpc_for(call, agent).await?;
    let v = rpc
        .call::<AgentAbout>(&())
        .await
        .map_err(|e| unanswered(agent, e))?;
    Ok(json(StatusCode::OK, &v))
}

/// `GET /agents/{agent}/check`.
pub(super) async fn check(
    call: &Call<'_>,
    agent: &str,
    target: &str,
    tls: bool,
) -> Result<Response<Body>, Refusal> {
    let rpc = rpc_for(call, agent).await?;
    call.audit("agent.check", agent, format!("target={target} tls={tls}"))
        .await;
    let req = CheckTarget {
        target: target.to_owned(),
        tls,
    };
    // Resolving, connecting and the handshake each have the agent's
    // connect timeout.
    let opts = Options {
        timeout: Duration::from_secs(45),
        ..Options::default()
    };
    let v = rpc
        .call_with::<AgentCheck>(&req, opts)
        .await
        .map_err(|e| unanswered(agent, e))?;
    Ok(json(StatusCode::OK, &v))
}

/// `GET /agents/{agent}/logs`.
pub(super) async fn logs(
    call: &Call<'_>,
    agent: &str,
    q: &LogsQuery,
) -> Result<Response<Body>, Refusal> {
    let rpc = rpc_for(call, agent).await?;
    let wait_ms = q
        .wait
        .map_or(0, |s| u64::try_from(s).unwrap_or(0) * 1000)
        .min(MAX_LOG_WAIT_MS);
    let req = LogQuery {
        level: q.level.clone(),
        after: q.after,
        max: q.max.map_or(DEFAULT_LINES, |m| {
            usize::try_from(m).unwrap_or(DEFAULT_LINES)
        }),
        wait_ms,
    };
    let opts = Options {
        timeout: Duration::from_millis(wait_ms) + Duration::from_secs(10),
        ..Options::default()
    };
    let v = rpc
        .call_with::<AgentLogTail>(&req, opts)
        .await
        .map_err(|e| unanswered(agent, e))?;
    Ok(json(StatusCode::OK, &v))
}
