//! Agents and their keys: register (with FQDN rules, one transaction),
//! unregister, list; add, remove and list keys (rotation).

use burrow_api::types::{
    Agent, AgentEnv, Key, KeyRemoved, NewAgent, NewKey, Registered, ReplicaLinks, Unregistered,
};
use burrow_api::validate;
use burrow_auth::pubkey::KeyInfo;
use burrow_store::{AgentKey, FqdnRule, now_micros};
use http::{Response, StatusCode};

use super::call::Call;
use super::error::{Body, Refusal, json};

fn key_row(agent: &str, name: &str, info: &KeyInfo) -> AgentKey {
    AgentKey {
        agent: agent.into(),
        name: name.into(),
        algorithm: info.algorithm.name().into(),
        bits: info.algorithm.bits() as i64,
        fingerprint: info.fingerprint.clone(),
        public_pem: info.pem.clone(),
        created_at: now_micros(),
    }
}

fn key(k: &AgentKey) -> Key {
    Key {
        key_name: k.name.clone(),
        algorithm: k.algorithm.clone(),
        bits: k.bits,
        fingerprint: k.fingerprint.clone(),
        created_at: k.created_at,
    }
}

fn parse_key(pem: &str) -> Result<KeyInfo, Refusal> {
    KeyInfo::from_pem(pem).map_err(|e| Refusal::bad_request(e.to_string()))
}

fn hex_id() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `GET /agents`: with each agent's links on every replica (this one's
/// from its own links, the others' from their presence in the store).
pub(super) async fn list(call: &Call<'_>) -> Result<Response<Body>, Refusal> {
    let agents = call.store.agents().await?;
    let me = &call.admin.replica_id;
    // A replica that cannot read presence still lists its own links.
    let mut elsewhere: std::collections::HashMap<String, Vec<ReplicaLinks>> =
        std::collections::HashMap::new();
    for (agent, p) in call.store.presence_all().await.unwrap_or_default() {
        if &p.replica.id != me {
            elsewhere.entry(agent).or_default().push(ReplicaLinks {
                replica: p.replica.id,
                links: u64::try_from(p.links).unwrap_or(0),
                rtt_ms: p.rtt_us.map(|us| us as f64 / 1000.0),
                since: p.since,
                draining: p.replica.draining,
            });
        }
    }
    let now = now_micros();
    let list: Vec<Agent> = agents
        .iter()
        .map(|a| {
            let live = call.admin.links.links(&a.name);
            let newest = live.iter().max_by_key(|l| l.since);
            let mut replicas = elsewhere.remove(&a.name).unwrap_or_default();
            if let Some(h) = call.admin.links.held_by(&a.name) {
                replicas.push(ReplicaLinks {
                    replica: me.clone(),
                    links: u64::try_from(h.links).unwrap_or(0),
                    rtt_ms: h.rtt_us.map(|us| us as f64 / 1000.0),
                    since: h.since,
                    draining: false,
                });
            }
            replicas.sort_by(|x, y| y.links.cmp(&x.links).then(x.replica.cmp(&y.replica)));
            let links: u64 = replicas.iter().map(|r| r.links).sum();
            let oldest = replicas.iter().map(|r| r.since).min();
            Agent {
                agent_name: a.name.clone(),
                client_id: a.client_id.clone(),
                connected: links > 0,
                links,
                rtt_ms: replicas
                    .iter()
                    .filter_map(|r| r.rtt_ms)
                    .min_by(|x, y| x.total_cmp(y)),
                uptime_seconds: oldest
                    .map(|since| u64::try_from((now - since).max(0) / 1_000_000).unwrap_or(0)),
                replicas,
                last_seen: if links == 0 { a.last_seen } else { Some(now) },
                version: newest.map(|l| l.version.clone()).or(a.version.clone()),
                remote_address: newest
                    .and_then(|l| l.peer.map(|p| p.to_string()))
                    .or(a.remote_addr.clone()),
                created_at: a.created_at,
            }
        })
        .collect();
    Ok(json(StatusCode::OK, &list))
}

/// `POST /agents`.
pub(super) async fn register(call: &Call<'_>, b: NewAgent) -> Result<Response<Body>, Refusal> {
    validate::name("agent", &b.agent_name)?;
    validate::name("key", &b.key_name)?;
    for f in &b.fqdns {
        validate::fqdn(f)?;
    }
    let info = parse_key(&b.public_key)?;
    let client_id = format!("burrow-{}", hex_id());
    let row = key_row(&b.agent_name, &b.key_name, &info);
    let now = now_micros();
    let rules: Vec<FqdnRule> = b
        .fqdns
        .iter()
        .map(|f| FqdnRule {
            fqdn: f.to_ascii_lowercase(),
            agent: b.agent_name.clone(),
            ignore_certificate_errors: false,
            tls: false,
            check_port: None,
            check_tls: false,
            ports: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    // One transaction: the agent, its key and its rules, or nothing.
    call.store
        .register_agent(
            &b.agent_name,
            &client_id,
            &row,
            call.admin.max_agents,
            &rules,
        )
        .await?;
    if !rules.is_empty() {
        call.admin.catalog.reload().await;
    }
    call.audit(
        "register",
        &b.agent_name,
        format!("key {} {}", b.key_name, info.fingerprint),
    )
    .await;
    let scheme = if call.admin.tls { "wss" } else { "ws" };
    Ok(json(
        StatusCode::CREATED,
        &Registered {
            key: key(&row),
            fqdns: b.fqdns,
            env: AgentEnv {
                AUTH_SERVER_DOMAIN: call.host.clone(),
                AUTH_SERVER_CLIENT_ID: client_id,
                API_AUDIENCE: call.admin.audience.clone(),
                CONNECT_URL: format!("{scheme}://{}/connect", call.host),
            },
            agent_name: b.agent_name,
        },
    ))
}

/// `DELETE /agents/{agent}`.
pub(super) async fn unregister(call: &Call<'_>, name: &str) -> Result<Response<Body>, Refusal> {
    call.store.delete_agent(name).await?;
    let closed = call.admin.links.close_agent(name);
    call.audit("unregister", name, format!("{closed} live links closed"))
        .await;
    Ok(json(
        StatusCode::OK,
        &Unregistered {
            agent_name: name.to_owned(),
            links_closed: count(closed),
        },
    ))
}

/// `GET /agents/{agent}/keys`.
pub(super) async fn list_keys(call: &Call<'_>, name: &str) -> Result<Response<Body>, Refusal> {
    if call.store.agent(name).await?.is_none() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no agent named {name:?}"),
        ));
    }
    let keys = call.store.keys(name).await?;
    Ok(json(
        StatusCode::OK,
        &keys.iter().map(key).collect::<Vec<_>>(),
    ))
}

/// `POST /agents/{agent}/keys`.
pub(super) async fn add_key(
    call: &Call<'_>,
    name: &str,
    b: NewKey,
) -> Result<Response<Body>, Refusal> {
    validate::name("key", &b.key_name)?;
    let info = parse_key(&b.public_key)?;
    let row = key_row(name, &b.key_name, &info);
    call.store.add_key(&row).await?;
    call.audit(
        "add-key",
        name,
        format!("key {} {}", b.key_name, info.fingerprint),
    )
    .await;
    Ok(json(StatusCode::CREATED, &key(&row)))
}

/// `DELETE /agents/{agent}/keys/{key}`: refused for the last key unless
/// forced; links authenticated with the key close.
pub(super) async fn remove_key(
    call: &Call<'_>,
    name: &str,
    key_name: &str,
    force: bool,
) -> Result<Response<Body>, Refusal> {
    let keys = call.store.keys(name).await?;
    if !keys.iter().any(|k| k.name == key_name) {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("agent {name} has no key named {key_name:?}"),
        ));
    }
    if keys.len() == 1 && !force {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!(
                "{key_name} is the last key of agent {name}: the agent could no longer authenticate; add another key first, or pass --force"
            ),
        ));
    }
    call.store.remove_key(name, key_name).await?;
    let names: Vec<String> = keys
        .into_iter()
        .map(|k| k.name)
        .filter(|n| n != key_name)
        .collect();
    let closed = call.admin.links.close_unless_key(name, &names);
    call.audit(
        "remove-key",
        name,
        format!("key {key_name}; {closed} live links closed"),
    )
    .await;
    Ok(json(
        StatusCode::OK,
        &KeyRemoved {
            agent_name: name.to_owned(),
            key_name: key_name.to_owned(),
            links_closed: count(closed),
        },
    ))
}
