//! Burrow's storage: agents, their keys, admin API keys, FQDN rules,
//! routes, used assertion ids and the audit log, in one schema that runs
//! unchanged on SQLite (the embedded default, a file in the data directory)
//! and PostgreSQL (shared by gateway replicas).
//!
//! # Layout
//! - [`Store`]: open (and migrate) by URL; its operations live with their
//!   aggregate, one file each: `agents.rs` (agents, their keys, used
//!   assertion ids), `admin_keys.rs`, `rules.rs` (FQDN rules), `routes.rs`,
//!   `settings.rs`, `audit.rs` (admin actions) and `traffic.rs` (the
//!   traffic trail, stored in blocks: `docs/audit-blocks.md`).
//! - `migrate.rs`: versioned migrations embedded in the binary, applied in
//!   order inside transactions, recorded in `burrow_schema`.
//! - `tx.rs`: one transaction helper for both databases.
//!
//! Every time is Unix epoch microseconds ([`now_micros`]); every boolean is
//! 0/1, so one query text serves both databases through `sqlx::Any`.

#![forbid(unsafe_code)]

mod admin_keys;
mod agents;
mod audit;
mod migrate;
mod replicas;
mod routes;
mod rules;
mod settings;
mod traffic;
mod tx;

use std::path::Path;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use burrow_wire::egress::Ports;

pub use admin_keys::AdminKey;
pub use agents::{Agent, AgentKey};
pub use audit::AuditEntry;
pub use migrate::SCHEMA_VERSION;
pub use replicas::{Held, Presence, Replica};
pub use routes::{Landing, Route, RouteOrigin};
pub use rules::FqdnRule;
pub use traffic::{MAX_TRAFFIC_OFFSET, Traffic, TrafficFilter, TrafficKind, UnknownTrafficKind};

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
    /// The public key is registered already (to this agent or another).
    #[error(
        "this public key is already registered, as key {key:?} of agent {agent:?}: each agent needs a key pair of its own (make one with burrow keygen --agent-name NAME)"
    )]
    KeyInUse {
        /// The agent that has it.
        agent: String,
        /// Its name there.
        key: String,
    },
    /// Revoking this admin key would leave none that works.
    #[error(
        "admin key {0} is the last one that works: create another first (burrow admin-key create), or replace it (burrow admin-key replace {0})"
    )]
    LastAdminKey(String),
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

/// Database errors seen by this process (every store in it), for the
/// gateway's `burrow_store_errors_total`.
static ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many database errors this process has seen.
pub fn errors_seen() -> u64 {
    ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

/// The store: a connection pool on a migrated database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL, for PostgreSQL's notification listener.
    url: std::sync::Arc<str>,
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
        let store = Store {
            pool,
            backend,
            url: url.as_str().into(),
        };
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

    /// Tells every replica listening ([`Store::listen_changes`]) that
    /// agents, keys, rules or routes changed (PostgreSQL `NOTIFY`; nothing
    /// on SQLite, where only the sweep sees changes).
    pub async fn notify_change(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Listens for [`Store::notify_change`] from any replica (PostgreSQL
    /// `LISTEN`); `None` on SQLite.
    pub async fn listen_changes(&self) -> Result<Option<Changes>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
        l.listen(CHANGES_CHANNEL).await?;
        Ok(Some(Changes(l)))
    }

    /// Whether the database answers a query now (a readiness probe).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The notification channel of [`Store::notify_change`].
const CHANGES_CHANNEL: &str = "burrow_changes";

/// Notifications that something changed, from any replica.
pub struct Changes(sqlx::postgres::PgListener);

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Changes")
    }
}

impl Changes {
    /// The next change. After a lost connection the listener reconnects
    /// (notifications sent meanwhile are missed: the sweep covers them)
    /// and says so as a change, so the caller re-reads.
    pub async fn next(&mut self) -> Result<()> {
        self.0.recv().await?;
        Ok(())
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
