//! The demo's scenarios end to end: the real service (HTTP gateway, jobs, database) against the
//! real simulator over loopback, on one manual clock; then the same with 30% of Alipay's answers
//! faulted (5xx, slow 20000, rate limited, bad signatures): the same end states, no step twice.

use isv_lifecycle::demo::Demo;
use isv_lifecycle::sim::SimFaults;
use std::collections::BTreeMap;
use std::path::Path;

fn config() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
}

/// Each scenario's end: the order's status and cancel reason, its service, the service's periods.
type Ends = Vec<(String, String, Option<String>, Option<String>, Vec<String>)>;

async fn run(faults: SimFaults) -> (Ends, Demo) {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(config(), dir.path().join("demo"), faults)
        .await
        .unwrap();
    let outcomes = demo.run_scenarios().await.unwrap();
    // The first order is the second ISV app's (built and audited as that app: the sim takes
    // its merchant's token from that app only); the others the primary app's.
    let apps: Vec<Option<&str>> = outcomes.iter().map(|o| o.isv_app_id.as_deref()).collect();
    let primary = &*demo.services.app_id;
    assert_eq!(
        apps,
        [
            Some(isv_lifecycle::demo::SECOND_APP_ID),
            Some(primary),
            Some(primary),
            Some(primary),
            Some(primary),
            Some(primary),
            Some(primary)
        ]
    );
    for o in &outcomes {
        assert!(
            o.as_expected(),
            "{}: {} {:?}, service {:?}, periods {:?}\n{}",
            o.scenario,
            o.status,
            o.cancel_reason,
            o.service,
            o.periods,
            o.timeline.join("\n")
        );
    }
    let ends = outcomes
        .iter()
        .map(|o| {
            (
                o.scenario.to_string(),
                o.status.clone(),
                o.cancel_reason.clone(),
                o.service.clone(),
                o.periods.clone(),
            )
        })
        .collect();
    std::mem::forget(dir); // removed by Demo::stop
    (ends, demo)
}

/// Calls that changed the sim's state (answered `10000`, no fault), per method.
fn effective_steps(demo: &Demo) -> BTreeMap<String, usize> {
    let mut steps = BTreeMap::new();
    for call in demo.sim.state.calls() {
        let changes_state = matches!(
            call.method.as_str(),
            "alipay.open.mini.version.upload"
                | "alipay.open.mini.version.audit.apply"
                | "alipay.open.mini.version.online"
        );
        if changes_state && call.outcome == "10000" {
            *steps.entry(call.method.clone()).or_insert(0) += 1;
        }
    }
    steps
}

/// No step done twice: as many effective uploads, audit applications and onlines as the service
/// has builds that went through each.
fn assert_steps_once(demo: &Demo) {
    use diesel::prelude::*;
    use isv_lifecycle::store::schema::template_builds as tb;
    let mut pooled = demo.services.pool.get().unwrap();
    let conn: &mut isv_lifecycle::store::AnyConnection = &mut pooled;
    let steps: Vec<String> =
        isv_lifecycle::db_run!(conn: { tb::table.select(tb::step).load(conn).unwrap() });
    let count = |of: &[&str]| steps.iter().filter(|s| of.contains(&s.as_str())).count();
    let uploaded = count(&[
        "build_query",
        "audit_apply",
        "await_audit",
        "online",
        "done",
        "rejected",
    ]);
    let audited = count(&["await_audit", "online", "done", "rejected"]);
    let online = count(&["done"]);
    // A build set aside as failed (its authorization was cancelled) or cancelled (its service
    // ended: a refund, a support termination) may have stopped after any step: it may account
    // for at most one of each.
    let failed = count(&["failed", "cancelled"]);
    let effective = effective_steps(demo);
    let made = |m: &str| effective.get(m).copied().unwrap_or(0);
    assert!(uploaded >= 2 && online >= 1, "builds: {steps:?}");
    for (method, done) in [
        ("alipay.open.mini.version.upload", uploaded),
        ("alipay.open.mini.version.audit.apply", audited),
        ("alipay.open.mini.version.online", online),
    ] {
        let n = made(method);
        assert!(
            n >= done && n <= done + failed,
            "{method}: {n} effective calls for {done} builds (+{failed} failed or cancelled): {steps:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_scenarios_end_as_alipay_rules_say() {
    let (clean, demo) = run(SimFaults::default()).await;
    assert_eq!(clean.len(), 7);
    // The renewal's refund leaves the first period running; the re-order opens a new one.
    let periods = |scenario: &str| {
        clean
            .iter()
            .find(|e| e.0 == scenario)
            .map(|e| {
                (
                    e.3.clone(),
                    e.4.len(),
                    e.4.iter()
                        .map(|p| p.split(' ').nth(1).unwrap_or("").to_string())
                        .collect::<Vec<_>>(),
                )
            })
            .unwrap()
    };
    assert_eq!(
        periods("renewal refunded, service stays live"),
        (
            Some("live".to_string()),
            2,
            vec!["active".to_string(), "refunded".to_string()]
        )
    );
    assert_eq!(
        periods("refund, then re-order: live again"),
        (
            Some("live".to_string()),
            2,
            vec!["refunded".to_string(), "active".to_string()]
        )
    );
    assert_steps_once(&demo);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_faults_change_nothing_but_the_path() {
    let (clean, demo) = run(SimFaults::default()).await;
    demo.stop().await;
    let faults = SimFaults {
        share_5xx: 0.12,
        share_timeout: 0.06,
        share_rate_limited: 0.06,
        share_bad_signature: 0.06,
        timeout_ms: 300,
        seed: 7,
    };
    let (faulty, demo) = run(faults).await;
    assert_eq!(faulty, clean, "same end states with 30% faults");
    assert_steps_once(&demo);
    let faulted = demo
        .sim
        .state
        .calls()
        .iter()
        .filter(|c| c.outcome.starts_with("fault_"))
        .count();
    assert!(faulted > 0, "faults were injected");
    demo.stop().await;
}
