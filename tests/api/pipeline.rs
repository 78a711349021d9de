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
    app.grant_merchant_authorization().await;
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
    // Alipay's version list first (empty), then three attempts of the upload, all unsigned.
    app.alipay.script([
        Reply::Success(serde_json::json!({})),
        unsigned.clone(),
        unsigned.clone(),
        unsigned,
    ]);
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

fn version_sent(app: &TestApp, method: &str) -> Vec<String> {
    app.alipay
        .calls()
        .iter()
        .filter(|c| c.method == method)
        .filter_map(|c| {
            let biz: Value = serde_json::from_str(c.biz_content.as_deref()?).ok()?;
            biz["app_version"].as_str().map(str::to_string)
        })
        .collect()
}

async fn alert_of_kind(app: &TestApp, kind: &str) -> bool {
    // Alerts are sent off the transaction: give the webhook a moment.
    for _ in 0..200 {
        if app.alipay.alerts().iter().any(|a| a["kind"] == kind) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// The first version follows Alipay's own list (`1.2.10` → `1.2.11`, compared per component, so
/// `1.2.10` beats `1.2.9`), asked with the merchant's token before the upload.
async fn first_version_follows_alipays_list(db: Db) {
    let app = app_with_template(db).await;
    app.alipay.set_app_versions(&["1.2.9", "1.2.10", "0.9.99"]);
    authorized_free_order(&app, "V1").await;
    run_pipeline(&app).await;
    let list: Vec<_> = app
        .alipay
        .calls()
        .into_iter()
        .filter(|c| c.method == "alipay.open.mini.version.list.query")
        .collect();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].app_auth_token.as_deref(), Some(TOKEN));
    assert_eq!(
        version_sent(&app, "alipay.open.mini.version.upload"),
        ["1.2.11"]
    );
    assert_eq!(
        version_sent(&app, "alipay.open.mini.version.build.query"),
        ["1.2.11"]
    );
    let o = order(&app, "V1").await;
    assert_eq!(o["build"]["app_version"], "1.2.11", "{o}");
    assert_eq!(o["build"]["step"], "await_audit", "{o}");
    app.stop().await;
}

/// An empty list: `0.0.1`.
async fn first_version_is_0_0_1_when_alipay_holds_none(db: Db) {
    let app = app_with_template(db).await;
    authorized_free_order(&app, "V2").await;
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.list.query"), 1);
    assert_eq!(
        version_sent(&app, "alipay.open.mini.version.upload"),
        ["0.0.1"]
    );
    app.stop().await;
}

/// No audit message: `templates.audit_poll_seconds` after `audit.apply`, `version.detail.query`
/// is asked, and again every as many seconds; `AUDITING` waits, `WAIT_RELEASE` goes online as
/// the audit-passed message would (and the order asks Alipay).
async fn wait_release_found_by_polling_goes_online(db: Db) {
    let app = TestApp::spawn_with(db, |s| {
        s.templates.default_template_id = "2021000000000009".into();
        s.templates.audit_poll_seconds = 600;
    })
    .await;
    authorized_free_order(&app, "P1").await;
    run_pipeline(&app).await;
    assert_eq!(order(&app, "P1").await["build"]["step"], "await_audit");
    // Not before the wait is over.
    app.clock.advance(chrono::Duration::seconds(599));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 0);
    // Still auditing: asked once, waits, and is asked again a wait later (not sooner).
    app.clock.advance(chrono::Duration::seconds(1));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 1);
    assert_eq!(
        version_sent(&app, "alipay.open.mini.version.detail.query"),
        ["0.0.1"]
    );
    let o = order(&app, "P1").await;
    assert_eq!(o["build"]["step"], "await_audit", "{o}");
    assert_eq!(o["build"]["alipay_status"], "AUDITING", "{o}");
    app.clock.advance(chrono::Duration::seconds(599));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 1);
    // Passed: online next, as the audit message would.
    app.alipay.set_version_detail("WAIT_RELEASE", None);
    app.clock.advance(chrono::Duration::seconds(1));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 2);
    assert_eq!(calls(&app, "alipay.open.mini.version.online"), 1);
    assert_eq!(
        version_sent(&app, "alipay.open.mini.version.online"),
        ["0.0.1"]
    );
    app.alipay.set_order("P1", "MERCHANT_PAID", &["TO_CONFIRM"]);
    app.tick().await;
    let o = order(&app, "P1").await;
    assert_eq!(o["build"]["step"], "done", "{o}");
    assert_eq!(o["service"]["status"], "live", "{o}");
    assert_eq!(o["status"], "awaiting_confirmation", "{o}");
    // Done: never asked again.
    app.clock.advance(chrono::Duration::days(2));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 2);
    app.stop().await;
}

/// `AUDIT_REJECT` found by polling rejects the build with `reject_reason`, as the rejected
/// message would: support is alerted, and nothing more is asked.
async fn audit_reject_found_by_polling_is_rejected(db: Db) {
    let app = app_with_template(db).await;
    authorized_free_order(&app, "P2").await;
    run_pipeline(&app).await;
    app.alipay
        .set_version_detail("AUDIT_REJECT", Some("类目不符"));
    app.clock.advance(chrono::Duration::seconds(3600));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 1);
    let o = order(&app, "P2").await;
    assert_eq!(o["build"]["step"], "rejected", "{o}");
    assert!(
        o["build"]["last_error"]
            .as_str()
            .unwrap()
            .contains("类目不符"),
        "{o}"
    );
    assert!(alert_of_kind(&app, "audit_rejected").await);
    app.clock.advance(chrono::Duration::seconds(7200));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 1);
    assert_eq!(calls(&app, "alipay.open.mini.version.online"), 0);
    app.stop().await;
}

/// A status outside our table is kept verbatim, shown to support (once), and waited on.
async fn unknown_audit_status_is_kept_and_waited_on(db: Db) {
    let app = app_with_template(db).await;
    authorized_free_order(&app, "P3").await;
    run_pipeline(&app).await;
    app.alipay.set_version_detail("NEW_REVIEW_STAGE", None);
    app.clock.advance(chrono::Duration::seconds(3600));
    run_pipeline(&app).await;
    let o = order(&app, "P3").await;
    assert_eq!(o["build"]["step"], "await_audit", "{o}");
    assert_eq!(o["build"]["alipay_status"], "NEW_REVIEW_STAGE", "{o}");
    assert!(alert_of_kind(&app, "unknown_alipay_status").await);
    app.clock.advance(chrono::Duration::seconds(3600));
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.detail.query"), 2);
    app.alipay.set_version_detail("RELEASE", None);
    app.clock.advance(chrono::Duration::seconds(3600));
    run_pipeline(&app).await;
    let o = order(&app, "P3").await;
    // Already released: live, with no online call of ours.
    assert_eq!(o["build"]["step"], "done", "{o}");
    assert_eq!(o["service"]["status"], "live", "{o}");
    assert_eq!(calls(&app, "alipay.open.mini.version.online"), 0);
    app.stop().await;
}

/// Alipay refusing the merchant's token (`20001`) during a build step flags the authorization
/// for support, as the merchant-order delivery does, and stops the build.
async fn invalid_token_during_a_build_flags_the_authorization(db: Db) {
    let app = app_with_template(db).await;
    app.alipay.script([
        Reply::Success(serde_json::json!({})),
        Reply::Error {
            code: "20001",
            sub_code: "aop.invalid-app-auth-token",
        },
    ]);
    authorized_free_order(&app, "T1").await;
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 1);
    let o = order(&app, "T1").await;
    assert_eq!(o["build"]["step"], "failed", "{o}");
    let (status, a) = app
        .admin_get(&format!("/admin/api/authorizations/{MINI_APP}"))
        .await;
    assert_eq!(status, 200, "{a}");
    assert!(
        a["attention"].as_str().is_some_and(|s| s.contains("20001")),
        "{a}"
    );
    assert!(alert_of_kind(&app, "app_auth_token_refused").await);
    app.stop().await;
}

macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        $(mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if common::skip_postgres() {
                    return;
                }
                super::$name(Db::Postgres).await;
            }
        })+
    };
}

on_both!(
    first_version_follows_alipays_list,
    first_version_is_0_0_1_when_alipay_holds_none,
    wait_release_found_by_polling_goes_online,
    audit_reject_found_by_polling_is_rejected,
    unknown_audit_status_is_kept_and_waited_on,
    invalid_token_during_a_build_flags_the_authorization,
);
