use super::*;
use crate::domain::lifecycle::test_support::{days, t0};
use crate::domain::lifecycle::{ServiceEvent, ServiceState, handle_service};
use std::collections::BTreeMap;

fn paid(order: &str, from_day: i64, to_day: i64) -> Period {
    handle_period(
        None,
        order,
        PeriodEvent::Paid(PeriodDates {
            starts_at: t0() + days(from_day),
            ends_at: Some(t0() + days(to_day)),
        }),
    )
}

fn closed(period: &Period, state: PeriodState, day: i64) -> Period {
    handle_period(
        Some(period),
        &period.commodity_order_id,
        PeriodEvent::Closed {
            state,
            at: t0() + days(day),
        },
    )
}

fn live() -> Option<DerivedService> {
    Some(DerivedService {
        status: ServiceStatus::Live,
        termination_cause: None,
    })
}

fn provisioning() -> Option<DerivedService> {
    Some(DerivedService {
        status: ServiceStatus::Provisioning,
        termination_cause: None,
    })
}

// ---- dates ------------------------------------------------------------------------------------

#[test]
fn item_dates_decide_the_period_when_they_read() {
    let dates = PeriodDates::choose(
        Some((t0() + days(1), t0() + days(366))),
        t0(),
        None,
        Some(30),
    );
    assert_eq!(dates.starts_at, t0() + days(1));
    assert_eq!(dates.ends_at, Some(t0() + days(366)));
}

#[test]
fn without_item_dates_the_period_runs_period_day_days_from_the_payment() {
    let dates = PeriodDates::choose(None, t0(), None, Some(180));
    assert_eq!(dates.starts_at, t0());
    assert_eq!(dates.ends_at, Some(t0() + days(180)));
}

#[test]
fn item_dates_that_end_before_they_start_fall_back_to_period_day() {
    let dates = PeriodDates::choose(Some((t0() + days(5), t0())), t0(), None, Some(10));
    assert_eq!(dates.ends_at, Some(t0() + days(10)));
}

#[test]
fn a_renewal_without_item_dates_extends_from_the_end_of_the_current_period() {
    let dates = PeriodDates::choose(None, t0() + days(100), Some(t0() + days(365)), Some(365));
    assert_eq!(dates.starts_at, t0() + days(365));
    assert_eq!(dates.ends_at, Some(t0() + days(730)));
}

#[test]
fn without_item_dates_or_period_day_a_period_has_no_end_and_never_expires() {
    let dates = PeriodDates::choose(None, t0(), None, None);
    assert_eq!(dates.ends_at, None);
    let p = handle_period(None, "A", PeriodEvent::Paid(dates));
    assert!(p.remains(t0() + days(10_000)));
    assert_eq!(last_end(&[p], t0()), None);
}

// ---- the service from its periods ------------------------------------------------------------

#[test]
fn no_period_says_nothing_about_the_service() {
    assert_eq!(derive_service(&[], true, t0()), None);
}

#[test]
fn a_paid_period_with_the_build_online_is_live_and_without_it_provisioning() {
    let a = paid("A", 0, 365);
    assert_eq!(derive_service(&[a.clone()], true, t0() + days(1)), live());
    assert_eq!(derive_service(&[a], false, t0() + days(1)), provisioning());
}

#[test]
fn a_refunded_renewal_leaves_the_service_live_on_the_earlier_period() {
    let a = paid("A", 0, 365);
    let b = closed(&paid("B", 365, 730), PeriodState::Refunded, 20);
    let periods = [a, b];
    assert_eq!(derive_service(&periods, true, t0() + days(21)), live());
    // Only the renewal's period is closed; the service runs out at the first one's end.
    assert_eq!(last_end(&periods, t0() + days(21)), Some(t0() + days(365)));
}

#[test]
fn refunding_the_only_period_terminates_the_service_as_refunded() {
    let a = closed(&paid("A", 0, 365), PeriodState::Refunded, 3);
    assert_eq!(
        derive_service(&[a], true, t0() + days(3)),
        Some(DerivedService {
            status: ServiceStatus::Terminated,
            termination_cause: Some(TerminationCause::Refunded),
        })
    );
}

#[test]
fn a_cancelled_last_period_terminates_as_order_cancelled() {
    let a = closed(&paid("A", 0, 365), PeriodState::Cancelled, 3);
    assert_eq!(
        derive_service(&[a], false, t0() + days(3))
            .and_then(|d| d.termination_cause)
            .map(|c| c.as_str()),
        Some("order_cancelled")
    );
}

#[test]
fn a_re_order_after_a_refund_reopens_the_service() {
    let a = closed(&paid("A", 0, 365), PeriodState::Refunded, 3);
    let c = paid("C", 10, 375);
    // A new build is needed: provisioning until it is online, then live.
    assert_eq!(
        derive_service(&[a.clone(), c.clone()], false, t0() + days(10)),
        provisioning()
    );
    assert_eq!(derive_service(&[a, c], true, t0() + days(11)), live());
}

#[test]
fn when_the_last_period_ends_the_service_expires() {
    let a = paid("A", 0, 365);
    let b = paid("B", 365, 730);
    let periods = [a, b];
    assert_eq!(derive_service(&periods, true, t0() + days(729)), live());
    assert_eq!(
        derive_service(&periods, true, t0() + days(730)),
        Some(DerivedService {
            status: ServiceStatus::Expired,
            termination_cause: Some(TerminationCause::Expired),
        })
    );
    assert_eq!(periods[0].state_at(t0() + days(730)), PeriodState::Ended);
}

#[test]
fn a_closed_period_stays_closed_whatever_comes_after() {
    // The refund was read before the payment: the payment's dates fill in, it stays refunded.
    let refunded = handle_period(
        None,
        "A",
        PeriodEvent::Closed {
            state: PeriodState::Refunded,
            at: t0() + days(2),
        },
    );
    let after = handle_period(
        Some(&refunded),
        "A",
        PeriodEvent::Paid(PeriodDates {
            starts_at: t0(),
            ends_at: Some(t0() + days(365)),
        }),
    );
    assert_eq!(after.state, PeriodState::Refunded);
    assert_eq!(after.starts_at, Some(t0()));
    // A second close keeps the first one's state and time.
    let again = closed(&after, PeriodState::Cancelled, 9);
    assert_eq!(again.state, PeriodState::Refunded);
    assert_eq!(again.closed_at, Some(t0() + days(2)));
}

#[test]
fn the_state_names_are_the_interface_names() {
    let names: Vec<&str> = [
        PeriodState::Active,
        PeriodState::Ended,
        PeriodState::Refunded,
        PeriodState::Cancelled,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(names, ["active", "ended", "refunded", "cancelled"]);
}

// ---- the service machine: expiry and re-orders ---------------------------------------------

#[test]
fn an_expiry_ends_the_service_as_expired_and_a_re_order_reopens_it() {
    let ended = handle_service(
        &ServiceState::provisioning(t0()),
        ServiceEvent::Terminate {
            cause: TerminationCause::Expired,
            authorization_active: false,
        },
        t0() + days(365),
    )
    .unwrap();
    assert_eq!(ended.state.status, ServiceStatus::Expired);
    assert_eq!(
        ended.state.termination_cause,
        Some(TerminationCause::Expired)
    );
    assert!(
        ended
            .effects
            .contains(&crate::domain::lifecycle::Effect::StopProvisioning)
    );
    // Ended is ended: a refund read afterwards changes nothing.
    let refund = handle_service(
        &ended.state,
        ServiceEvent::Terminate {
            cause: TerminationCause::Refunded,
            authorization_active: false,
        },
        t0() + days(366),
    )
    .unwrap();
    assert!(refund.ignored.is_some());

    let reopened = handle_service(
        &ended.state,
        ServiceEvent::Reopen {
            at: t0() + days(400),
        },
        t0() + days(400),
    )
    .unwrap();
    assert_eq!(reopened.state.status, ServiceStatus::Provisioning);
    assert_eq!(reopened.state.termination_cause, None);
    assert_eq!(reopened.state.since, t0() + days(400));
    let went_live = handle_service(
        &reopened.state,
        ServiceEvent::WentLive {
            at: t0() + days(401),
        },
        t0() + days(401),
    )
    .unwrap();
    assert_eq!(went_live.state.status, ServiceStatus::Live);
}

#[test]
fn a_renewal_never_reopens_a_service_that_is_running() {
    let live = handle_service(
        &ServiceState::provisioning(t0()),
        ServiceEvent::WentLive { at: t0() },
        t0(),
    )
    .unwrap()
    .state;
    let t = handle_service(&live, ServiceEvent::Reopen { at: t0() }, t0()).unwrap();
    assert!(t.ignored.is_some());
    assert_eq!(t.state, live);
}

// ---- order-independence ---------------------------------------------------------------------

/// The period events of one mini program, each with its own timestamp (as Alipay's facts carry
/// them): the authorization, the first order's payment, a renewal, the renewal's refund, a
/// re-order, and scheduler ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fact {
    Grant,
    Pay,
    Renew,
    RefundRenewal,
    Reorder,
    Tick(i64),
}

#[derive(Debug, Default)]
struct Model {
    periods: BTreeMap<String, Period>,
    granted: bool,
    now_day: i64,
}

impl Model {
    fn apply(&mut self, fact: Fact) {
        let mut event = |order: &str, event: PeriodEvent| {
            let next = handle_period(self.periods.get(order), order, event);
            self.periods.insert(order.to_string(), next);
        };
        let dates = |from: i64, to: i64| {
            PeriodEvent::Paid(PeriodDates {
                starts_at: t0() + days(from),
                ends_at: Some(t0() + days(to)),
            })
        };
        match fact {
            // The authorization feeds the build, not the periods.
            Fact::Grant => self.granted = true,
            Fact::Pay => event("A", dates(0, 365)),
            Fact::Renew => event("B", dates(365, 730)),
            Fact::RefundRenewal => event(
                "B",
                PeriodEvent::Closed {
                    state: PeriodState::Refunded,
                    at: t0() + days(20),
                },
            ),
            Fact::Reorder => event("C", dates(800, 1165)),
            // Time only moves forward.
            Fact::Tick(day) => self.now_day = self.now_day.max(day),
        }
    }

    fn outcome(&self, build_online: bool) -> (Option<DerivedService>, Vec<PeriodState>, bool) {
        let periods: Vec<Period> = self.periods.values().cloned().collect();
        let now = t0() + days(self.now_day);
        (
            derive_service(&periods, build_online, now),
            periods.iter().map(|p| p.state_at(now)).collect(),
            self.granted,
        )
    }
}

fn run(facts: &[Fact], build_online: bool) -> (Option<DerivedService>, Vec<PeriodState>, bool) {
    let mut model = Model::default();
    for fact in facts {
        model.apply(*fact);
    }
    model.outcome(build_online)
}

/// Every permutation of `items` (Heap's algorithm).
fn permutations(items: &[Fact]) -> Vec<Vec<Fact>> {
    fn heap(k: usize, items: &mut Vec<Fact>, out: &mut Vec<Vec<Fact>>) {
        if k <= 1 {
            out.push(items.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, items, out);
            let j = if k % 2 == 0 { i } else { 0 };
            items.swap(j, k - 1);
        }
    }
    let mut items = items.to_vec();
    let mut out = Vec::new();
    heap(items.len(), &mut items, &mut out);
    out
}

#[test]
fn any_order_of_period_events_ends_in_the_same_state() {
    // Ticks before the renewal's period, inside the re-order's period, and past everything.
    for tick in [30, 900, 2000] {
        let facts = [
            Fact::Grant,
            Fact::Pay,
            Fact::Renew,
            Fact::RefundRenewal,
            Fact::Reorder,
            Fact::Tick(tick),
        ];
        for online in [false, true] {
            let in_order = run(&facts, online);
            let all = permutations(&facts);
            assert_eq!(all.len(), 720);
            for p in all {
                assert_eq!(
                    run(&p, online),
                    in_order,
                    "tick {tick}, online {online}: {p:?}"
                );
            }
        }
    }
    // What the in-order runs say, for the record.
    let facts = |tick| {
        [
            Fact::Grant,
            Fact::Pay,
            Fact::Renew,
            Fact::RefundRenewal,
            Fact::Reorder,
            Fact::Tick(tick),
        ]
    };
    assert_eq!(run(&facts(30), true).0, live());
    assert_eq!(run(&facts(900), false).0, provisioning());
    assert_eq!(
        run(&facts(2000), true).0.map(|d| d.status),
        Some(ServiceStatus::Expired)
    );
}

mod shuffled {
    use super::*;
    use proptest::prelude::*;

    fn fact() -> impl Strategy<Value = Fact> {
        prop_oneof![
            Just(Fact::Grant),
            Just(Fact::Pay),
            Just(Fact::Renew),
            Just(Fact::RefundRenewal),
            Just(Fact::Reorder),
            (0i64..2000).prop_map(Fact::Tick),
        ]
    }

    proptest! {
        /// With repeats and several ticks, in any order: the same service state as in order.
        #[test]
        fn any_order_with_repeats_ends_in_the_same_state(
            (facts, shuffled) in proptest::collection::vec(fact(), 0..12)
                .prop_flat_map(|facts| (Just(facts.clone()), Just(facts).prop_shuffle())),
            online in any::<bool>(),
        ) {
            prop_assert_eq!(run(&shuffled, online), run(&facts, online));
        }
    }
}

#[test]
fn a_restored_period_runs_again_unless_it_ran_out() {
    let first = paid("P1", 0, 365);
    for state in [PeriodState::Refunded, PeriodState::Cancelled] {
        let inferred = closed(&first, state, 30);
        let restored = handle_period(Some(&inferred), "P1", PeriodEvent::Restored);
        assert_eq!(restored, first, "{state:?} restored");
        assert_eq!(derive_service(&[restored], true, t0() + days(40)), live());
    }
    let ran_out = closed(&first, PeriodState::Ended, 365);
    assert_eq!(
        handle_period(Some(&ran_out), "P1", PeriodEvent::Restored),
        ran_out
    );
    assert_eq!(
        handle_period(Some(&first), "P1", PeriodEvent::Restored),
        first
    );
}
