//! The daily check of every active authorization's token on `scheduler.authorization_check_cron`
//! (see `service::checks`), on one replica at a time.

use crate::service::Services;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_cron_scheduler::{Job, JobScheduler};

/// Adds the check to the scheduler; nothing when the cron is empty.
pub async fn add(scheduler: &JobScheduler, services: Services, cron: &str) -> anyhow::Result<()> {
    if cron.trim().is_empty() {
        return Ok(());
    }
    let busy = Arc::new(AtomicBool::new(false));
    scheduler
        .add(Job::new_async(cron, move |_, _| {
            let (services, busy) = (services.clone(), busy.clone());
            Box::pin(async move {
                if busy.swap(true, Ordering::AcqRel) {
                    return;
                }
                if let Err(error) = services.check_authorizations_on_one_replica().await {
                    tracing::warn!(%error, "authorization check failed; retrying next run");
                }
                busy.store(false, Ordering::Release);
            })
        })?)
        .await?;
    Ok(())
}
