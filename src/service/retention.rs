//! Retention of stored gateway messages: applied ones older than `retention.messages_days` are
//! purged in batches; everything support may still need (quarantined, failed, parked, not yet
//! applied) is kept.

use super::Services;
use crate::store::{self, StoreError, messages};
use std::sync::atomic::Ordering::Relaxed;

impl Services {
    /// Deletes applied messages received more than `days` days before now, `batch` rows per
    /// statement, until none is left; returns how many went.
    pub async fn purge_applied_messages(&self, days: u32, batch: i64) -> Result<u64, StoreError> {
        let cutoff = store::to_db_time(self.clock.now() - chrono::Duration::days(i64::from(days)));
        let mut total = 0u64;
        loop {
            // One short write per batch, so the gateway's writers are never held up for long.
            let n = self
                .db_write(move |conn| {
                    messages::purge_applied_before(conn, cutoff, batch).map_err(StoreError::from)
                })
                .await?;
            total += n as u64;
            self.metrics.messages_purged.fetch_add(n as u64, Relaxed);
            if (n as i64) < batch {
                return Ok(total);
            }
        }
    }
}
