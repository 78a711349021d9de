//! Counts for `/metrics` gauges, taken at scrape time.

use super::AnyConnection;
use super::schema::{
    deadlines as dl, gateway_messages as gm, merchant_order_syncs as ms, template_builds as tb,
};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Default, Clone, Copy)]
pub struct Backlog {
    /// Gateway messages stored and not applied yet.
    pub inbox_pending: i64,
    /// The oldest of those, for the apply lag.
    pub inbox_oldest: Option<NaiveDateTime>,
    /// Deadline, warning and query rows due and not fired.
    pub deadlines_due: i64,
    /// Merchant-order syncs waiting for delivery.
    pub outbox_merchant_syncs: i64,
    /// Template builds between upload and online.
    pub outbox_builds: i64,
}

pub fn backlog(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<Backlog> {
    db_run!(conn: {
        let inbox_pending = gm::table.filter(gm::state.eq("received")).count().get_result(conn)?;
        let inbox_oldest = gm::table.filter(gm::state.eq("received")).select(diesel::dsl::min(gm::received_at)).first(conn)?;
        let deadlines_due = dl::table.filter(dl::state.eq("pending")).filter(dl::due_at.le(now)).count().get_result(conn)?;
        let outbox_merchant_syncs = ms::table.filter(ms::state.eq("queued")).count().get_result(conn)?;
        let outbox_builds = tb::table.filter(tb::step.eq_any(["version_list", "upload", "build_query", "audit_apply", "await_audit", "online"])).count().get_result(conn)?;
        Ok(Backlog { inbox_pending, inbox_oldest, deadlines_due, outbox_merchant_syncs, outbox_builds })
    })
}
