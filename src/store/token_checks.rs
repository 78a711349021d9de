//! The daily check of merchants' tokens (`alipay.open.auth.token.app.query`): which
//! authorizations to check, and what the last check saw. No token column is read here.

use super::AnyConnection;
use super::schema::authorizations as au;
use crate::db_run;
use crate::domain::lifecycle::AuthorizationStatus;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Active authorizations after `after` (by `auth_app_id`), at most `limit`: pages of the check.
pub fn active_after(conn: &mut AnyConnection, after: &str, limit: i64) -> QueryResult<Vec<String>> {
    db_run!(conn: {
        au::table
            .filter(au::status.eq(AuthorizationStatus::Active))
            .filter(au::auth_app_id.gt(after))
            .order(au::auth_app_id.asc())
            .select(au::auth_app_id)
            .limit(limit)
            .load(conn)
    })
}

/// Records a check of the grant `auth_time_ms` (a newer grant since then is left alone):
/// `result` is `valid`, `invalid`, or what else Alipay said (verbatim); `checked_at` is set when
/// Alipay answered, kept as it was when it could not be asked.
pub fn record(
    conn: &mut AnyConnection,
    auth_app_id: &str,
    auth_time_ms: i64,
    result: &str,
    checked_at: Option<NaiveDateTime>,
) -> QueryResult<bool> {
    db_run!(conn: {
        let row = au::table
            .filter(au::auth_app_id.eq(auth_app_id))
            .filter(au::auth_time_ms.eq(auth_time_ms));
        match checked_at {
            Some(at) => diesel::update(row)
                .set((au::token_check_result.eq(Some(result)), au::token_checked_at.eq(Some(at))))
                .execute(conn),
            None => diesel::update(row)
                .set(au::token_check_result.eq(Some(result)))
                .execute(conn),
        }
        .map(|n| n == 1)
    })
}

/// When the token was last checked with an answer, and what the last check saw.
pub fn last(
    conn: &mut AnyConnection,
    auth_app_id: &str,
) -> QueryResult<Option<(Option<NaiveDateTime>, Option<String>)>> {
    db_run!(conn: {
        au::table
            .find(auth_app_id)
            .select((au::token_checked_at, au::token_check_result))
            .first(conn)
            .optional()
    })
}
