//! Merchants' booking orders and their syncs: the per-order outbox delivered to Alipay.

use super::AnyConnection;
use super::schema::{authorizations as au, merchant_order_syncs as ms, merchant_orders as mo};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// `merchant_order_syncs.state`: one sync's way to Alipay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Queued,
    Delivered,
    /// A queued sync overtaken by a newer one of the same order before it was sent.
    Superseded,
    /// Older than what we held when it arrived: stored for the record, never delivered.
    Stale,
    Failed,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Queued => "queued",
            SyncState::Delivered => "delivered",
            SyncState::Superseded => "superseded",
            SyncState::Stale => "stale",
            SyncState::Failed => "failed",
        }
    }
}

crate::text_column!(
    SyncState,
    "merchant_order_syncs.state",
    SyncState::as_str,
    [
        SyncState::Queued,
        SyncState::Delivered,
        SyncState::Superseded,
        SyncState::Stale,
        SyncState::Failed,
    ]
);

/// `merchant_orders.delivery`: where the order's newest sync stands (INTERFACE.md `delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    Delivered,
    Failed,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Queued => "queued",
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
        }
    }
}

crate::text_column!(
    Delivery,
    "merchant_orders.delivery",
    Delivery::as_str,
    [Delivery::Queued, Delivery::Delivered, Delivery::Failed]
);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mo)]
pub struct MerchantOrderRow {
    pub tiny_app_id: String,
    pub out_biz_no: String,
    pub status: String,
    pub order_modified_time: NaiveDateTime,
    pub record: String,
    pub delivery: Delivery,
    pub alipay_order_id: Option<String>,
    pub record_id: Option<String>,
    pub sub_code: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = mo)]
pub struct NewMerchantOrder<'a> {
    pub tiny_app_id: &'a str,
    pub out_biz_no: &'a str,
    pub status: &'a str,
    pub order_modified_time: NaiveDateTime,
    pub record: &'a str,
    pub delivery: Delivery,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ms)]
pub struct NewSync<'a> {
    pub tiny_app_id: &'a str,
    pub out_biz_no: &'a str,
    pub order_modified_time: NaiveDateTime,
    pub status: &'a str,
    pub biz_content: &'a str,
    pub state: SyncState,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub received_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ms)]
pub struct SyncRow {
    pub id: i64,
    pub order_modified_time: NaiveDateTime,
    pub status: String,
    pub biz_content: String,
    pub state: SyncState,
    pub attempts: i32,
}

pub fn find(
    conn: &mut AnyConnection,
    tiny_app_id: &str,
    out_biz_no: &str,
) -> QueryResult<Option<MerchantOrderRow>> {
    db_run!(conn: {
        mo::table.find((tiny_app_id, out_biz_no)).select(MerchantOrderRow::as_select()).first(conn).optional()
    })
}

/// Stores the order's new latest sync. Guarded on the time we read, so a concurrent writer that
/// got there first makes this return false (and the caller decides again).
pub fn save_latest(
    conn: &mut AnyConnection,
    new: &NewMerchantOrder<'_>,
    previous_time: Option<NaiveDateTime>,
) -> QueryResult<bool> {
    db_run!(conn: {
        let changed = match previous_time {
            None => diesel::insert_into(mo::table).values(new).on_conflict((mo::tiny_app_id, mo::out_biz_no)).do_nothing().execute(conn)?,
            Some(previous) => diesel::update(
                mo::table.find((new.tiny_app_id, new.out_biz_no)).filter(mo::order_modified_time.eq(previous)),
            )
            .set((
                mo::status.eq(new.status),
                mo::order_modified_time.eq(new.order_modified_time),
                mo::record.eq(new.record),
                mo::delivery.eq(new.delivery),
                mo::updated_at.eq(new.updated_at),
            ))
            .execute(conn)?,
        };
        Ok(changed == 1)
    })
}

/// Records a sync; false when one with the same order_modified_time is already stored.
pub fn insert_sync(conn: &mut AnyConnection, sync: &NewSync<'_>) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::insert_into(ms::table)
            .values(sync)
            .on_conflict((ms::tiny_app_id, ms::out_biz_no, ms::order_modified_time))
            .do_nothing()
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// A merchant order leased for delivery.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
#[diesel(table_name = mo)]
pub struct LeasedOrder {
    pub tiny_app_id: String,
    pub out_biz_no: String,
}

/// Claims up to `limit` orders with a queued sync due for delivery, leased until `until` (the
/// deliveries queue of `store::queue`): while leased, no other worker delivers that order.
pub fn claim_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<LeasedOrder>> {
    let mut claimed: Vec<LeasedOrder> =
        super::queue::claim(conn, &super::queue::DELIVERIES, now, until, limit)?;
    claimed.sort_unstable_by(|a, b| {
        (&a.tiny_app_id, &a.out_biz_no).cmp(&(&b.tiny_app_id, &b.out_biz_no))
    });
    Ok(claimed)
}

/// Gives a leased order back (its delivery attempt is recorded).
pub fn release(conn: &mut AnyConnection, tiny_app_id: &str, out_biz_no: &str) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(mo::table.find((tiny_app_id, out_biz_no)))
            .set(mo::delivery_lease_until.eq(None::<NaiveDateTime>))
            .execute(conn)
            .map(|_| ())
    })
}

/// The order's syncs, oldest first; only those in `state` when given.
pub fn syncs(
    conn: &mut AnyConnection,
    tiny_app_id: &str,
    out_biz_no: &str,
    state: Option<SyncState>,
) -> QueryResult<Vec<SyncRow>> {
    db_run!(conn: {
        let mut query = ms::table
            .filter(ms::tiny_app_id.eq(tiny_app_id))
            .filter(ms::out_biz_no.eq(out_biz_no))
            .order(ms::order_modified_time.asc())
            .select(SyncRow::as_select())
            .into_boxed();
        if let Some(state) = state {
            query = query.filter(ms::state.eq(state));
        }
        query.load(conn)
    })
}

pub fn set_sync_state(
    conn: &mut AnyConnection,
    id: i64,
    state: SyncState,
    now: NaiveDateTime,
    sub_code: Option<&str>,
    error: Option<&str>,
) -> QueryResult<()> {
    db_run!(conn: {
        let delivered_at = (state == SyncState::Delivered).then_some(now);
        diesel::update(ms::table.find(id))
            .set((ms::state.eq(state), ms::delivered_at.eq(delivered_at), ms::sub_code.eq(sub_code), ms::last_error.eq(error)))
            .execute(conn)
            .map(|_| ())
    })
}

pub fn retry_sync(
    conn: &mut AnyConnection,
    id: i64,
    attempts: i32,
    next: NaiveDateTime,
    sub_code: Option<&str>,
    error: &str,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(ms::table.find(id))
            .set((ms::attempts.eq(attempts), ms::next_attempt_at.eq(next), ms::sub_code.eq(sub_code), ms::last_error.eq(Some(error))))
            .execute(conn)
            .map(|_| ())
    })
}

/// The order's delivery as support and the merchant API see it, when `modified` is still its
/// latest sync (a newer queued one keeps the order `queued`).
#[allow(clippy::too_many_arguments)]
pub fn set_delivery(
    conn: &mut AnyConnection,
    tiny_app_id: &str,
    out_biz_no: &str,
    modified: NaiveDateTime,
    delivery: Delivery,
    alipay_order_id: Option<&str>,
    record_id: Option<&str>,
    sub_code: Option<&str>,
    error: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(mo::table.find((tiny_app_id, out_biz_no)).filter(mo::order_modified_time.eq(modified)))
            .set((mo::delivery.eq(delivery), mo::sub_code.eq(sub_code), mo::last_error.eq(error), mo::updated_at.eq(now)))
            .execute(conn)?;
        if alipay_order_id.is_some() || record_id.is_some() {
            diesel::update(mo::table.find((tiny_app_id, out_biz_no)))
                .set((mo::alipay_order_id.eq(alipay_order_id), mo::record_id.eq(record_id)))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Marks an authorization as needing support's attention (its token was refused).
pub fn flag_authorization(
    conn: &mut AnyConnection,
    auth_app_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(au::table.find(auth_app_id))
            .set((au::attention.eq(Some(reason)), au::updated_at.eq(now)))
            .execute(conn)
            .map(|_| ())
    })
}

/// The order's newest sync (by `order_modified_time`).
pub fn latest_sync(
    conn: &mut AnyConnection,
    tiny_app_id: &str,
    out_biz_no: &str,
) -> QueryResult<Option<SyncRow>> {
    db_run!(conn: {
        ms::table
            .filter(ms::tiny_app_id.eq(tiny_app_id))
            .filter(ms::out_biz_no.eq(out_biz_no))
            .order(ms::order_modified_time.desc())
            .select(SyncRow::as_select())
            .first(conn)
            .optional()
    })
}

/// Queues a failed sync again: attempts 0, due `now`. Guarded on it still being `failed`.
pub fn requeue_failed_sync(
    conn: &mut AnyConnection,
    id: i64,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::update(ms::table.find(id).filter(ms::state.eq(SyncState::Failed)))
            .set((
                ms::state.eq(SyncState::Queued),
                ms::attempts.eq(0),
                ms::next_attempt_at.eq(now),
                ms::delivered_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)
            .map(|n| n == 1)
    })
}
