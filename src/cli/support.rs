//! Support work against a running deployment's database: `reconcile` and `terminate`.

use super::with_services;
use crate::config::Prepared;
use crate::domain::OrderId;

pub(super) fn reconcile(
    prepared: Prepared,
    rate: Option<u32>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let rate = rate.unwrap_or(prepared.settings.scheduler.reconcile_rate_per_second);
    with_services(&prepared, async |services| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} reconciling [{bar:40}] {pos}/{len} orders ({per_sec}, eta {eta})",
            )
            .expect("a valid progress template")
            .progress_chars("=> "),
        );
        // Log lines (warnings about single orders) print above the bar, not through it.
        let progress = crate::telemetry::with_progress_bar(&bar);
        let report = services
            .reconcile_all(rate, concurrency, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(anyhow::Error::msg)?;
        bar.finish_and_clear();
        drop(progress);
        println!(
            "{} open orders reconciled: {} repaired, {} errors",
            report.orders, report.repaired, report.errors
        );
        if report.errors > 0 {
            anyhow::bail!(
                "{} orders could not be reconciled (see the log)",
                report.errors
            );
        }
        Ok(())
    })
}

pub(super) fn terminate(
    prepared: Prepared,
    order: String,
    reason: String,
    actor: Option<String>,
) -> anyhow::Result<()> {
    let actor = actor
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "support".into());
    with_services(&prepared, async |services| {
        let event = crate::domain::lifecycle::OrderEvent::SupportTerminates { actor, reason };
        use crate::service::lifecycle::LifecycleError;
        let transition = match services
            .order_event_now(&OrderId::from(order.as_str()), event)
            .await
        {
            Ok(t) => t,
            Err(LifecycleError::NotFound(_)) => {
                return Err(super::not_found(format!("no order {order:?}")));
            }
            Err(LifecycleError::Rule(rule)) => {
                return Err(super::refused(format!("{order}: {rule}")));
            }
            Err(e) => return Err(anyhow::anyhow!("{order}: {e}")),
        };
        match transition.ignored {
            Some(why) => {
                return Err(super::refused(format!("{order}: nothing to do ({why})")));
            }
            None => println!(
                "{order}: service terminated (cause support); Alipay will be asked about the order on the next tick"
            ),
        }
        Ok(())
    })
}
