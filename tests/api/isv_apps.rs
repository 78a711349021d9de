//! Several ISV apps (`alipay.apps.<name>`): a second app's messages are verified with its keys and
//! applied, its orders and authorizations record it, and every outbound call for its merchants
//! is made as that app (its `app_id`, signed with its key), checked by a local Alipay that knows
//! each app's public key.

use crate::common::{self, Db};
use crate::helpers::TestApp;
use isv_lifecycle::alipay::{PublicKey, keys};
use serde_json::{Value, json};
use std::sync::Arc;

const SECOND: &str = "2021004100000002";
const UNKNOWN: &str = "2021004100000009";
/// The second app's merchant (its mini program) and the primary app's.
const SECOND_MINI: &str = "2021004199990002";
const PRIMARY_MINI: &str = "2021004199990003";
const TOKEN: &str = "202406BBd4f3a7c9e2b84a5f9c1e6d7a8b9c0X52";

/// A service with a second app (its own freshly generated key pair; Alipay's key for it is the
/// platform test key) and a template, and the local Alipay taught the second app's public key.
async fn two_apps(db: Db) -> (TestApp, tempfile::TempDir) {
    two_apps_with(db, |_| {}).await
}

async fn two_apps_with(
    db: Db,
    adjust: impl FnOnce(&mut isv_lifecycle::config::Settings),
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pair = keys::generate().unwrap();
    let private = dir.path().join("second_app_private.pem");
    std::fs::write(&private, &pair.private_pkcs8_pem).unwrap();
    let app = TestApp::spawn_with(db, |s| {
        s.templates.default_template_id = "2021000000000009".into();
        s.templates.build_poll_seconds = 10;
        let second = isv_lifecycle::config::IsvAppSettings {
            app_id: SECOND.into(),
            app_private_key_file: private.display().to_string(),
            alipay_public_key_file: s.alipay.alipay_public_key_file.clone(),
            aes_key: secrecy::SecretString::from(String::new()),
            app_cert_file: String::new(),
            alipay_cert_file: String::new(),
            alipay_root_cert_file: String::new(),
        };
        s.alipay.apps.insert("second".into(), second);
        adjust(s);
    })
    .await;
    app.alipay
        .add_app(SECOND, PublicKey::parse(&pair.public_spki_pem).unwrap());
    (app, dir)
}

/// A grant of `mini_app_id` to ISV app `app_id`, signed by the platform key.
fn grant(app_id: &str, notify_id: &str, mini_app_id: &str) -> String {
    let at_ms = 1718000000000i64;
    let biz = json!({"detail": {"app_auth_token": TOKEN, "app_refresh_token": format!("{TOKEN}R"),
        "auth_app_id": mini_app_id, "user_id": "2088102177846880", "auth_time": at_ms,
        "expires_in": 31536000, "re_expires_in": 32140800}});
    common::authorization_notification(app_id, notify_id, at_ms, &biz)
}

fn order(app_id: &str, id: &str, mini_app_id: &str, price: &str) -> String {
    common::order_notification_for(
        &common::platform_private_key(),
        app_id,
        id,
        &format!("n-{id}"),
        price,
        mini_app_id,
    )
}

fn state_of(app: &TestApp, notify_id: &str) -> String {
    app.message_states()
        .into_iter()
        .find(|(_, n, _)| n == notify_id)
        .map(|(_, _, s)| s)
        .unwrap_or_else(|| format!("{notify_id} not stored"))
}

/// The calls of `method`, as (app_id, signature verified with that app's key).
fn calls(app: &TestApp, method: &str) -> Vec<(String, bool)> {
    app.alipay
        .calls()
        .into_iter()
        .filter(|c| c.method == method)
        .map(|c| (c.app_id.unwrap_or_default(), c.signature_ok))
        .collect()
}

const ORDER_QUERY: &str = "alipay.open.servicemarket.order.query";

async fn a_second_apps_order_is_applied_and_queried_as_that_app(db: Db) {
    let (app, _keys) = two_apps(db).await;
    for body in [
        order(SECOND, "S1", SECOND_MINI, "99.00"),
        order(common::APP_ID, "P1", PRIMARY_MINI, "99.00"),
        order(UNKNOWN, "U1", PRIMARY_MINI, "99.00"),
    ] {
        assert_eq!(app.post_notify(body).await, (200, "success".into()));
    }
    assert_eq!(app.run_pending_jobs().await, 2);
    assert_eq!(state_of(&app, "n-S1"), "applied");
    assert_eq!(state_of(&app, "n-P1"), "applied");
    // An app id we do not serve: verified, stored, quarantined, never applied.
    assert_eq!(state_of(&app, "n-U1"), "quarantined");
    assert_eq!(app.admin_get("/admin/api/orders/U1").await.0, 404);

    let (_, s1) = app.admin_get("/admin/api/orders/S1").await;
    assert_eq!(s1["isv_app_id"], SECOND, "{s1}");
    let (_, p1) = app.admin_get("/admin/api/orders/P1").await;
    assert_eq!(p1["isv_app_id"], common::APP_ID, "{p1}");
    assert_eq!(
        p1["status"], s1["status"],
        "both apps' orders follow the same rules"
    );

    // order.query for each order goes out as its app, signed with its key.
    app.alipay.set_order("S1", "MERCHANT_PAID", &["DOING"]);
    let (code, o) = app.admin_post("/admin/api/orders/S1/reconcile", "").await;
    assert_eq!(
        (code, o["status"].as_str()),
        (200, Some("implementing")),
        "{o}"
    );
    assert_eq!(calls(&app, ORDER_QUERY), vec![(SECOND.to_string(), true)]);
    app.alipay.set_order("P1", "MERCHANT_PAID", &["DOING"]);
    let (code, o) = app.admin_post("/admin/api/orders/P1/reconcile", "").await;
    assert_eq!(
        (code, o["status"].as_str()),
        (200, Some("implementing")),
        "{o}"
    );
    assert_eq!(
        calls(&app, ORDER_QUERY),
        vec![
            (SECOND.to_string(), true),
            (common::APP_ID.to_string(), true)
        ]
    );

    // The second app no longer configured: its order is never queried as the primary app.
    let mut without = app.services.clone();
    let mut apps = (*without.apps).clone();
    apps.others.clear();
    without.apps = Arc::new(apps);
    let err = without.reconcile_order(&"S1".into()).await.unwrap_err();
    assert!(err.to_string().contains(SECOND), "{err}");
    assert_eq!(calls(&app, ORDER_QUERY).len(), 2, "no call was made");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apps_order_is_applied_and_queried_as_that_app_sqlite() {
    a_second_apps_order_is_applied_and_queried_as_that_app(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apps_order_is_applied_and_queried_as_that_app_postgres() {
    if common::skip_postgres() {
        return;
    }
    a_second_apps_order_is_applied_and_queried_as_that_app(Db::Postgres).await;
}

/// A merchant who authorized the second app: its authorization records the app, and the build
/// and merchant-order calls made with its token go out as the second app.
async fn a_second_apps_merchant_is_served_as_that_app(db: Db) {
    let (app, _keys) = two_apps(db).await;
    assert_eq!(
        app.post_notify(grant(SECOND, "g-second", SECOND_MINI))
            .await,
        (200, "success".into())
    );
    assert_eq!(
        app.post_notify(order(SECOND, "S2", SECOND_MINI, "0.00"))
            .await
            .1,
        "success"
    );
    assert_eq!(app.run_pending_jobs().await, 2);
    let (_, auth) = app
        .admin_get(&format!("/admin/api/authorizations/{SECOND_MINI}"))
        .await;
    assert_eq!(
        (auth["status"].as_str(), auth["isv_app_id"].as_str()),
        (Some("active"), Some(SECOND)),
        "{auth}"
    );

    for _ in 0..6 {
        app.services.run_pipeline(50).await.unwrap();
    }
    let builds: Vec<_> = app
        .alipay
        .calls()
        .into_iter()
        .filter(|c| c.method.starts_with("alipay.open.mini.version."))
        .collect();
    assert!(builds.len() >= 3, "{builds:?}");
    assert!(
        builds.iter().all(|c| c.app_id.as_deref() == Some(SECOND)
            && c.signature_ok
            && c.app_auth_token.as_deref() == Some(TOKEN)),
        "{builds:?}"
    );

    let sync = json!({
        "out_biz_no": "M1", "buyer_open_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5",
        "order_type": "service_order", "order_create_time": "2024-06-10 10:00:00",
        "order_modified_time": "2024-06-10 10:05:00.000", "amount": "30.00",
        "item_order_list": [{"item_name": "测试店 洗剪吹", "quantity": 1, "unit_price": "30.00",
            "ext_info": [{"ext_key": "image_material_id", "ext_value": "2024060100000001"}]}],
        "ext_info": [
            {"ext_key": "merchant_order_status", "ext_value": "closed"},
            {"ext_key": "merchant_biz_type", "ext_value": "to_shop"},
            {"ext_key": "merchant_order_link_page", "ext_value": "/pages/order/detail?id=M1"},
            {"ext_key": "tiny_app_id", "ext_value": SECOND_MINI},
            {"ext_key": "business_info", "ext_value": json!({
                "book_item": "洗剪吹", "start_time": "2024-06-11 10:00:00", "end_time": "2024-06-11 11:00:00",
                "shop_name": "测试店", "shop_phone": "0571-88888888", "address": "杭州市西湖区",
                "change_time": "2024-06-11 12:00:00"}).to_string()},
        ],
    });
    let (status, answer) = app
        .api_post("/api/merchant-orders/sync", &sync.to_string())
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(app.deliver().await, 1);
    let synced: Vec<(String, bool)> = calls(&app, "alipay.merchant.order.sync");
    assert_eq!(synced, vec![(SECOND.to_string(), true)]);
    let (_, delivered): (u16, Value) = app
        .api_get(&format!("/api/merchant-orders/{SECOND_MINI}/M1"))
        .await;
    assert_eq!(delivered["delivery"], "delivered", "{delivered}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apps_merchant_is_served_as_that_app_sqlite() {
    a_second_apps_merchant_is_served_as_that_app(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apps_merchant_is_served_as_that_app_postgres() {
    if common::skip_postgres() {
        return;
    }
    a_second_apps_merchant_is_served_as_that_app(Db::Postgres).await;
}

const PRIMARY_AES: &str = "AAECAwQFBgcICQoLDA0ODw==";
const SECOND_AES: &str = "EBESExQVFhcYGRobHB0eHw==";

/// Each app's AES messages are decrypted with its own key: the second app's with
/// `alipay.apps.second.aes_key`, never the primary app's.
async fn each_app_decrypts_with_its_own_aes_key(db: Db) {
    let (app, _keys) = two_apps_with(db, |s| {
        s.alipay.aes_key = secrecy::SecretString::from(PRIMARY_AES);
        if let Some(second) = s.alipay.apps.get_mut("second") {
            second.aes_key = secrecy::SecretString::from(SECOND_AES);
        }
    })
    .await;
    assert_eq!(
        app.post_notify(grant(SECOND, "g-aes", SECOND_MINI)).await.1,
        "success"
    );
    // Addressed to the second app but encrypted with the primary app's key: it does not read.
    assert_eq!(
        app.post_notify(common::aes_cancellation(
            SECOND,
            PRIMARY_AES,
            "c-wrong",
            SECOND_MINI
        ))
        .await
        .1,
        "success"
    );
    app.run_pending_jobs().await;
    assert_eq!(state_of(&app, "g-aes"), "applied");
    assert_eq!(state_of(&app, "c-wrong"), "failed");
    let (_, auth) = app
        .admin_get(&format!("/admin/api/authorizations/{SECOND_MINI}"))
        .await;
    assert_eq!(auth["status"], "active", "{auth}");
    // With the second app's key: applied.
    assert_eq!(
        app.post_notify(common::aes_cancellation(
            SECOND,
            SECOND_AES,
            "c-right",
            SECOND_MINI
        ))
        .await
        .1,
        "success"
    );
    app.run_pending_jobs().await;
    assert_eq!(state_of(&app, "c-right"), "applied");
    let (_, auth) = app
        .admin_get(&format!("/admin/api/authorizations/{SECOND_MINI}"))
        .await;
    assert_eq!(auth["status"], "cancelled", "{auth}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_decrypts_with_its_own_aes_key_sqlite() {
    each_app_decrypts_with_its_own_aes_key(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_decrypts_with_its_own_aes_key_postgres() {
    if common::skip_postgres() {
        return;
    }
    each_app_decrypts_with_its_own_aes_key(Db::Postgres).await;
}
