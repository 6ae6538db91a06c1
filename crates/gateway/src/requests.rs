//! What the gateway answers an agent on its link (`gateway.*` methods of
//! [`burrow_api::link`]): everything is about that agent only, the name
//! its link authenticated as.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use burrow_api::link::{
    CaddyRoutes, CaddyView, Fetched, GatewayFacts, GatewayInfo, GatewayLogs, GetLanding,
    InspectEdge, LandingPage, MAX_LANDING_HTML, MAX_PROBE_BODY, Probe, SetLanding, SyncMappings,
    Traffic, TrafficFilter, TrafficSlice,
};
use burrow_api::{MAX_TRAFFIC_LIMIT, MAX_TRAFFIC_OFFSET};
use burrow_rpc::Router;
use burrow_transport::logtap::{self, Line};
use burrow_transport::probe;

use crate::state::State;

/// Lines of backlog a follower may ask for.
const MAX_BACKLOG: usize = 500;

/// The methods `agent`'s links are answered with.
pub(crate) fn router(state: Arc<State>, agent: String) -> Router {
    let s = (state, Arc::<str>::from(agent));
    let with = |s: &(Arc<State>, Arc<str>)| s.clone();
    let (a, b, c, d, e, f, g, h) = (
        with(&s),
        with(&s),
        with(&s),
        with(&s),
        with(&s),
        with(&s),
        with(&s),
        with(&s),
    );
    Router::new()
        .call::<GatewayInfo, _, _>(move |()| {
            let (state, agent) = a.clone();
            async move { Ok(info(&state, &agent)) }
        })
        .call::<SyncMappings, _, _>(move |set| {
            let (state, agent) = b.clone();
            async move {
                Ok(state
                    .catalog
                    .sync(&agent, &set, state.config.max_agents)
                    .await)
            }
        })
        .call::<Traffic, _, _>(move |filter| {
            let (state, agent) = c.clone();
            async move { traffic(&state, &agent, filter).await }
        })
        .follow::<GatewayLogs, _, _>(move |filter, sink| {
            let (_, agent) = d.clone();
            async move {
                let wanted = logtap::level(filter.level.as_deref())?;
                let about = |l: &Line| l.field("agent") == Some(&*agent) && l.level <= wanted;
                // Subscribed before the backlog is read: nothing falls
                // between the two.
                let mut live = logtap::tap().subscribe();
                let mut last = 0;
                for l in logtap::tap().recent(filter.backlog.min(MAX_BACKLOG), about) {
                    last = l.at;
                    if sink.send(&l.to_api()).await.is_err() {
                        return Ok(());
                    }
                }
                loop {
                    match live.recv().await {
                        Ok(l) if about(&l) && l.at > last => {
                            if sink.send(&l.to_api()).await.is_err() {
                                return Ok(());
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(missed = n, "log follower fell behind");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                }
            }
        })
        .call::<GetLanding, _, _>(move |()| {
            let (state, agent) = e.clone();
            async move { Ok(landing(&state, &agent)) }
        })
        .call::<SetLanding, _, _>(move |html| {
            let (state, agent) = f.clone();
            async move { set_landing(&state, &agent, html).await }
        })
        .call::<CaddyRoutes, _, _>(move |()| {
            let (state, agent) = g.clone();
            async move { Ok(caddy(&state, &agent).await) }
        })
        .call::<InspectEdge, _, _>(move |probe| {
            let (state, agent) = h.clone();
            async move { inspect(&state, &agent, probe).await }
        })
}

/// Fetches one of `agent`'s routes through the gateway's own listener, as
/// a visitor would (the edge records it in the traffic trail like any).
async fn inspect(state: &State, agent: &str, p: Probe) -> Result<Fetched, String> {
    let method = p.check().map_err(|(_, why)| why)?;
    let host = p.hostname.trim().to_ascii_lowercase();
    if state
        .catalog
        .route_for(&host)
        .is_none_or(|r| r.agent != agent)
    {
        return Err(format!(
            "{host} is not published for this agent at the gateway"
        ));
    }
    let door = state
        .front_door
        .get()
        .cloned()
        .ok_or("the gateway's edge is not listening yet")?;
    let via = format!(
        "the gateway's edge at {}://{}",
        if door.tls.is_some() { "https" } else { "http" },
        door.addr
    );
    let started = std::time::Instant::now();
    let fetching = async {
        let tcp = tokio::net::TcpStream::connect(door.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", door.addr))?;
        let _ = tcp.set_nodelay(true);
        let Some(id) = &door.tls else {
            return probe::fetch(tcp, method, &host, &p.path, MAX_PROBE_BODY, started).await;
        };
        // Our own listener: its certificate, pinned.
        let pins = burrow_transport::tls::ServerTrust::Pinned(vec![id.thumbprint()]);
        let cfg = burrow_transport::tls::client_config(
            None,
            &pins,
            "the gateway's edge",
            "",
            b"http/1.1",
        )
        .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with the edge: {e}"))?;
        probe::fetch(tls, method, &host, &p.path, MAX_PROBE_BODY, started).await
    };
    Ok(probe::fetched(via, started, fetching).await)
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn info(state: &State, agent: &str) -> GatewayFacts {
    GatewayFacts {
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: micros(state.started),
        uptime_seconds: state.started.elapsed().map_or(0, |d| d.as_secs()),
        public_domain: state.config.public_domain.clone(),
        caddy: state.config.caddy.is_some(),
        agent_name: agent.to_owned(),
        links: state.registry.link_count(agent),
    }
}

async fn traffic(state: &State, agent: &str, f: TrafficFilter) -> Result<TrafficSlice, String> {
    let store = state
        .config
        .store
        .as_ref()
        .ok_or("this gateway keeps no traffic")?;
    if !(1..=MAX_TRAFFIC_LIMIT).contains(&f.limit) {
        return Err(format!("limit must be 1-{MAX_TRAFFIC_LIMIT}"));
    }
    if !(0..=MAX_TRAFFIC_OFFSET).contains(&f.offset) {
        return Err(format!(
            "offset must be 0-{MAX_TRAFFIC_OFFSET}: page further back with an earlier end time"
        ));
    }
    let kind = f
        .kind
        .as_deref()
        .map(str::parse::<burrow_store::TrafficKind>)
        .transpose()
        .map_err(|e| e.to_string())?;
    // One more than asked: whether older records match too.
    let filter = burrow_store::TrafficFilter {
        kind,
        agent: Some(agent.to_owned()),
        host: f
            .host
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty()),
        status: f.status,
        since: f.since,
        until: f.until,
        limit: (f.limit + 1).min(MAX_TRAFFIC_LIMIT),
        offset: f.offset,
    };
    let mut records = store
        .traffic(&filter)
        .await
        .map_err(|e| format!("the gateway cannot read its traffic records: {e}"))?;
    let limit = usize::try_from(f.limit).unwrap_or(0);
    let more = records.len() > limit;
    records.truncate(limit);
    Ok(TrafficSlice {
        records: records
            .into_iter()
            .map(crate::admin::traffic_record)
            .collect(),
        more,
    })
}

/// The level named (default `INFO`).
fn landing(state: &State, agent: &str) -> LandingPage {
    let l = state.catalog.landing(agent);
    LandingPage {
        domain: l.as_ref().and_then(|l| l.domain.clone()),
        html: l.and_then(|l| l.html),
        default_html: crate::edge::default_landing(),
    }
}

async fn set_landing(
    state: &State,
    agent: &str,
    html: Option<String>,
) -> Result<LandingPage, String> {
    let store = state
        .config
        .store
        .as_ref()
        .ok_or("this gateway has no store")?;
    if let Some(h) = &html
        && h.len() > MAX_LANDING_HTML
    {
        return Err(format!(
            "the page is {} bytes; at most {MAX_LANDING_HTML}",
            h.len()
        ));
    }
    store
        .ensure_agent(agent, state.config.max_agents)
        .await
        .and(store.set_landing_html(agent, html.as_deref()).await)
        .map_err(|e| format!("not stored: {e}"))?;
    state.catalog.reload().await;
    Ok(landing(state, agent))
}

async fn caddy(state: &State, agent: &str) -> CaddyView {
    let Some(cfg) = &state.config.caddy else {
        return CaddyView {
            enabled: false,
            admin_url: None,
            routes: Vec::new(),
            problem: None,
        };
    };
    let hosts: Vec<String> = state
        .catalog
        .routes()
        .iter()
        .filter(|r| r.agent == agent)
        .map(|r| r.hostname.clone())
        .collect();
    let (routes, problem) = match crate::edge::caddy::routes_for(cfg, &hosts).await {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    CaddyView {
        enabled: true,
        admin_url: Some(cfg.admin_url.clone()),
        routes,
        problem,
    }
}
