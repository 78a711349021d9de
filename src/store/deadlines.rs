//! Deadline rows and the scheduler's claim on them. A claim is a lease (`claimed_until`): the
//! replica that claims a row fires it; if it dies, the lease runs out and another one does.

use super::AnyConnection;
use crate::db_run;
use crate::domain::DeadlineKind;
use crate::domain::lifecycle::DeadlineState;
use crate::store::columns::{TextColumn as _, UnknownValue};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamp};

/// What a row of `deadlines` times (`deadlines.kind`). A warning's days are in their own column,
/// `warning_days` (0 for every other kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// A lifecycle deadline (`domain::DeadlineKind`).
    Payment,
    Implementation,
    Confirmation,
    /// An implementation warning, `warning_days` days into implementation.
    Warning,
    /// A queued `order.query` (the outbox of `Effect::QueryAlipay`).
    OrderQuery,
    /// The end of a service's last period: the service expires unless a renewal moved it (kept
    /// on the order whose period ends last).
    ServiceExpiry,
    /// Support's warning before that end (`scheduler.service_expiry_warning_days`, default 7),
    /// so that a renewal can be suggested.
    ServiceExpiryWarning,
    /// The `order.query` every order notice queues: its answer may date the payment from the
    /// notice's `order_time`.
    NoticeQuery,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::Payment => "payment",
            TimerKind::Implementation => "implementation",
            TimerKind::Confirmation => "confirmation",
            TimerKind::Warning => "warning",
            TimerKind::OrderQuery => "order_query",
            TimerKind::ServiceExpiry => "service_expiry",
            TimerKind::ServiceExpiryWarning => "service_expiry_warning",
            TimerKind::NoticeQuery => "order_notice_query",
        }
    }

    /// The lifecycle deadline this row is, if it is one.
    pub fn deadline(self) -> Option<DeadlineKind> {
        match self {
            TimerKind::Payment => Some(DeadlineKind::Payment),
            TimerKind::Implementation => Some(DeadlineKind::Implementation),
            TimerKind::Confirmation => Some(DeadlineKind::Confirmation),
            TimerKind::Warning
            | TimerKind::OrderQuery
            | TimerKind::NoticeQuery
            | TimerKind::ServiceExpiry
            | TimerKind::ServiceExpiryWarning => None,
        }
    }
}

impl From<DeadlineKind> for TimerKind {
    fn from(kind: DeadlineKind) -> Self {
        match kind {
            DeadlineKind::Payment => TimerKind::Payment,
            DeadlineKind::Implementation => TimerKind::Implementation,
            DeadlineKind::Confirmation => TimerKind::Confirmation,
        }
    }
}

crate::text_column!(
    TimerKind,
    "deadlines.kind",
    TimerKind::as_str,
    [
        TimerKind::Payment,
        TimerKind::Implementation,
        TimerKind::Confirmation,
        TimerKind::Warning,
        TimerKind::OrderQuery,
        TimerKind::ServiceExpiry,
        TimerKind::ServiceExpiryWarning,
        TimerKind::NoticeQuery,
    ]
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDeadline {
    pub id: i64,
    pub commodity_order_id: String,
    pub kind: TimerKind,
    /// The days of a `Warning`; 0 for every other kind.
    pub warning_days: i32,
    pub due_at: NaiveDateTime,
    pub attempts: i32,
}

/// A claimed row whose `kind` does not read. It is claimed (leased) like the others and handed
/// to the caller as an error of its own, so one bad row is reported every tick without stopping
/// the claim of every other row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptClaim {
    pub id: i64,
    pub commodity_order_id: String,
    pub attempts: i32,
    pub error: UnknownValue,
}

/// A claimed row as stored, before its kind is read.
#[derive(QueryableByName)]
struct StoredClaim {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    commodity_order_id: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Integer)]
    warning_days: i32,
    #[diesel(sql_type = Timestamp)]
    due_at: NaiveDateTime,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

impl StoredClaim {
    fn read(self) -> Result<ClaimedDeadline, CorruptClaim> {
        match TimerKind::from_stored(&self.kind) {
            Ok(kind) => Ok(ClaimedDeadline {
                id: self.id,
                commodity_order_id: self.commodity_order_id,
                kind,
                warning_days: self.warning_days,
                due_at: self.due_at,
                attempts: self.attempts,
            }),
            Err(error) => Err(CorruptClaim {
                id: self.id,
                commodity_order_id: self.commodity_order_id,
                attempts: self.attempts,
                error,
            }),
        }
    }
}

/// Claims up to `limit` due, unclaimed (or lease-expired) pending deadlines until `lease_until`
/// (the deadlines queue of `store::queue`).
/// A row whose kind does not read comes back as `Err(CorruptClaim)`, claimed like the others.
pub fn claim_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Result<ClaimedDeadline, CorruptClaim>>> {
    let rows: Vec<StoredClaim> =
        super::queue::claim(conn, &super::queue::DEADLINES, now, lease_until, limit)?;
    Ok(rows.into_iter().map(StoredClaim::read).collect())
}

/// The query plan of the claim's inner select, for the benchmark's proof that the index is used.
pub fn explain_claim(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct PgPlan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    #[derive(QueryableByName)]
    struct SqlitePlan {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    let select = "SELECT id FROM deadlines WHERE state = 'pending' AND due_at <= {now} \
                  AND (claimed_until IS NULL OR claimed_until < {now}) ORDER BY due_at, id LIMIT 100";
    match conn {
        AnyConnection::Postgresql(c) => {
            diesel::sql_query(format!("EXPLAIN {}", select.replace("{now}", "$1")))
                .bind::<Timestamp, _>(now)
                .load::<PgPlan>(c)
                .map(|rows| rows.into_iter().map(|r| r.line).collect())
        }
        AnyConnection::Sqlite(c) => diesel::sql_query(format!(
            "EXPLAIN QUERY PLAN {}",
            select.replace("{now}", "?1")
        ))
        .bind::<Timestamp, _>(now)
        .load::<SqlitePlan>(c)
        .map(|rows| rows.into_iter().map(|r| r.detail).collect()),
    }
}

/// Marks a claimed deadline done (`fired` or `cancelled`), guarded on it still being pending.
pub fn finish(conn: &mut AnyConnection, id: i64, state: DeadlineState) -> QueryResult<bool> {
    use super::schema::deadlines as dl;
    db_run!(conn: {
        diesel::update(dl::table.filter(dl::id.eq(id)).filter(dl::state.eq(DeadlineState::Pending)))
            .set((dl::state.eq(state), dl::claimed_until.eq(None::<NaiveDateTime>)))
            .execute(conn)
            .map(|n| n == 1)
    })
}

/// Gives a claimed deadline back to be re-checked from `retry_at` (Alipay unreachable, or it
/// does not agree yet).
pub fn release(conn: &mut AnyConnection, id: i64, retry_at: NaiveDateTime) -> QueryResult<()> {
    use super::schema::deadlines as dl;
    db_run!(conn: {
        diesel::update(dl::table.filter(dl::id.eq(id)))
            .set((dl::claimed_until.eq(Some(retry_at)), dl::attempts.eq(dl::attempts + 1)))
            .execute(conn)
            .map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_kinds_round_trip_and_map_to_deadlines() {
        for kind in [
            DeadlineKind::Payment,
            DeadlineKind::Implementation,
            DeadlineKind::Confirmation,
        ] {
            let timer = TimerKind::from(kind);
            assert_eq!(timer.deadline(), Some(kind));
            assert_eq!(timer.as_str(), kind.as_str());
        }
        assert_eq!(TimerKind::Warning.deadline(), None);
        assert_eq!(TimerKind::OrderQuery.deadline(), None);
        for &timer in TimerKind::ALL {
            assert_eq!(TimerKind::from_stored(timer.stored()), Ok(timer));
        }
        // The old texts are not kinds any more: the migration converted them.
        for old in ["warning_20", "query_alipay", ""] {
            let e = TimerKind::from_stored(old).unwrap_err();
            assert_eq!(e.column, "deadlines.kind");
        }
    }

    #[derive(QueryableByName, Debug, PartialEq)]
    struct RawRow {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        commodity_order_id: String,
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = Integer)]
        attempts: i32,
    }

    fn raw_rows(conn: &mut AnyConnection) -> Vec<RawRow> {
        db_run!(conn: {
            diesel::sql_query(
                "SELECT id, commodity_order_id, kind, state, attempts FROM deadlines ORDER BY id",
            )
            .load(conn)
            .unwrap()
        })
    }

    /// The name of the next pending migration, if any.
    fn next_migration(conn: &mut AnyConnection) -> Option<String> {
        use crate::store::conn::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
        use diesel_migrations::MigrationHarness as _;
        match conn {
            AnyConnection::Postgresql(c) => c
                .pending_migrations(POSTGRES_MIGRATIONS)
                .unwrap()
                .first()
                .map(|m| m.name().to_string()),
            AnyConnection::Sqlite(c) => c
                .pending_migrations(SQLITE_MIGRATIONS)
                .unwrap()
                .first()
                .map(|m| m.name().to_string()),
        }
    }

    fn is_timer_rows(conn: &mut AnyConnection) -> bool {
        next_migration(conn).is_some_and(|name| name.ends_with("_timer_rows"))
    }

    fn run_next(conn: &mut AnyConnection) {
        use crate::store::conn::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
        use diesel_migrations::MigrationHarness as _;
        match conn {
            AnyConnection::Postgresql(c) => c.run_next_migration(POSTGRES_MIGRATIONS).map(|_| ()),
            AnyConnection::Sqlite(c) => c.run_next_migration(SQLITE_MIGRATIONS).map(|_| ()),
        }
        .unwrap();
    }

    fn revert_last(conn: &mut AnyConnection) {
        use crate::store::conn::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
        use diesel_migrations::MigrationHarness as _;
        match conn {
            AnyConnection::Postgresql(c) => {
                c.revert_last_migration(POSTGRES_MIGRATIONS).map(|_| ())
            }
            AnyConnection::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS).map(|_| ()),
        }
        .unwrap();
    }

    /// The migration `timer_rows`: rows written by the previous version (the days of a warning
    /// inside `kind`, `query_alipay`) read as typed kinds afterwards, keep their ids, state, lease
    /// and attempts, and the table keeps its due index; down converts them back. `conn` is an
    /// empty database.
    fn timer_rows_migration_converts_old_rows(conn: &mut AnyConnection) {
        use crate::store::orders;
        use diesel::connection::SimpleConnection as _;

        while !is_timer_rows(conn) {
            run_next(conn);
        }
        conn.batch_execute(
            "INSERT INTO orders (commodity_order_id, status, ordered_at, status_since, created_at, updated_at) VALUES \
                 ('O1', 'implementing', '2024-06-01 00:00:00', '2024-06-01 00:00:00', '2024-06-01 00:00:00', '2024-06-01 00:00:00'), \
                 ('O2', 'awaiting_payment', '2024-06-01 00:00:00', '2024-06-01 00:00:00', '2024-06-01 00:00:00', '2024-06-01 00:00:00'); \
             INSERT INTO deadlines (id, commodity_order_id, kind, due_at, state, claimed_until, attempts) VALUES \
                 (3, 'O1', 'payment', '2024-06-04 00:00:00', 'cancelled', NULL, 0), \
                 (5, 'O1', 'implementation', '2024-07-01 00:00:00', 'pending', NULL, 0), \
                 (6, 'O1', 'warning_20', '2024-06-21 00:00:00', 'fired', NULL, 0), \
                 (7, 'O1', 'warning_27', '2024-06-28 00:00:00', 'pending', '2024-06-28 00:05:00', 2), \
                 (9, 'O1', 'query_alipay', '2024-06-02 00:00:00', 'pending', NULL, 0), \
                 (11, 'O2', 'warning_x', '2024-06-05 00:00:00', 'pending', NULL, 0);",
        )
        .unwrap();
        if let AnyConnection::Postgresql(c) = conn {
            // Explicit ids above: the sequence continues after them, as it did in production.
            c.batch_execute("SELECT setval('deadlines_id_seq', 11)")
                .unwrap();
        }
        let before = raw_rows(conn);

        // This migration and any after it.
        while next_migration(conn).is_some() {
            run_next(conn);
        }
        let index_sql = match conn {
            AnyConnection::Postgresql(_) => {
                "SELECT indexdef AS sql FROM pg_indexes WHERE indexname = 'deadlines_due' \
                 AND schemaname = current_schema()"
            }
            AnyConnection::Sqlite(_) => {
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'deadlines_due'"
            }
        };
        let index: Vec<RawIndex> =
            db_run!(conn: { diesel::sql_query(index_sql).load(conn).unwrap() });
        assert_eq!(index.len(), 1);
        assert!(
            index[0]
                .sql
                .replace(['(', ')'], "")
                .contains("WHERE state = 'pending'"),
            "{}",
            index[0].sql
        );

        let typed: Vec<(TimerKind, i32, DeadlineState)> = orders::deadlines(conn, "O1")
            .unwrap()
            .into_iter()
            .map(|d| (d.kind, d.warning_days, d.state))
            .collect();
        assert_eq!(
            typed,
            vec![
                (TimerKind::OrderQuery, 0, DeadlineState::Pending),
                (TimerKind::Payment, 0, DeadlineState::Cancelled),
                (TimerKind::Warning, 20, DeadlineState::Fired),
                (TimerKind::Warning, 27, DeadlineState::Pending),
                (TimerKind::Implementation, 0, DeadlineState::Pending),
            ]
        );
        // A text that was never a kind is left as it is, and reading it fails naming the column.
        let e = orders::deadlines(conn, "O2").unwrap_err();
        let e = crate::store::StoreError::from(e).to_string();
        assert!(
            e.contains("deadlines.kind") && e.contains("warning_x"),
            "{e}"
        );

        // The lease and the attempts came along: the warning is claimed again once its lease ran
        // out, with its days. The unreadable row is claimed too, as an error of its own.
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        let mut claimed = claim_due(
            conn,
            at("2024-06-28 00:01:00"),
            at("2024-06-28 00:06:00"),
            10,
        )
        .unwrap();
        // `UPDATE ... RETURNING` gives no order.
        claimed.sort_by_key(|c| match c {
            Ok(d) => d.id,
            Err(c) => c.id,
        });
        assert_eq!(claimed.len(), 2, "{claimed:?}");
        assert_eq!(claimed[0].as_ref().unwrap().id, 9);
        assert_eq!(claimed[0].as_ref().unwrap().kind, TimerKind::OrderQuery);
        let corrupt = claimed[1].as_ref().unwrap_err();
        assert_eq!((corrupt.id, corrupt.error.column), (11, "deadlines.kind"));
        let claimed = claim_due(
            conn,
            at("2024-06-28 00:06:00"),
            at("2024-06-28 00:11:00"),
            10,
        )
        .unwrap();
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        let d = claimed[0].as_ref().unwrap();
        assert_eq!(
            (d.id, d.kind, d.warning_days, d.attempts),
            (7, TimerKind::Warning, 27, 2)
        );

        // The unique key now includes the days: another warning is a row of its own; the same
        // one is updated in place; ids continue after the old ones.
        orders::upsert_deadline(
            conn,
            "O1",
            TimerKind::Warning,
            29,
            at("2024-06-30 00:00:00"),
            DeadlineState::Pending,
        )
        .unwrap();
        orders::upsert_deadline(
            conn,
            "O1",
            TimerKind::Warning,
            20,
            at("2024-06-21 00:00:00"),
            DeadlineState::Cancelled,
        )
        .unwrap();
        let after = raw_rows(conn);
        assert_eq!(after.len(), before.len() + 1);
        let new = after.last().unwrap();
        assert_eq!((new.id, new.kind.as_str()), (12, "warning"));
        assert_eq!(after.iter().find(|r| r.id == 6).unwrap().state, "cancelled");

        // Down: the old texts again, same ids.
        while !is_timer_rows(conn) {
            revert_last(conn);
        }
        let down = raw_rows(conn);
        let kinds: Vec<(i64, &str)> = down.iter().map(|r| (r.id, r.kind.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (3, "payment"),
                (5, "implementation"),
                (6, "warning_20"),
                (7, "warning_27"),
                (9, "query_alipay"),
                (11, "warning_x"),
                (12, "warning_29"),
            ]
        );
        assert_eq!(down[3].commodity_order_id, "O1");
        assert_eq!(down[3].attempts, 2);
    }

    #[test]
    fn timer_rows_migration_converts_old_rows_on_sqlite() {
        timer_rows_migration_converts_old_rows(&mut crate::store::scratch::sqlite());
    }

    /// The same on PostgreSQL, in a schema of its own (`ISV_TEST_SKIP_POSTGRES=1` skips it).
    #[test]
    fn timer_rows_migration_converts_old_rows_on_postgres() {
        crate::store::scratch::in_postgres_schema(
            "timer_rows",
            timer_rows_migration_converts_old_rows,
        );
    }

    #[derive(QueryableByName)]
    struct RawIndex {
        #[diesel(sql_type = Text)]
        sql: String,
    }
}
