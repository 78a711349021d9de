//! The builds queue: starts template builds and runs their due steps every `poll`.

use super::runner::WorkQueue;
use crate::service::Services;

pub struct Builds(pub Services);

impl WorkQueue for Builds {
    const NAME: &'static str = "builds";

    fn batch(&self) -> usize {
        usize::try_from(self.0.queues.build_batch).unwrap_or(1)
    }

    async fn pass(&self) -> anyhow::Result<usize> {
        Ok(self.0.run_pipeline(self.0.queues.build_batch).await?.steps)
    }
}
