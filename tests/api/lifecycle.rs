//! The marketplace lifecycle end to end through the service, with the clock moved by hand and a
//! local Alipay answering `order.query`: every path of LIFECYCLE.md.

use crate::both_backends;
use crate::common::fake_alipay::Reply;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use chrono::Duration;
use serde_json::Value;

const MINI_APP: &str = "2021004199990002";

/// The notice arrives and is applied, and the scheduler's next tick runs the `order.query` it
/// queued (while Alipay still shows the order as just ordered, unless the test said otherwise).
async fn place(app: &TestApp, id: &str, price: &str) {
    let key = common::platform_private_key();
    let body = common::order_notification(&key, id, &format!("n-{id}"), price);
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;
    app.tick().await;
}

fn order_queries(app: &TestApp) -> usize {
    app.alipay
        .calls()
        .iter()
        .filter(|c| c.method == "alipay.open.servicemarket.order.query")
        .count()
}

async fn order(app: &TestApp, id: &str) -> Value {
    let (status, order) = app.admin_get(&format!("/admin/api/orders/{id}")).await;
    assert_eq!(status, 200, "{order}");
    order
}

fn last_history(order: &Value) -> Value {
    order["history"].as_array().unwrap().last().unwrap().clone()
}

fn history_count(order: &Value) -> usize {
    order["history"].as_array().unwrap().len()
}

/// Order time is 2024-06-10 05:01 UTC; the test clock starts at 05:30 that day.
fn days(n: i64) -> Duration {
    Duration::days(n)
}

async fn unpaid_order_is_cancelled_after_three_days(app: TestApp) {
    place(&app, "U1", "9.90").await;
    assert_eq!(order(&app, "U1").await["status"], "awaiting_payment");
    app.tick().await;
    assert_eq!(
        order(&app, "U1").await["status"],
        "awaiting_payment",
        "nothing is due yet"
    );
    // Due; Alipay still shows it ordered and unpaid: no change until the grace period passes.
    app.clock.advance(days(3));
    app.tick().await;
    assert_eq!(order(&app, "U1").await["status"], "awaiting_payment");
    // Once when the notice arrived, once more before acting on the deadline.
    assert_eq!(order_queries(&app), 2, "Alipay is asked before acting");
    app.clock.advance(Duration::hours(7));
    app.tick().await;
    let o = order(&app, "U1").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("unpaid_timeout")),
        "{o}"
    );
    let h = last_history(&o);
    assert_eq!(
        (h["actor"].as_str(), h["inferred"].as_bool()),
        (Some("scheduler"), Some(true)),
        "{h}"
    );
    app.stop().await;
}
both_backends!(
    unpaid_order_is_cancelled_after_three_days,
    unpaid_order_is_cancelled_after_three_days
);

async fn alipay_cancelling_an_unpaid_order_is_not_inferred(app: TestApp) {
    place(&app, "U2", "9.90").await;
    app.alipay
        .set_order("U2", "CLOSED", &["MERCHANT_CANCELLED"]);
    app.clock.advance(days(3));
    app.tick().await;
    let o = order(&app, "U2").await;
    assert_eq!(o["cancel_reason"], "unpaid_timeout", "{o}");
    assert_eq!(last_history(&o)["inferred"], false);
    app.stop().await;
}
both_backends!(
    alipay_cancelling_an_unpaid_order_is_not_inferred,
    alipay_cancelling_an_unpaid_order_is_not_inferred
);

async fn paid_at_the_last_minute_stays_alive(app: TestApp) {
    place(&app, "P1", "9.90").await;
    app.clock.advance(days(3));
    app.alipay.set_order("P1", "MERCHANT_PAID", &["DOING"]);
    app.tick().await;
    app.clock.advance(days(1));
    app.tick().await;
    let o = order(&app, "P1").await;
    assert_eq!(o["status"], "implementing", "{o}");
    let kinds: Vec<(&str, &str)> = o["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("payment", "cancelled")), "{kinds:?}");
    assert!(kinds.contains(&("implementation", "pending")), "{kinds:?}");
    app.stop().await;
}
both_backends!(
    paid_at_the_last_minute_stays_alive,
    paid_at_the_last_minute_stays_alive
);

async fn implementation_times_out_at_thirty_days_with_warnings(app: TestApp) {
    place(&app, "I1", "0.00").await;
    assert_eq!(order(&app, "I1").await["status"], "implementing");
    app.clock.advance(days(20));
    app.tick().await;
    app.clock.advance(days(7));
    app.tick().await;
    let o = order(&app, "I1").await;
    let warnings: Vec<&Value> = o["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["cause"] == "implementation_warning")
        .collect();
    assert_eq!(warnings.len(), 2, "warnings at 20 and 27 days: {o}");
    let alerts = app.alipay.alerts();
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a["kind"] == "implementation_deadline_warning")
            .count(),
        2,
        "{alerts:?}"
    );
    // Day 30: Alipay shows the order cancelled by the timeout.
    app.alipay
        .set_order("I1", "CLOSED", &["MERCHANT_CANCELLED"]);
    app.clock.advance(days(3));
    app.tick().await;
    let o = order(&app, "I1").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("implementation_timeout")),
        "{o}"
    );
    assert_eq!(o["service"]["status"], "terminated", "{o}");
    assert_eq!(o["service"]["termination_cause"], "implementation_timeout");
    app.stop().await;
}
both_backends!(
    implementation_times_out_at_thirty_days_with_warnings,
    implementation_times_out_at_thirty_days_with_warnings
);

fn audit_passed(notify_id: &str, at_ms: i64) -> String {
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id.to_string()),
        ("msg_method", "alipay.open.mini.version.audit.passed".into()),
        ("app_id", common::APP_ID.into()),
        ("version", "1.1".into()),
        ("charset", "UTF-8".into()),
        ("sign_type", "RSA2".into()),
        ("utc_timestamp", at_ms.to_string()),
        (
            "biz_content",
            format!("{{\"mini_app_id\":\"{MINI_APP}\",\"mini_app_version\":\"0.0.1\"}}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

async fn audit_passed_then_confirmation_completes_after_seven_days(app: TestApp) {
    place(&app, "A1", "0.00").await;
    app.clock.advance(days(5));
    let at = app.clock_now_ms();
    assert_eq!(
        app.post_notify(audit_passed("n-audit-1", at)).await.1,
        "success"
    );
    app.run_pending_jobs().await;
    assert_eq!(
        order(&app, "A1").await["status"],
        "implementing",
        "moves only once Alipay agrees"
    );
    app.alipay.set_order("A1", "MERCHANT_PAID", &["TO_CONFIRM"]);
    app.tick().await;
    let o = order(&app, "A1").await;
    assert_eq!(o["status"], "awaiting_confirmation", "{o}");
    // Seven days without the merchant confirming: completed automatically.
    app.clock.advance(days(7));
    app.tick().await;
    app.clock.advance(Duration::hours(7));
    app.tick().await;
    let o = order(&app, "A1").await;
    assert_eq!(o["status"], "completed", "{o}");
    assert_eq!(last_history(&o)["cause"], "auto_confirmed");
    app.stop().await;
}
both_backends!(
    audit_passed_then_confirmation_completes_after_seven_days,
    audit_passed_then_confirmation_completes_after_seven_days
);

async fn refunds_found_by_reconciliation(app: TestApp) {
    // During implementation.
    place(&app, "R1", "9.90").await;
    app.alipay.set_order("R1", "MERCHANT_PAID", &["DOING"]);
    let (status, o) = app.admin_post("/admin/api/orders/R1/reconcile", "").await;
    assert_eq!(
        (status, o["status"].as_str()),
        (200, Some("implementing")),
        "{o}"
    );
    app.alipay
        .set_order("R1", "MERCHANT_CANCELLED", &["MERCHANT_CANCELLED"]);
    let (_, o) = app.admin_post("/admin/api/orders/R1/reconcile", "").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("merchant_refund")),
        "{o}"
    );
    assert_eq!(o["service"]["termination_cause"], "refunded");
    // Each reconciliation's reading is kept with the order.
    assert_eq!(o["alipay_reading"], "Cancelled { by_isv: false }", "{o}");
    assert!(o["reconciled_at"].is_string(), "{o}");
    assert_eq!(o["refund"], "automatic");
    app.stop().await;
}
both_backends!(
    refunds_found_by_reconciliation,
    refunds_found_by_reconciliation
);

async fn refund_during_confirmation(app: TestApp) {
    place(&app, "R2", "9.90").await;
    app.alipay.set_order("R2", "MERCHANT_PAID", &["TO_CONFIRM"]);
    let (_, o) = app.admin_post("/admin/api/orders/R2/reconcile", "").await;
    assert_eq!(o["status"], "awaiting_confirmation", "{o}");
    app.alipay
        .set_order("R2", "MERCHANT_CANCELLED", &["MERCHANT_CANCELLED"]);
    let (_, o) = app.admin_post("/admin/api/orders/R2/reconcile", "").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("merchant_refund")),
        "{o}"
    );
    app.stop().await;
}
both_backends!(refund_during_confirmation, refund_during_confirmation);

async fn support_termination_then_appauth_cancelled(app: TestApp) {
    app.grant_merchant_authorization().await;
    place(&app, "S1", "0.00").await;
    let (status, err) = app.admin_post("/admin/api/orders/S1/terminate", "{}").await;
    assert_eq!(
        (status, err["error"].as_str(), err["field"].as_str()),
        (422, Some("missing_field"), Some("reason")),
        "{err}"
    );
    // The actor is never taken from the body: the admin API acts as `api`.
    let (status, err) = app
        .admin_post(
            "/admin/api/orders/S1/terminate",
            r#"{"reason":"merchant asked to stop","actor":"alipay"}"#,
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str(), err["field"].as_str()),
        (400, Some("invalid_field"), Some("actor")),
        "{err}"
    );
    let (status, o) = app
        .admin_post(
            "/admin/api/orders/S1/terminate",
            r#"{"reason":"merchant asked to stop"}"#,
        )
        .await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["service"]["status"], "terminated");
    assert_eq!(o["service"]["termination_cause"], "support");
    let h = last_history(&o);
    assert_eq!(
        (h["actor"].as_str(), h["reason"].as_str()),
        (Some("api"), Some("merchant asked to stop")),
        "{h}"
    );
    // The merchant still authorizes us: support must guide them to cancel it.
    assert_eq!(
        o["open_tasks"],
        serde_json::json!(["merchant_must_cancel_authorization"])
    );
    let before = history_count(&o);
    // Terminating again changes nothing.
    let (_, o) = app
        .admin_post("/admin/api/orders/S1/terminate", r#"{"reason":"again"}"#)
        .await;
    assert_eq!(history_count(&o), before);

    let cancelled = common::vectors("notifications.jsonl")
        .into_iter()
        .find(|v| v["id"] == "N001")
        .unwrap();
    assert_eq!(
        app.post_notify(cancelled["body"].as_str().unwrap()).await.1,
        "success"
    );
    app.run_pending_jobs().await;
    let (_, auth) = app
        .admin_get(&format!("/admin/api/authorizations/{MINI_APP}"))
        .await;
    assert_eq!(auth["status"], "cancelled", "{auth}");
    let o = order(&app, "S1").await;
    assert_eq!(o["open_tasks"], serde_json::json!([]), "{o}");
    // The cancellation is in the timeline, though the service had ended already.
    let h = last_history(&o);
    assert_eq!(
        (h["actor"].as_str(), h["cause"].as_str()),
        (Some("alipay"), Some("authorization_cancelled")),
        "{h}"
    );
    // The token is erased, not only hidden.
    let mut conn = app.services.pool.get().unwrap();
    assert_eq!(
        isv_lifecycle::store::authorizations::sealed_token(&mut conn, MINI_APP).unwrap(),
        None
    );
    app.stop().await;
}
both_backends!(
    support_termination_then_appauth_cancelled,
    support_termination_then_appauth_cancelled
);

async fn alipay_faults_never_lose_or_double_a_transition(app: TestApp) {
    place(&app, "F1", "9.90").await;
    app.alipay
        .set_order("F1", "CLOSED", &["MERCHANT_CANCELLED"]);
    app.clock.advance(days(3));
    // Three 5xx exhaust the client's attempts: nothing changes, the deadline stays open.
    app.alipay
        .script([Reply::Http(502), Reply::Http(502), Reply::Http(502)]);
    let report = app.tick().await;
    assert_eq!(report.transitions, 0);
    assert_eq!(order(&app, "F1").await["status"], "awaiting_payment");
    // 20000 three times (Alipay: "unknown, retry later"): still nothing.
    app.clock.advance(Duration::minutes(1));
    let unavailable = Reply::Error {
        code: "20000",
        sub_code: "isp.unknow-error",
    };
    app.alipay
        .script([unavailable.clone(), unavailable.clone(), unavailable]);
    app.tick().await;
    assert_eq!(order(&app, "F1").await["status"], "awaiting_payment");
    // An answer whose signature does not verify is not data, even though it says "cancelled":
    // a transient failure, retried by the client (three attempts), and nothing changes.
    app.clock.advance(Duration::minutes(1));
    app.alipay.script([
        Reply::BadSignature,
        Reply::BadSignature,
        Reply::BadSignature,
    ]);
    let report = app.tick().await;
    assert_eq!(report.transitions, 0);
    assert_eq!(order(&app, "F1").await["status"], "awaiting_payment");
    // Alipay answers: exactly one transition, however many ticks follow.
    app.clock.advance(Duration::minutes(1));
    app.tick().await;
    app.clock.advance(Duration::hours(8));
    app.tick().await;
    app.tick().await;
    let o = order(&app, "F1").await;
    assert_eq!(o["cancel_reason"], "unpaid_timeout", "{o}");
    let cancellations = o["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["to_status"] == "cancelled")
        .count();
    assert_eq!(cancellations, 1, "{o}");
    app.stop().await;
}
both_backends!(
    alipay_faults_never_lose_or_double_a_transition,
    alipay_faults_never_lose_or_double_a_transition
);

/// A timed-out `order.query` changes nothing; the next answer moves the order once. (The one
/// test that waits on the wall clock: a 1 s client timeout, which is what it tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_order_query_changes_nothing() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.alipay.timeout_seconds = 1;
        s.alipay.max_attempts = 1;
    })
    .await;
    place(&app, "T1", "9.90").await;
    app.alipay
        .set_order("T1", "CLOSED", &["MERCHANT_CANCELLED"]);
    app.clock.advance(days(3));
    app.alipay.script([Reply::Delay(2_500)]);
    let report = app.tick().await;
    assert_eq!((report.transitions, report.errors), (0, 1), "{report:?}");
    assert_eq!(order(&app, "T1").await["status"], "awaiting_payment");
    app.clock.advance(Duration::minutes(1));
    app.tick().await;
    app.tick().await;
    let o = order(&app, "T1").await;
    assert_eq!(o["cancel_reason"], "unpaid_timeout", "{o}");
    assert_eq!(
        o["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["to_status"] == "cancelled")
            .count(),
        1
    );
    app.stop().await;
}

/// Issue 12's wrong refund: an order 31 days into implementation whose item Alipay shows
/// `TO_CONFIRM` beside an order-level status we do not know moves to awaiting confirmation; it is
/// not cancelled by inference. Support hears of the unknown value.
async fn known_items_decide_beside_an_unknown_order_status(app: TestApp) {
    place(&app, "K1", "0.00").await;
    assert_eq!(order(&app, "K1").await["status"], "implementing");
    app.alipay.set_order("K1", "SOMETHING_NEW", &["TO_CONFIRM"]);
    app.clock.advance(days(31));
    app.tick().await;
    app.clock.advance(Duration::hours(7));
    app.tick().await;
    let o = order(&app, "K1").await;
    assert_eq!(o["status"], "awaiting_confirmation", "{o}");
    assert!(
        app.alipay
            .alerts()
            .iter()
            .any(|a| a["kind"] == "unknown_alipay_status" && a["subject"] == "K1"),
        "{:?}",
        app.alipay.alerts()
    );
    app.stop().await;
}
both_backends!(
    known_items_decide_beside_an_unknown_order_status,
    known_items_decide_beside_an_unknown_order_status
);

/// An answer with nothing we can read never leads to an inferred cancellation: past the deadline
/// and the grace period, the order stays where it is and is looked at again.
async fn an_unreadable_answer_never_cancels_by_inference(app: TestApp) {
    place(&app, "K2", "0.00").await;
    app.alipay.set_order("K2", "SOMETHING_NEW", &[]);
    app.clock.advance(days(30));
    app.tick().await;
    app.clock.advance(Duration::hours(7));
    app.tick().await;
    app.clock.advance(days(2));
    app.tick().await;
    let o = order(&app, "K2").await;
    assert_eq!(o["status"], "implementing", "{o}");
    assert!(o["service"]["status"] != "terminated", "{o}");
    // Once Alipay says something we can read, the rule applies as usual.
    app.alipay
        .set_order("K2", "CLOSED", &["MERCHANT_CANCELLED"]);
    app.clock.advance(Duration::minutes(5));
    app.tick().await;
    let o = order(&app, "K2").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("implementation_timeout")),
        "{o}"
    );
    app.stop().await;
}
both_backends!(
    an_unreadable_answer_never_cancels_by_inference,
    an_unreadable_answer_never_cancels_by_inference
);
