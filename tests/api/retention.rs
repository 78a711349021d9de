//! Retention: applied messages older than `retention.messages_days` are purged in batches;
//! quarantined, failed, parked and unapplied ones stay whatever their age.

use crate::both_backends;
use crate::common::Db;
use crate::helpers::{TestApp, start_time};
use isv_lifecycle::store::messages::{self, NewMessage};

fn message(notify_id: &str, state: &str, days_ago: i64) -> NewMessage {
    let at = isv_lifecycle::store::to_db_time(start_time() - chrono::Duration::days(days_ago));
    NewMessage {
        app_id: crate::common::APP_ID.into(),
        notify_id: notify_id.into(),
        kind: "servicemarket_order_notify".into(),
        sign_variant: "v1".into(),
        state: messages::MessageState::parse(state).expect("a message state"),
        params: "{}".into(),
        raw_body: b"sealed".to_vec(),
        received_at: at,
        attempts: 0,
        next_attempt_at: at,
        last_error: None,
    }
}

async fn old_applied_messages_go_and_the_rest_stay(app: TestApp) {
    let rows = vec![
        message("applied-old-1", "applied", 200),
        message("applied-old-2", "applied", 120),
        message("applied-old-3", "applied", 91),
        message("applied-recent", "applied", 89),
        message("quarantined-old", "quarantined", 400),
        message("failed-old", "failed", 400),
        message("parked-old", "parked", 400),
        message("received-old", "received", 400),
    ];
    {
        let mut conn = app.services.pool.get().unwrap();
        messages::insert_batch(&mut conn, &rows).unwrap();
    }
    // Batches of 2: three old applied messages take two batches and a third, empty look.
    let purged = app.services.purge_applied_messages(90, 2).await.unwrap();
    assert_eq!(purged, 3);
    let left: Vec<String> = app
        .message_states()
        .into_iter()
        .map(|(_, notify_id, _)| notify_id)
        .collect();
    assert_eq!(
        left,
        [
            "applied-recent",
            "quarantined-old",
            "failed-old",
            "parked-old",
            "received-old"
        ]
    );
    // Two days on (the clock, not a sleep), the recent one is old enough too.
    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(app.services.purge_applied_messages(90, 2).await.unwrap(), 1);
    assert_eq!(app.services.purge_applied_messages(90, 2).await.unwrap(), 0);
    assert_eq!(app.message_states().len(), 4);
    assert!(
        app.admin_get_text("/metrics")
            .await
            .contains("isv_messages_purged_total 4")
    );
    app.stop().await;
}
both_backends!(retention, old_applied_messages_go_and_the_rest_stay);
