use super::*;
use crate::domain::lifecycle::test_support::rules;

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
    // An unknown order-level status beside known items no longer blanks the reading (LIFECYCLE.md
    // "Readings we trust"): see `known_items_decide_beside_an_unknown_order_status`.
    let cases: [(Option<&str>, &[&str]); 6] = [
        (Some("WAIT_PAY"), &[]),
        (Some("MERCHANT_ORDED"), &["REFUNDING"]),
        (Some("MERCHANT_ORDED"), &["DOING", "SOMETHING_NEW"]),
        (Some("merchant_orded"), &[]),
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

// ---- readings we trust (issue 12) -------------------------------------------------------------

#[test]
fn known_items_decide_beside_an_unknown_order_status() {
    let r = rules();
    assert_eq!(
        read(Some("SOMETHING_NEW"), &["TO_CONFIRM"]),
        QueryReading::AwaitingConfirmation
    );
    assert_eq!(read(Some("SOMETHING_NEW"), &["DOING"]), QueryReading::Paid);
    assert_eq!(read(Some("WAIT_PAY"), &["DOING"]), QueryReading::Paid);
    assert_eq!(
        read(Some("merchant_orded"), &["TO_DO"]),
        QueryReading::Unpaid
    );
    assert_eq!(
        read(Some("SOMETHING_NEW"), &["MERCHANT_CANCELLED"]),
        QueryReading::Cancelled { by_isv: false }
    );
    assert_eq!(
        unread_values(Some("SOMETHING_NEW"), &["TO_CONFIRM"], &r),
        Some("order status \"SOMETHING_NEW\"".into())
    );
    assert_eq!(
        unread_values(Some("MERCHANT_ORDED"), &["TO_CONFIRM"], &r),
        None
    );
}

#[test]
fn an_unknown_status_with_nothing_else_is_unknown() {
    assert!(matches!(
        read(Some("SOMETHING_NEW"), &[]),
        QueryReading::Unknown { .. }
    ));
    // An unknown item is never guessed around, whatever the status says.
    assert!(matches!(
        read(Some("MERCHANT_PAID"), &["DOING", "NEW_ITEM_STATE"]),
        QueryReading::Unknown { .. }
    ));
}
