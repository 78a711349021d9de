//! Support's repairs through the admin API: replaying stored messages, resending a merchant
//! order's failed delivery, and the OpenAPI description.

use crate::both_backends;
use crate::common::fake_alipay::Reply;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use serde_json::{Value, json};

const TINY_APP: &str = "2021004199990002";

/// Signed as Alipay does, addressed to our app unless the test names another `app_id`.
fn signed(params: &[(&str, &str)]) -> String {
    let mut params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !params.iter().any(|(k, _)| k == "app_id") {
        params.push(("app_id".into(), common::APP_ID.into()));
    }
    isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key())
}

fn state_of(app: &TestApp, notify_id: &str) -> String {
    app.message_states()
        .into_iter()
        .find(|(_, n, _)| n == notify_id)
        .unwrap()
        .2
}

async fn replay_failed_and_quarantined_messages(app: TestApp) {
    let key = common::platform_private_key();
    // Verified, but its order_time cannot be read: failed for good.
    let bad = signed(&[
        ("notify_id", "n-bad"),
        ("notify_type", "servicemarket_order_notify"),
        ("commodity_order_id", "BAD1"),
        ("order_time", "yesterday"),
    ]);
    assert_eq!(app.post_notify(bad).await.1, "success");
    // An order, then the same order id for another merchant: quarantined by the apply.
    app.post_notify(common::order_notification(&key, "FREE1", "n-free", "0.00"))
        .await;
    let conflicting = signed(&[
        ("notify_id", "n-conflict"),
        ("notify_type", "servicemarket_order_notify"),
        ("commodity_order_id", "FREE1"),
        ("order_time", "2024-06-10 13:01:00"),
        ("merchant_pid", "2088000000000009"),
        ("total_price", "0.00"),
    ]);
    assert_eq!(app.post_notify(conflicting).await.1, "success");
    app.run_pending_jobs().await;
    assert_eq!(state_of(&app, "n-bad"), "failed");
    assert_eq!(state_of(&app, "n-conflict"), "quarantined");
    assert_eq!(state_of(&app, "n-free"), "applied");

    // The list filters by state, and refuses an unknown one.
    let (status, failed) = app.admin_get("/admin/api/messages?state=failed").await;
    assert_eq!(status, 200, "{failed}");
    let ids: Vec<_> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["notify_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("n-bad")]);
    let (status, body) = app.admin_get("/admin/api/messages?state=lost").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_field"))
    );

    // Replay the failed one: back in `received`, attempts 0; the worker runs it (and it fails
    // again, its content being what it is).
    let (status, replayed) = app
        .admin_post(
            &format!("/admin/api/messages/{}/n-bad/replay", common::APP_ID),
            "",
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["notify_id"], "n-bad");
    assert_eq!(replayed["app_id"], common::APP_ID);
    assert_eq!(replayed["state"], "received");
    assert_eq!(replayed["attempts"], 0);
    assert!(replayed.get("kind").is_some() && replayed.get("received_at").is_some());
    // A second replay while it waits is refused.
    let (status, body) = app
        .admin_post(
            &format!("/admin/api/messages/{}/n-bad/replay", common::APP_ID),
            "",
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(app.run_pending_jobs().await, 1, "the replayed message ran");
    assert_eq!(state_of(&app, "n-bad"), "failed");
    let (_, failed) = app.admin_get("/admin/api/messages?state=failed").await;
    assert_eq!(failed[0]["attempts"], 1, "{failed}");

    // Replay the quarantined one: the apply checks it again and quarantines it again; the order
    // stays its first merchant's.
    let (status, replayed) = app
        .admin_post(
            &format!("/admin/api/messages/{}/n-conflict/replay", common::APP_ID),
            "",
        )
        .await;
    assert_eq!(
        (status, replayed["state"].as_str()),
        (200, Some("received"))
    );
    assert_eq!(app.run_pending_jobs().await, 1);
    assert_eq!(state_of(&app, "n-conflict"), "quarantined");
    let (_, order) = app.admin_get("/admin/api/orders/FREE1").await;
    assert_eq!(order["merchant_pid"], "2088102177846880", "{order}");
    assert_eq!(order["history"].as_array().unwrap().len(), 1, "{order}");

    // An applied message is not replayed; an unknown one is not found.
    let (status, body) = app
        .admin_post(
            &format!("/admin/api/messages/{}/n-free/replay", common::APP_ID),
            "",
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("invalid_transition")),
        "{body}"
    );
    let (status, body) = app
        .admin_post(
            &format!("/admin/api/messages/{}/nope/replay", common::APP_ID),
            "",
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, _) = app
        .admin_post("/admin/api/messages/-/n-bad/replay", "")
        .await;
    assert_eq!(status, 404, "the identity includes the app_id");
    // Without the token: 401.
    let response = app
        .http
        .post(format!(
            "{}/admin/api/messages/{}/n-bad/replay",
            app.address,
            common::APP_ID
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}
both_backends!(
    replay_failed_and_quarantined_messages,
    replay_failed_and_quarantined_messages
);

async fn a_message_for_another_app_is_never_replayed(app: TestApp) {
    let foreign = signed(&[
        ("notify_id", "n-foreign"),
        ("app_id", "2021009999999999"),
        ("notify_type", "servicemarket_order_notify"),
        ("commodity_order_id", "F1"),
        ("order_time", "2024-06-10 13:01:00"),
        ("merchant_pid", "2088102177846880"),
        ("total_price", "9.90"),
    ]);
    assert_eq!(app.post_notify(foreign).await.1, "success");
    assert_eq!(state_of(&app, "n-foreign"), "quarantined");
    let (status, body) = app
        .admin_post("/admin/api/messages/2021009999999999/n-foreign/replay", "")
        .await;
    assert_eq!(status, 409, "{body}");
    app.run_pending_jobs().await;
    assert_eq!(state_of(&app, "n-foreign"), "quarantined");
    let (status, _) = app.admin_get("/admin/api/orders/F1").await;
    assert_eq!(status, 404);
    app.stop().await;
}
both_backends!(
    a_message_for_another_app_is_never_replayed,
    a_message_for_another_app_is_never_replayed
);

fn sync(out_biz_no: &str, status: &str) -> Value {
    common::to_shop_sync(out_biz_no, status)
}

async fn resend_after_a_refused_token(app: TestApp) {
    app.grant_merchant_authorization().await;
    app.run_pending_jobs().await;
    app.alipay.script([Reply::Error {
        code: "20001",
        sub_code: "aop.invalid-app-auth-token",
    }]);
    let (status, body) = app
        .api_post(
            "/api/merchant-orders/sync",
            &sync("R1", "book_successfully").to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Nothing to resend while it is queued.
    let path = format!("/admin/api/merchant-orders/{TINY_APP}/R1/resend");
    let (status, body) = app.admin_post(&path, "").await;
    assert_eq!(status, 409, "{body}");
    app.deliver().await;
    let (_, view) = app
        .api_get(&format!("/api/merchant-orders/{TINY_APP}/R1"))
        .await;
    assert_eq!(view["delivery"], "failed", "{view}");

    // Support resends (the merchant has authorized again): queued, then delivered once.
    let (status, resent) = app.admin_post(&path, "").await;
    assert_eq!(status, 200, "{resent}");
    assert_eq!(resent["delivery"], "queued");
    assert_eq!(resent["out_biz_no"], "R1");
    assert_eq!(resent["tiny_app_id"], TINY_APP);
    app.deliver().await;
    let (_, view) = app
        .api_get(&format!("/api/merchant-orders/{TINY_APP}/R1"))
        .await;
    assert_eq!(view["delivery"], "delivered", "{view}");
    assert_eq!(
        app.alipay.calls().len(),
        2,
        "one refused call, one delivery"
    );
    app.deliver().await;
    assert_eq!(app.alipay.calls().len(), 2, "delivered once");

    // Delivered: nothing to resend; unknown: not found; without the token: 401.
    let (status, body) = app.admin_post(&path, "").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("invalid_transition"))
    );
    let (status, body) = app
        .admin_post(
            &format!("/admin/api/merchant-orders/{TINY_APP}/NOPE/resend"),
            "",
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let response = app
        .http
        .post(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}
both_backends!(resend_after_a_refused_token, resend_after_a_refused_token);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route() {
    let app = TestApp::spawn(Db::Sqlite).await;
    // No token needed: it holds no data.
    let response = app
        .http
        .get(format!("{}/admin/api/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    // Every route the server registers, with its method.
    let routes = [
        ("get", "/admin/api/messages"),
        ("post", "/admin/api/messages/{app_id}/{notify_id}/replay"),
        ("get", "/admin/api/orders"),
        ("get", "/admin/api/orders/{commodity_order_id}"),
        ("post", "/admin/api/orders/{commodity_order_id}/terminate"),
        ("post", "/admin/api/orders/{commodity_order_id}/reconcile"),
        ("post", "/admin/api/builds/{mini_app_id}/retry"),
        ("get", "/admin/api/services/{mini_app_id}"),
        ("get", "/admin/api/authorizations/{auth_app_id}"),
        ("post", "/admin/api/authorizations/{auth_app_id}/check"),
        (
            "post",
            "/admin/api/merchant-orders/{tiny_app_id}/{out_biz_no}/resend",
        ),
        ("get", "/admin/api/openapi.json"),
        ("post", "/api/merchant-orders/sync"),
        ("get", "/api/merchant-orders/{tiny_app_id}/{out_biz_no}"),
        ("post", "/alipay/gateway"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in routes {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not described"))[method];
        assert!(op.is_object(), "{method} {path} is not described");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
        // Every path parameter is declared.
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name)),
                "{method} {path}: parameter {name}"
            );
        }
    }
    assert_eq!(paths.len(), routes.len(), "described but not registered");
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["admin"]["scheme"], "bearer");
    assert_eq!(schemes["api"]["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    for field in ["error", "field", "message", "violations"] {
        assert!(error[field].is_object(), "{field}");
    }
    let order = &doc["components"]["schemas"]["OrderView"]["properties"];
    for field in [
        "commodity_order_id",
        "status",
        "cancel_reason",
        "deadlines",
        "service",
        "history",
    ] {
        assert!(order[field].is_object(), "{field}");
    }
    app.stop().await;
}
