//! Service periods (LIFECYCLE.md "Service periods", issue 11) against the local Alipay with a
//! manual clock: renewals, their refunds, re-orders, expiry and its warning, builds that stop
//! when a service ends, and item dates that do not read.

use crate::common::{self, Db};
use crate::helpers::TestApp;
use chrono::{DateTime, Duration, Utc};
use isv_lifecycle::clock::Clock as _;
use serde_json::Value;

const MINI_APP: &str = "2021004199990002";

/// Runs a test body once per backend, with a template configured (so builds start).
macro_rules! with_template {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)(Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if crate::common::skip_postgres() {
                    eprintln!("PostgreSQL skipped (ISV_TEST_SKIP_POSTGRES=1)");
                    return;
                }
                ($body)(Db::Postgres).await;
            }
        }
    };
}

async fn app_with_template(db: Db) -> TestApp {
    TestApp::spawn_with(db, |s| {
        s.templates.default_template_id = "2021000000000009".into();
        s.templates.build_poll_seconds = 10;
    })
    .await
}

/// The merchant's authorization of `MINI_APP` (vector N035).
async fn authorize(app: &TestApp) {
    app.grant_merchant_authorization().await;
    app.run_pending_jobs().await;
}

/// A signed order notice for `MINI_APP`, priced, with `period_day` when given.
fn order_notice(id: &str, period_day: Option<&str>) -> String {
    let notify_id = format!("n-{id}");
    let mut params: Vec<(String, String)> = [
        ("notify_id", notify_id.as_str()),
        ("notify_type", "servicemarket_order_notify"),
        ("app_id", common::APP_ID),
        ("notify_time", "2024-06-10 13:01:00"),
        ("sign_type", "RSA2"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("commodity_order_id", id),
        ("order_time", "2024-06-10 13:01:00"),
        ("merchant_pid", "2088102177846880"),
        ("total_price", "9.90"),
        ("title", "小程序模板服务"),
        ("consumer_miniAppId", MINI_APP),
        ("item_code", "TS0001"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(days) = period_day {
        params.push(("period_day".into(), days.into()));
    }
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

/// The order is noticed, then Alipay shows it paid and we ask (`order.query`).
async fn paid_order(app: &TestApp, id: &str, period_day: Option<&str>) {
    assert_eq!(
        app.post_notify(order_notice(id, period_day)).await.1,
        "success"
    );
    app.run_pending_jobs().await;
    app.alipay.set_order(id, "MERCHANT_PAID", &["DOING"]);
    reconcile(app, id).await;
    let o = order(app, id).await;
    assert_eq!(o["status"], "implementing", "{o}");
}

/// The merchant refunds: Alipay shows the order cancelled and we ask.
async fn refund(app: &TestApp, id: &str) {
    app.alipay
        .set_order(id, "MERCHANT_CANCELLED", &["MERCHANT_CANCELLED"]);
    reconcile(app, id).await;
    let o = order(app, id).await;
    assert_eq!(o["status"], "cancelled", "{o}");
}

async fn reconcile(app: &TestApp, id: &str) {
    let (status, body) = app
        .admin_post(&format!("/admin/api/orders/{id}/reconcile"), "")
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn order(app: &TestApp, id: &str) -> Value {
    app.admin_get(&format!("/admin/api/orders/{id}")).await.1
}

async fn service(app: &TestApp) -> Value {
    let (status, body) = app
        .admin_get(&format!("/admin/api/services/{MINI_APP}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn run_pipeline(app: &TestApp) {
    for _ in 0..6 {
        app.services.run_pipeline(50).await.unwrap();
    }
}

/// Calls made for the mini program's build (with the merchant's token).
fn build_calls(app: &TestApp) -> usize {
    app.alipay
        .calls()
        .iter()
        .filter(|c| c.method.starts_with("alipay.open.mini.version."))
        .count()
}

fn calls(app: &TestApp, method: &str) -> usize {
    app.alipay
        .calls()
        .iter()
        .filter(|c| c.method == method)
        .count()
}

fn audit_passed(notify_id: &str, version: &str, at_ms: i64) -> String {
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id.to_string()),
        (
            "msg_method",
            "alipay.open.mini.version.audit.passed".to_string(),
        ),
        ("app_id", common::APP_ID.into()),
        ("version", "1.1".into()),
        ("charset", "UTF-8".into()),
        ("sign_type", "RSA2".into()),
        ("utc_timestamp", at_ms.to_string()),
        (
            "biz_content",
            format!("{{\"mini_app_id\":\"{MINI_APP}\",\"mini_app_version\":\"{version}\"}}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

/// Builds `version` through audit and online: the service goes live.
async fn build_goes_live(app: &TestApp, version: &str) {
    run_pipeline(app).await;
    let s = service(app).await;
    assert_eq!(s["build"]["app_version"], version, "{s}");
    assert_eq!(s["build"]["step"], "await_audit", "{s}");
    let notice = audit_passed(&format!("n-audit-{version}"), version, app.clock_now_ms());
    assert_eq!(app.post_notify(notice).await.1, "success");
    app.run_pending_jobs().await;
    run_pipeline(app).await;
    let s = service(app).await;
    assert_eq!(s["build"]["step"], "done", "{s}");
    assert_eq!(s["status"], "live", "{s}");
}

fn states(service: &Value) -> Vec<(String, String)> {
    service["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["commodity_order_id"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Beijing wall time of `t`, as Alipay writes item dates.
fn beijing(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn alerts_of(app: &TestApp, kind: &str) -> Vec<Value> {
    app.alipay
        .alerts()
        .into_iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

fn history_causes(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["cause"].as_str().unwrap().to_string())
        .collect()
}

// ---- renewal, then its refund ----------------------------------------------------------------

async fn a_refunded_renewal_leaves_the_service_live_on_the_first_period(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    paid_order(&app, "P1", Some("365")).await;
    build_goes_live(&app, "0.0.1").await;
    let uploads = calls(&app, "alipay.open.mini.version.upload");
    assert_eq!(uploads, 1);

    // 续订: a second paid order for the same mini program extends the live service.
    app.clock.advance(Duration::days(10));
    paid_order(&app, "R1", Some("365")).await;
    run_pipeline(&app).await;
    let s = service(&app).await;
    assert_eq!(s["status"], "live", "{s}");
    assert_eq!(states(&s), pairs(&[("P1", "active"), ("R1", "active")]));
    // Without item dates the renewal runs from the end of the first period, period_day long.
    let p1_end = time(&s["periods"][0]["ends_at"]);
    assert_eq!(time(&s["periods"][1]["starts_at"]), p1_end);
    assert_eq!(
        time(&s["periods"][1]["ends_at"]),
        p1_end + Duration::days(365)
    );
    assert_eq!(time(&s["expires_at"]), p1_end + Duration::days(365));
    // Its order reaches 待商家确认 only through an audit, so it gets a build of its own, after
    // the first (never beside it); the live version stays online meanwhile.
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 2);
    assert_eq!(s["build"]["app_version"], "0.0.2", "{s}");
    assert_eq!(s["build"]["step"], "await_audit", "{s}");

    // The merchant refunds the renewal: that period only ends.
    refund(&app, "R1").await;
    let s = service(&app).await;
    assert_eq!(s["status"], "live", "{s}");
    assert_eq!(s["termination_cause"], Value::Null);
    assert_eq!(states(&s), pairs(&[("P1", "active"), ("R1", "refunded")]));
    // The refunded renewal's own build stops; the first one stays online.
    assert_eq!(s["build"]["app_version"], "0.0.2", "{s}");
    assert_eq!(s["build"]["step"], "cancelled", "{s}");
    let calls_before = build_calls(&app);
    app.clock.advance(Duration::hours(2));
    run_pipeline(&app).await;
    assert_eq!(
        build_calls(&app),
        calls_before,
        "no call for the refunded renewal's build"
    );
    // The service now runs out at the first period's end; the expiry row moved back to P1.
    assert_eq!(time(&s["expires_at"]), p1_end);
    let p1 = order(&app, "P1").await;
    let expiry: Vec<&Value> = p1["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "service_expiry" && d["state"] == "pending")
        .collect();
    assert_eq!(expiry.len(), 1, "{p1}");
    assert_eq!(time(&expiry[0]["due_at"]), p1_end);
    let r1 = order(&app, "R1").await;
    assert!(
        history_causes(&r1).iter().any(|c| c == "period_closed"),
        "{r1}"
    );
    assert_eq!(r1["service"]["status"], "live");
    app.stop().await;
}
with_template!(
    a_refunded_renewal_leaves_the_service_live_on_the_first_period,
    a_refunded_renewal_leaves_the_service_live_on_the_first_period
);

async fn a_renewal_never_starts_a_second_build(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    paid_order(&app, "P2", Some("365")).await;
    app.services.run_pipeline(50).await.unwrap();
    let s = service(&app).await;
    assert_eq!(s["status"], "provisioning");
    assert_eq!(s["build"]["app_version"], "0.0.1");
    // Renewed while the first build is still underway: the same build serves both periods.
    paid_order(&app, "R2", Some("365")).await;
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 1);
    let r2 = order(&app, "R2").await;
    assert_eq!(r2["build"]["app_version"], "0.0.1", "{r2}");
    assert!(
        !history_causes(&r2).iter().any(|c| c == "build_started"),
        "{r2}"
    );
    app.stop().await;
}
with_template!(
    a_renewal_never_starts_a_second_build,
    a_renewal_never_starts_a_second_build
);

// ---- refund during the build, then a re-order -------------------------------------------------

async fn a_re_order_after_a_refund_reopens_the_service(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    paid_order(&app, "P3", Some("365")).await;
    // Two passes: Alipay's version list read, then uploaded; build.query next.
    app.services.run_pipeline(50).await.unwrap();
    app.services.run_pipeline(50).await.unwrap();
    assert_eq!(service(&app).await["build"]["step"], "build_query");

    // The merchant refunds during the build: the service ends, the build stops at once.
    refund(&app, "P3").await;
    let s = service(&app).await;
    assert_eq!(s["status"], "terminated", "{s}");
    assert_eq!(s["termination_cause"], "refunded");
    assert_eq!(s["build"]["step"], "cancelled", "{s}");
    assert_eq!(states(&s), pairs(&[("P3", "refunded")]));
    assert_eq!(s["expires_at"], Value::Null);
    let before = build_calls(&app);
    app.clock.advance(Duration::hours(1));
    run_pipeline(&app).await;
    app.tick().await;
    assert_eq!(build_calls(&app), before, "no build call after the refund");

    // 再次订购: a new paid order reopens the service, and a new build starts for it.
    app.clock.advance(Duration::days(2));
    paid_order(&app, "C3", Some("365")).await;
    let s = service(&app).await;
    assert_eq!(s["status"], "provisioning", "{s}");
    assert_eq!(s["termination_cause"], Value::Null);
    assert_eq!(states(&s), pairs(&[("P3", "refunded"), ("C3", "active")]));
    let c3 = order(&app, "C3").await;
    assert!(
        history_causes(&c3).iter().any(|c| c == "service_reopened"),
        "{c3}"
    );
    build_goes_live(&app, "0.0.2").await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), 2);
    let c3 = order(&app, "C3").await;
    assert_eq!(c3["service"]["status"], "live");
    app.stop().await;
}
with_template!(
    a_re_order_after_a_refund_reopens_the_service,
    a_re_order_after_a_refund_reopens_the_service
);

// ---- support termination during the build ----------------------------------------------------

async fn a_service_support_terminated_builds_nothing_and_warns_no_more(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    paid_order(&app, "S1", Some("365")).await;
    // Alipay's version list read, then uploaded.
    app.services.run_pipeline(50).await.unwrap();
    app.services.run_pipeline(50).await.unwrap();
    // A renewal paid while the first build runs: no build of its own yet.
    paid_order(&app, "S2", Some("365")).await;
    assert_eq!(service(&app).await["build"]["step"], "build_query");

    let (status, body) = app
        .admin_post(
            "/admin/api/orders/S1/terminate",
            r#"{"reason": "merchant asked"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let s = service(&app).await;
    assert_eq!(s["status"], "terminated", "{s}");
    assert_eq!(s["termination_cause"], "support");
    assert_eq!(s["build"]["step"], "cancelled");
    assert_eq!(
        states(&s),
        pairs(&[("S1", "cancelled"), ("S2", "cancelled")])
    );
    // Ending the service cancelled, at once, every expiry row and implementation warning of
    // each of its orders (not only the terminated one's).
    for id in ["S1", "S2"] {
        let o = order(&app, id).await;
        let timers: Vec<(&str, &str)> = o["deadlines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["kind"].as_str().unwrap(), d["state"].as_str().unwrap()))
            .filter(|(kind, _)| kind.starts_with("warning_") || kind.starts_with("service_expiry"))
            .collect();
        assert!(
            timers.iter().any(|(kind, _)| *kind == "service_expiry")
                && timers.iter().any(|(kind, _)| kind.starts_with("warning_")),
            "{id}: {timers:?}"
        );
        assert!(
            timers.iter().all(|(_, state)| *state == "cancelled"),
            "{id}: {timers:?}"
        );
    }

    // However long it runs: no build call, and no new build for the renewal either.
    let before = build_calls(&app);
    for _ in 0..3 {
        app.clock.advance(Duration::hours(1));
        run_pipeline(&app).await;
    }
    assert_eq!(build_calls(&app), before);
    let s2 = order(&app, "S2").await;
    assert!(
        !history_causes(&s2).iter().any(|c| c == "build_started"),
        "{s2}"
    );
    // The orders stay implementing (Alipay's to cancel), but raise no implementation warning.
    app.clock.advance(Duration::days(28));
    app.tick().await;
    for id in ["S1", "S2"] {
        let o = order(&app, id).await;
        assert!(
            !history_causes(&o)
                .iter()
                .any(|c| c == "implementation_warning"),
            "{o}"
        );
        assert!(
            o["deadlines"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str().unwrap().starts_with("warning_"))
                .all(|d| d["state"] == "cancelled"),
            "{o}"
        );
    }
    assert!(alerts_of(&app, "implementation_deadline_warning").is_empty());
    app.stop().await;
}
with_template!(
    a_service_support_terminated_builds_nothing_and_warns_no_more,
    a_service_support_terminated_builds_nothing_and_warns_no_more
);

// ---- expiry -----------------------------------------------------------------------------------

async fn the_service_expires_when_its_last_period_ends_warned_7_days_before(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    let start = app.clock.now();
    // Item dates (Beijing time) decide the period: 12 days.
    app.alipay
        .set_order_dates("E1", &beijing(start), &beijing(start + Duration::days(12)));
    paid_order(&app, "E1", Some("365")).await;
    let s = service(&app).await;
    assert_eq!(time(&s["periods"][0]["starts_at"]), start);
    assert_eq!(time(&s["expires_at"]), start + Duration::days(12));

    // The warning goes out 7 days before the end: not earlier.
    app.clock.advance(Duration::days(5) - Duration::minutes(1));
    app.tick().await;
    assert!(alerts_of(&app, "service_expiry_warning").is_empty());
    app.clock.advance(Duration::minutes(1));
    app.tick().await;
    let warned = alerts_of(&app, "service_expiry_warning");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["subject"], MINI_APP);
    let e1 = order(&app, "E1").await;
    assert!(
        history_causes(&e1)
            .iter()
            .any(|c| c == "service_expiry_warning"),
        "{e1}"
    );
    let metrics = app.admin_get_text("/metrics").await;
    assert!(
        metrics.contains("isv_service_expiry_warnings_total 1"),
        "{metrics}"
    );

    // A renewal (day 6) with its own item dates moves the expiry to its end.
    app.clock.advance(Duration::days(1));
    app.alipay.set_order_dates(
        "E2",
        &beijing(start + Duration::days(12)),
        &beijing(start + Duration::days(25)),
    );
    paid_order(&app, "E2", Some("365")).await;
    let s = service(&app).await;
    assert_eq!(time(&s["expires_at"]), start + Duration::days(25));
    // Day 12: the first period ran out, the service runs on the renewal.
    app.clock
        .set(start + Duration::days(12) + Duration::minutes(1));
    app.tick().await;
    let s = service(&app).await;
    assert_ne!(s["status"], "expired", "{s}");
    assert_eq!(states(&s), pairs(&[("E1", "ended"), ("E2", "active")]));
    // Day 18: warned again, for the new end.
    app.clock.set(start + Duration::days(18));
    app.tick().await;
    assert_eq!(alerts_of(&app, "service_expiry_warning").len(), 2);
    // Day 25: the last period ends, the service expires, its build stops.
    app.clock.set(start + Duration::days(25));
    app.tick().await;
    let s = service(&app).await;
    assert_eq!(s["status"], "expired", "{s}");
    assert_eq!(s["termination_cause"], "expired");
    assert_eq!(states(&s), pairs(&[("E1", "ended"), ("E2", "ended")]));
    let e2 = order(&app, "E2").await;
    assert_eq!(e2["service"]["status"], "expired");
    assert!(
        history_causes(&e2)
            .iter()
            .any(|c| c == "service_terminated:expired"),
        "{e2}"
    );
    app.stop().await;
}
with_template!(
    the_service_expires_when_its_last_period_ends_warned_7_days_before,
    the_service_expires_when_its_last_period_ends_warned_7_days_before
);

// ---- bad item dates ---------------------------------------------------------------------------

async fn unreadable_item_dates_alert_and_fall_back_to_period_day(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    let start = app.clock.now();
    app.alipay
        .set_order_dates("D1", "next spring", "2025-13-45 00:00:00");
    paid_order(&app, "D1", Some("30")).await;
    let s = service(&app).await;
    assert_eq!(s["status"], "provisioning", "{s}");
    assert_eq!(states(&s), pairs(&[("D1", "active")]));
    let starts = time(&s["periods"][0]["starts_at"]);
    assert_eq!(starts, start);
    assert_eq!(
        time(&s["periods"][0]["ends_at"]),
        start + Duration::days(30)
    );
    // Stored as received, and support is told once.
    let mut conn = app.services.pool.get().unwrap();
    let facts = isv_lifecycle::store::periods::order_facts(&mut conn, "D1")
        .unwrap()
        .unwrap();
    drop(conn);
    assert_eq!(facts.service_effect_date.as_deref(), Some("next spring"));
    assert_eq!(
        facts.service_expire_date.as_deref(),
        Some("2025-13-45 00:00:00")
    );
    assert_eq!(facts.period_day, Some(30));
    let alerts = alerts_of(&app, "unreadable_service_dates");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["subject"], "D1");
    reconcile(&app, "D1").await;
    assert_eq!(alerts_of(&app, "unreadable_service_dates").len(), 1);
    // A bad date never ends the service.
    assert_eq!(service(&app).await["status"], "provisioning");

    // Alipay's dates read later: the open period takes them, and its expiry row moves.
    app.alipay
        .set_order_dates("D1", &beijing(start), &beijing(start + Duration::days(20)));
    reconcile(&app, "D1").await;
    let s = service(&app).await;
    assert_eq!(
        time(&s["periods"][0]["ends_at"]),
        start + Duration::days(20)
    );
    assert_eq!(time(&s["expires_at"]), start + Duration::days(20));
    let d1 = order(&app, "D1").await;
    let pending: Vec<DateTime<Utc>> = d1["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "service_expiry" && d["state"] == "pending")
        .map(|d| time(&d["due_at"]))
        .collect();
    assert_eq!(pending, [start + Duration::days(20)], "{d1}");
    assert_eq!(alerts_of(&app, "unreadable_service_dates").len(), 1);
    app.stop().await;
}
with_template!(
    unreadable_item_dates_alert_and_fall_back_to_period_day,
    unreadable_item_dates_alert_and_fall_back_to_period_day
);

// ---- the web page -----------------------------------------------------------------------------

async fn signed_in_get(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

async fn the_order_page_links_to_its_service_and_its_periods(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    paid_order(&app, "W1", Some("365")).await;
    paid_order(&app, "W2", Some("365")).await;
    refund(&app, "W2").await;

    app.services
        .add_operator("frank", "correct horse battery")
        .await
        .unwrap();
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/admin/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=frank&password=correct+horse+battery")
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let (status, html) = signed_in_get(&app, &cookie, "/admin/orders/W1").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&format!(
            r#"<a id="service-link" href="/admin/services/{MINI_APP}">"#
        )),
        "{html}"
    );
    // The order page shows the service's periods and when it expires.
    assert!(html.contains(r#"<table id="service-periods">"#), "{html}");
    assert!(
        html.contains(r#"<a href="/admin/orders/W2">W2</a>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<span id="service-expires"><time"#),
        "{html}"
    );
    let (status, html) = signed_in_get(&app, &cookie, &format!("/admin/services/{MINI_APP}")).await;
    assert_eq!(status, 200, "{html}");
    for needle in [
        r#"<td id="service-status">provisioning</td>"#,
        r#"<a href="/admin/orders/W1">W1</a>"#,
        r#"<a href="/admin/orders/W2">W2</a>"#,
        r#"<td class="period-state">active</td>"#,
        r#"<td class="period-state">refunded</td>"#,
    ] {
        assert!(html.contains(needle), "{needle} missing from {html}");
    }
    let (status, _) = signed_in_get(&app, &cookie, "/admin/services/2021000000000000").await;
    assert_eq!(status, 404);
    // Signed out: to the sign-in page.
    let (status, _) = signed_in_get(&app, "", &format!("/admin/services/{MINI_APP}")).await;
    assert_eq!(status, 303);
    app.stop().await;
}
with_template!(
    the_order_page_links_to_its_service_and_its_periods,
    the_order_page_links_to_its_service_and_its_periods
);

// ---- support's retry after a rejected audit -----------------------------------------------------

fn audit_rejected(notify_id: &str, version: &str) -> String {
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id.to_string()),
        (
            "msg_method",
            "alipay.open.mini.version.audit.rejected".to_string(),
        ),
        ("app_id", common::APP_ID.into()),
        ("version", "1.1".into()),
        ("charset", "UTF-8".into()),
        ("sign_type", "RSA2".into()),
        (
            "biz_content",
            format!(
                "{{\"mini_app_id\":\"{MINI_APP}\",\"mini_app_version\":\"{version}\",\"audit_reason\":\"截图不清晰\"}}"
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

async fn no_retried_build_for_a_service_that_ended(db: Db) {
    let app = app_with_template(db).await;
    authorize(&app).await;
    paid_order(&app, "Q1", Some("365")).await;
    run_pipeline(&app).await;
    assert_eq!(
        app.post_notify(audit_rejected("n-reject-q1", "0.0.1"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    assert_eq!(service(&app).await["build"]["step"], "rejected");
    // Refunded while the build waits for support: the service ends.
    refund(&app, "Q1").await;
    assert_eq!(service(&app).await["status"], "terminated");
    let uploads = calls(&app, "alipay.open.mini.version.upload");
    let (status, body) = app
        .admin_post(&format!("/admin/api/builds/{MINI_APP}/retry"), "")
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "invalid_transition");
    run_pipeline(&app).await;
    assert_eq!(calls(&app, "alipay.open.mini.version.upload"), uploads);
    let s = service(&app).await;
    assert_eq!(s["build"]["app_version"], "0.0.1", "{s}");
    app.stop().await;
}
with_template!(
    no_retried_build_for_a_service_that_ended,
    no_retried_build_for_a_service_that_ended
);
