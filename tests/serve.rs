//! `isv-lifecycle serve` as operators run it, with every background job: a gateway message is
//! applied and a merchant-order sync is delivered to a local Alipay, with no test hooks.

mod common;

use common::Db;
use common::fake_alipay::FakeAlipay;
use std::time::{Duration, Instant};

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn background_jobs_run(db: Db) {
    let test_db = common::test_db(db);
    let alipay = FakeAlipay::start().await;
    let port = common::free_port();
    let mut child = common::serve_command(&test_db.url, test_db._dir.path(), port, "warn")
        .env("ISV__ALIPAY__GATEWAY_URL", &alipay.url)
        .env("ISV__INBOX__APPLY_POLL_MS", "50")
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    common::wait_healthy(&client, &base).await;

    let auth = common::vectors("notifications.jsonl")
        .into_iter()
        .find(|v| v["id"] == "N035")
        .unwrap();
    let answer = client
        .post(format!("{base}/alipay/gateway"))
        .body(auth["body"].as_str().unwrap().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text().await.unwrap(), "success");
    let authorization = format!("{base}/admin/api/authorizations/2021004199990002");
    eventually("the authorization to be applied", || async {
        client
            .get(&authorization)
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;

    let business_info = serde_json::json!({"book_item": "洗剪吹", "start_time": "2024-06-11 10:00:00",
        "end_time": "2024-06-11 11:00:00", "shop_name": "测试店", "shop_phone": "0571-88888888"});
    let sync = serde_json::json!({
        "out_biz_no": "S1", "buyer_open_id": "074a1CcTG1", "order_type": "service_order",
        "order_create_time": "2024-06-10 10:00:00", "order_modified_time": "2024-06-10 10:05:00.000",
        "item_order_list": [{"item_name": "测试店 洗剪吹", "ext_info": [{"ext_key": "image_material_id", "ext_value": "m1"}]}],
        "ext_info": [
            {"ext_key": "merchant_order_status", "ext_value": "book_successfully"},
            {"ext_key": "merchant_biz_type", "ext_value": "to_shop"},
            {"ext_key": "merchant_order_link_page", "ext_value": "/pages/order/detail?id=S1"},
            {"ext_key": "tiny_app_id", "ext_value": "2021004199990002"},
            {"ext_key": "business_info", "ext_value": business_info.to_string()},
        ],
    });
    let accepted = client
        .post(format!("{base}/api/merchant-orders/sync"))
        .bearer_auth(common::API_TOKEN)
        .body(sync.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202, "{}", accepted.text().await.unwrap());
    let order = format!("{base}/api/merchant-orders/2021004199990002/S1");
    eventually("the sync to be delivered", || async {
        let text = client
            .get(&order)
            .bearer_auth(common::API_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("\"delivery\":\"delivered\"")
    })
    .await;
    let calls = alipay.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].signature_ok);

    // Support commands from the shell, against the same database while serve runs.
    let key = common::platform_private_key();
    let answer = client
        .post(format!("{base}/alipay/gateway"))
        .body(common::order_notification(&key, "CLI1", "n-cli-1", "0.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text().await.unwrap(), "success");
    let order_url = format!("{base}/admin/api/orders/CLI1");
    eventually("the order to be applied", || async {
        client
            .get(&order_url)
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let cli = |args: &[&str]| {
        common::command(
            args,
            &test_db.url,
            test_db._dir.path(),
            common::free_port(),
            "warn",
        )
        .env("ISV__ALIPAY__GATEWAY_URL", &alipay.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
    };
    let out = cli(&["reconcile", "--rate", "50"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 open orders reconciled: 0 repaired, 0 errors"),
        "{stdout}"
    );
    let out = cli(&[
        "terminate",
        "CLI1",
        "--reason",
        "merchant closed the shop",
        "--actor",
        "bob",
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let order: serde_json::Value = serde_json::from_str(
        &client
            .get(&order_url)
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(order["service"]["status"], "terminated", "{order}");
    let last = order["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["actor"].as_str(), last["reason"].as_str()),
        (Some("bob"), Some("merchant closed the shop"))
    );
    let out = cli(&["terminate", "NOPE", "--reason", "x"]).await.unwrap();
    assert!(!out.status.success(), "an unknown order is an error");
    let _ = child.start_kill();
    let _ = child.wait().await;
    alipay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_its_background_jobs_sqlite() {
    background_jobs_run(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_its_background_jobs_postgres() {
    if common::skip_postgres() {
        return;
    }
    background_jobs_run(Db::Postgres).await;
}
