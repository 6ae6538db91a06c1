//! Routes: a public host name served by an agent's internal URL.

use sqlx::Row;

use crate::tx;
use crate::{Result, Store, StoreError};

/// A route: visitors to `hostname` on the gateway's edge reach `target`
/// (an internal URL) through `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The public host name.
    pub hostname: String,
    /// The agent that reaches the internal service.
    pub agent: String,
    /// The internal URL: `http://host:port` or `https://host:port`.
    pub target: String,
    /// Skip certificate validation towards an `https://` target.
    pub ignore_certificate_errors: bool,
    /// Send PROXY protocol v2 to the internal service.
    pub proxy_protocol: bool,
    /// When it was added.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// Who made it: the operator, or the agent itself.
    pub origin: RouteOrigin,
}

/// Who made a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteOrigin {
    /// The operator (admin API, `burrow add-route`).
    #[default]
    Admin,
    /// The agent (its `--route` flags or its web UI's mappings).
    Agent,
}

impl RouteOrigin {
    fn as_str(self) -> &'static str {
        match self {
            RouteOrigin::Admin => "admin",
            RouteOrigin::Agent => "agent",
        }
    }
}

/// One agent's landing page for unknown hosts under its domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    /// The agent.
    pub agent: String,
    /// The domain it claimed (from its gateway FQDN).
    pub domain: Option<String>,
    /// Its page; `None`: the gateway's own.
    pub html: Option<String>,
}

impl Store {
    /// Creates or replaces the route for `route.hostname`; returns true if
    /// it was created.
    pub async fn put_route(&self, route: &Route) -> Result<bool> {
        if self.agent(&route.agent).await?.is_none() {
            return Err(StoreError::NotFound {
                what: "agent",
                name: route.agent.clone(),
            });
        }
        let mut tx = tx::Tx::begin(&self.pool, self.backend).await?;
        let created = upsert_route(&mut tx, route).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Replaces the routes `agent` published itself with `wanted` (each
    /// of origin [`RouteOrigin::Agent`]), in one transaction; the
    /// operator's routes stay. The caller has checked that no other agent
    /// and no operator route holds a wanted host name.
    pub async fn replace_agent_routes(&self, agent: &str, wanted: &[Route]) -> Result<()> {
        let mut tx = tx::Tx::begin(&self.pool, self.backend).await?;
        let held: Vec<String> =
            sqlx::query("SELECT hostname FROM routes WHERE agent = $1 AND origin = 'agent'")
                .bind(agent)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("hostname"))
                .collect::<std::result::Result<_, _>>()?;
        for h in held
            .iter()
            .filter(|h| !wanted.iter().any(|w| &w.hostname == *h))
        {
            sqlx::query(
                "DELETE FROM routes WHERE hostname = $1 AND agent = $2 AND origin = 'agent'",
            )
            .bind(h)
            .bind(agent)
            .execute(&mut *tx)
            .await?;
        }
        for r in wanted {
            upsert_route(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every agent's landing page settings.
    pub async fn landings(&self) -> Result<Vec<Landing>> {
        sqlx::query("SELECT agent, domain, html FROM landing_pages ORDER BY agent")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Landing {
                    agent: r.try_get("agent")?,
                    domain: r.try_get("domain")?,
                    html: r.try_get("html")?,
                })
            })
            .collect()
    }

    /// Sets the domain `agent`'s landing page is shown under.
    pub async fn set_landing_domain(&self, agent: &str, domain: Option<&str>) -> Result<()> {
        self.upsert_landing("domain", agent, domain).await
    }

    /// Sets `agent`'s landing page (`None`: the gateway's own).
    pub async fn set_landing_html(&self, agent: &str, html: Option<&str>) -> Result<()> {
        self.upsert_landing("html", agent, html).await
    }

    async fn upsert_landing(
        &self,
        column: &'static str,
        agent: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let sql = if column == "domain" {
            "INSERT INTO landing_pages (agent, domain, updated_at) VALUES ($1, $2, $3) ON CONFLICT (agent) DO UPDATE SET domain = excluded.domain, updated_at = excluded.updated_at"
        } else {
            "INSERT INTO landing_pages (agent, html, updated_at) VALUES ($1, $2, $3) ON CONFLICT (agent) DO UPDATE SET html = excluded.html, updated_at = excluded.updated_at"
        };
        sqlx::query(sql)
            .bind(agent)
            .bind(value)
            .bind(crate::now_micros())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every route, by host name.
    pub async fn routes(&self) -> Result<Vec<Route>> {
        sqlx::query("SELECT * FROM routes ORDER BY hostname")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Route {
                    hostname: r.try_get("hostname")?,
                    agent: r.try_get("agent")?,
                    target: r.try_get("target")?,
                    ignore_certificate_errors: r.try_get::<i64, _>("ignore_certificate_errors")?
                        != 0,
                    proxy_protocol: r.try_get::<i64, _>("proxy_protocol")? != 0,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    origin: if r.try_get::<String, _>("origin")? == "agent" {
                        RouteOrigin::Agent
                    } else {
                        RouteOrigin::Admin
                    },
                })
            })
            .collect()
    }

    /// Removes the route for `hostname`.
    pub async fn remove_route(&self, hostname: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM routes WHERE hostname = $1")
            .bind(hostname)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "route",
                name: hostname.to_owned(),
            });
        }
        Ok(())
    }
}

/// Updates the route for `route.hostname` or inserts it; true if inserted.
async fn upsert_route(tx: &mut sqlx::AnyConnection, route: &Route) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE routes SET agent = $1, target = $2, ignore_certificate_errors = $3, proxy_protocol = $4, updated_at = $5, origin = $6 WHERE hostname = $7",
    )
    .bind(&route.agent)
    .bind(&route.target)
    .bind(i64::from(route.ignore_certificate_errors))
    .bind(i64::from(route.proxy_protocol))
    .bind(route.updated_at)
    .bind(route.origin.as_str())
    .bind(&route.hostname)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        sqlx::query(
            "INSERT INTO routes (hostname, agent, target, ignore_certificate_errors, proxy_protocol, created_at, updated_at, origin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&route.hostname)
        .bind(&route.agent)
        .bind(&route.target)
        .bind(i64::from(route.ignore_certificate_errors))
        .bind(i64::from(route.proxy_protocol))
        .bind(route.created_at)
        .bind(route.updated_at)
        .bind(route.origin.as_str())
        .execute(&mut *tx)
        .await?;
    }
    Ok(n == 0)
}
