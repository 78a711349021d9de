//! Fault suite, run by hand (not in CI; it stops and starts the local PostgreSQL):
//!
//! ```sh
//! cargo bench --bench faults
//! ```
//!
//! 1. **PostgreSQL outage under load**: the release `serve` on PostgreSQL takes a steady stream of
//!    signed messages; the database is stopped for 3 s and started again. While it is down the
//!    gateway must answer `fail`, never `success`; once it is back, `success` must return within
//!    5 s by itself; every message answered `success` must be stored.
//! 2. **Malformed flood**: 10,000 hostile requests (garbage bodies, bodies over the limit, wrong
//!    content types, forged signatures, slow clients trickling their body): no 5xx storm, no crash,
//!    nothing stored, memory bounded.
//!
//! SIGKILL during a burst is `tests/crash.rs`; the simulator's 30% faults during a full
//! lifecycle are `tests/demo.rs` (both run in CI).

#[path = "../tests/common/mod.rs"]
mod common;

use futures_util::StreamExt as _;
use isv_lifecycle::store::{self, DbTarget};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;

fn pg(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let status = std::process::Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            version.to_str().unwrap(),
            "main",
            action,
            "-m",
            "fast",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctlcluster {action}");
}

fn stored(target: &DbTarget) -> std::collections::BTreeSet<String> {
    let pool = store::connect_pool(target, 1).unwrap();
    let mut conn = pool.get().unwrap();
    store::messages::identities(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(_, n, _)| n)
        .collect()
}

fn rss(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn outage() -> Vec<String> {
    let test_db = common::test_db(common::Db::Postgres);
    let target = DbTarget::parse(&test_db.url).unwrap();
    let port = common::free_port();
    let mut child = common::serve_command(&test_db.url, test_db._dir.path(), port, "error")
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    common::wait_healthy(&client, &base).await;
    let key = Arc::new(common::platform_private_key());
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let success_while_down = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first_success_after: Arc<std::sync::Mutex<Option<Instant>>> =
        Arc::new(std::sync::Mutex::new(None));
    let back_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::new(std::sync::Mutex::new(None));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (client, base, key, down, stop, swd, acked, first, back) = (
            client.clone(),
            base.clone(),
            key.clone(),
            down.clone(),
            stop.clone(),
            success_while_down.clone(),
            acked.clone(),
            first_success_after.clone(),
            back_at.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let notify_id = format!("out-{worker}-{i}");
                let body = common::order_notification(
                    &key,
                    &format!("PO{worker}x{i}"),
                    &notify_id,
                    "9.90",
                );
                let was_down = down.load(Ordering::SeqCst);
                let answer = match client
                    .post(format!("{base}/alipay/gateway"))
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                if answer == "success" {
                    if was_down && down.load(Ordering::SeqCst) {
                        swd.fetch_add(1, Ordering::SeqCst);
                    }
                    acked.lock().unwrap().push(notify_id);
                    if back.lock().unwrap().is_some() {
                        first.lock().unwrap().get_or_insert_with(Instant::now);
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // "Down" from the moment the server has stopped to the moment it is asked to start: no
    // commit can succeed in between.
    pg("stop");
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    down.store(false, Ordering::SeqCst);
    pg("start");
    let started = Instant::now();
    *back_at.lock().unwrap() = Some(started);
    while first_success_after.lock().unwrap().is_none()
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = first_success_after
        .lock()
        .unwrap()
        .map(|t| t.duration_since(started));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        let _ = s.await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let acked = acked.lock().unwrap().clone();
    let have = stored(&target);
    let lost = acked.iter().filter(|id| !have.contains(*id)).count();
    let swd = success_while_down.load(Ordering::SeqCst);
    let recovery = recovered
        .map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "never".into());
    let ok = swd == 0 && lost == 0 && recovered.is_some_and(|d| d <= Duration::from_secs(5));
    vec![format!(
        "| PostgreSQL stopped 3 s under load | `success` while down: {swd}; first `success` after restart: {recovery}; acknowledged {} / lost {lost} | {} |",
        acked.len(),
        if ok { "pass" } else { "FAIL" }
    )]
}

async fn malformed_flood() -> Vec<String> {
    let test_db = common::test_db(common::Db::Sqlite);
    let target = DbTarget::parse(&test_db.url).unwrap();
    let port = common::free_port();
    let mut child = common::serve_command(&test_db.url, test_db._dir.path(), port, "error")
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    common::wait_healthy(&client, &base).await;
    let rss_before = rss(pid, "VmRSS:");
    let key = common::platform_private_key();
    let genuine = common::order_notification(&key, "MF1", "mf-1", "9.90");
    let huge = "a=".to_string() + &"x".repeat(2 << 20);
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        u16,
        usize,
    >::new()));
    let started = Instant::now();
    futures_util::stream::iter(0..10_000usize)
        .map(|i| {
            let (client, base, statuses) = (client.clone(), base.clone(), statuses.clone());
            let body: Vec<u8> = match i % 6 {
                0 => (0..(i % 512))
                    .map(|j| ((i * 31 + j * 7) % 256) as u8)
                    .collect(),
                1 => genuine.replace("9.90", "0.01").into_bytes(),
                2 => huge.clone().into_bytes(),
                3 => format!("{{\"json\":{i}}}").into_bytes(),
                4 => format!("{genuine}&notify_id=dup{i}").into_bytes(),
                _ => genuine.replacen("sign=", "sign=AAAA", 1).into_bytes(),
            };
            let content_type = if i % 3 == 0 {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            async move {
                let status = match client
                    .post(format!("{base}/alipay/gateway"))
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                *statuses.lock().unwrap().entry(status).or_insert(0) += 1;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let flood = started.elapsed();
    // Slow clients: a body trickled a byte at a time; the server must drop them, not wait forever.
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let port = port;
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let _ = stream.write_all(b"POST /alipay/gateway HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n").await;
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(15) {
                    if stream.write_all(b"a").await.is_err() {
                        return t.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                t.elapsed()
            })
        })
        .collect();
    let mut dropped_after = Vec::new();
    for s in slow {
        dropped_after.push(s.await.unwrap());
    }
    let alive = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200);
    let rss_peak = rss(pid, "VmHWM:");
    let _ = child.start_kill();
    let _ = child.wait().await;
    let rows = stored(&target).len();
    let statuses = statuses.lock().unwrap().clone();
    let server_errors: usize = statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let longest_slow = dropped_after.iter().max().copied().unwrap_or_default();
    let ok = alive
        && rows == 0
        && server_errors == 0
        && rss_peak < 200 * 1024
        && longest_slow < Duration::from_secs(15);
    vec![format!(
        "| 10,000 malformed requests + 20 slow clients | statuses {statuses:?} in {:.1} s; 5xx: {server_errors}; stored: {rows}; alive after: {alive}; RSS {rss_before} kB → peak {rss_peak} kB; slow clients cut after ≤ {:.1} s | {} |",
        flood.as_secs_f64(),
        longest_slow.as_secs_f64(),
        if ok { "pass" } else { "FAIL" }
    )]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    rows.extend(runtime.block_on(malformed_flood()));
    rows.extend(runtime.block_on(outage()));
    println!("\nFault suite");
    println!("| scenario | observed | result |");
    println!("|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    if rows.iter().any(|r| r.ends_with("FAIL |")) {
        std::process::exit(1);
    }
}
