//! Template builds: the pipeline's outbox, one row per version of a merchant's mini program.

use super::AnyConnection;
use super::schema::{authorizations as au, orders as od, template_builds as tb};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Steps that the pipeline job works on; `await_audit` waits for Alipay's audit message, `done`,
/// `rejected` and `failed` are final (a rejected or failed build waits for support's retry).
pub const UPLOAD: &str = "upload";
pub const BUILD_QUERY: &str = "build_query";
pub const AUDIT_APPLY: &str = "audit_apply";
pub const AWAIT_AUDIT: &str = "await_audit";
pub const ONLINE: &str = "online";
pub const DONE: &str = "done";
pub const REJECTED: &str = "rejected";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tb)]
pub struct BuildRow {
    pub id: i64,
    pub mini_app_id: String,
    pub commodity_order_id: String,
    pub app_version: String,
    pub version_number: i32,
    pub template_id: String,
    pub template_version: Option<String>,
    pub step: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Orders that need a first build: implementing, with an active authorization for their mini
/// program, and no build yet.
pub fn orders_needing_a_build(
    conn: &mut AnyConnection,
    limit: i64,
) -> QueryResult<Vec<(String, String, Option<String>)>> {
    db_run!(conn: {
        od::table
            .inner_join(au::table.on(au::auth_app_id.nullable().eq(od::mini_app_id)))
            .filter(od::status.eq("implementing"))
            .filter(au::status.eq("active"))
            .filter(diesel::dsl::not(diesel::dsl::exists(tb::table.filter(tb::commodity_order_id.eq(od::commodity_order_id)))))
            .select((od::commodity_order_id, au::auth_app_id, od::item_code))
            .limit(limit)
            .load(conn)
    })
}

/// Starts a build at the next version of the mini program (versions only ever increase).
/// False when another writer took that version first.
pub fn start(
    conn: &mut AnyConnection,
    mini_app_id: &str,
    commodity_order_id: &str,
    template: (&str, Option<&str>),
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        let last: Option<i32> = tb::table.filter(tb::mini_app_id.eq(mini_app_id)).select(diesel::dsl::max(tb::version_number)).first(conn)?;
        let number = last.unwrap_or(0) + 1;
        diesel::insert_into(tb::table)
            .values((
                tb::mini_app_id.eq(mini_app_id),
                tb::commodity_order_id.eq(commodity_order_id),
                tb::app_version.eq(format!("0.0.{number}")),
                tb::version_number.eq(number),
                tb::template_id.eq(template.0),
                tb::template_version.eq(template.1),
                tb::step.eq(UPLOAD),
                tb::attempts.eq(0),
                tb::next_attempt_at.eq(now),
                tb::created_at.eq(now),
                tb::updated_at.eq(now),
            ))
            .on_conflict((tb::mini_app_id, tb::version_number))
            .do_nothing()
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// Claims due builds for `lease`: a guarded update per row, so two workers never run one step.
pub fn claim_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<BuildRow>> {
    db_run!(conn: {
        let due: Vec<BuildRow> = tb::table
            .filter(tb::step.eq_any([UPLOAD, BUILD_QUERY, AUDIT_APPLY, ONLINE]))
            .filter(tb::next_attempt_at.le(now))
            .filter(tb::claimed_until.is_null().or(tb::claimed_until.lt(now)))
            .order((tb::next_attempt_at.asc(), tb::id.asc()))
            .limit(limit)
            .select(BuildRow::as_select())
            .load(conn)?;
        let mut claimed = Vec::with_capacity(due.len());
        for b in due {
            let n = diesel::update(tb::table.find(b.id).filter(tb::step.eq(&b.step)).filter(tb::claimed_until.is_null().or(tb::claimed_until.lt(now))))
                .set(tb::claimed_until.eq(Some(lease_until)))
                .execute(conn)?;
            if n == 1 {
                claimed.push(b);
            }
        }
        Ok(claimed)
    })
}

/// Moves a build from `from` to `to` (guarded, so a repeated or late result changes nothing).
pub fn advance(
    conn: &mut AnyConnection,
    id: i64,
    from: &str,
    to: &str,
    next_attempt_at: NaiveDateTime,
    note: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::update(tb::table.find(id).filter(tb::step.eq(from)))
            .set((
                tb::step.eq(to),
                tb::attempts.eq(0),
                tb::next_attempt_at.eq(next_attempt_at),
                tb::claimed_until.eq(None::<NaiveDateTime>),
                tb::last_error.eq(note),
                tb::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// Same step again later (polling, or a retry after an error).
pub fn retry(
    conn: &mut AnyConnection,
    id: i64,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    error: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(tb::table.find(id))
            .set((
                tb::attempts.eq(attempts),
                tb::next_attempt_at.eq(next_attempt_at),
                tb::claimed_until.eq(None::<NaiveDateTime>),
                tb::last_error.eq(error),
                tb::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    })
}

/// The build of this mini program and version, if any.
pub fn find_version(
    conn: &mut AnyConnection,
    mini_app_id: &str,
    app_version: &str,
) -> QueryResult<Option<BuildRow>> {
    db_run!(conn: {
        tb::table
            .filter(tb::mini_app_id.eq(mini_app_id))
            .filter(tb::app_version.eq(app_version))
            .select(BuildRow::as_select())
            .first(conn)
            .optional()
    })
}

/// The newest build of a mini program.
pub fn latest(conn: &mut AnyConnection, mini_app_id: &str) -> QueryResult<Option<BuildRow>> {
    db_run!(conn: {
        tb::table
            .filter(tb::mini_app_id.eq(mini_app_id))
            .order(tb::version_number.desc())
            .select(BuildRow::as_select())
            .first(conn)
            .optional()
    })
}
