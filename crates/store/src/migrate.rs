//! Versioned migrations, embedded in the binary. Each runs in its own
//! transaction (both databases have transactional DDL), so a failed one
//! leaves the schema at the previous version; `burrow_schema` records what
//! ran. On PostgreSQL an advisory lock keeps replicas starting together
//! from migrating twice.

use sqlx::{AnyPool, Row};

use crate::{Backend, StoreError, now_micros};

/// (version, name, SQL), in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "settings",
        include_str!("../migrations/0002_settings.sql"),
    ),
    (
        3,
        "fqdn_options",
        include_str!("../migrations/0003_fqdn_options.sql"),
    ),
    (
        4,
        "route_options",
        include_str!("../migrations/0004_route_options.sql"),
    ),
    (5, "traffic", include_str!("../migrations/0005_traffic.sql")),
    (
        6,
        "traffic_unkeyed",
        include_str!("../migrations/0006_traffic_unkeyed.sql"),
    ),
    (
        7,
        "traffic_blocks",
        include_str!("../migrations/0007_traffic_blocks.sql"),
    ),
    (
        8,
        "fqdn_ports",
        include_str!("../migrations/0008_fqdn_ports.sql"),
    ),
    (
        9,
        "agent_mappings",
        include_str!("../migrations/0009_agent_mappings.sql"),
    ),
    (
        10,
        "admin_key_use",
        include_str!("../migrations/0010_admin_key_use.sql"),
    ),
    (
        11,
        "replicas",
        include_str!("../migrations/0011_replicas.sql"),
    ),
];

/// The schema version this build brings a database to.
pub const SCHEMA_VERSION: i64 = 11;

/// Arbitrary, fixed: the advisory lock id for migrations.
const PG_LOCK: i64 = 0x6275_7272_6f77;

/// Splits a migration file into statements (on `;` at line ends; the files
/// hold no procedural code).
fn statements(sql: &str) -> impl Iterator<Item = String> + '_ {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(";\n")
        .map(|s| s.trim().trim_end_matches(';').trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(PG_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let result = migrate(&mut conn, SCHEMA_VERSION).await;
    if backend == Backend::Postgres {
        // Unlock even after a failure; a lost connection unlocks by itself.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(PG_LOCK)
            .execute(&mut *conn)
            .await;
    }
    result
}

/// Brings the schema up to version `up_to`.
async fn migrate(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    up_to: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS burrow_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut **conn)
    .await?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM burrow_schema")
        .fetch_one(&mut **conn)
        .await?
        .try_get("v")?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found: current });
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current && m.0 <= up_to) {
        let fail = |source| StoreError::Migration {
            version,
            name,
            source,
        };
        let mut tx = sqlx::Connection::begin(&mut **conn).await.map_err(fail)?;
        for stmt in statements(sql) {
            // The statement is this crate's own embedded migration text.
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        if version == 7 {
            crate::traffic::adopt_v6_rows(&mut tx).await.map_err(fail)?;
        }
        sqlx::query("INSERT INTO burrow_schema (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(name)
            .bind(now_micros())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version, name, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::Row;

    #[tokio::test]
    async fn traffic_records_survive_the_moves_to_an_unkeyed_table_and_to_blocks() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("v5.db").display());
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        super::migrate(&mut conn, 5).await.unwrap();
        sqlx::query(
            "INSERT INTO traffic VALUES ('a1', 7, 'http', 'home', 'r', 'c', 'GET', 'h', '/p', 200, 't', 1, 2, 3)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        super::migrate(&mut conn, 6).await.unwrap();
        let row = sqlx::query("SELECT id, at, path, bytes_out FROM traffic")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("id"), "a1");
        assert_eq!(row.get::<i64, _>("at"), 7);
        assert_eq!(row.get::<String, _>("path"), "/p");
        assert_eq!(row.get::<i64, _>("bytes_out"), 2);
        // Ids no longer need to be unique; the time index is back.
        sqlx::query(
            "INSERT INTO traffic VALUES ('a1', 8, 'http', 'home', 'r', 'c', 'GET', 'h', '/q', 200, 't', 1, 2, 3)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        let indexes: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'traffic'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("name"))
        .collect();
        assert_eq!(indexes, ["traffic_at"]);

        // v7: the records move into blocks (packed: strings once; per
        // record a mask, its time step and the fields that changed), one
        // per route, and the old table goes.
        sqlx::query(
            "INSERT INTO traffic VALUES ('b1', 9, 'egress', 'home', '', 'c', '', '', '', 0, 'git:22', 5, 6, 7)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        super::migrate(&mut conn, super::SCHEMA_VERSION)
            .await
            .unwrap();
        let blocks: Vec<(String, i64, i64, i64, String)> = sqlx::query(
            "SELECT kind, first_at, last_at, record_count, entries FROM traffic_blocks ORDER BY kind",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("kind"),
                r.get("first_at"),
                r.get("last_at"),
                r.get("record_count"),
                r.get("entries"),
            )
        })
        .collect();
        assert_eq!(
            blocks,
            [
                (
                    "egress".to_owned(),
                    9,
                    9,
                    1,
                    r#"[4,9,["c",""],[478,0,1,1,1,1,5,6,7]]"#.to_owned()
                ),
                (
                    "http".to_owned(),
                    7,
                    8,
                    2,
                    r#"[4,7,["c","GET","h","/p","","/q"],[510,0,1,2,3,4,200,1,2,3,8,1,5]]"#
                        .to_owned()
                ),
            ]
        );
        let old = sqlx::query("SELECT name FROM sqlite_master WHERE name = 'traffic'")
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
        assert!(old.is_none(), "the v6 table is gone");
    }

    #[test]
    fn migrations_are_in_order_and_reach_the_schema_version() {
        let versions: Vec<i64> = super::MIGRATIONS.iter().map(|m| m.0).collect();
        let expected: Vec<i64> = (1..=super::SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
        for (_, name, sql) in super::MIGRATIONS {
            assert!(super::statements(sql).count() > 0, "{name} has statements");
        }
    }
}
