//! Deadline rows and the scheduler's claim on them. A claim is a lease (`claimed_until`): the
//! replica that claims a row fires it; if it dies, the lease runs out and another one does.

use super::AnyConnection;
use crate::db_run;
use crate::domain::lifecycle::DeadlineState;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamp};

#[derive(Debug, Clone, QueryableByName, PartialEq, Eq)]
pub struct ClaimedDeadline {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub commodity_order_id: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Timestamp)]
    pub due_at: NaiveDateTime,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
}

/// Claims up to `limit` due, unclaimed (or lease-expired) pending deadlines until `lease_until`.
/// PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas claim disjoint rows without waiting.
/// SQLite: a single writer, so the guarded `UPDATE ... RETURNING` is enough.
pub fn claim_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<ClaimedDeadline>> {
    match conn {
        AnyConnection::Postgresql(c) => diesel::sql_query(
            "UPDATE deadlines SET claimed_until = $2 WHERE id IN ( \
                 SELECT id FROM deadlines WHERE state = 'pending' AND due_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until < $1) \
                 ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, commodity_order_id, kind, due_at, attempts",
        )
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(lease_until)
        .bind::<BigInt, _>(limit)
        .load(c),
        AnyConnection::Sqlite(c) => diesel::sql_query(
            "UPDATE deadlines SET claimed_until = ?2 WHERE id IN ( \
                 SELECT id FROM deadlines WHERE state = 'pending' AND due_at <= ?1 \
                 AND (claimed_until IS NULL OR claimed_until < ?1) \
                 ORDER BY due_at, id LIMIT ?3) \
             RETURNING id, commodity_order_id, kind, due_at, attempts",
        )
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(lease_until)
        .bind::<BigInt, _>(limit)
        .load(c),
    }
}

/// The query plan of the claim's inner select, for the benchmark's proof that the index is used.
pub fn explain_claim(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct PgPlan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    #[derive(QueryableByName)]
    struct SqlitePlan {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    let select = "SELECT id FROM deadlines WHERE state = 'pending' AND due_at <= {now} \
                  AND (claimed_until IS NULL OR claimed_until < {now}) ORDER BY due_at, id LIMIT 100";
    match conn {
        AnyConnection::Postgresql(c) => {
            diesel::sql_query(format!("EXPLAIN {}", select.replace("{now}", "$1")))
                .bind::<Timestamp, _>(now)
                .load::<PgPlan>(c)
                .map(|rows| rows.into_iter().map(|r| r.line).collect())
        }
        AnyConnection::Sqlite(c) => diesel::sql_query(format!(
            "EXPLAIN QUERY PLAN {}",
            select.replace("{now}", "?1")
        ))
        .bind::<Timestamp, _>(now)
        .load::<SqlitePlan>(c)
        .map(|rows| rows.into_iter().map(|r| r.detail).collect()),
    }
}

/// Marks a claimed deadline done (`fired` or `cancelled`), guarded on it still being pending.
pub fn finish(conn: &mut AnyConnection, id: i64, state: DeadlineState) -> QueryResult<bool> {
    use super::schema::deadlines as dl;
    db_run!(conn: {
        diesel::update(dl::table.filter(dl::id.eq(id)).filter(dl::state.eq(DeadlineState::Pending)))
            .set((dl::state.eq(state), dl::claimed_until.eq(None::<NaiveDateTime>)))
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// Gives a claimed deadline back to be re-checked from `retry_at` (Alipay unreachable, or it
/// does not agree yet).
pub fn release(conn: &mut AnyConnection, id: i64, retry_at: NaiveDateTime) -> QueryResult<()> {
    use super::schema::deadlines as dl;
    db_run!(conn: {
        diesel::update(dl::table.filter(dl::id.eq(id)))
            .set((dl::claimed_until.eq(Some(retry_at)), dl::attempts.eq(dl::attempts + 1)))
            .execute(conn)
            .map(|_| ())
    })
}
