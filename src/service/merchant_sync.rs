//! Accepting a merchant's booking-order sync: checked against the to_shop rules (one sync on its
//! own, then against what we hold for the order), stored, and queued for delivery, in one
//! transaction (a savepoint inside a group commit, see `store::group_commit`).

use super::Services;
use crate::domain::merchant_order::{
    self as rules, CheckedSync, OrderRecord, SyncDecision, Violation,
};
use crate::store::StoreError;
use crate::store::group_commit::GroupCommit;
use crate::store::merchant_orders::{self as store, NewMerchantOrder, NewSync};
use crate::store::{AnyConnection, Pool, authorizations, to_db_time};
use chrono::NaiveDateTime;
use diesel::{Connection as _, QueryResult};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Stored and queued for delivery.
    Queued {
        status: String,
        order_modified_time: String,
    },
    /// Same `order_modified_time` as the stored one: nothing to do.
    Duplicate,
    /// Older than the stored one: kept for the record, never delivered.
    Stale,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{} rule violation(s)", .0.len())]
    Invalid(Vec<Violation>),
    #[error("mini program {0} has no active authorization")]
    NotAuthorized(String),
    #[error("the order changed concurrently; retry")]
    Conflict,
    /// The stored record of the order does not read back.
    #[error("stored record of order {0} does not read: {1}")]
    CorruptRecord(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for SyncError {
    fn from(e: diesel::result::Error) -> Self {
        SyncError::Store(e.into())
    }
}

pub const MODIFIED_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// One checked sync waiting for its batch.
pub struct SyncJob {
    checked: CheckedSync,
    raw: String,
    now: NaiveDateTime,
}

/// The merchant-order group-commit writer.
pub type SyncWriter = GroupCommit<SyncJob, Result<SyncOutcome, SyncError>>;

pub fn start_sync_writer(pool: Pool, writers: usize, batch_size: usize) -> SyncWriter {
    GroupCommit::start(
        "merchant-sync-writer",
        pool,
        writers,
        batch_size,
        Arc::new(accept_batch),
    )
}

/// One transaction for the batch, one savepoint per sync: a refused sync rolls back alone.
fn accept_batch(
    conn: &mut AnyConnection,
    jobs: Vec<SyncJob>,
) -> QueryResult<Vec<Result<SyncOutcome, SyncError>>> {
    crate::store::write_transaction(conn, |conn| {
        Ok(jobs
            .iter()
            .map(|job| {
                // A concurrent writer (another replica) that saved the order first makes the
                // guarded save fail: decide again against what it wrote.
                for _ in 0..5 {
                    match conn.transaction(|conn| accept_one(conn, job)) {
                        Ok(Some(outcome)) => return Ok(outcome),
                        Ok(None) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(SyncError::Conflict)
            })
            .collect())
    })
}

/// Decides and stores one sync; `Ok(None)` when a concurrent writer got there first.
fn accept_one(conn: &mut AnyConnection, job: &SyncJob) -> Result<Option<SyncOutcome>, SyncError> {
    let SyncJob { checked, raw, now } = job;
    match authorizations::find(conn, &checked.tiny_app_id)? {
        Some(a) if a.status == crate::domain::lifecycle::AuthorizationStatus::Active => {}
        _ => return Err(SyncError::NotAuthorized(checked.tiny_app_id.clone())),
    }
    let previous: Option<OrderRecord> =
        match store::find(conn, &checked.tiny_app_id, &checked.out_biz_no)? {
            Some(row) => Some(
                serde_json::from_str(&row.record)
                    .map_err(|e| SyncError::CorruptRecord(row.out_biz_no.clone(), e.to_string()))?,
            ),
            None => None,
        };
    let sync = |state| NewSync {
        tiny_app_id: &checked.tiny_app_id,
        out_biz_no: &checked.out_biz_no,
        order_modified_time: checked.order_modified_time,
        status: checked.status.as_str(),
        biz_content: raw,
        state,
        attempts: 0,
        next_attempt_at: *now,
        received_at: *now,
    };
    match rules::decide(previous.as_ref(), checked).map_err(SyncError::Invalid)? {
        SyncDecision::Duplicate => Ok(Some(SyncOutcome::Duplicate)),
        SyncDecision::Stale => {
            store::insert_sync(conn, &sync(store::SyncState::Stale))?;
            Ok(Some(SyncOutcome::Stale))
        }
        SyncDecision::First | SyncDecision::Accept => {
            let record = rules::record_after(previous.as_ref(), checked);
            let record_json = serde_json::to_string(&record).expect("an order record serialises");
            let saved = store::save_latest(
                conn,
                &NewMerchantOrder {
                    tiny_app_id: &checked.tiny_app_id,
                    out_biz_no: &checked.out_biz_no,
                    status: checked.status.as_str(),
                    order_modified_time: checked.order_modified_time,
                    record: &record_json,
                    delivery: store::Delivery::Queued,
                    created_at: *now,
                    updated_at: *now,
                },
                previous.as_ref().map(|p| p.order_modified_time),
            )?;
            if !saved {
                return Ok(None);
            }
            store::insert_sync(conn, &sync(store::SyncState::Queued))?;
            Ok(Some(SyncOutcome::Queued {
                status: checked.status.as_str().to_string(),
                order_modified_time: checked
                    .order_modified_time
                    .format(MODIFIED_FORMAT)
                    .to_string(),
            }))
        }
    }
}

impl Services {
    /// `raw` is the biz_content exactly as received: it is what gets delivered.
    pub async fn accept_merchant_sync(
        &self,
        biz: &serde_json::Value,
        raw: String,
    ) -> Result<SyncOutcome, SyncError> {
        let checked = rules::check_sync(biz).map_err(SyncError::Invalid)?;
        let now = to_db_time(self.clock.now());
        let outcome = self
            .merchant_syncs
            .submit(SyncJob { checked, raw, now })
            .await
            .map_err(SyncError::Store)??;
        if matches!(outcome, SyncOutcome::Queued { .. }) {
            self.delivery_wakeup.notify_one();
        }
        Ok(outcome)
    }

    pub async fn merchant_order(
        &self,
        tiny_app_id: &str,
        out_biz_no: &str,
    ) -> Result<Option<MerchantOrderView>, SyncError> {
        let (tiny_app_id, out_biz_no) = (tiny_app_id.to_owned(), out_biz_no.to_owned());
        self.off_executor(move |s| {
            let (tiny_app_id, out_biz_no) = (tiny_app_id.as_str(), out_biz_no.as_str());
            let mut conn = s.pool.get().map_err(StoreError::from)?;
            Ok(
                store::find(&mut conn, tiny_app_id, out_biz_no)?.map(|row| MerchantOrderView {
                    tiny_app_id: row.tiny_app_id,
                    out_biz_no: row.out_biz_no,
                    status: row.status,
                    order_modified_time: row
                        .order_modified_time
                        .format(MODIFIED_FORMAT)
                        .to_string(),
                    delivery: row.delivery.as_str().into(),
                    alipay_order_id: row.alipay_order_id,
                    record_id: row.record_id,
                    sub_code: row.sub_code,
                    last_error: row.last_error,
                }),
            )
        })
        .await
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MerchantOrderView {
    pub tiny_app_id: String,
    pub out_biz_no: String,
    pub status: String,
    pub order_modified_time: String,
    pub delivery: String,
    pub alipay_order_id: Option<String>,
    pub record_id: Option<String>,
    pub sub_code: Option<String>,
    pub last_error: Option<String>,
}
