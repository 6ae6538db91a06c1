//! Routes (public host name to an agent's internal URL): list, publish or
//! change, remove.

use burrow_api::types::{Route, RouteRemoved, RouteRequest};
use burrow_api::validate;
use burrow_store::now_micros;
use http::{Response, StatusCode};

use super::call::Call;
use super::error::{Body, Refusal, json, put_status};

fn route(r: &burrow_store::Route) -> Route {
    Route {
        hostname: r.hostname.clone(),
        agent_name: r.agent.clone(),
        target: r.target.clone(),
        ignore_certificate_validation_errors: r.ignore_certificate_errors,
        proxy_protocol: r.proxy_protocol,
        created_at: r.created_at,
        updated_at: r.updated_at,
        created: None,
    }
}

/// `GET /routes`.
pub(super) async fn list(call: &Call<'_>) -> Result<Response<Body>, Refusal> {
    let routes = call.store.routes().await?;
    Ok(json(
        StatusCode::OK,
        &routes.iter().map(route).collect::<Vec<_>>(),
    ))
}

/// `PUT /routes/{hostname}`: 201 when created, 200 when changed. The name
/// must be publishable here (not the gateway's own, under the public
/// domain); the internal URL one the edge can reach.
pub(super) async fn put(
    call: &Call<'_>,
    hostname: &str,
    b: RouteRequest,
) -> Result<Response<Body>, Refusal> {
    if let Some(why) = crate::names::hostname_refusal(
        call.admin.public_domain.as_deref(),
        &call.admin.own_names,
        hostname,
    ) {
        return Err(Refusal::bad_request(why));
    }
    validate::name("agent", &b.agent_name)?;
    let now = now_micros();
    let row = burrow_store::Route {
        hostname: hostname.to_owned(),
        agent: b.agent_name.clone(),
        target: b.target.clone(),
        ignore_certificate_errors: b.ignore_certificate_validation_errors,
        proxy_protocol: b.proxy_protocol,
        created_at: now,
        updated_at: now,
        origin: burrow_store::RouteOrigin::Admin,
    };
    if crate::catalog::route_target(&row).is_none() {
        return Err(Refusal::bad_request(format!(
            "invalid internal URL {:?}: use http://HOST:PORT or https://HOST:PORT",
            b.target
        )));
    }
    let created = call
        .store
        .put_route(&row)
        .await
        .map_err(|e| call.for_agent(e, &row.agent))?;
    call.admin.catalog.reload().await;
    let action = if created { "add-route" } else { "update-route" };
    call.audit(
        action,
        hostname,
        format!("agent {} target {}", b.agent_name, b.target),
    )
    .await;
    Ok(json(
        put_status(created),
        &Route {
            created: Some(created),
            ..route(&row)
        },
    ))
}

/// `DELETE /routes/{hostname}`.
pub(super) async fn remove(call: &Call<'_>, hostname: &str) -> Result<Response<Body>, Refusal> {
    call.store.remove_route(hostname).await?;
    call.admin.catalog.reload().await;
    call.audit("remove-route", hostname, String::new()).await;
    Ok(json(
        StatusCode::OK,
        &RouteRemoved {
            hostname: hostname.to_owned(),
        },
    ))
}
