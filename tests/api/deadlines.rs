//! The scheduler's claim on due deadlines: a lease, disjoint between concurrent claimers.

use crate::both_backends;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use chrono::Duration;
use isv_lifecycle::store::deadlines::TimerKind;
use isv_lifecycle::store::{deadlines, to_db_time};

async fn claims_are_leases(app: TestApp) {
    let key = common::platform_private_key();
    for i in 0..40 {
        let body =
            common::order_notification(&key, &format!("DL{i:03}"), &format!("n-dl-{i}"), "9.90");
        assert_eq!(app.post_notify(body).await.1, "success");
    }
    app.run_pending_jobs().await;
    // Each notice queued an order.query, due at once: one tick asks Alipay about every order
    // (which still shows them unpaid) and finishes those rows.
    let report = app.tick().await;
    assert_eq!(
        (report.claimed, report.transitions, report.errors),
        (40, 0, 0),
        "{report:?}"
    );
    let pool = app.services.pool.clone();
    let claim = move |now: chrono::DateTime<chrono::Utc>, limit: i64| {
        let mut conn = pool.get().unwrap();
        deadlines::claim_due(
            &mut conn,
            to_db_time(now),
            to_db_time(now + Duration::minutes(5)),
            limit,
        )
        .unwrap()
        .into_iter()
        .map(|claimed| claimed.expect("every kind reads"))
        .collect::<Vec<_>>()
    };
    // Payment deadlines fall due three days after the order time (2024-06-10 05:01 UTC).
    let before = common_due() - Duration::seconds(1);
    assert!(
        claim(before, 100).is_empty(),
        "nothing is due before the deadline"
    );
    let due = common_due();
    let first = claim(due, 15);
    assert_eq!(first.len(), 15);
    assert!(
        first
            .iter()
            .all(|d| d.kind == TimerKind::Payment && d.warning_days == 0)
    );
    // Claimed rows are leased: the next claim gets the others, then nothing.
    let second = claim(due, 100);
    assert_eq!(second.len(), 25);
    assert!(claim(due, 100).is_empty());
    // A lease that runs out (its replica died) is claimed again.
    let again = claim(due + Duration::minutes(6), 100);
    assert_eq!(again.len(), 40);
    // Finished rows are never claimed again.
    let mut conn = app.services.pool.get().unwrap();
    for d in &again {
        assert!(
            deadlines::finish(
                &mut conn,
                d.id,
                isv_lifecycle::domain::lifecycle::DeadlineState::Fired
            )
            .unwrap()
        );
        assert!(
            !deadlines::finish(
                &mut conn,
                d.id,
                isv_lifecycle::domain::lifecycle::DeadlineState::Fired
            )
            .unwrap(),
            "finish is guarded"
        );
    }
    drop(conn);
    assert!(claim(due + Duration::days(1), 100).is_empty());
    app.stop().await;
}
both_backends!(claims_are_leases, claims_are_leases);

fn common_due() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2024-06-13T05:01:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Concurrent claimers (threads standing in for replicas) never get the same row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_are_disjoint_on_postgres() {
    if common::skip_postgres() {
        return;
    }
    let app = TestApp::spawn(Db::Postgres).await;
    let key = common::platform_private_key();
    for i in 0..300 {
        app.post_notify(common::order_notification(
            &key,
            &format!("CC{i:04}"),
            &format!("n-cc-{i}"),
            "9.90",
        ))
        .await;
    }
    app.run_pending_jobs().await;
    let due = to_db_time(common_due());
    let lease = to_db_time(common_due() + Duration::minutes(5));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let pool = app.services.pool.clone();
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                let mut mine = Vec::new();
                loop {
                    let batch = deadlines::claim_due(&mut conn, due, lease, 7).unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|d| d.unwrap().id));
                }
            })
        })
        .collect();
    let mut all: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    // Per order: the order.query its notice queued and the payment deadline.
    assert_eq!(
        (total, all.len()),
        (600, 600),
        "every deadline claimed exactly once"
    );
    app.stop().await;
}
