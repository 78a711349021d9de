//! The inbox queue: applies stored gateway messages after they were acknowledged. Woken by
//! ingest after each new commit; otherwise it looks for due retries every `poll`.

use super::runner::WorkQueue;
use crate::service::Services;

pub struct Inbox(pub Services);

impl WorkQueue for Inbox {
    const NAME: &'static str = "inbox";

    fn batch(&self) -> usize {
        usize::try_from(self.0.apply.batch).unwrap_or(1)
    }

    async fn pass(&self) -> anyhow::Result<usize> {
        Ok(self.0.apply_due().await?.seen)
    }
}
