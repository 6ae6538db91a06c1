//! Questions for a connected agent, asked over its link's requests
//! (`agent.*` of [`burrow_api::link`]): `agent-info`, `agent-check`,
//! `agent-logs`. This replica asks on one of its own links to the agent;
//! for an agent whose links are on another replica, that replica is asked
//! (its admin API at its advertised URL, pinned as peer links are, with
//! the caller's admin key), once: a passed-on question is not passed on.

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

/// Marks a question passed on by another replica.
pub(super) const HOP_HEADER: &str = "x-burrow-replica-hop";

/// Where a question is answered.
enum Asked {
    /// On this replica's link.
    Here(Rpc),
    /// By another replica: its answer.
    There(Response<Body>),
}

/// The question `path` asked of the replica at `url`: its answer, as is.
async fn pass_on(call: &Call<'_>, url: &str, path: &str) -> Result<Response<Body>, String> {
    let parsed = burrow_transport::TunnelUrl::parse(url).map_err(|e| e.to_string())?;
    let (origin, tls) = if parsed.scheme.is_tls() {
        let tls = call
            .admin
            .peer_tls
            .clone()
            .ok_or("this replica has no certificate to pin the other's by")?;
        (format!("https://{}", parsed.authority), Some(tls))
    } else {
        (format!("http://{}", parsed.authority), None)
    };
    let client = burrow_transport::client::HttpClient::new(
        &origin,
        tls,
        &burrow_transport::proxy::ProxyEnv::default(),
    )
    .map_err(|e| e.to_string())?;
    let res = client
        .request(
            http::Method::GET,
            path,
            &[
                (
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", call.bearer),
                ),
                (http::HeaderName::from_static(HOP_HEADER), "1".into()),
            ],
            bytes::Bytes::new(),
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut r = Response::new(http_body_util::Full::new(res.body));
    *r.status_mut() = res.status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// An agent's link here that answers requests, else the replica holding
/// its links asked instead, or why neither.
async fn rpc_for(call: &Call<'_>, agent: &str, path: &str) -> Result<Asked, Refusal> {
    let mut live: Vec<_> = call
        .admin
        .links
        .links(agent)
        .into_iter()
        .filter(|l| !l.session.is_closed())
        .collect();
    live.sort_by_key(|l| std::cmp::Reverse(l.since));
    if let Some(l) = live.first() {
        return Ok(Asked::Here(l.rpc.clone()));
    }
    let me = &call.admin.replica_id;
    let holders: Vec<burrow_store::Presence> = call
        .store
        .presence(agent)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|p| &p.replica.id != me)
        .collect();
    let mut failures = Vec::new();
    if !call.hop {
        for p in holders
            .iter()
            .filter(|p| !p.replica.advertise_url.is_empty())
        {
            match pass_on(call, &p.replica.advertise_url, path).await {
                Ok(r) => return Ok(Asked::There(r)),
                Err(e) => failures.push(format!("{}: {e}", p.replica.id)),
            }
        }
    }
    if !failures.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "agent {agent}'s links are on another gateway replica, which could not be asked: {}",
                failures.join("; ")
            ),
        ));
    }
    let elsewhere: Vec<String> = holders
        .into_iter()
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
    let path = burrow_api::Endpoint::AgentInfo {
        agent: agent.to_owned(),
    }
    .path_and_query();
    let rpc = match rpc_for(call, agent, &path).await? {
        Asked::Here(rpc) => rpc,
        Asked::There(answer) => return Ok(answer),
    };
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
    let path = burrow_api::Endpoint::AgentCheck {
        agent: agent.to_owned(),
        target: target.to_owned(),
        tls,
    }
    .path_and_query();
    let rpc = match rpc_for(call, agent, &path).await? {
        Asked::Here(rpc) => rpc,
        Asked::There(answer) => return Ok(answer),
    };
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
    let path = burrow_api::Endpoint::AgentLogs {
        agent: agent.to_owned(),
        query: q.clone(),
    }
    .path_and_query();
    let rpc = match rpc_for(call, agent, &path).await? {
        Asked::Here(rpc) => rpc,
        Asked::There(answer) => return Ok(answer),
    };
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
