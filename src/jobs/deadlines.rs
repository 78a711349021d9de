//! The scheduler tick: every `scheduler.tick_seconds`, fire what is due (deadlines, warnings,
//! queued Alipay queries). After downtime everything overdue is due, so it catches up by itself;
//! a full batch goes round again at once.

use crate::service::Services;
use std::time::Duration;

const BATCH: i64 = 500;

pub async fn run(services: Services, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        loop {
            match services.fire_due_deadlines(BATCH).await {
                Ok(report) if report.claimed as i64 >= BATCH => continue,
                Ok(report) if report.claimed > 0 => {
                    tracing::info!(
                        claimed = report.claimed,
                        transitions = report.transitions,
                        errors = report.errors,
                        "deadlines fired"
                    );
                    break;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "scheduler tick failed; retrying next tick");
                    break;
                }
            }
        }
    }
}
