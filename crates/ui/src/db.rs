//! The agent's own database: its mappings, kept across restarts
//! (`ConnectionStrings__DefaultConnection`, `Data Source=PATH`).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use burrow_api::link::Mapping;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// A database error, in words.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused.
    #[error("the agent database {path}: {source}")]
    Sqlite {
        /// The file.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// Not a connection string this agent takes.
    #[error("connection string {0:?}: use \"Data Source=/path/to/file.db\" (SQLite, as Octoporty)")]
    BadConnectionString(String),
    /// A change that names a mapping that is not there, or one that is.
    #[error("{0}")]
    Conflict(String),
}

/// The path in an Octoporty connection string (`Data Source=PATH`; other
/// `key=value` parts are ignored).
pub fn data_source(s: &str) -> Result<PathBuf, DbError> {
    s.split(';')
        .filter_map(|part| part.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("data source"))
        .map(|(_, v)| PathBuf::from(v.trim()))
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| DbError::BadConnectionString(s.to_owned()))
}

/// The mappings table.
#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
    path: String,
}

impl Db {
    /// Opens (creating) the database at `path`, readable by its owner only.
    pub async fn open(path: &Path) -> Result<Db, DbError> {
        let shown = path.display().to_string();
        let err = |source| DbError::Sqlite {
            path: shown.clone(),
            source,
        };
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(err)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(err)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS mappings (
                hostname TEXT PRIMARY KEY,
                target TEXT NOT NULL,
                ignore_certificate_errors INTEGER NOT NULL DEFAULT 0,
                proxy_protocol INTEGER NOT NULL DEFAULT 0,
                enabled INTEGER NOT NULL DEFAULT 1,
                position INTEGER NOT NULL
            )",
        )
        .execute(&pool)
        .await
        .map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Db { pool, path: shown })
    }

    fn err(&self, source: sqlx::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Every mapping, in the order made.
    pub async fn mappings(&self) -> Result<Vec<Mapping>, DbError> {
        sqlx::query("SELECT * FROM mappings ORDER BY position, hostname")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| {
                Ok(Mapping {
                    hostname: r.try_get("hostname")?,
                    target: r.try_get("target")?,
                    ignore_certificate_errors: r.try_get::<i64, _>("ignore_certificate_errors")?
                        != 0,
                    proxy_protocol: r.try_get::<i64, _>("proxy_protocol")? != 0,
                    enabled: r.try_get::<i64, _>("enabled")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    /// Adds a mapping (`replacing`: none) or replaces the one called
    /// `replacing` (which may change its host name).
    pub async fn put(&self, m: &Mapping, replacing: Option<&str>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let taken = sqlx::query("SELECT 1 FROM mappings WHERE hostname = $1")
            .bind(&m.hostname)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .is_some();
        if taken && replacing != Some(m.hostname.as_str()) {
            return Err(DbError::Conflict(format!(
                "a mapping for {} exists already",
                m.hostname
            )));
        }
        let position: i64 = match replacing {
            Some(old) => {
                let row = sqlx::query("SELECT position FROM mappings WHERE hostname = $1")
                    .bind(old)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?
                    .ok_or_else(|| DbError::Conflict(format!("no mapping for {old}")))?;
                sqlx::query("DELETE FROM mappings WHERE hostname = $1")
                    .bind(old)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                row.try_get("position").map_err(|e| self.err(e))?
            }
            None => sqlx::query("SELECT COALESCE(MAX(position), 0) + 1 AS p FROM mappings")
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get("p"))
                .map_err(|e| self.err(e))?,
        };
        insert(&mut tx, m, position)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Removes a mapping.
    pub async fn remove(&self, hostname: &str) -> Result<(), DbError> {
        let n = sqlx::query("DELETE FROM mappings WHERE hostname = $1")
            .bind(hostname)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected();
        if n == 0 {
            return Err(DbError::Conflict(format!("no mapping for {hostname}")));
        }
        Ok(())
    }

    /// Replaces every mapping with `all`, at once.
    pub async fn replace_all(&self, all: &[Mapping]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        sqlx::query("DELETE FROM mappings")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for (i, m) in all.iter().enumerate() {
            insert(&mut tx, m, i64::try_from(i).unwrap_or(i64::MAX))
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// A consistent copy of the database, written to `to`.
    pub async fn backup(&self, to: &Path) -> Result<(), DbError> {
        sqlx::query("VACUUM INTO $1")
            .bind(to.display().to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

async fn insert(
    tx: &mut sqlx::SqliteConnection,
    m: &Mapping,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mappings (hostname, target, ignore_certificate_errors, proxy_protocol, enabled, position) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&m.hostname)
    .bind(&m.target)
    .bind(i64::from(m.ignore_certificate_errors))
    .bind(i64::from(m.proxy_protocol))
    .bind(i64::from(m.enabled))
    .bind(position)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Checks a mapping's fields; returns it normalised, or which field is
/// wrong and why.
pub fn check(m: &Mapping) -> Result<Mapping, (&'static str, String)> {
    let hostname = m.hostname.trim().trim_end_matches('.').to_ascii_lowercase();
    if hostname.is_empty() {
        return Err((
            "hostname",
            "enter the public host name, e.g. app.tunnel.example.com".into(),
        ));
    }
    if let Some(why) = burrow_api::validate::route_name_refusal(&hostname) {
        return Err(("hostname", why));
    }
    let target = m.target.trim().to_owned();
    let usage = || {
        (
            "target",
            format!("{target:?} is not an internal URL: use http://HOST:PORT or https://HOST:PORT"),
        )
    };
    let uri: http::Uri = target.parse().map_err(|_| usage())?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(usage()),
    };
    if uri.host().is_none_or(str::is_empty)
        || uri.path_and_query().is_some_and(|p| p.as_str() != "/")
        || target.contains('@')
    {
        return Err(usage());
    }
    if m.ignore_certificate_errors && !tls {
        return Err((
            "ignore_certificate_errors",
            "only an https:// internal URL has a certificate to ignore".into(),
        ));
    }
    Ok(Mapping {
        hostname,
        target: target.trim_end_matches('/').to_owned(),
        ..m.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &str, target: &str) -> Mapping {
        Mapping {
            hostname: host.into(),
            target: target.into(),
            ignore_certificate_errors: false,
            proxy_protocol: false,
            enabled: true,
        }
    }

    #[test]
    fn connection_strings_name_a_file() {
        assert_eq!(
            data_source("Data Source=/app/data/octoporty.db").expect("path"),
            PathBuf::from("/app/data/octoporty.db")
        );
        assert_eq!(
            data_source("Mode=ReadWrite; data source = x.db ;Cache=Shared").expect("path"),
            PathBuf::from("x.db")
        );
        assert!(data_source("Host=db;Database=x").is_err());
        assert!(data_source("Data Source=").is_err());
    }

    #[test]
    fn fields_are_checked() {
        assert_eq!(
            check(&m(" App.Tunnel.Test. ", "http://10.0.0.5:8080/")).expect("ok"),
            m("app.tunnel.test", "http://10.0.0.5:8080")
        );
        for (host, target, field) in [
            ("", "http://x:1", "hostname"),
            ("..", "http://x:1", "hostname"),
            ("a b.test", "http://x:1", "hostname"),
            ("app.test", "ftp://x:1", "target"),
            ("app.test", "http://x:1/path", "target"),
            ("app.test", "http://user@x:1", "target"),
            ("app.test", "x:1", "target"),
            ("app.test", "", "target"),
        ] {
            assert_eq!(
                check(&m(host, target)).expect_err(host).0,
                field,
                "{host} {target}"
            );
        }
        let insecure_http = Mapping {
            ignore_certificate_errors: true,
            ..m("a.test", "http://x:1")
        };
        assert_eq!(
            check(&insecure_http).expect_err("http").0,
            "ignore_certificate_errors"
        );
    }

    #[tokio::test]
    async fn mappings_last_and_change_in_one_step() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("agent.db");
        let db = Db::open(&path).await.expect("open");
        db.put(&m("a.test", "http://a:1"), None).await.expect("a");
        db.put(&m("b.test", "http://b:1"), None).await.expect("b");
        assert!(matches!(
            db.put(&m("a.test", "http://a:2"), None).await,
            Err(DbError::Conflict(_))
        ));
        // Renaming keeps its place; renaming onto another is refused.
        db.put(&m("c.test", "http://c:1"), Some("a.test"))
            .await
            .expect("rename");
        assert!(
            db.put(&m("b.test", "http://x:1"), Some("c.test"))
                .await
                .is_err()
        );
        assert!(db.remove("nope.test").await.is_err());
        drop(db);
        let db = Db::open(&path).await.expect("reopen");
        let hosts: Vec<String> = db
            .mappings()
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.hostname)
            .collect();
        assert_eq!(hosts, ["c.test", "b.test"]);
        let copy = dir.path().join("copy.db");
        db.backup(&copy).await.expect("backup");
        let restored = Db::open(&copy).await.expect("copy opens");
        assert_eq!(restored.mappings().await.expect("list").len(), 2);
        db.replace_all(&[m("z.test", "http://z:1")])
            .await
            .expect("import");
        assert_eq!(db.mappings().await.expect("list").len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "private");
        }
    }
}
