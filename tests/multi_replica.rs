//! Two `serve` processes on one PostgreSQL with 10,000 due deadlines: each deadline fires exactly
//! once (one transition, one `order.query` call), both replicas take part, nothing fails.

mod common;

use common::Db;
use common::fake_alipay::FakeAlipay;
use isv_lifecycle::store::{self, DbTarget};
use std::process::Stdio;
use std::time::{Duration, Instant};

const DEADLINES: usize = 10_000;

fn cancelled_history(target: &DbTarget) -> (i64, i64) {
    use diesel::prelude::*;
    use isv_lifecycle::store::schema::{order_history, orders};
    let pool = store::connect_pool(target, 1).unwrap();
    let mut pooled = pool.get().unwrap();
    let conn: &mut store::AnyConnection = &mut pooled;
    isv_lifecycle::db_run!(conn: {
        let transitions: i64 = order_history::table.filter(order_history::to_status.eq("cancelled")).count().get_result(conn).unwrap();
        let cancelled: i64 = orders::table.filter(orders::status.eq("cancelled")).count().get_result(conn).unwrap();
        (transitions, cancelled)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_each_deadline_exactly_once() {
    if common::skip_postgres() {
        return;
    }
    let test_db = common::test_db(Db::Postgres);
    let target = DbTarget::parse(&test_db.url).unwrap();
    let pool = store::connect_pool(&target, 1).unwrap();
    store::migrate(&pool).unwrap();
    common::fill_orders_with_deadlines(
        &mut pool.get().unwrap(),
        DEADLINES,
        "2024-06-13 00:00:00",
        1,
    );
    drop(pool);

    // Alipay shows every order cancelled (the 3-day timeout), answered with one pre-signed body.
    let alipay = FakeAlipay::start_constant(
        "alipay.open.servicemarket.order.query",
        serde_json::json!({"code": "10000", "msg": "Success", "status": "CLOSED", "total_size": 1,
            "order_items": [{"order_status": "MERCHANT_CANCELLED"}]}),
    )
    .await;
    let client = reqwest::Client::new();
    let mut replicas = Vec::new();
    for i in 0..2 {
        let port = common::free_port();
        let log = test_db._dir.path().join(format!("replica-{i}.log"));
        let child = common::serve_command(&test_db.url, test_db._dir.path(), port, "warn")
            .env("ISV__ALIPAY__GATEWAY_URL", &alipay.url)
            .env("ISV__SCHEDULER__TICK_SECONDS", "1")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        replicas.push((child, base, log));
    }
    for (_, base, _) in &replicas {
        common::wait_healthy(&client, base).await;
    }
    let started = Instant::now();
    loop {
        let (_, cancelled) = cancelled_history(&target);
        if cancelled as usize == DEADLINES || started.elapsed() > Duration::from_secs(240) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    // A few more ticks: nothing may fire twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut fired = Vec::new();
    for (_, base, _) in &replicas {
        fired.push(common::metric(&client, base, "isv_deadlines_fired_total").await);
    }
    for (child, _, _) in &mut replicas {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let (transitions, cancelled) = cancelled_history(&target);
    let queries = alipay
        .calls()
        .iter()
        .filter(|c| c.method == "alipay.open.servicemarket.order.query")
        .count();
    eprintln!(
        "{DEADLINES} deadlines fired by two replicas in {:.1} s: {fired:?} per replica",
        elapsed.as_secs_f64()
    );
    // The replicas' own account first: a retried fire or call says why in its log.
    for (_, _, log) in &replicas {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            !text.contains("not fired") && !text.contains("ERROR"),
            "{text}"
        );
    }
    assert_eq!(cancelled as usize, DEADLINES, "every order cancelled");
    assert_eq!(
        transitions as usize, DEADLINES,
        "one transition per deadline"
    );
    assert_eq!(queries, DEADLINES, "one order.query per deadline");
    assert!(alipay.calls().iter().all(|c| c.signature_ok));
    assert_eq!(fired.iter().sum::<u64>() as usize, DEADLINES, "{fired:?}");
    assert!(
        fired.iter().all(|n| *n > 0),
        "both replicas fired deadlines: {fired:?}"
    );
    alipay.stop().await;
}
