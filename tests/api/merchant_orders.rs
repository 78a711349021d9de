//! The merchant-order API and delivery to a local Alipay that checks our request signatures.

use crate::both_backends;
use crate::common::Db;
use crate::common::fake_alipay::Reply;
use crate::helpers::TestApp;
use serde_json::{Value, json};

const TINY_APP: &str = "2021004199990002";
const TOKEN: &str = "202406BBd4f3a7c9e2b84a5f9c1e6d7a8b9c0X51";

/// A complete, valid to_shop sync for `status`, modified at 10:05:00 + `ms` milliseconds.
fn sync(out_biz_no: &str, status: &str, ms: u32) -> Value {
    let business_info = json!({
        "book_item": "洗剪吹", "start_time": "2024-06-11 10:00:00", "end_time": "2024-06-11 11:00:00",
        "shop_name": "测试店", "shop_phone": "0571-88888888", "address": "杭州市西湖区",
        "change_time": "2024-06-11 12:00:00",
    });
    let mut v = json!({
        "out_biz_no": out_biz_no,
        "buyer_open_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5",
        "order_type": "service_order",
        "order_create_time": "2024-06-10 10:00:00",
        "order_modified_time": format!("2024-06-10 10:{:02}:{:02}.{:03}", 5 + ms / 60_000, (ms / 1000) % 60, ms % 1000),
        "amount": "30.00",
        "item_order_list": [{"item_name": "测试店 洗剪吹", "quantity": 1, "unit_price": "30.00",
            "ext_info": [{"ext_key": "image_material_id", "ext_value": "2024060100000001"}]}],
        "ext_info": [
            {"ext_key": "merchant_order_status", "ext_value": status},
            {"ext_key": "merchant_biz_type", "ext_value": "to_shop"},
            {"ext_key": "merchant_order_link_page", "ext_value": format!("/pages/order/detail?id={out_biz_no}")},
            {"ext_key": "tiny_app_id", "ext_value": TINY_APP},
            {"ext_key": "business_info", "ext_value": business_info.to_string()},
        ],
    });
    if status == "paid" {
        v["trade_no"] = json!("2024061022001400000000000001");
    }
    v
}

fn set_ext(v: &mut Value, key: &str, value: &str) {
    for e in v["ext_info"].as_array_mut().unwrap() {
        if e["ext_key"] == key {
            e["ext_value"] = json!(value);
        }
    }
}

async fn authorize(app: &TestApp) {
    app.grant_merchant_authorization().await;
    app.run_pending_jobs().await;
}

async fn every_error_code(app: TestApp) {
    authorize(&app).await;
    let path = "/api/merchant-orders/sync";
    let body = sync("E1", "book_successfully", 0).to_string();

    let unauthorized = app
        .http
        .post(format!("{}{path}", app.address))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let (status, err) = app.api_post(path, "{not json").await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_json")));

    // A required business_info field missing.
    let mut missing = sync("E1", "book_successfully", 0);
    let mut info: Value =
        serde_json::from_str(missing["ext_info"][4]["ext_value"].as_str().unwrap()).unwrap();
    info.as_object_mut().unwrap().remove("shop_name");
    set_ext(&mut missing, "business_info", &info.to_string());
    let (status, err) = app.api_post(path, &missing.to_string()).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"], "missing_field");
    assert_eq!(err["field"], "ext_info.business_info.shop_name");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));

    let mut invalid = sync("E1", "book_successfully", 0);
    invalid["order_create_time"] = json!("2024/06/10");
    let (status, err) = app.api_post(path, &invalid.to_string()).await;
    assert_eq!(
        (status, err["error"].as_str(), err["field"].as_str()),
        (422, Some("invalid_field"), Some("order_create_time"))
    );

    let mut stranger = sync("E9", "book_successfully", 0);
    set_ext(&mut stranger, "tiny_app_id", "2021009999999999");
    let (status, err) = app.api_post(path, &stranger.to_string()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (422, Some("not_authorized")),
        "{err}"
    );

    // closed is final: closed -> paid is refused.
    assert_eq!(
        app.api_post(path, &sync("E2", "closed", 0).to_string())
            .await
            .0,
        202
    );
    let (status, err) = app
        .api_post(path, &sync("E2", "paid", 1000).to_string())
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (422, Some("invalid_transition")),
        "{err}"
    );

    // Fields without ·U never change.
    assert_eq!(
        app.api_post(path, &sync("E3", "book_successfully", 0).to_string())
            .await
            .0,
        202
    );
    let mut changed = sync("E3", "pending", 1000);
    changed["order_create_time"] = json!("2024-06-10 09:00:00");
    let (status, err) = app.api_post(path, &changed.to_string()).await;
    assert_eq!(
        (status, err["error"].as_str(), err["field"].as_str()),
        (422, Some("immutable_field"), Some("order_create_time")),
        "{err}"
    );

    let (status, err) = app
        .api_get("/api/merchant-orders/2021004199990002/NOPE")
        .await;
    assert_eq!((status, err["error"].as_str()), (404, Some("not_found")));
    app.stop().await;
}
both_backends!(every_error_code, every_error_code);

async fn delivered_once_in_order(app: TestApp) {
    authorize(&app).await;
    let path = "/api/merchant-orders/sync";
    let first = sync("D1", "book_successfully", 0);
    let (status, ok) = app.api_post(path, &first.to_string()).await;
    assert_eq!(
        (status, ok["result"].as_str()),
        (202, Some("queued")),
        "{ok}"
    );
    let (status, dup) = app.api_post(path, &first.to_string()).await;
    assert_eq!((status, dup["result"].as_str()), (200, Some("duplicate")));

    // Two more before delivery: coalesced to the newest.
    assert_eq!(
        app.api_post(path, &sync("D1", "pending", 2000).to_string())
            .await
            .0,
        202
    );
    let newest = sync("D1", "paid", 3000).to_string();
    assert_eq!(app.api_post(path, &newest).await.0, 202);
    // Older than what we hold: stored for the record, never delivered.
    let (status, stale) = app
        .api_post(path, &sync("D1", "pending", 1000).to_string())
        .await;
    assert_eq!((status, stale["result"].as_str()), (200, Some("stale")));
    let (_, view) = app
        .api_get("/api/merchant-orders/2021004199990002/D1")
        .await;
    assert_eq!(
        (view["status"].as_str(), view["delivery"].as_str()),
        (Some("paid"), Some("queued")),
        "{view}"
    );

    app.deliver().await;
    let calls = app.alipay.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].signature_ok);
    assert_eq!(calls[0].method, "alipay.merchant.order.sync");
    assert_eq!(calls[0].app_auth_token.as_deref(), Some(TOKEN));
    assert_eq!(calls[0].biz_content.as_deref(), Some(newest.as_str()));
    let (_, view) = app
        .api_get("/api/merchant-orders/2021004199990002/D1")
        .await;
    assert_eq!(view["delivery"], "delivered");
    assert_eq!(view["alipay_order_id"], "AD1");
    assert_eq!(view["order_modified_time"], "2024-06-10 10:05:03.000");

    // A later sync is delivered after it, and nothing is delivered twice. Once sent, trade_no
    // travels with every later sync.
    let mut later = sync("D1", "delivered", 4000);
    let (status, err) = app.api_post(path, &later.to_string()).await;
    assert_eq!(
        (status, err["error"].as_str(), err["field"].as_str()),
        (422, Some("missing_field"), Some("trade_no")),
        "{err}"
    );
    later["trade_no"] = json!("2024061022001400000000000001");
    let later = later.to_string();
    assert_eq!(app.api_post(path, &later).await.0, 202);
    app.deliver().await;
    app.deliver().await;
    let calls = app.alipay.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].biz_content.as_deref(), Some(later.as_str()));
    app.stop().await;
}
both_backends!(delivered_once_in_order, delivered_once_in_order);

async fn retries_then_delivers(app: TestApp) {
    authorize(&app).await;
    // Three 502s exhaust the client's attempts; the outbox retries later.
    app.alipay
        .script([Reply::Http(502), Reply::Http(502), Reply::Http(502)]);
    assert_eq!(
        app.api_post(
            "/api/merchant-orders/sync",
            &sync("R1", "wait_pay", 0).to_string()
        )
        .await
        .0,
        202
    );
    app.deliver().await;
    let (_, view) = app
        .api_get("/api/merchant-orders/2021004199990002/R1")
        .await;
    assert_eq!(view["delivery"], "queued", "{view}");
    assert_eq!(app.alipay.calls().len(), 3);
    // Not due yet; then due after the backoff.
    app.deliver().await;
    assert_eq!(app.alipay.calls().len(), 3);
    app.clock.advance(chrono::Duration::hours(1));
    app.deliver().await;
    let (_, view) = app
        .api_get("/api/merchant-orders/2021004199990002/R1")
        .await;
    assert_eq!(view["delivery"], "delivered", "{view}");
    assert_eq!(app.alipay.calls().len(), 4);
    app.stop().await;
}
both_backends!(retries_then_delivers, retries_then_delivers);

async fn refused_token_stops_and_flags(app: TestApp) {
    authorize(&app).await;
    app.alipay.script([Reply::Error {
        code: "20001",
        sub_code: "aop.invalid-app-auth-token",
    }]);
    assert_eq!(
        app.api_post(
            "/api/merchant-orders/sync",
            &sync("T1", "book_successfully", 0).to_string()
        )
        .await
        .0,
        202
    );
    app.deliver().await;
    let (_, view) = app
        .api_get("/api/merchant-orders/2021004199990002/T1")
        .await;
    assert_eq!(view["delivery"], "failed", "{view}");
    assert_eq!(view["sub_code"], "aop.invalid-app-auth-token");
    app.clock.advance(chrono::Duration::days(1));
    app.deliver().await;
    assert_eq!(
        app.alipay.calls().len(),
        1,
        "no retry loop on a refused token"
    );
    let (_, auth) = app
        .admin_get("/admin/api/authorizations/2021004199990002")
        .await;
    assert!(
        auth["attention"]
            .as_str()
            .is_some_and(|a| a.contains("20001")),
        "{auth}"
    );
    let alerts = app.alipay.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "app_auth_token_refused");
    assert_eq!(alerts[0]["subject"], TINY_APP);
    assert!(
        !alerts[0].to_string().contains(TOKEN),
        "an alert never carries the token"
    );
    app.stop().await;
}
both_backends!(refused_token_stops_and_flags, refused_token_stops_and_flags);
