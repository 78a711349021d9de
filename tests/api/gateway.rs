//! The gateway against the official-SDK vectors, redeliveries, re-encodings and arbitrary content.

use crate::both_backends;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use isv_lifecycle::alipay::notify;
use std::collections::BTreeSet;

fn identity(v: &serde_json::Value) -> (String, String) {
    let p = &v["params"];
    (
        p["app_id"].as_str().unwrap_or("").to_string(),
        p["notify_id"].as_str().unwrap().to_string(),
    )
}

/// Every byte as %XX: a different, valid encoding of the same form.
fn percent_everything(params: &serde_json::Map<String, serde_json::Value>) -> String {
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v.as_str().unwrap())))
        .collect::<Vec<_>>()
        .join("&")
}

async fn official_vectors(app: TestApp) {
    // Tampered messages first: none may be stored, whatever their notify_id.
    for v in common::vectors("tampered.jsonl") {
        let (status, body) = app.post_notify(v["body"].as_str().unwrap()).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "fail"),
            "{} ({}) must be refused",
            v["id"],
            v["tamper"]
        );
    }
    assert!(
        app.message_states().is_empty(),
        "a refused message was stored"
    );

    let valid = common::vectors("notifications.jsonl");
    for v in &valid {
        let (status, body) = app.post_notify(v["body"].as_str().unwrap()).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "success"),
            "{} ({}) must be accepted",
            v["id"],
            v["description"]
        );
    }
    let expected: BTreeSet<(String, String)> = valid.iter().map(identity).collect();
    let stored: BTreeSet<(String, String)> = app
        .message_states()
        .into_iter()
        .map(|(a, n, _)| (a, n))
        .collect();
    assert_eq!(stored, expected);

    // Redeliveries, and the same content under another valid percent-encoding, are answered
    // `success` and store nothing new.
    for v in &valid {
        assert_eq!(
            app.post_notify(v["body"].as_str().unwrap()).await.1,
            "success",
            "redelivery of {}",
            v["id"]
        );
        let reencoded = percent_everything(v["params"].as_object().unwrap());
        assert_eq!(
            app.post_notify(reencoded).await.1,
            "success",
            "re-encoded {}",
            v["id"]
        );
    }
    assert_eq!(app.message_states().len(), expected.len());

    // Verification comes before the duplicate check: tampered copies of stored ids still fail.
    for v in common::vectors("tampered.jsonl") {
        assert_eq!(
            app.post_notify(v["body"].as_str().unwrap()).await.1,
            "fail",
            "{} after its original was stored",
            v["id"]
        );
    }

    // Every message verified under V1 and is listed with its kind; another app's, or one
    // without app_id, is quarantined.
    let (status, list) = app.admin_get("/admin/api/messages?limit=1000").await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), expected.len());
    for m in list {
        assert_eq!(m["sign_variant"], "v1");
        // Not addressed to our app: another app id, or none at all (the order vectors).
        let foreign = m["app_id"] != common::APP_ID;
        assert_eq!(m["state"] == "quarantined", foreign, "{m}");
    }
    assert!(
        list.iter()
            .any(|m| m["kind"] == "servicemarket_order_notify")
    );
    assert!(
        list.iter()
            .any(|m| m["kind"] == "alipay.open.auth.appauth.cancelled")
    );
    app.stop().await;
}
both_backends!(official_vectors_through_http, official_vectors);

async fn malformed_requests(app: TestApp) {
    let key = common::platform_private_key();
    let good = common::order_notification(&key, "C1", "n-dup", "1.00");
    let cases: Vec<(&str, String)> = vec![
        ("empty body", String::new()),
        ("not a form", "{\"json\":true}".into()),
        ("bad escape", format!("{good}&x=%zz")),
        ("duplicate key", format!("{good}&notify_id=other")),
        (
            "sign_type RSA",
            good.replace("sign_type=RSA2", "sign_type=RSA"),
        ),
        (
            "sign_type empty",
            good.replace("sign_type=RSA2", "sign_type="),
        ),
    ];
    for (what, body) in cases {
        assert_eq!(app.post_notify(body).await.1, "fail", "{what}");
    }
    // Over the body limit: refused without reading it all.
    let huge = format!("{good}&pad={}", "a".repeat(300 * 1024));
    let (status, body) = app.post_notify(huge).await;
    assert_eq!((status, body.as_str()), (413, "fail"));
    assert!(app.message_states().is_empty());
    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("isv_gateway_messages_rejected_total{reason=\"duplicate_key\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("isv_gateway_messages_rejected_total{reason=\"sign_type\"} 2"),
        "{metrics}"
    );
    app.stop().await;
}
both_backends!(malformed_requests_are_refused, malformed_requests);

/// Arbitrary Unicode parameter maps, signed like Alipay signs, form-encoded and posted, verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_unicode_messages_verify() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let app = TestApp::spawn(Db::Sqlite).await;
    let key = common::platform_private_key();
    let strategy =
        proptest::collection::btree_map("[^\u{0}]{1,12}", "\\PC{0,40}|[&=+%/ ]{0,8}", 1..12);
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |map| {
            let mut params: Vec<(String, String)> = map
                .into_iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "sign" | "sign_type" | "app_id" | "notify_id")
                })
                .collect();
            params.push(("app_id".into(), common::APP_ID.into()));
            params.push(("notify_id".into(), common::random_hex(12)));
            params.push(("sign_type".into(), "RSA2".into()));
            let body = notify::sign_message(&params, &key);
            let (status, answer) = handle.block_on(app.post_notify(body.clone()));
            prop_assert_eq!((status, answer.as_str()), (200, "success"), "body {}", body);
            Ok(())
        })
    });
    result.unwrap();
    app.stop().await;
}
