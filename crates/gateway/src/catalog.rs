//! The rule and route catalog: FQDN rules and routes as last read from the
//! store, with one reload that sends changed lists to the agents they
//! concern and wakes whoever follows routes (Caddy). The edge looks routes
//! up here, the egress proxy rules; the admin API and the sweep reload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use burrow_api::link::{MappingSet, MappingState, Synced};
use burrow_store::{FqdnRule, Landing, Route, RouteOrigin, Store};
use burrow_wire::egress::{AgentRule, Ports, Target, best_match, encode_rules};
use bytes::Bytes;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::names::{OwnNames, hostname_refusal};
use crate::registry::Registry;

/// Rules and routes, cached from the store.
pub(crate) struct Catalog {
    store: Option<Store>,
    own_names: OwnNames,
    public_domain: Option<String>,
    links: Arc<Registry>,
    rules: RwLock<Arc<Vec<FqdnRule>>>,
    /// Less those on the gateway's own names; sorted by host name (the
    /// edge looks each request's host up by binary search).
    routes: RwLock<Arc<Vec<Route>>>,
    /// Stored routes left out because they name the gateway itself.
    shadowed: AtomicUsize,
    /// Wakes the Caddy reconciler (a route or an agent's links changed).
    routes_changed: Notify,
    /// Agents' landing pages.
    landings: RwLock<Arc<Vec<Landing>>>,
}

/// Most mappings one agent may publish.
pub(crate) const MAX_MAPPINGS: usize = 5000;

/// One route of the cached route list, held without copying it.
pub(crate) struct RouteRef {
    all: Arc<Vec<Route>>,
    index: usize,
}

impl std::ops::Deref for RouteRef {
    type Target = Route;

    fn deref(&self) -> &Route {
        &self.all[self.index]
    }
}

impl Catalog {
    /// An empty catalog over `store` (none: always empty).
    pub(crate) fn new(
        store: Option<Store>,
        own_names: OwnNames,
        public_domain: Option<String>,
        links: Arc<Registry>,
    ) -> Self {
        Catalog {
            store,
            own_names,
            public_domain,
            links,
            rules: RwLock::new(Arc::new(Vec::new())),
            routes: RwLock::new(Arc::new(Vec::new())),
            shadowed: AtomicUsize::new(0),
            routes_changed: Notify::new(),
            landings: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// The landing page for an unknown host: the page of the agent whose
    /// landing domain is the host or holds it (the longest such domain).
    pub(crate) fn landing_for(&self, host: &str) -> Option<String> {
        let all = self.landings.read().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .filter_map(|l| Some((l.domain.as_deref()?, l.html.as_deref()?)))
            .filter(|(d, _)| under_or_at(host, d))
            .max_by_key(|(d, _)| d.len())
            .map(|(_, html)| html.to_owned())
    }

    /// `agent`'s landing page settings.
    pub(crate) fn landing(&self, agent: &str) -> Option<Landing> {
        let all = self.landings.read().unwrap_or_else(|p| p.into_inner());
        all.iter().find(|l| l.agent == agent).cloned()
    }

    /// Replaces the routes `agent` published itself with its enabled
    /// mappings, each checked as an operator's route is (host under the
    /// public domain, not the gateway's own, a usable internal URL) and
    /// refused if another agent or the operator holds it; takes its landing
    /// domain. Says what became of each.
    pub(crate) async fn sync(&self, agent: &str, set: &MappingSet, max_agents: usize) -> Synced {
        let refuse_all = |why: &str| Synced {
            mappings: set
                .mappings
                .iter()
                .map(|m| MappingState {
                    hostname: m.hostname.clone(),
                    published: false,
                    problem: Some(why.to_owned()),
                })
                .collect(),
            landing_domain: None,
            landing_problem: Some(why.to_owned()),
        };
        let Some(store) = &self.store else {
            return refuse_all("this gateway has no store");
        };
        let Some(domain) = self.public_domain.as_deref() else {
            if !set.mappings.is_empty() {
                warn!(event = crate::event::ROUTE_REFUSED, %agent, "agent's routes refused: this gateway has no public domain (BURROW_PUBLIC_DOMAIN)");
            }
            return refuse_all(
                "this gateway has no public domain (BURROW_PUBLIC_DOMAIN): it publishes no routes",
            );
        };
        if set.mappings.len() > MAX_MAPPINGS {
            return refuse_all(&format!(
                "{} mappings: an agent may publish at most {MAX_MAPPINGS}",
                set.mappings.len()
            ));
        }
        if let Err(e) = store.ensure_agent(agent, max_agents).await {
            return refuse_all(&format!("not stored: {e}"));
        }
        let existing = self.routes();
        let now = burrow_store::now_micros();
        let mut wanted: Vec<Route> = Vec::new();
        let mut states = Vec::with_capacity(set.mappings.len());
        // Indexes in `wanted` of routes new or changed.
        let mut fresh = Vec::new();
        for m in &set.mappings {
            let host = m.hostname.trim().to_ascii_lowercase();
            let route = Route {
                hostname: host.clone(),
                agent: agent.to_owned(),
                target: m.target.trim().to_owned(),
                ignore_certificate_errors: m.ignore_certificate_errors,
                proxy_protocol: m.proxy_protocol,
                created_at: now,
                updated_at: now,
                origin: RouteOrigin::Agent,
            };
            let held = existing.iter().find(|r| r.hostname == host);
            let problem = hostname_refusal(Some(domain), &self.own_names, &host)
                .or_else(|| {
                    route_target(&route).is_none().then(|| {
                        format!(
                            "invalid internal URL {:?}: use http://HOST:PORT or https://HOST:PORT",
                            m.target
                        )
                    })
                })
                .or_else(|| match held {
                    Some(r) if r.agent != agent => {
                        Some(format!("{host} is published by agent {}", r.agent))
                    }
                    Some(r) if r.origin == RouteOrigin::Admin => Some(format!(
                        "{host} is set by the gateway's operator (burrow add-route); change it there"
                    )),
                    _ => None,
                })
                .or_else(|| {
                    wanted
                        .iter()
                        .any(|w| w.hostname == host)
                        .then(|| format!("{host} is listed twice"))
                });
            if let Some(why) = &problem {
                warn!(event = crate::event::ROUTE_REFUSED, %agent, hostname = %host, reason = %why, "agent's route refused");
            }
            let published = problem.is_none() && m.enabled;
            if published {
                let same = held.is_some_and(|r| {
                    (&r.target, r.ignore_certificate_errors, r.proxy_protocol)
                        == (
                            &route.target,
                            route.ignore_certificate_errors,
                            route.proxy_protocol,
                        )
                });
                if !same {
                    fresh.push(wanted.len());
                }
                // Keep when it was first made.
                let created_at = held.map_or(now, |r| r.created_at);
                wanted.push(Route {
                    created_at,
                    ..route
                });
            }
            states.push(MappingState {
                hostname: host,
                published,
                problem,
            });
        }
        if let Err(e) = store.replace_agent_routes(agent, &wanted).await {
            warn!(%agent, error = %e, "agent's mappings not stored");
            return refuse_all(&format!("not stored: {e}"));
        }
        for r in fresh.iter().filter_map(|&i| wanted.get(i)) {
            info!(event = crate::event::ROUTE_PUBLISHED, %agent, hostname = %r.hostname, target = %r.target, "agent's route published");
        }
        let (landing_domain, landing_problem) = self.claim_landing(agent, set, domain).await;
        self.reload().await;
        info!(event = crate::event::MAPPINGS_SYNCED, %agent, published = wanted.len(), mappings = set.mappings.len(), "agent's mappings applied");
        Synced {
            mappings: states,
            landing_domain,
            landing_problem,
        }
    }

    /// Takes the landing domain `agent`'s gateway FQDN names (its parent
    /// domain), if it is related to the public domain and no other agent
    /// holds it.
    async fn claim_landing(
        &self,
        agent: &str,
        set: &MappingSet,
        public: &str,
    ) -> (Option<String>, Option<String>) {
        let Some(store) = &self.store else {
            return (None, None);
        };
        let Some(fqdn) = set
            .gateway_fqdn
            .as_deref()
            .map(|f| f.trim().trim_end_matches('.').to_ascii_lowercase())
        else {
            return (None, None);
        };
        let wanted = landing_domain(&fqdn);
        let problem = if burrow_api::validate::route_name_refusal(&fqdn).is_some() {
            Some(format!("{fqdn:?} is not a host name"))
        } else if !(under_or_at(&wanted, public) || under_or_at(public, &wanted)) {
            Some(format!(
                "{wanted} (from the gateway FQDN {fqdn}) is not related to this gateway's public domain {public}"
            ))
        } else {
            self.landings
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|l| l.agent != agent && l.domain.as_deref() == Some(wanted.as_str()))
                .map(|other| format!("{wanted} is the landing domain of agent {}", other.agent))
        };
        let take = problem.is_none().then_some(wanted);
        if self.landing(agent).and_then(|l| l.domain) != take
            && let Err(e) = store.set_landing_domain(agent, take.as_deref()).await
        {
            return (None, Some(format!("not stored: {e}")));
        }
        (take, problem)
    }

    /// The FQDN rules.
    pub(crate) fn rules(&self) -> Arc<Vec<FqdnRule>> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The routes served.
    pub(crate) fn routes(&self) -> Arc<Vec<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any route is served.
    pub(crate) fn any_routes(&self) -> bool {
        !self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The route for a (normalised) host, if any.
    pub(crate) fn route_for(&self, host: &str) -> Option<RouteRef> {
        let all = self.routes();
        let index = all
            .binary_search_by(|r| r.hostname.as_str().cmp(host))
            .ok()?;
        Some(RouteRef { all, index })
    }

    /// The rule that matches `host` (lowercase, no trailing dot) best.
    pub(crate) fn rule_for(&self, host: &str) -> Option<FqdnRule> {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        best_match(rules.iter().map(|r| (r.fqdn.as_str(), r)), host).map(|(_, r)| r.clone())
    }

    /// Says that the routes, or the agents behind them, changed.
    pub(crate) fn routes_changed(&self) {
        self.routes_changed.notify_one();
    }

    /// Waits until [`Catalog::routes_changed`] is said.
    pub(crate) async fn changed(&self) {
        self.routes_changed.notified().await;
    }

    /// Sends `agent` its rules on every live link (or only on `session`).
    pub(crate) async fn push(&self, agent: &str, only: Option<&burrow_mux::Session>) {
        let (rules, routes) = (self.rules(), self.routes());
        let body = Bytes::from(encode_rules(&agent_rules(&rules, &routes, agent)));
        let sessions: Vec<burrow_mux::Session> = match only {
            Some(s) => vec![s.clone()],
            None => self
                .links
                .links(agent)
                .into_iter()
                .map(|l| l.session)
                .collect(),
        };
        for s in sessions {
            let _ = s
                .send_control(burrow_wire::control::RULES, body.clone())
                .await;
        }
    }

    /// Re-reads the rules and routes; pushes changed lists to the agents they
    /// concern. Returns false if the store could not be read (caches stay).
    pub(crate) async fn reload(&self) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        let (fresh, mut fresh_routes, landings) =
            match tokio::try_join!(store.fqdn_rules(), store.routes(), store.landings()) {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "FQDN rules and routes not reloaded");
                    return false;
                }
            };
        *self.landings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(landings);
        // A route stored before the gateway had this name (an older version,
        // a new certificate or BURROW_GATEWAY_NAMES entry) is never served.
        let own = &self.own_names;
        let (shadowed, kept): (Vec<_>, Vec<_>) = fresh_routes
            .into_iter()
            .partition(|r| own.contains(&r.hostname));
        fresh_routes = kept;
        fresh_routes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        let before = self.shadowed.swap(shadowed.len(), Ordering::Relaxed);
        if before != shadowed.len() {
            for r in &shadowed {
                warn!(event = crate::event::ROUTE_IGNORED_OWN_NAME, hostname = %r.hostname, agent = %r.agent, "route ignored: it is one of this gateway's own names (remove it with `burrow remove-route`)");
            }
        }
        let (old, old_routes) = {
            let mut cache = self.rules.write().unwrap_or_else(|p| p.into_inner());
            let mut rcache = self.routes.write().unwrap_or_else(|p| p.into_inner());
            if **cache == fresh && **rcache == fresh_routes {
                return true;
            }
            (
                std::mem::replace(&mut *cache, Arc::new(fresh.clone())),
                std::mem::replace(&mut *rcache, Arc::new(fresh_routes.clone())),
            )
        };
        if *old_routes != fresh_routes {
            self.routes_changed();
        }
        let mut agents: Vec<&str> = old
            .iter()
            .chain(fresh.iter())
            .map(|r| r.agent.as_str())
            .chain(
                old_routes
                    .iter()
                    .chain(fresh_routes.iter())
                    .map(|r| r.agent.as_str()),
            )
            .collect();
        agents.sort_unstable();
        agents.dedup();
        for a in agents {
            let now = agent_rules(&fresh, &fresh_routes, a);
            if agent_rules(&old, &old_routes, a) != now {
                info!(agent = %a, rules = now.len(), "FQDN rules or routes changed; sent to the agent");
                self.push(a, None).await;
            }
        }
        true
    }

    /// Routes from an agent's `--route` flags, sent by an agent that does
    /// not make requests (`HOSTNAME\tURL` lines): synced as mappings.
    pub(crate) async fn declare(&self, agent: &str, body: &[u8], max_agents: usize) {
        let mappings = String::from_utf8_lossy(body)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(host, url)| burrow_api::link::Mapping {
                hostname: host.to_owned(),
                target: url.to_owned(),
                ignore_certificate_errors: false,
                proxy_protocol: false,
                enabled: true,
            })
            .collect();
        let set = MappingSet {
            gateway_fqdn: None,
            mappings,
        };
        self.sync(agent, &set, max_agents).await;
    }
}

/// Whether `host` is `domain` or a name under it.
fn under_or_at(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The landing domain a gateway FQDN names: its parent domain when that
/// still has two labels (`gateway.example.com` → `example.com`), else
/// itself.
fn landing_domain(fqdn: &str) -> String {
    match fqdn.split_once('.') {
        Some((_, parent)) if parent.contains('.') => parent.to_owned(),
        _ => fqdn.to_owned(),
    }
}

/// The egress target for a route's internal URL.
pub(crate) fn route_target(route: &Route) -> Option<Target> {
    Target::for_internal_url(&route.target, route.ignore_certificate_errors)
}

/// routes (the edge reaches them as egress targets, on the target's port).
/// Entries for one pattern are joined: the options of either, the ports of
/// both (any port if either allows any).
fn agent_rules(rules: &[FqdnRule], routes: &[burrow_store::Route], agent: &str) -> Vec<AgentRule> {
    let fqdn = rules
        .iter()
        .filter(|r| r.agent == agent)
        .map(|r| AgentRule {
            pattern: r.fqdn.clone(),
            tls: r.tls,
            insecure: r.ignore_certificate_errors,
            ports: r.ports.clone(),
        });
    let routed = routes
        .iter()
        .filter(|r| r.agent == agent)
        .filter_map(route_target)
        .map(|t| AgentRule {
            pattern: t.host,
            tls: t.tls,
            insecure: t.insecure,
            ports: Some(Ports::single(t.port)),
        });
    let mut joined: std::collections::BTreeMap<String, AgentRule> = Default::default();
    for r in fqdn.chain(routed) {
        match joined.get_mut(&r.pattern) {
            Some(j) => {
                j.tls |= r.tls;
                j.insecure |= r.insecure;
                j.ports = match (&j.ports, &r.ports) {
                    (Some(a), Some(b)) => Some(a.union(b)),
                    _ => None,
                };
            }
            None => {
                joined.insert(r.pattern.clone(), r);
            }
        }
    }
    joined.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(target: &str, insecure: bool) -> Route {
        Route {
            hostname: "app.example.com".into(),
            agent: "edge".into(),
            target: target.into(),
            ignore_certificate_errors: insecure,
            proxy_protocol: false,
            created_at: 0,
            updated_at: 0,
            origin: burrow_store::RouteOrigin::Admin,
        }
    }

    #[test]
    fn internal_urls_become_egress_targets() {
        let t = route_target(&route("http://10.0.0.5:8080", false)).expect("http");
        assert_eq!((t.host.as_str(), t.port, t.tls), ("10.0.0.5", 8080, false));
        let t = route_target(&route("https://NAS.lan", true)).expect("https");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls, t.insecure),
            ("nas.lan", 443, true, true)
        );
        assert!(route_target(&route("ftp://x", false)).is_none());
        assert!(route_target(&route("not a url", false)).is_none());
    }
}
