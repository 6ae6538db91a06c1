//! The traffic audit trail, newest first, filtered.

use burrow_api::TrafficQuery;
use burrow_api::types::{TrafficPage, TrafficRecord};
use http::{Response, StatusCode};

use super::call::Call;
use super::error::{Body, Refusal, json};

/// `GET /traffic`.
pub(super) async fn list(call: &Call<'_>, q: &TrafficQuery) -> Result<Response<Body>, Refusal> {
    let kind = q
        .kind
        .as_deref()
        .map(str::parse::<burrow_store::TrafficKind>)
        .transpose()
        .map_err(|e| Refusal::bad_request(e.to_string()))?;
    let filter = burrow_store::TrafficFilter {
        kind,
        agent: q.agent.clone(),
        host: q.host.clone(),
        status: q.status,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    let records = call.store.traffic(&filter).await?;
    let records = records.into_iter().map(record).collect();
    let dropped = call.admin.audit.recorder().map_or(0, |r| r.dropped());
    Ok(json(StatusCode::OK, &TrafficPage { records, dropped }))
}

/// A stored record as the API (and an agent's traffic page) shows it.
pub(crate) fn record(t: burrow_store::Traffic) -> TrafficRecord {
    TrafficRecord {
        at: t.at,
        kind: t.kind.as_str().to_owned(),
        agent_name: t.agent,
        route: t.route,
        client: t.client,
        method: t.method,
        host: t.host,
        path: t.path,
        status: t.status,
        target: t.target,
        bytes_in: t.bytes_in,
        bytes_out: t.bytes_out,
        duration_ms: t.duration_ms,
        error: t.error,
        failures: t.failures,
    }
}
