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
pub mod queue;
pub mod schema;
pub mod token_checks;

pub use conn::{
    AnyConnection, Backend, DbTarget, ExistingDbError, Pool, PooledConn, connect_existing,
    connect_pool, migrate, run_migrations,
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
