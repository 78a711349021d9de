//! The lifecycle use cases: an event on an order (from a gateway message, the scheduler, support
//! or reconciliation) is applied with the pure rules of `domain::lifecycle` and persisted in one
//! transaction: the order's new state, its deadline rows, a history row, the service's
//! termination and support's tasks. Calls to Alipay happen outside that transaction, in the
//! scheduler sweep (`fire_due_deadlines`) and reconciliation.

use super::Services;
use super::alerts::Alert as AlertMessage;
use crate::alipay::api::OrderQueryRequest;
use crate::alipay::client::AlipayError;
use crate::backoff::RetryPolicy;
use crate::domain::lifecycle::{
    self as lc, Deadline, DeadlineState, Effect, LifecycleRules, Order, OrderEvent, ServiceEvent,
    ServiceState, TerminationCause, Transition, Warning,
};
use crate::domain::lifecycle::{AuthorizationEvent, AuthorizationState, AuthorizationStatus};
use crate::domain::order::OrderPlaced;
use crate::domain::{DeadlineKind, OrderId, OrderStatus};
use crate::store::deadlines::TimerKind;
use crate::store::orders::CauseCode;
use crate::store::orders::{self as store, DeadlineRow, OrderRow};
use crate::store::{
    AnyConnection, StoreError, authorizations, builds, deadlines, from_db_time, to_db_time,
};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use futures_util::StreamExt as _;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no order {0}")]
    NotFound(String),
    #[error("{0}")]
    Rule(#[from] lc::RuleError),
    #[error("the order changed concurrently; retry")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Alipay: {0}")]
    Alipay(#[from] AlipayError),
    /// A rule produced something this use case cannot carry out: a bug, reported loudly.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl From<diesel::result::Error> for LifecycleError {
    fn from(e: diesel::result::Error) -> Self {
        LifecycleError::Store(e.into())
    }
}

/// A grant's own data, sealed, for [`Services::authorization_event`].
#[derive(Debug, Clone)]
pub struct Grant {
    pub user_id: Option<String>,
    pub auth_time: DateTime<Utc>,
    pub sealed_token: Vec<u8>,
    pub sealed_refresh_token: Option<Vec<u8>>,
    pub notify_id: String,
    /// The ISV app the merchant authorized (the message's `app_id`).
    pub isv_app_id: Option<String>,
    /// [`Services::token_fingerprint`] of the grant's token.
    pub token_fingerprint: String,
}

/// What a persisted transition leaves to do after the commit.
#[derive(Debug, Default)]
pub struct AfterCommit {
    pub alerts: Vec<AlertMessage>,
    pub changed: bool,
}

/// What a row of the `deadlines` table times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Deadline(DeadlineKind),
    /// An implementation warning, `N` days into implementation (kind `warning`, `warning_days` N).
    Warning(u32),
    /// A queued `order.query` (kind `order_query`): asks the sweep to query Alipay about the
    /// order now (an audit passed, support terminated), the outbox for `Effect::QueryAlipay`.
    /// `notice`: the query every order notice queues (kind `order_notice_query`).
    Query {
        notice: bool,
    },
    /// A service's expiry or its warning (`service::periods`), kept on an order's rows.
    Service(TimerKind),
}

/// A row's timer from its typed kind and its warning days (a negative count is corrupt data).
fn timer(kind: TimerKind, warning_days: i32, order: &str) -> Result<Timer, StoreError> {
    Ok(match kind {
        TimerKind::Payment => Timer::Deadline(DeadlineKind::Payment),
        TimerKind::Implementation => Timer::Deadline(DeadlineKind::Implementation),
        TimerKind::Confirmation => Timer::Deadline(DeadlineKind::Confirmation),
        TimerKind::Warning => Timer::Warning(u32::try_from(warning_days).map_err(|_| {
            StoreError::Corrupt(format!(
                "deadlines.warning_days: {warning_days} is not a day count (order {order})"
            ))
        })?),
        TimerKind::OrderQuery => Timer::Query { notice: false },
        TimerKind::NoticeQuery => Timer::Query { notice: true },
        TimerKind::ServiceExpiry | TimerKind::ServiceExpiryWarning => Timer::Service(kind),
    })
}

/// The stored day count of a warning.
fn warning_days(at_days: u32) -> Result<i32, LifecycleError> {
    i32::try_from(at_days)
        .map_err(|_| LifecycleError::Unexpected(format!("a warning {at_days} days in")))
}

fn deadline_of(status: OrderStatus) -> Option<DeadlineKind> {
    match status {
        OrderStatus::AwaitingPayment => Some(DeadlineKind::Payment),
        OrderStatus::Implementing => Some(DeadlineKind::Implementation),
        OrderStatus::AwaitingConfirmation => Some(DeadlineKind::Confirmation),
        OrderStatus::Completed | OrderStatus::Cancelled => None,
    }
}

/// The order as the rules see it, from its row and its deadline rows.
fn to_domain(row: &OrderRow, rows: &[DeadlineRow]) -> Result<Order, LifecycleError> {
    let mut deadlines = Vec::new();
    let mut warnings = Vec::new();
    for d in rows {
        match timer(d.kind, d.warning_days, &row.commodity_order_id)? {
            Timer::Deadline(kind) => deadlines.push(Deadline {
                kind,
                due_at: from_db_time(d.due_at),
                state: d.state,
            }),
            Timer::Warning(days) => {
                if d.state != DeadlineState::Cancelled {
                    warnings.push(Warning {
                        at_days: days,
                        due_at: from_db_time(d.due_at),
                        sent: d.state == DeadlineState::Fired,
                    });
                }
            }
            Timer::Query { .. } | Timer::Service(_) => {}
        }
    }
    Ok(Order {
        status: row.status,
        cancel_reason: row.cancel_reason,
        ordered_at: from_db_time(row.ordered_at),
        status_since: from_db_time(row.status_since),
        paid: row.paid,
        deadlines,
        warnings,
        audit_passed_at: row.audit_passed_at.map(from_db_time),
        refund: row.refund,
        payment: match (row.paid_at, row.paid_at_source) {
            (Some(at), Some(source)) => Some(lc::Payment {
                at: from_db_time(at),
                source,
            }),
            (None, None) => None,
            (at, source) => {
                return Err(StoreError::Corrupt(format!(
                    "orders.paid_at {at:?} without its source {source:?} (order {})",
                    row.commodity_order_id
                ))
                .into());
            }
        },
        inferred_at: row.inferred_at.map(from_db_time),
    })
}

/// The row state of a deadline: a fired deadline of the order's current state is still open
/// (the sweep re-checks it until Alipay agrees or the grace period ends).
fn row_state(order: &Order, d: &Deadline) -> DeadlineState {
    match d.state {
        DeadlineState::Pending => DeadlineState::Pending,
        DeadlineState::Fired if deadline_of(order.status) == Some(d.kind) => DeadlineState::Pending,
        DeadlineState::Fired => DeadlineState::Fired,
        DeadlineState::Cancelled => DeadlineState::Cancelled,
    }
}

pub(super) fn service_key(row: &OrderRow) -> String {
    row.mini_app_id
        .clone()
        .unwrap_or_else(|| format!("order:{}", row.commodity_order_id))
}

fn termination_cause(row: &store::ServiceRow) -> Option<TerminationCause> {
    Some(match row.termination_cause? {
        CauseCode::AuthorizationCancelled => TerminationCause::AuthorizationCancelled,
        CauseCode::OrderCancelled => TerminationCause::OrderCancelled,
        CauseCode::Refunded => TerminationCause::Refunded,
        CauseCode::ImplementationTimeout => TerminationCause::ImplementationTimeout,
        CauseCode::Expired => TerminationCause::Expired,
        CauseCode::Support => TerminationCause::Support {
            actor: row.terminated_by.clone().unwrap_or_default(),
            reason: row.termination_reason.clone().unwrap_or_default(),
        },
    })
}

/// Where the order row handed to `persist` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Read before the transition was decided: the state write is guarded on it.
    Before,
    /// Inserted by this transaction just now (with no timer rows yet).
    JustInserted,
}

/// Whether `row` already holds every field of `update` (times to the microsecond, as
/// PostgreSQL keeps them).
fn holds(row: &OrderRow, update: &store::OrderStateUpdate) -> bool {
    let micros = |t: &NaiveDateTime| t.and_utc().timestamp_micros();
    let same = |a: &NaiveDateTime, b: &NaiveDateTime| micros(a) == micros(b);
    let same_opt = |a: &Option<NaiveDateTime>, b: &Option<NaiveDateTime>| match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        (Some(_), None) | (None, Some(_)) => false,
    };
    let store::OrderStateUpdate {
        status,
        cancel_reason,
        status_since,
        paid,
        audit_passed_at,
        refund,
        updated_at,
        paid_at,
        paid_at_source,
        inferred_at,
    } = update;
    row.status == *status
        && row.cancel_reason == *cancel_reason
        && same(&row.status_since, status_since)
        && row.paid == *paid
        && same_opt(&row.audit_passed_at, audit_passed_at)
        && row.refund == *refund
        && same(&row.updated_at, updated_at)
        && same_opt(&row.paid_at, paid_at)
        && row.paid_at_source == *paid_at_source
        && same_opt(&row.inferred_at, inferred_at)
}

fn load_service(
    conn: &mut AnyConnection,
    key: &str,
    now: DateTime<Utc>,
) -> Result<ServiceState, LifecycleError> {
    let open: Vec<lc::Task> = store::open_tasks(conn, key)?;
    Ok(match store::find_service(conn, key)? {
        Some(row) => ServiceState {
            status: row.status,
            termination_cause: termination_cause(&row),
            since: from_db_time(row.since),
            open_tasks: open,
        },
        None => ServiceState {
            open_tasks: open,
            ..ServiceState::provisioning(now)
        },
    })
}

impl Services {
    pub fn lifecycle_rules(&self) -> &LifecycleRules {
        &self.lifecycle.rules
    }

    /// Creates the order from its notification (first state, deadline, history), unless it
    /// exists. Runs inside the caller's transaction.
    pub fn place_order(
        &self,
        conn: &mut AnyConnection,
        new: &store::NewOrder,
        placed: &OrderPlaced,
        now: DateTime<Utc>,
    ) -> Result<bool, LifecycleError> {
        let transition = lc::place(placed, self.lifecycle_rules());
        let row = store::NewOrder {
            status: transition.order.status,
            status_since: to_db_time(transition.order.status_since),
            ..new.clone()
        };
        let Some(created) = store::insert_new(conn, &row)? else {
            return Ok(false);
        };
        self.persist(conn, &created, Stored::JustInserted, &transition, now)?;
        Ok(true)
    }

    /// Applies `event` to order `id` and persists the result, in the caller's transaction.
    pub fn order_event(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        event: OrderEvent,
        now: DateTime<Utc>,
    ) -> Result<(Transition, AfterCommit), LifecycleError> {
        let row = store::find(conn, id)?.ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        let rows = store::deadlines(conn, id)?;
        let order = to_domain(&row, &rows)?;
        let transition = lc::handle(&order, event, now, self.lifecycle_rules())?;
        if let Some(why) = &transition.ignored {
            // Stale, backward or repeated: recorded here, and the message itself stays stored.
            tracing::debug!(order = %id, reason = %why, "event ignored by the lifecycle rules");
        }
        let after = self.persist(conn, &row, Stored::Before, &transition, now)?;
        Ok((transition, after))
    }

    /// One event in its own transaction (retried when a concurrent writer moved the order
    /// first); alerts are raised after the commit.
    pub async fn order_event_now(
        &self,
        id: &OrderId,
        event: OrderEvent,
    ) -> Result<Transition, LifecycleError> {
        let mut attempts = 0;
        let (transition, after) = loop {
            let (s, id, event) = (self.clone(), id.to_string(), event.clone());
            let outcome = self
                .db_write(move |conn| s.order_event(conn, &id, event, s.clock.now()))
                .await;
            match outcome {
                Err(LifecycleError::Conflict) if attempts < 4 => attempts += 1,
                other => break other?,
            }
        };
        for alert in after.alerts {
            self.alerts.raise(alert).await;
        }
        Ok(transition)
    }

    /// Writes a transition: state (guarded), deadline and warning rows, history, and the
    /// effects that stay in the database (service termination, tasks, queued Alipay queries).
    fn persist(
        &self,
        conn: &mut AnyConnection,
        before: &OrderRow,
        stored: Stored,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<AfterCommit, LifecycleError> {
        let id = before.commodity_order_id.as_str();
        let o = &t.order;
        let now_db = to_db_time(now);
        let mut after = AfterCommit {
            changed: t.ignored.is_none(),
            ..AfterCommit::default()
        };
        if t.ignored.is_some() && t.effects.is_empty() {
            return Ok(after);
        }
        // The merchant's service starts provisioning once an order of its mini program is paid
        // (or free); a renewal or re-order for the same mini program extends the same service.
        if matches!(
            o.status,
            OrderStatus::Implementing | OrderStatus::AwaitingConfirmation | OrderStatus::Completed
        ) {
            let key = service_key(before);
            if store::find_service(conn, &key)?.is_none() {
                self.save_service(conn, &key, &ServiceState::provisioning(now), &[], now)?;
            }
        }
        let update = store::OrderStateUpdate {
            status: o.status,
            cancel_reason: o.cancel_reason,
            status_since: to_db_time(o.status_since),
            paid: o.paid,
            audit_passed_at: o.audit_passed_at.map(to_db_time),
            refund: o.refund,
            updated_at: now_db,
            paid_at: o.payment.map(|p| to_db_time(p.at)),
            paid_at_source: o.payment.map(|p| p.source),
            inferred_at: o.inferred_at.map(to_db_time),
        };
        // A row inserted just now with this very state needs no second write.
        let written = stored == Stored::JustInserted && holds(before, &update);
        if !written
            && !store::save_state(
                conn,
                id,
                (before.status, before.status_since, before.updated_at),
                &update,
            )?
        {
            return Err(LifecycleError::Conflict);
        }
        // Every timer row of the transition (deadlines, warnings, queued queries) goes out in one
        // statement; each (kind, warning days) appears once.
        let timer_row = |kind: TimerKind, warning_days: i32, due_at, state| store::NewDeadline {
            commodity_order_id: id.to_string(),
            kind,
            warning_days,
            due_at,
            state,
        };
        let mut timers: Vec<store::NewDeadline> = o
            .deadlines
            .iter()
            .map(|d| timer_row(d.kind.into(), 0, to_db_time(d.due_at), row_state(o, d)))
            .collect();
        // A new order has no timer rows yet; a stored one's pending warnings that the
        // transition no longer holds are cancelled.
        let existing = match stored {
            Stored::JustInserted => Vec::new(),
            Stored::Before => store::deadlines(conn, id)?,
        };
        for row in &existing {
            if let Timer::Warning(days) = timer(row.kind, row.warning_days, id)? {
                if row.state == DeadlineState::Pending
                    && !o.warnings.iter().any(|w| w.at_days == days)
                {
                    timers.push(timer_row(
                        TimerKind::Warning,
                        row.warning_days,
                        row.due_at,
                        DeadlineState::Cancelled,
                    ));
                }
            }
        }
        for w in &o.warnings {
            let state = if w.sent {
                DeadlineState::Fired
            } else {
                DeadlineState::Pending
            };
            timers.push(timer_row(
                TimerKind::Warning,
                warning_days(w.at_days)?,
                to_db_time(w.due_at),
                state,
            ));
        }
        for effect in &t.effects {
            let Effect::QueryAlipay { reason } = effect else {
                continue;
            };
            let kind = match reason {
                // A due deadline is queried by the sweep that fired it, right away.
                lc::QueryReason::DeadlineDue(_) => continue,
                lc::QueryReason::OrderNotified => TimerKind::NoticeQuery,
                lc::QueryReason::AuditPassed | lc::QueryReason::SupportTermination => {
                    TimerKind::OrderQuery
                }
            };
            timers.push(timer_row(kind, 0, now_db, DeadlineState::Pending));
        }
        // Should the rules ever ask for one row twice, the last word stands, as it did when each
        // was written on its own.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<store::NewDeadline> = timers
            .into_iter()
            .rev()
            .filter(|r| seen.insert((r.kind, r.warning_days)))
            .collect();
        unique.reverse();
        store::upsert_deadlines(conn, &unique)?;
        if t.history.as_ref().is_some_and(|h| h.inferred) {
            self.metrics
                .transitions_inferred
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(h) = &t.history {
            store::add_history(
                conn,
                &store::NewHistory {
                    commodity_order_id: id.into(),
                    from_status: h.from.map(|s| s.as_str().to_string()),
                    to_status: h.to.as_str().into(),
                    actor: h.actor.clone(),
                    cause: h.cause.into(),
                    reason: h.reason.clone(),
                    inferred: h.inferred,
                    at: now_db,
                },
            )?;
        }
        let note = |conn: &mut AnyConnection, actor: &str, cause: &str, reason: Option<String>| {
            store::add_history(
                conn,
                &store::NewHistory {
                    commodity_order_id: id.into(),
                    from_status: Some(o.status.as_str().into()),
                    to_status: o.status.as_str().into(),
                    actor: actor.into(),
                    cause: cause.into(),
                    reason,
                    inferred: false,
                    at: now_db,
                },
            )
        };
        // A paid order adds its period to the service (a re-order reopens an ended one).
        self.open_period(conn, before, o, now)?;
        for effect in &t.effects {
            match effect {
                // Queued with the timer rows above.
                Effect::QueryAlipay { .. } => {}
                Effect::RestoreService { cause } => {
                    let key = service_key(before);
                    let restore = ServiceEvent::Restore {
                        cause: cause.clone(),
                    };
                    let (_, st) = self.service_event(conn, &key, restore, now)?;
                    if st.ignored.is_none() {
                        // The period the inference closed runs again.
                        self.restore_order_period(conn, before, now)?;
                        note(
                            conn,
                            "alipay",
                            "service_restored",
                            Some(cause.as_str().into()),
                        )?;
                    }
                }
                Effect::TerminateService { cause } => {
                    // A refund or cancellation ends this order's period; the service ends only
                    // when no period remains.
                    if !self.close_order_period(conn, before, cause, now)? {
                        continue;
                    }
                    let key = service_key(before);
                    let active = before
                        .mini_app_id
                        .as_deref()
                        .map(|app| authorizations::find(conn, app))
                        .transpose()?
                        .flatten()
                        .is_some_and(|a| a.status == AuthorizationStatus::Active);
                    let terminate = ServiceEvent::Terminate {
                        cause: cause.clone(),
                        authorization_active: active,
                    };
                    let (_, st) = self.service_event(conn, &key, terminate, now)?;
                    if st.ignored.is_none() {
                        let (actor, reason) = match cause {
                            TerminationCause::Support { actor, reason } => {
                                (actor.as_str(), Some(reason.clone()))
                            }
                            _ => ("scheduler", None),
                        };
                        note(
                            conn,
                            actor,
                            &format!("service_terminated:{}", cause.as_str()),
                            reason,
                        )?;
                    }
                }
                Effect::Alert(alert) => {
                    let message = match alert {
                        lc::Alert::UnknownAlipayStatus { raw } => {
                            format!("order.query returned values outside the table: {raw}")
                        }
                        lc::Alert::AlipayDisagreed { inferred, now } => format!(
                            "order {id}: we inferred {inferred}, but Alipay now shows it {}; the order follows Alipay",
                            now.as_str()
                        ),
                        lc::Alert::ImplementationDeadlineNear {
                            at_days,
                            deadline_due_at,
                        } => {
                            note(
                                conn,
                                "scheduler",
                                "implementation_warning",
                                Some(format!(
                                    "{at_days} days into implementation; cancelled and refunded at {deadline_due_at} unless it reaches 待商家确认"
                                )),
                            )?;
                            format!(
                                "order {id}: {at_days} days into implementation; the 30-day deadline is {deadline_due_at}"
                            )
                        }
                    };
                    if matches!(alert, lc::Alert::ImplementationDeadlineNear { .. }) {
                        self.metrics
                            .deadlines_warned
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let kind = match alert {
                        lc::Alert::UnknownAlipayStatus { .. } => "unknown_alipay_status",
                        lc::Alert::AlipayDisagreed { .. } => "alipay_disagreed",
                        lc::Alert::ImplementationDeadlineNear { .. } => {
                            "implementation_deadline_warning"
                        }
                    };
                    after.alerts.push(AlertMessage {
                        kind: kind.into(),
                        subject: id.into(),
                        message,
                    });
                }
                // Part of the order written above (its deadline and warning rows, its refund).
                Effect::ScheduleDeadline { .. }
                | Effect::CancelDeadline { .. }
                | Effect::ScheduleWarning { .. }
                | Effect::CancelWarnings
                | Effect::RecordRefund { .. } => {}
                Effect::StopProvisioning
                | Effect::OpenTask(_)
                | Effect::CloseTask(_)
                | Effect::StoreToken { .. }
                | Effect::EraseToken => {
                    let key = service_key(before);
                    self.carry_out_service_effect(conn, &key, effect, now)?;
                }
            }
        }
        Ok(after)
    }

    fn save_service(
        &self,
        conn: &mut AnyConnection,
        key: &str,
        state: &ServiceState,
        effects: &[Effect],
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let (by, reason) = match &state.termination_cause {
            Some(TerminationCause::Support { actor, reason }) => {
                (Some(actor.as_str()), Some(reason.as_str()))
            }
            _ => (None, None),
        };
        store::save_service(
            conn,
            &store::ServiceUpdate {
                service_key: key,
                status: state.status,
                termination_cause: state.termination_cause.as_ref().map(CauseCode::of),
                terminated_by: by,
                termination_reason: reason,
                since: to_db_time(state.since),
                updated_at: to_db_time(now),
            },
        )?;
        for effect in effects {
            self.carry_out_service_effect(conn, key, effect, now)?;
        }
        Ok(())
    }

    /// An effect on the service of mini program (or order) `key`, in the caller's transaction.
    fn carry_out_service_effect(
        &self,
        conn: &mut AnyConnection,
        key: &str,
        effect: &Effect,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        match effect {
            Effect::OpenTask(task) => store::open_task(conn, *task, key, to_db_time(now))?,
            Effect::CloseTask(task) => {
                store::close_tasks(conn, *task, key, to_db_time(now))?;
            }
            Effect::StopProvisioning => {
                self.end_service_periods(conn, key, now)?;
                // In the same transaction as the termination: no build step runs after it.
                for (version, order) in builds::cancel_in_flight(conn, key, to_db_time(now))? {
                    super::pipeline::note(
                        conn,
                        &order,
                        "build_cancelled",
                        format!("version {version}: the service ended"),
                        now,
                    )?;
                }
            }
            Effect::EraseToken => {
                authorizations::erase_tokens(conn, key, to_db_time(now))?;
            }
            // The token is sealed and stored by the authorization notice's own apply
            // (`service::apply`), which holds the plaintext; nothing is left to do here.
            Effect::StoreToken { .. } => {}
            // Order-level effects never come from a service or authorization transition; if one
            // did, refusing it loudly beats dropping it.
            Effect::ScheduleDeadline { .. }
            | Effect::CancelDeadline { .. }
            | Effect::ScheduleWarning { .. }
            | Effect::CancelWarnings
            | Effect::RecordRefund { .. }
            | Effect::QueryAlipay { .. }
            | Effect::TerminateService { .. }
            | Effect::RestoreService { .. }
            | Effect::Alert(_) => {
                return Err(LifecycleError::Unexpected(format!(
                    "{effect:?} on service {key}"
                )));
            }
        }
        Ok(())
    }

    /// Our build of the mini program is online: its service is live.
    pub fn service_went_live(
        &self,
        conn: &mut AnyConnection,
        mini_app_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let (_, st) =
            self.service_event(conn, mini_app_id, ServiceEvent::WentLive { at: now }, now)?;
        if st.ignored.is_none() {
            note_service_change(conn, mini_app_id, "service_live", "pipeline", now)?;
        }
        Ok(())
    }

    /// Applies `event` to the service of `key` with the rules and saves the result with its
    /// effects, in the caller's transaction; nothing is written when the rules ignore the event.
    /// Returns the service as it was before, and the transition.
    pub(super) fn service_event(
        &self,
        conn: &mut AnyConnection,
        key: &str,
        event: ServiceEvent,
        now: DateTime<Utc>,
    ) -> Result<(ServiceState, lc::ServiceTransition), LifecycleError> {
        let before = load_service(conn, key, now)?;
        let st = lc::handle_service(&before, event, now)?;
        if st.ignored.is_none() {
            self.save_service(conn, key, &st.state, &st.effects, now)?;
        }
        Ok((before, st))
    }

    /// An authorization event (a grant from the authorization notice, or
    /// `alipay.open.auth.appauth.cancelled`), decided by `domain::lifecycle::handle_authorization`
    /// alone and persisted in the caller's transaction with its effects: the grant's sealed
    /// tokens stored (with a fingerprint of the token), a cancellation remembered whatever it ends
    /// now, a cancellation's tokens erased and the mini program's service terminated (closing the
    /// "merchant must cancel" task). `source` says where a cancellation came from (kept with
    /// it). Returns whether the authorization changed.
    pub fn authorization_event(
        &self,
        conn: &mut AnyConnection,
        auth_app_id: &str,
        event: AuthorizationEvent,
        grant: Option<&Grant>,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, LifecycleError> {
        let row = authorizations::find(conn, auth_app_id)?;
        let current = row.as_ref().map(|r| AuthorizationState {
            status: r.status,
            auth_time_ms: Some(r.auth_time_ms),
            since: match r.status {
                AuthorizationStatus::Cancelled => from_db_time(r.updated_at),
                AuthorizationStatus::Active | AuthorizationStatus::Superseded => {
                    from_db_time(r.auth_time)
                }
            },
            token: r.token_fingerprint.clone(),
        });
        if let AuthorizationEvent::Cancelled { at, token } = &event {
            // Remembered first, whatever it ends now: its grant may still be on its way.
            authorizations::remember_cancellation(
                conn,
                auth_app_id,
                token.as_deref(),
                to_db_time(*at),
                source,
                to_db_time(now),
            )?;
        }
        let granted = matches!(event, AuthorizationEvent::Granted { .. });
        // Only a grant is decided by the cancellations remembered before it.
        let remembered: Vec<lc::Cancellation> = if granted {
            authorizations::cancellations(conn, auth_app_id)?
                .into_iter()
                .map(|c| lc::Cancellation {
                    at: from_db_time(c.cancelled_at),
                    token: c.token_fingerprint,
                })
                .collect()
        } else {
            Vec::new()
        };
        let t = lc::handle_authorization(current.as_ref(), &remembered, event, now)?;
        if let Some(why) = &t.ignored {
            tracing::debug!(%auth_app_id, reason = %why, "authorization event ignored by the rules");
            return Ok(false);
        }
        let expected = row.as_ref().map(|r| (r.auth_time_ms, r.status));
        if granted {
            // The grant is recorded as the rules decided: active with its tokens, or cancelled
            // (its cancellation came first) without them.
            let grant = grant.ok_or_else(|| {
                LifecycleError::Unexpected(format!("a grant of {auth_app_id} without its tokens"))
            })?;
            let active = t.state.status == AuthorizationStatus::Active;
            let auth_time_ms = t.state.auth_time_ms.ok_or_else(|| {
                LifecycleError::Unexpected(format!("a grant of {auth_app_id} without auth_time"))
            })?;
            let saved = authorizations::save(
                conn,
                &authorizations::NewAuthorization {
                    auth_app_id: auth_app_id.to_string(),
                    user_id: grant.user_id.clone(),
                    status: t.state.status,
                    auth_time: to_db_time(grant.auth_time),
                    auth_time_ms,
                    app_auth_token: active.then(|| grant.sealed_token.clone()),
                    app_refresh_token: grant.sealed_refresh_token.clone().filter(|_| active),
                    source_notify_id: grant.notify_id.clone(),
                    created_at: to_db_time(now),
                    updated_at: to_db_time(now),
                    isv_app_id: grant.isv_app_id.clone(),
                    token_fingerprint: Some(grant.token_fingerprint.clone()),
                },
                expected,
            )?;
            if !saved {
                return Err(LifecycleError::Conflict);
            }
        } else if let Some(expected) = expected
            && !authorizations::set_status(
                conn,
                auth_app_id,
                expected,
                t.state.status,
                to_db_time(now),
            )?
        {
            return Err(LifecycleError::Conflict);
        }
        // A cancellation before any grant leaves no row to end: it is remembered above.
        for effect in &t.effects {
            match effect {
                // Stored with the grant above.
                Effect::StoreToken { .. } => {}
                // Without a row (a cancellation before any grant) there is no token to erase.
                Effect::EraseToken if row.is_none() && !granted => {}
                Effect::EraseToken => {
                    authorizations::erase_tokens(conn, auth_app_id, to_db_time(now))?;
                }
                Effect::TerminateService { cause } => {
                    let terminate = ServiceEvent::Terminate {
                        cause: cause.clone(),
                        authorization_active: false,
                    };
                    let (service, _) = self.service_event(conn, auth_app_id, terminate, now)?;
                    // A row either way: the service ends now, or it had ended already.
                    let label = if service.status == lc::ServiceStatus::Terminated {
                        cause.as_str().to_string()
                    } else {
                        format!("service_terminated:{}", cause.as_str())
                    };
                    note_service_change(conn, auth_app_id, &label, "alipay", now)?;
                }
                Effect::ScheduleDeadline { .. }
                | Effect::CancelDeadline { .. }
                | Effect::ScheduleWarning { .. }
                | Effect::CancelWarnings
                | Effect::QueryAlipay { .. }
                | Effect::RecordRefund { .. }
                | Effect::Alert(_)
                | Effect::StopProvisioning
                | Effect::RestoreService { .. }
                | Effect::OpenTask(_)
                | Effect::CloseTask(_) => {
                    return Err(LifecycleError::Unexpected(format!(
                        "{effect:?} from authorization {auth_app_id}"
                    )));
                }
            }
        }
        Ok(true)
    }

    /// Ends the app's authorization as `alipay.open.auth.appauth.cancelled` does, at `at` (the
    /// cancellation's own time), in the caller's transaction: for a cancellation message, and
    /// for anything else that learns the grant is gone (e.g. `auth.token.app.query` answering
    /// `invalid`). `token`, when known, is the token it ends (only a fingerprint of it is
    /// kept); without one, every grant not newer than `at` ends. `source` is recorded with it
    /// (e.g. the message's `notify_id`). Returns whether the authorization changed.
    pub fn cancel_authorization(
        &self,
        conn: &mut AnyConnection,
        auth_app_id: &str,
        at: DateTime<Utc>,
        token: Option<&str>,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, LifecycleError> {
        let token = token.map(|t| self.token_fingerprint(auth_app_id, t));
        self.authorization_event(
            conn,
            auth_app_id,
            AuthorizationEvent::Cancelled { at, token },
            None,
            source,
            now,
        )
    }

    /// The keyed fingerprint of the app's `app_auth_token` (never logged, never the token).
    pub fn token_fingerprint(&self, auth_app_id: &str, token: &str) -> String {
        self.sealer.fingerprint(
            &super::apply::token_context("app_auth_token", auth_app_id),
            token.as_bytes(),
        )
    }

    /// One scheduler tick: claims due deadlines, warnings and queued queries, and fires each.
    /// Before a deadline changes an order, `order.query` confirms it; with no answer, or no
    /// change, the rule is applied as `inferred` once the grace period has passed.
    pub async fn fire_due_deadlines(&self, limit: i64) -> Result<TickReport, LifecycleError> {
        let now = self.clock.now();
        let lease = now + Duration::minutes(5);
        let claimed = self
            .db_write(move |conn| {
                deadlines::claim_due(conn, to_db_time(now), to_db_time(lease), limit)
                    .map_err(LifecycleError::from)
            })
            .await?;
        let mut report = TickReport {
            claimed: claimed.len(),
            ..TickReport::default()
        };
        // A row whose kind does not read is an error every tick (never skipped, never guessed),
        // retried next tick like any row that failed; the others are fired.
        let mut due = Vec::with_capacity(claimed.len());
        for claim in claimed {
            match claim {
                Ok(d) => due.push(d),
                Err(c) => {
                    report.errors += 1;
                    tracing::warn!(order = %c.commodity_order_id, error = %c.error, "deadline not fired: corrupt data; retried");
                    // Reported again next tick, whatever its attempts: it needs a person.
                    let retry = now + Duration::seconds(self.lifecycle.tick_seconds as i64);
                    if let Err(error) = self.release_row(c.id, retry).await {
                        tracing::warn!(order = %c.commodity_order_id, %error, "deadline not released");
                    }
                }
            }
        }
        // Rows of different orders are independent; Alipay round trips overlap.
        let outcomes: Vec<(deadlines::ClaimedDeadline, Result<bool, LifecycleError>)> =
            futures_util::stream::iter(due)
                .map(|d| async move {
                    let outcome = self.fire(&d, now).await;
                    (d, outcome)
                })
                .buffer_unordered(self.lifecycle.concurrency.max(1))
                .collect()
                .await;
        for (d, outcome) in outcomes {
            match outcome {
                Ok(moved) => {
                    self.metrics
                        .deadlines_fired
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    report.transitions += usize::from(moved);
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(order = %d.commodity_order_id, kind = d.kind.as_str(), warning_days = d.warning_days, error = %e, "deadline not fired; retried later");
                    let retry = now + self.lifecycle.retry_wait(d.kind, d.attempts);
                    if let Err(error) = self.release_row(d.id, retry).await {
                        // The lease runs out by itself: the row is fired again after it.
                        tracing::warn!(order = %d.commodity_order_id, %error, "deadline not released");
                    }
                }
            }
        }
        Ok(report)
    }

    /// Fires one claimed row; true when the order's status changed.
    async fn fire(
        &self,
        d: &deadlines::ClaimedDeadline,
        now: DateTime<Utc>,
    ) -> Result<bool, LifecycleError> {
        let id = d.commodity_order_id.as_str();
        let kind = match timer(d.kind, d.warning_days, id)? {
            Timer::Warning(_) if self.order_service_ended(id).await? => {
                // The service ended (support terminated it, say): no more warnings for it.
                self.finish_row(d.id, DeadlineState::Cancelled).await?;
                return Ok(false);
            }
            Timer::Service(kind) => return self.fire_service_timer(d.id, id, kind).await,
            Timer::Warning(days) => {
                let t = self
                    .order_event_now(&OrderId::from(id), OrderEvent::WarningDue { at_days: days })
                    .await?;
                self.finish_row(d.id, DeadlineState::Fired).await?;
                return Ok(t.history.is_some());
            }
            Timer::Deadline(kind) => Some(kind),
            Timer::Query { .. } => None,
        };
        let notice = matches!(
            timer(d.kind, d.warning_days, id)?,
            Timer::Query { notice: true }
        );
        // A due deadline changes nothing by itself (the rules' DeadlineDue only asks Alipay, and
        // the row stays open until the rule is applied), so the sweep asks Alipay directly:
        // Alipay is the source of truth.
        let answer = self.read_alipay(id).await;
        let mut moved = false;
        // An answer we cannot read says nothing: it never lets a rule be applied by inference
        // (a refund against what Alipay may be saying); the deadline is looked at again.
        let unreadable = matches!(
            answer,
            Ok(AlipayAnswer {
                reading: lc::QueryReading::Unknown { .. },
                ..
            })
        );
        let (answered, after) = match answer {
            Ok(answer) => {
                let t = self.apply_answer(id, answer, notice).await?;
                moved |= t.history.is_some();
                (Ok(()), Some(t.order))
            }
            Err(error) => {
                tracing::warn!(order = %id, %error, "order.query failed");
                (Err(error), None)
            }
        };
        let Some(kind) = kind else {
            // A queued query: done once Alipay answered; otherwise retried next tick.
            answered?;
            self.finish_row(d.id, DeadlineState::Fired).await?;
            return Ok(moved);
        };
        // Still open after Alipay's answer? Past the grace period, the rule applies as inferred.
        let order = match after {
            Some(order) => order,
            None => self.load_order(id).await?,
        };
        let open_since = order.inference_allowed_from(kind, self.lifecycle_rules());
        match open_since {
            None => Ok(moved),
            Some(from) if now >= from && !unreadable => {
                let t = self
                    .order_event_now(
                        &OrderId::from(id),
                        OrderEvent::DeadlineConfirmed {
                            kind,
                            inferred: true,
                        },
                    )
                    .await?;
                Ok(moved | t.history.is_some())
            }
            Some(_) => {
                // Alipay unreachable before the grace period ends: an error, retried next tick.
                // (An unreadable answer, before or after it, is looked at again below.)
                answered?;
                // Alipay shows no change yet: look again next tick.
                self.release_row(
                    d.id,
                    now + Duration::seconds(self.lifecycle.tick_seconds as i64),
                )
                .await?;
                Ok(moved)
            }
        }
    }

    async fn load_order(&self, id: &str) -> Result<Order, LifecycleError> {
        let id = id.to_string();
        self.db(move |conn| {
            let row = store::find(conn, &id)?.ok_or(LifecycleError::NotFound(id.clone()))?;
            let rows = store::deadlines(conn, &id)?;
            to_domain(&row, &rows)
        })
        .await
    }

    async fn finish_row(&self, id: i64, state: DeadlineState) -> Result<(), LifecycleError> {
        self.db_write(move |conn| {
            deadlines::finish(conn, id, state)
                .map(|_| ())
                .map_err(LifecycleError::from)
        })
        .await
    }

    async fn release_row(&self, id: i64, retry_at: DateTime<Utc>) -> Result<(), LifecycleError> {
        self.db_write(move |conn| {
            deadlines::release(conn, id, to_db_time(retry_at)).map_err(LifecycleError::from)
        })
        .await
    }

    /// Applies what `order.query` answered: joins the order to the mini program its items name
    /// when the notice named none, then the reading, with the payment time the answer shows (the
    /// items' `service_effect_date`; else, for the query the notice queued, the notice's
    /// `order_time`; else none, and the rules record the moment of the reading).
    async fn apply_answer(
        &self,
        id: &str,
        answer: AlipayAnswer,
        notice: bool,
    ) -> Result<Transition, LifecycleError> {
        if let Some(mini_app_id) = answer.mini_app_id.clone() {
            let (owned, now) = (id.to_string(), self.clock.now());
            self.db_write(move |conn| -> Result<(), LifecycleError> {
                if store::join_mini_app(conn, &owned, &mini_app_id)?
                    && let Some(order) = store::find(conn, &owned)?
                {
                    // The notice named no mini program: the items did (LIFECYCLE.md "Joins").
                    store::add_history(
                        conn,
                        &store::NewHistory {
                            commodity_order_id: owned.clone(),
                            from_status: Some(order.status.as_str().into()),
                            to_status: order.status.as_str().into(),
                            actor: "alipay".into(),
                            cause: "mini_app_joined".into(),
                            reason: Some(format!(
                                "order_items[].mini_app_id {mini_app_id} (the notice had none)"
                            )),
                            inferred: false,
                            at: to_db_time(now),
                        },
                    )?;
                }
                Ok(())
            })
            .await?;
        }
        let shows_payment = matches!(
            answer.reading,
            lc::QueryReading::Paid
                | lc::QueryReading::AwaitingConfirmation
                | lc::QueryReading::Completed
        );
        let paid = match answer.service_effect_at {
            Some(at) if shows_payment => Some(lc::Payment {
                at,
                source: lc::PaidAtSource::ServiceEffectDate,
            }),
            _ if shows_payment && notice => {
                let owned = id.to_string();
                let ordered_at = self
                    .db(move |conn| {
                        store::find(conn, &owned)?
                            .map(|row| from_db_time(row.ordered_at))
                            .ok_or(LifecycleError::NotFound(owned.clone()))
                    })
                    .await?;
                Some(lc::Payment {
                    at: ordered_at,
                    source: lc::PaidAtSource::OrderTime,
                })
            }
            _ => None,
        };
        self.order_event_now(
            &OrderId::from(id),
            OrderEvent::AlipayAnswered {
                reading: answer.reading,
                paid,
            },
        )
        .await
    }

    /// `order.query` for one order, every page of its items, read with the configured table.
    pub async fn read_alipay(
        &self,
        id: &str,
    ) -> Result<AlipayAnswer, crate::alipay::client::AlipayError> {
        let reading = self.read_alipay_pages(id).await;
        self.record_call(
            id,
            crate::alipay::api::METHOD_ORDER_QUERY,
            reading.as_ref().err(),
        )
        .await;
        reading
    }

    async fn read_alipay_pages(
        &self,
        id: &str,
    ) -> Result<AlipayAnswer, crate::alipay::client::AlipayError> {
        let alipay = self.order_client(id).await?;
        let mut response = alipay
            .servicemarket_order_query(&OrderQueryRequest::new(id))
            .await?;
        let mut items: Vec<String> = Vec::new();
        // The first item that carries service dates (service::periods keeps them verbatim).
        let mut dates: Option<(Option<String>, Option<String>)> = None;
        let mut service_effect_at: Option<DateTime<Utc>> = None;
        let mut mini_app_id: Option<String> = None;
        let mut page = 1u32;
        loop {
            if dates.is_none() {
                dates = response
                    .order_items
                    .iter()
                    .find(|i| i.service_effect_date.is_some() || i.service_expire_date.is_some())
                    .map(|i| (i.service_effect_date.clone(), i.service_expire_date.clone()));
            }
            items.extend(
                response
                    .order_items
                    .iter()
                    .filter_map(|i| i.order_status.as_ref().map(|s| s.as_str().to_string())),
            );
            for item in &response.order_items {
                // The earliest item start is when the order's service began.
                if let Some(at) = item.service_effect_at() {
                    service_effect_at = Some(service_effect_at.map_or(at, |known| known.min(at)));
                }
                if mini_app_id.is_none() {
                    mini_app_id = item.mini_app_id.clone().filter(|m| !m.is_empty());
                }
            }
            let total = response.total_size.unwrap_or(0).max(0) as usize;
            // At most 100 items a page; a large multi-shop order spans pages.
            if items.len() >= total || response.order_items.is_empty() || page >= 100 {
                break;
            }
            page += 1;
            let order_status = response.status.clone();
            response = alipay
                .servicemarket_order_query(&OrderQueryRequest::new(id).page(page))
                .await?;
            if response.status.is_none() {
                response.status = order_status;
            }
        }
        let order_status = response
            .order_level_status()
            .map(|s| s.as_str().to_string());
        if let Some((effect, expire)) = dates {
            // Before the reading is applied, so that a period opened by it takes these dates.
            if let Err(error) = self.record_item_dates(id, effect, expire).await {
                tracing::warn!(order = %id, %error, "order.query item dates not recorded");
            }
        }
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        let rules = self.lifecycle_rules();
        if let Some(unread) = lc::unread_values(order_status.as_deref(), &items, rules) {
            // The items decided; what they did not need is still support's to see.
            self.alerts
                .raise(AlertMessage {
                    kind: "unknown_alipay_status".into(),
                    subject: id.to_string(),
                    message: format!(
                        "order.query returned {unread}, outside the table; read from the items"
                    ),
                })
                .await;
        }
        Ok(AlipayAnswer {
            reading: lc::read_order_query(order_status.as_deref(), &items, rules),
            service_effect_at,
            mini_app_id,
        })
    }

    /// The client of the ISV app the order was placed with (the primary app for an order we do
    /// not hold, or one older than `isv_app_id`); an app no longer configured is an error.
    async fn order_client(
        &self,
        id: &str,
    ) -> Result<std::sync::Arc<dyn crate::alipay::client::AlipayApi>, AlipayError> {
        let owned = id.to_string();
        let isv_app_id = self
            .db(move |conn| {
                store::find(conn, &owned)
                    .map(|row| row.and_then(|r| r.isv_app_id))
                    .map_err(crate::store::StoreError::from)
            })
            .await
            .map_err(|e| AlipayError::Decode(format!("order {id} not read: {e}")))?;
        Ok(self.apps.for_record(isv_app_id.as_deref())?.alipay.clone())
    }

    /// Asks Alipay about one order now and applies what it says.
    pub async fn reconcile_order(&self, id: &OrderId) -> Result<Transition, LifecycleError> {
        let answer = self.read_alipay(id.as_str()).await?;
        let recorded = format!("{:?}", answer.reading);
        let transition = self.apply_answer(id.as_str(), answer, false).await?;
        // Each result is kept with the order, for support.
        let (id, at) = (id.to_string(), to_db_time(self.clock.now()));
        self.db_write(move |conn| {
            store::record_reconciliation(conn, &id, &recorded, at).map_err(LifecycleError::from)
        })
        .await?;
        Ok(transition)
    }

    /// Reconciliation: every open order asked about with `order.query`, at most `concurrency`
    /// at once and `rate_per_second` calls a second; drift is repaired through the rules (and
    /// shows in the order's history). `progress(done, total)` is called after each order.
    pub async fn reconcile_all(
        &self,
        rate_per_second: u32,
        concurrency: usize,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<ReconcileReport, LifecycleError> {
        // Open orders, and those an inference closed in the last 7 days: Alipay may disagree.
        let review_since = to_db_time(self.clock.now() - lc::inference_review_window());
        let ids = self
            .db(move |conn| -> Result<Vec<String>, LifecycleError> {
                let mut ids: Vec<String> = Vec::new();
                loop {
                    let after = ids.last().cloned().unwrap_or_default();
                    let page = store::open_ids(conn, &after, 1000)?;
                    if page.is_empty() {
                        break;
                    }
                    ids.extend(page);
                }
                let mut inferred: Vec<String> = Vec::new();
                loop {
                    let after = inferred.last().cloned().unwrap_or_default();
                    let page = store::inferred_ids(conn, review_since, &after, 1000)?;
                    if page.is_empty() {
                        break;
                    }
                    inferred.extend(page);
                }
                ids.extend(inferred);
                Ok(ids)
            })
            .await?;
        let total = ids.len();
        let pace = tokio::sync::Mutex::new(tokio::time::interval(
            std::time::Duration::from_secs_f64(1.0 / f64::from(rate_per_second.max(1))),
        ));
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<bool, LifecycleError>> = futures_util::stream::iter(ids)
            .map(|id| {
                let (pace, done) = (&pace, &done);
                async move {
                    pace.lock().await.tick().await;
                    let result = self
                        .reconcile_order(&OrderId::from(id.as_str()))
                        .await
                        .map(|t| t.history.is_some());
                    if let Err(error) = &result {
                        tracing::warn!(order = %id, %error, "reconciliation of an order failed");
                    }
                    progress(
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                        total,
                    );
                    result
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        Ok(ReconcileReport {
            orders: total,
            repaired: results.iter().filter(|r| matches!(r, Ok(true))).count(),
            errors: results.iter().filter(|r| r.is_err()).count(),
        })
    }
}

/// What one `order.query` answered, as the lifecycle reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayAnswer {
    pub reading: lc::QueryReading,
    /// The earliest item `service_effect_date` (Beijing time, as UTC): when the service began.
    pub service_effect_at: Option<DateTime<Utc>>,
    /// The first item's `mini_app_id`: joins an order whose notice named no mini program.
    pub mini_app_id: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    pub orders: usize,
    /// Orders whose state changed to match Alipay.
    pub repaired: usize,
    pub errors: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub claimed: usize,
    pub transitions: usize,
    pub errors: usize,
}

/// The rules and the tick, shared by the lifecycle use cases.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    pub rules: LifecycleRules,
    pub tick_seconds: u64,
    /// Claimed rows fired at once (each waits on an Alipay round trip).
    pub concurrency: usize,
    pub reconcile_cron: String,
    pub reconcile_rate: u32,
}

impl LifecycleSettings {
    /// How long a timer row that could not be fired waits before it is tried again, after
    /// `failed_before` failed attempts: the queues' one retry policy, never given up. A due
    /// deadline, warning or expiry is looked at again within a tick (the rule's grace period
    /// decides when to stop waiting for Alipay); a queued query that keeps failing (every order
    /// notice queues one) backs off to hourly, like reconciliation, rather than ask Alipay every
    /// tick forever.
    fn retry_wait(&self, kind: TimerKind, failed_before: i32) -> Duration {
        let tick = std::time::Duration::from_secs(self.tick_seconds.max(1));
        let cap = match kind {
            TimerKind::OrderQuery | TimerKind::NoticeQuery => std::time::Duration::from_secs(3600),
            TimerKind::Payment
            | TimerKind::Implementation
            | TimerKind::Confirmation
            | TimerKind::Warning
            | TimerKind::ServiceExpiry
            | TimerKind::ServiceExpiryWarning => tick,
        };
        let wait = RetryPolicy {
            cap: cap.max(tick),
            max_attempts: None,
        }
        .wait(failed_before);
        // Never before the next tick would look anyway.
        wait.max(Duration::from_std(tick).unwrap_or(Duration::MAX))
    }
}

/// A timeline row on each order of a service whose state changed while the orders' statuses
/// stayed (went live, ended by the merchant's authorization cancellation), so support sees it.
pub(super) fn note_service_change(
    conn: &mut AnyConnection,
    service_key: &str,
    cause: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), LifecycleError> {
    // One statement for every order of the service, however many it has.
    let orders = store::ServiceOrders::of_service(service_key);
    store::note_on_orders(conn, orders, actor, cause, to_db_time(now))?;
    Ok(())
}
