//! Gateway load benchmark, run by hand (not in CI):
//!
//! ```sh
//! cargo bench --bench gateway
//! BENCH_BACKENDS=postgres BENCH_MESSAGES=60000 BENCH_CONCURRENCY=64 cargo bench --bench gateway
//! ```
//!
//! For each backend it starts the release `isv-lifecycle serve` on a fresh database (a temp SQLite
//! file, or a new schema on the local PostgreSQL), then from this process, on the same machine:
//! 1. warm-up: 2,000 messages;
//! 2. maximum rate: closed loop, `BENCH_CONCURRENCY` requests in flight, distinct signed order
//!    notifications, each answered `success` only after its commit;
//! 3. half rate: open loop at half the measured maximum for `BENCH_HALF_SECONDS`; latency is taken
//!    from each request's scheduled send time, so queueing delay is not hidden.
//!
//! It then counts the stored rows to check that every acknowledged message was committed.
//! Messages are signed once with the vectors' platform key and cached under `target/`.

#[path = "../tests/common/mod.rs"]
mod common;

use futures_util::StreamExt as _;
use isv_lifecycle::store::{self, DbTarget};
use std::time::{Duration, Instant};

fn messages(count: usize) -> Vec<String> {
    let cache = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-gateway-{count}.txt"));
    if let Ok(text) = std::fs::read_to_string(&cache) {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() == count {
            return lines;
        }
    }
    eprintln!("signing {count} messages (cached in {})", cache.display());
    let threads = 2;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let key = common::platform_private_key();
                (t..count)
                    .step_by(threads)
                    .map(|i| {
                        (
                            i,
                            common::order_notification(
                                &key,
                                &format!("B{i:07}"),
                                &format!("bench-{i:07}"),
                                "19.90",
                            ),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(usize, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by_key(|(i, _)| *i);
    let bodies: Vec<String> = all.into_iter().map(|(_, b)| b).collect();
    let _ = std::fs::write(&cache, bodies.join("\n"));
    bodies
}

struct Stats {
    ok: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> bool {
    match client
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.text().await.map(|t| t == "success").unwrap_or(false),
        Err(_) => false,
    }
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    bodies: &[String],
    concurrency: usize,
) -> Stats {
    let start = Instant::now();
    let results: Vec<(bool, Duration)> = futures_util::stream::iter(bodies.iter().cloned())
        .map(|body| async move {
            let t = Instant::now();
            (post(client, url, body).await, t.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    Stats {
        ok: results.iter().filter(|r| r.0).count(),
        failed: results.iter().filter(|r| !r.0).count(),
        elapsed,
        latencies: results.into_iter().map(|r| r.1).collect(),
    }
}

async fn open_loop(client: &reqwest::Client, url: &str, bodies: Vec<String>, rate: f64) -> Stats {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(scheduled.into()).await;
        let client = client.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let ok = post(&client, &url, body).await;
            (ok, scheduled.elapsed())
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    Stats {
        ok: results.iter().filter(|r| r.0).count(),
        failed: results.iter().filter(|r| !r.0).count(),
        elapsed,
        latencies: results.into_iter().map(|r| r.1).collect(),
    }
}

fn pending(target: &DbTarget) -> usize {
    let pool = store::connect_pool(target, 1).unwrap();
    let mut conn = pool.get().unwrap();
    store::messages::count_by_state(&mut conn)
        .unwrap()
        .into_iter()
        .filter(|(s, _)| s == "received")
        .map(|(_, n)| n as usize)
        .sum()
}

fn stored(target: &DbTarget) -> usize {
    let pool = store::connect_pool(target, 1).unwrap();
    let mut conn = pool.get().unwrap();
    store::messages::identities(&mut conn).unwrap().len()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn run_backend(
    db: common::Db,
    bodies: &[String],
    concurrency: usize,
    half_seconds: f64,
) -> String {
    let test_db = common::test_db(db);
    let target = DbTarget::parse(&test_db.url).unwrap();
    let port = common::free_port();
    let mut child = common::serve_command(&test_db.url, test_db._dir.path(), port, "warn")
        .env("ISV__DATABASE__POOL_SIZE", "16")
        // The orders are dated 2024: keep the deadline scheduler out of this measurement.
        .env("ISV__SCHEDULER__TICK_SECONDS", "86400")
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/alipay/gateway");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()
        .unwrap();
    common::wait_healthy(&client, &format!("http://127.0.0.1:{port}")).await;

    let warm = 2000.min(bodies.len() / 10);
    let rest = &bodies[warm..];
    closed_loop(&client, &url, &bodies[..warm], concurrency).await;
    let max_share = rest.len() * 6 / 10;
    let mut max = closed_loop(&client, &url, &rest[..max_share], concurrency).await;
    // Let the apply worker catch up with the backlog of the closed loop, so that the half-rate
    // phase measures the steady state (ingest and apply of the new messages), not a backlog.
    let drain_start = Instant::now();
    let backlog = pending(&target);
    while pending(&target) > 0 && drain_start.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = drain_start.elapsed();
    let half_rate = max.rate() / 2.0;
    let half_count = ((half_rate * half_seconds) as usize).min(rest.len() - max_share);
    let mut half = open_loop(
        &client,
        &url,
        rest[max_share..max_share + half_count].to_vec(),
        half_rate,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The server's peak resident memory over the whole run (Linux: VmHWM).
    let peak_rss = child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let _ = child.start_kill();
    let _ = child.wait().await;
    let posted_ok = warm + max.ok + half.ok;
    let rows = stored(&target);
    assert!(
        rows >= posted_ok - (max.failed + half.failed).min(posted_ok),
        "acknowledged messages missing"
    );
    let (max_p50, max_p99) = (ms(max.percentile(0.5)), ms(max.percentile(0.99)));
    let (half_p50, half_p99) = (ms(half.percentile(0.5)), ms(half.percentile(0.99)));
    format!(
        "| {db:?} | {} | {:.0} msgs/s | {max_p50} | {max_p99} | {} | {backlog} in {:.1} s | {:.0} msgs/s | {half_p50} | {half_p99} | {} | {rows} | {peak_rss} |",
        max.ok,
        max.rate(),
        max.failed,
        drain.as_secs_f64(),
        half.rate(),
        half.failed,
    )
}

fn main() {
    let count: usize = common::env_or("BENCH_MESSAGES", 60_000);
    let concurrency: usize = common::env_or("BENCH_CONCURRENCY", 64);
    let half_seconds: f64 = common::env_or("BENCH_HALF_SECONDS", 5.0);
    let bodies = messages(count);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for db in common::bench_backends() {
        rows.push(runtime.block_on(run_backend(db, &bodies, concurrency, half_seconds)));
    }
    println!(
        "\nGateway: verified + committed order notifications, {} cores, concurrency {concurrency}",
        num_cpus()
    );
    println!(
        "| backend | max: ok | max rate | max p50 | max p99 | max failed | apply backlog drained | half: rate | half p50 | half p99 | half failed | rows stored | server peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
