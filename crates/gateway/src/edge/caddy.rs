//! Caddy mode: Caddy terminates TLS (and gets certificates itself) and
//! proxies published hosts to the gateway, which routes them by host.
//!
//! The gateway keeps Caddy's routes in step with its own through Caddy's
//! Admin API: one route per published host, `@id` `burrow-route-HOST`,
//! inserted first in the configured server's route list (so it wins over a
//! wildcard the operator configured). A reconcile pass runs after every
//! route change, when an agent comes or goes (with
//! `BURROW_REMOVE_ROUTES_ON_TUNNEL_UNAVAILABLE`), and every few seconds,
//! which also re-applies the routes after Caddy restarts. Routes without
//! the `burrow-route-` prefix are never touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use burrow_transport::client::HttpClient;
use burrow_transport::proxy::ProxyEnv;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::Http;

/// Prefix of the `@id` of every route Burrow manages.
pub const ID_PREFIX: &str = "burrow-route-";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Caddy mode settings.
#[derive(Debug, Clone)]
pub struct CaddyConfig {
    /// Caddy's Admin API, e.g. `http://localhost:2019`.
    pub admin_url: String,
    /// The Caddy HTTP server whose routes Burrow manages (`srv0` for the
    /// first server of a Caddyfile).
    pub server: String,
    /// Where Caddy reaches the gateway (`host:port` of the tunnel port;
    /// empty: the tunnel port as bound).
    pub upstream: String,
    /// Withdraw a route while its agent has no live link.
    pub remove_when_unavailable: bool,
    /// How often routes are re-applied without a change.
    pub interval: Duration,
}

/// The Caddy route for one host.
fn caddy_route(host: &str, upstream: &str) -> Value {
    json!({
        "@id": format!("{ID_PREFIX}{host}"),
        "match": [{ "host": [host] }],
        "handle": [{
            "handler": "reverse_proxy",
            "upstreams": [{ "dial": upstream }],
        }],
        "terminal": true,
    })
}

struct Admin {
    client: HttpClient,
    base: String,
}

impl Admin {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut headers = Vec::new();
        let bytes = match body {
            Some(v) => {
                headers.push((header::CONTENT_TYPE, "application/json".to_owned()));
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        self.client
            .request(method, path, &headers, bytes, TIMEOUT)
            .await
            .map(|r| (r.status, r.body))
            .map_err(|e| format!("Caddy Admin API at {}: {e}", self.base))
    }
}

/// One reconcile pass. Returns what it changed, or why it could not.
async fn reconcile(
    http: &Http,
    cfg: &CaddyConfig,
    admin: &Admin,
) -> Result<(usize, usize), String> {
    let routes = http.catalog.routes();
    let desired: BTreeMap<String, Value> = routes
        .iter()
        .filter(|r| !cfg.remove_when_unavailable || http.links.link_count(&r.agent) > 0)
        .map(|r| {
            (
                format!("{ID_PREFIX}{}", r.hostname),
                caddy_route(&r.hostname, &cfg.upstream),
            )
        })
        .collect();
    let list_path = format!("/config/apps/http/servers/{}/routes", cfg.server);
    let (status, body) = admin.call(Method::GET, &list_path, None).await?;
    if !status.is_success() {
        return Err(format!(
            "Caddy has no HTTP server {:?} (GET {list_path}: {status}); set BURROW_CADDY_SERVER to one of its servers",
            cfg.server
        ));
    }
    let current: Vec<Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let mut present: BTreeMap<String, Value> = BTreeMap::new();
    for r in current {
        if let Some(id) = r
            .get("@id")
            .and_then(Value::as_str)
            .filter(|id| id.starts_with(ID_PREFIX))
        {
            present.insert(id.to_owned(), r.clone());
        }
    }
    let mut removed = 0;
    for (id, route) in &present {
        if desired.get(id) != Some(route) {
            let (status, body) = admin
                .call(Method::DELETE, &format!("/id/{id}"), None)
                .await?;
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                return Err(format!(
                    "removing {id}: {status} {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            removed += 1;
        }
    }
    let mut added = 0;
    for (id, route) in &desired {
        if present.get(id) == Some(route) {
            continue;
        }
        // Insert first, so it wins over a wildcard route of the operator's.
        let (status, body) = admin
            .call(Method::PUT, &format!("{list_path}/0"), Some(route))
            .await?;
        if !status.is_success() {
            return Err(format!(
                "adding {id}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        added += 1;
    }
    Ok((added, removed))
}

/// The routes Burrow keeps in Caddy for `hosts`, as Caddy holds them.
pub(crate) async fn routes_for(cfg: &CaddyConfig, hosts: &[String]) -> Result<Vec<Value>, String> {
    let base = cfg.admin_url.trim_end_matches('/').to_owned();
    let client = HttpClient::new(&base, None, &ProxyEnv::default()).map_err(|e| e.to_string())?;
    let admin = Admin { client, base };
    let path = format!("/config/apps/http/servers/{}/routes", cfg.server);
    let (status, body) = admin.call(Method::GET, &path, None).await?;
    if !status.is_success() {
        return Err(format!("GET {path}: {status}"));
    }
    let Ok(Value::Array(all)) = serde_json::from_slice::<Value>(&body) else {
        return Err(format!("GET {path}: not a list of routes"));
    };
    let ids: Vec<String> = hosts.iter().map(|h| format!("{ID_PREFIX}{h}")).collect();
    Ok(all
        .into_iter()
        .filter(|r| {
            r.get("@id")
                .and_then(Value::as_str)
                .is_some_and(|id| ids.iter().any(|i| i == id))
        })
        .collect())
}

/// Keeps Caddy's routes in step until the gateway stops.
pub(crate) async fn run(http: Arc<Http>, stop: CancellationToken, cfg: CaddyConfig) {
    let base = cfg.admin_url.trim_end_matches('/').to_owned();
    let client = match HttpClient::new(&base, None, &ProxyEnv::default()) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "Caddy mode off: the Caddy Admin API URL is not usable (BURROW_CADDY_ADMIN_URL, http://HOST:PORT)");
            return;
        }
    };
    let admin = Admin { client, base };
    info!(admin = %admin.base, server = %cfg.server, upstream = %cfg.upstream, remove_when_unavailable = cfg.remove_when_unavailable, "Caddy mode: routes are kept in Caddy");
    let mut last_error: Option<String> = None;
    loop {
        match reconcile(&http, &cfg, &admin).await {
            Ok((added, removed)) => {
                if added + removed > 0 {
                    info!(added, removed, "Caddy routes updated");
                }
                if last_error.take().is_some() {
                    info!("Caddy Admin API reachable again");
                }
            }
            Err(e) => {
                if last_error.as_deref() != Some(e.as_str()) {
                    warn!(error = %e, "cannot update Caddy's routes; retrying");
                    last_error = Some(e);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = http.catalog.changed() => {}
            _ = tokio::time::sleep(cfg.interval) => {}
        }
    }
}
