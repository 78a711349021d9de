//! The OpenAPI document (generated with utoipa) against the service's real answers: every
//! documented operation is called, and each JSON body is validated against the schema the
//! document gives for that operation and status — strictly: a field the document does not
//! describe, or a required one missing, fails. An operation left uncalled fails too.

use crate::common::fake_alipay::Reply;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const TINY_APP: &str = "2021004199990002";

struct Checker {
    doc: Value,
    /// The document's components, with every object schema closed to undescribed fields.
    components: Value,
    called: BTreeSet<(String, String)>,
}

fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                close_objects(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

impl Checker {
    fn new(doc: Value) -> Checker {
        let mut components = doc["components"].clone();
        close_objects(&mut components);
        Checker {
            doc,
            components,
            called: BTreeSet::new(),
        }
    }

    /// Checks one real answer of `method template` against the document.
    fn check(&mut self, method: &str, template: &str, status: u16, body: &Value) {
        let operation = &self.doc["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which is not documented: {body}"
        );
        self.called.insert((method.into(), template.into()));
        let Some(schema) = response["content"]["application/json"]["schema"].as_object() else {
            panic!("{method} {template} {status}: no JSON schema documented");
        };
        let mut root = schema.clone();
        root.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root.insert("components".into(), self.components.clone());
        let validator = jsonschema::validator_for(&Value::Object(root))
            .unwrap_or_else(|e| panic!("{method} {template} {status}: bad schema: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status} does not match the document:\n{}\nbody: {body}",
            errors.join("\n")
        );
    }

    /// Every documented operation was called.
    fn all_called(&self) {
        let mut missing = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if !self.called.contains(&(method.clone(), path.clone())) {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(missing.is_empty(), "never called: {missing:?}");
    }
}

fn sync(out_biz_no: &str, status: &str) -> Value {
    common::to_shop_sync(out_biz_no, status)
}

async fn plain(app: &TestApp, method: reqwest::Method, path: &str) -> (u16, String, String) {
    let response = app
        .http
        .request(method, format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_the_openapi_document() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let (status, kind, text) = plain(&app, reqwest::Method::GET, "/admin/api/openapi.json").await;
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut c = Checker::new(doc.clone());
    c.called
        .insert(("get".into(), "/admin/api/openapi.json".into()));
    // Operation ids and tags on every operation, ids unique.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path}: no tag"
            );
        }
    }

    // The gateway, health and metrics answer as documented (not JSON).
    let key = common::platform_private_key();
    let (status, body) = app
        .post_notify(common::order_notification(&key, "A1", "n-a1", "0.00"))
        .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    c.called.insert(("post".into(), "/alipay/gateway".into()));
    for (path, content) in [
        ("/healthz", ""),
        ("/readyz", ""),
        ("/metrics", "text/plain"),
    ] {
        let (status, kind, _) = plain(&app, reqwest::Method::GET, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(kind.starts_with(content), "{path}: {kind}");
        assert!(doc["paths"][path]["get"]["responses"]["200"].is_object());
        c.called.insert(("get".into(), path.into()));
    }
    let authorization = common::vectors("notifications.jsonl")
        .into_iter()
        .find(|v| v["id"] == "N035")
        .unwrap();
    assert_eq!(
        app.post_notify(authorization["body"].as_str().unwrap())
            .await
            .1,
        "success"
    );
    let bad: Vec<(String, String)> = [
        ("notify_id", "n-bad"),
        // Addressed to our app: it fails in the apply (a replayable state), not quarantined.
        ("app_id", common::APP_ID),
        ("notify_type", "servicemarket_order_notify"),
        ("commodity_order_id", "BAD1"),
        ("order_time", "yesterday"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let bad = isv_lifecycle::alipay::notify::sign_message(&bad, &key);
    assert_eq!(app.post_notify(bad).await.1, "success");
    app.run_pending_jobs().await;

    // Messages.
    let t = "/admin/api/messages";
    for (path, expected) in [
        ("/admin/api/messages", 200),
        ("/admin/api/messages?state=failed&limit=5", 200),
        ("/admin/api/messages?state=lost", 400),
    ] {
        let (status, body) = app.admin_get(path).await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("get", t, status, &body);
    }
    let (status, body) = plain(&app, reqwest::Method::GET, t).await.pipe_json();
    assert_eq!(status, 401);
    c.check("get", t, status, &body);
    let t = "/admin/api/messages/{app_id}/{notify_id}/replay";
    let ours = format!("/admin/api/messages/{}/n-bad/replay", common::APP_ID);
    for (path, expected) in [
        (ours.as_str(), 200),
        (ours.as_str(), 409),
        ("/admin/api/messages/-/n-none/replay", 404),
    ] {
        let (status, body) = app.admin_post(path, "").await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("post", t, status, &body);
    }

    // Orders.
    let t = "/admin/api/orders";
    for (path, expected) in [
        ("/admin/api/orders", 200),
        ("/admin/api/orders?q=2088102177846880&limit=1", 200),
        ("/admin/api/orders?limit=501", 400),
        ("/admin/api/orders?cursor=zzz", 400),
    ] {
        let (status, body) = app.admin_get(path).await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("get", t, status, &body);
    }
    let t = "/admin/api/orders/{commodity_order_id}";
    for (path, expected) in [
        ("/admin/api/orders/A1", 200),
        ("/admin/api/orders/NOPE", 404),
    ] {
        let (status, body) = app.admin_get(path).await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("get", t, status, &body);
    }
    let t = "/admin/api/orders/{commodity_order_id}/reconcile";
    let (status, body) = app.admin_post("/admin/api/orders/A1/reconcile", "").await;
    assert_eq!(status, 200, "{body}");
    c.check("post", t, status, &body);
    let (status, body) = app.admin_post("/admin/api/orders/NOPE/reconcile", "").await;
    assert_eq!(status, 404, "{body}");
    c.check("post", t, status, &body);
    let t = "/admin/api/orders/{commodity_order_id}/terminate";
    for (path, body, expected) in [
        ("/admin/api/orders/A1/terminate", "not json", 400),
        (
            "/admin/api/orders/A1/terminate",
            r#"{"reason":"x","actor":"alipay"}"#,
            400,
        ),
        ("/admin/api/orders/A1/terminate", "{}", 422),
        ("/admin/api/orders/NOPE/terminate", r#"{"reason":"x"}"#, 404),
        (
            "/admin/api/orders/A1/terminate",
            r#"{"reason":"closed"}"#,
            200,
        ),
    ] {
        let (status, answer) = app.admin_post(path, body).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        c.check("post", t, status, &answer);
    }
    let (status, body) = app
        .admin_post(&format!("/admin/api/builds/{TINY_APP}/retry"), "")
        .await;
    // No build yet for that mini program: nothing to retry.
    assert_eq!(status, 404, "{body}");
    c.check(
        "post",
        "/admin/api/builds/{mini_app_id}/retry",
        status,
        &body,
    );

    // Services: A1's, terminated above.
    let t = "/admin/api/services/{mini_app_id}";
    for (path, expected) in [
        (format!("/admin/api/services/{TINY_APP}"), 200),
        ("/admin/api/services/2021000000000000".to_string(), 404),
    ] {
        let (status, body) = app.admin_get(&path).await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("get", t, status, &body);
    }
    let (status, body) = plain(
        &app,
        reqwest::Method::GET,
        &format!("/admin/api/services/{TINY_APP}"),
    )
    .await
    .pipe_json();
    assert_eq!(status, 401);
    c.check("get", t, status, &body);

    // Authorizations.
    let t = "/admin/api/authorizations/{auth_app_id}";
    for (path, expected) in [
        (format!("/admin/api/authorizations/{TINY_APP}"), 200),
        (
            "/admin/api/authorizations/2021000000000000".to_string(),
            404,
        ),
    ] {
        let (status, body) = app.admin_get(&path).await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("get", t, status, &body);
    }
    // The token check (the fake answers `valid`).
    let t = "/admin/api/authorizations/{auth_app_id}/check";
    for (path, expected) in [
        (format!("/admin/api/authorizations/{TINY_APP}/check"), 200),
        (
            "/admin/api/authorizations/2021000000000000/check".to_string(),
            404,
        ),
    ] {
        let (status, body) = app.admin_post(&path, "").await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("post", t, status, &body);
    }

    // The merchant-order API, and support's resend.
    app.alipay.script([Reply::Error {
        code: "20001",
        sub_code: "aop.invalid-app-auth-token",
    }]);
    let t = "/api/merchant-orders/sync";
    let mut incomplete = sync("R1", "book_successfully");
    incomplete.as_object_mut().unwrap().remove("buyer_open_id");
    for (body, expected) in [
        (sync("R1", "book_successfully").to_string(), 202),
        (sync("R1", "book_successfully").to_string(), 200),
        (incomplete.to_string(), 422),
        ("[1]".to_string(), 400),
    ] {
        let (status, answer) = app.api_post(t, &body).await;
        assert_eq!(status, expected, "{body}: {answer}");
        c.check("post", t, status, &answer);
    }
    let response = app
        .http
        .post(format!("{}{t}", app.address))
        .header("content-type", "application/json")
        .body(sync("R2", "book_successfully").to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(status, 401);
    c.check("post", t, status, &body);
    app.deliver().await;
    let t = "/api/merchant-orders/{tiny_app_id}/{out_biz_no}";
    for (path, expected) in [
        (format!("/api/merchant-orders/{TINY_APP}/R1"), 200),
        (format!("/api/merchant-orders/{TINY_APP}/NOPE"), 404),
    ] {
        let (status, body) = app.api_get(&path).await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("get", t, status, &body);
    }
    let t = "/admin/api/merchant-orders/{tiny_app_id}/{out_biz_no}/resend";
    for (path, expected) in [
        (
            format!("/admin/api/merchant-orders/{TINY_APP}/R1/resend"),
            200,
        ),
        (
            format!("/admin/api/merchant-orders/{TINY_APP}/R1/resend"),
            409,
        ),
        (
            format!("/admin/api/merchant-orders/{TINY_APP}/NOPE/resend"),
            404,
        ),
    ] {
        let (status, body) = app.admin_post(&path, "").await;
        assert_eq!(status, expected, "{path}: {body}");
        c.check("post", t, status, &body);
    }

    c.all_called();
    app.stop().await;
}

trait PipeJson {
    fn pipe_json(self) -> (u16, Value);
}

impl PipeJson for (u16, String, String) {
    fn pipe_json(self) -> (u16, Value) {
        (
            self.0,
            serde_json::from_str(&self.2).unwrap_or(Value::String(self.2)),
        )
    }
}

/// The checker itself: an undocumented field, a missing required one, or a wrong type fails.
#[test]
fn the_checker_refuses_what_the_document_does_not_describe() {
    let doc = serde_json::to_value(isv_lifecycle::http::openapi_document()).unwrap();
    let good = json!({"orders": [], "next_cursor": null});
    let mut c = Checker::new(doc);
    c.check("get", "/admin/api/orders", 200, &good);
    for bad in [
        json!({"orders": [], "next_cursor": null, "total": 3}),
        json!({"orders": []}),
        json!({"next_cursor": null}),
        json!({"orders": [{"commodity_order_id": "X"}], "next_cursor": null}),
        json!({"orders": [], "next_cursor": 7}),
    ] {
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.check("get", "/admin/api/orders", 200, &bad)
        }));
        assert!(refused.is_err(), "accepted {bad}");
    }
}
