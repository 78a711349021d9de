//! The template build pipeline against a local Alipay that checks our request signatures:
//! upload → build.query → audit.apply → (audit message) → online, each step once, with the
//! merchant's token; a rejected audit alerts and waits for support's retry.

use crate::common::fake_alipay::Reply;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use serde_json::Value;

const MINI_APP: &str = "2021004199990002";
const TOKEN: &str = "202406BBd4f3a7c9e2b84a5f9c1e6d7a8b9c0X51";

async fn app_with_template(db: Db) -> TestApp {
    TestApp::spawn_with(db, |s| {
        s.templates.default_template_id = "2021000000000009".into();
        s.templates.build_poll_seconds = 10;
    })
    .await
}

async fn authorized_free_order(app: &TestApp, id: &str) {
    let auth = common::vectors("notifications.jsonl")
        .into_iter()
        .find(|v| v["id"] == "N035")
        .unwrap();
    assert_eq!(
        app.post_notify(auth["body"].as_str().unwrap()).await.1,
        "success"
    );
    let key = common::platform_private_key();
    assert_eq!(
        app.post_notify(common::order_notification(
            &key,
            id,
            &format!("n-{id}"),
            "0.00"
        ))
        .await
        .1,
        "success"
    );
    app.run_pending_jobs().await;
}

async fn run_pipeline(app: &TestApp) {
    for _ in 0..6 {
        app.services.run_pipeline(50).await.unwrap();
    }
}

fn audit_message(method: &str, notify_id: &str, version: &str, at_ms: i64) -> String {
    let biz = if method.ends_with("rejected") {
        format!(
            "{{\"mini_app_id\":\"{MINI_APP}\",\"mini_app_version\":\"{version}\",\"audit_reason\":\"截图不清晰\"}}"
        )
    } else {
        format!("{{\"mini_app_id\":\"{MINI_APP}\",\"mini_app_version\":\"{version}\"}}")
    };
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id.to_string()),
        ("msg_method", method.into()),
        ("app_id", common::APP_ID.into()),
        ("version", "1.1".into()),
        ("charset", "UTF-8".into()),
        ("sign_type", "RSA2".into()),
        ("utc_timestamp", at_ms.to_string()),
        ("biz_content", biz),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

fn calls(app: &TestApp, method: &str) -> usize {
    app.alipay
        .calls()
        .iter()
        .filter(|c| c.method == method)
        .count()
}

async fn order(app: &TestApp, id: &str) -> Value {
    app.admin_get(&format!("/admin/api/orders/{id}")).await.1
}

async fn build_passes_audit_and_goes_online(db: Db) {
    let app = app_with_template(db).await;
    authorized_free_order(&app, "B1").await;
    run_pipeline(&app).await;
    // Upload, one build poll, audit: each exactly once, signed, with the merchant's token.
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 1);
    assert_eq!(calls(&app, "alipay.open.mini.version.build.query"), 1);
    assert_eq!(calls(&app, "alipay.open.mini.version.audit.apply"), 1);
    assert!(app.alipay.calls().iter().all(|c| c.signature_ok
        && (c.method.contains("servicemarket") || c.app_auth_token.as_deref() == Some(TOKEN))));
    let o = order(&app, "B1").await;
    assert_eq!(o["build"]["app_version"], "0.0.1", "{o}");
    assert_eq!(o["build"]["step"], "await_audit");
    // The audit passes: online next, and the order asks Alipay before it moves.
    let at = app.clock_now_ms();
    assert_eq!(
        app.post_notify(audit_message(
            "alipay.open.mini.version.audit.passed",
            "n-audit-b1",
            "0.0.1",
            at
        ))
        .await
        .1,
        "success"
    );
    app.run_pending_jobs().await;
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.online"), 1);
    app.alipay.set_order("B1", "MERCHANT_PAID", &["TO_CONFIRM"]);
    app.tick().await;
    let o = order(&app, "B1").await;
    assert_eq!(o["build"]["step"], "done", "{o}");
    assert_eq!(o["status"], "awaiting_confirmation", "{o}");
    let causes: Vec<&str> = o["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["cause"].as_str().unwrap())
        .collect();
    for step in [
        "build_started",
        "build_upload",
        "build_build_query",
        "build_audit_apply",
        "build_audit_passed",
        "build_online",
    ] {
        assert!(causes.contains(&step), "{step} missing from {causes:?}");
    }
    // Nothing runs twice.
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 1);
    assert_eq!(calls(&app, "alipay.open.mini.version.online"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_passes_audit_and_goes_online_sqlite() {
    build_passes_audit_and_goes_online(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_passes_audit_and_goes_online_postgres() {
    if common::skip_postgres() {
        return;
    }
    build_passes_audit_and_goes_online(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_audit_alerts_and_waits_for_a_retry() {
    let app = app_with_template(Db::Sqlite).await;
    authorized_free_order(&app, "B2").await;
    run_pipeline(&app).await;
    let at = app.clock_now_ms();
    assert_eq!(
        app.post_notify(audit_message(
            "alipay.open.mini.version.audit.rejected",
            "n-rej-b2",
            "0.0.1",
            at
        ))
        .await
        .1,
        "success"
    );
    app.run_pending_jobs().await;
    let o = order(&app, "B2").await;
    assert_eq!(o["build"]["step"], "rejected", "{o}");
    assert!(
        o["build"]["last_error"]
            .as_str()
            .unwrap()
            .contains("截图不清晰")
    );
    // Support is alerted (the alert is sent off the apply transaction).
    for _ in 0..100 {
        if !app.alipay.alerts().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        app.alipay
            .alerts()
            .iter()
            .any(|a| a["kind"] == "audit_rejected"),
        "{:?}",
        app.alipay.alerts()
    );
    // Nothing more happens until support retries; then the next version is built.
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 1);
    let (status, o) = app
        .admin_post(&format!("/admin/api/builds/{MINI_APP}/retry"), "")
        .await;
    assert_eq!(status, 200, "{o}");
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 2);
    let o = order(&app, "B2").await;
    assert_eq!(
        (
            o["build"]["app_version"].as_str(),
            o["build"]["step"].as_str()
        ),
        (Some("0.0.2"), Some("await_audit")),
        "{o}"
    );
    let (status, _) = app
        .admin_post(&format!("/admin/api/builds/{MINI_APP}/retry"), "")
        .await;
    assert_eq!(status, 409, "a build waiting for its audit is not retried");
    app.stop().await;
}

/// An unsigned `VERSION_ALREADY_EXIST` is not believed: the upload is not taken as done (no
/// build.query follows), it is retried, and the next signed answer moves the build on.
async fn unsigned_version_already_exist_is_retried_not_believed(db: Db) {
    let app = app_with_template(db).await;
    let unsigned = Reply::Unsigned {
        code: "40004",
        sub_code: "VERSION_ALREADY_EXIST",
    };
    // Three attempts of the client, all unsigned.
    app.alipay
        .script([unsigned.clone(), unsigned.clone(), unsigned]);
    authorized_free_order(&app, "U1").await;
    app.services.run_pipeline(50).await.unwrap();
    app.services.run_pipeline(50).await.unwrap();
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 3);
    assert_eq!(calls(&app, "alipay.open.mini.version.build.query"), 0);
    let o = order(&app, "U1").await;
    assert_eq!(o["build"]["step"], "upload", "{o}");
    // Later, a signed answer: the upload is done and the build goes on.
    app.clock.advance(chrono::Duration::hours(1));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 4);
    assert_eq!(calls(&app, "alipay.open.mini.version.build.query"), 1);
    let o = order(&app, "U1").await;
    assert_ne!(o["build"]["step"], "upload", "{o}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_version_already_exist_is_retried_not_believed_sqlite() {
    unsigned_version_already_exist_is_retried_not_believed(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_version_already_exist_is_retried_not_believed_postgres() {
    if common::skip_postgres() {
        return;
    }
    unsigned_version_already_exist_is_retried_not_believed(Db::Postgres).await;
}
