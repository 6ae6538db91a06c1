//! FQDN rules: which agent reaches a host name (or `*.domain`), on which
//! ports, with which TLS options.

use sqlx::Row;

use crate::tx;
use crate::{Ports, Result, Store, StoreError, is_unique_violation};

/// An FQDN forwarding rule: traffic for `fqdn` goes through `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FqdnRule {
    /// The host name.
    pub fqdn: String,
    /// The agent that reaches it.
    pub agent: String,
    /// Skip certificate validation towards the target.
    pub ignore_certificate_errors: bool,
    /// The agent may originate TLS: a plain `http://` request through the
    /// proxy reaches the application over HTTPS.
    pub tls: bool,
    /// Port the reachability check probes (default 443).
    pub check_port: Option<i64>,
    /// The check also completes a TLS handshake (always on port 443).
    pub check_tls: bool,
    /// The ports workloads may reach through the rule; `None`: any.
    pub ports: Option<Ports>,
    /// When it was added.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

/// The insert of one FQDN rule, bound and ready to run.
pub(crate) fn insert_fqdn_rule(
    rule: &FqdnRule,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO fqdn_rules (fqdn, agent, ignore_certificate_errors, tls, check_port, check_tls, ports, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&rule.fqdn)
    .bind(&rule.agent)
    .bind(i64::from(rule.ignore_certificate_errors))
    .bind(i64::from(rule.tls))
    .bind(rule.check_port)
    .bind(i64::from(rule.check_tls))
    .bind(rule.ports.as_ref().map(Ports::to_string))
    .bind(rule.created_at)
    .bind(rule.updated_at)
}

impl Store {
    /// Adds an FQDN rule; refuses one that exists.
    pub async fn add_fqdn_rule(&self, rule: &FqdnRule) -> Result<()> {
        if self.agent(&rule.agent).await?.is_none() {
            return Err(StoreError::NotFound {
                what: "agent",
                name: rule.agent.clone(),
            });
        }
        let r = insert_fqdn_rule(rule).execute(&self.pool).await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Exists {
                what: "FQDN rule",
                name: rule.fqdn.clone(),
            }),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    /// Creates or replaces the rule for `rule.fqdn`; returns true if it was
    /// created. A rule's creation time survives updates.
    pub async fn put_fqdn_rule(&self, rule: &FqdnRule) -> Result<bool> {
        if self.agent(&rule.agent).await?.is_none() {
            return Err(StoreError::NotFound {
                what: "agent",
                name: rule.agent.clone(),
            });
        }
        let mut tx = tx::Tx::begin(&self.pool, self.backend).await?;
        let n = sqlx::query(
            "UPDATE fqdn_rules SET agent = $1, ignore_certificate_errors = $2, tls = $3, check_port = $4, check_tls = $5, ports = $6, updated_at = $7 WHERE fqdn = $8",
        )
        .bind(&rule.agent)
        .bind(i64::from(rule.ignore_certificate_errors))
        .bind(i64::from(rule.tls))
        .bind(rule.check_port)
        .bind(i64::from(rule.check_tls))
        .bind(rule.ports.as_ref().map(Ports::to_string))
        .bind(rule.updated_at)
        .bind(&rule.fqdn)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            insert_fqdn_rule(rule).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(n == 0)
    }

    /// Every FQDN rule, by FQDN.
    pub async fn fqdn_rules(&self) -> Result<Vec<FqdnRule>> {
        sqlx::query("SELECT * FROM fqdn_rules ORDER BY fqdn")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(FqdnRule {
                    fqdn: r.try_get("fqdn")?,
                    agent: r.try_get("agent")?,
                    ignore_certificate_errors: r.try_get::<i64, _>("ignore_certificate_errors")?
                        != 0,
                    tls: r.try_get::<i64, _>("tls")? != 0,
                    check_port: r.try_get("check_port")?,
                    check_tls: r.try_get::<i64, _>("check_tls")? != 0,
                    ports: r
                        .try_get::<Option<String>, _>("ports")?
                        .map(|p| p.parse::<Ports>())
                        .transpose()
                        .map_err(|e| sqlx::Error::ColumnDecode {
                            index: "ports".into(),
                            source: Box::new(e),
                        })?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Removes the rule for `fqdn`.
    pub async fn remove_fqdn_rule(&self, fqdn: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM fqdn_rules WHERE fqdn = $1")
            .bind(fqdn)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "FQDN rule",
                name: fqdn.to_owned(),
            });
        }
        Ok(())
    }
}
