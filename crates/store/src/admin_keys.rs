//! Admin API keys: only a hash of each secret is stored.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError};

/// An admin API key, as stored: never the key itself, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    /// Public id (the prefix of the key users hold).
    pub id: String,
    /// A label.
    pub name: String,
    /// Hash of the secret part, hex.
    pub hash: String,
    /// When it was made.
    pub created_at: i64,
    /// When it stops working, if ever.
    pub expires_at: Option<i64>,
    /// Revoked by an administrator.
    pub revoked: bool,
}

fn admin_key_from(r: &AnyRow) -> Result<AdminKey> {
    Ok(AdminKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        hash: r.try_get("hash")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
    })
}

impl Store {
    /// Stores an admin key (its hash).
    pub async fn insert_admin_key(&self, key: &AdminKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_keys (id, name, hash, created_at, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.hash)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(i64::from(key.revoked))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One admin key by id.
    pub async fn admin_key(&self, id: &str) -> Result<Option<AdminKey>> {
        sqlx::query("SELECT * FROM admin_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(admin_key_from)
            .transpose()
    }

    /// Every admin key, oldest first.
    pub async fn admin_keys(&self) -> Result<Vec<AdminKey>> {
        sqlx::query("SELECT * FROM admin_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(admin_key_from)
            .collect()
    }

    /// Revokes an admin key.
    pub async fn revoke_admin_key(&self, id: &str) -> Result<()> {
        let n = sqlx::query("UPDATE admin_keys SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "admin key",
                name: id.to_owned(),
            });
        }
        Ok(())
    }
}
