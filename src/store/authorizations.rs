//! Merchants' authorizations, one per merchant mini program (`auth_app_id`). Tokens are stored
//! sealed (see `crate::seal`), never in clear.

use super::AnyConnection;
use super::schema::authorizations as au;
use crate::db_run;
use crate::domain::lifecycle::AuthorizationStatus;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = au)]
pub struct NewAuthorization {
    pub auth_app_id: String,
    pub user_id: Option<String>,
    pub status: AuthorizationStatus,
    pub auth_time: NaiveDateTime,
    pub auth_time_ms: i64,
    pub app_auth_token: Option<Vec<u8>>,
    pub app_refresh_token: Option<Vec<u8>>,
    pub source_notify_id: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Stores the authorization unless we already hold one at least as new: Alipay asks receivers to
/// make tokens idempotent on `auth_time`, and redeliveries arrive out of order. Returns whether
/// anything changed.
pub fn upsert_if_newer(conn: &mut AnyConnection, new: &NewAuthorization) -> QueryResult<bool> {
    db_run!(conn: {
        let inserted = diesel::insert_into(au::table)
            .values(new)
            .on_conflict(au::auth_app_id)
            .do_nothing()
            .execute(conn)?;
        if inserted == 1 {
            return Ok(true);
        }
        let updated = diesel::update(
            au::table.filter(au::auth_app_id.eq(&new.auth_app_id)).filter(au::auth_time_ms.lt(new.auth_time_ms)),
        )
        .set((
            au::user_id.eq(&new.user_id),
            au::status.eq(&new.status),
            au::auth_time.eq(new.auth_time),
            au::auth_time_ms.eq(new.auth_time_ms),
            au::app_auth_token.eq(&new.app_auth_token),
            au::app_refresh_token.eq(&new.app_refresh_token),
            au::source_notify_id.eq(&new.source_notify_id),
            au::updated_at.eq(new.updated_at),
        ))
        .execute(conn)?;
        Ok(updated == 1)
    })
}

/// An authorization as support sees it: no token columns are ever selected here.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = au)]
pub struct AuthorizationRow {
    pub auth_app_id: String,
    pub user_id: Option<String>,
    pub status: AuthorizationStatus,
    pub auth_time: NaiveDateTime,
    pub auth_time_ms: i64,
    pub source_notify_id: String,
    pub updated_at: NaiveDateTime,
    pub attention: Option<String>,
}

pub fn find(conn: &mut AnyConnection, auth_app_id: &str) -> QueryResult<Option<AuthorizationRow>> {
    db_run!(conn: {
        au::table.find(auth_app_id).select(AuthorizationRow::as_select()).first(conn).optional()
    })
}

/// The sealed token, for the calls made on the merchant's behalf.
pub fn sealed_token(conn: &mut AnyConnection, auth_app_id: &str) -> QueryResult<Option<Vec<u8>>> {
    db_run!(conn: {
        au::table.find(auth_app_id).select(au::app_auth_token).first(conn).optional().map(Option::flatten)
    })
}

/// `alipay.open.auth.appauth.cancelled`: the authorization ends and its tokens are erased.
pub fn cancel(
    conn: &mut AnyConnection,
    auth_app_id: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::update(au::table.find(auth_app_id))
            .set((
                au::status.eq(AuthorizationStatus::Cancelled),
                au::app_auth_token.eq(None::<Vec<u8>>),
                au::app_refresh_token.eq(None::<Vec<u8>>),
                au::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|n| n == 1)
    })
}
