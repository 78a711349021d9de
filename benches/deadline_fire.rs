//! Deadline firing rate, run by hand (not in CI):
//!
//! ```sh
//! cargo bench --bench deadline_fire                       # 100,000 due deadlines, both backends
//! BENCH_DEADLINES=20000 BENCH_BACKENDS=postgres cargo bench --bench deadline_fire
//! ```
//!
//! Writes `BENCH_DEADLINES` open orders whose payment deadlines are all due, starts the release
//! `serve` (tick 1 s) against a local Alipay endpoint in this process, and times how long the
//! scheduler takes to fire them all. Each firing is the full path: claim, `order.query` (signed
//! by us, signature checked by the endpoint, its answer verified by us), the transition written
//! with its history. The endpoint answers every query with one pre-signed body ("cancelled"), so
//! that its own signing does not take the CPU being measured.

#[path = "../tests/common/mod.rs"]
mod common;

use common::fake_alipay::FakeAlipay;
use isv_lifecycle::store::{self, DbTarget};
use std::time::{Duration, Instant};

async fn run_backend(db: common::Db, count: usize, concurrency: usize) -> String {
    let test_db = common::test_db(db);
    let target = DbTarget::parse(&test_db.url).unwrap();
    let pool = store::connect_pool(&target, 1).unwrap();
    store::migrate(&pool).unwrap();
    let t = Instant::now();
    common::fill_orders_with_deadlines(&mut pool.get().unwrap(), count, "2024-06-13 00:00:00", 1);
    eprintln!(
        "{db:?}: {count} due deadlines written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(pool);
    let alipay = FakeAlipay::start_constant(
        "alipay.open.servicemarket.order.query",
        serde_json::json!({"code": "10000", "msg": "Success", "status": "CLOSED", "total_size": 1,
            "order_items": [{"order_status": "MERCHANT_CANCELLED"}]}),
    )
    .await;
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut child = common::serve_command(&test_db.url, test_db._dir.path(), port, "warn")
        .env("ISV__ALIPAY__GATEWAY_URL", &alipay.url)
        .env("ISV__SCHEDULER__TICK_SECONDS", "1")
        .env("ISV__SCHEDULER__CONCURRENCY", concurrency.to_string())
        .env("ISV__DATABASE__POOL_SIZE", "16")
        .spawn()
        .unwrap();
    common::wait_healthy(&client, &base).await;
    loop {
        let fired = common::metric(&client, &base, "isv_deadlines_fired_total").await as usize;
        if fired >= count || start.elapsed() > Duration::from_secs(1200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = start.elapsed();
    let fired = common::metric(&client, &base, "isv_deadlines_fired_total").await as usize;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let queries = alipay.calls().len();
    alipay.stop().await;
    format!(
        "| {db:?} | {fired}/{count} | {:.1} s | {:.0} deadlines/s | {queries} |",
        elapsed.as_secs_f64(),
        fired as f64 / elapsed.as_secs_f64()
    )
}

fn main() {
    let count: usize = common::env_or("BENCH_DEADLINES", 100_000);
    let concurrency: usize = common::env_or("BENCH_CONCURRENCY", 32);
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
        "\nDeadlines fired, each with its order.query round trip to a local endpoint (from process start)"
    );
    println!("| backend | fired | time | rate | order.query calls |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
