//! `/metrics` is valid Prometheus text and moves with the traffic; every response carries a
//! request id.

use crate::both_backends;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use std::collections::{BTreeMap, BTreeSet};

/// Parses the Prometheus text exposition format strictly enough to catch what a scraper rejects:
/// sample syntax, numeric values, and a `# TYPE` before every family's samples.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed = BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.to_string()), "family {name} typed twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("labels: {line}"));
                for pair in inner.split("\",").map(|p| p.trim_end_matches('"')) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("label: {line}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "label name: {line}"
                    );
                    assert!(!v.contains('\n'), "{line}");
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its # TYPE: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    let response = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse(&response.text().await.unwrap())
}

async fn metrics_parse_and_move(app: TestApp) {
    let before = scrape(&app).await;
    assert_eq!(before["isv_gateway_messages_received_total"], 0.0);
    let key = common::platform_private_key();
    assert_eq!(
        app.post_notify(common::order_notification(&key, "M1", "n-m1", "9.90"))
            .await
            .1,
        "success"
    );
    assert_eq!(app.post_notify("sign=broken").await.1, "fail");
    let stored = scrape(&app).await;
    assert_eq!(stored["isv_gateway_messages_received_total"], 2.0);
    assert_eq!(stored["isv_gateway_messages_stored_total"], 1.0);
    assert_eq!(
        stored["isv_gateway_messages_verified_total{sign_variant=\"v1\"}"],
        1.0
    );
    assert_eq!(
        stored["isv_gateway_messages_rejected_total{reason=\"sign_encoding\"}"],
        1.0
    );
    assert_eq!(stored["isv_inbox_pending"], 1.0);
    app.run_pending_jobs().await;
    let applied = scrape(&app).await;
    assert_eq!(applied["isv_inbox_pending"], 0.0);
    assert_eq!(applied["isv_inbox_applied_total"], 1.0);
    // Applying sent statements (claim, the order, its timers and history, the move out of
    // `received`), and the pool counted them.
    assert!(
        applied["isv_db_statements_total"] >= stored["isv_db_statements_total"] + 5.0,
        "{} then {}",
        stored["isv_db_statements_total"],
        applied["isv_db_statements_total"]
    );
    // An Alipay call is timed and counted by result.
    assert_eq!(
        app.admin_post("/admin/api/orders/M1/reconcile", "").await.0,
        200
    );
    let called = scrape(&app).await;
    let method = "method=\"alipay.open.servicemarket.order.query\"";
    assert_eq!(
        called[&format!("isv_alipay_calls_total{{{method},result=\"10000\"}}")],
        1.0
    );
    assert_eq!(
        called[&format!("isv_alipay_call_seconds_count{{{method}}}")],
        1.0
    );
    assert_eq!(
        called[&format!("isv_alipay_call_seconds_bucket{{{method},le=\"+Inf\"}}")],
        1.0
    );
    app.stop().await;
}
both_backends!(metrics_parse_and_move, metrics_parse_and_move);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let made = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 16, "{id}");
    let echoed = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    // Not a sane id (too long, odd characters): replaced, never echoed into logs or headers.
    let odd = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    assert_ne!(odd.headers()["x-request-id"], "a b\"c");
    app.stop().await;
}
