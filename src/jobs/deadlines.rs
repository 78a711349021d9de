//! The scheduler (tokio-cron-scheduler): a tick every `scheduler.tick_seconds` fires what is due
//! (deadlines, warnings, queued Alipay queries), and `scheduler.reconcile_cron` runs
//! reconciliation (on one replica at a time). After downtime everything overdue is due, so the first tick catches up; a full
//! batch goes round again at once. A tick still running when the next one comes is not doubled.

use super::runner::{self, WorkQueue};
use crate::service::Services;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};

/// The deadlines queue: due deadlines, warnings and queued Alipay queries.
pub struct Deadlines(pub Services);

impl WorkQueue for Deadlines {
    const NAME: &'static str = "deadlines";

    fn batch(&self) -> usize {
        usize::try_from(self.0.queues.deadline_batch).unwrap_or(1)
    }

    async fn pass(&self) -> anyhow::Result<usize> {
        let report = self
            .0
            .fire_due_deadlines(self.0.queues.deadline_batch)
            .await?;
        if report.claimed > 0 {
            tracing::info!(
                claimed = report.claimed,
                transitions = report.transitions,
                errors = report.errors,
                "deadlines fired"
            );
        }
        Ok(report.claimed)
    }
}

/// Fires everything due now.
pub async fn tick(services: &Services) {
    if let Err(error) = runner::drain(&Deadlines(services.clone())).await {
        tracing::warn!(error = %format!("{error:#}"), "scheduler tick failed; retrying next tick");
    }
}

/// Builds and starts the scheduler's jobs.
pub async fn start(
    services: Services,
    tick_every: Duration,
    reconcile_cron: &str,
    reconcile_rate: u32,
) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new().await?;
    let busy = Arc::new(AtomicBool::new(false));
    let tick_services = services.clone();
    scheduler
        .add(Job::new_repeated_async(tick_every, move |_, _| {
            let (services, busy) = (tick_services.clone(), busy.clone());
            Box::pin(async move {
                if busy.swap(true, Ordering::AcqRel) {
                    return;
                }
                tick(&services).await;
                busy.store(false, Ordering::Release);
            })
        })?)
        .await?;
    if !reconcile_cron.trim().is_empty() {
        let reconciling = Arc::new(AtomicBool::new(false));
        scheduler
            .add(Job::new_async(reconcile_cron, move |_, _| {
                let (services, reconciling) = (services.clone(), reconciling.clone());
                Box::pin(async move {
                    if reconciling.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    // One replica at a time: the others find the lease held and skip this run.
                    match services.reconcile_on_one_replica(reconcile_rate, 8).await {
                        Ok(Some(report)) => tracing::info!(
                            orders = report.orders,
                            repaired = report.repaired,
                            errors = report.errors,
                            "reconciliation done"
                        ),
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "reconciliation failed"),
                    }
                    reconciling.store(false, Ordering::Release);
                })
            })?)
            .await?;
    }
    scheduler.start().await?;
    Ok(scheduler)
}
