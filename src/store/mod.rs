//! Storage: one diesel code base over SQLite (embedded default) and PostgreSQL (production),
//! behind small repositories. Statements that differ between backends, and every statement that
//! needs a concrete backend, run through `db_run!`, which matches the connection's variant.

pub mod alipay_certs;
pub mod authorizations;
pub mod builds;
pub mod columns;
mod conn;
pub mod dashboard;
pub mod deadlines;
mod error;
pub mod gauges;
pub mod group_commit;
pub mod leases;
pub mod merchant_orders;
pub mod messages;
pub mod operators;
pub mod orders;
pub mod periods;
pub mod prepared;
pub mod queue;
pub mod schema;
pub mod token_checks;

pub use conn::{
    AnyConnection, Backend, DbTarget, ExistingDbError, Pool, PooledConn, StatementCount,
    connect_existing, connect_pool, migrate, run_migrations, write_transaction,
};
pub use error::{StoreError, StoreResult};

/// Runs `$body` with `$conn` bound to the concrete connection (`&mut PgConnection` or
/// `&mut SqliteConnection`), so the same diesel DSL compiles once per backend.
#[macro_export]
macro_rules! db_run {
    ($conn:ident: $body:block) => {
        match $conn {
            $crate::store::AnyConnection::Postgresql($conn) => $body,
            $crate::store::AnyConnection::Sqlite($conn) => $body,
        }
    };
}

/// Timestamps are stored as UTC without a zone.
pub fn to_db_time(t: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDateTime {
    t.naive_utc()
}

pub fn from_db_time(t: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    t.and_utc()
}

/// Scratch databases for the store's own migration tests: an in-memory SQLite, and a PostgreSQL
/// schema of its own that is dropped afterwards.
#[cfg(test)]
pub(crate) mod scratch {
    use super::AnyConnection;
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;

    /// An empty in-memory SQLite database with foreign keys on.
    pub fn sqlite() -> AnyConnection {
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        AnyConnection::Sqlite(conn)
    }

    /// The test PostgreSQL's URL (`TEST_DATABASE_URL`).
    fn postgres_base() -> String {
        std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A second connection to the schema `conn` works in (two workers side by side).
    pub fn another_postgres_connection(conn: &mut AnyConnection) -> AnyConnection {
        use diesel::RunQueryDsl as _;
        #[derive(diesel::QueryableByName)]
        struct Schema {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let AnyConnection::Postgresql(pg) = conn else {
            panic!("a PostgreSQL connection");
        };
        let schema: Schema = diesel::sql_query("SELECT current_schema() AS name")
            .get_result(pg)
            .unwrap();
        let base = postgres_base();
        let sep = if base.contains('?') { '&' } else { '?' };
        AnyConnection::Postgresql(
            diesel::PgConnection::establish(&format!(
                "{base}{sep}options=-csearch_path%3D{}",
                schema.name
            ))
            .unwrap(),
        )
    }

    /// Runs `test` on a connection whose search path is a new, empty schema named after `name`
    /// on the test PostgreSQL (`TEST_DATABASE_URL`), dropped afterwards whatever happens.
    /// `ISV_TEST_SKIP_POSTGRES=1` skips it.
    pub fn in_postgres_schema(name: &str, test: impl FnOnce(&mut AnyConnection)) {
        if std::env::var("ISV_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            return;
        }
        let base = postgres_base();
        let schema = format!(
            "t_{name}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut admin = diesel::PgConnection::establish(&base).unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} (ISV_TEST_SKIP_POSTGRES=1 skips it): {e}")
        });
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        struct Cleanup<'a>(&'a mut diesel::PgConnection, &'a str);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                let _ = self
                    .0
                    .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.1));
            }
        }
        let _cleanup = Cleanup(&mut admin, &schema);
        let sep = if base.contains('?') { '&' } else { '?' };
        let conn = diesel::PgConnection::establish(&format!(
            "{base}{sep}options=-csearch_path%3D{schema}"
        ))
        .unwrap();
        test(&mut AnyConnection::Postgresql(conn));
    }
}
