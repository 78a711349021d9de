//! Service periods: one row per paid order of a mini program (LIFECYCLE.md "Service periods"),
//! and the order's own period facts (`period_day` from its notice, `order.query`'s item dates as
//! received).

use super::AnyConnection;
use super::schema::{deadlines as dl, orders as od, service_periods as sp};
use crate::db_run;
use crate::domain::lifecycle::{DeadlineState, Period, PeriodState};
use crate::store::deadlines::TimerKind;
use crate::store::{from_db_time, to_db_time};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sp)]
pub struct PeriodRow {
    pub commodity_order_id: String,
    pub service_key: String,
    pub starts_at: NaiveDateTime,
    pub ends_at: Option<NaiveDateTime>,
    pub state: PeriodState,
    pub closed_at: Option<NaiveDateTime>,
}

impl PeriodRow {
    pub fn to_domain(&self) -> Period {
        Period {
            commodity_order_id: self.commodity_order_id.clone(),
            starts_at: Some(from_db_time(self.starts_at)),
            ends_at: self.ends_at.map(from_db_time),
            state: self.state,
            closed_at: self.closed_at.map(from_db_time),
        }
    }
}

/// The periods of a service, oldest first.
pub fn for_service(conn: &mut AnyConnection, service_key: &str) -> QueryResult<Vec<PeriodRow>> {
    db_run!(conn: {
        sp::table
            .filter(sp::service_key.eq(service_key))
            .order((sp::starts_at.asc(), sp::commodity_order_id.asc()))
            .select(PeriodRow::as_select())
            .load(conn)
    })
}

pub fn find(conn: &mut AnyConnection, commodity_order_id: &str) -> QueryResult<Option<PeriodRow>> {
    db_run!(conn: {
        sp::table.find(commodity_order_id).select(PeriodRow::as_select()).first(conn).optional()
    })
}

/// Writes an order's period as the rules left it (inserted the first time). A period with no
/// start is nothing to store: only a closing fact is known, and the order's own state keeps it.
pub fn save(
    conn: &mut AnyConnection,
    service_key: &str,
    period: &Period,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let Some(starts_at) = period.starts_at.map(to_db_time) else {
        return Ok(());
    };
    let ends_at = period.ends_at.map(to_db_time);
    let closed_at = period.closed_at.map(to_db_time);
    db_run!(conn: {
        diesel::insert_into(sp::table)
            .values((
                sp::commodity_order_id.eq(&period.commodity_order_id),
                sp::service_key.eq(service_key),
                sp::starts_at.eq(starts_at),
                sp::ends_at.eq(ends_at),
                sp::state.eq(period.state),
                sp::closed_at.eq(closed_at),
                sp::created_at.eq(now),
                sp::updated_at.eq(now),
            ))
            .on_conflict(sp::commodity_order_id)
            .do_update()
            .set((
                sp::starts_at.eq(starts_at),
                sp::ends_at.eq(ends_at),
                sp::state.eq(period.state),
                sp::closed_at.eq(closed_at),
                sp::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    })
}

/// What an order says about its period: the notice's `period_day`, and `order.query`'s item
/// `service_effect_date` / `service_expire_date` as received (Beijing time text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Queryable)]
pub struct OrderPeriodFacts {
    pub period_day: Option<i32>,
    pub service_effect_date: Option<String>,
    pub service_expire_date: Option<String>,
}

pub fn order_facts(
    conn: &mut AnyConnection,
    commodity_order_id: &str,
) -> QueryResult<Option<OrderPeriodFacts>> {
    db_run!(conn: {
        od::table
            .find(commodity_order_id)
            .select((od::period_day, od::service_effect_date, od::service_expire_date))
            .first(conn)
            .optional()
    })
}

pub fn set_period_day(
    conn: &mut AnyConnection,
    commodity_order_id: &str,
    period_day: Option<i32>,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(od::table.find(commodity_order_id))
            .set(od::period_day.eq(period_day))
            .execute(conn)
            .map(|_| ())
    })
}

/// Stores the item dates verbatim; true when they differ from what was stored.
pub fn set_item_dates(
    conn: &mut AnyConnection,
    commodity_order_id: &str,
    effect: Option<&str>,
    expire: Option<&str>,
) -> QueryResult<bool> {
    let Some(stored) = order_facts(conn, commodity_order_id)? else {
        return Ok(false);
    };
    if stored.service_effect_date.as_deref() == effect
        && stored.service_expire_date.as_deref() == expire
    {
        return Ok(false);
    }
    db_run!(conn: {
        diesel::update(od::table.find(commodity_order_id))
            .set((od::service_effect_date.eq(effect), od::service_expire_date.eq(expire)))
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// Cancels the pending rows of these kinds on these orders (the service ended).
pub fn cancel_timers(
    conn: &mut AnyConnection,
    orders: &[String],
    kinds: &[TimerKind],
) -> QueryResult<usize> {
    // A service with no orders has nothing to cancel: no round trip for an empty list.
    if orders.is_empty() {
        return Ok(0);
    }
    db_run!(conn: {
        diesel::update(
            dl::table
                .filter(dl::commodity_order_id.eq_any(orders))
                .filter(dl::kind.eq_any(kinds))
                .filter(dl::state.eq(DeadlineState::Pending)),
        )
        .set((dl::state.eq(DeadlineState::Cancelled), dl::claimed_until.eq(None::<NaiveDateTime>)))
        .execute(conn)
    })
}

/// The row of one kind on one order, if any: (due_at, state).
pub fn timer(
    conn: &mut AnyConnection,
    order: &str,
    kind: TimerKind,
) -> QueryResult<Option<(NaiveDateTime, DeadlineState)>> {
    db_run!(conn: {
        dl::table
            .filter(dl::commodity_order_id.eq(order))
            .filter(dl::kind.eq(kind))
            .filter(dl::warning_days.eq(0))
            .select((dl::due_at, dl::state))
            .first(conn)
            .optional()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conn::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
    use diesel::connection::SimpleConnection as _;
    use diesel_migrations::MigrationHarness as _;

    fn next_migration(conn: &mut AnyConnection) -> Option<String> {
        match conn {
            AnyConnection::Postgresql(c) => c
                .pending_migrations(POSTGRES_MIGRATIONS)
                .unwrap()
                .first()
                .map(|m| m.name().to_string()),
            AnyConnection::Sqlite(c) => c
                .pending_migrations(SQLITE_MIGRATIONS)
                .unwrap()
                .first()
                .map(|m| m.name().to_string()),
        }
    }

    fn run_next(conn: &mut AnyConnection) {
        match conn {
            AnyConnection::Postgresql(c) => c.run_next_migration(POSTGRES_MIGRATIONS).map(|_| ()),
            AnyConnection::Sqlite(c) => c.run_next_migration(SQLITE_MIGRATIONS).map(|_| ()),
        }
        .unwrap();
    }

    /// The migration `periods`: orders paid before it get a period (no end known), closed when
    /// their service had already ended; unpaid and cancelled orders get none. `conn` is an
    /// empty database.
    fn periods_migration_backfills_paid_orders(conn: &mut AnyConnection) {
        while !next_migration(conn).is_some_and(|name| name.ends_with("_periods")) {
            run_next(conn);
        }
        let t = "'2024-06-01 00:00:00'";
        conn.batch_execute(&format!(
            "INSERT INTO orders (commodity_order_id, status, ordered_at, status_since, created_at, updated_at, mini_app_id) VALUES \
                 ('LIVE', 'completed', {t}, '2024-06-03 00:00:00', {t}, {t}, 'APP1'), \
                 ('RENEW', 'implementing', {t}, '2024-06-05 00:00:00', {t}, {t}, 'APP1'), \
                 ('ENDED', 'implementing', {t}, {t}, {t}, {t}, 'APP2'), \
                 ('UNPAID', 'awaiting_payment', {t}, {t}, {t}, {t}, 'APP3'), \
                 ('GONE', 'cancelled', {t}, {t}, {t}, {t}, 'APP4'), \
                 ('NOAPP', 'implementing', {t}, {t}, {t}, {t}, NULL); \
             INSERT INTO services (service_key, status, since, updated_at) VALUES \
                 ('APP1', 'live', {t}, {t}), \
                 ('APP2', 'terminated', '2024-06-09 00:00:00', {t});"
        ))
        .unwrap();
        run_next(conn);
        let app1 = for_service(conn, "APP1").unwrap();
        let rows: Vec<(&str, PeriodState, Option<NaiveDateTime>)> = app1
            .iter()
            .map(|p| (p.commodity_order_id.as_str(), p.state, p.ends_at))
            .collect();
        assert_eq!(
            rows,
            [
                ("LIVE", PeriodState::Active, None),
                ("RENEW", PeriodState::Active, None)
            ]
        );
        assert_eq!(app1[0].starts_at.to_string(), "2024-06-03 00:00:00");
        let ended = find(conn, "ENDED").unwrap().unwrap();
        assert_eq!(ended.state, PeriodState::Cancelled);
        assert_eq!(
            ended.closed_at.map(|t| t.to_string()).as_deref(),
            Some("2024-06-09 00:00:00")
        );
        assert!(find(conn, "UNPAID").unwrap().is_none());
        assert!(find(conn, "GONE").unwrap().is_none());
        assert_eq!(
            find(conn, "NOAPP").unwrap().unwrap().service_key,
            "order:NOAPP"
        );
        // The rest of the migrations run after it.
        while next_migration(conn).is_some() {
            run_next(conn);
        }
    }

    #[test]
    fn periods_migration_backfills_paid_orders_on_sqlite() {
        periods_migration_backfills_paid_orders(&mut crate::store::scratch::sqlite());
    }

    /// The same on PostgreSQL, in a schema of its own (`ISV_TEST_SKIP_POSTGRES=1` skips it).
    #[test]
    fn periods_migration_backfills_paid_orders_on_postgres() {
        crate::store::scratch::in_postgres_schema(
            "periods",
            periods_migration_backfills_paid_orders,
        );
    }
}
