//! Delivers queued merchant-order syncs. Woken when one is queued; otherwise it looks for due
//! retries every `poll`.

use crate::service::Services;
use std::time::Duration;

pub async fn run(services: Services, poll: Duration) {
    loop {
        match services.deliver_merchant_orders(100).await {
            Ok(pass) if pass.orders >= 100 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "merchant order delivery pass failed; retrying"),
        }
        tokio::select! {
            _ = services.delivery_wakeup.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
