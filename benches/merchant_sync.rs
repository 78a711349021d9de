//! Merchant-order sync benchmark, run by hand (not in CI):
//!
//! ```sh
//! cargo bench --bench merchant_sync
//! BENCH_BACKENDS=postgres BENCH_SYNCS=40000 cargo bench --bench merchant_sync
//! ```
//!
//! For each backend it starts the release `isv-lifecycle serve` on a fresh database, with
//! `alipay.gateway_url` pointing at a local Alipay endpoint in this process (it verifies every
//! request signature and answers signed), authorizes one mini program through the gateway, then:
//! 1. posts `BENCH_SYNCS` valid to_shop syncs (distinct orders) through `POST
//!    /api/merchant-orders/sync`, `BENCH_CONCURRENCY` in flight: validated + committed + queued
//!    syncs per second, with p50/p99;
//! 2. measures how fast the delivery job empties the outbox to the local endpoint (deliveries per
//!    second, from the server's own counter).
//!
//! The local endpoint verifies each request's signature but answers with one pre-signed body, so
//! that its own RSA signing (Alipay's work, on Alipay's machines) does not take the CPU of the
//! service being measured. Our side still signs every request.

#[path = "../tests/common/mod.rs"]
mod common;

use common::fake_alipay::FakeAlipay;
use futures_util::StreamExt as _;
use std::time::{Duration, Instant};

fn sync(i: usize) -> String {
    let business_info = serde_json::json!({
        "book_item": "洗剪吹", "start_time": "2024-06-11 10:00:00", "end_time": "2024-06-11 11:00:00",
        "shop_name": "测试店", "shop_phone": "0571-88888888",
    });
    serde_json::json!({
        "out_biz_no": format!("BENCH{i:08}"),
        "buyer_open_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5",
        "order_type": "service_order",
        "order_create_time": "2024-06-10 10:00:00",
        "order_modified_time": "2024-06-10 10:05:00.000",
        "amount": "30.00",
        "item_order_list": [{"item_name": "测试店 洗剪吹", "quantity": 1, "unit_price": "30.00",
            "ext_info": [{"ext_key": "image_material_id", "ext_value": "2024060100000001"}]}],
        "ext_info": [
            {"ext_key": "merchant_order_status", "ext_value": "book_successfully"},
            {"ext_key": "merchant_biz_type", "ext_value": "to_shop"},
            {"ext_key": "merchant_order_link_page", "ext_value": format!("/pages/order/detail?id={i}")},
            {"ext_key": "tiny_app_id", "ext_value": "2021004199990002"},
            {"ext_key": "business_info", "ext_value": business_info.to_string()},
        ],
    })
    .to_string()
}

async fn run_backend(db: common::Db, count: usize, concurrency: usize) -> String {
    let test_db = common::test_db(db);
    let alipay = FakeAlipay::start_constant(
        "alipay.merchant.order.sync",
        serde_json::json!({"code": "10000", "msg": "Success", "record_id": "R0", "order_id": "A0"}),
    )
    .await;
    let port = common::free_port();
    let mut child = common::serve_command(&test_db.url, test_db._dir.path(), port, "warn")
        .env("ISV__DATABASE__POOL_SIZE", "16")
        // The orders are dated 2024: keep the deadline scheduler out of this measurement.
        .env("ISV__SCHEDULER__TICK_SECONDS", "86400")
        .env("ISV__ALIPAY__GATEWAY_URL", &alipay.url)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()
        .unwrap();
    common::wait_healthy(&client, &base).await;
    // Authorize the mini program through the gateway, and wait for it to be applied.
    let auth = common::vectors("notifications.jsonl")
        .into_iter()
        .find(|v| v["id"] == "N035")
        .unwrap();
    client
        .post(format!("{base}/alipay/gateway"))
        .body(auth["body"].as_str().unwrap().to_string())
        .send()
        .await
        .unwrap();
    while common::metric(&client, &base, "isv_inbox_applied_total").await < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let bodies: Vec<String> = (0..count).map(sync).collect();
    let url = format!("{base}/api/merchant-orders/sync");
    let start = Instant::now();
    let results: Vec<(u16, Duration)> = futures_util::stream::iter(bodies)
        .map(|body| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let t = Instant::now();
                let status = client
                    .post(&url)
                    .bearer_auth(common::API_TOKEN)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let accepted = results.iter().filter(|r| r.0 == 202).count();
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.1).collect();
    latencies.sort_unstable();
    let pct =
        |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;

    // Delivery: from the end of the posting phase until the outbox is empty.
    let delivered_before =
        common::metric(&client, &base, "isv_merchant_syncs_delivered_total").await;
    let d_start = Instant::now();
    loop {
        let delivered = common::metric(&client, &base, "isv_merchant_syncs_delivered_total").await;
        if delivered as usize >= accepted || d_start.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = common::metric(&client, &base, "isv_merchant_syncs_delivered_total").await;
    let total_delivery_time = start.elapsed();
    let bad_signatures = alipay.calls().iter().filter(|c| !c.signature_ok).count();
    let _ = child.start_kill();
    let _ = child.wait().await;
    alipay.stop().await;
    format!(
        "| {db:?} | {accepted}/{count} | {:.0} syncs/s | {:.2} ms | {:.2} ms | {delivered} ({delivered_before} during posting) | {:.0} deliveries/s overall | {bad_signatures} |",
        accepted as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        delivered as f64 / total_delivery_time.as_secs_f64(),
    ) + &format!(" {:.1} s after posting |", d_start.elapsed().as_secs_f64())
}

fn main() {
    let count: usize = common::env_or("BENCH_SYNCS", 20_000);
    let concurrency: usize = common::env_or("BENCH_CONCURRENCY", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for db in common::bench_backends() {
        rows.push(runtime.block_on(run_backend(db, count, concurrency)));
    }
    println!(
        "\nMerchant-order sync through HTTP (validated + committed + queued), concurrency {concurrency}"
    );
    println!(
        "| backend | accepted | rate | p50 | p99 | delivered | delivery rate | bad request signatures | outbox drained |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
