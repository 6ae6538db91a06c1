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

    /// Records a request for a host no route serves (it got the 404
    /// landing page). `path` is without the query.
    pub(crate) fn record_unrouted(&self, client: String, method: &str, host: &str, path: &str) {
        self.audit.record(burrow_store::Traffic {
            at: burrow_store::now_micros(),
            kind: burrow_store::TrafficKind::Http,
            client,
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.split('?').next().unwrap_or_default().to_owned(),
            status: 404,
            error: format!("no route for {host}"),
            ..burrow_store::Traffic::default()
        });
    }

    /// Opens a stream through the route's agent to its internal service and
    /// waits until the agent has connected it; the error is for the visitor
    /// (in words of the kind of failure; the agent's own words, which may
    /// name internal addresses, go to the gateway's log).
    pub(crate) async fn open(
        &self,
        route: &Route,
        host: &str,
        target: &Target,
    ) -> Result<MuxStream, Down> {
        match crate::open::open(&self.links, &route.agent, target).await {
            Ok(stream) => Ok(stream),
            Err(OpenFailure::Offline) => {
                info!(%host, agent = %route.agent, "edge request: agent offline");
                Err(Down::new(502, "Tunnel down", "its tunnel agent is offline"))
            }
            Err(OpenFailure::Reset(r)) => {
                info!(%host, agent = %route.agent, code = ?r.code, reason = %r.reason, "edge request: the agent could not connect the service");
                let (status, title, why) = match r.code {
                    ResetCode::TimedOut => (
                        504,
                        "Service timed out",
                        "the agent could not connect the internal service in time",
                    ),
                    code => (
                        502,
                        "Service unavailable",
                        match code {
                            ResetCode::Refused => "the internal service refused the connection",
                            ResetCode::NotAllowed => "the agent refused the internal address",
                            ResetCode::NameNotFound => {
                                "the agent cannot resolve the internal service's name"
                            }
                            ResetCode::Certificate => {
                                "the agent refused the internal service's TLS certificate"
                            }
                            ResetCode::Tls => "TLS with the internal service failed",
                            _ => "the agent cannot reach the internal service",
                        },
                    ),
                };
                let mut down = Down::new(status, title, why);
                if !r.reason.is_empty() {
                    down.cause = format!("{why}: {}", r.reason);
                }
                Err(down)
            }
            Err(OpenFailure::Timeout) => Err(Down::new(
                504,
                "Service timed out",
                "the internal service did not answer in time",
            )),
            Err(OpenFailure::Failed(why)) => Err(Down::service(why)),
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

/// Why a visitor's request did not reach the service: the page it gets.
#[derive(Debug)]
pub(crate) struct Down {
    /// 502, or 504 for a timeout.
    pub(crate) status: u16,
    /// "Tunnel down" only when the agent is offline; a service that
    /// refused or failed is the service's fault.
    pub(crate) title: &'static str,
    /// In words for the visitor.
    pub(crate) why: String,
    /// In words for the operator (the audit trail): with the agent's own
    /// reason, which may name internal hosts.
    pub(crate) cause: String,
}

impl Down {
    fn new(status: u16, title: &'static str, why: &str) -> Down {
        Down {
            status,
            title,
            why: why.to_owned(),
            cause: why.to_owned(),
        }
    }

    /// The service failed (502 "Service unavailable").
    pub(crate) fn service(why: impl Into<String>) -> Down {
        let why = why.into();
        Down {
            status: 502,
            title: "Service unavailable",
            cause: why.clone(),
            why,
        }
    }

    /// The page's text for `host`.
    pub(crate) fn text(&self, host: &str) -> String {
        format!(
            "The service at {host} is not reachable right now: {}. Try again later.",
            self.why
        )
    }
}
