//! Scheduler tick cost with many open orders, run by hand (not in CI):
//!
//! ```sh
//! cargo bench --bench deadline_tick                 # 1,000,000 open orders, both backends
//! BENCH_ORDERS=200000 BENCH_BACKENDS=sqlite cargo bench --bench deadline_tick
//! ```
//!
//! Fills a fresh database with `BENCH_ORDERS` open orders, each with a pending deadline due
//! within the next 30 days, then times the scheduler's claim (`store::deadlines::claim_due`, the
//! whole of a tick's database work when nothing is due) 500 times, and prints the query plan to
//! show the partial index `deadlines_due` is what answers it.

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::{Duration, NaiveDateTime};
use isv_lifecycle::store::{self, DbTarget, deadlines};
use std::time::Instant;

fn main() {
    let orders: usize = common::env_or("BENCH_ORDERS", 1_000_000);
    let now: NaiveDateTime = chrono::NaiveDate::from_ymd_opt(2024, 6, 10)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap();
    let mut rows = Vec::new();
    for db in common::bench_backends() {
        let test_db = common::test_db(db);
        let pool = store::connect_pool(&DbTarget::parse(&test_db.url).unwrap(), 2).unwrap();
        store::migrate(&pool).unwrap();
        let mut conn = pool.get().unwrap();
        let t = Instant::now();
        // Due from 2024-06-11 on, two seconds apart; the tick runs at 2024-06-10 12:00.
        common::fill_orders_with_deadlines(&mut conn, orders, "2024-06-11 00:00:00", 2);
        eprintln!(
            "{db:?}: {orders} open orders and deadlines written in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let plan = deadlines::explain_claim(&mut conn, now).unwrap();
        drop(conn);
        let mut times = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            let mut conn = pool.get().unwrap();
            let claimed =
                deadlines::claim_due(&mut conn, now, now + Duration::minutes(5), 100).unwrap();
            times.push(t.elapsed());
            assert!(claimed.is_empty(), "nothing is due at {now}");
        }
        times.sort_unstable();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
        rows.push(format!(
            "| {db:?} | {orders} | {mean:.3} ms | {:.3} ms | {:.3} ms | {} |",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 99 / 100]),
            plan.join(" / ")
        ));
    }
    println!("\nScheduler tick with nothing due (claim_due, limit 100), 500 ticks");
    println!("| backend | open orders | mean | p50 | p99 | plan of the claim's select |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
