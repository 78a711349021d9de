//! Checks made without waiting for a message, and the rule that each runs on one replica at a
//! time (LIFECYCLE.md "Readings we trust"):
//! - every active authorization's token is asked about with `alipay.open.auth.token.app.query`
//!   once a day (`scheduler.authorization_check_cron`) and on demand: `invalid` ends the
//!   authorization like `alipay.open.auth.appauth.cancelled` (the cancellation path of
//!   `authorization_event`), `valid` records when it was checked, and a question Alipay did not
//!   answer keeps the authorization active (counted and logged);
//! - reconciliation and those checks hold a lease (`store::leases`: a PostgreSQL advisory lock, a
//!   lease row on SQLite), so N replicas do the work once.

use super::Services;
use super::alerts::Alert;
use super::lifecycle::{LifecycleError, ReconcileReport};
use super::pipeline::PipelineError;
use crate::alipay::api::{TokenQueryRequest, TokenStatus};
use crate::alipay::client::AlipayError;
use crate::domain::lifecycle::AuthorizationStatus;
use crate::store::{StoreError, authorizations, leases, to_db_time, token_checks};
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use std::future::Future;

/// The lease names.
pub const RECONCILIATION: &str = "reconciliation";
pub const AUTHORIZATION_CHECKS: &str = "authorization_checks";

/// How long an SQLite lease holds when its holder never gives it back (it died): the next run
/// after that takes it. PostgreSQL's lock ends with its holder's connection instead.
const LEASE_BOUND: Duration = Duration::hours(6);

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no authorization {0}")]
    NotFound(String),
    /// Only an active authorization has a token to ask about.
    #[error("authorization {0} is {1}: there is no token to check")]
    NotActive(String, &'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Alipay did not answer (or not in a way we can read): the authorization stays active.
    #[error("Alipay: {0}")]
    Alipay(#[from] AlipayError),
}

impl From<diesel::result::Error> for CheckError {
    fn from(e: diesel::result::Error) -> Self {
        CheckError::Store(e.into())
    }
}

/// What one check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    Valid,
    /// `invalid`: the authorization ended (unless it had ended, or a newer grant came, meanwhile).
    Ended,
    /// A `status` outside our table, verbatim: kept active, shown to support.
    Unknown(String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenCheckReport {
    pub checked: usize,
    pub valid: usize,
    pub ended: usize,
    pub unknown: usize,
    /// Alipay did not answer, or another failure: the authorization stays as it was.
    pub faults: usize,
}

impl Services {
    /// Runs `work` only when this replica holds the lease `name`: `None` (nothing done) while
    /// another replica holds it. The lease is given back when `work` ends.
    pub async fn as_one_replica<T, E>(
        &self,
        name: &'static str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<Option<T>, E>
    where
        E: From<StoreError>,
    {
        let now = self.clock.now();
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let pool = self.pool.clone();
        let lease = super::blocking(move || {
            leases::try_acquire(
                &pool,
                name,
                &holder,
                to_db_time(now),
                to_db_time(now + LEASE_BOUND),
            )
        })
        .await
        .map_err(StoreError::from)??;
        let Some(lease) = lease else {
            tracing::info!(job = name, "another replica holds the job; not run here");
            return Ok(None);
        };
        let result = work.await;
        let pool = self.pool.clone();
        let released = super::blocking(move || leases::release(&pool, lease)).await;
        if let Err(error) = released.map_err(StoreError::from).and_then(|r| r) {
            // PostgreSQL: the lock went with its connection anyway; SQLite: the bound frees it.
            tracing::warn!(job = name, %error, "lease not given back");
        }
        result.map(Some)
    }

    /// Reconciliation as the scheduler runs it: on one replica at a time. `None` when another
    /// replica is reconciling now.
    pub async fn reconcile_on_one_replica(
        &self,
        rate_per_second: u32,
        concurrency: usize,
    ) -> Result<Option<ReconcileReport>, LifecycleError> {
        self.as_one_replica(
            RECONCILIATION,
            self.reconcile_all(rate_per_second, concurrency, &|_, _| {}),
        )
        .await
    }

    /// The daily check of every active authorization, on one replica at a time (`None` when
    /// another replica is checking now). One failing check never stops the others.
    pub async fn check_authorizations_on_one_replica(
        &self,
    ) -> Result<Option<TokenCheckReport>, CheckError> {
        self.as_one_replica(AUTHORIZATION_CHECKS, self.check_authorizations())
            .await
    }

    async fn check_authorizations(&self) -> Result<TokenCheckReport, CheckError> {
        let mut report = TokenCheckReport::default();
        let mut after = String::new();
        loop {
            let from = after.clone();
            let page = self
                .db(move |conn| {
                    token_checks::active_after(conn, &from, 200).map_err(CheckError::from)
                })
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.clone();
            for auth_app_id in page {
                report.checked += 1;
                match self
                    .check_authorization(&crate::domain::MiniAppId::from(auth_app_id.as_str()))
                    .await
                {
                    Ok(TokenVerdict::Valid) => report.valid += 1,
                    Ok(TokenVerdict::Ended) => report.ended += 1,
                    Ok(TokenVerdict::Unknown(_)) => report.unknown += 1,
                    // It stopped being active since the page was read: nothing to check.
                    Err(CheckError::NotActive(..) | CheckError::NotFound(_)) => {
                        report.checked -= 1;
                    }
                    Err(error) => {
                        report.faults += 1;
                        tracing::warn!(%auth_app_id, %error, "token check failed; the authorization stays as it was");
                    }
                }
            }
        }
        tracing::info!(
            checked = report.checked,
            valid = report.valid,
            ended = report.ended,
            unknown = report.unknown,
            faults = report.faults,
            "authorization tokens checked"
        );
        Ok(report)
    }

    /// Asks Alipay now whether the authorization's token holds
    /// (`alipay.open.auth.token.app.query`, as the ISV app the merchant authorized).
    pub async fn check_authorization(
        &self,
        auth_app_id: &crate::domain::MiniAppId,
    ) -> Result<TokenVerdict, CheckError> {
        let id = auth_app_id.as_str().to_string();
        let s = self.clone();
        let (auth_time_ms, token, isv_app_id) = self
            .db(move |conn| -> Result<_, CheckError> {
                let row = authorizations::find(conn, &id)?
                    .ok_or_else(|| CheckError::NotFound(id.clone()))?;
                if row.status != AuthorizationStatus::Active {
                    return Err(CheckError::NotActive(id, row.status.as_str()));
                }
                let (token, isv_app_id) = s
                    .merchant_token(conn, &id)?
                    .ok_or_else(|| CheckError::NotActive(id.clone(), "without a token"))?;
                Ok((row.auth_time_ms, token, isv_app_id))
            })
            .await?;
        let alipay = self
            .apps
            .for_record(isv_app_id.as_deref())
            .map_err(|unknown| AlipayError::Decode(unknown.to_string()))?
            .alipay
            .clone();
        // An `invalid` answer ends the grant whose token this is (and no newer one).
        let checked = token.clone();
        let answer = alipay
            .auth_token_app_query(&TokenQueryRequest {
                app_auth_token: token,
            })
            .await;
        let now = self.clock.now();
        let status = match answer {
            Ok(r) => r.status,
            Err(error) => {
                self.metrics
                    .token_check_faults
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let result = format!(
                    "not answered: {}",
                    super::metered::result_code(Some(&error))
                );
                // Alipay refusing the token itself is not its word that the token is `invalid`:
                // the authorization stays active, flagged for support as a build would flag it.
                let refused = error.is_invalid_app_auth_token();
                let (id, flag) = (auth_app_id.to_string(), error.to_string());
                self.db_write(move |conn| -> Result<(), CheckError> {
                    token_checks::record(conn, &id, auth_time_ms, &result, None)?;
                    if refused {
                        crate::store::merchant_orders::flag_authorization(
                            conn,
                            &id,
                            &flag,
                            to_db_time(now),
                        )?;
                    }
                    Ok(())
                })
                .await?;
                if refused {
                    self.alerts
                        .raise(Alert {
                            kind: "app_auth_token_refused".into(),
                            subject: auth_app_id.to_string(),
                            message: format!(
                                "Alipay refused to check the token of mini program {auth_app_id} ({error}); \
                                 authorization flagged and kept active"
                            ),
                        })
                        .await;
                }
                return Err(error.into());
            }
        };
        let (verdict, alert) = self
            .token_answered(auth_app_id.as_str(), auth_time_ms, checked, status, now)
            .await?;
        if let Some(alert) = alert {
            self.alerts.raise(alert).await;
        }
        Ok(verdict)
    }

    async fn token_answered(
        &self,
        auth_app_id: &str,
        auth_time_ms: i64,
        token: SecretString,
        status: Option<TokenStatus>,
        now: DateTime<Utc>,
    ) -> Result<(TokenVerdict, Option<Alert>), CheckError> {
        let (id, s) = (auth_app_id.to_string(), self.clone());
        self.db_write(move |conn| -> Result<_, CheckError> {
            let at = Some(to_db_time(now));
            let text = status.as_ref().map_or("(none)", |s| s.as_str()).to_string();
            // Guarded on the grant checked: a newer grant arrived meanwhile is not ended by
            // what Alipay said of the old token.
            let still = authorizations::find(conn, &id)?.is_some_and(|r| {
                r.auth_time_ms == auth_time_ms && r.status == AuthorizationStatus::Active
            });
            match status {
                Some(TokenStatus::Valid) => {
                    token_checks::record(conn, &id, auth_time_ms, "valid", at)?;
                    Ok((TokenVerdict::Valid, None))
                }
                Some(TokenStatus::Invalid) => {
                    token_checks::record(conn, &id, auth_time_ms, "invalid", at)?;
                    if still {
                        // Ends like alipay.open.auth.appauth.cancelled: the service terminated
                        // as `authorization_cancelled`, the token erased.
                        s.cancel_authorization(
                            conn,
                            &id,
                            now,
                            Some(token.expose_secret()),
                            "auth.token.app.query",
                            now,
                        )?;
                        tracing::info!(auth_app_id = %id, "auth.token.app.query says invalid: authorization ended");
                    }
                    Ok((TokenVerdict::Ended, None))
                }
                Some(TokenStatus::Other(_)) | None => {
                    token_checks::record(conn, &id, auth_time_ms, &text, at)?;
                    tracing::warn!(auth_app_id = %id, status = %text, "auth.token.app.query status outside our table; kept active");
                    Ok((
                        TokenVerdict::Unknown(text.clone()),
                        Some(Alert {
                            kind: "unknown_alipay_status".into(),
                            subject: id.clone(),
                            message: format!(
                                "auth.token.app.query says {text} for mini program {id}, outside our table; the authorization stays active"
                            ),
                        }),
                    ))
                }
            }
        })
        .await
    }
}
