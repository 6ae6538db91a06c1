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
    /// When it was last used (to within a minute), if ever.
    pub last_used_at: Option<i64>,
}

fn admin_key_from(r: &AnyRow) -> Result<AdminKey> {
    Ok(AdminKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        hash: r.try_get("hash")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        last_used_at: r.try_get("last_used_at")?,
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

    /// Revokes an admin key, unless it is the last one that works (not
    /// revoked, not expired at `now`): that would lock every administrator
    /// out. Revoking a revoked key again is not an error.
    pub async fn revoke_admin_key(&self, id: &str, now: i64) -> Result<()> {
        let n = sqlx::query(
            "UPDATE admin_keys SET revoked = 1 WHERE id = $1 AND revoked = 0 AND EXISTS \
             (SELECT 1 FROM admin_keys o WHERE o.id <> $1 AND o.revoked = 0 AND (o.expires_at IS NULL OR o.expires_at > $2))",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            return Ok(());
        }
        match self.admin_key(id).await? {
            None => Err(StoreError::NotFound {
                what: "admin key",
                name: id.to_owned(),
            }),
            Some(k) if k.revoked => Ok(()),
            Some(_) => Err(StoreError::LastAdminKey(id.to_owned())),
        }
    }

    /// Notes that an admin key was used at `at`.
    pub async fn admin_key_used(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE admin_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
