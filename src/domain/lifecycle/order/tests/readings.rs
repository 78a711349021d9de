//! Payment times (`paid_at`) and repairs of inferred transitions (LIFECYCLE.md "Readings we
//! trust").

use super::*;

fn answered(reading: QueryReading, paid: Option<Payment>) -> OrderEvent {
    OrderEvent::AlipayAnswered { reading, paid }
}

fn effect_date(at: DateTime<Utc>) -> Option<Payment> {
    Some(Payment {
        at,
        source: PaidAtSource::ServiceEffectDate,
    })
}

#[test]
fn the_implementation_clock_starts_at_the_items_service_effect_date() {
    let paid_at = t0() + hours(2);
    let tr = step(
        &priced(),
        answered(QueryReading::Paid, effect_date(paid_at)),
        t0() + days(1),
    );
    assert_eq!(tr.order.status, OrderStatus::Implementing);
    assert_eq!(tr.order.payment, effect_date(paid_at));
    assert_eq!(
        pending(&tr.order),
        vec![(DeadlineKind::Implementation, paid_at + days(30))]
    );
    // Warnings count from the same start.
    let warning_dues: Vec<_> = tr.order.warnings.iter().map(|w| w.due_at).collect();
    assert_eq!(warning_dues, vec![paid_at + days(20), paid_at + days(27)]);
}

#[test]
fn without_a_payment_time_the_reading_is_recorded_as_such_and_refined_later() {
    let now = t0() + days(1);
    let tr = step(&priced(), says(QueryReading::Paid), now);
    assert_eq!(
        tr.order.payment,
        Some(Payment {
            at: now,
            source: PaidAtSource::Reading
        })
    );
    // A later answer with the item's date moves the clock back to the payment.
    let paid_at = t0() + hours(3);
    let refined = step(
        &tr.order,
        answered(QueryReading::Paid, effect_date(paid_at)),
        now + hours(1),
    );
    assert_eq!(refined.order.payment, effect_date(paid_at));
    assert_eq!(
        pending(&refined.order),
        vec![(DeadlineKind::Implementation, paid_at + days(30))]
    );
    // A free order has no payment.
    let free = step(
        &free(),
        answered(QueryReading::Paid, effect_date(paid_at)),
        now,
    );
    assert_eq!(free.order.payment, None);
}

/// Alipay unreachable past the grace period: the payment deadline is applied by inference.
fn inferred_unpaid_timeout() -> (Order, DateTime<Utc>) {
    let due = t0() + days(3);
    let fired = step(
        &priced(),
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Payment,
            now: due,
        },
        due,
    );
    let at = due + hours(7);
    let tr = step(
        &fired.order,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Payment,
            inferred: true,
        },
        at,
    );
    assert_eq!(tr.order.cancel_reason, Some(CancelReason::UnpaidTimeout));
    assert_eq!(tr.order.inferred_at, Some(at));
    (tr.order, at)
}

#[test]
fn an_inferred_cancellation_is_repaired_when_alipay_disagrees_within_seven_days() {
    let (cancelled, at) = inferred_unpaid_timeout();
    let now = at + days(1);
    let tr = step(&cancelled, says(QueryReading::Paid), now);
    assert_eq!(
        (tr.order.status, tr.order.cancel_reason),
        (OrderStatus::Implementing, None)
    );
    assert!(tr.order.paid);
    assert_eq!(tr.order.inferred_at, None);
    let h = tr.history.clone().unwrap();
    assert_eq!(
        (h.from, h.to, h.cause, h.inferred),
        (
            Some(OrderStatus::Cancelled),
            OrderStatus::Implementing,
            "alipay_disagreed",
            false
        )
    );
    assert!(tr.effects.contains(&Effect::Alert(Alert::AlipayDisagreed {
        inferred: "cancelled (unpaid_timeout)".into(),
        now: OrderStatus::Implementing,
    })));
    assert_eq!(
        pending(&tr.order),
        vec![(DeadlineKind::Implementation, now + days(30))]
    );
    // Repaired once: the same reading again changes nothing.
    assert_ignored(&step(&tr.order, says(QueryReading::Paid), now), &tr.order);
}

#[test]
fn an_inference_older_than_seven_days_or_a_cancellation_alipay_agreed_to_stays() {
    let (cancelled, at) = inferred_unpaid_timeout();
    let late = step(&cancelled, says(QueryReading::Paid), at + days(7));
    assert_ignored(&late, &cancelled);
    // Alipay showing it unpaid does not disagree with an unpaid timeout.
    assert_ignored(
        &step(&cancelled, says(QueryReading::Unpaid), at),
        &cancelled,
    );
    // A cancellation Alipay confirmed is not an inference: final.
    let due = t0() + days(3);
    let fired = step(
        &priced(),
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Payment,
            now: due,
        },
        due,
    );
    let confirmed = step(
        &fired.order,
        says(QueryReading::Cancelled { by_isv: false }),
        due,
    );
    assert_eq!(confirmed.order.inferred_at, None);
    assert_ignored(
        &step(&confirmed.order, says(QueryReading::Paid), due + hours(1)),
        &confirmed.order,
    );
}

#[test]
fn a_repaired_implementation_timeout_restores_the_service_and_drops_the_refund() {
    let o = implementing();
    let due = t0() + hours(1) + days(30);
    let fired = step(
        &o,
        OrderEvent::DeadlineDue {
            kind: DeadlineKind::Implementation,
            now: due,
        },
        due,
    );
    let at = due + hours(7);
    let cancelled = step(
        &fired.order,
        OrderEvent::DeadlineConfirmed {
            kind: DeadlineKind::Implementation,
            inferred: true,
        },
        at,
    );
    assert_eq!(cancelled.order.refund, Some(Refund::Automatic));
    // Still in implementation is what the inference was made on: no news, nothing repaired.
    assert_ignored(
        &step(&cancelled.order, says(QueryReading::Paid), at + hours(1)),
        &cancelled.order,
    );
    let tr = step(
        &cancelled.order,
        says(QueryReading::AwaitingConfirmation),
        at + hours(1),
    );
    assert_eq!(tr.order.status, OrderStatus::AwaitingConfirmation);
    assert_eq!(tr.order.refund, None);
    assert!(tr.effects.contains(&Effect::RestoreService {
        cause: TerminationCause::ImplementationTimeout
    }));
}
