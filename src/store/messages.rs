//! The gateway inbox: every verified message, stored once under (`app_id`, `notify_id`).

use super::AnyConnection;
use super::prepared::Prepared;
use super::schema::gateway_messages as gm;
use crate::db_run;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// `gateway_messages.state` (INTERFACE.md: the messages list's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Stored and acknowledged; waiting for the apply worker.
    Received,
    Applied,
    /// Waiting for a prerequisite message.
    Parked,
    /// Verified but not ours to apply as it is: shown to support.
    Quarantined,
    /// The apply gave up: shown to support, who can replay it.
    Failed,
}

impl MessageState {
    pub const ALL: [MessageState; 5] = [
        MessageState::Received,
        MessageState::Applied,
        MessageState::Parked,
        MessageState::Quarantined,
        MessageState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Received => "received",
            MessageState::Applied => "applied",
            MessageState::Parked => "parked",
            MessageState::Quarantined => "quarantined",
            MessageState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for MessageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::text_column!(
    MessageState,
    "gateway_messages.state",
    MessageState::as_str,
    [
        MessageState::Received,
        MessageState::Applied,
        MessageState::Parked,
        MessageState::Quarantined,
        MessageState::Failed,
    ]
);

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = gm)]
pub struct NewMessage {
    pub app_id: String,
    pub notify_id: String,
    pub kind: String,
    pub sign_variant: String,
    pub state: MessageState,
    pub params: String,
    pub raw_body: Vec<u8>,
    pub received_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    /// Why a message was stored quarantined.
    pub last_error: Option<String>,
}

/// Inserts each row unless its identity is already stored, all in one transaction (one commit,
/// one fsync for the whole batch). Returns, per row, whether it was new; of two rows with the same
/// identity in one batch, the first is the new one.
pub fn insert_batch(conn: &mut AnyConnection, rows: &[NewMessage]) -> QueryResult<Vec<bool>> {
    match conn {
        // One multi-row statement, itself atomic: one round trip for the whole batch instead of
        // BEGIN, a statement per row and COMMIT.
        AnyConnection::Postgresql(conn) => {
            // Not kept prepared: one text per batch size (up to `inbox.batch_size`, 256), and a
            // plan of thousands of parameters each, on every ingest connection. One parse per
            // batch is cheap beside the batch.
            let inserted: Vec<(String, String)> = diesel::insert_into(gm::table)
                .values(rows)
                .on_conflict((gm::app_id, gm::notify_id))
                .do_nothing()
                .returning((gm::app_id, gm::notify_id))
                .get_results(conn)?;
            let mut inserted: std::collections::HashSet<(String, String)> =
                inserted.into_iter().collect();
            Ok(rows
                .iter()
                .map(|row| inserted.remove(&(row.app_id.clone(), row.notify_id.clone())))
                .collect())
        }
        // In-process: a statement costs no round trip.
        AnyConnection::Sqlite(_) => super::write_transaction(conn, |conn| {
            rows.iter()
                .map(|row| {
                    let inserted = db_run!(conn: {
                        diesel::insert_into(gm::table)
                            .values(row)
                            .on_conflict((gm::app_id, gm::notify_id))
                            .do_nothing()
                            .execute(conn)
                    })?;
                    Ok(inserted == 1)
                })
                .collect()
        }),
    }
}

/// A message claimed for applying.
#[derive(Debug, Clone, QueryableByName)]
#[diesel(table_name = gm)]
pub struct PendingMessage {
    pub id: i64,
    pub app_id: String,
    pub notify_id: String,
    pub kind: String,
    pub raw_body: Vec<u8>,
    pub attempts: i32,
    pub received_at: NaiveDateTime,
}

/// Claims up to `limit` messages whose next attempt is due, leased until `lease_until` (the inbox
/// queue of `store::queue`), oldest first.
pub fn claim_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<PendingMessage>> {
    let mut claimed: Vec<PendingMessage> =
        super::queue::claim(conn, &super::queue::INBOX, now, lease_until, limit)?;
    // In arrival order: the rules do not depend on it, but support reads the log that way.
    claimed.sort_unstable_by_key(|m| m.id);
    Ok(claimed)
}

/// Locks up to `limit` messages whose next attempt is due for the rest of the caller's
/// transaction, in arrival order (see [`super::queue::lock`]).
pub fn lock_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<PendingMessage>> {
    let mut locked: Vec<PendingMessage> =
        super::queue::lock(conn, &super::queue::INBOX, now, limit)?;
    locked.sort_unstable_by_key(|m| m.id);
    Ok(locked)
}

/// Moves a message out of `received`. Guarded: a message another worker already finished is not
/// touched, and the caller rolls its work back when this returns false.
pub fn finish(
    conn: &mut AnyConnection,
    id: i64,
    state: MessageState,
    now: NaiveDateTime,
    note: Option<&str>,
    about_order: Option<&str>,
) -> QueryResult<bool> {
    // The order it is about (for support's order page) is linked in the same statement: one
    // round trip and one rewrite of the row instead of two.
    let updated = db_run!(conn: {
        Prepared(diesel::update(gm::table.filter(gm::id.eq(id)).filter(gm::state.eq(MessageState::Received)))
            .set((gm::state.eq(state), gm::applied_at.eq(Some(now)), gm::last_error.eq(note), gm::claimed_until.eq(None::<NaiveDateTime>), gm::commodity_order_id.eq(about_order)))
            .returning(gm::id))
            .get_results::<i64>(conn)
            .map(|moved| moved.len())
    })?;
    Ok(updated == 1)
}

/// [`finish`] for a whole chunk as `applied`, in one statement, on PostgreSQL: each message of
/// `batch` (its id, and the order it is about) still in `received` moves out of it. Returns the
/// ids it moved; `None` on SQLite, where a statement costs no round trip and [`finish`] is used
/// per message.
pub fn finish_applied_batch(
    conn: &mut AnyConnection,
    batch: &[(i64, Option<&str>)],
    now: NaiveDateTime,
) -> QueryResult<Option<std::collections::HashSet<i64>>> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamp};
    #[derive(QueryableByName)]
    struct Moved {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let AnyConnection::Postgresql(conn) = conn else {
        return Ok(None);
    };
    let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
    let orders: Vec<Option<&str>> = batch.iter().map(|(_, order)| *order).collect();
    let moved: Vec<Moved> = Prepared(
        diesel::sql_query(
            "UPDATE gateway_messages AS g SET state = $1, applied_at = $2, last_error = NULL, \
             claimed_until = NULL, commodity_order_id = v.commodity_order_id \
             FROM unnest($3::bigint[], $4::text[]) AS v(id, commodity_order_id) \
             WHERE g.id = v.id AND g.state = $5 RETURNING g.id",
        )
        .bind::<Text, _>(MessageState::Applied.as_str())
        .bind::<Timestamp, _>(now)
        .bind::<Array<BigInt>, _>(ids)
        .bind::<Array<Nullable<Text>>, _>(orders)
        .bind::<Text, _>(MessageState::Received.as_str()),
    )
    .load(conn)?;
    Ok(Some(moved.into_iter().map(|m| m.id).collect()))
}

/// Records a failed attempt: retried at `next_attempt_at`, or given up (`failed`) for support.
pub fn record_failure(
    conn: &mut AnyConnection,
    id: i64,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    error: &str,
    give_up: bool,
) -> QueryResult<()> {
    let state = if give_up {
        MessageState::Failed
    } else {
        MessageState::Received
    };
    db_run!(conn: {
        diesel::update(gm::table.filter(gm::id.eq(id)).filter(gm::state.eq(MessageState::Received)))
            .set((
                gm::state.eq(state),
                gm::attempts.eq(attempts),
                gm::next_attempt_at.eq(next_attempt_at),
                gm::last_error.eq(Some(error)),
                // The retry is due at `next_attempt_at`, not when this worker's lease runs out.
                gm::claimed_until.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)
    })?;
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = gm)]
pub struct MessageSummary {
    pub id: i64,
    pub app_id: String,
    pub notify_id: String,
    pub kind: String,
    pub sign_variant: String,
    pub state: MessageState,
    pub received_at: NaiveDateTime,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub applied_at: Option<NaiveDateTime>,
}

pub fn recent(conn: &mut AnyConnection, limit: i64) -> QueryResult<Vec<MessageSummary>> {
    db_run!(conn: {
        gm::table.order(gm::id.desc()).limit(limit).select(MessageSummary::as_select()).load(conn)
    })
}

pub fn count_by_state(conn: &mut AnyConnection) -> QueryResult<Vec<(String, i64)>> {
    db_run!(conn: {
        gm::table.group_by(gm::state).select((gm::state, diesel::dsl::count_star())).load(conn)
    })
}

/// Every stored identity, for tests and reconciliation of what was acknowledged.
pub fn identities(conn: &mut AnyConnection) -> QueryResult<Vec<(String, String, String)>> {
    db_run!(conn: {
        gm::table.order(gm::id.asc()).select((gm::app_id, gm::notify_id, gm::state)).load(conn)
    })
}

/// Sets a message's state inside an apply transaction (e.g. `quarantined` with its reason).
pub fn set_state(
    conn: &mut AnyConnection,
    id: i64,
    state: MessageState,
    note: Option<&str>,
) -> QueryResult<()> {
    db_run!(conn: {
        diesel::update(gm::table.filter(gm::id.eq(id)))
            .set((gm::state.eq(state), gm::last_error.eq(note)))
            .execute(conn)
            .map(|_| ())
    })
}

/// One stored message by its identity.
pub fn find(
    conn: &mut AnyConnection,
    app_id: &str,
    notify_id: &str,
) -> QueryResult<Option<MessageSummary>> {
    db_run!(conn: {
        gm::table
            .filter(gm::app_id.eq(app_id))
            .filter(gm::notify_id.eq(notify_id))
            .select(MessageSummary::as_select())
            .first(conn)
            .optional()
    })
}

/// Newest first, only those in `state` when given.
pub fn recent_in_state(
    conn: &mut AnyConnection,
    state: Option<MessageState>,
    limit: i64,
) -> QueryResult<Vec<MessageSummary>> {
    db_run!(conn: {
        let mut query = gm::table
            .order(gm::id.desc())
            .limit(limit)
            .select(MessageSummary::as_select())
            .into_boxed();
        if let Some(state) = state {
            query = query.filter(gm::state.eq(state));
        }
        query.load(conn)
    })
}

/// Puts a message back in `received` (attempts 0, due `now`) for the apply worker. Guarded on
/// its current state being one of `from`: false when it is not (or no longer) in one of them.
pub fn requeue(
    conn: &mut AnyConnection,
    id: i64,
    from: &[MessageState],
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let updated = db_run!(conn: {
        diesel::update(gm::table.filter(gm::id.eq(id)).filter(gm::state.eq_any(from)))
            .set((
                gm::state.eq(MessageState::Received),
                gm::attempts.eq(0),
                gm::next_attempt_at.eq(now),
                gm::applied_at.eq(None::<NaiveDateTime>),
                gm::claimed_until.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)
    })?;
    Ok(updated == 1)
}

/// Deletes up to `batch` applied messages received before `cutoff`, oldest first; returns how
/// many went. Only `applied` rows are touched (guarded again in the delete): quarantined, failed,
/// parked and unapplied messages stay whatever their age.
pub fn purge_applied_before(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
    batch: i64,
) -> QueryResult<usize> {
    db_run!(conn: {
        let ids: Vec<i64> = gm::table
            .filter(gm::state.eq(MessageState::Applied))
            .filter(gm::received_at.lt(cutoff))
            .order((gm::received_at.asc(), gm::id.asc()))
            .limit(batch)
            .select(gm::id)
            .load(conn)?;
        if ids.is_empty() {
            Ok(0)
        } else {
            diesel::delete(
                gm::table
                    .filter(gm::id.eq_any(&ids))
                    .filter(gm::state.eq(MessageState::Applied)),
            )
            .execute(conn)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(notify_id: &str) -> NewMessage {
        let at = chrono::DateTime::from_timestamp(1_718_000_000, 0)
            .unwrap()
            .naive_utc();
        NewMessage {
            app_id: "2021000000000001".into(),
            notify_id: notify_id.into(),
            kind: "alipay.open.servicemarket.order.notify".into(),
            sign_variant: "v1".into(),
            state: MessageState::Received,
            params: "{}".into(),
            raw_body: vec![7; 600],
            received_at: at,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
        }
    }

    /// Which rows of a batch are new: stored ones and a second copy in the same batch are not.
    fn a_batch_says_which_rows_are_new(conn: &mut AnyConnection) {
        crate::store::run_migrations(conn).unwrap();
        let first = insert_batch(conn, &[row("a"), row("b"), row("a")]).unwrap();
        assert_eq!(first, [true, true, false]);
        let second = insert_batch(conn, &[row("b"), row("c")]).unwrap();
        assert_eq!(second, [false, true]);
        let stored: Vec<String> = identities(conn)
            .unwrap()
            .into_iter()
            .map(|(_, notify_id, _)| notify_id)
            .collect();
        assert_eq!(stored, ["a", "b", "c"]);
    }

    #[test]
    fn a_batch_says_which_rows_are_new_on_sqlite() {
        a_batch_says_which_rows_are_new(&mut crate::store::scratch::sqlite());
    }

    #[test]
    fn a_batch_says_which_rows_are_new_on_postgres() {
        crate::store::scratch::in_postgres_schema("inbox_batch", a_batch_says_which_rows_are_new);
    }

    /// Two apply workers on PostgreSQL: the messages one holds in its transaction are skipped by
    /// the other (not waited for), and are due again once it lets go without applying them.
    #[test]
    fn a_worker_skips_the_messages_another_holds_on_postgres() {
        use diesel::Connection as _;
        crate::store::scratch::in_postgres_schema("inbox_lock", |conn| {
            crate::store::run_migrations(conn).unwrap();
            insert_batch(conn, &[row("a"), row("b"), row("c")]).unwrap();
            let now = row("a").next_attempt_at;
            let ids = |rows: Vec<PendingMessage>| -> Vec<String> {
                rows.into_iter().map(|m| m.notify_id).collect()
            };
            let mut other = crate::store::scratch::another_postgres_connection(conn);
            conn.transaction::<(), diesel::result::Error, _>(|conn| {
                assert_eq!(ids(lock_due(conn, now, 2)?), ["a", "b"]);
                // The other worker does not block: it takes what is left.
                assert_eq!(ids(lock_due(&mut other, now, 10)?), ["c"]);
                Err(diesel::result::Error::RollbackTransaction)
            })
            .unwrap_err();
            // Let go (rolled back, as a crash would): every message is due again.
            assert_eq!(ids(lock_due(&mut other, now, 10).unwrap()), ["a", "b", "c"]);
        });
    }
}
