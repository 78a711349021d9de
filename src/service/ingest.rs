//! Ingest: verify, store durably and idempotently, and only then let the gateway answer `success`.
//!
//! Commits are grouped (`store::group_commit`): one fsync serves many messages, and each answer
//! still waits for its own commit.

use super::Services;
use crate::alipay::message::{self, Params};
use crate::alipay::notify::{self, Rejection, SignVariant};
use crate::store::group_commit::GroupCommit;
use crate::store::messages::{self, NewMessage};
use crate::store::{Pool, to_db_time};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

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
    Storage(#[from] crate::store::StoreError),
}

impl Services {
    pub async fn ingest(&self, body: &[u8]) -> Result<Ingested, IngestError> {
        self.metrics.received.fetch_add(1, Relaxed);
        // Verification comes before any duplicate check: a forged copy of a stored message's id
        // must be refused, not acknowledged.
        let key = self
            .message_key(body)
            .await
            .inspect_err(|r| self.metrics.reject(r.code()))?;
        let verified = notify::verify(body, &key).inspect_err(|r| self.metrics.reject(r.code()))?;
        match verified.variant {
            SignVariant::V1 => self.metrics.verified_v1.fetch_add(1, Relaxed),
            SignVariant::V2 => self.metrics.verified_v2.fetch_add(1, Relaxed),
        };
        let params: Params = verified.params;
        let app_id = params.get("app_id").cloned().unwrap_or_default();
        // A message that does not name an app we serve is not ours to apply: another app's, or
        // one without `app_id` at all (alipay-protocol.md, our decision 5).
        let foreign = self.apps.get(&app_id).is_none();
        let last_error = foreign.then(|| {
            if app_id.is_empty() {
                format!("no app_id: not addressed to our apps ({})", self.served())
            } else {
                format!("app_id is not ours ({})", self.served())
            }
        });
        let now = to_db_time(self.clock.now());
        let notify_id = message::dedup_key(&params);
        let kind = message::kind(&params);
        let row = NewMessage {
            app_id,
            notify_id: notify_id.clone(),
            kind: kind.clone(),
            sign_variant: verified.variant.as_str().to_string(),
            state: if foreign {
                messages::MessageState::Quarantined
            } else {
                messages::MessageState::Received
            },
            params: serde_json::to_string(&message::masked(&params))
                .expect("a string map serialises"),
            raw_body: self.sealer.seal(super::raw_body_context(), body),
            received_at: now,
            attempts: 0,
            next_attempt_at: now,
            last_error,
        };
        let new = self
            .inbox
            .submit(row)
            .await
            .map_err(IngestError::Storage)
            .inspect_err(|_| {
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

impl Services {
    /// The app ids we serve, for a quarantine reason.
    fn served(&self) -> String {
        self.apps
            .all()
            .map(|a| &*a.app_id)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key that verifies a gateway message, of the app its `app_id` names (the primary app's
    /// when we do not serve that one: the message is quarantined once verified): Alipay's public
    /// key, or in certificate mode the key of the certificate the message names (the configured
    /// one when it names none).
    async fn message_key(&self, body: &[u8]) -> Result<crate::alipay::PublicKey, Rejection> {
        let named = notify::app_id(body)?;
        let app = named
            .as_deref()
            .and_then(|id| self.apps.get(id))
            .unwrap_or(&self.apps.primary);
        let Some(mode) = &app.cert_mode else {
            return Ok((*app.alipay_key).clone());
        };
        let sn = notify::alipay_cert_sn(body)?;
        let now = self.clock.now();
        if let Some(key) = mode.key(sn.as_deref(), now).await {
            return Ok(key);
        }
        let sn = sn.unwrap_or_default();
        // Refused for now (Alipay retries); fetch the certificate meanwhile, so a redelivery
        // verifies. Whatever is downloaded must still chain to our root.
        if mode.should_download(&sn, now) {
            let alipay = app.alipay.clone();
            let wanted = sn.clone();
            tokio::spawn(async move {
                if let Err(e) = alipay.alipay_cert_download(&wanted).await {
                    tracing::warn!(alipay_cert_sn = %wanted, error = %e, "Alipay certificate named by a message not obtained");
                }
            });
        }
        Err(Rejection::UnknownCertSn(sn))
    }
}

/// The inbox's group-commit writer: `Ok(true)` when the row is new, `Ok(false)` when that
/// message was already stored.
pub type InboxWriter = GroupCommit<NewMessage, bool>;

pub fn start_inbox(pool: Pool, writers: usize, batch_size: usize) -> InboxWriter {
    GroupCommit::start(
        "inbox-writer",
        pool,
        writers,
        batch_size,
        Arc::new(|conn, rows: Vec<NewMessage>| messages::insert_batch(conn, &rows)),
    )
}
