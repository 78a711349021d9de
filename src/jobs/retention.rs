//! The retention purge on `retention.cron` (see `service::retention`).

use crate::config::RetentionSettings;
use crate::service::Services;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_cron_scheduler::{Job, JobScheduler};

/// Adds the purge to the scheduler; nothing when the cron is empty or `messages_days` is 0.
pub async fn add(
    scheduler: &JobScheduler,
    services: Services,
    settings: &RetentionSettings,
) -> anyhow::Result<()> {
    if settings.cron.trim().is_empty() || settings.messages_days == 0 {
        return Ok(());
    }
    let (days, batch) = (settings.messages_days, settings.batch);
    let busy = Arc::new(AtomicBool::new(false));
    scheduler
        .add(Job::new_async(settings.cron.as_str(), move |_, _| {
            let (services, busy) = (services.clone(), busy.clone());
            Box::pin(async move {
                if busy.swap(true, Ordering::AcqRel) {
                    return;
                }
                match services.purge_applied_messages(days, batch).await {
                    Ok(purged) => tracing::info!(purged, days, "applied messages purged"),
                    Err(error) => tracing::warn!(%error, "message purge failed; retrying next run"),
                }
                busy.store(false, Ordering::Release);
            })
        })?)
        .await?;
    Ok(())
}
