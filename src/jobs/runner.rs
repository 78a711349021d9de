//! The one job runner of the four work queues (inbox, deadlines, builds, merchant deliveries).
//!
//! Every queue works the same way, each part written once:
//! - **claim** a batch under a lease (`store::queue::claim`: `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, a guarded `UPDATE … RETURNING` on SQLite), so replicas never run one item twice;
//! - **run** each item (the queue's use case in `service/`);
//! - **settle** it: done, or retried after `backoff::RetryPolicy`'s wait, or given up after the
//!   queue's limit (a state support sees);
//! - **drain**: a full batch means more may be waiting, so the runner goes again at once; then it
//!   waits for a wake-up (new work committed) or the poll interval.
//!
//! Batch sizes come from settings (`inbox.apply_batch`, `queues.*_batch`). The runner is itself
//! supervised (`jobs::supervise`): a panic restarts it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// One work queue as the runner drives it.
pub trait WorkQueue: Send + Sync + 'static {
    /// For logs: `inbox`, `deadlines`, `builds`, `deliveries`.
    const NAME: &'static str;

    /// How many items one pass claims.
    fn batch(&self) -> usize;

    /// Claims up to [`batch`](Self::batch) items, runs and settles each; returns how many it
    /// claimed. An error is the pass's own (the database did not answer), not an item's: items
    /// settle their own failures.
    fn pass(&self) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub passes: usize,
    pub claimed: usize,
}

/// Runs passes until one claims less than a full batch (or fails): everything due now is done.
pub async fn drain<Q: WorkQueue>(queue: &Q) -> anyhow::Result<Drained> {
    let mut drained = Drained::default();
    loop {
        let claimed = queue.pass().await?;
        drained.passes += 1;
        drained.claimed += claimed;
        if claimed < queue.batch().max(1) {
            return Ok(drained);
        }
    }
}

/// Drains the queue, then waits for `wakeup` (when given) or `poll`, for the life of the process.
pub async fn run<Q: WorkQueue>(queue: Q, poll: Duration, wakeup: Option<Arc<Notify>>) {
    loop {
        if let Err(error) = drain(&queue).await {
            tracing::warn!(queue = Q::NAME, error = %format!("{error:#}"), "queue pass failed; retrying");
        }
        match &wakeup {
            Some(wakeup) => tokio::select! {
                _ = wakeup.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            },
            None => tokio::time::sleep(poll).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A queue holding `left` items, handing out at most `batch` per pass.
    struct Counted {
        left: Mutex<usize>,
        batch: usize,
        passes: Mutex<Vec<usize>>,
    }

    impl WorkQueue for Counted {
        const NAME: &'static str = "test";
        fn batch(&self) -> usize {
            self.batch
        }
        async fn pass(&self) -> anyhow::Result<usize> {
            let mut left = self.left.lock().unwrap();
            let claimed = (*left).min(self.batch);
            *left -= claimed;
            self.passes.lock().unwrap().push(claimed);
            Ok(claimed)
        }
    }

    #[tokio::test]
    async fn a_drain_goes_again_after_every_full_batch_and_stops_at_a_short_one() {
        let queue = Counted {
            left: Mutex::new(25),
            batch: 10,
            passes: Mutex::new(Vec::new()),
        };
        let drained = drain(&queue).await.unwrap();
        assert_eq!(
            drained,
            Drained {
                passes: 3,
                claimed: 25
            }
        );
        assert_eq!(*queue.passes.lock().unwrap(), [10, 10, 5]);
        // Exactly full: one more (empty) pass proves nothing is left.
        let exact = Counted {
            left: Mutex::new(20),
            batch: 10,
            passes: Mutex::new(Vec::new()),
        };
        assert_eq!(drain(&exact).await.unwrap().passes, 3);
    }
}
