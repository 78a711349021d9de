//! The order aggregate: state, events, effects and transitions ([`place`], [`handle`]).

use chrono::{DateTime, Duration, Utc};

use super::{LifecycleRules, QueryReading, TerminationCause};
use crate::domain::order::{self, CancelReason, DeadlineKind, OrderPlaced, OrderStatus};

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

/// What a payment time was taken from (LIFECYCLE.md "Readings we trust": the item's
/// `service_effect_date`, else the notice's `order_time` for an order notified as paid, else the
/// moment a reading showed it paid, recorded as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaidAtSource {
    /// The order item's `service_effect_date` in `order.query`.
    ServiceEffectDate,
    /// The notice's `order_time`: the query the notice queued already showed the order paid.
    OrderTime,
    /// Only the moment a reading showed it paid (an upper bound).
    Reading,
    /// A payment fact with its own time ([`OrderEvent::PaymentSeen`]).
    PaymentSeen,
    /// The merchant's confirmation, which implies an earlier payment (an upper bound).
    MerchantConfirmed,
}

impl PaidAtSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PaidAtSource::ServiceEffectDate => "service_effect_date",
            PaidAtSource::OrderTime => "order_time",
            PaidAtSource::Reading => "reading",
            PaidAtSource::PaymentSeen => "payment_seen",
            PaidAtSource::MerchantConfirmed => "merchant_confirmed",
        }
    }
}

/// When the merchant paid, and what that time was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub at: DateTime<Utc>,
    pub source: PaidAtSource,
}

/// How long a transition applied by inference may still be corrected by what Alipay says.
pub fn inference_review_window() -> Duration {
    Duration::days(7)
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
    /// When the merchant paid (`paid_at`); `None` until payment is known, and for free orders.
    /// The implementation deadline and its warnings count from it.
    pub payment: Option<Payment>,
    /// When the current (final) state was reached by inference, past the grace period without
    /// Alipay's agreement: for [`inference_review_window`] after it, a reading that disagrees
    /// corrects the order (the one exception to "final states absorb everything").
    pub inferred_at: Option<DateTime<Utc>>,
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
    ///
    /// [`read_order_query`]: super::read_order_query
    AlipaySays(QueryReading),
    /// [`OrderEvent::AlipaySays`] with the payment time the answer carries (the item's
    /// `service_effect_date`, or the notice's `order_time` when the notice's own query shows the
    /// order paid): a reading that shows payment starts the implementation clock there rather
    /// than at the moment of the query.
    AlipayAnswered {
        reading: QueryReading,
        paid: Option<Payment>,
    },
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
    /// Every order notice is followed at once by a query, so payment is seen in seconds.
    OrderNotified,
}

impl QueryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryReason::DeadlineDue(DeadlineKind::Payment) => "payment_deadline_due",
            QueryReason::DeadlineDue(DeadlineKind::Implementation) => "implementation_deadline_due",
            QueryReason::DeadlineDue(DeadlineKind::Confirmation) => "confirmation_deadline_due",
            QueryReason::AuditPassed => "audit_passed",
            QueryReason::SupportTermination => "support_termination",
            QueryReason::OrderNotified => "order_notified",
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
    /// A transition we applied by inference was wrong: Alipay says otherwise, and the order now
    /// follows Alipay.
    AlipayDisagreed { inferred: String, now: OrderStatus },
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
    ///
    /// [`ServiceEvent::Terminate`]: super::ServiceEvent::Terminate
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
    /// Undo a termination with this cause: the inference that caused it was wrong.
    RestoreService {
        cause: TerminationCause,
    },
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
        payment: None,
        inferred_at: None,
    };
    let mut effects = Vec::new();
    schedule(&mut next, kind, due_at, &mut effects);
    if status == OrderStatus::Implementing {
        schedule_warnings(&mut next, rules, &mut effects);
    }
    // The notice says nothing of payment: Alipay is asked at once (LIFECYCLE.md "Readings we
    // trust"), so a paid order is seen in seconds, not at the payment deadline.
    effects.push(Effect::QueryAlipay {
        reason: QueryReason::OrderNotified,
    });
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
        OrderEvent::AlipaySays(reading) => alipay_says(order, reading, None, now, rules),
        OrderEvent::AlipayAnswered { reading, paid } => {
            alipay_says(order, reading, paid, now, rules)
        }
        OrderEvent::DeadlineDue { kind, now } => deadline_due(order, kind, now),
        OrderEvent::DeadlineConfirmed { kind, inferred } => {
            let mut t = deadline_confirmed(order, kind, inferred, now, rules)?;
            if inferred && t.history.is_some() && t.order.is_final() {
                t.order.inferred_at = Some(now);
            }
            t
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
    /// When the merchant paid, if this move shows it; a move out of `awaiting_payment` without
    /// one records its own `since` as a reading's upper bound.
    payment: Option<Payment>,
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
            payment: None,
        }
    }

    fn paid(self, payment: Option<Payment>) -> Self {
        Move { payment, ..self }
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
        next.payment = None;
        note_payment(
            &mut next,
            mv.payment.unwrap_or(Payment {
                at: mv.since,
                source: PaidAtSource::Reading,
            }),
        );
    } else if let Some(payment) = mv.payment {
        note_payment(&mut next, payment);
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

/// An earlier payment time for an order already past implementation (awaiting confirmation):
/// recorded, nothing else moves (so `paid_at` does not depend on the order facts arrive in).
/// `None` when it does not apply.
fn earlier_payment(order: &Order, payment: Payment) -> Option<Transition> {
    let applies = order.status == OrderStatus::AwaitingConfirmation
        && order.paid
        && order.payment.is_none_or(|known| payment.at < known.at);
    applies.then(|| {
        let mut next = order.clone();
        note_payment(&mut next, payment);
        quiet(next, Vec::new())
    })
}

/// Records when a paid order was paid: the earliest time we know wins (every source is an upper
/// bound of the true moment, or the moment itself).
fn note_payment(order: &mut Order, payment: Payment) {
    if order.paid && order.payment.is_none_or(|known| payment.at < known.at) {
        order.payment = Some(payment);
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
fn refine_since(
    order: &Order,
    at: DateTime<Utc>,
    payment: Option<Payment>,
    rules: &LifecycleRules,
) -> Transition {
    let mut next = order.clone();
    let mut effects = Vec::new();
    next.status_since = at;
    if let Some(payment) = payment {
        note_payment(&mut next, payment);
    }
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
    payment: Option<Payment>,
    rules: &LifecycleRules,
) -> Transition {
    // Nothing about this order happened before it was placed.
    let at = at.max(order.ordered_at);
    let payment = payment.map(|p| Payment {
        at: p.at.max(order.ordered_at),
        ..p
    });
    if order.status == state {
        if at < order.status_since {
            refine_since(
                order,
                at,
                payment.filter(|_| state == OrderStatus::Implementing),
                rules,
            )
        } else {
            ignore(
                order,
                format!("already {} since {}", state.as_str(), order.status_since),
            )
        }
    } else if order.is_final() || rank(state) < rank(order.status) {
        already(order)
    } else {
        advance(
            order,
            Move::to(state, at, ALIPAY, cause).paid(payment),
            rules,
        )
    }
}

fn payment_seen(order: &Order, at: DateTime<Utc>, rules: &LifecycleRules) -> Transition {
    let payment = Payment {
        at: at.max(order.ordered_at),
        source: PaidAtSource::PaymentSeen,
    };
    if let Some(t) = earlier_payment(order, payment) {
        return t;
    }
    fact_for(
        order,
        OrderStatus::Implementing,
        at,
        "payment_seen",
        Some(payment),
        rules,
    )
}

fn merchant_confirmed(order: &Order, at: DateTime<Utc>, rules: &LifecycleRules) -> Transition {
    fact_for(
        order,
        OrderStatus::Completed,
        at,
        "merchant_confirmed",
        Some(Payment {
            at,
            source: PaidAtSource::MerchantConfirmed,
        }),
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
            refine_since(order, at, None, rules)
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
            refine_since(order, at, None, rules)
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
    paid: Option<Payment>,
    now: DateTime<Utc>,
    rules: &LifecycleRules,
) -> Transition {
    if let Some(repaired) = repair_inference(order, &reading, paid, now, rules) {
        return repaired;
    }
    if let Some(t) = paid.and_then(|p| earlier_payment(order, p)) {
        return t;
    }
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
        // The clock starts at the payment the answer shows (the item's service_effect_date, or
        // the notice's order_time). Without one, the query time is an upper bound for when the
        // state began: a later deadline is the safe side (a too-early one would be inferred
        // wrongly after the grace period), and a timestamped fact arriving later refines it.
        QueryReading::Paid if forward_to(OrderStatus::Implementing) => {
            let since = paid.map_or(now, |p| p.at);
            advance(
                order,
                Move::to(OrderStatus::Implementing, since, ALIPAY, "order_query").paid(paid),
                rules,
            )
        }
        // Already implementing from a reading's upper bound: the payment time it now shows is
        // earlier, so the 30-day clock and its warnings move back to it.
        QueryReading::Paid
            if order.status == OrderStatus::Implementing
                && order.paid
                && paid.is_some_and(|p| p.at < order.status_since) =>
        {
            let payment = paid.expect("checked in the guard");
            refine_since(order, payment.at, Some(payment), rules)
        }
        QueryReading::AwaitingConfirmation if forward_to(OrderStatus::AwaitingConfirmation) => {
            let since = order.audit_passed_at.map_or(now, |at| at.min(now));
            advance(
                order,
                Move::to(
                    OrderStatus::AwaitingConfirmation,
                    since,
                    ALIPAY,
                    "order_query",
                )
                .paid(paid),
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
                    Move::to(OrderStatus::Completed, now, ALIPAY, "order_query").paid(paid),
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

/// The narrow exception to "a final state absorbs everything": a final state we reached by
/// inference (no answer from Alipay past the grace period) is corrected by a reading that says
/// otherwise, for [`inference_review_window`] after the inference. The order follows Alipay
/// (history cause `alipay_disagreed`), support is alerted, and a service the inference ended is
/// restored. `None` when the exception does not apply.
fn repair_inference(
    order: &Order,
    reading: &QueryReading,
    paid: Option<Payment>,
    now: DateTime<Utc>,
    rules: &LifecycleRules,
) -> Option<Transition> {
    let inferred_at = order.inferred_at?;
    if !order.is_final() || now >= inferred_at + inference_review_window() {
        return None;
    }
    let inferred = match order.cancel_reason {
        Some(reason) => format!("cancelled ({})", reason.as_str()),
        None => order.status.as_str().to_string(),
    };
    // Only a reading past the state the inference acted on disagrees with it: the inference was
    // made because Alipay showed that state unchanged (or could not be asked) past the grace
    // period, so seeing it unchanged again is no news. An unpaid timeout is contradicted by any
    // payment, an implementation timeout by the order awaiting confirmation or completed, an
    // auto-confirmation by a cancellation.
    let disagrees = match (order.status, order.cancel_reason, reading) {
        (
            OrderStatus::Cancelled,
            Some(CancelReason::UnpaidTimeout),
            QueryReading::Paid | QueryReading::AwaitingConfirmation | QueryReading::Completed,
        )
        | (
            OrderStatus::Cancelled,
            Some(CancelReason::ImplementationTimeout),
            QueryReading::AwaitingConfirmation | QueryReading::Completed,
        )
        | (OrderStatus::Completed, _, QueryReading::Cancelled { .. }) => true,
        _ => false,
    };
    if !disagrees {
        return None;
    }
    let mut next = order.clone();
    let mut effects = Vec::new();
    next.inferred_at = None;
    match (order.status, reading) {
        (
            OrderStatus::Cancelled,
            QueryReading::Paid | QueryReading::AwaitingConfirmation | QueryReading::Completed,
        ) => {
            // The inferred cancellation was wrong: no refund happened, nothing timed out.
            next.cancel_reason = None;
            next.refund = None;
            match order.cancel_reason {
                // Nothing was provisioned before payment, so nothing was ended.
                Some(CancelReason::UnpaidTimeout) => {
                    next.paid = true;
                    let payment = paid.unwrap_or(Payment {
                        at: now,
                        source: PaidAtSource::Reading,
                    });
                    next.payment = None;
                    note_payment(&mut next, payment);
                }
                Some(CancelReason::ImplementationTimeout) => effects.push(Effect::RestoreService {
                    cause: TerminationCause::ImplementationTimeout,
                }),
                Some(CancelReason::MerchantRefund | CancelReason::IsvCancelled) | None => {}
            }
            let (to, since) = match reading {
                QueryReading::Paid => (
                    OrderStatus::Implementing,
                    next.payment.map_or(now, |p| p.at),
                ),
                QueryReading::AwaitingConfirmation => (OrderStatus::AwaitingConfirmation, now),
                _ => (OrderStatus::Completed, now),
            };
            next.status = to;
            next.status_since = since;
            match to {
                OrderStatus::Implementing => {
                    let kind = DeadlineKind::Implementation;
                    schedule(&mut next, kind, since + kind.period(), &mut effects);
                    schedule_warnings(&mut next, rules, &mut effects);
                }
                OrderStatus::AwaitingConfirmation => {
                    let kind = DeadlineKind::Confirmation;
                    schedule(&mut next, kind, since + kind.period(), &mut effects);
                }
                OrderStatus::AwaitingPayment | OrderStatus::Completed | OrderStatus::Cancelled => {}
            }
        }
        // An inferred auto-confirmation, but the merchant had the order refunded in time.
        (OrderStatus::Completed, QueryReading::Cancelled { by_isv }) => {
            let reason = if *by_isv {
                CancelReason::IsvCancelled
            } else {
                CancelReason::MerchantRefund
            };
            next.status = OrderStatus::Cancelled;
            next.status_since = now;
            next.cancel_reason = Some(reason);
            cancellation_effects(
                &mut next,
                OrderStatus::AwaitingConfirmation,
                reason,
                &mut effects,
            );
        }
        _ => return None,
    }
    effects.push(Effect::Alert(Alert::AlipayDisagreed {
        inferred,
        now: next.status,
    }));
    Some(Transition {
        history: Some(HistoryEntry {
            from: Some(order.status),
            to: next.status,
            actor: ALIPAY.into(),
            cause: "alipay_disagreed",
            reason: None,
            inferred: false,
        }),
        order: next,
        effects,
        ignored: None,
    })
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

#[cfg(test)]
mod tests;
