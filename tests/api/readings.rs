//! Readings we trust (LIFECYCLE.md, issue 12): payment seen at once and dated from the item,
//! authorizations in any order, inferences repaired, orders joined through their items.

use crate::both_backends;
use crate::common::fake_alipay::Reply;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use chrono::Duration;
use serde_json::{Value, json};

const MINI_APP: &str = "2021004199990002";
const ORDER_QUERY: &str = "alipay.open.servicemarket.order.query";

fn signed(params: &[(&str, String)]) -> String {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

/// An order notice; `mini_app_id: None` leaves `consumer_miniAppId` out.
fn notice(id: &str, price: &str, mini_app_id: Option<&str>) -> String {
    let mut params = vec![
        ("notify_id", format!("n-{id}")),
        ("notify_type", "servicemarket_order_notify".into()),
        ("app_id", common::APP_ID.into()),
        ("notify_time", "2024-06-10 13:01:00".into()),
        ("sign_type", "RSA2".into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("commodity_order_id", id.into()),
        ("order_time", "2024-06-10 13:01:00".into()),
        ("merchant_pid", "2088102177846880".into()),
        ("total_price", price.into()),
        ("title", "小程序模板服务".into()),
        ("item_code", "TS0001".into()),
    ];
    if let Some(app) = mini_app_id {
        params.push(("consumer_miniAppId", app.into()));
    }
    signed(&params)
}

fn grant(notify_id: &str, mini_app_id: &str, auth_time_ms: i64, token: &str) -> String {
    let biz = json!({"detail": {"app_auth_token": token, "app_refresh_token": format!("{token}R"),
        "auth_app_id": mini_app_id, "user_id": "2088102177846880", "auth_time": auth_time_ms}});
    common::authorization_notification(common::APP_ID, notify_id, auth_time_ms, &biz)
}

/// `appauth.cancelled` sent at `at_ms`, naming `token` when given.
fn cancellation(notify_id: &str, mini_app_id: &str, at_ms: i64, token: Option<&str>) -> String {
    let mut biz = json!({"auth_app_id": mini_app_id, "user_id": "2088102177846880"});
    if let Some(token) = token {
        biz["app_auth_token"] = json!(token);
    }
    signed(&[
        ("notify_id", notify_id.into()),
        ("utc_timestamp", at_ms.to_string()),
        ("msg_method", "alipay.open.auth.appauth.cancelled".into()),
        ("app_id", common::APP_ID.into()),
        ("version", "1.1".into()),
        ("charset", "UTF-8".into()),
        ("sign_type", "RSA2".into()),
        ("biz_content", biz.to_string()),
    ])
}

async fn deliver(app: &TestApp, body: String) {
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;
}

async fn order(app: &TestApp, id: &str) -> Value {
    let (status, order) = app.admin_get(&format!("/admin/api/orders/{id}")).await;
    assert_eq!(status, 200, "{order}");
    order
}

fn due_at(order: &Value, kind: &str) -> Value {
    order["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == kind)
        .map(|d| d["due_at"].clone())
        .unwrap_or(Value::Null)
}

fn last_history(order: &Value) -> Value {
    order["history"].as_array().unwrap().last().unwrap().clone()
}

fn order_queries(app: &TestApp) -> usize {
    app.alipay
        .calls()
        .iter()
        .filter(|c| c.method == ORDER_QUERY)
        .count()
}

fn paid_item(mini_app_id: &str, effect_date: Option<&str>) -> Value {
    let mut item =
        json!({"commodity_id": "APPMK0001", "mini_app_id": mini_app_id, "order_status": "DOING"});
    if let Some(date) = effect_date {
        item["service_effect_date"] = json!(date);
        item["service_expire_date"] = json!("2025-06-10 14:00:00");
    }
    item
}

// ---- payment seen at once, the clock from payment ----------------------------------------

/// Issue 12's "payment seen late": the notice's own `order.query` runs on the next tick, so a
/// paid order is implementing without any reconciliation, and the 30-day clock (and its
/// warnings) counts from the item's `service_effect_date`, not from when we looked.
async fn payment_is_seen_within_one_tick_and_dated_from_the_item(app: TestApp) {
    // Paid at 14:00 Beijing (06:00 UTC), an hour after the order; we look half a day later.
    app.alipay.set_order_items(
        "PAY1",
        "MERCHANT_ORDED",
        vec![paid_item(MINI_APP, Some("2024-06-10 14:00:00"))],
    );
    app.clock.advance(Duration::hours(12));
    deliver(&app, notice("PAY1", "9.90", Some(MINI_APP))).await;
    assert_eq!(order(&app, "PAY1").await["paid_at"], Value::Null);
    let report = app.tick().await;
    assert_eq!((report.claimed, report.errors), (1, 0), "{report:?}");
    assert_eq!(order_queries(&app), 1);
    let o = order(&app, "PAY1").await;
    assert_eq!(o["status"], "implementing", "{o}");
    assert_eq!(
        o["reconciled_at"],
        Value::Null,
        "no reconciliation ran: {o}"
    );
    assert_eq!(
        (o["paid_at"].as_str(), o["paid_at_source"].as_str()),
        (Some("2024-06-10T06:00:00Z"), Some("service_effect_date")),
        "{o}"
    );
    // The implementation deadline is service_effect_date + 30 days; warnings at 20 and 27.
    assert_eq!(due_at(&o, "implementation"), "2024-07-10T06:00:00Z");
    assert_eq!(due_at(&o, "warning_20"), "2024-06-30T06:00:00Z");
    assert_eq!(due_at(&o, "warning_27"), "2024-07-07T06:00:00Z");
    // Done once: the next tick asks nothing.
    app.tick().await;
    assert_eq!(order_queries(&app), 1);
    app.stop().await;
}
both_backends!(
    payment_is_seen_within_one_tick_and_dated_from_the_item,
    payment_is_seen_within_one_tick_and_dated_from_the_item
);

/// Without an item date: an order the notice's own query already shows paid is dated from the
/// notice's `order_time`; payment found later (here by reconciliation) is dated from the reading,
/// and recorded as such.
async fn payment_without_an_item_date_falls_back_as_written(app: TestApp) {
    app.alipay
        .set_order_items("PAY2", "MERCHANT_ORDED", vec![paid_item(MINI_APP, None)]);
    deliver(&app, notice("PAY2", "9.90", Some(MINI_APP))).await;
    app.tick().await;
    let o = order(&app, "PAY2").await;
    assert_eq!(
        (o["paid_at"].as_str(), o["paid_at_source"].as_str()),
        (Some("2024-06-10T05:01:00Z"), Some("order_time")),
        "{o}"
    );
    assert_eq!(due_at(&o, "implementation"), "2024-07-10T05:01:00Z");

    deliver(&app, notice("PAY3", "9.90", Some(MINI_APP))).await;
    app.tick().await;
    assert_eq!(order(&app, "PAY3").await["paid_at"], Value::Null);
    app.clock.advance(Duration::days(1));
    app.alipay
        .set_order_items("PAY3", "MERCHANT_ORDED", vec![paid_item(MINI_APP, None)]);
    let (_, o) = app.admin_post("/admin/api/orders/PAY3/reconcile", "").await;
    assert_eq!(
        (o["paid_at"].as_str(), o["paid_at_source"].as_str()),
        (Some("2024-06-11T05:30:00Z"), Some("reading")),
        "{o}"
    );
    app.stop().await;
}
both_backends!(
    payment_without_an_item_date_falls_back_as_written,
    payment_without_an_item_date_falls_back_as_written
);

// ---- authorizations out of order -----------------------------------------------------------

async fn authorization(app: &TestApp, mini_app_id: &str) -> Value {
    let (_, auth) = app
        .admin_get(&format!("/admin/api/authorizations/{mini_app_id}"))
        .await;
    auth
}

/// The token the service would call with now, opened.
fn current_token(app: &TestApp, mini_app_id: &str) -> Option<String> {
    let mut conn = app.services.pool.get().unwrap();
    let sealed =
        isv_lifecycle::store::authorizations::sealed_token(&mut conn, mini_app_id).unwrap()?;
    let context = isv_lifecycle::service::apply::token_context("app_auth_token", mini_app_id);
    Some(String::from_utf8(app.services.sealer.open(&context, &sealed).unwrap()).unwrap())
}

/// Grant 1 (t1), grant 2 (t2); then a late `appauth.cancelled` naming grant 1's token, and a
/// late one without a token older than t2: grant 2 stays active with its token both times.
async fn late_cancellations_leave_the_newer_grant_active(app: TestApp) {
    let t1 = app.clock_now_ms() - 2 * 3_600_000;
    let t2 = t1 + 3_600_000;
    deliver(&app, grant("g1", MINI_APP, t1, "TOKEN1")).await;
    deliver(&app, grant("g2", MINI_APP, t2, "TOKEN2")).await;
    assert_eq!(current_token(&app, MINI_APP).as_deref(), Some("TOKEN2"));

    deliver(
        &app,
        cancellation("c1", MINI_APP, t2 + 60_000, Some("TOKEN1")),
    )
    .await;
    let auth = authorization(&app, MINI_APP).await;
    assert_eq!(auth["status"], "active", "{auth}");
    assert_eq!(current_token(&app, MINI_APP).as_deref(), Some("TOKEN2"));

    deliver(&app, cancellation("c2", MINI_APP, t1 + 60_000, None)).await;
    let auth = authorization(&app, MINI_APP).await;
    assert_eq!(auth["status"], "active", "{auth}");
    assert_eq!(
        auth["auth_time"].as_str().map(|t| t.to_string()),
        Some(
            chrono::DateTime::from_timestamp_millis(t2)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ),
        "{auth}"
    );
    assert_eq!(current_token(&app, MINI_APP).as_deref(), Some("TOKEN2"));

    // The one that does name grant 2 ends it.
    deliver(&app, cancellation("c3", MINI_APP, t1, Some("TOKEN2"))).await;
    assert_eq!(authorization(&app, MINI_APP).await["status"], "cancelled");
    assert_eq!(current_token(&app, MINI_APP), None);
    app.stop().await;
}
both_backends!(
    late_cancellations_leave_the_newer_grant_active,
    late_cancellations_leave_the_newer_grant_active
);

/// A cancellation that arrives before its grant is remembered: the late grant stays cancelled,
/// with no token kept, whether the cancellation named the token or only its time.
async fn an_early_cancellation_keeps_the_late_grant_cancelled(app: TestApp) {
    let now = app.clock_now_ms();
    deliver(&app, cancellation("c1", MINI_APP, now, Some("TOKEN1"))).await;
    deliver(&app, grant("g1", MINI_APP, now - 60_000, "TOKEN1")).await;
    let auth = authorization(&app, MINI_APP).await;
    assert_eq!(auth["status"], "cancelled", "{auth}");
    assert_eq!(current_token(&app, MINI_APP), None);

    let other = "2021004199990003";
    deliver(&app, cancellation("c2", other, now, None)).await;
    deliver(&app, grant("g2", other, now - 60_000, "TOKEN2")).await;
    assert_eq!(authorization(&app, other).await["status"], "cancelled");
    assert_eq!(current_token(&app, other), None);
    // The merchant authorizing again later is a new grant.
    deliver(&app, grant("g3", other, now + 60_000, "TOKEN3")).await;
    assert_eq!(authorization(&app, other).await["status"], "active");
    assert_eq!(current_token(&app, other).as_deref(), Some("TOKEN3"));
    app.stop().await;
}
both_backends!(
    an_early_cancellation_keeps_the_late_grant_cancelled,
    an_early_cancellation_keeps_the_late_grant_cancelled
);

// ---- inferences repaired -------------------------------------------------------------------

/// Alipay fails every attempt of the next call (the client tries three times).
fn unreachable(app: &TestApp) {
    app.alipay
        .script([Reply::Http(502), Reply::Http(502), Reply::Http(502)]);
}

/// Issue 12's "inferences never repaired": Alipay unreachable past the grace period, the order
/// is cancelled as `unpaid_timeout` by inference; the next reconciliation finds it paid, and
/// the order follows Alipay, support is told, and the service is building.
async fn an_inferred_cancellation_is_repaired_by_reconciliation(app: TestApp) {
    deliver(&app, notice("INF1", "9.90", Some(MINI_APP))).await;
    app.tick().await;
    app.clock.advance(Duration::days(3));
    unreachable(&app);
    app.tick().await;
    app.clock.advance(Duration::hours(7));
    unreachable(&app);
    app.tick().await;
    let o = order(&app, "INF1").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("unpaid_timeout")),
        "{o}"
    );
    assert_eq!(last_history(&o)["inferred"], true);

    app.alipay
        .set_order_items("INF1", "MERCHANT_ORDED", vec![paid_item(MINI_APP, None)]);
    app.clock.advance(Duration::hours(1));
    let report = app
        .services
        .reconcile_all(1000, 2, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((report.repaired, report.errors), (1, 0), "{report:?}");
    let o = order(&app, "INF1").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("implementing"), None),
        "{o}"
    );
    let h = last_history(&o);
    assert_eq!(
        (
            h["cause"].as_str(),
            h["actor"].as_str(),
            h["inferred"].as_bool()
        ),
        (Some("alipay_disagreed"), Some("alipay"), Some(false)),
        "{h}"
    );
    assert!(
        app.alipay
            .alerts()
            .iter()
            .any(|a| a["kind"] == "alipay_disagreed" && a["subject"] == "INF1"),
        "{:?}",
        app.alipay.alerts()
    );
    assert_eq!(o["service"]["status"], "provisioning", "{o}");
    // Repaired once: later reconciliations leave it.
    let report = app
        .services
        .reconcile_all(1000, 2, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.repaired, 0);
    app.stop().await;
}
both_backends!(
    an_inferred_cancellation_is_repaired_by_reconciliation,
    an_inferred_cancellation_is_repaired_by_reconciliation
);

/// A service that an inferred implementation timeout terminated is restored when Alipay shows
/// the order reached 待商家确认 after all. (Alipay showing it still in implementation is what
/// the inference was made on, so that alone repairs nothing.)
async fn a_service_ended_by_a_wrong_inference_is_restored(app: TestApp) {
    deliver(&app, notice("INF2", "0.00", Some(MINI_APP))).await;
    app.tick().await;
    app.clock.advance(Duration::days(30));
    unreachable(&app);
    app.tick().await;
    app.clock.advance(Duration::hours(7));
    unreachable(&app);
    app.tick().await;
    let o = order(&app, "INF2").await;
    assert_eq!(o["cancel_reason"], "implementation_timeout", "{o}");
    assert_eq!(o["service"]["status"], "terminated", "{o}");

    app.alipay
        .set_order_items("INF2", "MERCHANT_ORDED", vec![paid_item(MINI_APP, None)]);
    app.services
        .reconcile_all(1000, 2, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(order(&app, "INF2").await["status"], "cancelled");
    app.alipay.set_order_items(
        "INF2",
        "MERCHANT_ORDED",
        vec![json!({"mini_app_id": MINI_APP, "order_status": "TO_CONFIRM"})],
    );
    app.services
        .reconcile_all(1000, 2, &|_, _| {})
        .await
        .unwrap();
    let o = order(&app, "INF2").await;
    assert_eq!(o["status"], "awaiting_confirmation", "{o}");
    assert_eq!(last_history(&o)["cause"], "service_restored", "{o}");
    assert_eq!(o["refund"], Value::Null, "no refund happened: {o}");
    assert_eq!(
        (
            o["service"]["status"].as_str(),
            &o["service"]["termination_cause"]
        ),
        (Some("provisioning"), &Value::Null),
        "{o}"
    );
    assert!(
        o["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["cause"] == "service_restored"),
        "{o}"
    );
    // The period the inference closed (as refunded) runs again.
    let (_, service) = app
        .admin_get(&format!("/admin/api/services/{MINI_APP}"))
        .await;
    let period = service["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["commodity_order_id"] == "INF2")
        .cloned()
        .unwrap_or_else(|| panic!("{service}"));
    assert_eq!(period["state"], "active", "{service}");
    app.stop().await;
}
both_backends!(
    a_service_ended_by_a_wrong_inference_is_restored,
    a_service_ended_by_a_wrong_inference_is_restored
);

// ---- joins through the items ---------------------------------------------------------------

/// Issue 12: a notice without `consumer_miniAppId` gets its mini program from `order.query`'s
/// `order_items[].mini_app_id`; then the build starts, and the authorization's cancellation
/// terminates its service.
async fn an_order_is_joined_to_its_mini_program_through_the_items(db: Db) {
    let app = TestApp::spawn_with(db, |s| {
        s.templates.default_template_id = "2021000000000009".into();
        s.templates.build_poll_seconds = 10;
    })
    .await;
    let mini_app = "2021004199990077";
    let now = app.clock_now_ms();
    deliver(&app, grant("g-join", mini_app, now - 60_000, "TOKENJ")).await;
    app.alipay.set_order_items(
        "JOIN1",
        "MERCHANT_ORDED",
        vec![paid_item(mini_app, Some("2024-06-10 14:00:00"))],
    );
    deliver(&app, notice("JOIN1", "9.90", None)).await;
    assert_eq!(order(&app, "JOIN1").await["mini_app_id"], Value::Null);
    app.tick().await;
    let o = order(&app, "JOIN1").await;
    assert_eq!(o["mini_app_id"], mini_app, "{o}");
    assert_eq!(o["status"], "implementing", "{o}");

    // The build starts for the joined mini program, as the merchant.
    let pass = app.services.run_pipeline(50).await.unwrap();
    assert_eq!(pass.started, 1, "{pass:?}");
    // Alipay's version list first, then the upload.
    app.services.run_pipeline(50).await.unwrap();
    let upload = app
        .alipay
        .calls()
        .into_iter()
        .find(|c| c.method == "alipay.open.mini.version.upload")
        .expect("an upload");
    assert_eq!(upload.app_auth_token.as_deref(), Some("TOKENJ"));

    // And the merchant's cancellation terminates it.
    deliver(&app, cancellation("c-join", mini_app, now, Some("TOKENJ"))).await;
    let o = order(&app, "JOIN1").await;
    assert_eq!(
        (
            o["service"]["status"].as_str(),
            o["service"]["termination_cause"].as_str()
        ),
        (Some("terminated"), Some("authorization_cancelled")),
        "{o}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_joined_to_its_mini_program_through_the_items_sqlite() {
    an_order_is_joined_to_its_mini_program_through_the_items(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_joined_to_its_mini_program_through_the_items_postgres() {
    if common::skip_postgres() {
        return;
    }
    an_order_is_joined_to_its_mini_program_through_the_items(Db::Postgres).await;
}

// ---- a queued query that keeps failing -----------------------------------------------------

/// Every notice queues an `order.query`; one Alipay keeps refusing is asked again with a growing
/// pause (up to hourly), not on every tick forever, and is done once Alipay answers.
async fn a_failing_notice_query_backs_off(app: TestApp) {
    deliver(&app, notice("BACK1", "9.90", Some(MINI_APP))).await;
    // 20 refusals: asked on every tick, they would all be used in 20 ticks.
    app.alipay.script((0..20).map(|_| Reply::Error {
        code: "40004",
        sub_code: "ORDER_NOT_EXIST",
    }));
    for _ in 0..40 {
        app.tick().await;
        app.clock.advance(Duration::seconds(30));
    }
    let asked = order_queries(&app);
    assert!((5..=15).contains(&asked), "asked {asked} times in 40 ticks");
    // Once the refusals are used up Alipay answers, and the row is done.
    for _ in 0..20 {
        app.tick().await;
        if order(&app, "BACK1").await["deadlines"][0]["state"] == "fired" {
            break;
        }
        app.clock.advance(Duration::hours(1));
    }
    assert_eq!(order_queries(&app), 21);
    let o = order(&app, "BACK1").await;
    assert_eq!(o["deadlines"][0]["kind"], "query_alipay", "{o}");
    assert_eq!(o["deadlines"][0]["state"], "fired", "{o}");
    app.stop().await;
}
both_backends!(
    a_failing_notice_query_backs_off,
    a_failing_notice_query_backs_off
);
