//! Marketplace orders, their history (every transition, with actor and cause) and deadlines.

use super::AnyConnection;
use super::schema::{deadlines as dl, order_history as oh, orders as od};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = od)]
pub struct NewOrder {
    pub commodity_order_id: String,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub merchant_pid: Option<String>,
    pub mini_app_id: Option<String>,
    pub item_code: Option<String>,
    pub title: Option<String>,
    pub total_price: Option<String>,
    pub ordered_at: NaiveDateTime,
    pub status_since: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = od)]
pub struct OrderRow {
    pub commodity_order_id: String,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub merchant_pid: Option<String>,
    pub mini_app_id: Option<String>,
    pub item_code: Option<String>,
    pub title: Option<String>,
    pub total_price: Option<String>,
    pub ordered_at: NaiveDateTime,
    pub status_since: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
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
    pub kind: String,
    pub due_at: NaiveDateTime,
    pub state: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dl)]
pub struct DeadlineRow {
    pub kind: String,
    pub due_at: NaiveDateTime,
    pub state: String,
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

pub fn find(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<OrderRow>> {
    db_run!(conn: { od::table.find(id).select(OrderRow::as_select()).first(conn).optional() })
}

pub fn list(
    conn: &mut AnyConnection,
    status: Option<&str>,
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

pub fn add_history(conn: &mut AnyConnection, entry: &NewHistory) -> QueryResult<()> {
    db_run!(conn: { diesel::insert_into(oh::table).values(entry).execute(conn).map(|_| ()) })
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
            .on_conflict((dl::commodity_order_id, dl::kind))
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
