//! What both edge paths share to reach a route's service: the narrow
//! context they take (route lookup, the agents' links, the audit sink),
//! the open through the route's agent with its refusal in words, and the
//! audit record of a visitor's request.

use std::sync::Arc;

use burrow_mux::{MuxStream, ResetCode};
use burrow_store::Route;
use burrow_wire::egress::Target;
use tracing::info;

use crate::catalog::{Catalog, RouteRef};
use crate::open::OpenFailure;
use crate::registry::Registry;
use crate::traffic::AuditSink;

/// What the edge's paths use of the gateway.
pub(crate) struct Http {
    /// Routes by host.
    pub(crate) catalog: Arc<Catalog>,
    /// The agents' live links.
    pub(crate) links: Arc<Registry>,
    /// Where visitor requests are recorded.
    pub(crate) audit: AuditSink,
}

impl Http {
    /// The route for a (normalised) host, if any.
    pub(crate) fn route_for(&self, host: &str) -> Option<RouteRef> {
        self.catalog.route_for(host)
    }

    /// The page for a host no route serves: the landing page of the agent
    /// whose domain holds it, else the gateway's own.
    pub(crate) fn unknown_host_page(&self, host: &str) -> String {
        self.catalog.landing_for(host).unwrap_or_else(|| {
            super::pages::page_html(
                "Nothing here",
                &format!("No service is published at {host} on this gateway."),
            )
        })
    }

    /// Records one visitor request.
    pub(crate) fn record(&self, t: burrow_store::Traffic) {
        self.audit.record(t);
    }

    /// Opens a stream through the route's agent to its internal service and
    /// waits until the agent has connected it; the error is for the visitor.
    pub(crate) async fn open(
        &self,
        route: &Route,
        host: &str,
        target: &Target,
    ) -> Result<MuxStream, String> {
        match crate::open::open(&self.links, &route.agent, target).await {
            Ok(stream) => Ok(stream),
            Err(OpenFailure::Offline) => {
                info!(%host, agent = %route.agent, "edge request: agent offline");
                Err(AGENT_OFFLINE.into())
            }
            Err(OpenFailure::Reset(code)) => {
                info!(%host, agent = %route.agent, ?code, "edge request: the agent could not connect the service");
                let why = match code {
                    ResetCode::Refused => "the internal service refused the connection",
                    ResetCode::NotAllowed => "the agent refused the internal address",
                    _ => "the agent cannot reach the internal service",
                };
                Err(why.into())
            }
            Err(OpenFailure::Timeout) => Err("the internal service did not answer in time".into()),
            Err(OpenFailure::Failed(why)) => Err(why),
        }
    }
}

/// The audit record of a visitor's request, before its outcome is known.
/// `path` is without the query: query strings may carry secrets.
pub(crate) fn http_record(
    route: &Route,
    client: String,
    method: String,
    host: String,
    path: String,
) -> burrow_store::Traffic {
    burrow_store::Traffic {
        at: burrow_store::now_micros(),
        kind: burrow_store::TrafficKind::Http,
        agent: route.agent.clone(),
        route: route.hostname.clone(),
        client,
        method,
        host,
        path,
        target: route.target.clone(),
        ..burrow_store::Traffic::default()
    }
}

/// Why a request failed when the route's agent has no link.
const AGENT_OFFLINE: &str = "its tunnel agent is offline";

/// The title of the 502 page: the tunnel is down only when the agent is
/// offline; a service that refused or failed is the service's fault.
pub(crate) fn down_title(why: &str) -> &'static str {
    if why == AGENT_OFFLINE {
        "Tunnel down"
    } else {
        "Service unavailable"
    }
}

/// The text of the 502 page for a service that is not reachable.
pub(crate) fn down_text(host: &str, why: &str) -> String {
    format!("The service at {host} is not reachable right now: {why}. Try again later.")
}
