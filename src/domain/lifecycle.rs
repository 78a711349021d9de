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
//!   absorbs everything (so `paid` on a cancelled order reflects what was known when it closed).
//! - Deadline events are not messages: the scheduler only fires deadline rows that exist, so they
//!   cannot precede the state that scheduled them.
//! - A `cancelled` reading's cause depends on which deadline is due when it is read (LIFECYCLE.md's
//!   table), so that one event is inherently order-dependent; everything else is not.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use super::order::{self, CancelReason, DeadlineKind, OrderPlaced, OrderStatus};

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

// ---------------------------------------------------------------------------------------------
// The order aggregate
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadlineState {
    /// Scheduled; the sweep has not reached it.
    Pending,
    /// Due and fired: Alipay is being asked (`order.query`) before the rule is applied. A deadline
    /// whose rule was applied stays `Fired`.
    Fired,
    /// The order left the state before the rule was applied.
    Cancelled,
}

impl DeadlineState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineState::Pending => "pending",
            DeadlineState::Fired => "fired",
            DeadlineState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            DeadlineState::Pending,
            DeadlineState::Fired,
            DeadlineState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One deadline row. An order holds at most one per kind (the table's `UNIQUE (order, kind)`):
/// scheduling a kind again replaces its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    pub kind: DeadlineKind,
    pub due_at: DateTime<Utc>,
    pub state: DeadlineState,
}

/// A reminder before the implementation deadline: `at_days` after the start of implementation.
/// Warnings change nothing by themselves; firing one raises an [`Alert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub at_days: u32,
    pub due_at: DateTime<Utc>,
    pub sent: bool,
}

/// How a refund of this order was settled, once one is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refund {
    /// By Alipay, during `implementing` or `awaiting_confirmation` (seed 8).
    Automatic,
    /// Between merchant and ISV, after `completed` (seed 5, 8): support's business.
    Offline,
}

impl Refund {
    pub fn as_str(self) -> &'static str {
        match self {
            Refund::Automatic => "automatic",
            Refund::Offline => "offline",
        }
    }
}

/// One marketplace order (key `commodity_order_id`, held by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub status: OrderStatus,
    /// `Some` exactly when `status` is `Cancelled`.
    pub cancel_reason: Option<CancelReason>,
    /// `order_time` from the notification (UTC).
    pub ordered_at: DateTime<Utc>,
    /// When the current state began, by the best timestamp we have (see the module doc).
    pub status_since: DateTime<Utc>,
    /// Money was taken: set when a priced order leaves `awaiting_payment` forwards. Free orders
    /// never have it, so they are never refunded.
    pub paid: bool,
    pub deadlines: Vec<Deadline>,
    /// The implementation deadline's warnings; empty outside `implementing`.
    pub warnings: Vec<Warning>,
    /// An `alipay.open.mini.version.audit.passed` seen while the order was not yet in
    /// `awaiting_confirmation`: the state moves only once `order.query` agrees, and then starts at
    /// this time. Cleared when the order leaves `implementing`.
    pub audit_passed_at: Option<DateTime<Utc>>,
    /// A refund recorded for this order (so a repeated reading records it once).
    pub refund: Option<Refund>,
}

impl Order {
    pub fn is_final(&self) -> bool {
        matches!(self.status, OrderStatus::Completed | OrderStatus::Cancelled)
    }

    pub fn deadline(&self, kind: DeadlineKind) -> Option<&Deadline> {
        self.deadlines.iter().find(|d| d.kind == kind)
    }

    fn deadline_mut(&mut self, kind: DeadlineKind) -> Option<&mut Deadline> {
        self.deadlines.iter_mut().find(|d| d.kind == kind)
    }

    /// The earliest moment something is scheduled to happen (a pending deadline or an unsent
    /// warning), like quinn's `poll_timeout`. Fired deadlines are not included: they are
    /// re-checked on every tick until Alipay agrees or the grace period ends.
    pub fn next_timer(&self) -> Option<DateTime<Utc>> {
        let deadlines = self
            .deadlines
            .iter()
            .filter(|d| d.state == DeadlineState::Pending)
            .map(|d| d.due_at);
        let warnings = self.warnings.iter().filter(|w| !w.sent).map(|w| w.due_at);
        deadlines.chain(warnings).min()
    }

    /// From when the deadline of `kind` may be applied without Alipay's agreement
    /// (`DeadlineConfirmed { inferred: true }`): its due time plus the grace period. `None` when
    /// that deadline is not the open one of the current state.
    pub fn inference_allowed_from(
        &self,
        kind: DeadlineKind,
        rules: &LifecycleRules,
    ) -> Option<DateTime<Utc>> {
        self.deadline(kind)
            .filter(|d| {
                deadline_of(self.status) == Some(kind) && d.state != DeadlineState::Cancelled
            })
            .map(|d| d.due_at + rules.deadline_grace)
    }
}

/// The deadline that runs while an order is in `status`.
fn deadline_of(status: OrderStatus) -> Option<DeadlineKind> {
    match status {
        OrderStatus::AwaitingPayment => Some(DeadlineKind::Payment),
        OrderStatus::Implementing => Some(DeadlineKind::Implementation),
        OrderStatus::AwaitingConfirmation => Some(DeadlineKind::Confirmation),
        OrderStatus::Completed | OrderStatus::Cancelled => None,
    }
}

/// Position on the forward path; final states are last.
fn rank(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::AwaitingPayment => 0,
        OrderStatus::Implementing => 1,
        OrderStatus::AwaitingConfirmation => 2,
        OrderStatus::Completed => 3,
        OrderStatus::Cancelled => 3,
    }
}

// ---------------------------------------------------------------------------------------------
// Events, effects, transitions
// ---------------------------------------------------------------------------------------------

/// An input to [`handle`]. Timestamps are the events' own (Alipay's), converted to UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// The order notification. Only [`place`] creates an order; on an existing one this is a
    /// redelivery and is ignored.
    Placed {
        ordered_at: DateTime<Utc>,
        total_price: Option<String>,
    },
    /// Payment seen with its own time.
    PaymentSeen { at: DateTime<Utc> },
    /// `alipay.open.mini.version.audit.passed` for the order's mini program.
    AuditPassed { at: DateTime<Utc> },
    /// The merchant confirmed the order.
    MerchantConfirmed { at: DateTime<Utc> },
    /// A cancellation whose reason is already known (e.g. an ISV cancellation we made).
    Cancelled {
        reason: CancelReason,
        at: DateTime<Utc>,
    },
    /// What `alipay.open.servicemarket.order.query` says now ([`read_order_query`]).
    AlipaySays(QueryReading),
    /// The sweep found this deadline due at `now` (the sweep's own claim time, which is what the
    /// due check uses; [`handle`]'s `now` plays no part for this event). The first one fires the
    /// deadline; each later one while it is still fired re-asks Alipay.
    DeadlineDue {
        kind: DeadlineKind,
        now: DateTime<Utc>,
    },
    /// Apply a due deadline's rule: Alipay agreed (`inferred: false`), or it could not be reached
    /// or still shows the order unchanged past the grace period (`inferred: true`).
    DeadlineConfirmed { kind: DeadlineKind, inferred: bool },
    /// The sweep found a warning due.
    WarningDue { at_days: u32 },
    /// Support terminates the order's service (admin API / CLI).
    SupportTerminates { actor: String, reason: String },
}

/// Why we ask Alipay about an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryReason {
    /// A deadline is due: confirm before acting.
    DeadlineDue(DeadlineKind),
    /// Our build passed audit: the order moves once Alipay shows it awaiting confirmation.
    AuditPassed,
    /// The termination workflow starts by querying the order.
    SupportTermination,
}

impl QueryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryReason::DeadlineDue(DeadlineKind::Payment) => "payment_deadline_due",
            QueryReason::DeadlineDue(DeadlineKind::Implementation) => "implementation_deadline_due",
            QueryReason::DeadlineDue(DeadlineKind::Confirmation) => "confirmation_deadline_due",
            QueryReason::AuditPassed => "audit_passed",
            QueryReason::SupportTermination => "support_termination",
        }
    }
}

/// Something support must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// `order.query` returned values outside the configured table, kept verbatim.
    UnknownAlipayStatus { raw: String },
    /// An implementation warning point was reached.
    ImplementationDeadlineNear {
        at_days: u32,
        deadline_due_at: DateTime<Utc>,
    },
}

/// A to-do visible to support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The service is terminated but the merchant still authorizes us: guide them to
    /// 应用授权和代扣 → 第三方应用授权 → 取消授权 (seed 7).
    MerchantMustCancelAuthorization,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::MerchantMustCancelAuthorization => "merchant_must_cancel_authorization",
        }
    }
}

/// What must happen in the world, as data. The service layer writes these in the transition's
/// transaction (deadline rows, outbox jobs, tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Insert or replace the order's deadline row of this kind (state `pending`).
    ScheduleDeadline {
        kind: DeadlineKind,
        due_at: DateTime<Utc>,
    },
    /// Mark the order's deadline row of this kind `cancelled`.
    CancelDeadline {
        kind: DeadlineKind,
    },
    /// Insert or replace the implementation warning at this point.
    ScheduleWarning {
        at_days: u32,
        due_at: DateTime<Utc>,
    },
    /// Drop the order's unsent warnings (it left `implementing`).
    CancelWarnings,
    /// Call `alipay.open.servicemarket.order.query` and feed the result back as
    /// [`OrderEvent::AlipaySays`].
    QueryAlipay {
        reason: QueryReason,
    },
    /// Run [`ServiceEvent::Terminate`] on the order's service (all services of the mini program
    /// when it comes from an authorization).
    TerminateService {
        cause: TerminationCause,
    },
    /// Record a refund for support: automatic (Alipay's) or offline (merchant and ISV).
    RecordRefund {
        offline: bool,
    },
    Alert(Alert),
    /// Stop the service's provisioning jobs (template build, upload, audit, online).
    StopProvisioning,
    OpenTask(Task),
    CloseTask(Task),
    /// Store the (sealed) token of this grant as the app's current one.
    StoreToken {
        auth_time_ms: i64,
    },
    /// Erase the app's tokens.
    EraseToken,
}

/// One `order_history` row (the caller adds the order id and the time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// `None` for the first state.
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    /// `alipay`, `scheduler`, or the support actor.
    pub actor: String,
    /// What moved it: `order_notification`, `payment_seen`, `order_query`, `merchant_confirmed`,
    /// `auto_confirmed`, or the cancel reason.
    pub cause: &'static str,
    pub reason: Option<String>,
    /// Applied past the grace period without Alipay's agreement: reconciliation re-checks it.
    pub inferred: bool,
}

/// The result of [`place`] or [`handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new state (equal to the old one when `ignored`).
    pub order: Order,
    pub effects: Vec<Effect>,
    /// `Some` when the status changed.
    pub history: Option<HistoryEntry>,
    /// `Some(why)` when the event was stale, backward or a repeat: record it, change nothing.
    pub ignored: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("the {} deadline is not due until {due_at}", kind.as_str())]
    DeadlineNotDue {
        kind: DeadlineKind,
        due_at: DateTime<Utc>,
    },
    #[error(
        "the {} deadline may be applied without Alipay's agreement only from {until}",
        kind.as_str()
    )]
    GraceNotElapsed {
        kind: DeadlineKind,
        until: DateTime<Utc>,
    },
    #[error("a support termination needs a non-empty {0}")]
    MissingSupportField(&'static str),
}

// ---------------------------------------------------------------------------------------------
// Reading order.query
// ---------------------------------------------------------------------------------------------

/// What an `order.query` result means for us (LIFECYCLE.md "Default reading of `order.query`").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryReading {
    /// Ordered, not paid: nothing new.
    Unpaid,
    Paid,
    AwaitingConfirmation,
    Completed,
    /// The cause (timeout or merchant refund) is decided by [`handle`], which knows which
    /// deadline is due.
    Cancelled {
        by_isv: bool,
    },
    /// Values outside the table, verbatim (a JSON object `{"status": .., "order_items": [..]}`).
    Unknown {
        raw: String,
    },
}

/// Reads `order.query`'s order-level `status` and the items' `order_status` values.
///
/// Each value must be in one of the configured sets; a single value outside them makes the whole
/// reading `Unknown` (kept verbatim, no transition): we do not guess from partial information.
/// Among known values the furthest along wins, a cancellation beating progress (it is final and
/// comes last) and an ISV cancellation beating a merchant one:
/// ISV cancelled > merchant cancelled > completed > awaiting confirmation > paid > unpaid.
/// No status and no items is `Unknown` too: there is nothing to read.
pub fn read_order_query(
    order_status: Option<&str>,
    item_statuses: &[&str],
    rules: &LifecycleRules,
) -> QueryReading {
    #[derive(serde::Serialize)]
    struct Raw<'a> {
        status: Option<&'a str>,
        order_items: &'a [&'a str],
    }
    let unknown = || QueryReading::Unknown {
        raw: serde_json::to_string(&Raw {
            status: order_status,
            order_items: item_statuses,
        })
        .unwrap_or_default(),
    };
    if order_status.is_none() && item_statuses.is_empty() {
        return unknown();
    }

    let mut isv_cancelled = false;
    let mut merchant_cancelled = false;
    let mut completed = false;
    let mut to_confirm = false;
    let mut paid = false;

    if let Some(status) = order_status {
        if contains(&rules.cancelled_statuses, status) {
            merchant_cancelled = true;
        } else if contains(&rules.paid_statuses, status) {
            paid = true;
        } else if !contains(&rules.ordered_statuses, status) {
            return unknown();
        }
    }
    for &item in item_statuses {
        let mut known = false;
        if contains(&rules.isv_cancelled_item_statuses, item) {
            isv_cancelled = true;
            known = true;
        }
        if contains(&rules.merchant_cancelled_item_statuses, item) {
            merchant_cancelled = true;
            known = true;
        }
        if contains(&rules.completed_item_statuses, item) {
            completed = true;
            known = true;
        }
        if contains(&rules.awaiting_confirmation_item_statuses, item) {
            to_confirm = true;
            known = true;
        }
        if contains(&rules.paid_item_statuses, item) {
            paid = true;
            known = true;
        }
        if contains(&rules.ordered_item_statuses, item) {
            known = true;
        }
        if !known {
            return unknown();
        }
    }

    if isv_cancelled {
        QueryReading::Cancelled { by_isv: true }
    } else if merchant_cancelled {
        QueryReading::Cancelled { by_isv: false }
    } else if completed {
        QueryReading::Completed
    } else if to_confirm {
        QueryReading::AwaitingConfirmation
    } else if paid {
        QueryReading::Paid
    } else {
        QueryReading::Unpaid
    }
}

// ---------------------------------------------------------------------------------------------
// Order transitions
// ---------------------------------------------------------------------------------------------

const ALIPAY: &str = "alipay";
const SCHEDULER: &str = "scheduler";

/// The order's first state from its notification (via [`order::first_state`]): a priced order
/// waits 3 days for payment from `ordered_at`; a free one is implementing for 30 days, with
/// warnings.
pub fn place(placed: &OrderPlaced, rules: &LifecycleRules) -> Transition {
    let (status, kind, due_at) = order::first_state(placed);
    let mut next = Order {
        status,
        cancel_reason: None,
        ordered_at: placed.ordered_at,
        status_since: placed.ordered_at,
        paid: false,
        deadlines: Vec::new(),
        warnings: Vec::new(),
        audit_passed_at: None,
        refund: None,
    };
    let mut effects = Vec::new();
    schedule(&mut next, kind, due_at, &mut effects);
    if status == OrderStatus::Implementing {
        schedule_warnings(&mut next, rules, &mut effects);
    }
    Transition {
        order: next,
        effects,
        history: Some(HistoryEntry {
            from: None,
            to: status,
            actor: ALIPAY.into(),
            cause: "order_notification",
            reason: None,
            inferred: false,
        }),
        ignored: None,
    }
}

/// Applies one event to an order at `now`. See the module doc for the rules.
pub fn handle(
    order: &Order,
    event: OrderEvent,
    now: DateTime<Utc>,
    rules: &LifecycleRules,
) -> Result<Transition, RuleError> {
    Ok(match event {
        OrderEvent::Placed { .. } => ignore(order, "order already placed (redelivery)"),
        OrderEvent::PaymentSeen { at } => payment_seen(order, at, rules),
        OrderEvent::AuditPassed { at } => audit_passed(order, at, rules),
        OrderEvent::MerchantConfirmed { at } => merchant_confirmed(order, at, rules),
        OrderEvent::Cancelled { reason, at } => cancelled(order, reason, at, rules),
        OrderEvent::AlipaySays(reading) => alipay_says(order, reading, now, rules),
        OrderEvent::DeadlineDue { kind, now } => deadline_due(order, kind, now),
        OrderEvent::DeadlineConfirmed { kind, inferred } => {
            return deadline_confirmed(order, kind, inferred, now, rules);
        }
        OrderEvent::WarningDue { at_days } => warning_due(order, at_days, now),
        OrderEvent::SupportTerminates { actor, reason } => {
            return support_terminates(order, actor, reason);
        }
    })
}

fn ignore(order: &Order, why: impl Into<String>) -> Transition {
    Transition {
        order: order.clone(),
        effects: Vec::new(),
        history: None,
        ignored: Some(why.into()),
    }
}

fn already(order: &Order) -> Transition {
    ignore(order, format!("order is already {}", order.status.as_str()))
}

/// A change that is not a status move (a refined timestamp, a recorded fact, a query).
fn quiet(order: Order, effects: Vec<Effect>) -> Transition {
    Transition {
        order,
        effects,
        history: None,
        ignored: None,
    }
}

fn schedule(
    order: &mut Order,
    kind: DeadlineKind,
    due_at: DateTime<Utc>,
    effects: &mut Vec<Effect>,
) {
    let row = Deadline {
        kind,
        due_at,
        state: DeadlineState::Pending,
    };
    match order.deadline_mut(kind) {
        Some(existing) => *existing = row,
        None => order.deadlines.push(row),
    }
    effects.push(Effect::ScheduleDeadline { kind, due_at });
}

/// (Re)computes the warnings from `status_since`, keeping which ones were sent.
fn schedule_warnings(order: &mut Order, rules: &LifecycleRules, effects: &mut Vec<Effect>) {
    let since = order.status_since;
    let previous = std::mem::take(&mut order.warnings);
    for at_days in rules.effective_warning_days() {
        let due_at = since + Duration::days(i64::from(at_days));
        let sent = previous.iter().any(|w| w.at_days == at_days && w.sent);
        if !sent {
            effects.push(Effect::ScheduleWarning { at_days, due_at });
        }
        order.warnings.push(Warning {
            at_days,
            due_at,
            sent,
        });
    }
}

/// Parameters of one status move.
struct Move {
    to: OrderStatus,
    since: DateTime<Utc>,
    actor: &'static str,
    cause: &'static str,
    cancel_reason: Option<CancelReason>,
    /// The deadline whose rule this move applies (it stays `Fired` rather than cancelled).
    by_deadline: Option<DeadlineKind>,
    inferred: bool,
}

impl Move {
    fn to(to: OrderStatus, since: DateTime<Utc>, actor: &'static str, cause: &'static str) -> Self {
        Move {
            to,
            since,
            actor,
            cause,
            cancel_reason: None,
            by_deadline: None,
            inferred: false,
        }
    }

    fn cancel(reason: CancelReason, since: DateTime<Utc>, actor: &'static str) -> Self {
        Move {
            cancel_reason: Some(reason),
            ..Move::to(OrderStatus::Cancelled, since, actor, reason.as_str())
        }
    }
}

/// Moves an open order forward (the callers check the direction).
fn advance(order: &Order, mv: Move, rules: &LifecycleRules) -> Transition {
    debug_assert!(!order.is_final() && rank(mv.to) > rank(order.status));
    let from = order.status;
    let mut next = order.clone();
    let mut effects = Vec::new();

    // Leave the current state: its deadline is cancelled, unless this move is its rule.
    if let Some(kind) = deadline_of(from)
        && let Some(deadline) = next.deadline_mut(kind)
    {
        if mv.by_deadline == Some(kind) {
            deadline.state = DeadlineState::Fired;
        } else if deadline.state != DeadlineState::Cancelled {
            deadline.state = DeadlineState::Cancelled;
            effects.push(Effect::CancelDeadline { kind });
        }
    }
    if from == OrderStatus::Implementing && !next.warnings.is_empty() {
        next.warnings.clear();
        effects.push(Effect::CancelWarnings);
    }
    // Leaving awaiting_payment forwards means the merchant paid.
    if from == OrderStatus::AwaitingPayment && mv.to != OrderStatus::Cancelled {
        next.paid = true;
    }
    if mv.to != OrderStatus::Implementing {
        next.audit_passed_at = None;
    }

    next.status = mv.to;
    next.status_since = mv.since;
    next.cancel_reason = mv.cancel_reason;

    match mv.to {
        OrderStatus::Implementing => {
            let kind = DeadlineKind::Implementation;
            schedule(&mut next, kind, mv.since + kind.period(), &mut effects);
            schedule_warnings(&mut next, rules, &mut effects);
        }
        OrderStatus::AwaitingConfirmation => {
            let kind = DeadlineKind::Confirmation;
            schedule(&mut next, kind, mv.since + kind.period(), &mut effects);
        }
        OrderStatus::Cancelled => {
            let reason = mv
                .cancel_reason
                .expect("a move to cancelled carries its reason");
            cancellation_effects(&mut next, from, reason, &mut effects);
        }
        OrderStatus::AwaitingPayment | OrderStatus::Completed => {}
    }

    Transition {
        order: next,
        effects,
        history: Some(HistoryEntry {
            from: Some(from),
            to: mv.to,
            actor: mv.actor.into(),
            cause: mv.cause,
            reason: None,
            inferred: mv.inferred,
        }),
        ignored: None,
    }
}

/// Refund and termination for an order cancelled from `from`.
///
/// - A paid order is refunded by Alipay (seed 3, 4, 5, 8), except on an unpaid timeout.
/// - The service is terminated only if the order had got past `awaiting_payment`: before that
///   nothing was provisioned for it, and an unpaid renewal that times out must not terminate the
///   service an earlier order still feeds (seed 6).
fn cancellation_effects(
    next: &mut Order,
    from: OrderStatus,
    reason: CancelReason,
    effects: &mut Vec<Effect>,
) {
    if next.paid && reason != CancelReason::UnpaidTimeout && next.refund.is_none() {
        next.refund = Some(Refund::Automatic);
        effects.push(Effect::RecordRefund { offline: false });
    }
    if from != OrderStatus::AwaitingPayment {
        let cause = match reason {
            CancelReason::ImplementationTimeout => TerminationCause::ImplementationTimeout,
            CancelReason::MerchantRefund if next.paid => TerminationCause::Refunded,
            CancelReason::MerchantRefund
            | CancelReason::IsvCancelled
            | CancelReason::UnpaidTimeout => TerminationCause::OrderCancelled,
        };
        effects.push(Effect::TerminateService { cause });
    }
}

/// An earlier timestamp for the state the order is in: refine `status_since` and re-schedule the
/// state's deadline (if still pending; a fired one is due either way) and unsent warnings.
fn refine_since(order: &Order, at: DateTime<Utc>, rules: &LifecycleRules) -> Transition {
    let mut next = order.clone();
    let mut effects = Vec::new();
    next.status_since = at;
    if let Some(kind) = deadline_of(order.status)
        && order.deadline(kind).map(|d| d.state) == Some(DeadlineState::Pending)
    {
        schedule(&mut next, kind, at + kind.period(), &mut effects);
    }
    if order.status == OrderStatus::Implementing && !order.warnings.is_empty() {
        schedule_warnings(&mut next, rules, &mut effects);
    }
    quiet(next, effects)
}

/// For facts that name the state they prove: move forward, refine an earlier time, or ignore.
fn fact_for(
    order: &Order,
    state: OrderStatus,
    at: DateTime<Utc>,
    cause: &'static str,
    rules: &LifecycleRules,
) -> Transition {
    // Nothing about this order happened before it was placed.
    let at = at.max(order.ordered_at);
    if order.status == state {
        if at < order.status_since {
            refine_since(order, at, rules)
        } else {
            ignore(
                order,
                format!("already {} since {}", state.as_str(), order.status_since),
            )
        }
    } else if order.is_final() || rank(state) < rank(order.status) {
        already(order)
    } else {
        advance(order, Move::to(state, at, ALIPAY, cause), rules)
    }
}

fn payment_seen(order: &Order, at: DateTime<Utc>, rules: &LifecycleRules) -> Transition {
    fact_for(order, OrderStatus::Implementing, at, "payment_seen", rules)
}

fn merchant_confirmed(order: &Order, at: DateTime<Utc>, rules: &LifecycleRules) -> Transition {
    fact_for(
        order,
        OrderStatus::Completed,
        at,
        "merchant_confirmed",
        rules,
    )
}

/// Audit passing does not move the order by itself: Alipay moves it to 待商家确认 and
/// `order.query` must agree (LIFECYCLE.md). We record the time (the confirmation window's start)
/// and ask.
fn audit_passed(order: &Order, at: DateTime<Utc>, rules: &LifecycleRules) -> Transition {
    if at < order.ordered_at {
        return ignore(
            order,
            "audit passed before this order was placed (an earlier order's build)",
        );
    }
    match order.status {
        OrderStatus::AwaitingPayment | OrderStatus::Implementing => match order.audit_passed_at {
            None => {
                let mut next = order.clone();
                next.audit_passed_at = Some(at);
                quiet(
                    next,
                    vec![Effect::QueryAlipay {
                        reason: QueryReason::AuditPassed,
                    }],
                )
            }
            Some(seen) if at < seen => {
                let mut next = order.clone();
                next.audit_passed_at = Some(at);
                quiet(next, Vec::new())
            }
            Some(seen) => ignore(order, format!("audit pass already recorded at {seen}")),
        },
        OrderStatus::AwaitingConfirmation if at < order.status_since => {
            refine_since(order, at, rules)
        }
        _ => already(order),
    }
}

fn cancelled(
    order: &Order,
    reason: CancelReason,
    at: DateTime<Utc>,
    rules: &LifecycleRules,
) -> Transition {
    let at = at.max(order.ordered_at);
    match order.status {
        OrderStatus::Cancelled
            if order.cancel_reason == Some(reason) && at < order.status_since =>
        {
            refine_since(order, at, rules)
        }
        OrderStatus::Completed if reason == CancelReason::MerchantRefund => offline_refund(order),
        _ if order.is_final() => already(order),
        _ => advance(order, Move::cancel(reason, at, ALIPAY), rules),
    }
}

/// After completion there is no online refund: record it for support, once; status unchanged.
fn offline_refund(order: &Order) -> Transition {
    if order.refund.is_some() {
        return ignore(order, "refund already recorded");
    }
    let mut next = order.clone();
    next.refund = Some(Refund::Offline);
    quiet(next, vec![Effect::RecordRefund { offline: true }])
}

/// The deadline running in the order's current state, if it is `kind`, not cancelled, and due.
fn due_deadline(order: &Order, now: DateTime<Utc>) -> Option<&Deadline> {
    let kind = deadline_of(order.status)?;
    order
        .deadline(kind)
        .filter(|d| d.state != DeadlineState::Cancelled && d.due_at <= now)
}

fn alipay_says(
    order: &Order,
    reading: QueryReading,
    now: DateTime<Utc>,
    rules: &LifecycleRules,
) -> Transition {
    let forward_to = |state: OrderStatus| !order.is_final() && rank(state) > rank(order.status);
    match reading {
        QueryReading::Unknown { raw } => Transition {
            order: order.clone(),
            effects: vec![Effect::Alert(Alert::UnknownAlipayStatus {
                raw: raw.clone(),
            })],
            history: None,
            ignored: Some(format!(
                "order.query returned values outside the table: {raw}"
            )),
        },
        QueryReading::Unpaid if order.status == OrderStatus::AwaitingPayment => {
            ignore(order, "Alipay shows the order unpaid: nothing new")
        }
        QueryReading::Unpaid => ignore(
            order,
            format!(
                "Alipay shows unpaid but the order is {}",
                order.status.as_str()
            ),
        ),
        // No timestamp in a reading: the query time is an upper bound for when the state began.
        // A later deadline is the safe side (a too-early one would be inferred wrongly after the
        // grace period), and a timestamped fact arriving later refines it.
        QueryReading::Paid if forward_to(OrderStatus::Implementing) => advance(
            order,
            Move::to(OrderStatus::Implementing, now, ALIPAY, "order_query"),
            rules,
        ),
        QueryReading::AwaitingConfirmation if forward_to(OrderStatus::AwaitingConfirmation) => {
            let since = order.audit_passed_at.map_or(now, |at| at.min(now));
            advance(
                order,
                Move::to(
                    OrderStatus::AwaitingConfirmation,
                    since,
                    ALIPAY,
                    "order_query",
                ),
                rules,
            )
        }
        QueryReading::Completed if forward_to(OrderStatus::Completed) => {
            match due_deadline(order, now) {
                // Seed 5: not confirmed within 7 days, completed automatically.
                Some(d) if d.kind == DeadlineKind::Confirmation => advance(
                    order,
                    Move {
                        by_deadline: Some(d.kind),
                        ..Move::to(OrderStatus::Completed, d.due_at, ALIPAY, "auto_confirmed")
                    },
                    rules,
                ),
                _ => advance(
                    order,
                    Move::to(OrderStatus::Completed, now, ALIPAY, "order_query"),
                    rules,
                ),
            }
        }
        QueryReading::Cancelled { by_isv } if !order.is_final() => {
            if by_isv {
                return advance(
                    order,
                    Move::cancel(CancelReason::IsvCancelled, now, ALIPAY),
                    rules,
                );
            }
            let timeout = due_deadline(order, now).and_then(|d| match d.kind {
                DeadlineKind::Payment => Some((CancelReason::UnpaidTimeout, d)),
                DeadlineKind::Implementation => Some((CancelReason::ImplementationTimeout, d)),
                DeadlineKind::Confirmation => None,
            });
            match timeout {
                Some((reason, d)) => advance(
                    order,
                    Move {
                        by_deadline: Some(d.kind),
                        ..Move::cancel(reason, d.due_at, ALIPAY)
                    },
                    rules,
                ),
                None => advance(
                    order,
                    Move::cancel(CancelReason::MerchantRefund, now, ALIPAY),
                    rules,
                ),
            }
        }
        QueryReading::Cancelled { by_isv: false } if order.status == OrderStatus::Completed => {
            offline_refund(order)
        }
        reading => ignore(
            order,
            format!(
                "Alipay shows {reading:?} but the order is {}",
                order.status.as_str()
            ),
        ),
    }
}

fn deadline_due(order: &Order, kind: DeadlineKind, now: DateTime<Utc>) -> Transition {
    let Some(deadline) = order
        .deadline(kind)
        .filter(|_| deadline_of(order.status) == Some(kind))
    else {
        return ignore(
            order,
            format!(
                "no open {} deadline (order is {})",
                kind.as_str(),
                order.status.as_str()
            ),
        );
    };
    let query = vec![Effect::QueryAlipay {
        reason: QueryReason::DeadlineDue(kind),
    }];
    match deadline.state {
        DeadlineState::Cancelled => ignore(order, format!("{} deadline cancelled", kind.as_str())),
        DeadlineState::Pending if deadline.due_at > now => ignore(
            order,
            format!(
                "{} deadline not due until {}",
                kind.as_str(),
                deadline.due_at
            ),
        ),
        DeadlineState::Pending => {
            let mut next = order.clone();
            if let Some(d) = next.deadline_mut(kind) {
                d.state = DeadlineState::Fired;
            }
            quiet(next, query)
        }
        // Re-checked each tick until Alipay agrees or the grace period is over.
        DeadlineState::Fired => quiet(order.clone(), query),
    }
}

fn deadline_confirmed(
    order: &Order,
    kind: DeadlineKind,
    inferred: bool,
    now: DateTime<Utc>,
    rules: &LifecycleRules,
) -> Result<Transition, RuleError> {
    let Some(deadline) = order
        .deadline(kind)
        .filter(|d| deadline_of(order.status) == Some(kind) && d.state != DeadlineState::Cancelled)
    else {
        // E.g. paid at the last minute: the payment deadline was cancelled meanwhile.
        return Ok(ignore(
            order,
            format!(
                "no open {} deadline (order is {})",
                kind.as_str(),
                order.status.as_str()
            ),
        ));
    };
    if deadline.due_at > now {
        return Err(RuleError::DeadlineNotDue {
            kind,
            due_at: deadline.due_at,
        });
    }
    let until = deadline.due_at + rules.deadline_grace;
    if inferred && now < until {
        return Err(RuleError::GraceNotElapsed { kind, until });
    }
    let mv = match kind {
        DeadlineKind::Payment => {
            Move::cancel(CancelReason::UnpaidTimeout, deadline.due_at, SCHEDULER)
        }
        DeadlineKind::Implementation => Move::cancel(
            CancelReason::ImplementationTimeout,
            deadline.due_at,
            SCHEDULER,
        ),
        DeadlineKind::Confirmation => Move::to(
            OrderStatus::Completed,
            deadline.due_at,
            SCHEDULER,
            "auto_confirmed",
        ),
    };
    Ok(advance(
        order,
        Move {
            by_deadline: Some(kind),
            inferred,
            ..mv
        },
        rules,
    ))
}

fn warning_due(order: &Order, at_days: u32, now: DateTime<Utc>) -> Transition {
    let deadline = order
        .deadline(DeadlineKind::Implementation)
        .filter(|_| order.status == OrderStatus::Implementing);
    let warning = order.warnings.iter().find(|w| w.at_days == at_days);
    match (deadline, warning) {
        (Some(deadline), Some(w)) if !w.sent && w.due_at <= now => {
            let mut next = order.clone();
            for w in next.warnings.iter_mut().filter(|w| w.at_days == at_days) {
                w.sent = true;
            }
            quiet(
                next,
                vec![Effect::Alert(Alert::ImplementationDeadlineNear {
                    at_days,
                    deadline_due_at: deadline.due_at,
                })],
            )
        }
        (Some(_), Some(w)) if w.sent => {
            ignore(order, format!("{at_days}-day warning already sent"))
        }
        (Some(_), Some(w)) => ignore(
            order,
            format!("{at_days}-day warning not due until {}", w.due_at),
        ),
        _ => ignore(
            order,
            format!(
                "no {at_days}-day warning (order is {})",
                order.status.as_str()
            ),
        ),
    }
}

/// Seed 7's workflow: query the order, then terminate its service. The order's own status is
/// Alipay's to change (the merchant refunds or Alipay cancels), so it stays as it is.
fn support_terminates(
    order: &Order,
    actor: String,
    reason: String,
) -> Result<Transition, RuleError> {
    if actor.trim().is_empty() {
        return Err(RuleError::MissingSupportField("actor"));
    }
    if reason.trim().is_empty() {
        return Err(RuleError::MissingSupportField("reason"));
    }
    Ok(quiet(
        order.clone(),
        vec![
            Effect::QueryAlipay {
                reason: QueryReason::SupportTermination,
            },
            Effect::TerminateService {
                cause: TerminationCause::Support { actor, reason },
            },
        ],
    ))
}

// ---------------------------------------------------------------------------------------------
// Authorization (key auth_app_id)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthorizationStatus {
    Active,
    Superseded,
    Cancelled,
}

impl AuthorizationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Active => "active",
            AuthorizationStatus::Superseded => "superseded",
            AuthorizationStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            AuthorizationStatus::Active,
            AuthorizationStatus::Superseded,
            AuthorizationStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// The app's current grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationState {
    pub status: AuthorizationStatus,
    /// `auth_time` (epoch ms) of the grant; `None` when a cancellation arrived before any grant.
    pub auth_time_ms: Option<i64>,
    /// When the status began (the cancellation's own time for `cancelled`).
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationEvent {
    /// An authorization notification.
    Granted { auth_time_ms: i64 },
    /// `alipay.open.auth.appauth.cancelled`, with its own time.
    Cancelled { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationTransition {
    /// The app's current grant after the event.
    pub state: AuthorizationState,
    /// The grant that a newer one replaced, now `superseded`.
    pub superseded: Option<AuthorizationState>,
    pub effects: Vec<Effect>,
    pub ignored: Option<String>,
}

/// `active → superseded | cancelled`. The newest `auth_time` wins and an older or repeated grant
/// is ignored. A cancellation erases the token and ends that grant for good: a grant from before
/// the cancellation is ignored. A grant whose `auth_time` is after the cancellation is the
/// merchant authorizing again (a re-order, seed 6) and starts a new active grant.
pub fn handle_authorization(
    current: Option<&AuthorizationState>,
    event: AuthorizationEvent,
    now: DateTime<Utc>,
) -> Result<AuthorizationTransition, RuleError> {
    let unchanged = |current: &AuthorizationState, why: String| AuthorizationTransition {
        state: current.clone(),
        superseded: None,
        effects: Vec::new(),
        ignored: Some(why),
    };
    let grant =
        |auth_time_ms: i64, superseded: Option<AuthorizationState>| AuthorizationTransition {
            state: AuthorizationState {
                status: AuthorizationStatus::Active,
                auth_time_ms: Some(auth_time_ms),
                since: now,
            },
            superseded,
            effects: vec![Effect::StoreToken { auth_time_ms }],
            ignored: None,
        };
    Ok(match (current, event) {
        (None, AuthorizationEvent::Granted { auth_time_ms }) => grant(auth_time_ms, None),
        (Some(cur), AuthorizationEvent::Granted { auth_time_ms }) => match cur.status {
            AuthorizationStatus::Cancelled if auth_time_ms > cur.since.timestamp_millis() => {
                grant(auth_time_ms, None)
            }
            AuthorizationStatus::Cancelled => unchanged(
                cur,
                format!(
                    "grant of {auth_time_ms} predates the cancellation at {}",
                    cur.since
                ),
            ),
            AuthorizationStatus::Active | AuthorizationStatus::Superseded
                if cur.auth_time_ms.is_none_or(|t| auth_time_ms > t) =>
            {
                let superseded =
                    (cur.status == AuthorizationStatus::Active).then(|| AuthorizationState {
                        status: AuthorizationStatus::Superseded,
                        since: now,
                        ..cur.clone()
                    });
                grant(auth_time_ms, superseded)
            }
            _ => unchanged(
                cur,
                format!(
                    "grant of {auth_time_ms} is not newer than {:?}",
                    cur.auth_time_ms
                ),
            ),
        },
        (Some(cur), AuthorizationEvent::Cancelled { .. })
            if cur.status == AuthorizationStatus::Cancelled =>
        {
            unchanged(cur, "authorization already cancelled".into())
        }
        (cur, AuthorizationEvent::Cancelled { at }) => AuthorizationTransition {
            state: AuthorizationState {
                status: AuthorizationStatus::Cancelled,
                auth_time_ms: cur.and_then(|c| c.auth_time_ms),
                since: at,
            },
            superseded: None,
            effects: vec![
                Effect::EraseToken,
                Effect::TerminateService {
                    cause: TerminationCause::AuthorizationCancelled,
                },
            ],
            ignored: None,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Service (one mini program of one merchant, fed by orders)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationCause {
    AuthorizationCancelled,
    OrderCancelled,
    Refunded,
    ImplementationTimeout,
    Support {
        actor: String,
        reason: String,
    },
    /// The ordered period ran out with no renewal.
    Expired,
}

impl TerminationCause {
    pub fn as_str(&self) -> &'static str {
        match self {
            TerminationCause::AuthorizationCancelled => "authorization_cancelled",
            TerminationCause::OrderCancelled => "order_cancelled",
            TerminationCause::Refunded => "refunded",
            TerminationCause::ImplementationTimeout => "implementation_timeout",
            TerminationCause::Support { .. } => "support",
            TerminationCause::Expired => "expired",
        }
    }
}

impl fmt::Display for TerminationCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceStatus {
    Provisioning,
    Live,
    Terminated,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Provisioning => "provisioning",
            ServiceStatus::Live => "live",
            ServiceStatus::Terminated => "terminated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub status: ServiceStatus,
    /// `Some` exactly when terminated; the first cause stays.
    pub termination_cause: Option<TerminationCause>,
    pub since: DateTime<Utc>,
    pub open_tasks: Vec<Task>,
}

impl ServiceState {
    /// A new service, building from the template.
    pub fn provisioning(since: DateTime<Utc>) -> Self {
        ServiceState {
            status: ServiceStatus::Provisioning,
            termination_cause: None,
            since,
            open_tasks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceEvent {
    /// The merchant's version is online.
    WentLive { at: DateTime<Utc> },
    /// Terminate, from [`Effect::TerminateService`]. `authorization_active`: whether the app's
    /// authorization is still active (the shell reads it from the authorization). With cause
    /// `AuthorizationCancelled` this is also how the authorization's end reaches a service that
    /// is already terminated: it closes the merchant's task.
    Terminate {
        cause: TerminationCause,
        authorization_active: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTransition {
    pub state: ServiceState,
    pub effects: Vec<Effect>,
    pub ignored: Option<String>,
}

/// `provisioning → live → terminated(cause)`; termination is idempotent (the first cause stays).
pub fn handle_service(
    current: &ServiceState,
    event: ServiceEvent,
    now: DateTime<Utc>,
) -> Result<ServiceTransition, RuleError> {
    let unchanged = |why: String| ServiceTransition {
        state: current.clone(),
        effects: Vec::new(),
        ignored: Some(why),
    };
    Ok(match event {
        ServiceEvent::WentLive { at } if current.status == ServiceStatus::Provisioning => {
            ServiceTransition {
                state: ServiceState {
                    status: ServiceStatus::Live,
                    since: at,
                    ..current.clone()
                },
                effects: Vec::new(),
                ignored: None,
            }
        }
        ServiceEvent::WentLive { .. } => {
            unchanged(format!("service is already {}", current.status.as_str()))
        }
        ServiceEvent::Terminate { cause, .. } if current.status == ServiceStatus::Terminated => {
            let task = Task::MerchantMustCancelAuthorization;
            if cause == TerminationCause::AuthorizationCancelled
                && current.open_tasks.contains(&task)
            {
                let mut state = current.clone();
                state.open_tasks.retain(|t| *t != task);
                ServiceTransition {
                    state,
                    effects: vec![Effect::CloseTask(task)],
                    ignored: None,
                }
            } else {
                unchanged(format!(
                    "service already terminated ({})",
                    current
                        .termination_cause
                        .as_ref()
                        .map_or("unknown", |c| c.as_str())
                ))
            }
        }
        ServiceEvent::Terminate {
            cause,
            authorization_active,
        } => {
            let mut effects = vec![Effect::StopProvisioning];
            let mut open_tasks = current.open_tasks.clone();
            // An authorization-cancelled termination has no authorization left to cancel.
            if authorization_active && cause != TerminationCause::AuthorizationCancelled {
                let task = Task::MerchantMustCancelAuthorization;
                open_tasks.push(task);
                effects.push(Effect::OpenTask(task));
            }
            ServiceTransition {
                state: ServiceState {
                    status: ServiceStatus::Terminated,
                    termination_cause: Some(cause),
                    since: now,
                    open_tasks,
                },
                effects,
                ignored: None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn t0() -> DateTime<Utc> {
        at("2024-06-10T05:01:00Z")
    }

    fn days(n: i64) -> Duration {
        Duration::days(n)
    }

    fn hours(n: i64) -> Duration {
        Duration::hours(n)
    }

    fn rules() -> LifecycleRules {
        LifecycleRules::default()
    }

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
            vec![Effect::ScheduleDeadline {
                kind: DeadlineKind::Payment,
                due_at: t0() + days(3)
            }]
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
        assert_eq!(by_rule.order, by_alipay.order);
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

    #[test]
    fn seed_7_termination_with_active_authorization_opens_a_task_closed_by_appauth_cancelled() {
        let live = handle_service(
            &ServiceState::provisioning(t0()),
            ServiceEvent::WentLive { at: t0() + days(5) },
            t0() + days(5),
        )
        .unwrap()
        .state;
        assert_eq!(live.status, ServiceStatus::Live);

        let cause = TerminationCause::Support {
            actor: "alice".into(),
            reason: "agreed".into(),
        };
        let tr = handle_service(
            &live,
            ServiceEvent::Terminate {
                cause: cause.clone(),
                authorization_active: true,
            },
            t0() + days(20),
        )
        .unwrap();
        assert_eq!(tr.state.status, ServiceStatus::Terminated);
        assert_eq!(tr.state.termination_cause, Some(cause.clone()));
        assert_eq!(
            tr.effects,
            vec![
                Effect::StopProvisioning,
                Effect::OpenTask(Task::MerchantMustCancelAuthorization)
            ]
        );

        // The merchant cancels the authorization: token erased, task closed, cause unchanged.
        let grant = handle_authorization(
            None,
            AuthorizationEvent::Granted {
                auth_time_ms: t0().timestamp_millis(),
            },
            t0(),
        )
        .unwrap()
        .state;
        let auth = handle_authorization(
            Some(&grant),
            AuthorizationEvent::Cancelled {
                at: t0() + days(21),
            },
            t0() + days(21),
        )
        .unwrap();
        assert_eq!(auth.state.status, AuthorizationStatus::Cancelled);
        assert_eq!(
            auth.effects,
            vec![
                Effect::EraseToken,
                Effect::TerminateService {
                    cause: TerminationCause::AuthorizationCancelled
                }
            ]
        );

        let closed = handle_service(
            &tr.state,
            ServiceEvent::Terminate {
                cause: TerminationCause::AuthorizationCancelled,
                authorization_active: false,
            },
            t0() + days(21),
        )
        .unwrap();
        assert_eq!(
            closed.effects,
            vec![Effect::CloseTask(Task::MerchantMustCancelAuthorization)]
        );
        assert!(closed.state.open_tasks.is_empty());
        assert_eq!(closed.state.termination_cause, Some(cause));
        // And again: nothing left to do.
        let again = handle_service(
            &closed.state,
            ServiceEvent::Terminate {
                cause: TerminationCause::AuthorizationCancelled,
                authorization_active: false,
            },
            t0() + days(22),
        )
        .unwrap();
        assert!(again.ignored.is_some() && again.effects.is_empty());
    }

    #[test]
    fn seed_7_appauth_cancelled_terminates_a_live_service_without_a_task() {
        let live = ServiceState {
            status: ServiceStatus::Live,
            ..ServiceState::provisioning(t0())
        };
        let tr = handle_service(
            &live,
            ServiceEvent::Terminate {
                cause: TerminationCause::AuthorizationCancelled,
                authorization_active: true,
            },
            t0() + days(1),
        )
        .unwrap();
        assert_eq!(
            tr.state.termination_cause,
            Some(TerminationCause::AuthorizationCancelled)
        );
        assert_eq!(tr.effects, vec![Effect::StopProvisioning]);
    }

    #[test]
    fn termination_is_idempotent_and_the_first_cause_stays() {
        let s = ServiceState::provisioning(t0());
        let first = handle_service(
            &s,
            ServiceEvent::Terminate {
                cause: TerminationCause::Refunded,
                authorization_active: false,
            },
            t0() + days(1),
        )
        .unwrap();
        assert_eq!(first.effects, vec![Effect::StopProvisioning]);
        for cause in [
            TerminationCause::Refunded,
            TerminationCause::Expired,
            TerminationCause::OrderCancelled,
        ] {
            let again = handle_service(
                &first.state,
                ServiceEvent::Terminate {
                    cause,
                    authorization_active: true,
                },
                t0() + days(2),
            )
            .unwrap();
            assert_eq!(again.state, first.state);
            assert!(again.effects.is_empty() && again.ignored.is_some());
        }
        let late = handle_service(
            &first.state,
            ServiceEvent::WentLive { at: t0() + days(3) },
            t0() + days(3),
        )
        .unwrap();
        assert_eq!(late.state, first.state);
        assert!(late.ignored.is_some());
    }

    #[test]
    fn termination_causes_read_as_contract_strings() {
        let all = [
            (
                TerminationCause::AuthorizationCancelled,
                "authorization_cancelled",
            ),
            (TerminationCause::OrderCancelled, "order_cancelled"),
            (TerminationCause::Refunded, "refunded"),
            (
                TerminationCause::ImplementationTimeout,
                "implementation_timeout",
            ),
            (
                TerminationCause::Support {
                    actor: "a".into(),
                    reason: "r".into(),
                },
                "support",
            ),
            (TerminationCause::Expired, "expired"),
        ];
        for (cause, text) in all {
            assert_eq!(cause.as_str(), text);
            assert_eq!(cause.to_string(), text);
        }
        assert_eq!(ServiceStatus::Terminated.as_str(), "terminated");
        assert_eq!(
            DeadlineState::parse("pending"),
            Some(DeadlineState::Pending)
        );
        assert_eq!(
            AuthorizationStatus::parse("superseded"),
            Some(AuthorizationStatus::Superseded)
        );
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

    // ---- the order.query reading table -----------------------------------------------------------

    fn read(status: Option<&str>, items: &[&str]) -> QueryReading {
        read_order_query(status, items, &rules())
    }

    #[test]
    fn reading_row_paid() {
        for item in ["DOING", "TO_CONFIRM", "CONFIRMED", "DONE"] {
            assert_ne!(
                read(Some("MERCHANT_ORDED"), &[item]),
                QueryReading::Unpaid,
                "{item}"
            );
        }
        assert_eq!(read(Some("MERCHANT_ORDED"), &["DOING"]), QueryReading::Paid);
        assert_eq!(read(None, &["DOING"]), QueryReading::Paid);
        for status in ["MERCHANT_PAID", "PAID"] {
            assert_eq!(read(Some(status), &[]), QueryReading::Paid);
            assert_eq!(read(Some(status), &["TO_DO"]), QueryReading::Paid);
        }
        // "Any item": one paid item among ordered ones.
        assert_eq!(
            read(Some("MERCHANT_ORDED"), &["TO_DO", "DOING"]),
            QueryReading::Paid
        );
    }

    #[test]
    fn reading_row_to_confirm_is_awaiting_confirmation() {
        assert_eq!(
            read(Some("MERCHANT_ORDED"), &["TO_CONFIRM"]),
            QueryReading::AwaitingConfirmation
        );
        assert_eq!(
            read(Some("PAID"), &["DOING", "TO_CONFIRM"]),
            QueryReading::AwaitingConfirmation
        );
    }

    #[test]
    fn reading_row_confirmed_or_done_is_completed() {
        for item in ["CONFIRMED", "DONE"] {
            assert_eq!(
                read(Some("MERCHANT_ORDED"), &[item]),
                QueryReading::Completed
            );
        }
        assert_eq!(read(None, &["TO_CONFIRM", "DONE"]), QueryReading::Completed);
    }

    #[test]
    fn reading_row_merchant_cancelled() {
        for item in ["MERCHANT_CANCELLED", "MERCHANT_REJECTED"] {
            assert_eq!(
                read(Some("MERCHANT_ORDED"), &[item]),
                QueryReading::Cancelled { by_isv: false }
            );
        }
        for status in ["MERCHANT_CANCELLED", "CLOSED", "CANCELLED"] {
            assert_eq!(
                read(Some(status), &[]),
                QueryReading::Cancelled { by_isv: false }
            );
            // Cancellation beats progress.
            assert_eq!(
                read(Some(status), &["DOING"]),
                QueryReading::Cancelled { by_isv: false }
            );
        }
        assert_eq!(
            read(None, &["DONE", "MERCHANT_CANCELLED"]),
            QueryReading::Cancelled { by_isv: false }
        );
    }

    #[test]
    fn reading_row_isv_cancelled() {
        for item in ["ISV_CANCELLED", "ISV_REJECTED"] {
            assert_eq!(
                read(Some("MERCHANT_ORDED"), &[item]),
                QueryReading::Cancelled { by_isv: true }
            );
        }
        assert_eq!(
            read(Some("CLOSED"), &["ISV_REJECTED", "MERCHANT_REJECTED"]),
            QueryReading::Cancelled { by_isv: true }
        );
    }

    #[test]
    fn reading_row_ordered_with_items_to_do_is_nothing_new() {
        assert_eq!(
            read(Some("MERCHANT_ORDED"), &["TO_DO"]),
            QueryReading::Unpaid
        );
        assert_eq!(read(Some("MERCHANT_ORDED"), &[]), QueryReading::Unpaid);
        assert_eq!(read(None, &["TO_DO", "TO_DO"]), QueryReading::Unpaid);
    }

    #[test]
    fn reading_row_anything_else_is_unknown() {
        let cases: [(Option<&str>, &[&str]); 6] = [
            (Some("WAIT_PAY"), &["DOING"]),
            (Some("MERCHANT_ORDED"), &["REFUNDING"]),
            (Some("MERCHANT_ORDED"), &["DOING", "SOMETHING_NEW"]),
            (Some("merchant_orded"), &["TO_DO"]),
            (Some("MERCHANT_ORDED"), &[" DOING"]),
            (None, &[]),
        ];
        for (status, items) in cases {
            assert!(
                matches!(read(status, items), QueryReading::Unknown { .. }),
                "{status:?} {items:?}"
            );
        }
    }

    #[test]
    fn unknown_values_are_kept_verbatim() {
        let QueryReading::Unknown { raw } = read(Some("已关闭 \"x\""), &["DOING", "待确认 ", ""])
        else {
            panic!("expected unknown");
        };
        let back: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            back,
            serde_json::json!({ "status": "已关闭 \"x\"", "order_items": ["DOING", "待确认 ", ""] })
        );
        assert_eq!(
            read(None, &[]),
            QueryReading::Unknown {
                raw: r#"{"status":null,"order_items":[]}"#.into()
            }
        );
    }

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
    fn reading_sets_are_configurable() {
        let rules = LifecycleRules {
            paid_statuses: vec!["ORDER_PAID".into()],
            ordered_item_statuses: vec!["TO_DO".into(), "WAITING".into()],
            completed_item_statuses: vec!["FINISHED".into()],
            ..LifecycleRules::default()
        };
        assert_eq!(
            read_order_query(Some("ORDER_PAID"), &[], &rules),
            QueryReading::Paid
        );
        assert!(matches!(
            read_order_query(Some("PAID"), &[], &rules),
            QueryReading::Unknown { .. }
        ));
        assert_eq!(
            read_order_query(None, &["WAITING"], &rules),
            QueryReading::Unpaid
        );
        assert_eq!(
            read_order_query(None, &["FINISHED"], &rules),
            QueryReading::Completed
        );
        assert!(matches!(
            read_order_query(None, &["DONE"], &rules),
            QueryReading::Paid
        ));
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

    // ---- authorization ---------------------------------------------------------------------------

    #[test]
    fn newest_authorization_wins_and_older_is_ignored() {
        let ms = t0().timestamp_millis();
        let first =
            handle_authorization(None, AuthorizationEvent::Granted { auth_time_ms: ms }, t0())
                .unwrap();
        assert_eq!(first.state.status, AuthorizationStatus::Active);
        assert_eq!(first.effects, vec![Effect::StoreToken { auth_time_ms: ms }]);

        let newer = handle_authorization(
            Some(&first.state),
            AuthorizationEvent::Granted {
                auth_time_ms: ms + 1000,
            },
            t0() + hours(1),
        )
        .unwrap();
        assert_eq!(newer.state.auth_time_ms, Some(ms + 1000));
        assert_eq!(
            newer.effects,
            vec![Effect::StoreToken {
                auth_time_ms: ms + 1000
            }]
        );
        let old = newer.superseded.unwrap();
        assert_eq!(
            (old.status, old.auth_time_ms),
            (AuthorizationStatus::Superseded, Some(ms))
        );

        for stale in [ms, ms + 1000] {
            let tr = handle_authorization(
                Some(&newer.state),
                AuthorizationEvent::Granted {
                    auth_time_ms: stale,
                },
                t0() + hours(2),
            )
            .unwrap();
            assert_eq!(tr.state, newer.state);
            assert!(tr.effects.is_empty() && tr.ignored.is_some() && tr.superseded.is_none());
        }
    }

    #[test]
    fn authorization_cancelled_erases_the_token_and_is_final() {
        let ms = t0().timestamp_millis();
        let active =
            handle_authorization(None, AuthorizationEvent::Granted { auth_time_ms: ms }, t0())
                .unwrap()
                .state;
        let cancel_at = t0() + days(1);
        let tr = handle_authorization(
            Some(&active),
            AuthorizationEvent::Cancelled { at: cancel_at },
            cancel_at + hours(1),
        )
        .unwrap();
        assert_eq!(tr.state.status, AuthorizationStatus::Cancelled);
        assert_eq!(tr.state.since, cancel_at);
        assert!(tr.effects.contains(&Effect::EraseToken));

        let again = handle_authorization(
            Some(&tr.state),
            AuthorizationEvent::Cancelled {
                at: cancel_at + hours(1),
            },
            cancel_at + hours(2),
        )
        .unwrap();
        assert!(again.ignored.is_some() && again.effects.is_empty());
        // A grant from before the cancellation (a late or replayed notification) stays dead.
        let replay = handle_authorization(
            Some(&tr.state),
            AuthorizationEvent::Granted {
                auth_time_ms: ms + 5000,
            },
            cancel_at + hours(2),
        )
        .unwrap();
        assert_eq!(replay.state, tr.state);
        assert!(replay.ignored.is_some() && replay.effects.is_empty());
        // The merchant authorizing again afterwards (re-order) is a new grant.
        let regrant_ms = (cancel_at + days(1)).timestamp_millis();
        let regrant = handle_authorization(
            Some(&tr.state),
            AuthorizationEvent::Granted {
                auth_time_ms: regrant_ms,
            },
            cancel_at + days(1),
        )
        .unwrap();
        assert_eq!(regrant.state.status, AuthorizationStatus::Active);
        assert!(regrant.superseded.is_none());
    }

    #[test]
    fn cancellation_before_the_grant_arrives_keeps_the_grant_out() {
        let cancel_at = t0() + days(1);
        let tr = handle_authorization(
            None,
            AuthorizationEvent::Cancelled { at: cancel_at },
            cancel_at,
        )
        .unwrap();
        assert_eq!(
            (tr.state.status, tr.state.auth_time_ms),
            (AuthorizationStatus::Cancelled, None)
        );
        let late = handle_authorization(
            Some(&tr.state),
            AuthorizationEvent::Granted {
                auth_time_ms: t0().timestamp_millis(),
            },
            cancel_at + hours(1),
        )
        .unwrap();
        assert_eq!(late.state, tr.state);
        assert!(late.ignored.is_some());
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
                "{:?} {} paid={} pending={:?} warnings={:?} audit={:?}",
                o.status,
                o.status_since,
                o.paid,
                pending(o),
                o.warnings,
                o.audit_passed_at
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
}
