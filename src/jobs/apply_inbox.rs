//! The apply worker: applies stored gateway messages after they were acknowledged. Woken by
//! ingest after each new commit; otherwise it looks for due retries every `poll`.

use crate::service::{Services, blocking};
use std::time::Duration;

pub async fn run(services: Services, poll: Duration) {
    loop {
        let s = services.clone();
        let full = s.apply.batch as usize;
        match blocking(move || s.apply_due()).await {
            // A full batch means more may be waiting: go again at once.
            Ok(Ok(pass)) if pass.seen >= full => continue,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "apply pass failed; retrying"),
            Err(error) => tracing::error!(%error, "apply pass panicked; retrying"),
        }
        tokio::select! {
            _ = services.apply_wakeup.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
