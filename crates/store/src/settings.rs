//! Settings: named values the gateway keeps (the token key with
//! PostgreSQL, the tunnel audience).

use sqlx::Row;

use crate::{Result, Store, StoreError, now_micros};

impl Store {
    /// A gateway-wide setting; on first use, `init()` is stored and
    /// returned. Replicas racing to initialise agree on one value.
    pub async fn setting_or_init(
        &self,
        name: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String> {
        if let Some(v) = self.setting(name).await? {
            return Ok(v);
        }
        sqlx::query(
            "INSERT INTO settings (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(init())
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        self.setting(name)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "setting",
                name: name.to_owned(),
            })
    }

    /// Removes a gateway-wide setting; true if there was one.
    pub async fn remove_setting(&self, name: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<String, _>("value"))
            .transpose()?)
    }
}
