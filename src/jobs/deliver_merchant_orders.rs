//! The deliveries queue: delivers queued merchant-order syncs. Woken when one is queued;
//! otherwise it looks for due retries every `poll`.

use super::runner::WorkQueue;
use crate::service::Services;

pub struct Deliveries(pub Services);

impl WorkQueue for Deliveries {
    const NAME: &'static str = "deliveries";

    fn batch(&self) -> usize {
        usize::try_from(self.0.queues.delivery_batch).unwrap_or(1)
    }

    async fn pass(&self) -> anyhow::Result<usize> {
        let batch = self.0.queues.delivery_batch;
        Ok(self.0.deliver_merchant_orders(batch).await?.orders)
    }
}
