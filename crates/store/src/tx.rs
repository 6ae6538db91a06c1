//! Write transactions that never hand a doubtful connection back.
//!
//! A connection goes back to the pool only after its `COMMIT` succeeded.
//! On any other way out (an error inside, a failed `COMMIT`, a dropped
//! future) it is closed instead, and the database rolls back what was not
//! committed. Otherwise a connection whose `COMMIT` failed (a full disk)
//! could stay inside a transaction that never ends: every later change
//! would be acknowledged, visible, and gone at the next restart, and other
//! processes would never get the write lock.
//!
//! `BEGIN`/`COMMIT` are sent as plain statements, not through sqlx's
//! transaction manager, whose depth counter is what survives a failed
//! commit and turns the next `begin` into a savepoint.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};

use crate::Backend;

/// An open write transaction on its own pooled connection.
pub(crate) struct Tx {
    conn: PoolConnection<Any>,
    committed: bool,
}

impl Tx {
    /// Begins a transaction. SQLite takes the write lock at once
    /// (`IMMEDIATE`), so a read-then-write transaction cannot fail half way
    /// when another process wrote in between; it waits for the lock instead.
    pub(crate) async fn begin(pool: &AnyPool, backend: Backend) -> Result<Tx, sqlx::Error> {
        let conn = pool.acquire().await?;
        let mut tx = Tx {
            conn,
            committed: false,
        };
        let begin = match backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        sqlx::query(begin).execute(&mut *tx.conn).await?;
        Ok(tx)
    }

    /// Commits; the change is durable once this returns `Ok`.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::query("COMMIT").execute(&mut *self.conn).await?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}
