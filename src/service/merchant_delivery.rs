//! Delivering merchant-order syncs to Alipay with the merchant's own `app_auth_token`: per order,
//! strictly in `order_modified_time` order, pending syncs coalesced to the newest (Alipay keeps the
//! latest anyway), retried with backoff and jitter. A refused token stops the order's delivery and
//! flags the authorization for support instead of looping.

use super::Services;
use crate::backoff::{AfterFailure, RetryPolicy};
use crate::service::alerts::Alert;
use crate::service::apply::token_context;
use crate::store::merchant_orders as store;
use crate::store::{StoreError, authorizations, to_db_time};
use chrono::Duration;
use secrecy::SecretString;
use std::sync::atomic::Ordering::Relaxed;

/// Longest wait between two attempts (12 attempts, the default limit, take about three hours).
const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(1800);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPass {
    pub orders: usize,
    pub delivered: usize,
    pub retried: usize,
    pub failed: usize,
}

/// How long a worker holds an order while its call to Alipay is under way.
const LEASE: i64 = 120;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Failed for now: try again `wait` from now, after `attempts` failed attempts.
    Retry {
        wait: Duration,
        attempts: i32,
    },
    #[default]
    Failed,
    Nothing,
}

/// Why a delivery pass could not record its work.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for DeliveryError {
    fn from(e: diesel::result::Error) -> Self {
        DeliveryError::Store(e.into())
    }
}

impl Services {
    /// A delivery's retries: up to `queues.delivery_max_attempts`.
    fn delivery_retry(&self) -> RetryPolicy {
        RetryPolicy {
            cap: BACKOFF_CAP,
            max_attempts: Some(self.queues.delivery_max_attempts),
        }
    }

    /// Delivers what is due. Async: the Alipay calls are awaited, the database work is blocking.
    pub async fn deliver_merchant_orders(&self, limit: i64) -> Result<DeliveryPass, DeliveryError> {
        let now = self.clock.now();
        let (db_now, lease) = (to_db_time(now), to_db_time(now + Duration::seconds(LEASE)));
        let due = self
            .db_write(move |conn| {
                store::claim_due(conn, db_now, lease, limit).map_err(DeliveryError::from)
            })
            .await?;
        let mut pass = DeliveryPass {
            orders: due.len(),
            ..DeliveryPass::default()
        };
        for store::LeasedOrder {
            tiny_app_id,
            out_biz_no,
        } in due
        {
            match self.deliver_order(&tiny_app_id, &out_biz_no).await {
                Ok(Outcome::Delivered) => pass.delivered += 1,
                Ok(Outcome::Retry { .. }) => pass.retried += 1,
                Ok(Outcome::Failed) => pass.failed += 1,
                Ok(Outcome::Nothing) => {}
                Err(error) => {
                    tracing::warn!(%tiny_app_id, %out_biz_no, %error, "merchant order delivery pass failed")
                }
            }
        }
        Ok(pass)
    }

    async fn deliver_order(
        &self,
        tiny_app_id: &str,
        out_biz_no: &str,
    ) -> Result<Outcome, DeliveryError> {
        let now = self.clock.now();
        let (tiny, out) = (tiny_app_id.to_string(), out_biz_no.to_string());
        let s = self.clone();
        // The order is leased (`deliver_merchant_orders`): coalesce its queued syncs to the
        // newest, and read the token.
        let prepared = self
            .db_write(move |conn| -> Result<_, DeliveryError> {
                let db_now = to_db_time(now);
                let mut queued = store::syncs(conn, &tiny, &out, Some(store::SyncState::Queued))?;
                let Some(newest) = queued.pop() else {
                    store::release(conn, &tiny, &out)?;
                    return Ok(None);
                };
                for older in queued {
                    store::set_sync_state(
                        conn,
                        older.id,
                        store::SyncState::Superseded,
                        db_now,
                        None,
                        None,
                    )?;
                }
                // A token that does not open is reported on the delivery (never in clear).
                let token = authorizations::sealed_token(conn, &tiny)?.map(|sealed| {
                    s.sealer
                        .open(&token_context("app_auth_token", &tiny), &sealed)
                        .ok()
                        .and_then(|plain| String::from_utf8(plain).ok())
                        .map(SecretString::from)
                        .ok_or(())
                });
                let isv_app_id = authorizations::find(conn, &tiny)?.and_then(|a| a.isv_app_id);
                Ok(Some((newest, token, isv_app_id)))
            })
            .await?;
        let Some((sync, token, isv_app_id)) = prepared else {
            return Ok(Outcome::Nothing);
        };
        // Sent as the ISV app the merchant authorized, never as another.
        let alipay = match self.apps.for_record(isv_app_id.as_deref()) {
            Ok(app) => app.alipay.clone(),
            Err(unknown) => {
                let finish = Finish::failed(None, unknown.to_string());
                return self
                    .finish_delivery(tiny_app_id, out_biz_no, &sync, finish)
                    .await;
            }
        };

        let finish = match token {
            None => Finish::failed(
                Some("not_authorized"),
                "no token for this mini program".into(),
            ),
            Some(Err(())) => Finish::failed(
                None,
                "the stored token of this mini program does not open".into(),
            ),
            Some(Ok(token)) => match serde_json::from_str::<serde_json::Value>(&sync.biz_content) {
                Err(e) => Finish::failed(None, format!("stored sync does not read: {e}")),
                Ok(biz) => match alipay.merchant_order_sync(&token, &biz).await {
                    Ok(response) => {
                        self.metrics.merchant_syncs_delivered.fetch_add(1, Relaxed);
                        Finish {
                            outcome: Outcome::Delivered,
                            alipay_order_id: response.order_id,
                            record_id: response.record_id,
                            ..Finish::default()
                        }
                    }
                    Err(error) if error.is_invalid_app_auth_token() => {
                        // Retrying cannot help until the merchant authorizes again: stop and alert.
                        self.alerts
                            .raise(Alert {
                                kind: "app_auth_token_refused".into(),
                                subject: tiny_app_id.to_string(),
                                message: format!(
                                    "Alipay refused the merchant's app_auth_token ({}) delivering order {out_biz_no}; \
                                     authorization flagged, delivery stopped",
                                    error.sub_code().unwrap_or("20001")
                                ),
                            })
                            .await;
                        Finish {
                            flag_authorization: true,
                            ..Finish::failed(error.sub_code(), error.to_string())
                        }
                    }
                    Err(error) if error.is_retryable() => {
                        let outcome = match self.delivery_retry().after_failure(sync.attempts) {
                            AfterFailure::Retry { wait, attempts } => {
                                Outcome::Retry { wait, attempts }
                            }
                            AfterFailure::GiveUp { .. } => Outcome::Failed,
                        };
                        Finish {
                            outcome,
                            ..Finish::failed(error.sub_code(), error.to_string())
                        }
                    }
                    Err(error) => Finish::failed(error.sub_code(), error.to_string()),
                },
            },
        };
        self.finish_delivery(tiny_app_id, out_biz_no, &sync, finish)
            .await
    }

    /// Records how a delivery attempt ended and releases the order.
    async fn finish_delivery(
        &self,
        tiny_app_id: &str,
        out_biz_no: &str,
        sync: &store::SyncRow,
        finish: Finish,
    ) -> Result<Outcome, DeliveryError> {
        let now = self.clock.now();
        if finish.outcome == Outcome::Failed {
            tracing::warn!(%tiny_app_id, %out_biz_no, sub_code = ?finish.sub_code, error = ?finish.error, "merchant order sync not delivered");
        }
        let (tiny, out) = (tiny_app_id.to_string(), out_biz_no.to_string());
        let (id, modified) = (sync.id, sync.order_modified_time);
        let outcome = finish.outcome;
        self.db_write(move |conn| -> Result<(), DeliveryError> {
            let db_now = to_db_time(now);
            let (sub_code, error) = (finish.sub_code.as_deref(), finish.error.as_deref());
            let delivery = match finish.outcome {
                Outcome::Delivered => {
                    store::set_sync_state(
                        conn,
                        id,
                        store::SyncState::Delivered,
                        db_now,
                        None,
                        None,
                    )?;
                    store::Delivery::Delivered
                }
                Outcome::Retry { wait, attempts } => {
                    store::retry_sync(
                        conn,
                        id,
                        attempts,
                        to_db_time(now + wait),
                        sub_code,
                        error.unwrap_or_default(),
                    )?;
                    store::Delivery::Queued
                }
                Outcome::Failed | Outcome::Nothing => {
                    store::set_sync_state(
                        conn,
                        id,
                        store::SyncState::Failed,
                        db_now,
                        sub_code,
                        error,
                    )?;
                    store::Delivery::Failed
                }
            };
            let ids = (
                finish.alipay_order_id.as_deref(),
                finish.record_id.as_deref(),
            );
            store::set_delivery(
                conn, &tiny, &out, modified, delivery, ids.0, ids.1, sub_code, error, db_now,
            )?;
            if finish.flag_authorization {
                store::flag_authorization(conn, &tiny, error.unwrap_or("token refused"), db_now)?;
            }
            Ok(store::release(conn, &tiny, &out)?)
        })
        .await?;
        Ok(outcome)
    }
}

/// How one delivery attempt ended, and what to record.
#[derive(Debug, Default)]
struct Finish {
    outcome: Outcome,
    alipay_order_id: Option<String>,
    record_id: Option<String>,
    sub_code: Option<String>,
    error: Option<String>,
    /// Alipay refused the merchant's token: support must look at the authorization.
    flag_authorization: bool,
}

impl Finish {
    fn failed(sub_code: Option<&str>, error: String) -> Self {
        Finish {
            outcome: Outcome::Failed,
            sub_code: sub_code.map(str::to_string),
            error: Some(error),
            ..Finish::default()
        }
    }
}
