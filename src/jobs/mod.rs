//! Background work. Each job only calls a service; the rules live below.

pub mod apply_inbox;
pub mod authorization_checks;
pub mod deadlines;
pub mod deliver_merchant_orders;
pub mod pipeline;
pub mod runner;

use crate::metrics::Metrics;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// A job's run, as the supervisor starts it.
pub type JobFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a background job that is meant to run for the life of the process, and keeps it running:
/// when it panics (a bug on one input must not silently stop every later message, build or
/// delivery) or returns, the supervisor logs it at `error`, counts it in
/// `isv_job_restarts_total`, waits `pause` and starts it again. Only aborting the supervisor's
/// own task (shutdown) stops it. Restart rather than process exit: the other jobs and the
/// gateway keep serving, and every job's work is in the database, so a fresh start resumes it.
pub async fn supervise<F, Fut>(name: &'static str, metrics: Arc<Metrics>, pause: Duration, job: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(job()).await {
            Ok(()) => tracing::error!(job = name, "job ended unexpectedly; restarting"),
            Err(e) if e.is_panic() => {
                let what = e.into_panic();
                let message = what
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| what.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                tracing::error!(job = name, panic = %message, "job panicked; restarting");
            }
            // Cancelled: the runtime is shutting down.
            Err(_) => return,
        }
        metrics.job_restarts.fetch_add(1, Relaxed);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_panicking_job_is_restarted_and_counted() {
        let metrics = Arc::new(Metrics::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (alive, mut started) = tokio::sync::mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise("test", metrics.clone(), Duration::ZERO, {
            let runs = runs.clone();
            move || {
                let (runs, alive) = (runs.clone(), alive.clone());
                async move {
                    let run = runs.fetch_add(1, Relaxed) + 1;
                    if run <= 2 {
                        panic!("bug on input {run}");
                    }
                    alive.send(run).unwrap();
                    std::future::pending::<()>().await;
                }
            }
        }));
        // The third start survives; a bound (not a sleep) so a broken supervisor fails the test.
        let third = tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("the job was started again after its panics");
        assert_eq!(third, Some(3));
        assert_eq!(metrics.job_restarts.load(Relaxed), 2);
        supervisor.abort();
    }
}
pub mod retention;
