//! FQDN rules (egress by name): list (optionally checked through their
//! agents), create or replace, remove.

use burrow_api::types::{Rule, RuleRemoved, RuleRequest};
use burrow_api::validate;
use burrow_store::{FqdnRule, now_micros};
use http::{Response, StatusCode};

use super::call::Call;
use super::error::{Body, Refusal, json, put_status};

fn rule(r: &FqdnRule) -> Rule {
    Rule {
        fqdn: r.fqdn.clone(),
        agent_name: r.agent.clone(),
        ignore_certificate_validation_errors: r.ignore_certificate_errors,
        tls: r.tls,
        check_port: r.check_port,
        check_tls: r.check_tls,
        ports: r.ports.as_ref().map(ToString::to_string),
        created_at: r.created_at,
        updated_at: r.updated_at,
        check: None,
        created: None,
    }
}

/// `GET /fqdn-rules`.
pub(super) async fn list(call: &Call<'_>, check: bool) -> Result<Response<Body>, Refusal> {
    let rules = call.store.fqdn_rules().await?;
    let results = if check {
        let checks = rules
            .iter()
            .map(|r| crate::egress::check(&call.admin.links, r));
        futures_util::future::join_all(checks).await
    } else {
        Vec::new()
    };
    let list: Vec<Rule> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| Rule {
            check: results.get(i).cloned(),
            ..rule(r)
        })
        .collect();
    Ok(json(StatusCode::OK, &list))
}

/// `PUT /fqdn-rules/{fqdn}`: 201 when created, 200 when replaced.
pub(super) async fn put(
    call: &Call<'_>,
    fqdn: &str,
    b: RuleRequest,
) -> Result<Response<Body>, Refusal> {
    validate::name("agent", &b.agent_name)?;
    let ports = validate::rule_ports(b.ports.as_deref(), b.check_port)?;
    let now = now_micros();
    let row = FqdnRule {
        fqdn: fqdn.to_owned(),
        agent: b.agent_name.clone(),
        ignore_certificate_errors: b.ignore_certificate_validation_errors,
        tls: b.tls,
        check_port: b.check_port.map(i64::from),
        check_tls: b.check_tls.unwrap_or(false),
        ports,
        created_at: now,
        updated_at: now,
    };
    let created = call
        .store
        .put_fqdn_rule(&row)
        .await
        .map_err(|e| call.for_agent(e, &row.agent))?;
    call.admin.catalog.reload().await;
    let action = if created { "add-fqdn" } else { "update-fqdn" };
    let detail = match &row.ports {
        Some(p) => format!("agent {} ports {p}", b.agent_name),
        None => format!("agent {}", b.agent_name),
    };
    call.audit(action, fqdn, detail).await;
    Ok(json(
        put_status(created),
        &Rule {
            created: Some(created),
            ..rule(&row)
        },
    ))
}

/// `DELETE /fqdn-rules/{fqdn}`.
pub(super) async fn remove(call: &Call<'_>, fqdn: &str) -> Result<Response<Body>, Refusal> {
    call.store.remove_fqdn_rule(fqdn).await?;
    call.admin.catalog.reload().await;
    call.audit("remove-fqdn", fqdn, String::new()).await;
    Ok(json(
        StatusCode::OK,
        &RuleRemoved {
            fqdn: fqdn.to_owned(),
        },
    ))
}
