//! Marketplace orders, their history (every transition, with actor and cause) and deadlines.

use super::AnyConnection;
use super::deadlines::TimerKind;
use super::prepared::Prepared;
use super::schema::{
    deadlines as dl, order_history as oh, orders as od, services as sv, support_tasks as st,
};
use crate::db_run;
use crate::domain::lifecycle::{
    DeadlineState, PaidAtSource, Refund, ServiceStatus, Task, TerminationCause,
};
use crate::domain::{CancelReason, OrderStatus};
use crate::text_column;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// `services.termination_cause`: the cause without support's actor and reason, which have their
/// own columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseCode {
    AuthorizationCancelled,
    OrderCancelled,
    Refunded,
    ImplementationTimeout,
    Support,
    Expired,
}

impl CauseCode {
    pub fn of(cause: &TerminationCause) -> Self {
        match cause {
            TerminationCause::AuthorizationCancelled => CauseCode::AuthorizationCancelled,
            TerminationCause::OrderCancelled => CauseCode::OrderCancelled,
            TerminationCause::Refunded => CauseCode::Refunded,
            TerminationCause::ImplementationTimeout => CauseCode::ImplementationTimeout,
            TerminationCause::Support { .. } => CauseCode::Support,
            TerminationCause::Expired => CauseCode::Expired,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CauseCode::AuthorizationCancelled => "authorization_cancelled",
            CauseCode::OrderCancelled => "order_cancelled",
            CauseCode::Refunded => "refunded",
            CauseCode::ImplementationTimeout => "implementation_timeout",
            CauseCode::Support => "support",
            CauseCode::Expired => "expired",
        }
    }
}

text_column!(
    CauseCode,
    "services.termination_cause",
    CauseCode::as_str,
    [
        CauseCode::AuthorizationCancelled,
        CauseCode::OrderCancelled,
        CauseCode::Refunded,
        CauseCode::ImplementationTimeout,
        CauseCode::Support,
        CauseCode::Expired,
    ]
);

/// `support_tasks.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Open,
    Closed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Closed => "closed",
        }
    }
}

text_column!(
    TaskState,
    "support_tasks.state",
    TaskState::as_str,
    [TaskState::Open, TaskState::Closed]
);

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = od)]
pub struct NewOrder {
    pub commodity_order_id: String,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub merchant_pid: Option<String>,
    pub mini_app_id: Option<String>,
    pub item_code: Option<String>,
    pub title: Option<String>,
    pub total_price: Option<String>,
    pub ordered_at: NaiveDateTime,
    pub status_since: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// The merchant's name from the order notice (`name`), for support's search.
    pub merchant_name: Option<String>,
    /// The ISV app the order notice was addressed to (its `app_id`); NULL: the primary app.
    pub isv_app_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = od)]
pub struct OrderRow {
    pub commodity_order_id: String,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub merchant_pid: Option<String>,
    pub mini_app_id: Option<String>,
    pub item_code: Option<String>,
    pub title: Option<String>,
    pub total_price: Option<String>,
    pub ordered_at: NaiveDateTime,
    pub status_since: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub paid: bool,
    pub audit_passed_at: Option<NaiveDateTime>,
    pub refund: Option<Refund>,
    pub alipay_reading: Option<String>,
    pub reconciled_at: Option<NaiveDateTime>,
    pub merchant_name: Option<String>,
    pub isv_app_id: Option<String>,
    /// When the merchant paid (`paid_at`), and what that time was taken from.
    pub paid_at: Option<NaiveDateTime>,
    pub paid_at_source: Option<PaidAtSource>,
    /// When the current final state was reached by inference (re-checked for 7 days).
    pub inferred_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = oh)]
pub struct NewHistory {
    pub commodity_order_id: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub cause: String,
    pub reason: Option<String>,
    pub inferred: bool,
    pub at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oh)]
pub struct HistoryRow {
    pub id: i64,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub cause: String,
    pub reason: Option<String>,
    pub inferred: bool,
    pub at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dl)]
pub struct NewDeadline {
    pub commodity_order_id: String,
    pub kind: TimerKind,
    /// The days of a `Warning`; 0 for every other kind.
    pub warning_days: i32,
    pub due_at: NaiveDateTime,
    pub state: DeadlineState,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dl)]
pub struct DeadlineRow {
    pub kind: TimerKind,
    /// The days of a `Warning`; 0 for every other kind.
    pub warning_days: i32,
    pub due_at: NaiveDateTime,
    pub state: DeadlineState,
}

/// Inserts the order unless it exists; returns whether it was new.
pub fn insert_if_absent(conn: &mut AnyConnection, order: &NewOrder) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::insert_into(od::table)
            .values(order)
            .on_conflict(od::commodity_order_id)
            .do_nothing()
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// Inserts the order unless it exists; returns the stored row when it was new. PostgreSQL does
/// it in one round trip (`RETURNING`); SQLite, in process, inserts and reads back.
pub fn insert_new(conn: &mut AnyConnection, order: &NewOrder) -> QueryResult<Option<OrderRow>> {
    match conn {
        AnyConnection::Postgresql(pg) => Prepared(
            diesel::insert_into(od::table)
                .values(order)
                .on_conflict(od::commodity_order_id)
                .do_nothing()
                .returning(OrderRow::as_returning()),
        )
        .get_result(pg)
        .optional(),
        AnyConnection::Sqlite(_) => {
            if !insert_if_absent(conn, order)? {
                return Ok(None);
            }
            find(conn, &order.commodity_order_id)
        }
    }
}

pub fn find(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<OrderRow>> {
    db_run!(conn: { od::table.find(id).select(OrderRow::as_select()).first(conn).optional() })
}

pub fn list(
    conn: &mut AnyConnection,
    status: Option<OrderStatus>,
    limit: i64,
) -> QueryResult<Vec<OrderRow>> {
    db_run!(conn: {
        let mut query = od::table.select(OrderRow::as_select()).order(od::created_at.desc()).limit(limit).into_boxed();
        if let Some(status) = status {
            query = query.filter(od::status.eq(status));
        }
        query.load(conn)
    })
}

/// Where a page of the newest-first order list starts: strictly after this (created_at, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub created_at: NaiveDateTime,
    pub commodity_order_id: String,
}

/// What support looks for: a status, and text that is an order id, a merchant PID, a mini
/// program id, or (a prefix of) a merchant name. Every branch is an indexed column.
#[derive(Debug, Clone, Default)]
pub struct OrderSearch {
    pub status: Option<String>,
    pub text: Option<String>,
    /// Only orders with a pending implementation or confirmation deadline.
    pub at_risk: bool,
}

/// One page of orders, newest first (created_at, then id, both descending), after `after`.
pub fn page(
    conn: &mut AnyConnection,
    search: &OrderSearch,
    after: Option<&OrderKey>,
    limit: i64,
) -> QueryResult<Vec<OrderRow>> {
    use super::schema::deadlines as dl;
    // A name prefix: on PostgreSQL `LIKE 'text%'` (indexed with text_pattern_ops, right under
    // any collation); on SQLite, whose LIKE ignores case and so skips the index, the range
    // [text, text + U+10FFFF) in its byte order.
    let postgres = matches!(conn, AnyConnection::Postgresql(_));
    db_run!(conn: {
        let mut query = od::table
            .select(OrderRow::as_select())
            .order((od::created_at.desc(), od::commodity_order_id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(status) = &search.status {
            query = query.filter(od::status.eq(status.clone()));
        }
        if let Some(text) = &search.text {
            let ids = od::commodity_order_id
                .eq(text.clone())
                .or(od::merchant_pid.eq(text.clone()))
                .or(od::mini_app_id.eq(text.clone()));
            query = if postgres {
                let pattern = format!(
                    "{}%",
                    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                );
                query.filter(ids.or(od::merchant_name.like(pattern).escape('\\')))
            } else {
                let upper = format!("{text}\u{10FFFF}");
                query.filter(
                    ids.or(od::merchant_name.ge(text.clone()).and(od::merchant_name.lt(upper))),
                )
            };
        }
        if search.at_risk {
            query = query.filter(diesel::dsl::exists(
                dl::table
                    .filter(dl::commodity_order_id.eq(od::commodity_order_id))
                    .filter(dl::state.eq("pending"))
                    .filter(dl::kind.eq_any(["implementation", "confirmation"])),
            ));
        }
        if let Some(key) = after {
            query = query.filter(
                od::created_at.lt(key.created_at).or(od::created_at
                    .eq(key.created_at)
                    .and(od::commodity_order_id.lt(key.commodity_order_id.clone()))),
            );
        }
        query.load(conn)
    })
}

pub fn add_history(conn: &mut AnyConnection, entry: &NewHistory) -> QueryResult<()> {
    // RETURNING: diesel keeps a statement prepared only when it is loaded, not executed.
    db_run!(conn: {
        Prepared(diesel::insert_into(oh::table).values(entry).returning(oh::id)).get_result::<i64>(conn).map(|_| ())
    })
}

/// The orders of a service: the one order of an order-keyed service, or every order of a mini
/// program.
#[derive(Debug, Clone, Copy)]
pub enum ServiceOrders<'a> {
    Order(&'a str),
    MiniApp(&'a str),
}

impl<'a> ServiceOrders<'a> {
    /// The orders of the service keyed `key`: `order:<id>` for a service of one order (no mini
    /// program known), else the mini program's id.
    pub fn of_service(key: &'a str) -> Self {
        match key.strip_prefix("order:") {
            Some(id) => ServiceOrders::Order(id),
            None => ServiceOrders::MiniApp(key),
        }
    }
}

/// A history row on each order of `orders`, in its current state (from and to), oldest order
/// first: one `INSERT … SELECT`, not a read and a write per order. Returns the rows written.
pub fn note_on_orders(
    conn: &mut AnyConnection,
    orders: ServiceOrders<'_>,
    actor: &str,
    cause: &str,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Text, Timestamp};
    let (by_order, by_app) = match orders {
        ServiceOrders::Order(id) => (Some(id), None),
        ServiceOrders::MiniApp(app) => (None, Some(app)),
    };
    db_run!(conn: {
        let mut source = od::table
            .select((
                od::commodity_order_id,
                od::status.nullable(),
                od::status,
                actor.into_sql::<Text>(),
                cause.into_sql::<Text>(),
                sql::<Bool>("FALSE"),
                at.into_sql::<Timestamp>(),
            ))
            .order(od::created_at.asc())
            .into_boxed();
        if let Some(id) = by_order {
            source = source.filter(od::commodity_order_id.eq(id));
        }
        if let Some(app) = by_app {
            source = source.filter(od::mini_app_id.eq(app));
        }
        Prepared(diesel::insert_into(oh::table)
            .values(source)
            .into_columns((
                oh::commodity_order_id,
                oh::from_status,
                oh::to_status,
                oh::actor,
                oh::cause,
                oh::inferred,
                oh::at,
            ))
            .returning(oh::id))
            .get_results::<i64>(conn)
            .map(|rows| rows.len())
    })
}

pub fn history(conn: &mut AnyConnection, id: &str) -> QueryResult<Vec<HistoryRow>> {
    db_run!(conn: {
        oh::table.filter(oh::commodity_order_id.eq(id)).order(oh::id.asc()).select(HistoryRow::as_select()).load(conn)
    })
}

pub fn add_deadline(conn: &mut AnyConnection, deadline: &NewDeadline) -> QueryResult<()> {
    db_run!(conn: {
        diesel::insert_into(dl::table)
            .values(deadline)
            .on_conflict((dl::commodity_order_id, dl::kind, dl::warning_days))
            .do_nothing()
            .execute(conn)
            .map(|_| ())
    })
}

pub fn deadlines(conn: &mut AnyConnection, id: &str) -> QueryResult<Vec<DeadlineRow>> {
    db_run!(conn: {
        dl::table.filter(dl::commodity_order_id.eq(id)).order(dl::due_at.asc()).select(DeadlineRow::as_select()).load(conn)
    })
}

/// The lifecycle fields of an order after a transition.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = od, treat_none_as_null = true)]
pub struct OrderStateUpdate {
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub status_since: NaiveDateTime,
    pub paid: bool,
    pub audit_passed_at: Option<NaiveDateTime>,
    pub refund: Option<Refund>,
    pub updated_at: NaiveDateTime,
    pub paid_at: Option<NaiveDateTime>,
    pub paid_at_source: Option<PaidAtSource>,
    pub inferred_at: Option<NaiveDateTime>,
}

/// Writes a transition's new state, guarded on the state it was computed from: a concurrent
/// writer that moved the order first makes this return false, and the caller decides again.
pub fn save_state(
    conn: &mut AnyConnection,
    id: &str,
    expected: (OrderStatus, NaiveDateTime, NaiveDateTime),
    update: &OrderStateUpdate,
) -> QueryResult<bool> {
    let (status, since, updated_at) = expected;
    db_run!(conn: {
        Prepared(diesel::update(
            od::table
                .find(id)
                .filter(od::status.eq(status))
                .filter(od::status_since.eq(since))
                .filter(od::updated_at.eq(updated_at)),
        )
        .set(update)
        .returning(od::commodity_order_id))
        .get_results::<String>(conn)
        .map(|saved| saved.len() == 1)
    })
}

/// [`upsert_deadline`] for several timer rows at once, in one statement. No two rows may share
/// (order, kind, `warning_days`): one statement cannot write the same row twice.
pub fn upsert_deadlines(conn: &mut AnyConnection, rows: &[NewDeadline]) -> QueryResult<()> {
    use diesel::upsert::excluded;
    if rows.is_empty() {
        return Ok(());
    }
    match conn {
        // One text per row count; a transition writes a handful of rows at most.
        AnyConnection::Postgresql(pg) => Prepared(
            diesel::insert_into(dl::table)
                .values(rows)
                .on_conflict((dl::commodity_order_id, dl::kind, dl::warning_days))
                .do_update()
                .set((
                    dl::due_at.eq(excluded(dl::due_at)),
                    dl::state.eq(excluded(dl::state)),
                ))
                .returning(dl::id),
        )
        .get_results::<i64>(pg)
        .map(|_| ()),
        // In process a statement costs no round trip (and diesel has no multi-row upsert here).
        AnyConnection::Sqlite(_) => rows.iter().try_for_each(|r| {
            upsert_deadline(
                conn,
                &r.commodity_order_id,
                r.kind,
                r.warning_days,
                r.due_at,
                r.state,
            )
        }),
    }
}

/// Inserts or replaces the order's deadline row of `kind` (and `warning_days`, 0 unless a
/// warning); a change of state or time clears any claim on it.
pub fn upsert_deadline(
    conn: &mut AnyConnection,
    id: &str,
    kind: TimerKind,
    warning_days: i32,
    due_at: NaiveDateTime,
    state: DeadlineState,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::insert_into(dl::table)
            .values((dl::commodity_order_id.eq(id), dl::kind.eq(kind), dl::warning_days.eq(warning_days), dl::due_at.eq(due_at), dl::state.eq(state), dl::attempts.eq(0)))
            .on_conflict((dl::commodity_order_id, dl::kind, dl::warning_days))
            .do_update()
            .set((dl::due_at.eq(due_at), dl::state.eq(state)))
            .execute(conn)
            .map(|_| ())
    })
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sv)]
pub struct ServiceRow {
    pub service_key: String,
    pub status: ServiceStatus,
    pub termination_cause: Option<CauseCode>,
    pub terminated_by: Option<String>,
    pub termination_reason: Option<String>,
    pub since: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = sv, treat_none_as_null = true)]
pub struct ServiceUpdate<'a> {
    pub service_key: &'a str,
    pub status: ServiceStatus,
    pub termination_cause: Option<CauseCode>,
    pub terminated_by: Option<&'a str>,
    pub termination_reason: Option<&'a str>,
    pub since: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub fn find_service(conn: &mut AnyConnection, key: &str) -> QueryResult<Option<ServiceRow>> {
    db_run!(conn: { sv::table.find(key).select(ServiceRow::as_select()).first(conn).optional() })
}

pub fn save_service(conn: &mut AnyConnection, service: &ServiceUpdate<'_>) -> QueryResult<()> {
    db_run!(conn: {
        Prepared(diesel::insert_into(sv::table)
            .values(service)
            .on_conflict(sv::service_key)
            .do_update()
            .set(service)
            .returning(sv::service_key))
            .get_result::<String>(conn)
            .map(|_| ())
    })
}

/// Opens a support task unless one of the same kind is already open for the subject.
pub fn open_task(
    conn: &mut AnyConnection,
    kind: Task,
    subject: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        let open: i64 = st::table
            .filter(st::kind.eq(kind))
            .filter(st::subject.eq(subject))
            .filter(st::state.eq(TaskState::Open))
            .count()
            .get_result(conn)?;
        if open == 0 {
            diesel::insert_into(st::table)
                .values((st::kind.eq(kind), st::subject.eq(subject), st::state.eq(TaskState::Open), st::opened_at.eq(now)))
                .execute(conn)?;
        }
        Ok(())
    })
}

pub fn close_tasks(
    conn: &mut AnyConnection,
    kind: Task,
    subject: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    db_run!(conn: {
        diesel::update(st::table.filter(st::kind.eq(kind)).filter(st::subject.eq(subject)).filter(st::state.eq(TaskState::Open)))
            .set((st::state.eq(TaskState::Closed), st::closed_at.eq(Some(now))))
            .execute(conn)
    })
}

pub fn open_tasks(conn: &mut AnyConnection, subject: &str) -> QueryResult<Vec<Task>> {
    db_run!(conn: {
        st::table.filter(st::subject.eq(subject)).filter(st::state.eq(TaskState::Open)).select(st::kind).load(conn)
    })
}

/// Ids of orders of a mini program, for messages that name only the mini program.
pub fn ids_for_mini_app(conn: &mut AnyConnection, mini_app_id: &str) -> QueryResult<Vec<String>> {
    db_run!(conn: {
        od::table.filter(od::mini_app_id.eq(mini_app_id)).order(od::created_at.asc()).select(od::commodity_order_id).load(conn)
    })
}

/// Ids of orders not yet completed or cancelled, for reconciliation.
pub fn open_ids(conn: &mut AnyConnection, after: &str, limit: i64) -> QueryResult<Vec<String>> {
    db_run!(conn: {
        od::table
            .filter(od::status.ne_all([OrderStatus::Completed, OrderStatus::Cancelled]))
            .filter(od::commodity_order_id.gt(after))
            .order(od::commodity_order_id.asc())
            .limit(limit)
            .select(od::commodity_order_id)
            .load(conn)
    })
}

/// Records what reconciliation read from Alipay for the order, and when.
pub fn record_reconciliation(
    conn: &mut AnyConnection,
    id: &str,
    reading: &str,
    at: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(od::table.find(id))
            .set((od::alipay_reading.eq(Some(reading)), od::reconciled_at.eq(Some(at))))
            .execute(conn)
            .map(|_| ())
    })
}

/// Joins an order to its mini program when the notice did not name one (`order.query`'s
/// `order_items[].mini_app_id`): only an order with none yet. A service the order already had
/// under its own key moves to the mini program's key, unless that one exists. True when joined.
pub fn join_mini_app(conn: &mut AnyConnection, id: &str, mini_app_id: &str) -> QueryResult<bool> {
    let own_key = format!("order:{id}");
    db_run!(conn: {
        let joined = diesel::update(od::table.find(id).filter(od::mini_app_id.is_null()))
            .set(od::mini_app_id.eq(mini_app_id))
            .execute(conn)? == 1;
        if joined {
            let taken = sv::table.find(mini_app_id).count().get_result::<i64>(conn)? > 0;
            if !taken {
                diesel::update(sv::table.find(&own_key))
                    .set(sv::service_key.eq(mini_app_id))
                    .execute(conn)?;
                diesel::update(st::table.filter(st::subject.eq(&own_key)))
                    .set(st::subject.eq(mini_app_id))
                    .execute(conn)?;
            }
        }
        Ok(joined)
    })
}

/// Orders whose final state was reached by inference at or after `since` (reconciliation
/// re-checks them), by id after `after`.
pub fn inferred_ids(
    conn: &mut AnyConnection,
    since: NaiveDateTime,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<String>> {
    db_run!(conn: {
        od::table
            .filter(od::inferred_at.ge(since))
            .filter(od::commodity_order_id.gt(after))
            .order(od::commodity_order_id)
            .select(od::commodity_order_id)
            .limit(limit)
            .load(conn)
    })
}
