//! The marketplace order (LIFECYCLE.md "Our model"): its states, deadlines and first state.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    AwaitingPayment,
    Implementing,
    AwaitingConfirmation,
    Completed,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::AwaitingPayment => "awaiting_payment",
            OrderStatus::Implementing => "implementing",
            OrderStatus::AwaitingConfirmation => "awaiting_confirmation",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            OrderStatus::AwaitingPayment,
            OrderStatus::Implementing,
            OrderStatus::AwaitingConfirmation,
            OrderStatus::Completed,
            OrderStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    UnpaidTimeout,
    ImplementationTimeout,
    MerchantRefund,
    IsvCancelled,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::UnpaidTimeout => "unpaid_timeout",
            CancelReason::ImplementationTimeout => "implementation_timeout",
            CancelReason::MerchantRefund => "merchant_refund",
            CancelReason::IsvCancelled => "isv_cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineKind {
    /// 3 days to pay, from the order time.
    Payment,
    /// 30 days to reach 待商家确认, from the start of implementation.
    Implementation,
    /// 7 days for the merchant to confirm.
    Confirmation,
}

impl DeadlineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Payment => "payment",
            DeadlineKind::Implementation => "implementation",
            DeadlineKind::Confirmation => "confirmation",
        }
    }

    pub fn period(self) -> Duration {
        match self {
            DeadlineKind::Payment => Duration::days(3),
            DeadlineKind::Implementation => Duration::days(30),
            DeadlineKind::Confirmation => Duration::days(7),
        }
    }
}

/// What an order notification tells us, in domain terms.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPlaced {
    pub ordered_at: DateTime<Utc>,
    /// `total_price` as sent; `None` when absent.
    pub total_price: Option<String>,
}

/// The order's first state and its deadline. A free order needs no payment and goes straight into
/// implementation; a priced one waits for payment (we cannot see payment in the notification; the
/// payment deadline's `order.query` will). A price we cannot read is treated as priced: the
/// payment deadline then asks Alipay rather than assume the order is free.
pub fn first_state(event: &OrderPlaced) -> (OrderStatus, DeadlineKind, DateTime<Utc>) {
    let free = event.total_price.as_deref().and_then(price_in_cents) == Some(0);
    let (status, kind) = if free {
        (OrderStatus::Implementing, DeadlineKind::Implementation)
    } else {
        (OrderStatus::AwaitingPayment, DeadlineKind::Payment)
    };
    // Deadlines run from the event's own timestamp, so a late notification gets the right one.
    (status, kind, event.ordered_at + kind.period())
}

/// Reads a yuan amount (`"99.00"`, `"0.01"`, `"5"`) as cents.
pub fn price_in_cents(text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn seed_1_priced_order_waits_three_days_for_payment() {
        let (status, kind, due) = first_state(&OrderPlaced {
            ordered_at: at("2024-06-10T05:01:00Z"),
            total_price: Some("99.00".into()),
        });
        assert_eq!(
            (status, kind),
            (OrderStatus::AwaitingPayment, DeadlineKind::Payment)
        );
        assert_eq!(due, at("2024-06-13T05:01:00Z"));
    }

    #[test]
    fn seed_1_free_order_goes_straight_to_implementation_for_thirty_days() {
        let (status, kind, due) = first_state(&OrderPlaced {
            ordered_at: at("2024-06-10T05:01:00Z"),
            total_price: Some("0.00".into()),
        });
        assert_eq!(
            (status, kind),
            (OrderStatus::Implementing, DeadlineKind::Implementation)
        );
        assert_eq!(due, at("2024-07-10T05:01:00Z"));
    }

    #[test]
    fn unreadable_or_missing_price_is_treated_as_priced() {
        for price in [None, Some("abc".to_string()), Some("1.234".to_string())] {
            let (status, ..) = first_state(&OrderPlaced {
                ordered_at: at("2024-06-10T05:01:00Z"),
                total_price: price,
            });
            assert_eq!(status, OrderStatus::AwaitingPayment);
        }
    }

    #[test]
    fn prices_read_as_cents() {
        assert_eq!(price_in_cents("99.00"), Some(9900));
        assert_eq!(price_in_cents("0.01"), Some(1));
        assert_eq!(price_in_cents("5"), Some(500));
        assert_eq!(price_in_cents("5.5"), Some(550));
        assert_eq!(price_in_cents("-1"), None);
        assert_eq!(price_in_cents(""), None);
    }
}
