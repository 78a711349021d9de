use diesel::connection::{InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite, a plain `BEGIN` on PostgreSQL.
///
/// SQLite starts a plain transaction as a reader; the first write then has to upgrade it, and if
/// another process (the CLI beside `serve`) committed in between, the upgrade fails at once with
/// "database is locked": the busy timeout is not consulted for a stale snapshot. Taking the write
/// lock at `BEGIN` makes a second writer wait in the busy handler instead. Nested transactions
/// inside `f` are savepoints, as with [`Connection::transaction`].
pub fn write_transaction<T, E>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let AnyConnection::Sqlite(sqlite) = conn else {
        return conn.transaction(f);
    };
    let outermost = matches!(
        AnsiTransactionManager::transaction_manager_status_mut(sqlite).transaction_depth(),
        Ok(None)
    );
    if !outermost {
        return conn.transaction(f);
    }
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            <AnyConnection as TransactionManager<AnyConnection>>::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            match <AnyConnection as TransactionManager<AnyConnection>>::rollback_transaction(conn) {
                // The original error is what the caller needs to see.
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
                Err(rollback) => Err(rollback.into()),
            }
        }
    }
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
    /// False for support commands: an SQLite file that is not there is an error, not created.
    create: bool,
    statements: Arc<StatementCount>,
}

/// Statements the pool's connections sent, counted by diesel's instrumentation: what a unit of
/// work costs in round trips (`/metrics`, and tests that hold the apply path to its budget).
#[derive(Debug, Default)]
pub struct StatementCount {
    /// Every statement run, transaction control (`BEGIN`, `COMMIT`, savepoints) included.
    pub sent: AtomicU64,
    /// Statements prepared and kept in a connection's cache (run again without a parse).
    pub prepared: AtomicU64,
}

impl Manager {
    fn new(target: DbTarget, create: bool, statements: Arc<StatementCount>) -> Self {
        Manager {
            target,
            create,
            statements,
        }
    }

    /// Counts what `conn` sends into `self.statements`.
    fn instrument<C: Connection>(&self, conn: &mut C) {
        let count = Arc::clone(&self.statements);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| match event {
            InstrumentationEvent::FinishQuery { .. } => {
                count.sent.fetch_add(1, Ordering::Relaxed);
            }
            InstrumentationEvent::CacheQuery { .. } => {
                count.prepared.fetch_add(1, Ordering::Relaxed);
            }
            // Connection and transaction events are not statements of their own (a
            // transaction's BEGIN and COMMIT arrive as queries too); the enum is non-exhaustive.
            _ => {}
        });
    }
}

/// An SQLite URI that opens `path` read-write and never creates it.
fn sqlite_existing_uri(path: &str) -> String {
    let mut uri = String::from("file:");
    for c in path.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=rw");
    uri
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        match &self.target {
            DbTarget::Postgres(url) => {
                let mut conn =
                    PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                self.instrument(&mut conn);
                Ok(AnyConnection::Postgresql(conn))
            }
            DbTarget::Sqlite(path) => {
                let mut conn = if self.create {
                    SqliteConnection::establish(path)
                } else {
                    SqliteConnection::establish(&sqlite_existing_uri(path))
                }
                .map_err(r2d2::Error::ConnectionError)?;
                // WAL for concurrent readers; synchronous=FULL because an answered `success` must
                // survive a power cut, not just a crash; busy_timeout so writers queue, not fail.
                // WAL is a property of the file once set, so a connection that must not write
                // (support commands on an existing database) leaves it as `migrate` set it.
                let pragmas = if self.create {
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON;"
                } else {
                    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                };
                conn.batch_execute(pragmas)
                    .map_err(r2d2::Error::QueryError)?;
                self.instrument(&mut conn);
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
    /// For [`Pool::dedicated`].
    target: DbTarget,
    statements: Arc<StatementCount>,
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

    /// What the pool's connections have sent so far.
    pub fn statements(&self) -> &StatementCount {
        &self.statements
    }

    /// A connection of its own, outside the pool, to the same database (never creating it):
    /// for a session-level PostgreSQL advisory lock, which is freed exactly when this
    /// connection closes, never left behind on a pooled connection.
    pub fn dedicated(&self) -> Result<AnyConnection, StoreError> {
        Manager::new(self.target.clone(), false, Arc::clone(&self.statements))
            .connect()
            .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
    }
}

/// The pool for `serve` and `migrate`: an SQLite file that is missing is created (mode 0600; its
/// directory must exist), and an existing one readable by others is narrowed to 0600.
pub fn connect_pool(target: &DbTarget, size: u32) -> Result<Pool, StoreError> {
    if let DbTarget::Sqlite(path) = target {
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::Unavailable(format!(
                "directory {} does not exist (it is not created)",
                dir.display()
            )));
        }
        private_file(path, true)?;
    }
    let pool = build_pool(target, size, true)?;
    if let DbTarget::Sqlite(path) = target {
        // SQLite gives -wal and -shm the main file's mode; narrow any left from older starts.
        for suffix in ["-wal", "-shm"] {
            private_file(std::path::Path::new(&format!("{path}{suffix}")), false)?;
        }
    }
    Ok(pool)
}

/// Creates `path` empty with mode 0600 when `create` and it is missing; narrows an existing
/// file to 0600.
fn private_file(path: &std::path::Path, create: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                    |e| {
                        StoreError::Unavailable(format!(
                            "cannot make {} private: {e}",
                            path.display()
                        ))
                    },
                )?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if create {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| {
                        StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
                    })?;
            }
            Ok(())
        }
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Why support commands cannot use the configured database.
#[derive(Debug, thiserror::Error)]
pub enum ExistingDbError {
    /// The SQLite file is not there; nothing was created.
    #[error("{0}")]
    Missing(String),
    /// The database answers but is not (fully) migrated.
    #[error("{0}")]
    NotMigrated(String),
    #[error("{0}")]
    Unavailable(String),
}

/// The pool for support commands: the database must exist and be fully migrated; nothing is
/// created, migrated or narrowed.
pub fn connect_existing(target: &DbTarget, size: u32) -> Result<Pool, ExistingDbError> {
    if let DbTarget::Sqlite(path) = target
        && !std::path::Path::new(path).is_file()
    {
        return Err(ExistingDbError::Missing(format!(
            "SQLite file {path} does not exist (support commands never create a database; \
             is this the deployment's settings file and directory?)"
        )));
    }
    let pool =
        build_pool(target, size, false).map_err(|e| ExistingDbError::Unavailable(e.to_string()))?;
    let mut conn = pool
        .get()
        .map_err(|e| ExistingDbError::Unavailable(e.to_string()))?;
    let pending = pending_migrations(&mut conn)?;
    if !pending.is_empty() {
        return Err(ExistingDbError::NotMigrated(format!(
            "the database lacks {} migration(s) ({}): run `isv-lifecycle migrate` first",
            pending.len(),
            pending.join(", ")
        )));
    }
    Ok(pool)
}

/// Embedded migrations not recorded as applied, read without writing anything (diesel's own
/// check creates its bookkeeping table when missing).
fn pending_migrations(conn: &mut AnyConnection) -> Result<Vec<String>, ExistingDbError> {
    use diesel::migration::MigrationSource as _;
    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    fn names<DB: diesel::backend::Backend>(
        source: &EmbeddedMigrations,
    ) -> Result<Vec<(String, String)>, ExistingDbError>
    where
        EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
    {
        Ok(source
            .migrations()
            .map_err(|e| ExistingDbError::Unavailable(e.to_string()))?
            .iter()
            .map(|m| (m.name().to_string(), m.name().version().to_string()))
            .collect())
    }
    let query = diesel::sql_query("SELECT version FROM __diesel_schema_migrations");
    let (applied, embedded) = match conn {
        AnyConnection::Postgresql(c) => (
            query.load::<Applied>(c),
            names::<diesel::pg::Pg>(&POSTGRES_MIGRATIONS)?,
        ),
        AnyConnection::Sqlite(c) => (
            query.load::<Applied>(c),
            names::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS)?,
        ),
    };
    let applied: std::collections::HashSet<String> = applied
        .map_err(|_| {
            ExistingDbError::NotMigrated(
                "the database has never been migrated: run `isv-lifecycle migrate` first".into(),
            )
        })?
        .into_iter()
        .map(|a| a.version)
        .collect();
    Ok(embedded
        .into_iter()
        .filter(|(_, version)| !applied.contains(version))
        .map(|(name, _)| name)
        .collect())
}

fn build_pool(target: &DbTarget, size: u32, create: bool) -> Result<Pool, StoreError> {
    let statements = Arc::<StatementCount>::default();
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
        .build(Manager::new(
            target.clone(),
            create,
            Arc::clone(&statements),
        ))
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let backend = target.backend();
    let sqlite_writer = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
    Ok(Pool {
        inner,
        sqlite_writer,
        backend,
        target: target.clone(),
        statements,
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

    /// Two processes on one SQLite file (`serve` and a CLI command): a write transaction that
    /// reads first must already hold the write lock, or a commit by the other process between its
    /// read and its write fails it at once with "database is locked".
    #[test]
    fn a_sqlite_write_transaction_holds_the_write_lock_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.db");
        let open = |busy_ms: u32| {
            let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL;"
            ))
            .unwrap();
            conn
        };
        let mut other = open(0);
        other
            .batch_execute("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let mut ours = AnyConnection::Sqlite(open(0));
        let committed = write_transaction(&mut ours, |conn| {
            diesel::sql_query("SELECT n FROM t").execute(conn)?;
            // The other process cannot slip a write in between our read and our write...
            let slipped = other.batch_execute("INSERT INTO t VALUES (2)");
            assert!(
                matches!(&slipped, Err(e) if e.to_string().contains("locked")),
                "the other writer was not held off: {slipped:?}"
            );
            // ...so ours goes through.
            diesel::sql_query("INSERT INTO t VALUES (3)").execute(conn)
        });
        assert_eq!(committed.unwrap(), 1);
        // A nested write transaction is a savepoint, not a second BEGIN.
        let nested = write_transaction(&mut ours, |conn| {
            write_transaction(conn, |conn| {
                diesel::sql_query("INSERT INTO t VALUES (4)").execute(conn)
            })
        });
        assert_eq!(nested.unwrap(), 1);
        other.batch_execute("INSERT INTO t VALUES (5)").unwrap();
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
