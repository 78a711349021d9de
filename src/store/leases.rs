//! One holder at a time of a named job (reconciliation, the token checks) across replicas of one
//! database. PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a
//! connection of its own, so the lock ends exactly when that connection closes — released, or
//! dropped by a crash — and never lingers on a pooled connection. SQLite: a row of `job_leases`
//! taken with a guarded upsert, held until released or until its time runs out (a holder that
//! died frees it then).

use super::{AnyConnection, Pool, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text, Timestamp};

/// A held lease; give it back with [`release`].
pub enum Lease {
    /// The connection holding the advisory lock; closing it frees the lock.
    Postgres(AnyConnection),
    Sqlite {
        name: String,
        holder: String,
    },
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lease::Postgres(_) => f.write_str("Lease::Postgres"),
            Lease::Sqlite { name, holder } => write!(f, "Lease::Sqlite({name}, {holder})"),
        }
    }
}

/// The advisory lock key of a job name: a fixed 64-bit hash (FNV-1a), the same in every
/// replica and every build.
pub fn advisory_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "isv-lifecycle job ".bytes().chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes the lease of `name` unless another holder has it: `None` then. `until` bounds an
/// SQLite lease whose holder never releases it (PostgreSQL's lock needs no bound).
pub fn try_acquire(
    pool: &Pool,
    name: &str,
    holder: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<Option<Lease>, StoreError> {
    match pool.backend() {
        super::Backend::Postgres => {
            let mut conn = pool.dedicated()?;
            let AnyConnection::Postgresql(pg) = &mut conn else {
                return Err(StoreError::Unavailable(
                    "a PostgreSQL pool gave another kind of connection".into(),
                ));
            };
            let row: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                .bind::<BigInt, _>(advisory_key(name))
                .get_result(pg)?;
            Ok(row.locked.then_some(Lease::Postgres(conn)))
        }
        super::Backend::Sqlite => {
            let mut pooled = pool.get()?;
            let _writer = pool.write_guard();
            let AnyConnection::Sqlite(lite) = &mut *pooled else {
                return Err(StoreError::Unavailable(
                    "an SQLite pool gave another kind of connection".into(),
                ));
            };
            // Taken when absent or run out; a live lease of another holder is left alone.
            let taken = diesel::sql_query(
                "INSERT INTO job_leases (name, holder, until) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                 WHERE job_leases.until <= ?",
            )
            .bind::<Text, _>(name)
            .bind::<Text, _>(holder)
            .bind::<Timestamp, _>(until)
            .bind::<Timestamp, _>(now)
            .execute(lite)?;
            Ok((taken == 1).then(|| Lease::Sqlite {
                name: name.to_string(),
                holder: holder.to_string(),
            }))
        }
    }
}

/// Gives the lease back. PostgreSQL: the lock is released and its connection closed (closing
/// alone would free it too).
pub fn release(pool: &Pool, lease: Lease) -> Result<(), StoreError> {
    match lease {
        Lease::Postgres(mut conn) => {
            if let AnyConnection::Postgresql(pg) = &mut conn {
                diesel::sql_query("SELECT pg_advisory_unlock_all()").execute(pg)?;
            }
            Ok(())
        }
        Lease::Sqlite { name, holder } => {
            let mut pooled = pool.get()?;
            let _writer = pool.write_guard();
            let AnyConnection::Sqlite(lite) = &mut *pooled else {
                return Err(StoreError::Unavailable(
                    "an SQLite pool gave another kind of connection".into(),
                ));
            };
            diesel::sql_query("DELETE FROM job_leases WHERE name = ? AND holder = ?")
                .bind::<Text, _>(&name)
                .bind::<Text, _>(&holder)
                .execute(lite)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_keys_are_fixed_and_distinct() {
        assert_eq!(
            advisory_key("reconciliation"),
            advisory_key("reconciliation")
        );
        assert_ne!(
            advisory_key("reconciliation"),
            advisory_key("authorization_checks")
        );
    }
}
