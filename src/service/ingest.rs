//! Ingest: verify, store durably and idempotently, and only then let the gateway answer `success`.
//!
//! Commits are grouped: requests hand their row to a writer thread, which commits whatever has
//! queued up (up to `batch_size`) in one transaction and then answers each request. One fsync
//! serves many messages, and each answer still waits for its own commit.

use super::Services;
use crate::alipay::message::{self, Params};
use crate::alipay::notify::{self, Rejection, SignVariant};
use crate::store::messages::{self, NewMessage};
use crate::store::{Pool, to_db_time};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub notify_id: String,
    pub kind: String,
    pub variant: SignVariant,
    /// False when this message was already stored (a redelivery).
    pub new: bool,
    pub quarantined: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("message refused: {0}")]
    Rejected(#[from] Rejection),
    #[error("message could not be stored: {0}")]
    Storage(String),
}

impl Services {
    pub async fn ingest(&self, body: &[u8]) -> Result<Ingested, IngestError> {
        self.metrics.received.fetch_add(1, Relaxed);
        // Verification comes before any duplicate check: a forged copy of a stored message's id
        // must be refused, not acknowledged.
        let verified = notify::verify(body, &self.alipay_key)
            .inspect_err(|r| self.metrics.reject(r.code()))?;
        match verified.variant {
            SignVariant::V1 => self.metrics.verified_v1.fetch_add(1, Relaxed),
            SignVariant::V2 => self.metrics.verified_v2.fetch_add(1, Relaxed),
        };
        let params: Params = verified.params;
        let app_id = params.get("app_id").cloned().unwrap_or_default();
        // Order notifications come without app_id; only a different one is someone else's.
        let foreign = !app_id.is_empty() && app_id != *self.app_id;
        let now = to_db_time(self.clock.now());
        let notify_id = message::dedup_key(&params);
        let kind = message::kind(&params);
        let row = NewMessage {
            app_id,
            notify_id: notify_id.clone(),
            kind: kind.clone(),
            sign_variant: verified.variant.as_str().to_string(),
            state: if foreign {
                messages::STATE_QUARANTINED
            } else {
                messages::STATE_RECEIVED
            }
            .to_string(),
            params: serde_json::to_string(&message::masked(&params))
                .expect("a string map serialises"),
            raw_body: self.sealer.seal(super::raw_body_context(), body),
            received_at: now,
            attempts: 0,
            next_attempt_at: now,
            last_error: foreign.then(|| format!("app_id is not ours ({})", self.app_id)),
        };
        let new = self.inbox.submit(row).await.inspect_err(|_| {
            self.metrics.store_failures.fetch_add(1, Relaxed);
        })?;
        if new {
            self.metrics.stored.fetch_add(1, Relaxed);
            if foreign {
                self.metrics.quarantined.fetch_add(1, Relaxed);
            } else {
                self.apply_wakeup.notify_one();
            }
        } else {
            self.metrics.duplicates.fetch_add(1, Relaxed);
        }
        Ok(Ingested {
            notify_id,
            kind,
            variant: verified.variant,
            new,
            quarantined: foreign,
        })
    }
}

struct Job {
    row: NewMessage,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// The group-commit writer. Cloning shares the same writer threads.
#[derive(Clone)]
pub struct InboxWriter {
    tx: mpsc::Sender<Job>,
}

impl InboxWriter {
    pub fn start(pool: Pool, writers: usize, batch_size: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(writers.max(1) * batch_size.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..writers.max(1) {
            let pool = pool.clone();
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("inbox-writer-{i}"))
                .spawn(move || writer_loop(pool, rx, batch_size.max(1)))
                .expect("spawning an inbox writer thread");
        }
        Self { tx }
    }

    /// Stores the row; resolves once it is committed. `Ok(false)` means it was already stored.
    pub async fn submit(&self, row: NewMessage) -> Result<bool, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { row, reply })
            .await
            .map_err(|_| IngestError::Storage("inbox writer stopped".into()))?;
        answer
            .await
            .map_err(|_| IngestError::Storage("inbox writer stopped".into()))?
            .map_err(IngestError::Storage)
    }
}

fn writer_loop(pool: Pool, rx: Arc<Mutex<mpsc::Receiver<Job>>>, batch_size: usize) {
    loop {
        let mut jobs = Vec::with_capacity(batch_size);
        {
            let Ok(mut rx) = rx.lock() else { return };
            match rx.blocking_recv() {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < batch_size {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let (rows, replies): (Vec<NewMessage>, Vec<_>) =
            jobs.into_iter().map(|j| (j.row, j.reply)).unzip();
        let result = pool
            .get()
            .map_err(|e| format!("no database connection: {e}"))
            .and_then(|mut conn| {
                let _writer = pool.write_guard();
                messages::insert_batch(&mut conn, &rows).map_err(|e| format!("insert failed: {e}"))
            });
        match result {
            Ok(flags) => {
                for (reply, new) in replies.into_iter().zip(flags) {
                    let _ = reply.send(Ok(new));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = rows.len(), "gateway messages not stored; answering fail");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
