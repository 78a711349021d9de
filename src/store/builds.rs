//! Template builds: the pipeline's outbox, one row per version of a merchant's mini program.

use super::AnyConnection;
use super::schema::{
    authorizations as au, orders as od, service_periods as sp, services as sv,
    template_builds as tb,
};
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// `template_builds.step`. The pipeline job works on `version_list` (Alipay's versions of the
/// mini program decide ours), `upload`, `build_query`, `audit_apply` and `online`;
/// `await_audit` waits for Alipay's audit message and, when none comes, asks
/// `version.detail.query` every `templates.audit_poll_seconds`; `done`, `rejected`, `failed` and
/// `cancelled` are final (a rejected or failed build waits for support's retry; a cancelled one
/// was stopped because its service ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStep {
    VersionList,
    Upload,
    BuildQuery,
    AuditApply,
    AwaitAudit,
    Online,
    Done,
    Rejected,
    Failed,
    Cancelled,
}

impl BuildStep {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStep::VersionList => "version_list",
            BuildStep::Upload => "upload",
            BuildStep::BuildQuery => "build_query",
            BuildStep::AuditApply => "audit_apply",
            BuildStep::AwaitAudit => "await_audit",
            BuildStep::Online => "online",
            BuildStep::Done => "done",
            BuildStep::Rejected => "rejected",
            BuildStep::Failed => "failed",
            BuildStep::Cancelled => "cancelled",
        }
    }

    /// A step the pipeline runs when it is due, by calling Alipay (claimed from the builds
    /// queue): `await_audit` waits for Alipay's message and asks `version.detail.query` once it
    /// is late; the final steps wait for nothing.
    pub fn calls_alipay(self) -> bool {
        match self {
            BuildStep::VersionList
            | BuildStep::Upload
            | BuildStep::BuildQuery
            | BuildStep::AuditApply
            | BuildStep::AwaitAudit
            | BuildStep::Online => true,
            BuildStep::Done | BuildStep::Rejected | BuildStep::Failed | BuildStep::Cancelled => {
                false
            }
        }
    }

    /// Still going: a later step may call Alipay with the merchant's token.
    pub fn in_flight(self) -> bool {
        match self {
            BuildStep::VersionList
            | BuildStep::Upload
            | BuildStep::BuildQuery
            | BuildStep::AuditApply
            | BuildStep::AwaitAudit
            | BuildStep::Online => true,
            BuildStep::Done | BuildStep::Rejected | BuildStep::Failed | BuildStep::Cancelled => {
                false
            }
        }
    }
}

impl std::fmt::Display for BuildStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::text_column!(
    BuildStep,
    "template_builds.step",
    BuildStep::as_str,
    [
        BuildStep::VersionList,
        BuildStep::Upload,
        BuildStep::BuildQuery,
        BuildStep::AuditApply,
        BuildStep::AwaitAudit,
        BuildStep::Online,
        BuildStep::Done,
        BuildStep::Rejected,
        BuildStep::Failed,
        BuildStep::Cancelled,
    ]
);

const IN_FLIGHT: [BuildStep; 6] = [
    BuildStep::VersionList,
    BuildStep::Upload,
    BuildStep::BuildQuery,
    BuildStep::AuditApply,
    BuildStep::AwaitAudit,
    BuildStep::Online,
];

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = tb)]
pub struct BuildRow {
    pub id: i64,
    pub mini_app_id: String,
    pub commodity_order_id: String,
    pub app_version: String,
    pub version_number: i32,
    pub template_id: String,
    pub template_version: Option<String>,
    pub step: BuildStep,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The last `status` `version.detail.query` gave for this version, verbatim.
    pub alipay_status: Option<String>,
}

/// Orders that need a build: implementing, with an active authorization for their mini program,
/// no build yet, a service that is `provisioning` or `live` (an ended one gets none), and no
/// other build of the mini program for an order whose period still runs that is underway or
/// waiting for support (anything but `done` or `cancelled`). So one build runs at a time: a
/// renewal paid while the first build runs waits for it, and one paid on a live service gets
/// its own build (its order reaches 待商家确认 only through an audit, like the first); a re-order
/// after the service ended (the old build cancelled, the old period closed) starts one at once.
pub fn orders_needing_a_build(
    conn: &mut AnyConnection,
    limit: i64,
) -> QueryResult<Vec<(String, String, Option<String>)>> {
    db_run!(conn: {
        od::table
            .inner_join(au::table.on(au::auth_app_id.nullable().eq(od::mini_app_id)))
            .inner_join(sv::table.on(sv::service_key.nullable().eq(od::mini_app_id)))
            .filter(od::status.eq(crate::domain::OrderStatus::Implementing))
            .filter(au::status.eq(crate::domain::lifecycle::AuthorizationStatus::Active))
            .filter(sv::status.eq_any([
                crate::domain::lifecycle::ServiceStatus::Provisioning,
                crate::domain::lifecycle::ServiceStatus::Live,
            ]))
            .filter(diesel::dsl::not(diesel::dsl::exists(tb::table.filter(tb::commodity_order_id.eq(od::commodity_order_id)))))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                tb::table
                    .inner_join(sp::table.on(sp::commodity_order_id.eq(tb::commodity_order_id)))
                    .filter(tb::mini_app_id.nullable().eq(od::mini_app_id))
                    .filter(tb::step.ne_all([BuildStep::Cancelled, BuildStep::Done]))
                    .filter(sp::state.eq(crate::domain::lifecycle::PeriodState::Active)),
            )))
            .select((od::commodity_order_id, au::auth_app_id, od::item_code))
            .limit(limit)
            .load(conn)
    })
}

/// Starts the mini program's next build (`version_number` only ever increases) at
/// `app_version`, the version planned until Alipay's own list is read (`version_list`).
/// False when another writer started that build first.
pub fn start(
    conn: &mut AnyConnection,
    mini_app_id: &str,
    commodity_order_id: &str,
    template: (&str, Option<&str>),
    app_version: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        let last: Option<i32> = tb::table.filter(tb::mini_app_id.eq(mini_app_id)).select(diesel::dsl::max(tb::version_number)).first(conn)?;
        let number = last.unwrap_or(0) + 1;
        diesel::insert_into(tb::table)
            .values((
                tb::mini_app_id.eq(mini_app_id),
                tb::commodity_order_id.eq(commodity_order_id),
                tb::app_version.eq(app_version),
                tb::version_number.eq(number),
                tb::template_id.eq(template.0),
                tb::template_version.eq(template.1),
                tb::step.eq(BuildStep::VersionList),
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

/// Claims up to `limit` builds whose step calls Alipay and is due, leased until `lease_until`
/// (the builds queue of `store::queue`), oldest build first.
pub fn claim_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<BuildRow>> {
    let mut claimed: Vec<BuildRow> =
        super::queue::claim(conn, &super::queue::BUILDS, now, lease_until, limit)?;
    claimed.sort_unstable_by_key(|b| b.id);
    Ok(claimed)
}

/// Moves a build from `from` to `to` (guarded, so a repeated or late result changes nothing).
pub fn advance(
    conn: &mut AnyConnection,
    id: i64,
    from: BuildStep,
    to: BuildStep,
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

/// Same step again later (polling, or a retry after an error). Guarded on the step: a build
/// that moved meanwhile (an audit message arrived during a `version.detail.query`) keeps its
/// new step's schedule.
pub fn retry(
    conn: &mut AnyConnection,
    id: i64,
    step: BuildStep,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    error: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(tb::table.find(id).filter(tb::step.eq(step)))
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

/// The version Alipay's list decided for a build still at `version_list`, moving it on to
/// `upload` (guarded like every step change). A version another build of the mini program
/// already has is refused by nobody here: the caller raised it past every one of ours.
pub fn set_version(
    conn: &mut AnyConnection,
    id: i64,
    app_version: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    db_run!(conn: {
        diesel::update(tb::table.find(id).filter(tb::step.eq(BuildStep::VersionList)))
            .set((
                tb::app_version.eq(app_version),
                tb::step.eq(BuildStep::Upload),
                tb::attempts.eq(0),
                tb::next_attempt_at.eq(now),
                tb::claimed_until.eq(None::<NaiveDateTime>),
                tb::last_error.eq(None::<String>),
                tb::updated_at.eq(now),
            ))
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// What `version.detail.query` said of a build, verbatim.
pub fn set_alipay_status(
    conn: &mut AnyConnection,
    id: i64,
    status: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(tb::table.find(id))
            .set((tb::alipay_status.eq(Some(status)), tb::updated_at.eq(now)))
            .execute(conn)
            .map(|_| ())
    })
}

/// Every version we have built or are building for the mini program, with its build's id.
pub fn versions(conn: &mut AnyConnection, mini_app_id: &str) -> QueryResult<Vec<(i64, String)>> {
    db_run!(conn: {
        tb::table
            .filter(tb::mini_app_id.eq(mini_app_id))
            .select((tb::id, tb::app_version))
            .load(conn)
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

/// Stops every in-flight build of a mini program (its service ended): `step = cancelled`, so no
/// further upload, build.query, audit.apply or online call is made. Returns the versions stopped
/// with their orders;
/// a second call stops nothing.
pub fn cancel_in_flight(
    conn: &mut AnyConnection,
    mini_app_id: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<(String, String)>> {
    let in_flight = db_run!(conn: {
        tb::table
            .filter(tb::mini_app_id.eq(mini_app_id))
            .filter(tb::step.eq_any(IN_FLIGHT))
            .select((tb::id, tb::app_version, tb::commodity_order_id))
            .load(conn)?
    });
    stop_in_flight(conn, in_flight, "stopped: the service ended", now)
}

/// Stops the in-flight build of one order (a renewal refunded or cancelled while the service
/// runs on): the same as [`cancel_in_flight`], for that order's build only.
pub fn cancel_order_build(
    conn: &mut AnyConnection,
    commodity_order_id: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<(String, String)>> {
    let in_flight = db_run!(conn: {
        tb::table
            .filter(tb::commodity_order_id.eq(commodity_order_id))
            .filter(tb::step.eq_any(IN_FLIGHT))
            .select((tb::id, tb::app_version, tb::commodity_order_id))
            .load(conn)?
    });
    stop_in_flight(
        conn,
        in_flight,
        "stopped: its order was refunded or cancelled",
        now,
    )
}

/// Moves each of `in_flight` (id, version, order) to `cancelled`; returns those it moved.
fn stop_in_flight(
    conn: &mut AnyConnection,
    in_flight: Vec<(i64, String, String)>,
    why: &'static str,
    now: NaiveDateTime,
) -> QueryResult<Vec<(String, String)>> {
    db_run!(conn: {
        let mut stopped = Vec::with_capacity(in_flight.len());
        for (id, version, order) in in_flight {
            // Guarded like every step change: a row that moved meanwhile is left alone.
            let n = diesel::update(tb::table.find(id).filter(tb::step.eq_any(IN_FLIGHT)))
                .set((
                    tb::step.eq(BuildStep::Cancelled),
                    tb::claimed_until.eq(None::<NaiveDateTime>),
                    tb::last_error.eq(Some(why)),
                    tb::updated_at.eq(now),
                ))
                .execute(conn)?;
            if n == 1 {
                stopped.push((version, order));
            }
        }
        Ok(stopped)
    })
}
