//! Retention of stored gateway messages: applied ones older than `retention.messages_days` are
//! purged in batches; everything support may still need (quarantined, failed, parked, not yet
//! applied) is kept.

use super::{Services, blocking};
use crate::store::{self, messages};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

impl Services {
    /// Deletes applied messages received more than `days` days before now, `batch` rows per
    /// statement, until none is left; returns how many went.
    pub async fn purge_applied_messages(
        &self,
        days: u32,
        batch: i64,
    ) -> Result<u64, RetentionError> {
        let cutoff = store::to_db_time(self.clock.now() - chrono::Duration::days(i64::from(days)));
        let s = self.clone();
        let purged = blocking(move || {
            let mut conn = s
                .pool
                .get()
                .map_err(|e| RetentionError::Unavailable(e.to_string()))?;
            let mut total = 0u64;
            loop {
                // One short write per batch, so the gateway's writers are never held up for long.
                let n = {
                    let _writer = s.pool.write_guard();
                    messages::purge_applied_before(&mut conn, cutoff, batch)?
                };
                total += n as u64;
                s.metrics.messages_purged.fetch_add(n as u64, Relaxed);
                if (n as i64) < batch {
                    return Ok::<u64, RetentionError>(total);
                }
            }
        })
        .await
        .map_err(|e| RetentionError::Unavailable(e.to_string()))??;
        Ok(purged)
    }
}
