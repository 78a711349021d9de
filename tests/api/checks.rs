//! Issue 12, items 7 and 8: every active authorization's token checked with
//! `alipay.open.auth.token.app.query` (daily job and `POST .../check`), and reconciliation and
//! those checks on one replica at a time (two `Services` on one database = two replicas).

use crate::common::fake_alipay::Reply;
use crate::common::{self, Db};
use crate::helpers::{self, TestApp};
use isv_lifecycle::config::Prepared;
use isv_lifecycle::service::Services;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

const MINI_APP: &str = "2021004199990002";
const TOKEN: &str = "202406BBd4f3a7c9e2b84a5f9c1e6d7a8b9c0X51";
const TOKEN_QUERY: &str = "alipay.open.auth.token.app.query";
const ORDER_QUERY: &str = "alipay.open.servicemarket.order.query";

/// The merchant's authorization (vector N035, mini program `MINI_APP`) and a free order of it.
async fn authorized_order(app: &TestApp, id: &str) {
    app.grant_merchant_authorization().await;
    free_order(app, id).await;
}

async fn free_order(app: &TestApp, id: &str) {
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

fn calls(app: &TestApp, method: &str) -> usize {
    app.alipay
        .calls()
        .iter()
        .filter(|c| c.method == method)
        .count()
}

async fn authorization(app: &TestApp) -> Value {
    let (status, a) = app
        .admin_get(&format!("/admin/api/authorizations/{MINI_APP}"))
        .await;
    assert_eq!(status, 200, "{a}");
    a
}

async fn order(app: &TestApp, id: &str) -> Value {
    app.admin_get(&format!("/admin/api/orders/{id}")).await.1
}

/// The token asked about travels in `biz_content`, not as the call's own `app_auth_token`.
fn token_queries_carry_the_token_in_biz_content(app: &TestApp) {
    let queries: Vec<_> = app
        .alipay
        .calls()
        .into_iter()
        .filter(|c| c.method == TOKEN_QUERY)
        .collect();
    assert!(!queries.is_empty());
    for q in queries {
        assert!(q.signature_ok);
        assert_eq!(q.app_auth_token, None);
        let biz: Value = serde_json::from_str(q.biz_content.as_deref().unwrap()).unwrap();
        assert_eq!(biz["app_auth_token"], TOKEN);
    }
}

fn assert_ended_as_cancelled(a: &Value, o: &Value) {
    assert_eq!(a["status"], "cancelled", "{a}");
    assert_eq!(a["token_check_result"], "invalid", "{a}");
    assert_eq!(o["service"]["status"], "terminated", "{o}");
    assert_eq!(
        o["service"]["termination_cause"], "authorization_cancelled",
        "{o}"
    );
}

/// The daily job: `invalid` ends the authorization like `appauth.cancelled` (service terminated
/// as `authorization_cancelled`, token erased: nothing more is asked with it).
async fn daily_check_ends_an_invalid_authorization(app: TestApp) {
    authorized_order(&app, "C1").await;
    app.alipay.set_token_status(TOKEN, "invalid");
    let report = app
        .services
        .check_authorizations_on_one_replica()
        .await
        .unwrap()
        .expect("no other replica holds the check");
    assert_eq!((report.checked, report.ended), (1, 1), "{report:?}");
    token_queries_carry_the_token_in_biz_content(&app);
    assert_ended_as_cancelled(&authorization(&app).await, &order(&app, "C1").await);
    // Ended: no longer active, so the next day's check leaves it alone.
    let report = app
        .services
        .check_authorizations_on_one_replica()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.checked, 0, "{report:?}");
    assert_eq!(calls(&app, TOKEN_QUERY), 1);
    // The token is erased: the route has nothing to ask with.
    let (status, body) = app
        .admin_post(&format!("/admin/api/authorizations/{MINI_APP}/check"), "")
        .await;
    assert_eq!(status, 409, "{body}");
    app.stop().await;
}

/// On demand: the same through `POST /admin/api/authorizations/{auth_app_id}/check`.
async fn check_route_ends_an_invalid_authorization(app: TestApp) {
    authorized_order(&app, "C2").await;
    app.alipay.set_token_status(TOKEN, "invalid");
    let (status, a) = app
        .admin_post(&format!("/admin/api/authorizations/{MINI_APP}/check"), "")
        .await;
    assert_eq!(status, 200, "{a}");
    assert_ended_as_cancelled(&a, &order(&app, "C2").await);
    token_queries_carry_the_token_in_biz_content(&app);
    let (status, _) = app
        .admin_post("/admin/api/authorizations/2021000000000000/check", "")
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// `valid` records the check's time; the authorization and service are untouched.
async fn valid_token_records_the_check(app: TestApp) {
    authorized_order(&app, "C3").await;
    assert_eq!(authorization(&app).await["token_checked_at"], Value::Null);
    let (status, a) = app
        .admin_post(&format!("/admin/api/authorizations/{MINI_APP}/check"), "")
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["status"], "active", "{a}");
    assert_eq!(a["token_check_result"], "valid", "{a}");
    let checked: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(a["token_checked_at"].clone()).unwrap();
    assert_eq!(checked, helpers::start_time());
    assert_ne!(order(&app, "C3").await["service"]["status"], "terminated");
    app.stop().await;
}

/// Alipay not answering keeps the authorization active: counted and shown, never a
/// cancellation. A status outside the table is kept verbatim, alerted, and kept active too.
async fn unanswered_or_unknown_checks_keep_it_active(app: TestApp) {
    authorized_order(&app, "C4").await;
    // Every attempt of the client fails.
    app.alipay
        .script([Reply::Http(502), Reply::Http(502), Reply::Http(502)]);
    let (status, body) = app
        .admin_post(&format!("/admin/api/authorizations/{MINI_APP}/check"), "")
        .await;
    assert_eq!(status, 502, "{body}");
    let a = authorization(&app).await;
    assert_eq!(a["status"], "active", "{a}");
    assert_eq!(a["token_check_result"], "not answered: http_502", "{a}");
    assert_eq!(a["token_checked_at"], Value::Null, "{a}");
    let metrics = app.admin_get_text("/metrics").await;
    assert!(
        metrics.contains("isv_token_check_faults_total 1"),
        "{metrics}"
    );
    app.alipay.set_token_status(TOKEN, "paused");
    let report = app
        .services
        .check_authorizations_on_one_replica()
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.checked, report.unknown), (1, 1), "{report:?}");
    let a = authorization(&app).await;
    assert_eq!(a["status"], "active", "{a}");
    assert_eq!(a["token_check_result"], "paused", "{a}");
    let mut alerted = false;
    for _ in 0..200 {
        alerted = app
            .alipay
            .alerts()
            .iter()
            .any(|a| a["kind"] == "unknown_alipay_status" && a["subject"] == MINI_APP);
        if alerted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(alerted, "{:?}", app.alipay.alerts());
    assert_ne!(order(&app, "C4").await["service"]["status"], "terminated");
    app.stop().await;
}

/// Alipay refusing the token query itself (`20001`) is not `invalid`: the authorization stays
/// active and is flagged for support, as a build flags it.
async fn refused_token_check_flags_and_keeps_active(app: TestApp) {
    authorized_order(&app, "C6").await;
    app.alipay.script([Reply::Error {
        code: "20001",
        sub_code: "aop.invalid-app-auth-token",
    }]);
    let (status, body) = app
        .admin_post(&format!("/admin/api/authorizations/{MINI_APP}/check"), "")
        .await;
    assert_eq!(status, 502, "{body}");
    let a = authorization(&app).await;
    assert_eq!(a["status"], "active", "{a}");
    assert!(
        a["attention"].as_str().is_some_and(|s| s.contains("20001")),
        "{a}"
    );
    assert_eq!(
        a["token_check_result"], "not answered: aop.invalid-app-auth-token",
        "{a}"
    );
    app.stop().await;
}

/// A second replica: its own `Services` (pool, clock handle, clients) on the same database and
/// the same local Alipay.
fn second_replica(app: &TestApp) -> Services {
    let mut settings = helpers::settings(&app.db.url, app.db._dir.path());
    settings.alipay.gateway_url = app.alipay.url.clone();
    settings.alipay.retry_backoff_ms = 1;
    let prepared = Prepared::from_settings(settings, Path::new("config/default.toml")).unwrap();
    let pool = isv_lifecycle::store::connect_pool(&prepared.database, 4).unwrap();
    isv_lifecycle::startup::services(&prepared, pool, Arc::new(app.clock.clone())).unwrap()
}

const OPEN_ORDERS: usize = 6;

/// Two replicas reconciling at the same time make one `order.query` per open order in total;
/// the lease is given back, so the next run (on either) queries each once again.
async fn two_replicas_reconcile_once(app: TestApp) {
    for i in 0..OPEN_ORDERS {
        free_order(&app, &format!("R{i}")).await;
    }
    let other = second_replica(&app);
    let before = calls(&app, ORDER_QUERY);
    // 10 calls a second: a run lasts about half a second, so the two overlap.
    let (a, b) = tokio::join!(
        app.services.reconcile_on_one_replica(10, 2),
        other.reconcile_on_one_replica(10, 2)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        usize::from(a.is_some()) + usize::from(b.is_some()),
        1,
        "exactly one replica ran: {a:?} {b:?}"
    );
    let ran = a.or(b).unwrap();
    assert_eq!(ran.orders, OPEN_ORDERS, "{ran:?}");
    assert_eq!(calls(&app, ORDER_QUERY) - before, OPEN_ORDERS);
    let ids: std::collections::BTreeSet<String> = app
        .alipay
        .calls()
        .iter()
        .filter(|c| c.method == ORDER_QUERY)
        .filter_map(|c| {
            let biz: Value = serde_json::from_str(c.biz_content.as_deref()?).ok()?;
            biz["commodity_order_id"].as_str().map(str::to_string)
        })
        .collect();
    assert_eq!(ids.len(), OPEN_ORDERS, "{ids:?}");
    // The next run is not blocked by the last one's lease.
    let again = other.reconcile_on_one_replica(50, 4).await.unwrap();
    assert_eq!(again.map(|r| r.orders), Some(OPEN_ORDERS));
    assert_eq!(calls(&app, ORDER_QUERY) - before, 2 * OPEN_ORDERS);
    app.stop().await;
}

/// While one replica runs the token checks, another's run does nothing (no token asked about
/// twice); once it is done, the other can run.
async fn token_checks_run_on_one_replica(app: TestApp) {
    authorized_order(&app, "C5").await;
    let other = second_replica(&app);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let services = app.services.clone();
        tokio::spawn(async move {
            services
                .as_one_replica(
                    isv_lifecycle::service::checks::AUTHORIZATION_CHECKS,
                    async move {
                        started_tx.send(()).unwrap();
                        finish_rx.await.unwrap();
                        Ok::<_, isv_lifecycle::store::StoreError>(())
                    },
                )
                .await
        })
    };
    started_rx.await.unwrap();
    let skipped = other.check_authorizations_on_one_replica().await.unwrap();
    assert!(skipped.is_none(), "{skipped:?}");
    assert_eq!(calls(&app, TOKEN_QUERY), 0);
    finish_tx.send(()).unwrap();
    assert_eq!(holder.await.unwrap().unwrap(), Some(()));
    let report = other.check_authorizations_on_one_replica().await.unwrap();
    assert_eq!(report.map(|r| r.checked), Some(1));
    assert_eq!(calls(&app, TOKEN_QUERY), 1);
    app.stop().await;
}

macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        $(mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(TestApp::spawn(Db::Sqlite).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if common::skip_postgres() {
                    return;
                }
                super::$name(TestApp::spawn(Db::Postgres).await).await;
            }
        })+
    };
}

on_both!(
    daily_check_ends_an_invalid_authorization,
    check_route_ends_an_invalid_authorization,
    valid_token_records_the_check,
    unanswered_or_unknown_checks_keep_it_active,
    refused_token_check_flags_and_keeps_active,
    two_replicas_reconcile_once,
    token_checks_run_on_one_replica,
);
