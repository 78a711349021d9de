//! The marketplace lifecycle (LIFECYCLE.md "Our model") as pure functions of (state, event, now).
//!
//! Three aggregates, each a quinn-style state machine with no I/O and no clock: time always comes
//! in as a parameter, and whatever must happen in the world comes out as [`Effect`] data for the
//! service layer to write (in the same transaction) as deadline rows, outbox jobs or tasks.
//!
//! - **Order** ([`Order`]): [`place`] builds the first state; [`handle`] applies one
//!   [`OrderEvent`] and returns a [`Transition`]; getters ([`Order::is_final`],
//!   [`Order::deadline`], [`Order::next_timer`]) answer questions without changing anything.
//! - **Reading `order.query`**: [`read_order_query`] turns Alipay's raw statuses into a
//!   [`QueryReading`] with LIFECYCLE.md's default table (configurable in [`LifecycleRules`]).
//! - **Authorization** ([`AuthorizationState`], [`handle_authorization`]) and **Service**
//!   ([`ServiceState`], [`handle_service`]).
//! - **Service periods** ([`Period`], [`handle_period`], [`derive_service`]): what each paid
//!   order adds to the service, and the service's status that follows from them.
//!
//! # How an order moves
//! States only move forward: `awaiting_payment → implementing → awaiting_confirmation →
//! completed`, and any non-final state → `cancelled`. An event that would move an order backwards,
//! or that repeats what we already know, returns the order unchanged with `ignored: Some(why)` and
//! no effects: recorded and ignored, never an error. Errors ([`RuleError`]) are reserved for
//! callers breaking the protocol (confirming a deadline that is not due, inferring before the
//! grace period is over, a support termination without actor or reason).
//!
//! # Order-independence
//! Gateway messages and query results arrive in any order and may repeat. The rules below make
//! the outcome depend on the set of facts, not on their arrival order (see the
//! `any_permutation_with_duplicates_ends_in_the_same_state` test):
//! - A state further along implies the ones before it: a reading of `awaiting_confirmation` or
//!   `completed`, or a merchant confirmation, on an order still `awaiting_payment` moves it
//!   straight there and implies payment (`paid = true`). The skipped states' deadlines are simply
//!   never scheduled.
//! - A fact about the *current* state that carries an earlier timestamp than the one we hold
//!   refines `status_since` (and re-schedules that state's pending deadline and warnings), so
//!   deadlines run from the events' own timestamps whatever order they came in: a late
//!   `PaymentSeen` after an `order.query` reading of "paid" pulls the implementation deadline back
//!   to the payment time; a late `AuditPassed` does the same for the confirmation deadline.
//! - A fact about a state the order has already left is stale and ignored; a final state
//!   absorbs everything (so `paid` on a cancelled order reflects what was known when it closed),
//!   with one narrow exception: a final state reached by *inference* is corrected by a reading
//!   that disagrees, for 7 days (`alipay_disagreed`).
//! - The payment time (`paid_at`) is the earliest one we know: the item's `service_effect_date`,
//!   the notice's `order_time` when the notice's query shows payment, or else the moment a reading
//!   showed it. The implementation clock and its warnings count from it.
//! - Deadline events are not messages: the scheduler only fires deadline rows that exist, so they
//!   cannot precede the state that scheduled them.
//! - A `cancelled` reading's cause depends on which deadline is due when it is read (LIFECYCLE.md's
//!   table), so that one event is inherently order-dependent; everything else is not.

use chrono::Duration;

use crate::domain::order::DeadlineKind;

mod authorization;
mod order;
mod period;
mod reading;
mod service;
#[cfg(test)]
mod test_support;

pub use authorization::{
    AuthorizationEvent, AuthorizationState, AuthorizationStatus, AuthorizationTransition,
    Cancellation, handle_authorization,
};
pub use order::{
    Alert, Deadline, DeadlineState, Effect, HistoryEntry, Order, OrderEvent, PaidAtSource, Payment,
    QueryReason, Refund, RuleError, Task, Transition, Warning, handle, inference_review_window,
    place,
};
pub use period::{
    DerivedService, Period, PeriodDates, PeriodEvent, PeriodState, derive_service, handle_period,
    last_end,
};
pub use reading::{QueryReading, read_order_query, unread_values};
pub use service::{
    ServiceEvent, ServiceState, ServiceStatus, ServiceTransition, TerminationCause, handle_service,
};

// ---------------------------------------------------------------------------------------------
// Rules (configuration with LIFECYCLE.md's defaults)
// ---------------------------------------------------------------------------------------------

/// The configurable parts of the lifecycle. `Default` gives LIFECYCLE.md's documented defaults.
///
/// The status sets are matched exactly (case-sensitive, untrimmed): Alipay's enums are uppercase
/// ASCII, and anything else is an unknown value for support to look at, not something to guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRules {
    /// Warning points, in days after the start of implementation (default 20 and 27). Points at
    /// or past the 30-day deadline are dropped; duplicates count once.
    pub warning_days: Vec<u32>,
    /// How long a due deadline waits for Alipay to agree before the rule is applied as
    /// `inferred` (`scheduler.deadline_grace_seconds`, default 6 h).
    pub deadline_grace: Duration,
    /// Item `order_status` values that mean paid (default `DOING`, `TO_CONFIRM`, `CONFIRMED`,
    /// `DONE`).
    pub paid_item_statuses: Vec<String>,
    /// Item values that mean awaiting merchant confirmation (default `TO_CONFIRM`).
    pub awaiting_confirmation_item_statuses: Vec<String>,
    /// Item values that mean completed (default `CONFIRMED`, `DONE`).
    pub completed_item_statuses: Vec<String>,
    /// Item values that mean cancelled by the merchant (default `MERCHANT_CANCELLED`,
    /// `MERCHANT_REJECTED`).
    pub merchant_cancelled_item_statuses: Vec<String>,
    /// Item values that mean cancelled by the ISV (default `ISV_CANCELLED`, `ISV_REJECTED`).
    pub isv_cancelled_item_statuses: Vec<String>,
    /// Item values that mean ordered, nothing more (default `TO_DO`).
    pub ordered_item_statuses: Vec<String>,
    /// Order-level `status` values that mean ordered, nothing more (default `MERCHANT_ORDED`,
    /// the only one Alipay publishes).
    pub ordered_statuses: Vec<String>,
    /// Order-level `status` values that mean paid (default `MERCHANT_PAID`, `PAID`).
    pub paid_statuses: Vec<String>,
    /// Order-level `status` values that mean cancelled (default `MERCHANT_CANCELLED`, `CLOSED`,
    /// `CANCELLED`).
    pub cancelled_statuses: Vec<String>,
    /// How long before the end of a service's last period support is warned
    /// (`service_expiry_warning`, default 7 days).
    pub service_expiry_warning: Duration,
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

impl Default for LifecycleRules {
    fn default() -> Self {
        LifecycleRules {
            warning_days: vec![20, 27],
            deadline_grace: Duration::hours(6),
            paid_item_statuses: strings(&["DOING", "TO_CONFIRM", "CONFIRMED", "DONE"]),
            awaiting_confirmation_item_statuses: strings(&["TO_CONFIRM"]),
            completed_item_statuses: strings(&["CONFIRMED", "DONE"]),
            merchant_cancelled_item_statuses: strings(&["MERCHANT_CANCELLED", "MERCHANT_REJECTED"]),
            isv_cancelled_item_statuses: strings(&["ISV_CANCELLED", "ISV_REJECTED"]),
            ordered_item_statuses: strings(&["TO_DO"]),
            ordered_statuses: strings(&["MERCHANT_ORDED"]),
            paid_statuses: strings(&["MERCHANT_PAID", "PAID"]),
            cancelled_statuses: strings(&["MERCHANT_CANCELLED", "CLOSED", "CANCELLED"]),
            service_expiry_warning: Duration::days(7),
        }
    }
}

impl LifecycleRules {
    /// The warning points that fall before the implementation deadline, ascending, each once.
    fn effective_warning_days(&self) -> Vec<u32> {
        let period_days = DeadlineKind::Implementation.period().num_days();
        let mut days: Vec<u32> = self
            .warning_days
            .iter()
            .copied()
            .filter(|&d| i64::from(d) < period_days)
            .collect();
        days.sort_unstable();
        days.dedup();
        days
    }
}

fn contains(set: &[String], value: &str) -> bool {
    set.iter().any(|s| s == value)
}
