use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::StoreError;

pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgresql");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Where the database is, read from the URL's scheme ourselves: SQLite would accept any string
/// as a file name, so trying backends in turn could silently create a file named `postgres:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    Postgres(String),
    Sqlite(String),
}

impl DbTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DbTarget::Postgres(url.to_string()))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                Err("sqlite:// needs a file path, e.g. sqlite://data/isv.db".into())
            } else {
                Ok(DbTarget::Sqlite(path.to_string()))
            }
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DbTarget::Postgres(_) => Backend::Postgres,
            DbTarget::Sqlite(_) => Backend::Sqlite,
        }
    }
}

pub struct Manager {
    target: DbTarget,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        match &self.target {
            DbTarget::Postgres(url) => PgConnection::establish(url)
                .map(AnyConnection::Postgresql)
                .map_err(r2d2::Error::ConnectionError),
            DbTarget::Sqlite(path) => {
                let mut conn =
                    SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // WAL for concurrent readers; synchronous=FULL because an answered `success` must
                // survive a power cut, not just a crash; busy_timeout so writers queue, not fail.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

pub type PooledConn = r2d2::PooledConnection<Manager>;

/// The connection pool, plus (for SQLite) the process's write lock. SQLite has one writer at a
/// time; writers that meet in SQLite's busy handler back off with sleeps of up to 100 ms, so
/// writers in this process queue on a mutex instead and never collide inside SQLite.
#[derive(Clone)]
pub struct Pool {
    inner: r2d2::Pool<Manager>,
    sqlite_writer: Option<Arc<Mutex<()>>>,
    backend: Backend,
}

impl Pool {
    pub fn get(&self) -> Result<PooledConn, r2d2::PoolError> {
        self.inner.get()
    }

    /// Held around every write transaction; a no-op on PostgreSQL.
    pub fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        self.sqlite_writer
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

pub fn connect_pool(target: &DbTarget, size: u32) -> Result<Pool, StoreError> {
    if let DbTarget::Sqlite(path) = target {
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
    }
    let inner = r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(5))
        // Connections open on demand: a fresh SQLite file must switch to WAL under one connection
        // before the others arrive.
        .min_idle(Some(1))
        // PostgreSQL connections die with the server (a restart, a failover): each checkout is
        // checked (one `SELECT 1`; checkouts are per batch or per request, not per row), so the
        // pool replaces dead connections and the service recovers by itself once the database
        // is back. An SQLite file does not go away.
        .test_on_check_out(target.backend() == Backend::Postgres)
        .build(Manager {
            target: target.clone(),
        })
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let backend = target.backend();
    let sqlite_writer = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
    Ok(Pool {
        inner,
        sqlite_writer,
        backend,
    })
}

/// A migration that did not apply (the database refused a statement, or was unreachable).
#[derive(Debug, thiserror::Error)]
#[error("migration failed: {0}")]
pub struct MigrationError(String);

impl From<diesel::result::Error> for MigrationError {
    fn from(e: diesel::result::Error) -> Self {
        MigrationError(e.to_string())
    }
}

/// Applies pending migrations; returns how many ran.
pub fn run_migrations(conn: &mut AnyConnection) -> Result<usize, MigrationError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| MigrationError(e.to_string());
    match conn {
        // Replicas starting together on an empty database take turns: a session-level advisory
        // lock (an arbitrary, fixed key) around the migrations.
        AnyConnection::Postgresql(c) => {
            c.batch_execute("SELECT pg_advisory_lock(7218034511)")?;
            let applied = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len());
            let unlocked = c.batch_execute("SELECT pg_advisory_unlock(7218034511)");
            let applied = applied.map_err(failed)?;
            unlocked?;
            Ok(applied)
        }
        AnyConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.len())
            .map_err(failed),
    }
}

pub fn migrate(pool: &Pool) -> Result<usize, MigrationError> {
    let mut conn = pool
        .get()
        .map_err(|e| MigrationError(format!("no database connection: {e}")))?;
    run_migrations(&mut conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_comes_from_the_scheme() {
        assert_eq!(
            DbTarget::parse("sqlite://data/x.db"),
            Ok(DbTarget::Sqlite("data/x.db".into()))
        );
        assert_eq!(
            DbTarget::parse("postgres://h/db").unwrap().backend(),
            Backend::Postgres
        );
        assert!(DbTarget::parse("data/x.db").is_err());
        assert!(DbTarget::parse("sqlite://").is_err());
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let names = |dir: &str| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let root = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            names(&format!("{root}/migrations/postgresql")),
            names(&format!("{root}/migrations/sqlite"))
        );
    }
}
