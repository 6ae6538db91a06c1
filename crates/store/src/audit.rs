//! The audit log of admin actions (who did what to which agent, key,
//! rule or route).

use sqlx::Row;

use crate::{Result, Store, now_micros, random_id};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When.
    pub at: i64,
    /// Who (an admin key id, `bootstrap`, `gateway`).
    pub actor: String,
    /// What (`register`, `add-key`, …).
    pub action: String,
    /// On what (an agent name, a key).
    pub subject: String,
    /// Free text; never a secret.
    pub detail: String,
}

impl Store {
    /// Appends an audit record.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (id, at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(random_id())
        .bind(now_micros())
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` audit records, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        sqlx::query("SELECT * FROM audit ORDER BY at DESC, id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
