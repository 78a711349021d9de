//! Read models for support's web page.

use super::AnyConnection;
use super::authorizations::AuthorizationRow;
use super::merchant_orders::MerchantOrderRow;
use super::schema::{
    alipay_calls as ac, authorizations as au, deadlines as dl, gateway_messages as gm,
    merchant_orders as mo, orders as od,
};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

pub fn status_counts(conn: &mut AnyConnection) -> QueryResult<Vec<(String, i64)>> {
    db_run!(conn: {
        od::table.group_by(od::status).select((od::status, diesel::dsl::count_star())).order(od::status.asc()).load(conn)
    })
}

/// The implementation and confirmation deadlines closest to costing a refund, soonest first:
/// (order, kind, due_at, status).
pub fn deadlines_at_risk(
    conn: &mut AnyConnection,
    limit: i64,
) -> QueryResult<Vec<(String, String, NaiveDateTime, String)>> {
    db_run!(conn: {
        dl::table
            .inner_join(od::table)
            .filter(dl::state.eq("pending"))
            .filter(dl::kind.eq_any(["implementation", "confirmation"]))
            .filter(od::status.eq_any(["implementing", "awaiting_confirmation"]))
            .order((dl::due_at.asc(), dl::id.asc()))
            .limit(limit)
            .select((dl::commodity_order_id, dl::kind, dl::due_at, od::status))
            .load(conn)
    })
}

pub fn authorizations(conn: &mut AnyConnection, limit: i64) -> QueryResult<Vec<AuthorizationRow>> {
    db_run!(conn: {
        au::table.order(au::updated_at.desc()).limit(limit).select(AuthorizationRow::as_select()).load(conn)
    })
}

pub fn failed_deliveries(
    conn: &mut AnyConnection,
    limit: i64,
) -> QueryResult<Vec<MerchantOrderRow>> {
    db_run!(conn: {
        mo::table.filter(mo::delivery.eq("failed")).order(mo::updated_at.desc()).limit(limit).select(MerchantOrderRow::as_select()).load(conn)
    })
}

/// Stored gateway messages about an order (linked when applied), oldest first:
/// (app_id, notify_id, kind, state, received_at, masked parameters as JSON).
pub fn messages_about(
    conn: &mut AnyConnection,
    commodity_order_id: &str,
    limit: i64,
) -> QueryResult<Vec<(String, String, String, String, NaiveDateTime, String)>> {
    db_run!(conn: {
        gm::table
            .filter(gm::commodity_order_id.eq(commodity_order_id))
            .order(gm::id.asc())
            .limit(limit)
            .select((gm::app_id, gm::notify_id, gm::kind, gm::state, gm::received_at, gm::params))
            .load(conn)
    })
}

/// Records one outbound Alipay call made about an order.
pub fn record_call(
    conn: &mut AnyConnection,
    order_id: &str,
    method: &str,
    result: &str,
    at: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::insert_into(ac::table)
            .values((ac::commodity_order_id.eq(order_id), ac::method.eq(method), ac::result.eq(result), ac::at.eq(at)))
            .execute(conn)
            .map(|_| ())
    })
}

/// The order's Alipay calls, newest first, those older than call `before` when given:
/// (id, at, method, result).
pub fn calls_about(
    conn: &mut AnyConnection,
    order_id: &str,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<(i64, NaiveDateTime, String, String)>> {
    db_run!(conn: {
        let mut query = ac::table
            .filter(ac::commodity_order_id.eq(order_id))
            .order(ac::id.desc())
            .limit(limit)
            .select((ac::id, ac::at, ac::method, ac::result))
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(ac::id.lt(before));
        }
        query.load(conn)
    })
}
