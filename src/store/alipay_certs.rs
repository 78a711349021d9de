//! Downloaded Alipay certificates (certificate mode), shared by every replica.

use super::AnyConnection;
use super::schema::alipay_certs as ac;
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// The PEM text stored for `sn`.
pub fn find(conn: &mut AnyConnection, sn: &str) -> QueryResult<Option<String>> {
    db_run!(conn: {
        ac::table.filter(ac::sn.eq(sn)).select(ac::pem).first(conn).optional()
    })
}

/// Stores a certificate once; a second replica storing the same SN changes nothing.
pub fn insert_if_absent(
    conn: &mut AnyConnection,
    sn: &str,
    pem: &str,
    not_after: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let row = (
        ac::sn.eq(sn),
        ac::pem.eq(pem),
        ac::not_after.eq(not_after),
        ac::created_at.eq(now),
    );
    db_run!(conn: {
        diesel::insert_into(ac::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(conn)
            .map(|n| n > 0)
    })
}

/// Every stored SN (support, tests).
pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
    db_run!(conn: {
        ac::table.order(ac::sn.asc()).select(ac::sn).load(conn)
    })
}
