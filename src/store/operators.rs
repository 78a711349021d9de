//! Support staff (operators) and their web sessions. A session id is stored only as its
//! SHA-256, so a copy of the database signs no one in.

use super::AnyConnection;
use super::schema::{operator_sessions as os, operators as op};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = op)]
pub struct OperatorRow {
    pub name: String,
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    pub disabled_at: Option<NaiveDateTime>,
}

/// Adds an operator; false when the name is taken.
pub fn insert(
    conn: &mut AnyConnection,
    name: &str,
    password_hash: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::insert_into(op::table)
            .values((op::name.eq(name), op::password_hash.eq(password_hash), op::created_at.eq(now)))
            .on_conflict(op::name)
            .do_nothing()
            .execute(conn)
            .map(|n| n == 1)
    })
}

pub fn find(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<OperatorRow>> {
    db_run!(conn: { op::table.find(name).select(OperatorRow::as_select()).first(conn).optional() })
}

/// Every operator, by name, with the number of live sessions at `now`.
pub fn list(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<Vec<(OperatorRow, i64)>> {
    let operators: Vec<OperatorRow> = db_run!(conn: {
        op::table.order(op::name.asc()).select(OperatorRow::as_select()).load(conn)
    })?;
    let counts: Vec<(String, i64)> = db_run!(conn: {
        os::table
            .filter(os::expires_at.gt(now))
            .group_by(os::operator)
            .select((os::operator, diesel::dsl::count_star()))
            .load(conn)
    })?;
    Ok(operators
        .into_iter()
        .map(|o| {
            let n = counts
                .iter()
                .find(|(name, _)| *name == o.name)
                .map_or(0, |(_, n)| *n);
            (o, n)
        })
        .collect())
}

/// Disables an operator and ends every session of theirs, in one transaction. False when there
/// is no such operator.
pub fn disable(conn: &mut AnyConnection, name: &str, now: NaiveDateTime) -> QueryResult<bool> {
    super::write_transaction(conn, |conn| {
        let found = db_run!(conn: {
            diesel::update(op::table.find(name))
                .set(op::disabled_at.eq(Some(now)))
                .execute(conn)
        })?;
        db_run!(conn: {
            diesel::delete(os::table.filter(os::operator.eq(name))).execute(conn)
        })?;
        Ok(found == 1)
    })
}

pub fn insert_session(
    conn: &mut AnyConnection,
    id_hash: &str,
    operator: &str,
    now: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        // Expired sessions go as new ones come.
        diesel::delete(os::table.filter(os::expires_at.le(now))).execute(conn)?;
        diesel::insert_into(os::table)
            .values((
                os::id_hash.eq(id_hash),
                os::operator.eq(operator),
                os::created_at.eq(now),
                os::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .map(|_| ())
    })
}

/// The operator a live session belongs to: not expired at `now`, operator not disabled.
pub fn session_operator(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<String>> {
    db_run!(conn: {
        os::table
            .inner_join(op::table)
            .filter(os::id_hash.eq(id_hash))
            .filter(os::expires_at.gt(now))
            .filter(op::disabled_at.is_null())
            .select(op::name)
            .first(conn)
            .optional()
    })
}

pub fn delete_session(conn: &mut AnyConnection, id_hash: &str) -> QueryResult<()> {
    db_run!(conn: {
        diesel::delete(os::table.filter(os::id_hash.eq(id_hash))).execute(conn).map(|_| ())
    })
}
