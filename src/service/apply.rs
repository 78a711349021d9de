//! Applying stored gateway messages, after the acknowledgement. Each message is applied in one
//! transaction together with its move out of `received`, so it is applied exactly once even with
//! several workers or a crash in the middle. A message that fails is retried with backoff and
//! does not hold up the ones behind it.

use super::Services;
use crate::alipay::form;
use crate::alipay::message::{
    self, AuthorizationNotification, GatewayMessage, OrderNotification, Params,
};
use crate::backoff::{AfterFailure, RetryPolicy};
use crate::domain::OrderStatus;
use crate::domain::lifecycle::{AuthorizationEvent, OrderEvent};
use crate::domain::order::OrderPlaced;
use crate::service::alerts::Alert;
use crate::service::lifecycle::{Grant, LifecycleError};
use crate::store::messages::{self, PendingMessage};
use crate::store::{AnyConnection, StoreError, orders, to_db_time};
use chrono::{DateTime, Utc};
use diesel::Connection as _;
use secrecy::ExposeSecret;
use std::sync::atomic::Ordering::Relaxed;

/// Longest wait between two attempts.
const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
pub struct ApplySettings {
    pub batch: i64,
    pub max_attempts: i32,
}

impl ApplySettings {
    /// The inbox's retries: up to `inbox.max_apply_attempts`, waits capped at an hour.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            cap: BACKOFF_CAP,
            max_attempts: Some(self.max_attempts),
        }
    }
}

/// How long a worker holds a claimed batch of messages (SQLite; PostgreSQL holds row locks).
/// Long enough for any batch; should a worker die, another one takes the batch over when this
/// runs out (the finish is guarded, so a message is applied once even if two workers ever hold
/// it).
const APPLY_LEASE_SECONDS: i64 = 120;

impl From<LifecycleError> for ApplyError {
    fn from(e: LifecycleError) -> Self {
        match &e {
            // A concurrent writer moved the order, or the database or Alipay did not answer:
            // the savepoint rolls back and the message is retried later.
            LifecycleError::Conflict | LifecycleError::Alipay(_) => {
                ApplyError::Retry(e.to_string())
            }
            LifecycleError::Store(store) if store.is_transient() => {
                ApplyError::Retry(e.to_string())
            }
            LifecycleError::Store(_)
            | LifecycleError::NotFound(_)
            | LifecycleError::Rule(_)
            | LifecycleError::Unexpected(_) => ApplyError::Permanent(e.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    /// Worth another attempt later.
    #[error("{0}")]
    Retry(String),
    /// Retrying cannot help (the message itself is unusable): set aside for support.
    #[error("{0}")]
    Permanent(String),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

enum Applied {
    Done,
    /// Applied; support hears of it once the apply is committed.
    DoneWithAlert(Alert),
    Quarantined(String),
    /// Another worker finished this message first.
    AlreadyHandled,
}

/// What one pass of the worker did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyPass {
    pub seen: usize,
    pub applied: usize,
    pub quarantined: usize,
    pub failed: usize,
}

impl Services {
    /// Applies what is due: on PostgreSQL the whole pass in one transaction that holds its
    /// messages' row locks ([`Self::apply_locked`]), on SQLite leased messages in chunks of 32
    /// ([`Self::apply_leased`]); each chunk as [`Self::apply_chunk`] says.
    pub async fn apply_due(&self) -> Result<ApplyPass, StoreError> {
        self.off_executor(move |s| {
            let now = s.clock.now();
            let mut conn = s.pool.get()?;
            let (due, outcomes) = match s.pool.backend() {
                crate::store::Backend::Postgres => s.apply_locked(&mut conn, now)?,
                crate::store::Backend::Sqlite => s.apply_leased(&mut conn, now)?,
            };
            if due.is_empty() {
                return Ok(ApplyPass::default());
            }
            // Counted and logged only once committed.
            let mut pass = ApplyPass {
                seen: due.len(),
                ..ApplyPass::default()
            };
            for (pending, outcome) in due.iter().zip(outcomes) {
                match outcome {
                    Ok(Applied::Done) => {
                        pass.applied += 1;
                        s.metrics.applied.fetch_add(1, Relaxed);
                        let lag = (now.naive_utc() - pending.received_at)
                            .num_milliseconds()
                            .max(0) as u64;
                        s.metrics.apply_lag_ms_sum.fetch_add(lag, Relaxed);
                    }
                    Ok(Applied::DoneWithAlert(alert)) => {
                        pass.applied += 1;
                        s.metrics.applied.fetch_add(1, Relaxed);
                        let alerts = s.alerts.clone();
                        // Best effort, like every alert, and only for what was committed.
                        if let Ok(handle) = tokio::runtime::Handle::try_current() {
                            handle.spawn(async move { alerts.raise(alert).await });
                        }
                    }
                    Ok(Applied::Quarantined(reason)) => {
                        pass.quarantined += 1;
                        s.metrics.quarantined.fetch_add(1, Relaxed);
                        tracing::warn!(notify_id = %pending.notify_id, kind = %pending.kind, %reason, "message quarantined");
                    }
                    Ok(Applied::AlreadyHandled) => {}
                    Err(error) => {
                        pass.failed += 1;
                        s.metrics.apply_failures.fetch_add(1, Relaxed);
                        tracing::warn!(notify_id = %pending.notify_id, kind = %pending.kind, attempts = pending.attempts + 1,
                            %error, "message not applied; retried later unless set aside as failed");
                    }
                }
            }
            Ok(pass)
        })
        .await
    }

    /// PostgreSQL (SQLite could, but see [`Self::apply_leased`]): the pass is one transaction. It
    /// locks the due messages (`FOR UPDATE SKIP LOCKED`: a concurrent worker or replica takes
    /// others), applies them, moves them out of `received` and commits; no lease is written to
    /// each row and cleared again.
    fn apply_locked(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
    ) -> Result<(Vec<PendingMessage>, Vec<Result<Applied, ApplyError>>), StoreError> {
        crate::store::write_transaction::<_, StoreError>(conn, |conn| {
            let due = messages::lock_due(conn, to_db_time(now), self.apply.batch)?;
            if due.is_empty() {
                return Ok((due, Vec::new()));
            }
            let outcomes = self.apply_chunk(conn, &due, now)?;
            Ok((due, outcomes))
        })
    }

    /// SQLite: the due messages are leased, then applied in chunks of 32, each its own
    /// transaction: SQLite has one writer, shared with the gateway's inbox, and ingest is never
    /// held up behind a long apply transaction.
    fn apply_leased(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
    ) -> Result<(Vec<PendingMessage>, Vec<Result<Applied, ApplyError>>), StoreError> {
        let lease = now + chrono::Duration::seconds(APPLY_LEASE_SECONDS);
        let due = {
            let _writer = self.pool.write_guard();
            messages::claim_due(conn, to_db_time(now), to_db_time(lease), self.apply.batch)?
        };
        let mut outcomes = Vec::with_capacity(due.len());
        for part in due.chunks(32) {
            let _writer = self.pool.write_guard();
            outcomes.extend(self.apply_chunk(conn, part, now)?);
        }
        Ok((due, outcomes))
    }

    /// One chunk, in one transaction (or, inside the caller's, one savepoint). Most chunks apply
    /// cleanly: the whole chunk is tried without a savepoint per message (two round trips fewer
    /// each). At the first failure that attempt is rolled back whole, and the chunk is applied
    /// again message by message, each in its own savepoint, so that a failing message is
    /// recorded and the others commit. Each message is opened (decrypted, parsed) once, for
    /// either way.
    fn apply_chunk(
        &self,
        conn: &mut AnyConnection,
        part: &[PendingMessage],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Applied, ApplyError>>, diesel::result::Error> {
        let opened: Vec<_> = part
            .iter()
            .map(|pending| self.open_message(pending))
            .collect();
        match self.apply_chunk_at_once(conn, part, &opened, now)? {
            Some(committed) => Ok(committed),
            None => self.apply_chunk_one_by_one(conn, part, opened, now),
        }
    }

    /// The chunk in one transaction without savepoints; `None` (and nothing kept) as soon as
    /// one message fails.
    fn apply_chunk_at_once(
        &self,
        conn: &mut AnyConnection,
        part: &[PendingMessage],
        opened: &[Result<GatewayMessage, ApplyError>],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Result<Applied, ApplyError>>>, diesel::result::Error> {
        // A message that did not open goes the careful way, where its failure is recorded.
        let Some(parsed) = opened
            .iter()
            .map(|message| message.as_ref().ok())
            .collect::<Option<Vec<&GatewayMessage>>>()
        else {
            return Ok(None);
        };
        /// Why the attempt was abandoned.
        enum Abandon {
            Failed,
            Database(diesel::result::Error),
        }
        impl From<diesel::result::Error> for Abandon {
            fn from(e: diesel::result::Error) -> Self {
                Abandon::Database(e)
            }
        }
        let attempt = crate::store::write_transaction(conn, |conn| {
            // PostgreSQL moves the whole chunk out of `received` in one statement first (the
            // same guarded move, taking every row's lock before any read).
            let batch: Vec<(i64, Option<&str>)> = part
                .iter()
                .zip(parsed.iter().copied())
                .map(|(pending, message)| (pending.id, about_order(message)))
                .collect();
            let moved = messages::finish_applied_batch(conn, &batch, to_db_time(now))?;
            part.iter()
                .zip(parsed.iter().copied())
                .map(|(pending, message)| {
                    let outcome = match &moved {
                        Some(moved) if !moved.contains(&pending.id) => Ok(Applied::AlreadyHandled),
                        Some(_) => self.act_on(conn, pending, message, now),
                        None => self.apply_message(conn, pending, message, now),
                    };
                    outcome.map(Ok).map_err(|_| Abandon::Failed)
                })
                .collect::<Result<Vec<_>, Abandon>>()
        });
        match attempt {
            Ok(outcomes) => Ok(Some(outcomes)),
            Err(Abandon::Failed) => Ok(None),
            Err(Abandon::Database(e)) => Err(e),
        }
    }

    /// The chunk in one transaction, each message in its own savepoint: a failure rolls back that
    /// message alone and is recorded for a retry (or set aside), and the others commit.
    fn apply_chunk_one_by_one(
        &self,
        conn: &mut AnyConnection,
        part: &[PendingMessage],
        opened: Vec<Result<GatewayMessage, ApplyError>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Applied, ApplyError>>, diesel::result::Error> {
        crate::store::write_transaction::<_, diesel::result::Error>(conn, |conn| {
            let mut outcomes = Vec::with_capacity(part.len());
            for (pending, opened) in part.iter().zip(opened) {
                let outcome = opened.and_then(|message| {
                    conn.transaction(|conn| self.apply_message(conn, pending, &message, now))
                });
                if let Err(error) = &outcome {
                    let (attempts, next, give_up) =
                        match self.apply.retry().after_failure(pending.attempts) {
                            // A message that can never apply is set aside at once.
                            AfterFailure::Retry { attempts, .. }
                                if matches!(error, ApplyError::Permanent(_)) =>
                            {
                                (attempts, now, true)
                            }
                            AfterFailure::Retry { wait, attempts } => (attempts, now + wait, false),
                            AfterFailure::GiveUp { attempts } => (attempts, now, true),
                        };
                    messages::record_failure(
                        conn,
                        pending.id,
                        attempts,
                        to_db_time(next),
                        &error.to_string(),
                        give_up,
                    )?;
                }
                outcomes.push(outcome);
            }
            Ok(outcomes)
        })
    }

    /// A stored message opened, decrypted and parsed: no database involved.
    fn open_message(&self, pending: &PendingMessage) -> Result<GatewayMessage, ApplyError> {
        let body = self
            .sealer
            .open(super::raw_body_context(), &pending.raw_body)
            .map_err(|e| ApplyError::Permanent(format!("stored body does not open: {e}")))?;
        let mut params = decode_params(&body)?;
        // The app the message was verified for at ingest; one no longer configured is never
        // read with another app's key.
        let app = self.apps.get(&pending.app_id).ok_or_else(|| {
            ApplyError::Permanent(
                super::isv_apps::UnknownIsvApp(pending.app_id.clone()).to_string(),
            )
        })?;
        // Verified over the ciphertext at ingest; decrypted here, so a message that arrived
        // before its key was right can be replayed once it is.
        message::decrypt_biz_content(&mut params, app.aes_key.as_deref())
            .map_err(|e| ApplyError::Permanent(e.to_string()))?;
        message::parse(&params).map_err(|e| ApplyError::Permanent(e.to_string()))
    }

    /// Applies one opened message on `conn`, inside the caller's transaction or savepoint.
    fn apply_message(
        &self,
        conn: &mut AnyConnection,
        pending: &PendingMessage,
        parsed: &GatewayMessage,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        // The guarded move out of `received` comes first: it takes the row's lock (and, on
        // SQLite, the write lock) before any read, so a second worker waits and then finds
        // nothing to do.
        if !messages::finish(
            conn,
            pending.id,
            messages::MessageState::Applied,
            to_db_time(now),
            None,
            about_order(parsed),
        )? {
            return Ok(Applied::AlreadyHandled);
        }
        self.act_on(conn, pending, parsed, now)
    }

    /// What a message does, once it has been moved out of `received` in this transaction.
    fn act_on(
        &self,
        conn: &mut AnyConnection,
        pending: &PendingMessage,
        parsed: &GatewayMessage,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let outcome = match parsed {
            GatewayMessage::Order(o) => self.apply_order(conn, o, &pending.app_id, now)?,
            GatewayMessage::Authorization(a) => {
                self.apply_authorization(conn, a, &pending.notify_id, &pending.app_id, now)?
            }
            GatewayMessage::AuthorizationCancelled {
                auth_app_id,
                token,
                at,
            } => {
                self.cancel_authorization(
                    conn,
                    auth_app_id,
                    at.unwrap_or(now),
                    token.as_ref().map(|t| t.expose_secret()),
                    &format!("appauth_cancelled:{}", pending.notify_id),
                    now,
                )?;
                Applied::Done
            }
            GatewayMessage::AuditPassed {
                mini_app_id,
                app_version,
                at,
            } => {
                // The build moves on (online next) and the orders ask Alipay.
                self.audit_result(conn, mini_app_id, app_version.as_deref(), None, now)?;
                self.apply_audit_passed(conn, mini_app_id, *at, now)?
            }
            GatewayMessage::AuditRejected {
                mini_app_id,
                app_version,
                reason,
            } => match self.audit_result(
                conn,
                mini_app_id,
                app_version.as_deref(),
                Some(reason),
                now,
            )? {
                Some(alert) => Applied::DoneWithAlert(alert),
                None => Applied::Done,
            },
            // Recorded as applied: nothing in the lifecycle acts on these yet.
            GatewayMessage::Other { .. } => Applied::Done,
        };
        if let Applied::Quarantined(reason) = &outcome {
            messages::set_state(
                conn,
                pending.id,
                messages::MessageState::Quarantined,
                Some(reason),
            )?;
        }
        Ok(outcome)
    }

    fn apply_order(
        &self,
        conn: &mut AnyConnection,
        o: &OrderNotification,
        isv_app_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let now_db = to_db_time(now);
        let new = orders::NewOrder {
            commodity_order_id: o.commodity_order_id.clone(),
            // place_order sets the first state and its time from the rules.
            status: OrderStatus::AwaitingPayment,
            cancel_reason: None,
            merchant_pid: o.merchant_pid.clone(),
            mini_app_id: o.mini_app_id.clone(),
            item_code: o.item_code.clone(),
            title: o.title.clone(),
            total_price: o.total_price.clone(),
            merchant_name: o.merchant_name.clone(),
            isv_app_id: Some(isv_app_id.to_string()),
            ordered_at: to_db_time(o.ordered_at),
            status_since: to_db_time(o.ordered_at),
            created_at: now_db,
            updated_at: now_db,
        };
        let placed = OrderPlaced {
            ordered_at: o.ordered_at,
            total_price: o.total_price.clone(),
        };
        // Most notices are for a new order: insert first, read only on a redelivery.
        if self.place_order(conn, &new, &placed, now)? {
            self.record_period_day(conn, &o.commodity_order_id, o.period_day.as_deref(), now)?;
            return Ok(Applied::Done);
        }
        let existing = orders::find(conn, &o.commodity_order_id)?
            .ok_or_else(|| ApplyError::Retry(format!("order {} vanished", o.commodity_order_id)))?;
        // The same order id naming another merchant or mini program is not a redelivery we
        // understand: keep it for support rather than guess.
        let differs = |stored: &Option<String>, sent: &Option<String>| {
            stored.is_some() && sent.is_some() && stored != sent
        };
        if differs(&existing.merchant_pid, &o.merchant_pid) {
            return Ok(Applied::Quarantined(format!(
                "order {} is held for another merchant_pid",
                o.commodity_order_id
            )));
        }
        if differs(&existing.mini_app_id, &o.mini_app_id) {
            return Ok(Applied::Quarantined(format!(
                "order {} is held for another mini program",
                o.commodity_order_id
            )));
        }
        Ok(Applied::Done)
    }

    /// An audit pass for a mini program reaches every order of it still implementing; the rules
    /// ask Alipay before the order moves.
    fn apply_audit_passed(
        &self,
        conn: &mut AnyConnection,
        mini_app_id: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        for id in orders::ids_for_mini_app(conn, mini_app_id)? {
            self.order_event(conn, &id, OrderEvent::AuditPassed { at }, now)?;
        }
        Ok(Applied::Done)
    }

    fn apply_authorization(
        &self,
        conn: &mut AnyConnection,
        a: &AuthorizationNotification,
        notify_id: &str,
        isv_app_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let auth_time =
            crate::alipay::time::from_epoch_millis(a.auth_time_ms).ok_or_else(|| {
                ApplyError::Permanent(format!("auth_time {} is out of range", a.auth_time_ms))
            })?;
        let seal = |what: &str, secret: &str| {
            self.sealer
                .seal(&token_context(what, &a.auth_app_id), secret.as_bytes())
        };
        let grant = Grant {
            user_id: a.user_id.clone(),
            auth_time,
            sealed_token: seal("app_auth_token", a.app_auth_token.expose_secret()),
            sealed_refresh_token: a
                .app_refresh_token
                .as_ref()
                .map(|t| seal("app_refresh_token", t.expose_secret())),
            notify_id: notify_id.to_string(),
            isv_app_id: Some(isv_app_id.to_string()),
            token_fingerprint: self
                .token_fingerprint(&a.auth_app_id, a.app_auth_token.expose_secret()),
        };
        // The rules decide (an older auth_time arriving late changes nothing).
        self.authorization_event(
            conn,
            &a.auth_app_id,
            AuthorizationEvent::Granted {
                auth_time_ms: a.auth_time_ms,
                token: Some(grant.token_fingerprint.clone()),
            },
            Some(&grant),
            "",
            now,
        )?;
        Ok(Applied::Done)
    }
}

/// The order a message is about, linked to it for support's order page.
fn about_order(message: &GatewayMessage) -> Option<&str> {
    match message {
        GatewayMessage::Order(o) => Some(o.commodity_order_id.as_str()),
        GatewayMessage::Authorization(_)
        | GatewayMessage::AuthorizationCancelled { .. }
        | GatewayMessage::AuditPassed { .. }
        | GatewayMessage::AuditRejected { .. }
        | GatewayMessage::Other { .. } => None,
    }
}

/// Sealing context of an authorization's token: bound to its column and its merchant app.
pub fn token_context(what: &str, auth_app_id: &str) -> String {
    format!("authorization.{what}:{auth_app_id}")
}

fn decode_params(body: &[u8]) -> Result<Params, ApplyError> {
    let pairs =
        form::decode(body).map_err(|e| ApplyError::Permanent(format!("stored body: {e}")))?;
    // Decoded with the message's own charset, as at ingest.
    crate::alipay::notify::decode_params(&pairs)
        .map_err(|e| ApplyError::Permanent(format!("stored body: {e}")))
}
