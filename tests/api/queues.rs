//! The one job runner (issue 10): every work queue is claimed under a lease through
//! `store::queue`, settles failures through one retry policy that gives up at its limit, and
//! takes its batch size from settings.

use crate::common::fake_alipay::Reply;
use crate::common::{self, Db};
use crate::helpers::TestApp;
use chrono::Duration;
use isv_lifecycle::clock::Clock as _;
use isv_lifecycle::jobs::deadlines::Deadlines;
use isv_lifecycle::jobs::runner::{self, Drained};
use isv_lifecycle::store::{builds, merchant_orders, messages, to_db_time};

const MINI_APP: &str = "2021004199990002";

fn both(db: Db) -> bool {
    !(db == Db::Postgres && common::skip_postgres())
}

/// Inbox, builds and deliveries: a claim leases its rows, a second claim gets none of them, and
/// once the lease has run out (its worker died) they are claimed again.
async fn every_queue_is_claimed_under_a_lease(db: Db) {
    if !both(db) {
        return;
    }
    let app = TestApp::spawn(db).await;
    // The merchant's authorization, applied first, so the merchant-order API takes its syncs.
    authorize(&app).await;
    let key = common::platform_private_key();
    for i in 0..3 {
        let body =
            common::order_notification(&key, &format!("QL{i}"), &format!("n-ql-{i}"), "9.90");
        assert_eq!(app.post_notify(body).await.1, "success");
    }
    let now = app.clock.now();
    let (at, lease) = (to_db_time(now), to_db_time(now + Duration::minutes(5)));
    // Six minutes on, the first lease is over (its worker died): claimed again, for six more.
    let (after, new_lease) = (
        to_db_time(now + Duration::minutes(6)),
        to_db_time(now + Duration::minutes(12)),
    );
    let mut conn = app.services.pool.get().unwrap();

    let first = messages::claim_due(&mut conn, at, lease, 100).unwrap();
    assert_eq!(first.len(), 3, "the inbox claims every due message");
    assert!(
        first.windows(2).all(|w| w[0].id < w[1].id),
        "in arrival order"
    );
    assert!(
        messages::claim_due(&mut conn, at, lease, 100)
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert_eq!(
        messages::claim_due(&mut conn, after, new_lease, 100)
            .unwrap()
            .len(),
        3,
        "claimed again once the lease ran out"
    );

    builds::start(
        &mut conn,
        MINI_APP,
        "QL0",
        ("2021000000000009", None),
        "0.0.1",
        at,
    )
    .unwrap();
    let claimed = builds::claim_due(&mut conn, at, lease, 10).unwrap();
    assert_eq!(claimed.len(), 1, "the builds queue claims a due build");
    assert!(
        builds::claim_due(&mut conn, at, lease, 10)
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert_eq!(
        builds::claim_due(&mut conn, after, new_lease, 10)
            .unwrap()
            .len(),
        1
    );
    drop(conn);

    let sync = common::to_shop_sync("QL-M1", "wait_pay");
    let (status, answer) = app
        .api_post("/api/merchant-orders/sync", &sync.to_string())
        .await;
    assert_eq!(status, 202, "{answer}");
    let mut conn = app.services.pool.get().unwrap();
    let orders = merchant_orders::claim_due(&mut conn, at, lease, 10).unwrap();
    assert_eq!(
        orders,
        [merchant_orders::LeasedOrder {
            tiny_app_id: MINI_APP.into(),
            out_biz_no: "QL-M1".into()
        }]
    );
    assert!(
        merchant_orders::claim_due(&mut conn, at, lease, 10)
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert_eq!(
        merchant_orders::claim_due(&mut conn, after, new_lease, 10)
            .unwrap()
            .len(),
        1
    );
    drop(conn);

    // The leased messages are applied once their lease is over, as a new worker would.
    app.clock.advance(Duration::minutes(20));
    assert_eq!(app.run_pending_jobs().await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_is_claimed_under_a_lease_sqlite() {
    every_queue_is_claimed_under_a_lease(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_is_claimed_under_a_lease_postgres() {
    every_queue_is_claimed_under_a_lease(Db::Postgres).await;
}

/// Replicas (threads here) applying one inbox never claim the same message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inbox_claims_are_disjoint_on_postgres() {
    if !both(Db::Postgres) {
        return;
    }
    let app = TestApp::spawn(Db::Postgres).await;
    let key = common::platform_private_key();
    for i in 0..120 {
        let body =
            common::order_notification(&key, &format!("QC{i:03}"), &format!("n-qc-{i}"), "9.90");
        assert_eq!(app.post_notify(body).await.1, "success");
    }
    let now = app.clock.now();
    let (at, lease) = (to_db_time(now), to_db_time(now + Duration::minutes(5)));
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let pool = app.services.pool.clone();
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                let mut mine = Vec::new();
                loop {
                    let batch = messages::claim_due(&mut conn, at, lease, 7).unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|m| m.id));
                }
            })
        })
        .collect();
    let mut all: Vec<i64> = claimers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        (total, all.len()),
        (120, 120),
        "every message claimed exactly once"
    );
    app.stop().await;
}

/// A build step that keeps failing is retried with the one backoff and, at
/// `queues.build_max_attempts`, given up: `failed`, support alerted, no further calls.
async fn a_failing_build_step_is_given_up_at_its_limit(db: Db) {
    if !both(db) {
        return;
    }
    let app = TestApp::spawn_with(db, |s| {
        s.templates.default_template_id = "2021000000000009".into();
        s.alipay.max_attempts = 1;
        s.queues.build_max_attempts = 3;
    })
    .await;
    authorize(&app).await;
    let key = common::platform_private_key();
    let body = common::order_notification(&key, "QF1", "n-qf1", "0.00");
    assert_eq!(app.post_notify(body).await.1, "success");
    app.run_pending_jobs().await;
    app.alipay
        .script([Reply::Http(502), Reply::Http(502), Reply::Http(502)]);
    // The build's first step asks for Alipay's version list; it keeps failing.
    let list_calls = |app: &TestApp| {
        app.alipay
            .calls()
            .iter()
            .filter(|c| c.method == "alipay.open.mini.version.list.query")
            .count()
    };
    for attempt in 1..=3 {
        app.services.run_pipeline(50).await.unwrap();
        assert_eq!(list_calls(&app), attempt);
        let (_, order) = app.admin_get("/admin/api/orders/QF1").await;
        let expected = if attempt < 3 {
            "version_list"
        } else {
            "failed"
        };
        assert_eq!(
            order["build"]["step"], expected,
            "after attempt {attempt}: {order}"
        );
        // Not due again until its backoff has passed.
        app.services.run_pipeline(50).await.unwrap();
        assert_eq!(list_calls(&app), attempt, "retried before its backoff");
        app.clock.advance(Duration::hours(1));
    }
    let alerts = app.alipay.alerts();
    assert!(
        alerts.iter().any(|a| a["kind"] == "build_failed"
            && a["message"]
                .as_str()
                .unwrap_or_default()
                .contains("gave up after 3 attempts")),
        "{alerts:?}"
    );
    app.clock.advance(Duration::days(1));
    app.services.run_pipeline(50).await.unwrap();
    assert_eq!(list_calls(&app), 3, "a given-up build is not called again");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_step_is_given_up_at_its_limit_sqlite() {
    a_failing_build_step_is_given_up_at_its_limit(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_step_is_given_up_at_its_limit_postgres() {
    a_failing_build_step_is_given_up_at_its_limit(Db::Postgres).await;
}

/// The runner drains a queue in batches of the configured size: 20 due payment deadlines with
/// `queues.deadline_batch = 7` take passes of 7, 7 and 6.
async fn the_runner_drains_in_batches_from_settings(db: Db) {
    if !both(db) {
        return;
    }
    let app = TestApp::spawn_with(db, |s| s.queues.deadline_batch = 7).await;
    let key = common::platform_private_key();
    for i in 0..20 {
        let body =
            common::order_notification(&key, &format!("QB{i:02}"), &format!("n-qb-{i}"), "9.90");
        assert_eq!(app.post_notify(body).await.1, "success");
    }
    app.run_pending_jobs().await;
    let queued = runner::drain(&Deadlines(app.services.clone()))
        .await
        .unwrap();
    app.clock.advance(Duration::days(3) + Duration::hours(1));
    let drained = runner::drain(&Deadlines(app.services.clone()))
        .await
        .unwrap();
    assert_eq!(
        drained.claimed, 20,
        "every payment deadline is claimed once (queries already run: {queued:?})"
    );
    assert_eq!(
        drained,
        Drained {
            passes: 3,
            claimed: 20
        }
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_drains_in_batches_from_settings_sqlite() {
    the_runner_drains_in_batches_from_settings(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_drains_in_batches_from_settings_postgres() {
    the_runner_drains_in_batches_from_settings(Db::Postgres).await;
}

async fn authorize(app: &TestApp) {
    app.grant_merchant_authorization().await;
    app.run_pending_jobs().await;
}
