//! Agents and their keys: registration (with FQDN rules, one
//! transaction), lookup, keys for rotation, and used assertion ids.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::rules::{FqdnRule, insert_fqdn_rule};
use crate::tx;
use crate::{Result, Store, StoreError, is_unique_violation, now_micros};

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Its name (1–200 letters, digits, `-`, `.`).
    pub name: String,
    /// The client id its assertions carry.
    pub client_id: String,
    /// When it was registered.
    pub created_at: i64,
    /// When a link of it was last seen.
    pub last_seen: Option<i64>,
    /// Its software version, from its last hello.
    pub version: Option<String>,
    /// Its address as last seen.
    pub remote_addr: Option<String>,
}

fn agent_from(r: &AnyRow) -> Result<Agent> {
    Ok(Agent {
        name: r.try_get("name")?,
        client_id: r.try_get("client_id")?,
        created_at: r.try_get("created_at")?,
        last_seen: r.try_get("last_seen")?,
        version: r.try_get("version")?,
        remote_addr: r.try_get("remote_addr")?,
    })
}

/// A public key registered for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    /// The agent.
    pub agent: String,
    /// The key's name (1–200 letters, digits, `-`, `.`).
    pub name: String,
    /// `RSA`, `EC P-256`, `Ed25519`.
    pub algorithm: String,
    /// Key size in bits.
    pub bits: i64,
    /// SHA-256 fingerprint of the public key.
    pub fingerprint: String,
    /// The public key, PEM.
    pub public_pem: String,
    /// When it was added.
    pub created_at: i64,
}

fn key_from(r: &AnyRow) -> Result<AgentKey> {
    Ok(AgentKey {
        agent: r.try_get("agent")?,
        name: r.try_get("name")?,
        algorithm: r.try_get("algorithm")?,
        bits: r.try_get("bits")?,
        fingerprint: r.try_get("fingerprint")?,
        public_pem: r.try_get("public_pem")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Inserts an agent inside `tx`, refusing a taken name and more than
/// `max_agents` (counted in the same transaction).
async fn insert_agent(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    client_id: &str,
    max_agents: usize,
) -> Result<Agent> {
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM agents")
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= max_agents {
        return Err(StoreError::AgentLimit { max: max_agents });
    }
    let now = now_micros();
    let r = sqlx::query("INSERT INTO agents (name, client_id, created_at) VALUES ($1, $2, $3)")
        .bind(name)
        .bind(client_id)
        .bind(now)
        .execute(&mut *tx)
        .await;
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Exists {
                what: "agent",
                name: name.to_owned(),
            });
        }
        r => r?,
    };
    Ok(Agent {
        name: name.to_owned(),
        client_id: client_id.to_owned(),
        created_at: now,
        last_seen: None,
        version: None,
        remote_addr: None,
    })
}

impl Store {
    /// Registers an agent, refusing a taken name and more than `max_agents`.
    pub async fn create_agent(
        &self,
        name: &str,
        client_id: &str,
        max_agents: usize,
    ) -> Result<Agent> {
        let mut tx = tx::Tx::begin(&self.pool, self.backend).await?;
        let agent = insert_agent(&mut tx, name, client_id, max_agents).await?;
        tx.commit().await?;
        Ok(agent)
    }

    /// Registers an agent with its first key and its FQDN rules in one
    /// transaction: all are stored or none (a taken name, the agent limit,
    /// or a rule another agent has refuse the whole registration).
    pub async fn register_agent(
        &self,
        name: &str,
        client_id: &str,
        first_key: &AgentKey,
        max_agents: usize,
        rules: &[FqdnRule],
    ) -> Result<Agent> {
        let mut tx = tx::Tx::begin(&self.pool, self.backend).await?;
        key_not_in_use(&mut tx, &first_key.fingerprint).await?;
        let agent = insert_agent(&mut tx, name, client_id, max_agents).await?;
        sqlx::query(
            "INSERT INTO agent_keys (agent, name, algorithm, bits, fingerprint, public_pem, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(name)
        .bind(&first_key.name)
        .bind(&first_key.algorithm)
        .bind(first_key.bits)
        .bind(&first_key.fingerprint)
        .bind(&first_key.public_pem)
        .bind(first_key.created_at)
        .execute(&mut *tx)
        .await?;
        for rule in rules {
            match insert_fqdn_rule(rule).execute(&mut *tx).await {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Exists {
                        what: "FQDN rule",
                        name: rule.fqdn.clone(),
                    });
                }
                r => r?,
            };
        }
        tx.commit().await?;
        Ok(agent)
    }

    /// One agent.
    pub async fn agent(&self, name: &str) -> Result<Option<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(agent_from)
            .transpose()
    }

    /// Makes sure `name` has a row, for an agent that authenticates with
    /// the pre-shared key (it registers no key): its routes and landing
    /// page need one. Within the agent limit.
    pub async fn ensure_agent(&self, name: &str, max_agents: usize) -> Result<()> {
        if self.agent(name).await?.is_some() {
            return Ok(());
        }
        let mut tx = tx::Tx::begin(&self.pool, self.backend).await?;
        match insert_agent(&mut tx, name, &format!("psk:{name}"), max_agents).await {
            Ok(_) => tx.commit().await?,
            // A replica or a second link made it first.
            Err(StoreError::Exists { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The agent a client id belongs to.
    pub async fn agent_by_client_id(&self, client_id: &str) -> Result<Option<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(agent_from)
            .transpose()
    }

    /// Every agent, by name.
    pub async fn agents(&self) -> Result<Vec<Agent>> {
        sqlx::query("SELECT * FROM agents ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(agent_from)
            .collect()
    }

    /// Unregisters an agent with its keys, rules and routes.
    pub async fn delete_agent(&self, name: &str) -> Result<()> {
        let mut tx = tx::Tx::begin(&self.pool, self.backend).await?;
        for q in [
            "DELETE FROM agent_keys WHERE agent = $1",
            "DELETE FROM fqdn_rules WHERE agent = $1",
            "DELETE FROM routes WHERE agent = $1",
            "DELETE FROM landing_pages WHERE agent = $1",
        ] {
            sqlx::query(q).bind(name).execute(&mut *tx).await?;
        }
        let n = sqlx::query("DELETE FROM agents WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "agent",
                name: name.to_owned(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that a link of `name` was seen.
    pub async fn touch_agent(&self, name: &str, version: &str, remote_addr: &str) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET last_seen = $1, version = $2, remote_addr = $3 WHERE name = $4",
        )
        .bind(now_micros())
        .bind(version)
        .bind(remote_addr)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds a key to an agent.
    pub async fn add_key(&self, key: &AgentKey) -> Result<()> {
        if self.agent(&key.agent).await?.is_none() {
            return Err(StoreError::NotFound {
                what: "agent",
                name: key.agent.clone(),
            });
        }
        let mut conn = self.pool.acquire().await?;
        key_not_in_use(&mut conn, &key.fingerprint).await?;
        drop(conn);
        let r = sqlx::query(
            "INSERT INTO agent_keys (agent, name, algorithm, bits, fingerprint, public_pem, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.agent)
        .bind(&key.name)
        .bind(&key.algorithm)
        .bind(key.bits)
        .bind(&key.fingerprint)
        .bind(&key.public_pem)
        .bind(key.created_at)
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Exists {
                what: "key",
                name: format!("{}/{}", key.agent, key.name),
            }),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    /// An agent's keys, by name.
    pub async fn keys(&self, agent: &str) -> Result<Vec<AgentKey>> {
        sqlx::query("SELECT * FROM agent_keys WHERE agent = $1 ORDER BY name")
            .bind(agent)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(key_from)
            .collect()
    }

    /// Removes one key.
    pub async fn remove_key(&self, agent: &str, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM agent_keys WHERE agent = $1 AND name = $2")
            .bind(agent)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "key",
                name: format!("{agent}/{name}"),
            });
        }
        Ok(())
    }

    /// Records a client-assertion id until `expires_at`. Returns false if
    /// it was already used (a replay), on any replica. Expired ids are
    /// purged on the way.
    pub async fn use_jti(&self, jti: &str, expires_at: i64) -> Result<bool> {
        sqlx::query("DELETE FROM used_jtis WHERE expires_at < $1")
            .bind(now_micros())
            .execute(&self.pool)
            .await?;
        let r = sqlx::query("INSERT INTO used_jtis (jti, expires_at) VALUES ($1, $2)")
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Refuses a public key (by fingerprint) that some agent has already.
async fn key_not_in_use(conn: &mut sqlx::AnyConnection, fingerprint: &str) -> Result<()> {
    let row = sqlx::query("SELECT agent, name FROM agent_keys WHERE fingerprint = $1 LIMIT 1")
        .bind(fingerprint)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Err(StoreError::KeyInUse {
            agent: r.try_get("agent")?,
            key: r.try_get("name")?,
        }),
        None => Ok(()),
    }
}
