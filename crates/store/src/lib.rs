//! Burrow's storage: agents, their keys, admin API keys, FQDN rules,
//! routes, used assertion ids and the audit log, in one schema that runs
//! unchanged on SQLite (the embedded default, a file in the data directory)
//! and PostgreSQL (shared by gateway replicas).
//!
//! # Layout
//! - [`Store`]: open (and migrate) by URL, then typed operations.
//! - `migrate.rs`: versioned migrations embedded in the binary, applied in
//!   order inside transactions, recorded in `burrow_schema`.
//! - Row types: [`Agent`], [`AgentKey`], [`AdminKey`], [`FqdnRule`],
//!   [`AuditEntry`]. (The schema has a `routes` table for ingress; its
//!   operations come with that feature.)
//!
//! Every time is Unix epoch microseconds ([`now_micros`]); every boolean is
//! 0/1, so one query text serves both databases through `sqlx::Any`.

#![forbid(unsafe_code)]

mod migrate;
mod traffic;
mod tx;

use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use burrow_wire::egress::Ports;

pub use migrate::SCHEMA_VERSION;
pub use traffic::MAX_TRAFFIC_OFFSET;

/// Most agents a gateway accepts unless configured otherwise (the
/// Octopus Connection Agent's limit).
pub const DEFAULT_MAX_AGENTS: usize = 5;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Storage errors. Messages name what to do; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB (BURROW_DATABASE_URL)"
    )]
    BadUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot open the database ({backend:?}): {source}")]
    Open {
        /// Which backend.
        backend: Backend,
        /// Why.
        source: sqlx::Error,
    },
    /// A migration failed; the schema is left at the last good version.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// Its version.
        version: i64,
        /// Its name.
        name: &'static str,
        /// Why.
        source: sqlx::Error,
    },
    /// The database is newer than this build.
    #[error(
        "the database schema is version {found}, newer than this build's {SCHEMA_VERSION}: upgrade Burrow"
    )]
    TooNew {
        /// The version found.
        found: i64,
    },
    /// A name is taken.
    #[error("{what} {name:?} already exists")]
    Exists {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A name is unknown.
    #[error("no {what} named {name:?}")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The agent limit is reached.
    #[error(
        "this gateway already has {max} agents, its limit: unregister one, or raise the limit with BURROW_MAX_AGENTS"
    )]
    AgentLimit {
        /// The limit.
        max: usize,
    },
    /// The database's disk is full: the change was not made. Changes
    /// succeed again once space is freed; nothing needs restarting.
    #[error(
        "the database's disk is full, so the change was not made: free space where the data directory (or the PostgreSQL server's data) is, then retry ({0})"
    )]
    DiskFull(sqlx::Error),
    /// Any other database error.
    #[error("database error: {0}")]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_disk_full(&e) {
            StoreError::DiskFull(e)
        } else {
            StoreError::Db(e)
        }
    }
}

/// SQLite's `SQLITE_FULL` (13; extended codes keep it in the low byte),
/// PostgreSQL's `disk_full` (53100), or the OS's ENOSPC seen through I/O.
fn is_disk_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code();
            let code = code.as_deref().unwrap_or_default();
            code == "53100"
                || code.parse::<i64>().is_ok_and(|c| c & 0xff == 13)
                || d.message().contains("disk is full")
        }
        sqlx::Error::Io(io) => io.raw_os_error() == Some(28),
        _ => false,
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Now, in Unix epoch microseconds.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn random_id() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

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

/// What a traffic record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrafficKind {
    /// An HTTP request on the edge.
    #[default]
    Http,
    /// A connection through a fixed forward.
    Forward,
    /// A connection through the egress proxy.
    Egress,
}

impl TrafficKind {
    /// The name stored and shown: `http`, `forward`, `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficKind::Http => "http",
            TrafficKind::Forward => "forward",
            TrafficKind::Egress => "egress",
        }
    }
}

impl std::fmt::Display for TrafficKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A traffic kind that is none of `http`, `forward`, `egress`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown traffic kind {0:?}: use http, forward or egress")]
pub struct UnknownTrafficKind(pub String);

impl std::str::FromStr for TrafficKind {
    type Err = UnknownTrafficKind;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "http" => Ok(TrafficKind::Http),
            "forward" => Ok(TrafficKind::Forward),
            "egress" => Ok(TrafficKind::Egress),
            other => Err(UnknownTrafficKind(other.to_owned())),
        }
    }
}

/// One tunneled HTTP request or TCP stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Traffic {
    /// When it started (Unix microseconds).
    pub at: i64,
    /// Edge request, fixed forward or egress proxy.
    pub kind: TrafficKind,
    /// The agent that carried it.
    pub agent: String,
    /// The route (host name) for `http`.
    pub route: String,
    /// The client's address.
    pub client: String,
    /// HTTP method, for `http`.
    pub method: String,
    /// HTTP host, for `http`.
    pub host: String,
    /// HTTP path without the query string, for `http`.
    pub path: String,
    /// HTTP status, for `http` (0 otherwise, or when none came).
    pub status: i64,
    /// Where the agent connected (`host:port` or URL).
    pub target: String,
    /// Bytes from the client.
    pub bytes_in: i64,
    /// Bytes to the client.
    pub bytes_out: i64,
    /// How long it lasted.
    pub duration_ms: i64,
}

/// Which traffic records to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct TrafficFilter {
    /// Only this kind.
    pub kind: Option<TrafficKind>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this HTTP host.
    pub host: Option<String>,
    /// Only this status.
    pub status: Option<i64>,
    /// Not before (Unix microseconds).
    pub since: Option<i64>,
    /// Before (Unix microseconds).
    pub until: Option<i64>,
    /// At most this many (capped at 1000).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

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

/// The insert of one FQDN rule, bound and ready to run.
fn insert_fqdn_rule(rule: &FqdnRule) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
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

/// The store: a connection pool on a migrated database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens `url` (`sqlite://PATH`, created if missing; or
    /// `postgres://…`) and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(redact_url(url)));
        };
        if backend == Backend::Sqlite {
            sqlite_files_private(url);
        }
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let max = match backend {
            // One connection: SQLite has one writer at a time anyway, and a
            // read-then-write transaction on a second connection can fail at
            // once with "database is locked" while the audit writer writes.
            Backend::Sqlite => 1,
            Backend::Postgres => 10,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Write-ahead logging: a commit appends to the log
                        // instead of rewriting pages through a rollback
                        // journal, and readers do not block the writer.
                        // NORMAL syncs at checkpoints: a process crash loses
                        // nothing committed; a power loss may lose the last
                        // commits, never consistency.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open { backend, source })?;
        let store = Store { pool, backend };
        migrate::run(&store.pool, backend).await?;
        Ok(store)
    }

    /// Opens the embedded default: `burrow.db` in `data_dir`.
    pub async fn open_in(data_dir: &Path) -> Result<Self> {
        Self::open(&format!(
            "sqlite://{}",
            data_dir.join("burrow.db").display()
        ))
        .await
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

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

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(i), Some(j)) if j > i => {
            let userinfo = &url[i + 3..j];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..i + 3], &url[j..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;

/// Keeps a SQLite database readable by its owner only: a missing file is
/// created with mode 0600 (SQLite gives its `-wal` and `-shm` files the
/// database file's mode), and an existing one, with its `-wal` and `-shm`,
/// loses group and other permissions. `url` is `sqlite://PATH[?…]` or
/// `sqlite:PATH`; in-memory databases are left alone.
fn sqlite_files_private(url: &str) {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let db = std::path::Path::new(path);
        if !db.exists() {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(db);
        }
        for suffix in ["", "-wal", "-shm"] {
            let f = std::path::PathBuf::from(format!("{path}{suffix}"));
            let Ok(meta) = std::fs::metadata(&f) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode & 0o700)) {
                    Ok(()) => {
                        tracing::info!(path = %f.display(), "database file made private (mode 0600): it holds key hashes and the audit trail")
                    }
                    Err(e) => {
                        tracing::warn!(path = %f.display(), error = %e, "database file is readable by other users and could not be made private; run: chmod 600 on it")
                    }
                }
            }
        }
    }
}
