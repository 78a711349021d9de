//! Statements that PostgreSQL parses and plans once per connection.
//!
//! diesel keeps a prepared statement per connection only for queries it can prove have a bounded
//! number of texts: it never keeps an `UPDATE`, an upsert, a multi-row insert, an insert with an
//! optional value, or `sql_query` text. Every one of those is parsed and planned again on each
//! run; in the mixed gateway bench, planning alone was half of an apply connection's CPU.
//! [`Prepared`] marks one of our own statements as kept: its text is fixed by our code (one
//! text per set of present optional values, per row count of a small batch), so the
//! connection's cache, keyed by the text, stays small. A batch of up to hundreds of rows (the
//! inbox insert) is left out: one text per size, each a large plan.
//!
//! Only a statement that is loaded (`load`, `get_result(s)`) reaches the cache as [`Prepared`]:
//! `execute` hands diesel a reference, whose default answer is "unsafe to cache". Statements
//! that return nothing are therefore written with a `RETURNING` of their key.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// A statement of ours whose text is bounded, kept prepared by the connection (see the module).
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(pub Q);

impl<Q> QueryId for Prepared<Q> {
    // Keyed by its SQL text, not by its Rust type.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

#[cfg(test)]
mod tests {
    use crate::domain::OrderStatus;
    use crate::domain::lifecycle::DeadlineState;
    use crate::store::AnyConnection;
    use crate::store::deadlines::TimerKind;
    use crate::store::orders::{self, NewDeadline, NewHistory, NewOrder};
    use diesel::Connection as _;
    use diesel::connection::InstrumentationEvent;

    use std::sync::{Arc, Mutex};

    /// The apply path's writes (an order, its timer rows, its history, its state) are each
    /// prepared once per connection and then reused, with whatever optional values are absent.
    #[test]
    fn the_apply_writes_are_prepared_once_per_connection_on_postgres() {
        crate::store::scratch::in_postgres_schema("prepared_once", |conn| {
            crate::store::run_migrations(conn).unwrap();
            let prepared = Arc::new(Mutex::new(Vec::<String>::new()));
            let seen = Arc::clone(&prepared);
            let AnyConnection::Postgresql(pg) = conn else {
                panic!("a PostgreSQL connection");
            };
            pg.set_instrumentation(move |event: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                    seen.lock().unwrap().push(sql.to_string());
                }
            });
            let at = chrono::DateTime::from_timestamp(1_718_000_000, 0)
                .unwrap()
                .naive_utc();
            let write = |conn: &mut AnyConnection, id: &str| {
                let order = NewOrder {
                    commodity_order_id: id.into(),
                    status: OrderStatus::AwaitingPayment,
                    cancel_reason: None,
                    merchant_pid: None,
                    mini_app_id: None,
                    item_code: None,
                    title: None,
                    total_price: None,
                    ordered_at: at,
                    status_since: at,
                    created_at: at,
                    updated_at: at,
                    merchant_name: None,
                    isv_app_id: None,
                };
                assert!(orders::insert_new(conn, &order).unwrap().is_some());
                let timer = |kind| NewDeadline {
                    commodity_order_id: id.into(),
                    kind,
                    warning_days: 0,
                    due_at: at,
                    state: DeadlineState::Pending,
                };
                orders::upsert_deadlines(
                    conn,
                    &[timer(TimerKind::Payment), timer(TimerKind::NoticeQuery)],
                )
                .unwrap();
                let entry = NewHistory {
                    commodity_order_id: id.into(),
                    from_status: None,
                    to_status: "awaiting_payment".into(),
                    actor: "alipay".into(),
                    cause: "order_notification".into(),
                    reason: None,
                    inferred: false,
                    at,
                };
                orders::add_history(conn, &entry).unwrap();
            };
            write(conn, "P1");
            let first = prepared.lock().unwrap().clone();
            for text in [
                "INSERT INTO \"orders\"",
                "INSERT INTO \"deadlines\"",
                "INSERT INTO \"order_history\"",
            ] {
                assert!(
                    first.iter().any(|sql| sql.starts_with(text)),
                    "{text} not prepared: {first:?}"
                );
            }
            write(conn, "P2");
            assert_eq!(
                *prepared.lock().unwrap(),
                first,
                "prepared again instead of reused"
            );
        });
    }
}
