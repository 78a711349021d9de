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

/// Cancels the pending rows of these kinds on these orders (a renewal moved the expiry, the
/// service ended).
pub fn cancel_timers(
    conn: &mut AnyConnection,
    orders: &[String],
    kinds: &[TimerKind],
) -> QueryResult<usize> {
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
