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
    /// The smallest heartbeat round trip of those links, µs, if measured.
    pub rtt_us: Option<i64>,
    /// When the oldest of them came up (µs since the epoch).
    pub since: i64,
}

/// What a replica says of one agent's links there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The agent.
    pub agent: String,
    /// Its links on the replica.
    pub links: i64,
    /// Their smallest round trip, µs, if measured.
    pub rtt_us: Option<i64>,
    /// When the oldest came up (µs since the epoch).
    pub since: i64,
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

    /// Replaces `replica`'s presence rows with `agents`, alive for
    /// `ttl_micros`; expired rows of any replica are swept.
    pub async fn set_presence(
        &self,
        replica: &str,
        agents: &[Held],
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
        for h in agents {
            sqlx::query(
                "INSERT INTO presence (agent, replica, links, rtt_us, since, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&h.agent)
            .bind(replica)
            .bind(h.links)
            .bind(h.rtt_us.unwrap_or(-1))
            .bind(h.since)
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
        Ok(self
            .presence_where(Some(agent))
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// Every agent's live presence, by agent name then most links first.
    pub async fn presence_all(&self) -> Result<Vec<(String, Presence)>> {
        self.presence_where(None).await
    }

    async fn presence_where(&self, agent: Option<&str>) -> Result<Vec<(String, Presence)>> {
        let now = now_micros();
        let rows = sqlx::query(
            "SELECT p.agent, r.id, r.advertise_url, r.draining, p.links, p.rtt_us, p.since \
             FROM presence p JOIN replicas r ON r.id = p.replica \
             WHERE ($1 = '' OR p.agent = $1) AND p.expires_at >= $2 AND r.expires_at >= $2 \
             ORDER BY p.agent, p.links DESC, r.id",
        )
        .bind(agent.unwrap_or(""))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let rtt: i64 = r.try_get("rtt_us")?;
                Ok((
                    r.try_get("agent")?,
                    Presence {
                        replica: Replica {
                            id: r.try_get("id")?,
                            advertise_url: r.try_get("advertise_url")?,
                            draining: r.try_get::<i64, _>("draining")? != 0,
                        },
                        links: r.try_get("links")?,
                        rtt_us: (rtt >= 0).then_some(rtt),
                        since: r.try_get("since")?,
                    },
                ))
            })
            .collect()
    }
}
