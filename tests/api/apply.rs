//! Applying stored messages: orders in their first state, authorizations newest-first, and
//! failures that do not block the queue.

use crate::both_backends;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use isv_lifecycle::alipay::notify;
use std::sync::atomic::Ordering::Relaxed;

fn vector(id: &str) -> serde_json::Value {
    common::vectors("notifications.jsonl")
        .into_iter()
        .find(|v| v["id"] == id)
        .unwrap()
}

async fn order_notification_creates_the_order(app: TestApp) {
    // N027 as the official SDK signed it carries no `app_id`: verified, but not addressed to our
    // app, so it is quarantined and nothing is applied.
    assert_eq!(
        app.post_notify(vector("N027")["body"].as_str().unwrap())
            .await
            .1,
        "success"
    );
    assert_eq!(app.run_pending_jobs().await, 0);
    let n027 = vector("N027");
    let notify_id = n027["params"]["notify_id"].as_str().unwrap().to_string();
    assert!(
        app.message_states()
            .iter()
            .any(|(_, n, state)| *n == notify_id && state == "quarantined"),
        "{:?}",
        app.message_states()
    );
    let (status, _) = app
        .admin_get("/admin/api/orders/2024061000000000000001")
        .await;
    assert_eq!(status, 404);
    // The same content addressed to our app is applied.
    let mut params: Vec<(String, String)> = n027["params"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "sign")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    params.push(("app_id".into(), common::APP_ID.into()));
    params.retain(|(k, _)| k != "notify_id");
    params.push(("notify_id".into(), format!("{notify_id}-ours")));
    let body = notify::sign_message(&params, &common::platform_private_key());
    assert_eq!(app.post_notify(body).await.1, "success");
    assert_eq!(app.run_pending_jobs().await, 1);
    let (status, order) = app
        .admin_get("/admin/api/orders/2024061000000000000001")
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "awaiting_payment");
    assert_eq!(order["cancel_reason"], serde_json::Value::Null);
    assert_eq!(order["mini_app_id"], "2021004199990002");
    // order_time 2024-06-10 13:01:00 is Beijing time: 05:01 UTC, and three days to pay.
    assert_eq!(order["ordered_at"], "2024-06-10T05:01:00Z");
    // The notice queues an order.query at once (issue 12), then three days to pay.
    assert_eq!(order["deadlines"][0]["kind"], "query_alipay");
    assert_eq!(order["deadlines"][0]["state"], "pending");
    assert_eq!(order["deadlines"][1]["kind"], "payment");
    assert_eq!(order["deadlines"][1]["due_at"], "2024-06-13T05:01:00Z");
    assert_eq!(order["deadlines"][1]["state"], "pending");
    let history = order["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["to_status"], "awaiting_payment");
    assert_eq!(history[0]["actor"], "alipay");
    assert_eq!(history[0]["cause"], "order_notification");

    // A free order starts in implementation with its 30-day deadline.
    let key = common::platform_private_key();
    app.post_notify(common::order_notification(&key, "FREE1", "n-free", "0.00"))
        .await;
    app.run_pending_jobs().await;
    let (_, free) = app.admin_get("/admin/api/orders/FREE1").await;
    assert_eq!(free["status"], "implementing");
    let due = |kind: &str| {
        free["deadlines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == kind)
            .map(|d| d["due_at"].clone())
    };
    assert_eq!(due("implementation"), Some("2024-07-10T05:01:00Z".into()));
    // Warnings before the implementation deadline, at 20 and 27 days.
    assert_eq!(due("warning_20"), Some("2024-06-30T05:01:00Z".into()));
    assert_eq!(due("warning_27"), Some("2024-07-07T05:01:00Z".into()));

    let (_, listed) = app.admin_get("/admin/api/orders?status=implementing").await;
    assert_eq!(listed["orders"].as_array().unwrap().len(), 1, "{listed}");
    assert!(listed["orders"][0].get("history").is_none());
    assert_eq!(listed["next_cursor"], serde_json::Value::Null);

    // The same order id for another merchant is quarantined, not applied.
    let conflicting = common::order_notification(&key, "FREE1", "n-conflict", "0.00")
        .replace("2088102177846880", "2088000000000009");
    // (the replace above breaks the signature, so sign a real conflicting message instead)
    assert_eq!(app.post_notify(conflicting).await.1, "fail");
    let params: Vec<(String, String)> = [
        ("notify_id", "n-conflict"),
        ("notify_type", "servicemarket_order_notify"),
        ("app_id", common::APP_ID),
        ("commodity_order_id", "FREE1"),
        ("order_time", "2024-06-10 13:01:00"),
        ("merchant_pid", "2088000000000009"),
        ("total_price", "0.00"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        app.post_notify(notify::sign_message(&params, &key)).await.1,
        "success"
    );
    app.run_pending_jobs().await;
    let states = app.message_states();
    assert!(
        states
            .iter()
            .any(|(_, n, s)| n == "n-conflict" && s == "quarantined"),
        "{states:?}"
    );
    app.stop().await;
}
both_backends!(
    order_notification_creates_the_order,
    order_notification_creates_the_order
);

async fn newest_authorization_wins(app: TestApp) {
    // N035 has auth_time ...004, N033 the older ...002 and arrives late: nothing changes.
    app.post_notify(vector("N035")["body"].as_str().unwrap())
        .await;
    app.run_pending_jobs().await;
    app.post_notify(vector("N033")["body"].as_str().unwrap())
        .await;
    app.run_pending_jobs().await;
    let (status, auth) = app
        .admin_get("/admin/api/authorizations/2021004199990002")
        .await;
    assert_eq!(status, 200, "{auth}");
    assert_eq!(auth["status"], "active");
    assert_eq!(auth["user_id"], "2088102177846880");
    assert_eq!(auth["auth_time"], "2024-06-10T06:13:20.004Z");
    let states = app.message_states();
    assert!(states.iter().all(|(_, _, s)| s == "applied"), "{states:?}");
    app.stop().await;
}
both_backends!(newest_authorization_wins, newest_authorization_wins);

async fn a_failing_message_does_not_block_the_next(app: TestApp) {
    let key = common::platform_private_key();
    // Verified, but its order_time cannot be read: set aside as failed for support.
    let params: Vec<(String, String)> = [
        ("notify_id", "n-bad"),
        ("notify_type", "servicemarket_order_notify"),
        ("app_id", common::APP_ID),
        ("commodity_order_id", "BAD1"),
        ("order_time", "yesterday"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        app.post_notify(notify::sign_message(&params, &key)).await.1,
        "success"
    );
    assert_eq!(
        app.post_notify(common::order_notification(&key, "GOOD1", "n-good", "9.90"))
            .await
            .1,
        "success"
    );
    app.run_pending_jobs().await;
    let states = app.message_states();
    assert_eq!(
        states.iter().find(|(_, n, _)| n == "n-bad").unwrap().2,
        "failed"
    );
    assert_eq!(
        states.iter().find(|(_, n, _)| n == "n-good").unwrap().2,
        "applied"
    );
    let (_, list) = app.admin_get("/admin/api/messages").await;
    let bad = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["notify_id"] == "n-bad")
        .unwrap()
        .clone();
    assert!(
        bad["last_error"].as_str().unwrap().contains("order_time"),
        "{bad}"
    );
    app.stop().await;
}
both_backends!(
    a_failing_message_does_not_block_the_next,
    a_failing_message_does_not_block_the_next
);

/// A chunk is first applied whole without savepoints; a message that fails only once applying
/// has begun (here an authorization whose `auth_time` is out of range, found after the chunk was
/// moved out of `received` and the first order placed) rolls that attempt back, and the chunk is
/// applied again message by message: the failure is recorded, the others are applied once.
async fn a_failure_inside_a_chunk_keeps_the_others_applied_once(app: TestApp) {
    let key = common::platform_private_key();
    let biz = serde_json::json!({"detail": {"app_auth_token": "202406BBa1", "auth_app_id": "2021004100000001",
        "user_id": "2088102177846880", "auth_time": 9_000_000_000_000_000_i64}});
    for body in [
        common::order_notification(&key, "CHUNK1", "n-chunk1", "9.90"),
        common::authorization_notification(common::APP_ID, "n-bad-grant", 1_718_000_000_000, &biz),
        common::order_notification(&key, "CHUNK2", "n-chunk2", "9.90"),
    ] {
        assert_eq!(app.post_notify(body).await.1, "success");
    }
    app.run_pending_jobs().await;
    let state = |notify_id: &str| {
        app.message_states()
            .into_iter()
            .find(|(_, n, _)| n == notify_id)
            .unwrap()
            .2
    };
    assert_eq!(state("n-chunk1"), "applied");
    assert_eq!(state("n-chunk2"), "applied");
    assert_eq!(state("n-bad-grant"), "failed");
    let (_, list) = app.admin_get("/admin/api/messages").await;
    let bad = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["notify_id"] == "n-bad-grant")
        .unwrap()
        .clone();
    assert!(
        bad["last_error"].as_str().unwrap().contains("auth_time"),
        "{bad}"
    );
    for id in ["CHUNK1", "CHUNK2"] {
        let (status, order) = app.admin_get(&format!("/admin/api/orders/{id}")).await;
        assert_eq!(status, 200, "{order}");
        // Placed once: the rolled-back attempt left nothing behind.
        assert_eq!(order["history"].as_array().unwrap().len(), 1, "{order}");
    }
    app.stop().await;
}
both_backends!(
    a_failure_inside_a_chunk_keeps_the_others_applied_once,
    a_failure_inside_a_chunk_keeps_the_others_applied_once
);

fn order_params(charset: &str, id: &str, notify_id: &str) -> Vec<(String, String)> {
    [
        ("notify_id", notify_id),
        ("notify_type", "servicemarket_order_notify"),
        ("app_id", common::APP_ID),
        ("notify_time", "2024-06-10 13:01:00"),
        ("sign_type", "RSA2"),
        ("charset", charset),
        ("version", "1.0"),
        ("commodity_order_id", id),
        ("order_time", "2024-06-10 13:01:00"),
        ("merchant_pid", "2088102177846880"),
        ("total_price", "9.90"),
        ("title", "餐饮小程序模板·基础版"),
        ("name", "张三的面馆"),
        ("consumer_miniAppId", "2021004199990002"),
        ("item_code", "TS0001"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A message signed over GBK bytes (`charset=GBK`) verifies, is applied, and its Chinese text is
/// stored as text, not mojibake; an unknown charset is refused with `fail` and counted.
async fn gbk_order_notice_is_applied_with_its_text_intact(app: TestApp) {
    use isv_lifecycle::alipay::notify::{Charset, sign_message_in};
    let key = common::platform_private_key();
    let body = sign_message_in(&order_params("GBK", "GBK1", "n-gbk"), Charset::Gbk, &key);
    assert!(
        std::str::from_utf8(&form_bytes(&body)).is_err(),
        "really GBK"
    );
    assert_eq!(app.post_notify(body).await.1, "success");
    assert_eq!(app.run_pending_jobs().await, 1);
    let (status, order) = app.admin_get("/admin/api/orders/GBK1").await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "awaiting_payment");
    let mut conn = app.services.pool.get().unwrap();
    let row = isv_lifecycle::store::orders::find(&mut conn, "GBK1")
        .unwrap()
        .unwrap();
    assert_eq!(row.title.as_deref(), Some("餐饮小程序模板·基础版"));
    // The stored (masked) parameters are text too.
    let (_, list) = app.admin_get("/admin/api/messages").await;
    assert!(list.to_string().contains("n-gbk"), "{list}");

    let body = notify::sign_message(&order_params("Big5", "B5", "n-big5"), &key);
    assert_eq!(app.post_notify(body).await.1, "fail");
    assert_eq!(
        app.services.metrics.rejected("unknown_charset"),
        1,
        "counted with its reason"
    );
    assert!(app.message_states().iter().all(|(_, n, _)| n != "n-big5"));
    app.stop().await;
}
both_backends!(
    gbk_order_notice_is_applied_with_its_text_intact,
    gbk_order_notice_is_applied_with_its_text_intact
);

/// The raw bytes of a form body's values, percent-decoded (to show they are not UTF-8).
fn form_bytes(body: &str) -> Vec<u8> {
    let pairs = isv_lifecycle::alipay::form::decode(body.as_bytes()).unwrap();
    pairs.iter().flat_map(|(_, v)| v.to_vec()).collect()
}

const AES_KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";

/// `encrypt_type=AES`: verified over the ciphertext, decrypted with `alipay.aes_key`, applied. One
/// encrypted with another key is stored `failed` with a clear reason, and applies once replayed
/// with the right key.
async fn aes_cancellation_is_applied(db: Db) {
    let app = TestApp::spawn_with(db, |s| {
        s.alipay.aes_key = secrecy::SecretString::from(AES_KEY);
    })
    .await;
    let auth = vector("N035");
    assert_eq!(
        app.post_notify(auth["body"].as_str().unwrap()).await.1,
        "success"
    );
    app.run_pending_jobs().await;
    const AUTH_APP: &str = "2021004199990002";
    let (_, a) = app
        .admin_get(&format!("/admin/api/authorizations/{AUTH_APP}"))
        .await;
    assert_eq!(a["status"], "active", "{a}");

    // Encrypted with a key that is not ours: verified and stored, then failed with its reason.
    let rotated = "ZmVkY2JhOTg3NjU0MzIxMA==";
    assert_eq!(
        app.post_notify(common::aes_cancellation(
            common::APP_ID,
            rotated,
            "n-aes-other",
            AUTH_APP
        ))
        .await
        .1,
        "success"
    );
    app.run_pending_jobs().await;
    let (_, list) = app.admin_get("/admin/api/messages").await;
    let failed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["notify_id"] == "n-aes-other")
        .unwrap()
        .clone();
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["last_error"].as_str().unwrap();
    assert!(reason.contains("alipay.aes_key"), "{reason}");
    let (_, a) = app
        .admin_get(&format!("/admin/api/authorizations/{AUTH_APP}"))
        .await;
    assert_eq!(a["status"], "active", "nothing applied: {a}");

    // Encrypted with our key: applied.
    assert_eq!(
        app.post_notify(common::aes_cancellation(
            common::APP_ID,
            AES_KEY,
            "n-aes",
            AUTH_APP
        ))
        .await
        .1,
        "success"
    );
    assert_eq!(app.run_pending_jobs().await, 1);
    assert!(
        app.message_states()
            .iter()
            .any(|(_, n, s)| n == "n-aes" && s == "applied"),
        "{:?}",
        app.message_states()
    );
    let (_, a) = app
        .admin_get(&format!("/admin/api/authorizations/{AUTH_APP}"))
        .await;
    assert_eq!(a["status"], "cancelled", "{a}");

    // The key fixed (here: the other one configured), the failed message replays and applies.
    let mut fixed = app.services.clone();
    let mut apps = (*fixed.apps).clone();
    apps.primary.aes_key = Some(std::sync::Arc::new(
        isv_lifecycle::alipay::AesKey::parse(rotated).unwrap(),
    ));
    fixed.apps = std::sync::Arc::new(apps);
    fixed
        .replay_message(common::APP_ID, "n-aes-other")
        .await
        .unwrap();
    let pass = fixed.apply_due().await.unwrap();
    assert_eq!(pass.applied, 1, "{pass:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_cancellation_is_applied_sqlite() {
    aes_cancellation_is_applied(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aes_cancellation_is_applied_postgres() {
    if common::skip_postgres() {
        return;
    }
    aes_cancellation_is_applied(Db::Postgres).await;
}

/// Statements sent while applying the messages `bodies` make, each kind in one pass.
async fn statements_to_apply(app: &TestApp, bodies: Vec<String>) -> u64 {
    for body in bodies {
        assert_eq!(app.post_notify(body).await.1, "success");
    }
    let before = app.services.pool.statements().sent.load(Relaxed);
    let pass = app.services.apply_due().await.unwrap();
    assert_eq!((pass.failed, pass.quarantined), (0, 0), "{pass:?}");
    app.services.pool.statements().sent.load(Relaxed) - before
}

/// Issue 15: applying costs PostgreSQL round trips, so each kind of the production mix has a
/// budget of statements per message. Measured as the difference between a pass of 8 and a pass of
/// 4 messages of one kind, so that a pass's own statements (claim, BEGIN, the chunk's move out
/// of `received`, COMMIT) cancel out. SQLite runs in process, where a statement is no round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_message_applies_within_its_statement_budget() {
    if common::skip_postgres() {
        return;
    }
    let app = TestApp::spawn(Db::Postgres).await;
    // A clock with nanoseconds, as in production: PostgreSQL keeps microseconds, and a
    // comparison of what was written with what came back must not see a difference there.
    app.clock
        .advance(chrono::Duration::nanoseconds(123_456_789));
    let key = common::platform_private_key();
    let mut next = 0;
    let mut per_message = |kind: usize| {
        let mut batch = |n: usize| -> Vec<String> {
            (0..n)
                .map(|_| {
                    next += 1;
                    let i = next;
                    let app_id = format!("20210077{i:08}");
                    match kind {
                        0 => common::order_notification(
                            &key,
                            &format!("BUDGET{i:04}"),
                            &format!("n-budget-{i}"),
                            "19.90",
                        ),
                        1 => common::platform_message(
                            &key,
                            "alipay.open.mini.version.audit.passed",
                            &format!("n-budget-{i}"),
                            1_718_000_000_000,
                            &format!(r#"{{"mini_app_id":"{app_id}","mini_app_version":"0.0.1"}}"#),
                        ),
                        _ => common::platform_message(
                            &key,
                            "alipay.open.auth.appauth.cancelled",
                            &format!("n-budget-{i}"),
                            1_718_000_000_000,
                            &format!(
                                r#"{{"auth_app_id":"{app_id}","app_auth_token":"202406BB{i:08}"}}"#
                            ),
                        ),
                    }
                })
                .collect()
        };
        (batch(4), batch(8))
    };
    let mut measured = Vec::new();
    for (kind, budget) in [
        ("order notice", 3),
        ("audit passed", 2),
        ("cancellation", 9),
    ] {
        let (four, eight) = per_message(measured.len());
        let four = statements_to_apply(&app, four).await;
        let eight = statements_to_apply(&app, eight).await;
        let each = (eight - four) as f64 / 4.0;
        measured.push((kind, each, budget));
    }
    for (kind, each, budget) in &measured {
        assert!(
            *each <= f64::from(*budget),
            "{kind}: {each} statements per message, budget {budget} ({measured:?})"
        );
    }
    eprintln!("statements per message: {measured:?}");
    eprintln!(
        "TEMP sent {} prepared {}",
        app.services.pool.statements().sent.load(Relaxed),
        app.services.pool.statements().prepared.load(Relaxed)
    );
    app.stop().await;
}
