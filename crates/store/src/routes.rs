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
        let n = sqlx::query(
            "UPDATE routes SET agent = $1, target = $2, ignore_certificate_errors = $3, proxy_protocol = $4, updated_at = $5 WHERE hostname = $6",
        )
        .bind(&route.agent)
        .bind(&route.target)
        .bind(i64::from(route.ignore_certificate_errors))
        .bind(i64::from(route.proxy_protocol))
        .bind(route.updated_at)
        .bind(&route.hostname)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            sqlx::query(
                "INSERT INTO routes (hostname, agent, target, ignore_certificate_errors, proxy_protocol, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&route.hostname)
            .bind(&route.agent)
            .bind(&route.target)
            .bind(i64::from(route.ignore_certificate_errors))
            .bind(i64::from(route.proxy_protocol))
            .bind(route.created_at)
            .bind(route.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n == 0)
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
