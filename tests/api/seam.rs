//! The seam between the use cases and the store: a stored state the code does not know is an
//! error that names its column (never a default), and every effect of a transition is carried
//! out — a service that ends stops its build in the same transaction.

use crate::both_backends;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use diesel::connection::SimpleConnection as _;
use isv_lifecycle::domain::lifecycle::OrderEvent;
use isv_lifecycle::service::lifecycle::LifecycleError;
use isv_lifecycle::store::StoreError;

async fn unknown_state_is_an_error_naming_the_column(app: TestApp) {
    let key = common::platform_private_key();
    let body = common::order_notification(&key, "SEAM1", "n-seam-1", "9.90");
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;
    let (status, order) = app.admin_get("/admin/api/orders/SEAM1").await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "awaiting_payment");

    // A value written by something else (a newer version, a hand edit): no code writes it.
    let mut conn = app.services.pool.get().unwrap();
    conn.batch_execute("UPDATE orders SET status = 'on_hold' WHERE commodity_order_id = 'SEAM1'")
        .unwrap();
    drop(conn);

    let (status, body) = app.admin_get("/admin/api/orders/SEAM1").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "corrupt_data");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("orders.status") && message.contains("on_hold"),
        "{message}"
    );

    // The rules are never run on a guess: the use case fails with the same words.
    let event = OrderEvent::SupportTerminates {
        actor: "api".into(),
        reason: "test".into(),
    };
    match app.services.order_event_now(&"SEAM1".into(), event).await {
        Err(LifecycleError::Store(StoreError::Corrupt(m))) => {
            assert!(m.contains("orders.status"), "{m}")
        }
        other => panic!("expected a corrupt-data error, got {other:?}"),
    }
    app.stop().await;
}
both_backends!(
    unknown_state_is_an_error_naming_the_column,
    unknown_state_is_an_error_naming_the_column
);

async fn unknown_timer_kind_is_an_error_naming_the_column(app: TestApp) {
    let key = common::platform_private_key();
    let body = common::order_notification(&key, "SEAM3", "n-seam-3", "9.90");
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;
    // The order.query the notice queued runs on the next tick.
    assert_eq!(app.tick().await.claimed, 1);
    let (status, order) = app.admin_get("/admin/api/orders/SEAM3").await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["deadlines"][1]["kind"], "payment");

    // An old-style kind (the days inside the text), as a replica of the previous version wrote
    // it: `warning_20` is what the API shows, never what the column holds.
    let mut conn = app.services.pool.get().unwrap();
    conn.batch_execute(
        "UPDATE deadlines SET kind = 'warning_20' WHERE commodity_order_id = 'SEAM3' AND kind = 'payment'",
    )
    .unwrap();
    drop(conn);

    let (status, body) = app.admin_get("/admin/api/orders/SEAM3").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "corrupt_data");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("deadlines.kind") && message.contains("warning_20"),
        "{message}"
    );

    let event = OrderEvent::SupportTerminates {
        actor: "api".into(),
        reason: "test".into(),
    };
    match app.services.order_event_now(&"SEAM3".into(), event).await {
        Err(LifecycleError::Store(StoreError::Corrupt(m))) => {
            assert!(m.contains("deadlines.kind"), "{m}")
        }
        other => panic!("expected a corrupt-data error, got {other:?}"),
    }
    // Nothing was half-applied: the order is still as it was.
    let mut conn = app.services.pool.get().unwrap();
    let row = isv_lifecycle::store::orders::find(&mut conn, "SEAM3")
        .unwrap()
        .unwrap();
    assert_eq!(
        row.status,
        isv_lifecycle::domain::OrderStatus::AwaitingPayment
    );
    drop(conn);

    // The sweep reports the bad row as an error every tick and still fires the others.
    let body = common::order_notification(&key, "SEAM4", "n-seam-4", "9.90");
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;
    assert_eq!(app.tick().await.claimed, 1, "SEAM4's notice query");
    app.alipay.set_order("SEAM4", "MERCHANT_PAID", &["DOING"]);
    app.clock.advance(chrono::Duration::days(3));
    let report = app.tick().await;
    assert_eq!((report.claimed, report.errors), (2, 1), "{report:?}");
    let (_, order) = app.admin_get("/admin/api/orders/SEAM4").await;
    assert_eq!(order["status"], "implementing", "{order}");
    app.clock.advance(chrono::Duration::hours(1));
    let report = app.tick().await;
    assert_eq!((report.claimed, report.errors), (1, 1), "{report:?}");
    app.stop().await;
}
both_backends!(
    unknown_timer_kind_is_an_error_naming_the_column,
    unknown_timer_kind_is_an_error_naming_the_column
);

async fn support_termination_stops_the_build_in_flight(db: Db) {
    let app = TestApp::spawn_with(db, |s| {
        s.templates.default_template_id = "2021000000000009".into();
        s.templates.build_poll_seconds = 10;
    })
    .await;
    // The merchant's authorization (vector N035, mini program 2021004199990002), then a free
    // order for it: implementing at once, so the build starts.
    app.grant_merchant_authorization().await;
    let key = common::platform_private_key();
    let order = common::order_notification(&key, "SEAM2", "n-seam-2", "0.00");
    assert_eq!(app.post_notify(order).await.1, "success");
    app.run_pending_jobs().await;
    // Two passes: the build starts and reads Alipay's versions, then uploads; build.query
    // comes next.
    app.services.run_pipeline(50).await.unwrap();
    app.services.run_pipeline(50).await.unwrap();
    let (_, order) = app.admin_get("/admin/api/orders/SEAM2").await;
    assert_eq!(order["build"]["step"], "build_query", "{order}");

    let (status, order) = app
        .admin_post(
            "/admin/api/orders/SEAM2/terminate",
            r#"{"reason": "merchant asked"}"#,
        )
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["service"]["status"], "terminated");
    assert_eq!(order["build"]["step"], "cancelled", "{order}");
    let history = order["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["cause"] == "build_cancelled"),
        "{history:?}"
    );

    // No further call is made with the merchant's token, however long the pipeline runs.
    let before = app.alipay.calls().len();
    app.clock.advance(chrono::Duration::hours(1));
    for _ in 0..6 {
        app.services.run_pipeline(50).await.unwrap();
    }
    assert_eq!(app.alipay.calls().len(), before);
    let (_, order) = app.admin_get("/admin/api/orders/SEAM2").await;
    assert_eq!(order["build"]["step"], "cancelled");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_termination_stops_the_build_in_flight_sqlite() {
    support_termination_stops_the_build_in_flight(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_termination_stops_the_build_in_flight_postgres() {
    if common::skip_postgres() {
        return;
    }
    support_termination_stops_the_build_in_flight(Db::Postgres).await;
}

const MINI_APP: &str = "2021004199990002";

fn signed(params: &[(&str, String)]) -> String {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

fn grant(notify_id: &str, auth_time_ms: i64, token: &str) -> String {
    let biz = serde_json::json!({"detail": {"app_auth_token": token, "app_refresh_token": format!("{token}R"),
        "auth_app_id": MINI_APP, "user_id": "2088102177846880", "auth_time": auth_time_ms,
        "expires_in": 31536000, "re_expires_in": 32140800}});
    common::authorization_notification(common::APP_ID, notify_id, auth_time_ms, &biz)
}

fn cancellation(notify_id: &str) -> String {
    let biz = serde_json::json!({"auth_app_id": MINI_APP, "user_id": "2088102177846880"});
    signed(&[
        ("notify_id", notify_id.into()),
        ("msg_method", "alipay.open.auth.appauth.cancelled".into()),
        ("app_id", common::APP_ID.into()),
        ("version", "1.1".into()),
        ("charset", "UTF-8".into()),
        ("sign_type", "RSA2".into()),
        ("biz_content", biz.to_string()),
    ])
}

async fn authorization_status(app: &TestApp) -> String {
    let (_, auth) = app
        .admin_get(&format!("/admin/api/authorizations/{MINI_APP}"))
        .await;
    auth["status"].as_str().unwrap_or("none").to_string()
}

/// Grants and cancellations are decided by `domain::lifecycle::handle_authorization` alone. The
/// SQL rule this replaced ("newer auth_time wins") re-activated a cancelled app on a late grant
/// issued before the cancellation.
async fn authorizations_follow_the_domain_rules(app: TestApp) {
    let now_ms = app.clock_now_ms();
    let hour = 3_600_000;
    assert_eq!(
        app.post_notify(grant("g1", now_ms - hour, "TOKEN1"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    assert_eq!(authorization_status(&app).await, "active");

    assert_eq!(app.post_notify(cancellation("c1")).await.1, "success");
    app.run_pending_jobs().await;
    assert_eq!(authorization_status(&app).await, "cancelled");

    // A grant from before the cancellation, delivered late: it stays cancelled, no token.
    assert_eq!(
        app.post_notify(grant("g2", now_ms - hour / 2, "TOKEN2"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    assert_eq!(authorization_status(&app).await, "cancelled");
    let mut conn = app.services.pool.get().unwrap();
    assert_eq!(
        isv_lifecycle::store::authorizations::sealed_token(&mut conn, MINI_APP).unwrap(),
        None
    );
    drop(conn);

    // The merchant authorizes again after the cancellation: a new active grant.
    app.clock.advance(chrono::Duration::minutes(5));
    assert_eq!(
        app.post_notify(grant("g3", now_ms + 60_000, "TOKEN3"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    assert_eq!(authorization_status(&app).await, "active");
    // An older grant redelivered changes nothing.
    assert_eq!(
        app.post_notify(grant("g1-again", now_ms - hour + 1, "TOKEN1"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    let (_, auth) = app
        .admin_get(&format!("/admin/api/authorizations/{MINI_APP}"))
        .await;
    assert_eq!(auth["status"], "active");
    assert_eq!(
        auth["auth_time"]
            .as_str()
            .map(|t| t.starts_with("2024-06-10T05:31:00")),
        Some(true),
        "{auth}"
    );
    app.stop().await;
}
both_backends!(
    authorizations_follow_the_domain_rules,
    authorizations_follow_the_domain_rules
);
