//! Service periods (LIFECYCLE.md "Service periods"): each paid order of a mini program opens a
//! period of its service, a refund or cancellation closes that order's period only, a re-order
//! reopens an ended service, and a timer row at the end of the last period expires it (with a
//! warning to support beforehand). The rules are `domain::lifecycle::period`; this module
//! persists them in the caller's transaction, next to the order's own transition.

use super::Services;
use super::alerts::Alert as AlertMessage;
use super::lifecycle::{LifecycleError, note_service_change, service_key};
use crate::alipay::time::parse_beijing;
use crate::domain::OrderStatus;
use crate::domain::lifecycle::{
    self as lc, AuthorizationStatus, DeadlineState, Order, Period, PeriodDates, PeriodEvent,
    PeriodState, ServiceEvent, ServiceStatus, TerminationCause,
};
use crate::store::builds;
use crate::store::deadlines::TimerKind;
use crate::store::orders::{self as store, OrderRow};
use crate::store::{
    AnyConnection, StoreError, authorizations, deadlines, from_db_time, periods, to_db_time,
};
use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};

/// An item date as `order.query` sends it: Beijing time, `yyyy-MM-dd HH:mm:ss`, or a bare
/// `yyyy-MM-dd` (the start of that day in Beijing).
pub fn parse_item_date(text: &str) -> Option<DateTime<Utc>> {
    parse_beijing(text).or_else(|| {
        let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
        chrono::FixedOffset::east_opt(8 * 3600)?
            .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
            .single()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The item dates when both are present and read.
fn item_dates(facts: &periods::OrderPeriodFacts) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let start = facts
        .service_effect_date
        .as_deref()
        .and_then(parse_item_date)?;
    let end = facts
        .service_expire_date
        .as_deref()
        .and_then(parse_item_date)?;
    Some((start, end))
}

/// The raw values that are present but do not read as dates.
fn unreadable_dates(effect: Option<&str>, expire: Option<&str>) -> Vec<String> {
    [
        ("service_effect_date", effect),
        ("service_expire_date", expire),
    ]
    .into_iter()
    .filter_map(|(name, raw)| {
        raw.filter(|r| parse_item_date(r).is_none())
            .map(|r| format!("{name} {r:?}"))
    })
    .collect()
}

fn service_periods(conn: &mut AnyConnection, key: &str) -> Result<Vec<Period>, StoreError> {
    Ok(periods::for_service(conn, key)?
        .iter()
        .map(periods::PeriodRow::to_domain)
        .collect())
}

fn order_ids(conn: &mut AnyConnection, key: &str) -> Result<Vec<String>, StoreError> {
    Ok(match store::ServiceOrders::of_service(key) {
        store::ServiceOrders::Order(id) => vec![id.to_string()],
        store::ServiceOrders::MiniApp(app) => store::ids_for_mini_app(conn, app)?,
    })
}

/// A line in an order's history about its period (its status stays).
fn note(
    conn: &mut AnyConnection,
    order: &OrderRow,
    actor: &str,
    cause: &str,
    reason: String,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store::add_history(
        conn,
        &store::NewHistory {
            commodity_order_id: order.commodity_order_id.clone(),
            from_status: Some(order.status.as_str().into()),
            to_status: order.status.as_str().into(),
            actor: actor.into(),
            cause: cause.into(),
            reason: Some(reason),
            inferred: false,
            at: to_db_time(now),
        },
    )?;
    Ok(())
}

fn show(at: Option<DateTime<Utc>>) -> String {
    at.map_or("no end known".to_string(), |t| t.to_rfc3339())
}

/// The order's period state for the cause that ended it; `None` for causes that end the whole
/// service rather than one order's share of it.
fn closing_state(cause: &TerminationCause) -> Option<PeriodState> {
    match cause {
        // The implementation timeout refunds the order automatically (seed 3).
        TerminationCause::Refunded | TerminationCause::ImplementationTimeout => {
            Some(PeriodState::Refunded)
        }
        TerminationCause::OrderCancelled => Some(PeriodState::Cancelled),
        TerminationCause::Support { .. }
        | TerminationCause::AuthorizationCancelled
        | TerminationCause::Expired => None,
    }
}

impl Services {
    /// The order is paid (or free): its period opens, once, from the item dates if `order.query`
    /// gave readable ones, else from the payment (or the end of what the service already runs
    /// on: a renewal extends it) plus the notice's `period_day`. An ended service is reopened
    /// (a re-order: `provisioning` again, so a new build starts). The expiry row moves.
    pub(super) fn open_period(
        &self,
        conn: &mut AnyConnection,
        row: &OrderRow,
        order: &Order,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let paid = matches!(
            order.status,
            OrderStatus::Implementing | OrderStatus::AwaitingConfirmation | OrderStatus::Completed
        );
        let id = row.commodity_order_id.as_str();
        if !paid || periods::find(conn, id)?.is_some() {
            return Ok(());
        }
        let key = service_key(row);
        let facts = periods::order_facts(conn, id)?.unwrap_or_default();
        let existing = service_periods(conn, &key)?;
        let runs_until = lc::last_end(&existing, now);
        // The payment's time (`paid_at`: the item's service_effect_date, the notice's
        // order_time, or when a reading showed it); without one, implementation starts with the
        // payment, and an order first seen further along was paid no later than it was ordered.
        let paid_at = match (&order.payment, order.status) {
            (Some(payment), _) => payment.at,
            (None, OrderStatus::Implementing) => order.status_since,
            (None, OrderStatus::AwaitingConfirmation | OrderStatus::Completed) => order.ordered_at,
            (None, OrderStatus::AwaitingPayment | OrderStatus::Cancelled) => now,
        };
        let dates = PeriodDates::choose(item_dates(&facts), paid_at, runs_until, facts.period_day);
        let period = lc::handle_period(None, id, PeriodEvent::Paid(dates));
        periods::save(conn, &key, &period, to_db_time(now))?;
        // Shown on the service (GET /admin/api/services/..), not as a history row: opening a
        // period is part of the payment the order's history already records.
        tracing::info!(order = %id, service = %key, starts_at = %dates.starts_at, ends_at = %show(dates.ends_at), "service period opened");
        let ended = store::find_service(conn, &key)?.is_some_and(|s| s.status.has_ended());
        if ended {
            let (_, st) = self.service_event(conn, &key, ServiceEvent::Reopen { at: now }, now)?;
            if st.ignored.is_none() {
                note_service_change(conn, &key, "service_reopened", "alipay", now)?;
            }
        }
        self.reschedule_expiry(conn, &key, now)
    }

    /// An order of the service was refunded or cancelled (`Effect::TerminateService` from the
    /// order): its period closes. Returns whether the service itself ends: only when no period
    /// remains (a refunded renewal leaves the service on the earlier period), or when the cause
    /// ends the whole service (support, the authorization's cancellation).
    pub(super) fn close_order_period(
        &self,
        conn: &mut AnyConnection,
        row: &OrderRow,
        cause: &TerminationCause,
        now: DateTime<Utc>,
    ) -> Result<bool, LifecycleError> {
        let Some(state) = closing_state(cause) else {
            return Ok(true);
        };
        let id = row.commodity_order_id.as_str();
        let key = service_key(row);
        if let Some(stored) = periods::find(conn, id)? {
            let before = stored.to_domain();
            let after =
                lc::handle_period(Some(&before), id, PeriodEvent::Closed { state, at: now });
            if after != before {
                periods::save(conn, &key, &after, to_db_time(now))?;
                note(
                    conn,
                    row,
                    "alipay",
                    "period_closed",
                    format!("{} ({})", after.state.as_str(), cause.as_str()),
                    now,
                )?;
            }
        }
        let all = service_periods(conn, &key)?;
        if all.iter().any(|p| p.remains(now)) {
            self.reschedule_expiry(conn, &key, now)?;
            // The service runs on, but this order's own build (a renewal's) has no one to
            // serve: it stops, in the same transaction.
            for (version, order) in builds::cancel_order_build(conn, id, to_db_time(now))? {
                super::pipeline::note(
                    conn,
                    &order,
                    "build_cancelled",
                    format!("version {version}: its order ended"),
                    now,
                )?;
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// The order's close was an inference Alipay contradicted (`Effect::RestoreService`): its
    /// period runs again and the service's expiry is scheduled from it again.
    pub(super) fn restore_order_period(
        &self,
        conn: &mut AnyConnection,
        row: &OrderRow,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let id = row.commodity_order_id.as_str();
        let key = service_key(row);
        let Some(stored) = periods::find(conn, id)? else {
            return Ok(());
        };
        let before = stored.to_domain();
        let after = lc::handle_period(Some(&before), id, PeriodEvent::Restored);
        if after != before {
            periods::save(conn, &key, &after, to_db_time(now))?;
            note(
                conn,
                row,
                "alipay",
                "period_restored",
                after.state.as_str().into(),
                now,
            )?;
        }
        self.reschedule_expiry(conn, &key, now)
    }

    /// The service ended, for any cause (with `Effect::StopProvisioning`): its remaining periods
    /// close (ended when run out, else cancelled), its expiry rows stop, and its orders raise no
    /// more implementation warnings.
    pub(super) fn end_service_periods(
        &self,
        conn: &mut AnyConnection,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        for period in service_periods(conn, key)? {
            let state = match period.state_at(now) {
                PeriodState::Active => PeriodState::Cancelled,
                PeriodState::Ended => PeriodState::Ended,
                PeriodState::Refunded | PeriodState::Cancelled => continue,
            };
            let closed = lc::handle_period(
                Some(&period),
                &period.commodity_order_id,
                PeriodEvent::Closed { state, at: now },
            );
            periods::save(conn, key, &closed, to_db_time(now))?;
        }
        // By key, ids first: with the orders as a subquery the UPDATE was planned as a scan of
        // every timer row (1.8 ms each in the mixed bench, against 0.01).
        let ids = order_ids(conn, key)?;
        periods::cancel_timers(
            conn,
            &ids,
            &[
                TimerKind::ServiceExpiry,
                TimerKind::ServiceExpiryWarning,
                TimerKind::Warning,
            ],
        )?;
        Ok(())
    }

    /// Puts the expiry row (and its warning) at the end of the service's last remaining period,
    /// on the order whose period that is; every other pending expiry row of the service is
    /// cancelled. A warning already raised for the same end is not raised again.
    fn reschedule_expiry(
        &self,
        conn: &mut AnyConnection,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let all = service_periods(conn, key)?;
        let target = lc::last_end(&all, now).and_then(|end| {
            all.iter()
                .filter(|p| p.remains(now) && p.ends_at == Some(end))
                .map(|p| p.commodity_order_id.clone())
                .max()
                .map(|id| (id, end))
        });
        let warning = self.lifecycle.rules.service_expiry_warning;
        let wanted = |id: &str, kind: TimerKind| {
            target.as_ref().filter(|(t, _)| t == id).map(|(_, end)| {
                let due = match kind {
                    TimerKind::ServiceExpiryWarning => *end - warning,
                    _ => *end,
                };
                to_db_time(due)
            })
        };
        for id in order_ids(conn, key)? {
            for kind in [TimerKind::ServiceExpiry, TimerKind::ServiceExpiryWarning] {
                let due = wanted(&id, kind);
                match (periods::timer(conn, &id, kind)?, due) {
                    // Already there (a fired warning for the same end is not raised twice).
                    (Some((at, state)), Some(due))
                        if at == due && state != DeadlineState::Cancelled => {}
                    (_, Some(due)) => {
                        store::upsert_deadline(conn, &id, kind, 0, due, DeadlineState::Pending)?
                    }
                    (Some((at, DeadlineState::Pending)), None) => {
                        store::upsert_deadline(conn, &id, kind, 0, at, DeadlineState::Cancelled)?
                    }
                    (_, None) => {}
                }
            }
        }
        Ok(())
    }

    /// Recomputes an order's active period from what is known now (the item dates, else its
    /// start plus `period_day`), and moves the expiry row. A closed period keeps its dates.
    fn refresh_period(
        &self,
        conn: &mut AnyConnection,
        row: &OrderRow,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let id = row.commodity_order_id.as_str();
        let Some(stored) = periods::find(conn, id)? else {
            return Ok(());
        };
        let current = stored.to_domain();
        if current.state.is_closed() {
            return Ok(());
        }
        let facts = periods::order_facts(conn, id)?.unwrap_or_default();
        let starts_at = from_db_time(stored.starts_at);
        let dates = PeriodDates::choose(item_dates(&facts), starts_at, None, facts.period_day);
        let next = lc::handle_period(Some(&current), id, PeriodEvent::Paid(dates));
        if next != current {
            let key = service_key(row);
            periods::save(conn, &key, &next, to_db_time(now))?;
            tracing::info!(order = %id, service = %key, starts_at = %dates.starts_at, ends_at = %show(dates.ends_at), "service period dates");
            self.reschedule_expiry(conn, &key, now)?;
        }
        Ok(())
    }

    /// The notice's `period_day` (raw text): stored on the order; a period already open without
    /// item dates takes its length from it. An unreadable value is kept out and logged (the
    /// item dates may still come).
    pub(super) fn record_period_day(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        raw: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), LifecycleError> {
        let Some(raw) = raw else {
            return Ok(());
        };
        let Ok(days) = raw.trim().parse::<i32>() else {
            tracing::warn!(order = %id, period_day = %raw, "period_day is not a day count; the period's end comes from order.query's item dates only");
            return Ok(());
        };
        periods::set_period_day(conn, id, Some(days))?;
        if let Some(row) = store::find(conn, id)? {
            self.refresh_period(conn, &row, now)?;
        }
        Ok(())
    }

    /// `order.query`'s item dates for an order, as received: stored verbatim on the order; an
    /// open period takes them. A value that does not read as a date alerts support and the
    /// period keeps (or takes) its `period_day` length: a bad date never ends a service.
    pub async fn record_item_dates(
        &self,
        id: &str,
        effect: Option<String>,
        expire: Option<String>,
    ) -> Result<(), LifecycleError> {
        if effect.is_none() && expire.is_none() {
            return Ok(());
        }
        // Most answers repeat what is stored: read first, write only a change.
        let (owned, seen) = (id.to_string(), (effect.clone(), expire.clone()));
        let stored = self
            .db(move |conn| periods::order_facts(conn, &owned).map_err(StoreError::from))
            .await?;
        if stored.is_none_or(|f| (f.service_effect_date, f.service_expire_date) == seen) {
            return Ok(());
        }
        let s = self.clone();
        let owned = id.to_string();
        let alert = self
            .db_write(move |conn| -> Result<Option<AlertMessage>, LifecycleError> {
                let now = s.clock.now();
                let Some(row) = store::find(conn, &owned)? else {
                    return Ok(None);
                };
                let changed =
                    periods::set_item_dates(conn, &owned, effect.as_deref(), expire.as_deref())?;
                if !changed {
                    return Ok(None);
                }
                let bad = unreadable_dates(effect.as_deref(), expire.as_deref());
                s.refresh_period(conn, &row, now)?;
                if bad.is_empty() {
                    return Ok(None);
                }
                let message = format!(
                    "order.query item dates do not read: {}; stored as received, the period runs on period_day",
                    bad.join(", ")
                );
                note(
                    conn,
                    &row,
                    "alipay",
                    "unreadable_service_dates",
                    message.clone(),
                    now,
                )?;
                Ok(Some(AlertMessage {
                    kind: "unreadable_service_dates".into(),
                    subject: owned.clone(),
                    message,
                }))
            })
            .await?;
        if let Some(alert) = alert {
            self.alerts.raise(alert).await;
        }
        Ok(())
    }

    /// Whether the service of this order has ended (its implementation warnings stop).
    pub(super) async fn order_service_ended(&self, id: &str) -> Result<bool, LifecycleError> {
        let id = id.to_string();
        self.db(move |conn| -> Result<bool, LifecycleError> {
            let Some(row) = store::find(conn, &id)? else {
                return Ok(false);
            };
            Ok(
                store::find_service(conn, &service_key(&row))?
                    .is_some_and(|s| s.status.has_ended()),
            )
        })
        .await
    }

    /// Fires a service timer row (`service_expiry`, `service_expiry_warning`) of order `id`, and
    /// marks it fired in the same transaction; true when the service changed.
    pub(super) async fn fire_service_timer(
        &self,
        row_id: i64,
        id: &str,
        kind: TimerKind,
    ) -> Result<bool, LifecycleError> {
        let s = self.clone();
        let owned = id.to_string();
        let (changed, alert) = self
            .db_write(
                move |conn| -> Result<(bool, Option<AlertMessage>), LifecycleError> {
                    let now = s.clock.now();
                    let outcome = s.service_timer_due(conn, &owned, kind, now)?;
                    deadlines::finish(conn, row_id, DeadlineState::Fired)?;
                    Ok(outcome)
                },
            )
            .await?;
        if let Some(alert) = alert {
            self.metrics
                .service_expiry_warnings
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.alerts.raise(alert).await;
        }
        Ok(changed)
    }

    fn service_timer_due(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        kind: TimerKind,
        now: DateTime<Utc>,
    ) -> Result<(bool, Option<AlertMessage>), LifecycleError> {
        let row = store::find(conn, id)?.ok_or_else(|| LifecycleError::NotFound(id.into()))?;
        let key = service_key(&row);
        let Some(service) = store::find_service(conn, &key)? else {
            return Ok((false, None));
        };
        if service.status.has_ended() {
            return Ok((false, None));
        }
        let all = service_periods(conn, &key)?;
        match kind {
            TimerKind::ServiceExpiry => {
                let expired = lc::derive_service(&all, service.status == ServiceStatus::Live, now)
                    .is_some_and(|d| d.status == ServiceStatus::Expired);
                if !expired {
                    // Renewed meanwhile: the row belongs elsewhere now.
                    self.reschedule_expiry(conn, &key, now)?;
                    return Ok((false, None));
                }
                let active = row
                    .mini_app_id
                    .as_deref()
                    .map(|app| authorizations::find(conn, app))
                    .transpose()?
                    .flatten()
                    .is_some_and(|a| a.status == AuthorizationStatus::Active);
                let terminate = ServiceEvent::Terminate {
                    cause: TerminationCause::Expired,
                    authorization_active: active,
                };
                let (_, st) = self.service_event(conn, &key, terminate, now)?;
                if st.ignored.is_none() {
                    note_service_change(
                        conn,
                        &key,
                        "service_terminated:expired",
                        "scheduler",
                        now,
                    )?;
                }
                Ok((st.ignored.is_none(), None))
            }
            TimerKind::ServiceExpiryWarning => {
                let Some(end) = lc::last_end(&all, now) else {
                    return Ok((false, None));
                };
                let message = format!(
                    "the service of {key} ends at {} unless the merchant renews (续订)",
                    end.to_rfc3339()
                );
                note(
                    conn,
                    &row,
                    "scheduler",
                    "service_expiry_warning",
                    message.clone(),
                    now,
                )?;
                Ok((
                    false,
                    Some(AlertMessage {
                        kind: "service_expiry_warning".into(),
                        subject: key,
                        message,
                    }),
                ))
            }
            TimerKind::Payment
            | TimerKind::Implementation
            | TimerKind::Confirmation
            | TimerKind::Warning
            | TimerKind::OrderQuery
            | TimerKind::NoticeQuery => Err(LifecycleError::Unexpected(format!(
                "{} is not a service timer (order {id})",
                kind.as_str()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_dates_read_as_beijing_time_with_or_without_the_clock() {
        assert_eq!(
            parse_item_date("2025-06-10 00:00:00").map(|t| t.to_rfc3339()),
            Some("2025-06-09T16:00:00+00:00".into())
        );
        assert_eq!(
            parse_item_date("2025-06-10").map(|t| t.to_rfc3339()),
            Some("2025-06-09T16:00:00+00:00".into())
        );
        assert_eq!(parse_item_date("next year"), None);
    }

    #[test]
    fn unreadable_dates_name_the_field_and_the_value() {
        assert_eq!(
            unreadable_dates(Some("2025-13-40"), Some("2026-01-01 00:00:00")),
            vec!["service_effect_date \"2025-13-40\"".to_string()]
        );
        assert!(unreadable_dates(None, Some("2026-01-01")).is_empty());
    }

    #[test]
    fn a_refund_or_cancellation_closes_one_period_and_support_ends_the_service() {
        assert_eq!(
            closing_state(&TerminationCause::Refunded),
            Some(PeriodState::Refunded)
        );
        assert_eq!(
            closing_state(&TerminationCause::ImplementationTimeout),
            Some(PeriodState::Refunded)
        );
        assert_eq!(
            closing_state(&TerminationCause::OrderCancelled),
            Some(PeriodState::Cancelled)
        );
        assert_eq!(
            closing_state(&TerminationCause::Support {
                actor: "a".into(),
                reason: "r".into()
            }),
            None
        );
    }
}
