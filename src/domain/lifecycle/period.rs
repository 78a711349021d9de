//! Service periods (LIFECYCLE.md "Service periods"): each paid order of a mini program adds a
//! period `[starts_at, ends_at)`; the service's status derives from its periods and its build.
//!
//! - **Getters**: [`Period::remains`] (the period still feeds the service at `now`),
//!   [`last_end`] (when the service runs out unless renewed).
//! - **`handle_*`**: [`handle_period`] applies one [`PeriodEvent`] to an order's period.
//! - **Deriving**: [`derive_service`] is the service's status from its periods, whether its build
//!   is online, and `now`.
//!
//! Facts about one order's period are absorbing once closed: a refund seen before the payment
//! leaves the period refunded when the payment shows up, so the outcome depends on the set of
//! facts, not on the order they arrived in (see `any_order_of_period_events_ends_in_the_same_state`).

use chrono::{DateTime, Duration, Utc};

use super::{ServiceStatus, TerminationCause};

/// How a period stands. `ended` is reached by time alone (the period ran out); `refunded` and
/// `cancelled` close it early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodState {
    Active,
    /// Ran out: `ends_at` passed.
    Ended,
    /// The order was refunded (by the merchant, or automatically on the implementation timeout).
    Refunded,
    /// The order was cancelled without a refund, or the service was ended by support or by the
    /// merchant's authorization cancellation.
    Cancelled,
}

impl PeriodState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodState::Active => "active",
            PeriodState::Ended => "ended",
            PeriodState::Refunded => "refunded",
            PeriodState::Cancelled => "cancelled",
        }
    }

    /// Closed for good: later facts about the order do not reopen it.
    pub fn is_closed(self) -> bool {
        match self {
            PeriodState::Active => false,
            PeriodState::Ended | PeriodState::Refunded | PeriodState::Cancelled => true,
        }
    }
}

/// One paid order's share of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub commodity_order_id: String,
    /// `None` while only a closing fact is known (a refund read before the payment).
    pub starts_at: Option<DateTime<Utc>>,
    /// `None`: no end is known (no item dates and no `period_day`); such a period never
    /// expires by itself.
    pub ends_at: Option<DateTime<Utc>>,
    pub state: PeriodState,
    /// When it was refunded or cancelled (the termination cause of the last one to close wins).
    pub closed_at: Option<DateTime<Utc>>,
}

impl Period {
    /// Still feeding the service at `now`: active and not run out. A renewal's period that starts
    /// later counts too: the service runs on into it.
    pub fn remains(&self, now: DateTime<Utc>) -> bool {
        self.state == PeriodState::Active
            && self.starts_at.is_some()
            && self.ends_at.is_none_or(|end| now < end)
    }

    /// The state to show and store at `now`: an active period past its end has ended.
    pub fn state_at(&self, now: DateTime<Utc>) -> PeriodState {
        match self.state {
            PeriodState::Active if self.ends_at.is_some_and(|end| now >= end) => PeriodState::Ended,
            state => state,
        }
    }
}

/// Where a period's dates come from: `order.query`'s item dates (Beijing time, already parsed),
/// else the payment and the notice's `period_day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodDates {
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

impl PeriodDates {
    /// The item dates when both read, else `paid_at` (or, for a renewal, the end of what the
    /// service already runs on, whichever is later) plus `period_day` days. A `period_day` of
    /// zero or less says nothing about the length: no end.
    pub fn choose(
        item_dates: Option<(DateTime<Utc>, DateTime<Utc>)>,
        paid_at: DateTime<Utc>,
        runs_until: Option<DateTime<Utc>>,
        period_day: Option<i32>,
    ) -> PeriodDates {
        if let Some((starts_at, ends_at)) = item_dates.filter(|(s, e)| s < e) {
            return PeriodDates {
                starts_at,
                ends_at: Some(ends_at),
            };
        }
        let starts_at = runs_until.map_or(paid_at, |until| until.max(paid_at));
        PeriodDates {
            starts_at,
            ends_at: period_day
                .filter(|d| *d > 0)
                .map(|d| starts_at + Duration::days(i64::from(d))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeriodEvent {
    /// The order is paid (or free): its period opens with these dates. Repeated, it refines the
    /// dates of a period that is still active (`order.query` told us the item dates).
    Paid(PeriodDates),
    /// The order was refunded or cancelled (`Refunded` or `Cancelled`), or the service ended.
    Closed {
        state: PeriodState,
        at: DateTime<Utc>,
    },
    /// The close came from an inference that Alipay has since contradicted (the order was not
    /// refunded or cancelled after all): the period runs again with its dates. A period that
    /// ran out stays ended.
    Restored,
}

/// Applies one event to an order's period (`None`: nothing known yet).
pub fn handle_period(current: Option<&Period>, order: &str, event: PeriodEvent) -> Period {
    let base = current.cloned().unwrap_or(Period {
        commodity_order_id: order.to_string(),
        starts_at: None,
        ends_at: None,
        state: PeriodState::Active,
        closed_at: None,
    });
    match event {
        PeriodEvent::Paid(dates) => Period {
            starts_at: Some(dates.starts_at),
            ends_at: dates.ends_at,
            ..base
        },
        // The first close stays (its state and time), so repeats change nothing.
        PeriodEvent::Closed { .. } if base.state.is_closed() => base,
        PeriodEvent::Closed { state, at } => Period {
            state,
            closed_at: Some(at),
            ..base
        },
        PeriodEvent::Restored => match base.state {
            PeriodState::Refunded | PeriodState::Cancelled => Period {
                state: PeriodState::Active,
                closed_at: None,
                ..base
            },
            PeriodState::Active | PeriodState::Ended => base,
        },
    }
}

/// The latest end among the periods that remain at `now` (`None` when none remains or one of
/// them has no end).
pub fn last_end(periods: &[Period], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let remaining: Vec<&Period> = periods.iter().filter(|p| p.remains(now)).collect();
    if remaining.iter().any(|p| p.ends_at.is_none()) {
        return None;
    }
    remaining.iter().filter_map(|p| p.ends_at).max()
}

/// The service as its periods make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedService {
    pub status: ServiceStatus,
    pub termination_cause: Option<TerminationCause>,
}

/// The service's status from its periods: `live` while some period remains and its build is
/// online, `provisioning` while some period remains and it is not; with none remaining, `expired`
/// when the last period to end ran out, else `terminated` with the cause of the last one closed
/// (`refunded` or `order_cancelled`). `None` when there is no period at all: the periods say
/// nothing (the service's own state stands).
pub fn derive_service(
    periods: &[Period],
    build_online: bool,
    now: DateTime<Utc>,
) -> Option<DerivedService> {
    let known: Vec<&Period> = periods.iter().filter(|p| p.starts_at.is_some()).collect();
    if known.is_empty() {
        return None;
    }
    if known.iter().any(|p| p.remains(now)) {
        let status = if build_online {
            ServiceStatus::Live
        } else {
            ServiceStatus::Provisioning
        };
        return Some(DerivedService {
            status,
            termination_cause: None,
        });
    }
    // Which period ended last decides how the service ended; ties by order id so that the
    // answer never depends on the order the periods were listed in.
    let ended_at = |p: &Period| match p.state_at(now) {
        PeriodState::Ended => p.ends_at,
        PeriodState::Active | PeriodState::Refunded | PeriodState::Cancelled => p.closed_at,
    };
    let last = known
        .iter()
        .max_by(|a, b| {
            (ended_at(a), &a.commodity_order_id).cmp(&(ended_at(b), &b.commodity_order_id))
        })
        .map(|p| p.state_at(now));
    let (status, cause) = match last {
        Some(PeriodState::Refunded) => (ServiceStatus::Terminated, TerminationCause::Refunded),
        Some(PeriodState::Cancelled) => {
            (ServiceStatus::Terminated, TerminationCause::OrderCancelled)
        }
        Some(PeriodState::Ended) | Some(PeriodState::Active) | None => {
            (ServiceStatus::Expired, TerminationCause::Expired)
        }
    };
    Some(DerivedService {
        status,
        termination_cause: Some(cause),
    })
}

#[cfg(test)]
mod tests;
