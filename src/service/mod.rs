//! Use cases: ingest a gateway message, apply it, and the read models support sees. Each writes
//! through `store` in one transaction.

pub mod alerts;
pub mod alipay_certs;
pub mod apply;
pub mod checks;
pub mod dashboard;
pub mod ingest;
pub mod isv_apps;
pub mod lifecycle;
pub mod merchant_delivery;
pub mod merchant_sync;
pub mod metered;
pub mod operators;
pub mod periods;
pub mod pipeline;
pub mod retention;
pub mod support;
pub mod views;

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::seal::Sealer;
use crate::store::{AnyConnection, Pool, StoreError};
use std::sync::Arc;
use tokio::sync::Notify;

/// What every use case needs, built once in `main` (or a test) and shared.
#[derive(Clone)]
pub struct Services {
    pub pool: Pool,
    pub clock: SharedClock,
    pub sealer: Arc<Sealer>,
    /// Every ISV app we serve (`alipay.*`, `alipay.apps.*`): each one's verification material,
    /// AES key and OpenAPI client (called only from jobs and support). Messages for an app id
    /// not here are quarantined; calls for a merchant go through the client of the app its order
    /// or authorization records (`apps.for_record`), never another.
    pub apps: Arc<isv_apps::IsvApps>,
    /// The primary app's id (`alipay.app_id`).
    pub app_id: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub inbox: ingest::InboxWriter,
    pub merchant_syncs: merchant_sync::SyncWriter,
    /// Woken after a new message commits, so it is applied at once rather than at the next poll.
    pub apply_wakeup: Arc<Notify>,
    pub apply: apply::ApplySettings,
    /// Woken when a merchant-order sync is queued.
    pub delivery_wakeup: Arc<Notify>,
    pub alerts: alerts::Alerter,
    pub lifecycle: Arc<lifecycle::LifecycleSettings>,
    pub pipeline: Arc<pipeline::PipelineSettings>,
    /// The work queues' batch sizes and retry limits.
    pub queues: Arc<crate::config::QueueSettings>,
}

/// Runs blocking database work off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(f).await
}

/// A rollback of the helper's transaction: the store's error, or the use case's own.
enum Rollback<E> {
    Store(diesel::result::Error),
    UseCase(E),
}

impl<E> From<diesel::result::Error> for Rollback<E> {
    fn from(e: diesel::result::Error) -> Self {
        Rollback::Store(e)
    }
}

/// The seam between use cases and the store: `f` runs on the blocking pool with a pooled
/// connection; a pool, database or thread failure comes back as the caller's error through
/// `StoreError`. For reads.
pub async fn on_store<T, E>(
    pool: &Pool,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let pool = pool.clone();
    blocking(move || {
        let mut conn = pool.get().map_err(StoreError::from)?;
        f(&mut conn)
    })
    .await
    .map_err(|e| E::from(StoreError::from(e)))?
}

/// Like [`on_store`], for writes: one transaction (rolled back when `f` fails), under the SQLite
/// write guard so that writers in this process queue instead of meeting in SQLite's busy handler.
pub async fn in_transaction<T, E>(
    pool: &Pool,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let pool = pool.clone();
    blocking(move || {
        let mut conn = pool.get().map_err(StoreError::from)?;
        let _writer = pool.write_guard();
        crate::store::write_transaction(&mut conn, |conn| f(conn).map_err(Rollback::UseCase))
            .map_err(|rollback| match rollback {
                Rollback::Store(e) => E::from(StoreError::from(e)),
                Rollback::UseCase(e) => e,
            })
    })
    .await
    .map_err(|e| E::from(StoreError::from(e)))?
}

impl Services {
    /// Runs a use case's blocking body (diesel, Argon2) on the blocking pool with a handle on
    /// these services, so that every use case is async and no caller needs to know which of
    /// them block. A panic in the body is resumed here, as if the body had run inline.
    pub(crate) async fn off_executor<T: Send + 'static>(
        &self,
        body: impl FnOnce(&Services) -> T + Send + 'static,
    ) -> T {
        let services = self.clone();
        match tokio::task::spawn_blocking(move || body(&services)).await {
            Ok(value) => value,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Blocking tasks are never aborted; only a runtime shutting down cancels them.
            Err(e) => panic!("use case cancelled by the runtime shutting down: {e}"),
        }
    }

    /// [`on_store`] on this service's pool: every use case's reads.
    pub async fn db<T, E>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        on_store(&self.pool, f).await
    }

    /// [`in_transaction`] on this service's pool: every use case's writes.
    pub async fn db_write<T, E>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        in_transaction(&self.pool, f).await
    }
}

/// Secrets sealed at rest are bound to what they are (see `Sealer`).
pub fn raw_body_context() -> &'static str {
    "gateway_message.raw_body"
}
