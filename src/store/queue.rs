//! The one claim of every work queue: the inbox (`gateway_messages`), deadlines and queued
//! queries (`deadlines`), template builds (`template_builds`) and merchant-order deliveries
//! (`merchant_orders`). A claim is a lease: the claimed rows' lease column is set to
//! `lease_until`, and until then no other worker (in this process or another replica) claims
//! them; a worker that dies simply lets its lease run out.
//!
//! The inbox on PostgreSQL is the exception: its work commits in the same transaction as its claim,
//! so it only locks its rows ([`lock`]) and writes no lease.
//!
//! PostgreSQL selects with `FOR UPDATE SKIP LOCKED`, so replicas claim disjoint rows without
//! waiting for each other. SQLite has one writer at a time, so the guarded `UPDATE … RETURNING`
//! alone is enough. The statement text of each queue is fixed, so a backend that prepares
//! statements sees the same text every time.

use super::prepared::Prepared;
use super::{AnyConnection, Backend};
use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};
use diesel::sqlite::Sqlite;

/// A work queue as the claim sees it. Every part is a fixed SQL fragment of our own (never input).
#[derive(Debug)]
pub struct Queue {
    /// For logs: `inbox`, `deadlines`, `builds`, `deliveries`.
    pub name: &'static str,
    pub table: &'static str,
    /// The key column, or a parenthesised list of them for a composite key.
    pub key: &'static str,
    /// Which rows wait for work; `{now}` stands for the claim's time.
    pub waiting: &'static str,
    /// Which waiting rows go first.
    pub order: &'static str,
    /// The lease column: a row whose lease is unset or over may be claimed.
    pub lease: &'static str,
    /// The columns handed back for each claimed row.
    pub returning: &'static str,
}

/// The inbox: stored gateway messages waiting to be applied.
pub const INBOX: Queue = Queue {
    name: "inbox",
    table: "gateway_messages",
    key: "id",
    waiting: "state = 'received' AND next_attempt_at <= {now}",
    order: "next_attempt_at, id",
    lease: "claimed_until",
    returning: "id, app_id, notify_id, kind, raw_body, attempts, received_at",
};

/// Pending deadlines, warnings and queued Alipay queries.
pub const DEADLINES: Queue = Queue {
    name: "deadlines",
    table: "deadlines",
    key: "id",
    waiting: "state = 'pending' AND due_at <= {now}",
    order: "due_at, id",
    lease: "claimed_until",
    returning: "id, commodity_order_id, kind, warning_days, due_at, attempts",
};

/// Template builds at a step that calls Alipay when due (`BuildStep::calls_alipay`).
pub const BUILDS: Queue = Queue {
    name: "builds",
    table: "template_builds",
    key: "id",
    waiting: "step IN ('version_list', 'upload', 'build_query', 'audit_apply', 'await_audit', \
              'online') AND next_attempt_at <= {now}",
    order: "next_attempt_at, id",
    lease: "claimed_until",
    returning: "id, mini_app_id, commodity_order_id, app_version, version_number, template_id, \
                template_version, step, attempts, last_error, alipay_status",
};

/// Merchant orders with a queued sync due for delivery. The order is leased, not the sync: its
/// syncs go out one at a time, in order.
pub const DELIVERIES: Queue = Queue {
    name: "deliveries",
    table: "merchant_orders",
    key: "(tiny_app_id, out_biz_no)",
    waiting: "EXISTS (SELECT 1 FROM merchant_order_syncs s \
              WHERE s.tiny_app_id = merchant_orders.tiny_app_id \
              AND s.out_biz_no = merchant_orders.out_biz_no \
              AND s.state = 'queued' AND s.next_attempt_at <= {now})",
    order: "tiny_app_id, out_biz_no",
    lease: "delivery_lease_until",
    returning: "tiny_app_id, out_biz_no",
};

impl Queue {
    /// The claim statement for `backend`: parameters are now, lease end and limit.
    pub fn claim_sql(&self, backend: Backend) -> String {
        let (now, until, limit, lock) = match backend {
            Backend::Postgres => ("$1", "$2", "$3", " FOR UPDATE SKIP LOCKED"),
            Backend::Sqlite => ("?1", "?2", "?3", ""),
        };
        let Queue {
            table,
            key,
            waiting,
            order,
            lease,
            returning,
            ..
        } = self;
        let columns = key.trim_start_matches('(').trim_end_matches(')');
        let waiting = waiting.replace("{now}", now);
        format!(
            "UPDATE {table} SET {lease} = {until} WHERE {key} IN ( \
               SELECT {columns} FROM {table} WHERE {waiting} \
               AND ({lease} IS NULL OR {lease} < {now}) \
               ORDER BY {order} LIMIT {limit}{lock}) \
             RETURNING {returning}"
        )
    }
}

impl Queue {
    /// The lock of waiting rows for the rest of the caller's transaction, without a lease:
    /// parameters are now and limit. On PostgreSQL a row another transaction holds is skipped
    /// (`FOR UPDATE SKIP LOCKED`); in SQLite the caller's write transaction holds the one write
    /// lock. A row under a lease (a claim by [`claim`]) is skipped as well.
    pub fn lock_sql(&self, backend: Backend) -> String {
        let (now, limit, lock) = match backend {
            Backend::Postgres => ("$1", "$2", " FOR UPDATE SKIP LOCKED"),
            Backend::Sqlite => ("?1", "?2", ""),
        };
        let Queue {
            table,
            waiting,
            order,
            lease,
            returning,
            ..
        } = self;
        let waiting = waiting.replace("{now}", now);
        format!(
            "SELECT {returning} FROM {table} WHERE {waiting} \
             AND ({lease} IS NULL OR {lease} < {now}) \
             ORDER BY {order} LIMIT {limit}{lock}"
        )
    }
}

/// Locks up to `limit` waiting rows of `queue` until the caller's transaction ends
/// ([`Queue::lock_sql`]): the claim of a queue whose work commits in that same transaction, so no
/// lease is written to each row and written away again. Oldest first; a worker that dies lets go
/// of its rows with its connection.
pub fn lock<T>(
    conn: &mut AnyConnection,
    queue: &Queue,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<T>>
where
    T: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
{
    match conn {
        AnyConnection::Postgresql(pg) => {
            use diesel::connection::SimpleConnection as _;
            // Walk the queue's index in order and stop at `limit`. Without this, a young or
            // fast-growing table (statistics that still say it is nearly empty) gets a bitmap scan
            // of every waiting row and a sort of them all, spilled to disk: 30 ms instead of
            // 0.3 ms for 200 of 30,000 waiting messages, on every pass. Local to the transaction,
            // and set back at once for the statements that follow in it.
            pg.batch_execute("SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off")?;
            let locked = Prepared(
                diesel::sql_query(queue.lock_sql(Backend::Postgres))
                    .bind::<Timestamp, _>(now)
                    .bind::<BigInt, _>(limit),
            )
            .load(pg);
            pg.batch_execute(
                "SET LOCAL enable_sort TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT",
            )?;
            locked
        }
        AnyConnection::Sqlite(lite) => Prepared(
            diesel::sql_query(queue.lock_sql(Backend::Sqlite))
                .bind::<Timestamp, _>(now)
                .bind::<BigInt, _>(limit),
        )
        .load(lite),
    }
}

/// Claims up to `limit` waiting rows of `queue` whose lease is unset or over, leasing them until
/// `lease_until`. The rows come back in no particular order (`RETURNING` keeps none).
pub fn claim<T>(
    conn: &mut AnyConnection,
    queue: &Queue,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<T>>
where
    T: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
{
    let sql = queue.claim_sql(match conn {
        AnyConnection::Postgresql(_) => Backend::Postgres,
        AnyConnection::Sqlite(_) => Backend::Sqlite,
    });
    crate::db_run!(conn: {
        diesel::sql_query(sql)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(lease_until)
            .bind::<BigInt, _>(limit)
            .load(conn)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_claims_skip_locked_rows_and_sqlite_claims_under_its_one_writer() {
        let pg = DEADLINES.claim_sql(Backend::Postgres);
        assert!(pg.contains("FOR UPDATE SKIP LOCKED"), "{pg}");
        assert!(
            pg.contains("due_at <= $1") && pg.contains("claimed_until < $1"),
            "{pg}"
        );
        let lite = DEADLINES.claim_sql(Backend::Sqlite);
        assert!(!lite.contains("FOR UPDATE"), "{lite}");
        assert!(
            lite.contains("due_at <= ?1") && lite.contains("LIMIT ?3"),
            "{lite}"
        );
    }

    #[test]
    fn the_inbox_lock_skips_locked_and_leased_rows_oldest_first() {
        let sql = INBOX.lock_sql(Backend::Postgres);
        assert!(sql.starts_with("SELECT id, app_id"), "{sql}");
        assert!(sql.ends_with("LIMIT $2 FOR UPDATE SKIP LOCKED"), "{sql}");
        assert!(
            sql.contains("next_attempt_at <= $1")
                && sql.contains("(claimed_until IS NULL OR claimed_until < $1)")
                && sql.contains("ORDER BY next_attempt_at, id"),
            "{sql}"
        );
        let lite = INBOX.lock_sql(Backend::Sqlite);
        assert!(
            lite.ends_with("LIMIT ?2") && !lite.contains("FOR UPDATE"),
            "{lite}"
        );
    }

    #[test]
    fn the_builds_queue_waits_on_exactly_the_steps_that_call_alipay() {
        use crate::store::builds::BuildStep;
        use crate::store::columns::TextColumn;
        for &step in BuildStep::ALL {
            let listed = BUILDS.waiting.contains(&format!("'{}'", step.as_str()));
            assert_eq!(listed, step.calls_alipay(), "{step}");
        }
    }

    #[test]
    fn a_composite_key_is_selected_as_a_column_list() {
        let sql = DELIVERIES.claim_sql(Backend::Postgres);
        assert!(
            sql.contains("WHERE (tiny_app_id, out_biz_no) IN (")
                && sql.contains("SELECT tiny_app_id, out_biz_no FROM merchant_orders"),
            "{sql}"
        );
        assert!(sql.contains("s.next_attempt_at <= $1"), "{sql}");
    }
}
