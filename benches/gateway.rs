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
//!
//! `BENCH_MIX=mixed` sends the mix production sends instead of order notifications only: one
//! third order notices, one third audit results (`alipay.open.mini.version.audit.passed`), one
//! third authorization cancellations (`alipay.open.auth.appauth.cancelled`), all distinct. Each
//! row then adds what applying costs: the **apply rate** (messages acknowledged in the closed
//! loop over the time until the last of them was applied), the **ack→applied latency** of the
//! half-rate phase (p50/p99, from each message's `received_at` and `applied_at`), the database
//! statements the server sent per message of the closed loop (`isv_db_statements_total`, ingest
//! and apply), and where the CPU went during the closed loop and its drain, from `/proc` (the
//! server process, every `postgres` process, and this load generator; 100% = one core).

#[path = "../tests/common/mod.rs"]
mod common;

use futures_util::StreamExt as _;
use isv_lifecycle::store::{self, DbTarget};
use std::time::{Duration, Instant};

/// What a run sends: order notifications only, or the production mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Orders,
    Mixed,
}

impl Mix {
    fn from_env() -> Mix {
        match std::env::var("BENCH_MIX").as_deref() {
            Ok("mixed") => Mix::Mixed,
            Ok("orders") | Err(_) => Mix::Orders,
            Ok(other) => panic!("BENCH_MIX={other:?}: expected orders or mixed"),
        }
    }
}

/// Message `i` of the mix: an order notice, an audit result or an authorization cancellation,
/// each for its own order or mini program.
fn message(key: &isv_lifecycle::alipay::PrivateKey, mix: Mix, i: usize) -> String {
    let kind = match mix {
        Mix::Orders => 0,
        Mix::Mixed => i % 3,
    };
    if kind == 0 {
        return common::order_notification(
            key,
            &format!("B{i:07}"),
            &format!("bench-{i:07}"),
            "19.90",
        );
    }
    let mini_app = format!("20210042{i:08}");
    let (method, biz) = if kind == 1 {
        (
            "alipay.open.mini.version.audit.passed",
            format!("{{\"mini_app_id\":\"{mini_app}\",\"mini_app_version\":\"0.0.1\"}}"),
        )
    } else {
        (
            "alipay.open.auth.appauth.cancelled",
            format!("{{\"auth_app_id\":\"{mini_app}\",\"app_auth_token\":\"202406BB{i:032}\"}}"),
        )
    };
    common::platform_message(
        key,
        method,
        &format!("bench-{i:07}"),
        1_718_000_000_000i64 + i as i64,
        &biz,
    )
}

fn messages(count: usize, mix: Mix) -> Vec<String> {
    let cache = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-gateway-{mix:?}-{count}.txt"));
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
                    .map(|i| (i, message(&key, mix, i)))
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

/// Messages still waiting to be applied, counted on a connection of the caller's.
fn pending(conn: &mut store::PooledConn) -> usize {
    use diesel::prelude::*;
    use store::schema::gateway_messages as gm;
    let query = gm::table.filter(gm::state.eq("received")).count();
    let count: i64 = match &mut **conn {
        store::AnyConnection::Postgresql(c) => query.get_result(c),
        store::AnyConnection::Sqlite(c) => query.get_result(c),
    }
    .unwrap();
    count as usize
}

/// Whether any message still waits to be applied: what the drain polls. It stops at the first
/// waiting row of the partial index `gateway_messages_pending`, so polling does not take the CPU
/// that applying needs (a count by state scans the whole table, and a count of the waiting rows
/// visits every row the index still lists; both cost ~10 ms a poll at 30,000 messages).
fn any_pending(conn: &mut store::PooledConn) -> bool {
    use diesel::prelude::*;
    use store::schema::gateway_messages as gm;
    let query = diesel::select(diesel::dsl::exists(
        gm::table.filter(gm::state.eq("received")),
    ));
    match &mut **conn {
        store::AnyConnection::Postgresql(c) => query.get_result(c),
        store::AnyConnection::Sqlite(c) => query.get_result(c),
    }
    .unwrap()
}

/// Stored messages per state, e.g. `applied 59998, quarantined 2`: what applying made of them.
fn states(target: &DbTarget) -> String {
    let pool = store::connect_pool(target, 1).unwrap();
    let mut conn = pool.get().unwrap();
    let mut counts = store::messages::count_by_state(&mut conn).unwrap();
    counts.sort();
    counts
        .into_iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn stored(target: &DbTarget) -> usize {
    let pool = store::connect_pool(target, 1).unwrap();
    let mut conn = pool.get().unwrap();
    store::messages::identities(&mut conn).unwrap().len()
}

/// CPU time used so far (clock ticks, 100 a second on Linux) by the server process, by every
/// `postgres` process, and by this load generator.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: u64,
    postgres: u64,
    load: u64,
}

/// utime + stime of a `/proc/<pid>/stat` line (fields 14 and 15, after the command's `)`).
fn stat_ticks(stat: &str) -> u64 {
    let Some(end) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    field(11) + field(12)
}

fn cpu_now(server_pid: Option<u32>) -> Cpu {
    let read = |path: String| std::fs::read_to_string(path).map_or(0, |s| stat_ticks(&s));
    let mut postgres = 0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "postgres" {
                postgres += read(format!("/proc/{pid}/stat"));
            }
        }
    }
    Cpu {
        server: server_pid.map_or(0, |pid| read(format!("/proc/{pid}/stat"))),
        postgres,
        load: read("/proc/self/stat".into()),
    }
}

/// Share of one core each used between `from` and `to` over `span` (100% = one core).
fn cpu_share(from: Cpu, to: Cpu, span: Duration) -> String {
    let pct = |a: u64, b: u64| b.saturating_sub(a) as f64 / span.as_secs_f64(); // ticks/s = % of a core
    format!(
        "{:.0}% / {:.0}% / {:.0}%",
        pct(from.server, to.server),
        pct(from.postgres, to.postgres),
        pct(from.load, to.load)
    )
}

/// How long after its `received_at` each message received since `from` was applied. The apply
/// pass stamps `applied_at` when it starts, so this is a lower bound by up to one batch.
fn apply_lags(target: &DbTarget, from: chrono::NaiveDateTime) -> Vec<Duration> {
    use diesel::prelude::*;
    use isv_lifecycle::store::schema::gateway_messages as gm;
    let pool = store::connect_pool(target, 1).unwrap();
    let mut pooled = pool.get().unwrap();
    let conn: &mut store::AnyConnection = &mut pooled;
    let rows: Vec<(chrono::NaiveDateTime, Option<chrono::NaiveDateTime>)> = isv_lifecycle::db_run!(conn: {
        gm::table
            .filter(gm::received_at.ge(from))
            .filter(gm::applied_at.is_not_null())
            .select((gm::received_at, gm::applied_at))
            .load(conn)
            .unwrap()
    });
    rows.into_iter()
        .filter_map(|(received, applied)| (applied? - received).to_std().ok())
        .collect()
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    if values.is_empty() {
        return Duration::ZERO;
    }
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

async fn drain_inbox(target: &DbTarget, limit: Duration) -> Duration {
    let start = Instant::now();
    let pool = store::connect_pool(target, 1).unwrap();
    let mut conn = pool.get().unwrap();
    while any_pending(&mut conn) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
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
    let mut command = common::serve_command(&test_db.url, test_db._dir.path(), port, "warn");
    // BENCH_APPLY_WORKERS: inbox apply workers side by side (PostgreSQL); unset, the default.
    if let Ok(workers) = std::env::var("BENCH_APPLY_WORKERS") {
        command.env("ISV__INBOX__APPLY_WORKERS", workers);
    }
    let mut child = command
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
    drain_inbox(&target, Duration::from_secs(300)).await;
    let max_share = rest.len() * 6 / 10;
    let server_pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let statements_before = common::metric(&client, &base, "isv_db_statements_total").await;
    let (cpu_before, loop_start) = (cpu_now(server_pid), Instant::now());
    let mut max = closed_loop(&client, &url, &rest[..max_share], concurrency).await;
    // Let the apply worker catch up with the backlog of the closed loop, so that the half-rate
    // phase measures the steady state (ingest and apply of the new messages), not a backlog.
    let backlog = pending(&mut store::connect_pool(&target, 1).unwrap().get().unwrap());
    let drain = drain_inbox(&target, Duration::from_secs(300)).await;
    let applied_span = loop_start.elapsed();
    let cpu = cpu_share(cpu_before, cpu_now(server_pid), applied_span);
    let apply_rate = max.ok as f64 / applied_span.as_secs_f64();
    // Everything the server sent to the database for these messages (ingest and apply), from its
    // own count (`isv_db_statements_total`).
    let statements_after = common::metric(&client, &base, "isv_db_statements_total").await;
    let statements = (statements_after - statements_before) as f64 / max.ok as f64;
    let half_rate = max.rate() / 2.0;
    let half_count = ((half_rate * half_seconds) as usize).min(rest.len() - max_share);
    let half_from = chrono::Utc::now().naive_utc();
    let mut half = open_loop(
        &client,
        &url,
        rest[max_share..max_share + half_count].to_vec(),
        half_rate,
    )
    .await;
    drain_inbox(&target, Duration::from_secs(120)).await;
    let mut lags = apply_lags(&target, half_from);
    let (lag_p50, lag_p99) = (
        ms(percentile(&mut lags, 0.5)),
        ms(percentile(&mut lags, 0.99)),
    );
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
    let states = states(&target);
    assert!(
        rows >= posted_ok - (max.failed + half.failed).min(posted_ok),
        "acknowledged messages missing"
    );
    let (max_p50, max_p99) = (ms(max.percentile(0.5)), ms(max.percentile(0.99)));
    let (half_p50, half_p99) = (ms(half.percentile(0.5)), ms(half.percentile(0.99)));
    format!(
        "| {db:?} | {} | {:.0} msgs/s | {max_p50} | {max_p99} | {} | {backlog} in {:.1} s | {apply_rate:.0} msgs/s | {statements:.2} | {cpu} | {:.0} msgs/s | {half_p50} | {half_p99} | {} | {lag_p50} | {lag_p99} | {rows} ({states}) | {peak_rss} |",
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
    let mix = Mix::from_env();
    let bodies = messages(count, mix);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for db in common::bench_backends() {
        rows.push(runtime.block_on(run_backend(db, &bodies, concurrency, half_seconds)));
    }
    let what = match mix {
        Mix::Orders => "order notifications",
        Mix::Mixed => "mixed messages (1/3 orders, 1/3 audit results, 1/3 cancellations)",
    };
    println!(
        "\nGateway: verified + committed {what}, {} cores, concurrency {concurrency}",
        num_cpus()
    );
    println!(
        "| backend | max: ok | max rate | max p50 | max p99 | max failed | apply backlog drained | apply rate | DB statements / message | CPU server / postgres / load | half: rate | half p50 | half p99 | half failed | ack→applied p50 | ack→applied p99 | rows stored (by state) | server peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
