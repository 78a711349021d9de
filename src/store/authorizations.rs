//! Merchants' authorizations, one per merchant mini program (`auth_app_id`). Tokens are stored
//! sealed (see `crate::seal`), never in clear.

use super::AnyConnection;
use super::prepared::Prepared;
use super::schema::authorization_cancellations as ac;
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
    /// The ISV app the merchant authorized (the grant's `app_id`); NULL: the primary app.
    pub isv_app_id: Option<String>,
    /// A keyed fingerprint of `app_auth_token` (`Sealer::fingerprint`), so a cancellation naming
    /// a token can be matched to its grant; never the token.
    pub token_fingerprint: Option<String>,
}

/// Writes the app's authorization as the rules decided it (`domain::lifecycle::
/// handle_authorization` decides; this only persists), guarded on the row being as it was read
/// (`expected`: its `auth_time_ms` and status, or absent): false when a concurrent writer changed
/// it first, and the caller decides again.
pub fn save(
    conn: &mut AnyConnection,
    new: &NewAuthorization,
    expected: Option<(i64, AuthorizationStatus)>,
) -> QueryResult<bool> {
    db_run!(conn: {
        let Some((auth_time_ms, status)) = expected else {
            return diesel::insert_into(au::table)
                .values(new)
                .on_conflict(au::auth_app_id)
                .do_nothing()
                .execute(conn)
                .map(|n| n == 1);
        };
        diesel::update(
            au::table
                .filter(au::auth_app_id.eq(&new.auth_app_id))
                .filter(au::auth_time_ms.eq(auth_time_ms))
                .filter(au::status.eq(status)),
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
            au::isv_app_id.eq(&new.isv_app_id),
            au::token_fingerprint.eq(&new.token_fingerprint),
        ))
        .execute(conn)
        .map(|n| n == 1)
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
    pub isv_app_id: Option<String>,
    /// See [`NewAuthorization::token_fingerprint`]: a fingerprint, not a token.
    pub token_fingerprint: Option<String>,
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

/// A new status for the app's authorization (a cancellation), guarded like [`save`].
pub fn set_status(
    conn: &mut AnyConnection,
    auth_app_id: &str,
    expected: (i64, AuthorizationStatus),
    status: AuthorizationStatus,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::update(
            au::table
                .find(auth_app_id)
                .filter(au::auth_time_ms.eq(expected.0))
                .filter(au::status.eq(expected.1)),
        )
        .set((au::status.eq(status), au::updated_at.eq(now)))
        .execute(conn)
        .map(|n| n == 1)
    })
}

/// Erases the app's tokens (the authorization ended): nothing can be called for the merchant.
pub fn erase_tokens(
    conn: &mut AnyConnection,
    auth_app_id: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(au::table.find(auth_app_id))
            .set((
                au::app_auth_token.eq(None::<Vec<u8>>),
                au::app_refresh_token.eq(None::<Vec<u8>>),
                au::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    })
}

/// One `appauth.cancelled` (or an equivalent end, e.g. a token found invalid), as received.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ac)]
pub struct CancellationRow {
    pub token_fingerprint: Option<String>,
    pub cancelled_at: NaiveDateTime,
}

/// Remembers a cancellation of the app's authorization, whatever it ends now: one that arrives
/// before its grant must keep that grant cancelled when it comes (LIFECYCLE.md).
pub fn remember_cancellation(
    conn: &mut AnyConnection,
    auth_app_id: &str,
    token_fingerprint: Option<&str>,
    cancelled_at: NaiveDateTime,
    source: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        Prepared(diesel::insert_into(ac::table)
            .values((
                ac::auth_app_id.eq(auth_app_id),
                ac::token_fingerprint.eq(token_fingerprint),
                ac::cancelled_at.eq(cancelled_at),
                ac::source.eq(source),
                ac::recorded_at.eq(now),
            )))
            .execute(conn)
            .map(|_| ())
    })
}

/// Every cancellation remembered for the app, oldest first.
pub fn cancellations(
    conn: &mut AnyConnection,
    auth_app_id: &str,
) -> QueryResult<Vec<CancellationRow>> {
    db_run!(conn: {
        ac::table
            .filter(ac::auth_app_id.eq(auth_app_id))
            .order((ac::cancelled_at, ac::id))
            .select(CancellationRow::as_select())
            .load(conn)
    })
}
