//! Issue 12 end to end: the real service (gateway, database, jobs run by hand) against the real
//! simulator on one manual clock. A mini program that already has `1.2.10` on Alipay is built as
//! `1.2.11`; its audit message is lost, and the build still goes online (found by
//! `version.detail.query`). A merchant's authorization that ends with its `appauth.cancelled`
//! lost is found by the token check, which ends the service as `authorization_cancelled`.

use isv_lifecycle::demo::Demo;
use isv_lifecycle::service::Services;
use isv_lifecycle::sim::{NewOrder, SimFaults};
use std::path::Path;

const MINI_APP: &str = "2021004188880001";

fn config() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
}

/// One round of the background work, as `serve` runs it.
async fn round(demo: &Demo) {
    demo.sim
        .state
        .wait_for_deliveries(std::time::Duration::from_secs(5))
        .await;
    demo.services.apply_due().await.unwrap();
    demo.services.run_pipeline(50).await.unwrap();
    demo.services.fire_due_deadlines(500).await.unwrap();
    demo.services.apply_due().await.unwrap();
}

async fn order(services: &Services, id: &str) -> serde_json::Value {
    serde_json::to_value(services.order(&id.into()).await.unwrap().unwrap()).unwrap()
}

fn calls(demo: &Demo, method: &str) -> usize {
    demo.sim
        .state
        .calls()
        .iter()
        .filter(|c| c.method == method && c.outcome == "10000")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_lost_audit_messages_and_lost_cancellations_against_the_sim() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(config(), dir.path().join("checks"), SimFaults::default())
        .await
        .unwrap();
    demo.sim
        .state
        .seed_versions(MINI_APP, &["1.2.9".to_string(), "1.2.10".to_string()]);
    demo.sim.state.lose_audit_messages(MINI_APP, true);
    let created = demo
        .sim
        .state
        .create_order(NewOrder {
            mini_app_id: Some(MINI_APP.into()),
            price: Some("0.00".into()),
            authorize: Some(true),
            item_code: Some("TS0001".into()),
            ..NewOrder::default()
        })
        .unwrap();
    let id = created["commodity_order_id"].as_str().unwrap().to_string();

    // Ten-minute steps: the audit answer is asked for an hour after audit.apply
    // (templates.audit_poll_seconds, default 3600).
    let mut live = false;
    for _ in 0..30 {
        round(&demo).await;
        let o = order(&demo.services, &id).await;
        if o["build"]["step"] == "done" {
            live = true;
            break;
        }
        demo.sim.state.advance(chrono::Duration::minutes(10));
    }
    let o = order(&demo.services, &id).await;
    assert!(live, "{o}");
    assert_eq!(o["build"]["app_version"], "1.2.11", "{o}");
    assert_eq!(o["build"]["alipay_status"], "WAIT_RELEASE", "{o}");
    assert_eq!(o["service"]["status"], "live", "{o}");
    assert!(calls(&demo, "alipay.open.mini.version.detail.query") >= 1);
    assert_eq!(calls(&demo, "alipay.open.mini.version.online"), 1);
    // No audit message was ever sent for it.
    assert!(
        !demo
            .sim
            .state
            .messages()
            .iter()
            .any(|m| m.kind.contains("audit")),
        "{:?}",
        demo.sim.state.messages()
    );
    // The order follows Alipay (awaiting confirmation once order.query agrees).
    for _ in 0..5 {
        round(&demo).await;
        demo.sim.state.advance(chrono::Duration::minutes(1));
    }
    assert_eq!(
        order(&demo.services, &id).await["status"],
        "awaiting_confirmation"
    );

    // The merchant's authorization ends; the message is lost. The daily check finds it.
    demo.sim.state.invalidate_authorization(MINI_APP).unwrap();
    round(&demo).await;
    let a = demo
        .services
        .authorization(&MINI_APP.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, "active", "nothing said so yet");
    let report = demo
        .services
        .check_authorizations_on_one_replica()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.ended, 1, "{report:?}");
    let a = demo
        .services
        .authorization(&MINI_APP.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, "cancelled");
    let o = order(&demo.services, &id).await;
    assert_eq!(o["service"]["status"], "terminated", "{o}");
    assert_eq!(
        o["service"]["termination_cause"], "authorization_cancelled",
        "{o}"
    );
    std::mem::forget(dir); // removed by Demo::stop
    demo.stop().await;
}
