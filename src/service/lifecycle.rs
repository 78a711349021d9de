//! The lifecycle use cases: an event on an order (from a gateway message, the scheduler, support
//! or reconciliation) is applied with the pure rules of `domain::lifecycle` and persisted in one
//! transaction: the order's new state, its deadline rows, a history row, the service's
//! termination and support's tasks. Calls to Alipay happen outside that transaction, in the
//! scheduler sweep (`fire_due_deadlines`) and reconciliation.

use super::alerts::Alert as AlertMessage;
use super::{Services, blocking};
use crate::alipay::api::OrderQueryRequest;
use crate::domain::lifecycle::{
    self as lc, Deadline, DeadlineState, Effect, LifecycleRules, Order, OrderEvent, ServiceEvent,
    ServiceState, ServiceStatus, TerminationCause, Transition, Warning,
};
use crate::domain::order::OrderPlaced;
use crate::domain::{CancelReason, DeadlineKind, OrderStatus};
use crate::store::orders::{self as store, DeadlineRow, OrderRow};
use crate::store::{AnyConnection, authorizations, deadlines, from_db_time, to_db_time};
use chrono::{DateTime, Duration, Utc};
use diesel::Connection as _;
use futures_util::StreamExt as _;

/// Deadline rows of kind `warning_<days>` hold the implementation warnings.
const WARNING_PREFIX: &str = "warning_";
/// A deadline row of this kind asks the sweep to query Alipay about the order now (an audit
/// passed, support terminated): the outbox for `Effect::QueryAlipay`.
pub const QUERY_KIND: &str = "query_alipay";

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no order {0}")]
    NotFound(String),
    #[error("{0}")]
    Rule(#[from] lc::RuleError),
    #[error("stored order {0} does not read: {1}")]
    Corrupt(String, String),
    #[error("the order changed concurrently; retry")]
    Conflict,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

/// What a persisted transition leaves to do after the commit.
#[derive(Debug, Default)]
pub struct AfterCommit {
    pub alerts: Vec<AlertMessage>,
    pub changed: bool,
}

fn cancel_reason(text: &str) -> Option<CancelReason> {
    [
        CancelReason::UnpaidTimeout,
        CancelReason::ImplementationTimeout,
        CancelReason::MerchantRefund,
        CancelReason::IsvCancelled,
    ]
    .into_iter()
    .find(|r| r.as_str() == text)
}

fn deadline_kind(text: &str) -> Option<DeadlineKind> {
    [
        DeadlineKind::Payment,
        DeadlineKind::Implementation,
        DeadlineKind::Confirmation,
    ]
    .into_iter()
    .find(|k| k.as_str() == text)
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
    let corrupt =
        |what: &str| LifecycleError::Corrupt(row.commodity_order_id.clone(), what.to_string());
    let status = OrderStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?;
    let mut deadlines = Vec::new();
    let mut warnings = Vec::new();
    for d in rows {
        if let Some(kind) = deadline_kind(&d.kind) {
            let state = DeadlineState::parse(&d.state).ok_or_else(|| corrupt("deadline state"))?;
            deadlines.push(Deadline {
                kind,
                due_at: from_db_time(d.due_at),
                state,
            });
        } else if let Some(days) = d
            .kind
            .strip_prefix(WARNING_PREFIX)
            .and_then(|n| n.parse().ok())
        {
            if d.state != deadlines::CANCELLED {
                warnings.push(Warning {
                    at_days: days,
                    due_at: from_db_time(d.due_at),
                    sent: d.state == deadlines::FIRED,
                });
            }
        }
    }
    Ok(Order {
        status,
        cancel_reason: row.cancel_reason.as_deref().and_then(cancel_reason),
        ordered_at: from_db_time(row.ordered_at),
        status_since: from_db_time(row.status_since),
        paid: row.paid,
        deadlines,
        warnings,
        audit_passed_at: row.audit_passed_at.map(from_db_time),
        refund: row.refund.as_deref().and_then(|r| match r {
            "automatic" => Some(lc::Refund::Automatic),
            "offline" => Some(lc::Refund::Offline),
            _ => None,
        }),
    })
}

/// The row state of a deadline: a fired deadline of the order's current state is still open
/// (the sweep re-checks it until Alipay agrees or the grace period ends).
fn row_state(order: &Order, d: &Deadline) -> &'static str {
    match d.state {
        DeadlineState::Pending => deadlines::PENDING,
        DeadlineState::Fired if deadline_of(order.status) == Some(d.kind) => deadlines::PENDING,
        DeadlineState::Fired => deadlines::FIRED,
        DeadlineState::Cancelled => deadlines::CANCELLED,
    }
}

fn service_key(row: &OrderRow) -> String {
    row.mini_app_id
        .clone()
        .unwrap_or_else(|| format!("order:{}", row.commodity_order_id))
}

fn termination_cause(row: &store::ServiceRow) -> Option<TerminationCause> {
    Some(match row.termination_cause.as_deref()? {
        "authorization_cancelled" => TerminationCause::AuthorizationCancelled,
        "order_cancelled" => TerminationCause::OrderCancelled,
        "refunded" => TerminationCause::Refunded,
        "implementation_timeout" => TerminationCause::ImplementationTimeout,
        "expired" => TerminationCause::Expired,
        _ => TerminationCause::Support {
            actor: row.terminated_by.clone().unwrap_or_default(),
            reason: row.termination_reason.clone().unwrap_or_default(),
        },
    })
}

fn load_service(
    conn: &mut AnyConnection,
    key: &str,
    now: DateTime<Utc>,
) -> Result<ServiceState, LifecycleError> {
    let open: Vec<lc::Task> = store::open_tasks(conn, key)?
        .iter()
        .filter(|k| k.as_str() == lc::Task::MerchantMustCancelAuthorization.as_str())
        .map(|_| lc::Task::MerchantMustCancelAuthorization)
        .collect();
    Ok(match store::find_service(conn, key)? {
        Some(row) => ServiceState {
            status: match row.status.as_str() {
                "live" => ServiceStatus::Live,
                "terminated" => ServiceStatus::Terminated,
                _ => ServiceStatus::Provisioning,
            },
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
            status: transition.order.status.as_str().into(),
            status_since: to_db_time(transition.order.status_since),
            ..new.clone()
        };
        if !store::insert_if_absent(conn, &row)? {
            return Ok(false);
        }
        let created = store::find(conn, &new.commodity_order_id)?
            .ok_or_else(|| LifecycleError::NotFound(new.commodity_order_id.clone()))?;
        self.persist(conn, &created, &transition, now)?;
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
        let after = self.persist(conn, &row, &transition, now)?;
        Ok((transition, after))
    }

    /// One event in its own transaction (retried when a concurrent writer moved the order
    /// first); alerts are raised after the commit.
    pub async fn order_event_now(
        &self,
        id: &str,
        event: OrderEvent,
    ) -> Result<Transition, LifecycleError> {
        let (s, id) = (self.clone(), id.to_string());
        let (transition, after) = blocking(move || {
            let mut conn = s
                .pool
                .get()
                .map_err(|e| LifecycleError::Unavailable(e.to_string()))?;
            for _ in 0..5 {
                let now = s.clock.now();
                let _writer = s.pool.write_guard();
                match conn.transaction(|conn| s.order_event(conn, &id, event.clone(), now)) {
                    Err(LifecycleError::Conflict) => continue,
                    other => return other,
                }
            }
            Err(LifecycleError::Conflict)
        })
        .await
        .map_err(|e| LifecycleError::Unavailable(e.to_string()))??;
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
        let saved = store::save_state(
            conn,
            id,
            (&before.status, before.status_since, before.updated_at),
            &store::OrderStateUpdate {
                status: o.status.as_str().into(),
                cancel_reason: o.cancel_reason.map(|r| r.as_str().to_string()),
                status_since: to_db_time(o.status_since),
                paid: o.paid,
                audit_passed_at: o.audit_passed_at.map(to_db_time),
                refund: o.refund.map(|r| r.as_str().to_string()),
                updated_at: now_db,
            },
        )?;
        if !saved {
            return Err(LifecycleError::Conflict);
        }
        for d in &o.deadlines {
            store::upsert_deadline(
                conn,
                id,
                d.kind.as_str(),
                to_db_time(d.due_at),
                row_state(o, d),
            )?;
        }
        let existing = store::deadlines(conn, id)?;
        for row in existing
            .iter()
            .filter(|r| r.kind.starts_with(WARNING_PREFIX))
        {
            let days: Option<u32> = row
                .kind
                .strip_prefix(WARNING_PREFIX)
                .and_then(|n| n.parse().ok());
            if row.state == deadlines::PENDING
                && !o.warnings.iter().any(|w| Some(w.at_days) == days)
            {
                store::upsert_deadline(conn, id, &row.kind, row.due_at, deadlines::CANCELLED)?;
            }
        }
        for w in &o.warnings {
            let state = if w.sent {
                deadlines::FIRED
            } else {
                deadlines::PENDING
            };
            store::upsert_deadline(
                conn,
                id,
                &format!("{WARNING_PREFIX}{}", w.at_days),
                to_db_time(w.due_at),
                state,
            )?;
        }
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
        for effect in &t.effects {
            match effect {
                // A due deadline is queried by the sweep that fired it, right away.
                Effect::QueryAlipay {
                    reason: lc::QueryReason::DeadlineDue(_),
                } => {}
                Effect::QueryAlipay { .. } => {
                    store::upsert_deadline(conn, id, QUERY_KIND, now_db, deadlines::PENDING)?;
                }
                Effect::TerminateService { cause } => {
                    let key = service_key(before);
                    let active = before
                        .mini_app_id
                        .as_deref()
                        .map(|app| authorizations::find(conn, app))
                        .transpose()?
                        .flatten()
                        .is_some_and(|a| a.status == "active");
                    let service = load_service(conn, &key, now)?;
                    let st = lc::handle_service(
                        &service,
                        ServiceEvent::Terminate {
                            cause: cause.clone(),
                            authorization_active: active,
                        },
                        now,
                    )?;
                    self.save_service(conn, &key, &st.state, &st.effects, now)?;
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
                // Deadlines, warnings and refunds are part of the persisted order above;
                // provisioning is not built yet (the template pipeline).
                _ => {}
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
                status: state.status.as_str(),
                termination_cause: state.termination_cause.as_ref().map(|c| c.as_str()),
                terminated_by: by,
                termination_reason: reason,
                since: to_db_time(state.since),
                updated_at: to_db_time(now),
            },
        )?;
        for effect in effects {
            match effect {
                Effect::OpenTask(task) => {
                    store::open_task(conn, task.as_str(), key, to_db_time(now))?
                }
                Effect::CloseTask(task) => {
                    store::close_tasks(conn, task.as_str(), key, to_db_time(now))?;
                }
                _ => {}
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
        let service = load_service(conn, mini_app_id, now)?;
        let st = lc::handle_service(&service, ServiceEvent::WentLive { at: now }, now)?;
        if st.ignored.is_none() {
            self.save_service(conn, mini_app_id, &st.state, &st.effects, now)?;
            note_service_change(conn, mini_app_id, "service_live", "pipeline", now)?;
        }
        Ok(())
    }

    /// `alipay.open.auth.appauth.cancelled`: the authorization ends, its token is erased, and the
    /// mini program's service is terminated (closing the "merchant must cancel" task).
    pub fn authorization_cancelled(
        &self,
        conn: &mut AnyConnection,
        auth_app_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        authorizations::cancel(conn, auth_app_id, to_db_time(now))?;
        let service = load_service(conn, auth_app_id, now)?;
        let st = lc::handle_service(
            &service,
            ServiceEvent::Terminate {
                cause: TerminationCause::AuthorizationCancelled,
                authorization_active: false,
            },
            now,
        )?;
        self.save_service(conn, auth_app_id, &st.state, &st.effects, now)?;
        // A row either way: the service ends now, or it had ended already.
        let already_ended = service.status == ServiceStatus::Terminated;
        let cause = if already_ended {
            TerminationCause::AuthorizationCancelled
                .as_str()
                .to_string()
        } else {
            format!(
                "service_terminated:{}",
                TerminationCause::AuthorizationCancelled.as_str()
            )
        };
        note_service_change(conn, auth_app_id, &cause, "alipay", now)?;
        Ok(())
    }

    /// One scheduler tick: claims due deadlines, warnings and queued queries, and fires each.
    /// Before a deadline changes an order, `order.query` confirms it; with no answer, or no
    /// change, the rule is applied as `inferred` once the grace period has passed.
    pub async fn fire_due_deadlines(&self, limit: i64) -> Result<TickReport, String> {
        let now = self.clock.now();
        let lease = now + Duration::minutes(5);
        let s = self.clone();
        let claimed = blocking(move || {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let _writer = s.pool.write_guard();
            deadlines::claim_due(&mut conn, to_db_time(now), to_db_time(lease), limit)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let mut report = TickReport {
            claimed: claimed.len(),
            ..TickReport::default()
        };
        // Rows of different orders are independent; Alipay round trips overlap.
        let outcomes: Vec<(deadlines::ClaimedDeadline, Result<bool, String>)> =
            futures_util::stream::iter(claimed)
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
                    tracing::warn!(order = %d.commodity_order_id, kind = %d.kind, error = %e, "deadline not fired; retried next tick");
                    let retry =
                        to_db_time(now + Duration::seconds(self.lifecycle.tick_seconds as i64));
                    let s = self.clone();
                    let _ = blocking(move || {
                        let mut conn = s.pool.get().map_err(|e| e.to_string())?;
                        let _writer = s.pool.write_guard();
                        deadlines::release(&mut conn, d.id, retry).map_err(|e| e.to_string())
                    })
                    .await;
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
    ) -> Result<bool, String> {
        let id = d.commodity_order_id.as_str();
        let e = |e: LifecycleError| e.to_string();
        if let Some(days) = d
            .kind
            .strip_prefix(WARNING_PREFIX)
            .and_then(|n| n.parse().ok())
        {
            let t = self
                .order_event_now(id, OrderEvent::WarningDue { at_days: days })
                .await
                .map_err(e)?;
            self.finish_row(d.id, deadlines::FIRED).await?;
            return Ok(t.history.is_some());
        }
        // A due deadline changes nothing by itself (the rules' DeadlineDue only asks Alipay, and
        // the row stays open until the rule is applied), so the sweep asks Alipay directly:
        // Alipay is the source of truth.
        let kind = deadline_kind(&d.kind);
        let answer = self.read_alipay(id).await;
        let mut moved = false;
        let (answered, after) = match answer {
            Ok(reading) => {
                let t = self
                    .order_event_now(id, OrderEvent::AlipaySays(reading))
                    .await
                    .map_err(e)?;
                moved |= t.history.is_some();
                (true, Some(t.order))
            }
            Err(error) => {
                tracing::warn!(order = %id, %error, "order.query failed");
                (false, None)
            }
        };
        let Some(kind) = kind else {
            // A queued query: done once Alipay answered; otherwise retried next tick.
            if answered {
                self.finish_row(d.id, deadlines::FIRED).await?;
                return Ok(moved);
            }
            return Err("order.query failed".into());
        };
        // Still open after Alipay's answer? Past the grace period, the rule applies as inferred.
        let order = match after {
            Some(order) => order,
            None => self.load_order(id).await?,
        };
        let open_since = order.inference_allowed_from(kind, self.lifecycle_rules());
        match open_since {
            None => Ok(moved),
            Some(from) if now >= from => {
                let t = self
                    .order_event_now(
                        id,
                        OrderEvent::DeadlineConfirmed {
                            kind,
                            inferred: true,
                        },
                    )
                    .await
                    .map_err(e)?;
                Ok(moved | t.history.is_some())
            }
            Some(_) if answered => {
                // Alipay shows no change yet: look again next tick.
                self.release_row(
                    d.id,
                    now + Duration::seconds(self.lifecycle.tick_seconds as i64),
                )
                .await?;
                Ok(moved)
            }
            Some(_) => Err("order.query failed and the grace period has not passed".into()),
        }
    }

    async fn load_order(&self, id: &str) -> Result<Order, String> {
        let (s, id) = (self.clone(), id.to_string());
        blocking(move || -> Result<Order, String> {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let row = store::find(&mut conn, &id)
                .map_err(|e| e.to_string())?
                .ok_or("order vanished")?;
            let rows = store::deadlines(&mut conn, &id).map_err(|e| e.to_string())?;
            to_domain(&row, &rows).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn finish_row(&self, id: i64, state: &'static str) -> Result<(), String> {
        let s = self.clone();
        blocking(move || {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let _writer = s.pool.write_guard();
            deadlines::finish(&mut conn, id, state)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn release_row(&self, id: i64, retry_at: DateTime<Utc>) -> Result<(), String> {
        let s = self.clone();
        blocking(move || {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let _writer = s.pool.write_guard();
            deadlines::release(&mut conn, id, to_db_time(retry_at)).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// `order.query` for one order, every page of its items, read with the configured table.
    pub async fn read_alipay(
        &self,
        id: &str,
    ) -> Result<lc::QueryReading, crate::alipay::client::AlipayError> {
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
    ) -> Result<lc::QueryReading, crate::alipay::client::AlipayError> {
        let mut response = self
            .alipay
            .servicemarket_order_query(&OrderQueryRequest::new(id))
            .await?;
        let mut items: Vec<String> = Vec::new();
        let mut page = 1u32;
        loop {
            items.extend(
                response
                    .order_items
                    .iter()
                    .filter_map(|i| i.order_status.as_ref().map(|s| s.as_str().to_string())),
            );
            let total = response.total_size.unwrap_or(0).max(0) as usize;
            // At most 100 items a page; a large multi-shop order spans pages.
            if items.len() >= total || response.order_items.is_empty() || page >= 100 {
                break;
            }
            page += 1;
            let order_status = response.status.clone();
            response = self
                .alipay
                .servicemarket_order_query(&OrderQueryRequest::new(id).page(page))
                .await?;
            if response.status.is_none() {
                response.status = order_status;
            }
        }
        let order_status = response
            .order_level_status()
            .map(|s| s.as_str().to_string());
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        Ok(lc::read_order_query(
            order_status.as_deref(),
            &items,
            self.lifecycle_rules(),
        ))
    }

    /// Asks Alipay about one order now and applies what it says.
    pub async fn reconcile_order(&self, id: &str) -> Result<Transition, LifecycleError> {
        let reading = self
            .read_alipay(id)
            .await
            .map_err(|e| LifecycleError::Unavailable(format!("order.query: {e}")))?;
        let recorded = format!("{reading:?}");
        let transition = self
            .order_event_now(id, OrderEvent::AlipaySays(reading))
            .await?;
        // Each result is kept with the order, for support.
        let (s, id, at) = (self.clone(), id.to_string(), to_db_time(self.clock.now()));
        blocking(move || -> Result<(), LifecycleError> {
            let mut conn = s
                .pool
                .get()
                .map_err(|e| LifecycleError::Unavailable(e.to_string()))?;
            let _writer = s.pool.write_guard();
            store::record_reconciliation(&mut conn, &id, &recorded, at)
                .map_err(LifecycleError::from)
        })
        .await
        .map_err(|e| LifecycleError::Unavailable(e.to_string()))??;
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
    ) -> Result<ReconcileReport, String> {
        let s = self.clone();
        let ids = blocking(move || -> Result<Vec<String>, String> {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let mut ids: Vec<String> = Vec::new();
            loop {
                let after = ids.last().cloned().unwrap_or_default();
                let page = store::open_ids(&mut conn, &after, 1000).map_err(|e| e.to_string())?;
                if page.is_empty() {
                    return Ok(ids);
                }
                ids.extend(page);
            }
        })
        .await
        .map_err(|e| e.to_string())??;
        let total = ids.len();
        let pace = tokio::sync::Mutex::new(tokio::time::interval(
            std::time::Duration::from_secs_f64(1.0 / f64::from(rate_per_second.max(1))),
        ));
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<bool, String>> = futures_util::stream::iter(ids)
            .map(|id| {
                let (pace, done) = (&pace, &done);
                async move {
                    pace.lock().await.tick().await;
                    let result = self
                        .reconcile_order(&id)
                        .await
                        .map(|t| t.history.is_some())
                        .map_err(|e| format!("{id}: {e}"));
                    if let Err(error) = &result {
                        tracing::warn!(%error, "reconciliation of an order failed");
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

/// A timeline row on each order of a service whose state changed while the orders' statuses
/// stayed (went live, ended by the merchant's authorization cancellation), so support sees it.
fn note_service_change(
    conn: &mut AnyConnection,
    service_key: &str,
    cause: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), LifecycleError> {
    let ids = match service_key.strip_prefix("order:") {
        Some(id) => vec![id.to_string()],
        None => store::ids_for_mini_app(conn, service_key)?,
    };
    for id in ids {
        if let Some(order) = store::find(conn, &id)? {
            store::add_history(
                conn,
                &store::NewHistory {
                    commodity_order_id: id,
                    from_status: Some(order.status.clone()),
                    to_status: order.status,
                    actor: actor.into(),
                    cause: cause.into(),
                    reason: None,
                    inferred: false,
                    at: to_db_time(now),
                },
            )?;
        }
    }
    Ok(())
}
