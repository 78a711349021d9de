//! Reading `order.query`: Alipay's raw statuses as a [`QueryReading`].

use super::{LifecycleRules, contains};

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
    ///
    /// [`handle`]: super::handle
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
/// The items decide when they are all known (Alipay publishes their values; LIFECYCLE.md
/// "Readings we trust"): an order-level `status` outside the table never blocks them, and is
/// reported by [`unread_values`] for support. An unknown item, or an unknown status with no items
/// to read, makes the whole reading `Unknown` (kept verbatim, no transition): we do not guess
/// from partial information.
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
        } else if !contains(&rules.ordered_statuses, status) && item_statuses.is_empty() {
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

/// The values of an `order.query` answer that are outside the configured table, verbatim, when
/// [`read_order_query`] decided without them (an unknown order-level `status` beside known items):
/// support is told, the reading still stands.
pub fn unread_values(
    order_status: Option<&str>,
    item_statuses: &[&str],
    rules: &LifecycleRules,
) -> Option<String> {
    let status = order_status?;
    let known = contains(&rules.cancelled_statuses, status)
        || contains(&rules.paid_statuses, status)
        || contains(&rules.ordered_statuses, status);
    (!known && !item_statuses.is_empty()).then(|| format!("order status {status:?}"))
}

#[cfg(test)]
mod tests;
