//! Gateway replicas and presence: which replica holds links of which
//! agent. Each replica refreshes its rows every second or so with a short
//! expiry; readers ignore expired rows, and a replica's own rows go when
//! it stops (or expire when it dies).

use sqlx::Row;

use crate::{Result, Store, now_micros};

/// A live replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its id (`--replica-id`).
    pub id: String,
    /// Where agents and other replicas reach it (`--advertise-url`);
    /// empty when it advertises none.
    pub advertise_url: String,
    /// It is shutting down: send it nothing new.
    pub draining: bool,
}

/// A replica holding links of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The replica.
    pub replica: Replica,
    /// How many of the agent's links it holds.
    pub links: i64,
}

impl Store {
    /// Says `replica` is alive for `ttl_micros` more.
    pub async fn announce_replica(&self, replica: &Replica, ttl_micros: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (id, advertise_url, draining, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET advertise_url = $2, draining = $3, expires_at = $4",
        )
        .bind(&replica.id)
        .bind(&replica.advertise_url)
        .bind(i64::from(replica.draining))
        .bind(now_micros().saturating_add(ttl_micros))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces `replica`'s presence rows with `agents` (name, links),
    /// alive for `ttl_micros`; expired rows of any replica are swept.
    pub async fn set_presence(
        &self,
        replica: &str,
        agents: &[(String, i64)],
        ttl_micros: i64,
    ) -> Result<()> {
        let now = now_micros();
        let until = now.saturating_add(ttl_micros);
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM presence WHERE replica = $1 OR expires_at < $2")
            .bind(replica)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for (agent, links) in agents {
            sqlx::query(
                "INSERT INTO presence (agent, replica, links, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(agent)
            .bind(replica)
            .bind(*links)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM replicas WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `replica` and its presence (it is stopping).
    pub async fn remove_replica(&self, replica: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM presence WHERE replica = $1")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live replicas, by id.
    pub async fn replicas(&self) -> Result<Vec<Replica>> {
        let rows = sqlx::query(
            "SELECT id, advertise_url, draining FROM replicas WHERE expires_at >= $1 ORDER BY id",
        )
        .bind(now_micros())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Replica {
                    id: r.try_get("id")?,
                    advertise_url: r.try_get("advertise_url")?,
                    draining: r.try_get::<i64, _>("draining")? != 0,
                })
            })
            .collect()
    }

    /// The live replicas holding links of `agent`, most links first.
    pub async fn presence(&self, agent: &str) -> Result<Vec<Presence>> {
        let now = now_micros();
        let rows = sqlx::query(
            "SELECT r.id, r.advertise_url, r.draining, p.links FROM presence p \
             JOIN replicas r ON r.id = p.replica \
             WHERE p.agent = $1 AND p.expires_at >= $2 AND r.expires_at >= $2 \
             ORDER BY p.links DESC, r.id",
        )
        .bind(agent)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Presence {
                    replica: Replica {
                        id: r.try_get("id")?,
                        advertise_url: r.try_get("advertise_url")?,
                        draining: r.try_get::<i64, _>("draining")? != 0,
                    },
                    links: r.try_get("links")?,
                })
            })
            .collect()
    }
}
