//! Support's repairs: replaying a stored gateway message and resending a merchant order's failed
//! delivery. Each is one guarded write, so it cannot race the workers into doing a thing twice.
//!
//! Which messages can be replayed: `failed` (the apply gave up; e.g. a bug since fixed, or data
//! support has since repaired) and `quarantined` (content that contradicted what we held; once
//! support has looked, applying it again re-runs the same checks). Not `applied`: its effect is
//! already in the database, and re-running an old message after later ones would apply stale
//! content over newer state (the order's own state is repaired with `reconcile`, which asks
//! Alipay). Not `received` (it is already waiting for the worker) nor `parked`. Never a message
//! quarantined because its `app_id` is not ours: the apply does not re-check the `app_id` (ingest
//! does), and such a message must never be applied.

use super::Services;
use super::merchant_sync::{MODIFIED_FORMAT, MerchantOrderView};
use super::views::MessageView;
use crate::store::merchant_orders as mo;
use crate::store::messages::{self, MessageState, MessageSummary};
use crate::store::{from_db_time, to_db_time};

/// The message states `replay_message` moves back to `received`.
pub const REPLAYABLE: &[MessageState] = &[MessageState::Failed, MessageState::Quarantined];

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error("not found")]
    NotFound,
    /// It exists but is in a state the action does not apply to.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<diesel::result::Error> for SupportError {
    fn from(e: diesel::result::Error) -> Self {
        SupportError::Store(e.into())
    }
}

fn message_view(m: MessageSummary) -> MessageView {
    MessageView {
        notify_id: m.notify_id,
        app_id: m.app_id,
        kind: m.kind,
        received_at: from_db_time(m.received_at),
        state: m.state.as_str().into(),
        sign_variant: m.sign_variant,
        attempts: m.attempts,
        last_error: m.last_error,
        applied_at: m.applied_at.map(from_db_time),
    }
}

fn merchant_order_view(row: mo::MerchantOrderRow) -> MerchantOrderView {
    MerchantOrderView {
        tiny_app_id: row.tiny_app_id,
        out_biz_no: row.out_biz_no,
        status: row.status,
        order_modified_time: row.order_modified_time.format(MODIFIED_FORMAT).to_string(),
        delivery: row.delivery.as_str().into(),
        alipay_order_id: row.alipay_order_id,
        record_id: row.record_id,
        sub_code: row.sub_code,
        last_error: row.last_error,
    }
}

impl Services {
    fn support_conn(&self) -> Result<crate::store::PooledConn, SupportError> {
        self.pool.get().map_err(|e| SupportError::Store(e.into()))
    }

    /// Stored messages, newest first, only those in `state` when given.
    pub async fn messages_in_state(
        &self,
        state: Option<MessageState>,
        limit: i64,
    ) -> Result<Vec<MessageView>, SupportError> {
        self.off_executor(move |s| {
            let mut conn = s.support_conn()?;
            Ok(messages::recent_in_state(&mut conn, state, limit)?
                .into_iter()
                .map(message_view)
                .collect())
        })
        .await
    }

    /// One stored message (`app_id` empty for order notifications, which carry none).
    pub async fn message(
        &self,
        app_id: &str,
        notify_id: &str,
    ) -> Result<Option<MessageView>, SupportError> {
        let (app_id, notify_id) = (app_id.to_owned(), notify_id.to_owned());
        self.off_executor(move |s| {
            let (app_id, notify_id) = (app_id.as_str(), notify_id.as_str());
            let mut conn = s.support_conn()?;
            Ok(messages::find(&mut conn, app_id, notify_id)?.map(message_view))
        })
        .await
    }

    /// Moves a `failed` or `quarantined` message back to `received` (attempts 0, due now) and
    /// wakes the apply worker. Exactly-once still holds: the apply moves it out of `received`
    /// with a guarded update in the same transaction as its effects.
    pub async fn replay_message(
        &self,
        app_id: &str,
        notify_id: &str,
    ) -> Result<MessageView, SupportError> {
        let (app_id, notify_id) = (app_id.to_owned(), notify_id.to_owned());
        self.off_executor(move |s| {
            let (app_id, notify_id) = (app_id.as_str(), notify_id.as_str());
            let now = to_db_time(s.clock.now());
            let mut conn = s.support_conn()?;
            let stored = messages::find(&mut conn, app_id, notify_id)?.ok_or(SupportError::NotFound)?;
            if !REPLAYABLE.contains(&stored.state) {
                return Err(SupportError::Conflict(format!(
                    "message {notify_id:?} is {}; only {} messages can be replayed",
                    stored.state,
                    REPLAYABLE
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )));
            }
            // Not addressed to our app (another app id, or none at all): never applied.
            if s.apps.get(&stored.app_id).is_none() {
                return Err(SupportError::Conflict(format!(
                    "message {notify_id:?} is for app_id {:?}, not ours: it is never applied",
                    stored.app_id
                )));
            }
            let moved = {
                let _writer = s.pool.write_guard();
                messages::requeue(&mut conn, stored.id, REPLAYABLE, now)?
            };
            if !moved {
                return Err(SupportError::Conflict(format!(
                    "message {notify_id:?} changed state concurrently; look again"
                )));
            }
            tracing::info!(%app_id, %notify_id, from = %stored.state, "message replayed by support");
            s.apply_wakeup.notify_one();
            messages::find(&mut conn, app_id, notify_id)?
                .map(message_view)
                .ok_or(SupportError::NotFound)
        })
        .await
    }

    /// Queues the order's newest sync again when its delivery failed (state `queued`, attempts
    /// 0, due now; the order's delivery back to `queued`) and wakes the delivery job.
    pub async fn resend_merchant_order(
        &self,
        tiny_app_id: &str,
        out_biz_no: &str,
    ) -> Result<MerchantOrderView, SupportError> {
        let (tiny_app_id, out_biz_no) = (tiny_app_id.to_owned(), out_biz_no.to_owned());
        self.off_executor(move |s| {
            let (tiny_app_id, out_biz_no) = (tiny_app_id.as_str(), out_biz_no.as_str());
            let now = to_db_time(s.clock.now());
            let mut conn = s.support_conn()?;
            let order = mo::find(&mut conn, tiny_app_id, out_biz_no)?.ok_or(SupportError::NotFound)?;
            let newest = mo::latest_sync(&mut conn, tiny_app_id, out_biz_no)?;
            let sync = match newest {
                Some(sync)
                    if order.delivery == mo::Delivery::Failed
                        && sync.state == mo::SyncState::Failed
                        && sync.order_modified_time == order.order_modified_time =>
                {
                    sync
                }
                _ => {
                    return Err(SupportError::Conflict(format!(
                        "merchant order {tiny_app_id}/{out_biz_no}: delivery is {}; only a failed delivery can be resent",
                        order.delivery.as_str()
                    )));
                }
            };
            let queued = {
                let _writer = s.pool.write_guard();
                use diesel::Connection as _;
                conn.transaction::<_, diesel::result::Error, _>(|conn| {
                    if !mo::requeue_failed_sync(conn, sync.id, now)? {
                        return Ok(false);
                    }
                    mo::set_delivery(
                        conn,
                        tiny_app_id,
                        out_biz_no,
                        sync.order_modified_time,
                        mo::Delivery::Queued,
                        None,
                        None,
                        None,
                        None,
                        now,
                    )?;
                    Ok(true)
                })?
            };
            if !queued {
                return Err(SupportError::Conflict(format!(
                    "merchant order {tiny_app_id}/{out_biz_no} changed concurrently; look again"
                )));
            }
            tracing::info!(%tiny_app_id, %out_biz_no, "merchant order delivery resent by support");
            s.delivery_wakeup.notify_one();
            mo::find(&mut conn, tiny_app_id, out_biz_no)?
                .map(merchant_order_view)
                .ok_or(SupportError::NotFound)
        })
        .await
    }
}
