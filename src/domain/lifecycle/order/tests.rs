use super::*;
use crate::domain::lifecycle::test_support::{days, hours, rules, t0};

fn placed(price: &str) -> Order {
    place(
        &OrderPlaced {
            ordered_at: t0(),
            total_price: Some(price.into()),
        },
        &rules(),
    )
    .order
}

fn priced() -> Order {
    placed("99.00")
}

fn free() -> Order {
    placed("0.00")
}

fn step(order: &Order, event: OrderEvent, now: DateTime<Utc>) -> Transition {
    handle(order, event, now, &rules()).unwrap()
}

fn says(reading: QueryReading) -> OrderEvent {
    OrderEvent::AlipaySays(reading)
}

/// A priced order paid at `t0 + 1h`.
fn implementing() -> Order {
    step(
        &priced(),
        OrderEvent::PaymentSeen {
            at: t0() + hours(1),
        },
        t0() + hours(1),
    )
    .order
}

/// Paid at t0+1h, audit passed at t0+5d, Alipay agreed at t0+5d+1h.
fn awaiting_confirmation() -> Order {
    let o = step(
        &implementing(),
        OrderEvent::AuditPassed { at: t0() + days(5) },
        t0() + days(5),
    )
    .order;
    step(
        &o,
        says(QueryReading::AwaitingConfirmation),
        t0() + days(5) + hours(1),
    )
    .order
}

fn completed() -> Order {
    step(
        &awaiting_confirmation(),
        OrderEvent::MerchantConfirmed { at: t0() + days(6) },
        t0() + days(6),
    )
    .order
}

fn pending(order: &Order) -> Vec<(DeadlineKind, DateTime<Utc>)> {
    order
        .deadlines
        .iter()
        .filter(|d| d.state == DeadlineState::Pending)
        .map(|d| (d.kind, d.due_at))
        .collect()
}

fn assert_ignored(tr: &Transition, before: &Order) {
    assert!(tr.ignored.is_some(), "expected ignored: {tr:?}");
    assert_eq!(&tr.order, before);
    assert!(tr.effects.is_empty());
    assert!(tr.history.is_none());
}

fn query(kind: DeadlineKind) -> Effect {
    Effect::QueryAlipay {
        reason: QueryReason::DeadlineDue(kind),
    }
}

// ---- seed 1: ordering, payment, unpaid timeout --------------------------------------------

#[test]
fn seed_1_unpaid_order_cancelled_after_three_days() {
    let o = priced();
    assert_eq!(o.status, OrderStatus::AwaitingPayment);
    assert_eq!(pending(&o), vec![(DeadlineKind::Payment, t0() + days(3))]);

    // Due: ask Alipay first; nothing changes yet.
    let due = t0() + days(3);
    let tr = step(
        &o,
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Payment,
            now: due,
        },
        due,
    );
    assert_eq!(tr.effects, vec![query(DeadlineKind::Payment)]);
    assert_eq!(tr.order.status, OrderStatus::AwaitingPayment);
    assert_eq!(
        tr.order.deadline(DeadlineKind::Payment).unwrap().state,
        DeadlineState::Fired
    );
    assert!(tr.history.is_none());

    // Alipay agrees: cancelled(unpaid_timeout) as of the deadline, nothing to terminate.
    let tr = step(
        &tr.order,
        says(QueryReading::Cancelled { by_isv: false }),
        due + hours(1),
    );
    assert_eq!(tr.order.status, OrderStatus::Cancelled);
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::UnpaidTimeout));
    assert_eq!(tr.order.status_since, due);
    assert!(tr.effects.is_empty(), "{:?}", tr.effects);
    let h = tr.history.unwrap();
    assert_eq!(
        (h.from, h.to, h.cause, h.inferred),
        (
            Some(OrderStatus::AwaitingPayment),
            OrderStatus::Cancelled,
            "unpaid_timeout",
            false
        )
    );
    assert_eq!(
        tr.order.deadline(DeadlineKind::Payment).unwrap().state,
        DeadlineState::Fired
    );
}

#[test]
fn seed_1_unpaid_timeout_confirmed_by_alipay_or_inferred_after_grace() {
    let due = t0() + days(3);
    let fired = step(
        &priced(),
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Payment,
            now: due,
        },
        due,
    )
    .order;

    // Alipay still shows it unpaid: re-checked on each tick, nothing changes.
    let tr = step(&fired, says(QueryReading::Unpaid), due + hours(1));
    assert_ignored(&tr, &fired);
    let tr = step(
        &fired,
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Payment,
            now: due + hours(1),
        },
        due + hours(1),
    );
    assert_eq!(tr.effects, vec![query(DeadlineKind::Payment)]);
    assert_eq!(tr.order, fired);

    // Inferring before the grace period is a caller error.
    assert_eq!(
        fired.inference_allowed_from(DeadlineKind::Payment, &rules()),
        Some(due + hours(6))
    );
    assert_eq!(
        fired.inference_allowed_from(DeadlineKind::Implementation, &rules()),
        None
    );
    let early = handle(
        &fired,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Payment,
            inferred: true,
        },
        due + hours(5),
        &rules(),
    );
    assert_eq!(
        early,
        Err(RuleError::GraceNotElapsed {
            kind: DeadlineKind::Payment,
            until: due + hours(6)
        })
    );

    let tr = step(
        &fired,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Payment,
            inferred: true,
        },
        due + hours(6),
    );
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::UnpaidTimeout));
    let h = tr.history.unwrap();
    assert!(h.inferred);
    assert_eq!(h.actor, "scheduler");

    // Alipay agreeing needs no grace period.
    let tr = step(
        &fired,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Payment,
            inferred: false,
        },
        due,
    );
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::UnpaidTimeout));
    assert!(!tr.history.unwrap().inferred);
}

#[test]
fn seed_1_payment_deadline_runs_from_the_order_time_not_receipt() {
    // The notification arrives two days late: the deadline is still order_time + 3 days.
    let late = place(
        &OrderPlaced {
            ordered_at: t0(),
            total_price: Some("1.00".into()),
        },
        &rules(),
    );
    assert_eq!(
        late.effects,
        vec![
            Effect::ScheduleDeadline {
                kind: DeadlineKind::Payment,
                due_at: t0() + days(3)
            },
            // Every notice asks Alipay at once (issue 12).
            Effect::QueryAlipay {
                reason: QueryReason::OrderNotified
            }
        ]
    );
    let h = late.history.unwrap();
    assert_eq!(
        (h.from, h.to, h.cause),
        (None, OrderStatus::AwaitingPayment, "order_notification")
    );
}

#[test]
fn seed_1_paid_order_is_implementing_without_isv_acceptance() {
    let paid_at = t0() + hours(1);
    let tr = step(
        &priced(),
        OrderEvent::PaymentSeen { at: paid_at },
        t0() + days(1),
    );
    assert_eq!(tr.order.status, OrderStatus::Implementing);
    assert!(tr.order.paid);
    assert_eq!(tr.order.status_since, paid_at);
    assert_eq!(
        tr.effects,
        vec![
            Effect::CancelDeadline {
                kind: DeadlineKind::Payment
            },
            Effect::ScheduleDeadline {
                kind: DeadlineKind::Implementation,
                due_at: paid_at + days(30)
            },
            Effect::ScheduleWarning {
                at_days: 20,
                due_at: paid_at + days(20)
            },
            Effect::ScheduleWarning {
                at_days: 27,
                due_at: paid_at + days(27)
            },
        ]
    );
    assert_eq!(tr.history.unwrap().cause, "payment_seen");
}

#[test]
fn seed_1_free_order_needs_no_payment_and_is_never_refunded() {
    let o = free();
    assert_eq!(o.status, OrderStatus::Implementing);
    assert!(!o.paid);
    assert_eq!(
        pending(&o),
        vec![(DeadlineKind::Implementation, t0() + days(30))]
    );
    assert_eq!(o.warnings.len(), 2);
}

// ---- seed 2: audit passed → awaiting confirmation ------------------------------------------

#[test]
fn seed_2_audit_passed_moves_to_awaiting_confirmation_once_alipay_agrees() {
    let audit = t0() + days(5);
    let tr = step(
        &implementing(),
        OrderEvent::AuditPassed { at: audit },
        audit + hours(1),
    );
    assert_eq!(tr.order.status, OrderStatus::Implementing);
    assert_eq!(
        tr.effects,
        vec![Effect::QueryAlipay {
            reason: QueryReason::AuditPassed
        }]
    );
    assert_eq!(tr.order.audit_passed_at, Some(audit));

    // A redelivered audit message asks nothing new.
    let again = step(
        &tr.order,
        OrderEvent::AuditPassed { at: audit },
        audit + hours(2),
    );
    assert_ignored(&again, &tr.order);

    // Alipay shows TO_CONFIRM: the 7 days run from the audit, not from the query.
    let tr = step(
        &tr.order,
        says(QueryReading::AwaitingConfirmation),
        audit + hours(3),
    );
    assert_eq!(tr.order.status, OrderStatus::AwaitingConfirmation);
    assert_eq!(tr.order.status_since, audit);
    assert_eq!(tr.order.audit_passed_at, None);
    assert!(tr.order.warnings.is_empty());
    assert_eq!(
        pending(&tr.order),
        vec![(DeadlineKind::Confirmation, audit + days(7))]
    );
    assert_eq!(
        tr.effects,
        vec![
            Effect::CancelDeadline {
                kind: DeadlineKind::Implementation
            },
            Effect::CancelWarnings,
            Effect::ScheduleDeadline {
                kind: DeadlineKind::Confirmation,
                due_at: audit + days(7)
            },
        ]
    );
}

#[test]
fn seed_2_audit_of_an_earlier_order_is_ignored() {
    let o = implementing();
    let tr = step(
        &o,
        OrderEvent::AuditPassed {
            at: t0() - days(40),
        },
        t0() + days(1),
    );
    assert_ignored(&tr, &o);
}

#[test]
fn seed_2_late_audit_message_pulls_the_confirmation_window_back() {
    // Alipay was read first (no audit time known: the query time is used) ...
    let read_at = t0() + days(6);
    let o = step(
        &implementing(),
        says(QueryReading::AwaitingConfirmation),
        read_at,
    )
    .order;
    assert_eq!(
        pending(&o),
        vec![(DeadlineKind::Confirmation, read_at + days(7))]
    );
    // ... then the audit message arrives with its own, earlier time.
    let audit = t0() + days(5);
    let tr = step(
        &o,
        OrderEvent::AuditPassed { at: audit },
        read_at + hours(1),
    );
    assert_eq!(tr.order.status_since, audit);
    assert_eq!(
        tr.effects,
        vec![Effect::ScheduleDeadline {
            kind: DeadlineKind::Confirmation,
            due_at: audit + days(7)
        }]
    );
    assert!(tr.history.is_none());
}

// ---- seed 3: thirty days of implementation ---------------------------------------------------

#[test]
fn seed_3_implementation_cancelled_and_refunded_after_thirty_days() {
    let o = implementing();
    let due = t0() + hours(1) + days(30);
    assert_eq!(pending(&o), vec![(DeadlineKind::Implementation, due)]);
    let tr = step(
        &o,
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Implementation,
            now: due,
        },
        due,
    );
    assert_eq!(tr.effects, vec![query(DeadlineKind::Implementation)]);
    assert_eq!(tr.order.status, OrderStatus::Implementing);

    let tr = step(
        &tr.order,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Implementation,
            inferred: false,
        },
        due + hours(1),
    );
    assert_eq!(tr.order.status, OrderStatus::Cancelled);
    assert_eq!(
        tr.order.cancel_reason,
        Some(CancelReason::ImplementationTimeout)
    );
    assert_eq!(tr.order.status_since, due);
    assert_eq!(tr.order.refund, Some(Refund::Automatic));
    assert!(tr.order.warnings.is_empty());
    assert_eq!(
        tr.effects,
        vec![
            Effect::CancelWarnings,
            Effect::RecordRefund { offline: false },
            Effect::TerminateService {
                cause: TerminationCause::ImplementationTimeout
            },
        ]
    );
}

#[test]
fn seed_3_alipay_showing_the_timeout_cancels_with_its_cause() {
    let o = implementing();
    let due = t0() + hours(1) + days(30);
    let tr = step(
        &o,
        says(QueryReading::Cancelled { by_isv: false }),
        due + hours(2),
    );
    assert_eq!(
        tr.order.cancel_reason,
        Some(CancelReason::ImplementationTimeout)
    );
    assert_eq!(tr.order.status_since, due);
    assert!(tr.effects.contains(&Effect::TerminateService {
        cause: TerminationCause::ImplementationTimeout
    }));
}

#[test]
fn seed_3_free_order_timeout_terminates_without_refund() {
    let due = t0() + days(30);
    let tr = step(
        &free(),
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Implementation,
            inferred: false,
        },
        due,
    );
    assert_eq!(
        tr.order.cancel_reason,
        Some(CancelReason::ImplementationTimeout)
    );
    assert!(
        !tr.effects
            .iter()
            .any(|e| matches!(e, Effect::RecordRefund { .. }))
    );
    assert!(tr.effects.contains(&Effect::TerminateService {
        cause: TerminationCause::ImplementationTimeout
    }));
}

#[test]
fn seed_3_reaching_confirmation_in_time_leaves_the_implementation_deadline_stale() {
    let o = awaiting_confirmation();
    let d = o.deadline(DeadlineKind::Implementation).unwrap();
    assert_eq!(d.state, DeadlineState::Cancelled);
    let due = d.due_at;
    for event in [
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Implementation,
            now: due,
        },
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Implementation,
            inferred: true,
        },
    ] {
        assert_ignored(&step(&o, event, due + days(1)), &o);
    }
}

#[test]
fn deadline_confirmed_before_it_is_due_is_an_error() {
    let o = implementing();
    let r = handle(
        &o,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Implementation,
            inferred: false,
        },
        t0() + days(2),
        &rules(),
    );
    assert_eq!(
        r,
        Err(RuleError::DeadlineNotDue {
            kind: DeadlineKind::Implementation,
            due_at: t0() + hours(1) + days(30)
        })
    );
    // The sweep reaching a deadline early (a stale claim) is ignored.
    let tr = step(
        &o,
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Implementation,
            now: t0() + days(2),
        },
        t0() + days(2),
    );
    assert_ignored(&tr, &o);
}

// ---- warnings ------------------------------------------------------------------------------

#[test]
fn warnings_at_20_and_27_days_before_the_implementation_deadline() {
    let o = implementing();
    let since = t0() + hours(1);
    assert_eq!(
        o.warnings,
        vec![
            Warning {
                at_days: 20,
                due_at: since + days(20),
                sent: false
            },
            Warning {
                at_days: 27,
                due_at: since + days(27),
                sent: false
            },
        ]
    );
    assert_eq!(o.next_timer(), Some(since + days(20)));

    // Not yet due: ignored.
    assert_ignored(
        &step(&o, OrderEvent::WarningDue { at_days: 20 }, since + days(19)),
        &o,
    );

    let tr = step(&o, OrderEvent::WarningDue { at_days: 20 }, since + days(20));
    assert_eq!(
        tr.effects,
        vec![Effect::Alert(Alert::ImplementationDeadlineNear {
            at_days: 20,
            deadline_due_at: since + days(30)
        })]
    );
    assert!(tr.order.warnings[0].sent);
    assert_eq!(tr.order.status, OrderStatus::Implementing);
    assert_eq!(tr.order.next_timer(), Some(since + days(27)));

    // Sent once.
    let again = step(
        &tr.order,
        OrderEvent::WarningDue { at_days: 20 },
        since + days(21),
    );
    assert_ignored(&again, &tr.order);

    let tr = step(
        &tr.order,
        OrderEvent::WarningDue { at_days: 27 },
        since + days(27),
    );
    assert!(tr.order.warnings.iter().all(|w| w.sent));
    assert_eq!(tr.order.next_timer(), Some(since + days(30)));
}

#[test]
fn warning_points_are_configurable_and_must_fall_before_the_deadline() {
    let rules = LifecycleRules {
        warning_days: vec![29, 10, 30, 45, 10],
        ..LifecycleRules::default()
    };
    let tr = handle(
        &priced(),
        OrderEvent::PaymentSeen { at: t0() },
        t0(),
        &rules,
    )
    .unwrap();
    let points: Vec<u32> = tr.order.warnings.iter().map(|w| w.at_days).collect();
    assert_eq!(points, vec![10, 29]);
    let none = LifecycleRules {
        warning_days: vec![],
        ..LifecycleRules::default()
    };
    let tr = handle(&priced(), OrderEvent::PaymentSeen { at: t0() }, t0(), &none).unwrap();
    assert!(tr.order.warnings.is_empty());
    assert!(
        !tr.effects
            .iter()
            .any(|e| matches!(e, Effect::ScheduleWarning { .. }))
    );
}

#[test]
fn warnings_stop_when_the_order_leaves_implementation() {
    let o = awaiting_confirmation();
    assert!(o.warnings.is_empty());
    assert_ignored(
        &step(&o, OrderEvent::WarningDue { at_days: 20 }, t0() + days(25)),
        &o,
    );
}

// ---- seed 4: refund during implementation ----------------------------------------------------

#[test]
fn seed_4_merchant_refund_during_implementation_cancels_and_terminates() {
    let o = implementing();
    let seen = t0() + days(10);
    let tr = step(&o, says(QueryReading::Cancelled { by_isv: false }), seen);
    assert_eq!(tr.order.status, OrderStatus::Cancelled);
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::MerchantRefund));
    assert_eq!(tr.order.status_since, seen);
    assert_eq!(
        tr.effects,
        vec![
            Effect::CancelDeadline {
                kind: DeadlineKind::Implementation
            },
            Effect::CancelWarnings,
            Effect::RecordRefund { offline: false },
            Effect::TerminateService {
                cause: TerminationCause::Refunded
            },
        ]
    );
    // Seen again by the next reconciliation: nothing more.
    let again = step(
        &tr.order,
        says(QueryReading::Cancelled { by_isv: false }),
        seen + hours(1),
    );
    assert_ignored(&again, &tr.order);
}

#[test]
fn seed_4_isv_cancellation_terminates_with_order_cancelled() {
    let tr = step(
        &implementing(),
        says(QueryReading::Cancelled { by_isv: true }),
        t0() + days(40),
    );
    // ISV cancellation wins even when the implementation deadline is due.
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::IsvCancelled));
    assert!(tr.effects.contains(&Effect::TerminateService {
        cause: TerminationCause::OrderCancelled
    }));
}

// ---- seed 5: seven days to confirm ---------------------------------------------------------

#[test]
fn seed_5_merchant_confirmation_completes() {
    let o = awaiting_confirmation();
    let confirmed = t0() + days(6);
    let tr = step(
        &o,
        OrderEvent::MerchantConfirmed { at: confirmed },
        confirmed + hours(1),
    );
    assert_eq!(tr.order.status, OrderStatus::Completed);
    assert_eq!(tr.order.status_since, confirmed);
    assert_eq!(
        tr.effects,
        vec![Effect::CancelDeadline {
            kind: DeadlineKind::Confirmation
        }]
    );
    assert_eq!(tr.history.unwrap().cause, "merchant_confirmed");
    assert_eq!(tr.order.next_timer(), None);
}

#[test]
fn seed_5_not_confirmed_in_seven_days_completes() {
    let o = awaiting_confirmation();
    let due = t0() + days(12);
    assert_eq!(pending(&o), vec![(DeadlineKind::Confirmation, due)]);
    let tr = step(
        &o,
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Confirmation,
            now: due,
        },
        due,
    );
    assert_eq!(tr.effects, vec![query(DeadlineKind::Confirmation)]);

    // Alipay shows it completed: auto-confirmed at the deadline.
    let by_alipay = step(&tr.order, says(QueryReading::Completed), due + hours(1));
    assert_eq!(by_alipay.order.status, OrderStatus::Completed);
    assert_eq!(by_alipay.order.status_since, due);
    assert!(by_alipay.effects.is_empty());
    let h = by_alipay.history.unwrap();
    assert_eq!((h.cause, h.actor.as_str()), ("auto_confirmed", "alipay"));

    // Or the rule applied by the scheduler.
    let by_rule = step(
        &tr.order,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Confirmation,
            inferred: true,
        },
        due + hours(6),
    );
    // The same state, marked as inferred (reconciliation re-checks it for 7 days).
    assert_eq!(
        by_rule.order,
        Order {
            inferred_at: Some(due + hours(6)),
            ..by_alipay.order
        }
    );
    let h = by_rule.history.unwrap();
    assert_eq!((h.cause, h.inferred), ("auto_confirmed", true));
}

#[test]
fn seed_5_refund_while_awaiting_confirmation_cancels_and_terminates() {
    let tr = step(
        &awaiting_confirmation(),
        says(QueryReading::Cancelled { by_isv: false }),
        t0() + days(8),
    );
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::MerchantRefund));
    assert_eq!(
        tr.effects,
        vec![
            Effect::CancelDeadline {
                kind: DeadlineKind::Confirmation
            },
            Effect::RecordRefund { offline: false },
            Effect::TerminateService {
                cause: TerminationCause::Refunded
            },
        ]
    );
}

#[test]
fn seed_5_refund_reading_after_the_confirmation_deadline_is_still_a_merchant_refund() {
    // The confirmation deadline leads to completion, never to a timeout cancellation.
    let tr = step(
        &awaiting_confirmation(),
        says(QueryReading::Cancelled { by_isv: false }),
        t0() + days(20),
    );
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::MerchantRefund));
}

#[test]
fn seed_5_no_online_refund_after_completion() {
    let o = completed();
    let tr = step(
        &o,
        says(QueryReading::Cancelled { by_isv: false }),
        t0() + days(9),
    );
    assert_eq!(tr.order.status, OrderStatus::Completed);
    assert_eq!(tr.effects, vec![Effect::RecordRefund { offline: true }]);
    assert!(
        !tr.effects
            .iter()
            .any(|e| matches!(e, Effect::TerminateService { .. }))
    );
}

// ---- seed 6: renewals and re-orders ----------------------------------------------------------

#[test]
fn seed_6_reorder_is_a_new_order_with_its_own_deadlines() {
    let first = completed();
    let reorder_at = t0() + days(40);
    let second = place(
        &OrderPlaced {
            ordered_at: reorder_at,
            total_price: Some("99.00".into()),
        },
        &rules(),
    )
    .order;
    assert_eq!(second.status, OrderStatus::AwaitingPayment);
    assert_eq!(
        pending(&second),
        vec![(DeadlineKind::Payment, reorder_at + days(3))]
    );
    assert_eq!(first.status, OrderStatus::Completed);
    // Redelivering the first order's notification does not restart it.
    let tr = step(
        &first,
        OrderEvent::Placed {
            ordered_at: reorder_at,
            total_price: None,
        },
        reorder_at,
    );
    assert_ignored(&tr, &first);
}

#[test]
fn seed_6_unpaid_renewal_timing_out_leaves_the_service_alone() {
    // The service is fed by an earlier order; the renewal never got past awaiting_payment.
    let renewal = priced();
    let due = t0() + days(3);
    let tr = step(
        &renewal,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Payment,
            inferred: false,
        },
        due,
    );
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::UnpaidTimeout));
    assert!(tr.effects.is_empty());
    // Likewise a merchant cancelling before paying.
    let tr = step(
        &renewal,
        says(QueryReading::Cancelled { by_isv: false }),
        t0() + days(1),
    );
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::MerchantRefund));
    assert_eq!(
        tr.effects,
        vec![Effect::CancelDeadline {
            kind: DeadlineKind::Payment
        }]
    );
}

// ---- seed 7: termination by the ISV ----------------------------------------------------------

#[test]
fn seed_7_support_termination_queries_the_order_and_terminates_the_service() {
    let o = completed();
    let tr = handle(
        &o,
        OrderEvent::SupportTerminates {
            actor: "alice".into(),
            reason: "merchant asked".into(),
        },
        t0() + days(20),
        &rules(),
    )
    .unwrap();
    assert_eq!(tr.order, o, "the order's status is Alipay's to change");
    assert_eq!(
        tr.effects,
        vec![
            Effect::QueryAlipay {
                reason: QueryReason::SupportTermination
            },
            Effect::TerminateService {
                cause: TerminationCause::Support {
                    actor: "alice".into(),
                    reason: "merchant asked".into()
                }
            },
        ]
    );
    for (actor, reason, field) in [("", "x", "actor"), ("alice", "  ", "reason")] {
        let r = handle(
            &o,
            OrderEvent::SupportTerminates {
                actor: actor.into(),
                reason: reason.into(),
            },
            t0(),
            &rules(),
        );
        assert_eq!(r, Err(RuleError::MissingSupportField(field)));
    }
}

// ---- seed 8: refunds -------------------------------------------------------------------------

#[test]
fn seed_8_refund_during_implementation_and_confirmation_is_automatic() {
    for o in [implementing(), awaiting_confirmation()] {
        let tr = step(
            &o,
            OrderEvent::Cancelled {
                reason: CancelReason::MerchantRefund,
                at: t0() + days(7),
            },
            t0() + days(7),
        );
        assert_eq!(tr.order.refund, Some(Refund::Automatic));
        assert!(
            tr.effects
                .contains(&Effect::RecordRefund { offline: false })
        );
        assert!(tr.effects.contains(&Effect::TerminateService {
            cause: TerminationCause::Refunded
        }));
    }
}

#[test]
fn seed_8_refund_after_completion_is_offline() {
    let o = completed();
    let tr = step(
        &o,
        OrderEvent::Cancelled {
            reason: CancelReason::MerchantRefund,
            at: t0() + days(9),
        },
        t0() + days(9),
    );
    assert_eq!(tr.order.status, OrderStatus::Completed);
    assert_eq!(tr.order.cancel_reason, None);
    assert_eq!(tr.order.refund, Some(Refund::Offline));
    assert_eq!(tr.effects, vec![Effect::RecordRefund { offline: true }]);
    assert!(tr.history.is_none());
    // Recorded once, however often reconciliation sees it.
    let again = step(
        &tr.order,
        says(QueryReading::Cancelled { by_isv: false }),
        t0() + days(10),
    );
    assert_ignored(&again, &tr.order);
    // Other cancellations of a completed order are stale.
    let isv = step(
        &o,
        OrderEvent::Cancelled {
            reason: CancelReason::IsvCancelled,
            at: t0() + days(9),
        },
        t0() + days(9),
    );
    assert_ignored(&isv, &o);
}

// ---- paid at the last minute -----------------------------------------------------------------

#[test]
fn paid_at_the_last_minute_stays_alive() {
    let due = t0() + days(3);
    let fired = step(
        &priced(),
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Payment,
            now: due,
        },
        due,
    )
    .order;
    // Alipay answers: paid. Alipay wins.
    let tr = step(&fired, says(QueryReading::Paid), due + hours(1));
    assert_eq!(tr.order.status, OrderStatus::Implementing);
    assert!(tr.order.paid);
    assert_eq!(
        tr.order.deadline(DeadlineKind::Payment).unwrap().state,
        DeadlineState::Cancelled
    );
    assert_eq!(
        tr.effects[0],
        Effect::CancelDeadline {
            kind: DeadlineKind::Payment
        }
    );
    assert_eq!(
        pending(&tr.order),
        vec![(DeadlineKind::Implementation, due + hours(1) + days(30))]
    );

    // The scheduler's rule, late: ignored, whether Alipay-confirmed or inferred.
    for inferred in [false, true] {
        let late = step(
            &tr.order,
            OrderEvent::DeadlineConfirmed {
                kind: DeadlineKind::Payment,
                inferred,
            },
            due + hours(7),
        );
        assert_ignored(&late, &tr.order);
    }
    let late = step(
        &tr.order,
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Payment,
            now: due + hours(7),
        },
        due + hours(7),
    );
    assert_ignored(&late, &tr.order);
    // A payment message with its own time arrives later still: the 30 days run from it.
    let paid_at = due - Duration::minutes(1);
    let tr = step(
        &tr.order,
        OrderEvent::PaymentSeen { at: paid_at },
        due + hours(8),
    );
    assert_eq!(tr.order.status_since, paid_at);
    assert_eq!(
        pending(&tr.order),
        vec![(DeadlineKind::Implementation, paid_at + days(30))]
    );
}

// ---- backward and stale events ---------------------------------------------------------------

#[test]
fn backward_readings_are_ignored() {
    let cases = [
        (implementing(), QueryReading::Unpaid),
        (awaiting_confirmation(), QueryReading::Paid),
        (awaiting_confirmation(), QueryReading::Unpaid),
        (completed(), QueryReading::AwaitingConfirmation),
        (completed(), QueryReading::Paid),
        (completed(), QueryReading::Completed),
        (completed(), QueryReading::Cancelled { by_isv: true }),
    ];
    for (o, reading) in cases {
        assert_ignored(&step(&o, says(reading), t0() + days(8)), &o);
    }
}

#[test]
fn nothing_moves_a_cancelled_order() {
    let o = step(
        &implementing(),
        says(QueryReading::Cancelled { by_isv: false }),
        t0() + days(2),
    )
    .order;
    let later = t0() + days(3);
    let events = [
        OrderEvent::Placed {
            ordered_at: t0(),
            total_price: None,
        },
        OrderEvent::PaymentSeen {
            at: t0() + hours(1),
        },
        OrderEvent::AuditPassed { at: t0() + days(1) },
        OrderEvent::MerchantConfirmed { at: later },
        OrderEvent::Cancelled {
            reason: CancelReason::IsvCancelled,
            at: later,
        },
        says(QueryReading::Unpaid),
        says(QueryReading::Paid),
        says(QueryReading::AwaitingConfirmation),
        says(QueryReading::Completed),
        says(QueryReading::Cancelled { by_isv: true }),
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Implementation,
            now: later + days(40),
        },
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Implementation,
            inferred: true,
        },
        OrderEvent::WarningDue { at_days: 20 },
    ];
    for event in events {
        assert_ignored(&step(&o, event, later + days(40)), &o);
    }
}

#[test]
fn stale_messages_are_ignored() {
    let o = awaiting_confirmation();
    // A payment message, an audit message later than we hold, a redelivered order.
    for event in [
        OrderEvent::PaymentSeen {
            at: t0() + hours(2),
        },
        OrderEvent::AuditPassed {
            at: t0() + days(5) + hours(1),
        },
        OrderEvent::Placed {
            ordered_at: t0(),
            total_price: Some("99.00".into()),
        },
    ] {
        assert_ignored(&step(&o, event, t0() + days(7)), &o);
    }
    let c = completed();
    assert_ignored(
        &step(
            &c,
            OrderEvent::MerchantConfirmed { at: t0() + days(7) },
            t0() + days(7),
        ),
        &c,
    );
}

#[test]
fn a_state_further_along_implies_the_ones_before() {
    // Alipay shows TO_CONFIRM before we saw payment: paid, and no implementation deadline.
    let tr = step(
        &priced(),
        says(QueryReading::AwaitingConfirmation),
        t0() + days(2),
    );
    assert_eq!(tr.order.status, OrderStatus::AwaitingConfirmation);
    assert!(tr.order.paid);
    assert!(tr.order.deadline(DeadlineKind::Implementation).is_none());
    assert_eq!(
        tr.effects,
        vec![
            Effect::CancelDeadline {
                kind: DeadlineKind::Payment
            },
            Effect::ScheduleDeadline {
                kind: DeadlineKind::Confirmation,
                due_at: t0() + days(9)
            },
        ]
    );
    let tr = step(
        &priced(),
        OrderEvent::MerchantConfirmed { at: t0() + days(2) },
        t0() + days(2),
    );
    assert_eq!(tr.order.status, OrderStatus::Completed);
    assert!(tr.order.paid);
}

// ---- order.query readings applied to an order ------------------------------------------------

#[test]
fn unknown_reading_alerts_and_changes_nothing() {
    let o = implementing();
    let raw = r#"{"status":"MERCHANT_ORDED","order_items":["REFUNDING"]}"#.to_string();
    let tr = step(
        &o,
        says(QueryReading::Unknown { raw: raw.clone() }),
        t0() + days(2),
    );
    assert_eq!(tr.order, o);
    assert!(tr.history.is_none());
    assert!(tr.ignored.is_some());
    assert_eq!(
        tr.effects,
        vec![Effect::Alert(Alert::UnknownAlipayStatus { raw })]
    );
}

#[test]
fn cancelled_reading_cause_depends_on_the_due_deadline() {
    let cancelled = QueryReading::Cancelled { by_isv: false };
    // awaiting_payment: before the payment deadline, a merchant cancellation; at or after, the timeout.
    let o = priced();
    let before = step(
        &o,
        says(cancelled.clone()),
        t0() + days(3) - Duration::seconds(1),
    );
    assert_eq!(
        before.order.cancel_reason,
        Some(CancelReason::MerchantRefund)
    );
    let after = step(&o, says(cancelled.clone()), t0() + days(3));
    assert_eq!(after.order.cancel_reason, Some(CancelReason::UnpaidTimeout));
    assert_eq!(after.order.status_since, t0() + days(3));
    // implementing: the same with the implementation deadline.
    let o = implementing();
    let due = t0() + hours(1) + days(30);
    assert_eq!(
        step(&o, says(cancelled.clone()), due - hours(1))
            .order
            .cancel_reason,
        Some(CancelReason::MerchantRefund)
    );
    assert_eq!(
        step(&o, says(cancelled), due).order.cancel_reason,
        Some(CancelReason::ImplementationTimeout)
    );
}

// ---- order-independence ----------------------------------------------------------------------

/// What must not depend on arrival order. For a final state, later facts are stale by the
/// forward-only rule, so a cancelled order is compared by status, reason and time only
/// (`paid` reflects what was known when it closed).
fn settled(o: &Order) -> String {
    match o.status {
        OrderStatus::Cancelled => {
            format!("{:?} {:?} {}", o.status, o.cancel_reason, o.status_since)
        }
        OrderStatus::Completed => format!(
            "{:?} {} paid={} {:?}",
            o.status, o.status_since, o.paid, o.refund
        ),
        _ => format!(
            "{:?} {} paid={} pending={:?} warnings={:?} audit={:?} payment={:?}",
            o.status,
            o.status_since,
            o.paid,
            pending(o),
            o.warnings,
            o.audit_passed_at,
            o.payment
        ),
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            out.push(tail);
        }
    }
    out
}

/// Events, each with the time it is processed.
type Timeline = Vec<(OrderEvent, DateTime<Utc>)>;

/// Runs `events` (each with the time it is processed) after placing the order.
fn run(start: &Order, events: &[(OrderEvent, DateTime<Utc>)], order: &[usize]) -> Order {
    order.iter().fold(start.clone(), |o, &i| {
        let (event, now) = &events[i];
        handle(&o, event.clone(), *now, &rules())
            .unwrap_or_else(|e| panic!("{event:?} at {now}: {e}"))
            .order
    })
}

#[test]
fn any_permutation_with_duplicates_ends_in_the_same_state() {
    let h = |n| t0() + hours(n);
    let placed_again = (
        OrderEvent::Placed {
            ordered_at: t0(),
            total_price: Some("99.00".into()),
        },
        h(1),
    );
    // Lifecycles in their real order: (first state, external events with processing time).
    // Times are within the deadlines, as in a lifecycle that merely arrives out of order;
    // deadline events are the scheduler's, not messages, and cannot precede their state.
    let lifecycles: Vec<(&str, Order, Timeline)> = vec![
        (
            "merchant confirms",
            priced(),
            vec![
                (OrderEvent::PaymentSeen { at: h(1) }, h(2)),
                (says(QueryReading::Paid), h(3)),
                (OrderEvent::AuditPassed { at: h(100) }, h(100)),
                (says(QueryReading::AwaitingConfirmation), h(101)),
                (OrderEvent::MerchantConfirmed { at: h(120) }, h(121)),
            ],
        ),
        (
            "completion read before the confirmation message",
            priced(),
            vec![
                (OrderEvent::PaymentSeen { at: h(1) }, h(2)),
                (OrderEvent::AuditPassed { at: h(100) }, h(100)),
                (says(QueryReading::Completed), h(130)),
                (OrderEvent::MerchantConfirmed { at: h(120) }, h(131)),
            ],
        ),
        (
            "free order awaiting confirmation",
            free(),
            vec![
                (says(QueryReading::Paid), h(2)),
                (OrderEvent::AuditPassed { at: h(72) }, h(72)),
                (says(QueryReading::AwaitingConfirmation), h(74)),
                (says(QueryReading::AwaitingConfirmation), h(90)),
            ],
        ),
        (
            "paid, still implementing",
            priced(),
            vec![
                (says(QueryReading::Unpaid), h(1)),
                (OrderEvent::PaymentSeen { at: h(2) }, h(30)),
                (says(QueryReading::Paid), h(24)),
            ],
        ),
        (
            "audit passed while Alipay still shows it paid",
            priced(),
            vec![
                (OrderEvent::PaymentSeen { at: h(2) }, h(3)),
                (OrderEvent::AuditPassed { at: h(50) }, h(50)),
                (says(QueryReading::Paid), h(51)),
            ],
        ),
        (
            "merchant refund",
            priced(),
            vec![
                (OrderEvent::PaymentSeen { at: h(2) }, h(3)),
                (OrderEvent::AuditPassed { at: h(50) }, h(50)),
                (
                    OrderEvent::Cancelled {
                        reason: CancelReason::MerchantRefund,
                        at: h(60),
                    },
                    h(61),
                ),
            ],
        ),
        (
            "payment dated by the item's service_effect_date",
            priced(),
            vec![
                (says(QueryReading::Paid), h(5)),
                (
                    OrderEvent::AlipayAnswered {
                        reading: QueryReading::Paid,
                        paid: Some(Payment {
                            at: h(1),
                            source: PaidAtSource::ServiceEffectDate,
                        }),
                    },
                    h(6),
                ),
                (OrderEvent::PaymentSeen { at: h(2) }, h(7)),
            ],
        ),
        (
            "payment dated after the order awaits confirmation",
            priced(),
            vec![
                (OrderEvent::AuditPassed { at: h(40) }, h(40)),
                (says(QueryReading::AwaitingConfirmation), h(41)),
                (
                    OrderEvent::AlipayAnswered {
                        reading: QueryReading::AwaitingConfirmation,
                        paid: Some(Payment {
                            at: h(1),
                            source: PaidAtSource::ServiceEffectDate,
                        }),
                    },
                    h(42),
                ),
            ],
        ),
        (
            "ISV cancellation read",
            priced(),
            vec![
                (says(QueryReading::Paid), h(5)),
                (OrderEvent::PaymentSeen { at: h(2) }, h(6)),
                (says(QueryReading::Cancelled { by_isv: true }), h(40)),
            ],
        ),
    ];

    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for (name, start, events) in &lifecycles {
        let in_order: Vec<usize> = (0..events.len()).collect();
        let expected = settled(&run(start, events, &in_order));
        // Every permutation ...
        for perm in permutations(&in_order) {
            assert_eq!(
                settled(&run(start, events, &perm)),
                expected,
                "{name}: {perm:?}"
            );
        }
        // ... and random ones with duplicates (a redelivered order notification among them).
        let mut with_placed = events.clone();
        with_placed.push(placed_again.clone());
        for _ in 0..300 {
            let mut seq = in_order.clone();
            for i in (1..seq.len()).rev() {
                seq.swap(i, rng.below(i + 1));
            }
            for _ in 0..1 + rng.below(4) {
                let dup = rng.below(with_placed.len());
                seq.insert(rng.below(seq.len() + 1), dup);
            }
            assert_eq!(
                settled(&run(start, &with_placed, &seq)),
                expected,
                "{name}: {seq:?}"
            );
        }
    }
}

// Payment times and repairs of inferences (issue 12).
mod readings;
