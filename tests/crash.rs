//! Crash safety of the real binary: a burst of messages, SIGKILL in the middle, a restart and a
//! full resend. Every message answered `success` before the kill must be stored; in the end every
//! message is stored and applied exactly once. The logs (at debug level) never hold a token.

mod common;

use common::Db;
use futures_util::StreamExt as _;
use isv_lifecycle::store::{self, DbTarget};
use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Child;

const MESSAGES: usize = 2400;
const KILL_AFTER: usize = 900;

struct Server {
    child: Child,
    base: String,
}

async fn start(db_url: &str, dir: &std::path::Path, log: &std::path::Path, port: u16) -> Server {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = common::serve_command(db_url, dir, port, "debug")
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("the isv-lifecycle binary starts");
    let base = format!("http://127.0.0.1:{port}");
    common::wait_healthy(&reqwest::Client::new(), &base).await;
    Server { child, base }
}

async fn post(client: &reqwest::Client, base: &str, body: String) -> bool {
    match client
        .post(format!("{base}/alipay/gateway"))
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.text().await.map(|t| t == "success").unwrap_or(false),
        Err(_) => false,
    }
}

fn stored_ids(target: &DbTarget) -> BTreeSet<String> {
    let pool = store::connect_pool(target, 1).unwrap();
    let mut conn = pool.get().unwrap();
    store::messages::identities(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(_, n, _)| n)
        .collect()
}

fn counts(target: &DbTarget) -> (usize, i64, i64, i64) {
    use diesel::prelude::*;
    use isv_lifecycle::store::schema::{order_history, orders};
    let pool = store::connect_pool(target, 1).unwrap();
    let mut pooled = pool.get().unwrap();
    let conn: &mut store::AnyConnection = &mut pooled;
    let applied = store::messages::count_by_state(conn)
        .unwrap()
        .into_iter()
        .filter(|(s, _)| s == "applied")
        .map(|(_, n)| n as usize)
        .sum();
    isv_lifecycle::db_run!(conn: {
        let orders: i64 = orders::table.count().get_result(conn).unwrap();
        // The scheduler may also move these (old) orders past their deadlines; count the
        // creations.
        let history: i64 = order_history::table
            .filter(order_history::cause.eq("order_notification"))
            .count()
            .get_result(conn)
            .unwrap();
        let distinct: i64 = order_history::table
            .filter(order_history::cause.eq("order_notification"))
            .select(diesel::dsl::count(order_history::commodity_order_id).aggregate_distinct())
            .get_result(conn)
            .unwrap();
        (applied, orders, history, distinct)
    })
}

async fn crash_and_resend(db: Db) {
    let test_db = common::test_db(db);
    let target = DbTarget::parse(&test_db.url).unwrap();
    let dir = test_db._dir.path().to_path_buf();
    let log = dir.join("server.log");
    let port = common::free_port();
    let key = common::platform_private_key();

    let mut bodies: Vec<(String, String)> = (0..MESSAGES)
        .map(|i| {
            let notify_id = format!("crash-{i:05}");
            (
                notify_id.clone(),
                common::order_notification(&key, &format!("CO{i:05}"), &notify_id, "19.90"),
            )
        })
        .collect();
    // Authorization messages carry tokens, which must not reach the debug log.
    for v in common::vectors("notifications.jsonl")
        .into_iter()
        .filter(|v| v["kind"] == "auth_notify")
    {
        bodies.push((
            v["params"]["notify_id"].as_str().unwrap().to_string(),
            v["body"].as_str().unwrap().to_string(),
        ));
    }
    let total = bodies.len();

    let mut server = start(&test_db.url, &dir, &log, port).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let kill_tx = Arc::new(std::sync::Mutex::new(Some(kill_tx)));
    let results: Vec<(String, bool)> = {
        let base = server.base.clone();
        let sends = futures_util::stream::iter(bodies.clone()).map(|(id, body)| {
            let client = client.clone();
            let base = base.clone();
            let acknowledged = acknowledged.clone();
            let kill_tx = kill_tx.clone();
            async move {
                let ok = post(&client, &base, body).await;
                if ok && acknowledged.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    if let Some(tx) = kill_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
                (id, ok)
            }
        });
        let collect = sends.buffer_unordered(32).collect::<Vec<_>>();
        let killer = async {
            let _ = kill_rx.await;
            server.child.start_kill().unwrap(); // SIGKILL: no shutdown, no flush
        };
        let (results, ()) = tokio::join!(collect, killer);
        results
    };
    let _ = server.child.wait().await;
    let acked: BTreeSet<String> = results
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        acked.len() >= KILL_AFTER,
        "only {} acknowledged before the kill",
        acked.len()
    );
    assert!(
        acked.len() < total,
        "the kill came after every message; nothing was tested"
    );
    eprintln!(
        "{} of {total} messages acknowledged before SIGKILL",
        acked.len()
    );

    // Nothing acknowledged may be lost.
    let stored = stored_ids(&target);
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost after SIGKILL, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // Restart and resend everything, as Alipay would.
    let mut server = start(&test_db.url, &dir, &log, port).await;
    let base = server.base.clone();
    let answers: Vec<bool> = futures_util::stream::iter(bodies.clone())
        .map(|(_, body)| {
            let client = client.clone();
            let base = base.clone();
            async move { post(&client, &base, body).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        answers.iter().all(|ok| *ok),
        "after the restart every message must be answered success"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let (applied, orders, history, distinct) = loop {
        let c = counts(&target);
        if c.0 == total || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server.child.start_kill().unwrap();
    let _ = server.child.wait().await;

    assert_eq!(stored_ids(&target).len(), total, "each message stored once");
    assert_eq!(applied, total, "each message applied");
    assert_eq!(
        (orders, history, distinct),
        (MESSAGES as i64, MESSAGES as i64, MESSAGES as i64),
        "each order created exactly once"
    );

    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("DEBUG"),
        "the server logged at debug level"
    );
    for secret in common::VECTOR_SECRETS {
        assert!(
            !log_text.contains(secret),
            "token {secret} in the server log"
        );
    }
    assert!(!log_text.contains(common::ENCRYPTION_KEY) && !log_text.contains(common::ADMIN_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_nothing_sqlite() {
    crash_and_resend(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_nothing_postgres() {
    if common::skip_postgres() {
        return;
    }
    crash_and_resend(Db::Postgres).await;
}
