//! The template build pipeline (LIFECYCLE.md "Implementation pipeline"): once an order is
//! implementing and its mini program's authorization is active, build the merchant's version from
//! our template — `version.list.query` (the version follows Alipay's own list), `version.upload`,
//! poll `build.query`, `audit.apply`, wait for the audit message (asking `version.detail.query`
//! when none comes within `templates.audit_poll_seconds`), `version.online` unless auto-online —
//! as outbox rows moved one guarded step at a time, with the merchant's own token. Each step is
//! idempotent under retries and noted in the order's history; the order itself moves on when
//! `order.query` agrees (the audit result queues that query). A rejected audit alerts support and
//! waits for a retry (`retry_build`). Alipay refusing the merchant's token (`20001`) at any step
//! flags the authorization for support, as the merchant-order delivery does.

use super::Services;
use super::alerts::Alert;
use super::apply::token_context;
use super::lifecycle::LifecycleError;
use crate::alipay::api::{
    AppVersion, AuditApplyRequest, BuildQueryRequest, BuildStatus, VersionDetailRequest,
    VersionListRequest, VersionListResponse, VersionOnlineRequest, VersionStatus,
    VersionUploadRequest,
};
use crate::alipay::client::AlipayError;
use crate::backoff::{AfterFailure, RetryPolicy};
use crate::domain::lifecycle::AuthorizationStatus;
use crate::store::builds::{self, BuildRow, BuildStep};
use crate::store::{AnyConnection, StoreError, authorizations, orders, to_db_time};
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use std::collections::HashMap;

/// Longest wait between two attempts.
const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_secs(900);

/// Which template builds an `item_code`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TemplateRef {
    /// The template mini program's APPID (not ours, not the merchant's).
    pub template_id: String,
    /// Empty: the latest template version on shelf.
    #[serde(default)]
    pub template_version: String,
}

#[derive(Debug, Clone, Default)]
pub struct PipelineSettings {
    pub items: HashMap<String, TemplateRef>,
    /// For item codes without their own entry; `None`: no build for them.
    pub default: Option<TemplateRef>,
    /// Ask Alipay to put an approved version online itself (then no `version.online` call).
    pub auto_online: bool,
    /// How long to wait between `build.query` polls.
    pub poll_seconds: i64,
    /// A step failing this many times in a row is given up (`failed`, support alerted).
    pub max_attempts: i32,
    /// After `audit.apply`, how long to wait for the audit message before asking
    /// `version.detail.query`, and then between asks.
    pub audit_poll_seconds: i64,
}

impl PipelineSettings {
    /// A build step's retries: waits capped at 15 minutes, up to `templates.build_max_attempts`.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            cap: BACKOFF_CAP,
            max_attempts: Some(self.max_attempts),
        }
    }

    fn audit_wait(&self) -> Duration {
        Duration::seconds(self.audit_poll_seconds.max(1))
    }
}

impl PipelineSettings {
    fn template(&self, item_code: Option<&str>) -> Option<&TemplateRef> {
        item_code
            .and_then(|c| self.items.get(c))
            .or(self.default.as_ref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The merchant's sealed token does not open (wrong encryption key, or damaged).
    #[error("the stored token of {0} does not open")]
    Token(String),
    #[error("no build for mini program {0}")]
    NotFound(String),
    /// Support asked for something the build's state does not allow.
    #[error("{0}")]
    Refused(String),
}

impl From<diesel::result::Error> for PipelineError {
    fn from(e: diesel::result::Error) -> Self {
        PipelineError::Store(e.into())
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelinePass {
    pub started: usize,
    pub steps: usize,
}

const LEASE_SECONDS: i64 = 300;

/// A note in the order's history: the pipeline's steps are visible to support.
pub(super) fn note(
    conn: &mut AnyConnection,
    order_id: &str,
    cause: &str,
    reason: String,
    now: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    let Some(order) = orders::find(conn, order_id)? else {
        return Ok(());
    };
    orders::add_history(
        conn,
        &orders::NewHistory {
            commodity_order_id: order_id.into(),
            from_status: Some(order.status.as_str().into()),
            to_status: order.status.as_str().into(),
            actor: "pipeline".into(),
            cause: cause.into(),
            reason: Some(reason),
            inferred: false,
            at: to_db_time(now),
        },
    )
}

/// Alipay answers that make a repeated step a success: the work was done by an earlier attempt
/// whose answer we did not see.
fn already_done(error: &AlipayError) -> bool {
    error.sub_code().is_some_and(|s| {
        let s = s.to_ascii_uppercase();
        s.contains("VERSION_EXIST")
            || s.contains("VERSION_ALREADY")
            || s.contains("ALREADY_AUDIT")
            || s.contains("AUDITING")
    })
}

impl Services {
    /// One pass: start builds where needed, then run every due step.
    pub async fn run_pipeline(&self, limit: i64) -> Result<PipelinePass, PipelineError> {
        let now = self.clock.now();
        let s = self.clone();
        let started = self
            .db_write(move |conn| -> Result<usize, PipelineError> {
                let mut started = 0;
                for (order_id, mini_app_id, item_code) in
                    builds::orders_needing_a_build(conn, limit)?
                {
                    let Some(template) = s.pipeline.template(item_code.as_deref()).cloned() else {
                        continue;
                    };
                    let version = (!template.template_version.is_empty())
                        .then_some(template.template_version.as_str());
                    // A stored version of ours that does not read stops this mini program's
                    // builds (logged as an error), never every other one.
                    let planned = match planned_version(conn, &mini_app_id) {
                        Ok(v) => v,
                        Err(error) => {
                            tracing::error!(%mini_app_id, %error, "no build started");
                            continue;
                        }
                    };
                    if builds::start(
                        conn,
                        &mini_app_id,
                        &order_id,
                        (&template.template_id, version),
                        &planned,
                        to_db_time(now),
                    )? {
                        note(
                            conn,
                            &order_id,
                            "build_started",
                            format!("template {}", template.template_id),
                            now,
                        )?;
                        started += 1;
                    }
                }
                Ok(started)
            })
            .await?;
        let claimed = self
            .db_write(move |conn| {
                builds::claim_due(
                    conn,
                    to_db_time(now),
                    to_db_time(now + Duration::seconds(LEASE_SECONDS)),
                    limit,
                )
                .map_err(PipelineError::from)
            })
            .await?;
        let steps = claimed.len();
        for build in claimed {
            if let Err(error) = self.run_step(&build, now).await {
                tracing::warn!(mini_app_id = %build.mini_app_id, version = %build.app_version, step = %build.step, %error, "build step failed");
            }
        }
        Ok(PipelinePass { started, steps })
    }

    pub(super) fn merchant_token(
        &self,
        conn: &mut AnyConnection,
        mini_app_id: &str,
    ) -> Result<Option<(SecretString, Option<String>)>, PipelineError> {
        let isv_app_id = match authorizations::find(conn, mini_app_id)? {
            Some(a) if a.status == AuthorizationStatus::Active => a.isv_app_id,
            _ => return Ok(None),
        };
        let Some(sealed) = authorizations::sealed_token(conn, mini_app_id)? else {
            return Ok(None);
        };
        let plain = self
            .sealer
            .open(&token_context("app_auth_token", mini_app_id), &sealed)
            .map_err(|_| PipelineError::Token(mini_app_id.to_string()))?;
        String::from_utf8(plain)
            .map(|t| Some((SecretString::from(t), isv_app_id)))
            .map_err(|_| PipelineError::Token(mini_app_id.to_string()))
    }

    async fn run_step(&self, b: &BuildRow, now: DateTime<Utc>) -> Result<(), PipelineError> {
        let (s, app) = (self.clone(), b.mini_app_id.clone());
        let token = self.db(move |conn| s.merchant_token(conn, &app)).await?;
        let Some((token, isv_app_id)) = token else {
            return self
                .finish_step(
                    b,
                    Step::Fail("no active authorization for the mini program".into()),
                    now,
                )
                .await;
        };
        // Called as the ISV app the merchant authorized, never as another.
        let alipay = match self.apps.for_record(isv_app_id.as_deref()) {
            Ok(app) => app.alipay.clone(),
            Err(unknown) => {
                return self
                    .finish_step(b, Step::Fail(unknown.to_string()), now)
                    .await;
            }
        };
        let outcome = match b.step {
            BuildStep::VersionList => {
                let answer = alipay
                    .mini_version_list_query(&token, &VersionListRequest::default())
                    .await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_VERSION_LIST,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    Ok(list) => Step::Versions(list),
                    Err(e) => Step::from_error(e),
                }
            }
            BuildStep::Upload => {
                let ext = serde_json::json!({"extEnable": true, "ext": {"commodityOrderId": b.commodity_order_id, "miniAppId": b.mini_app_id}});
                let request = VersionUploadRequest {
                    app_version: b.app_version.clone(),
                    template_id: b.template_id.clone(),
                    template_version: b.template_version.clone(),
                    ext: Some(ext.to_string()),
                    ..VersionUploadRequest::default()
                };
                let answer = alipay.mini_version_upload(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_VERSION_UPLOAD,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    Ok(_) => Step::Next(BuildStep::BuildQuery, now),
                    Err(e) if already_done(&e) => Step::Next(BuildStep::BuildQuery, now),
                    Err(e) => Step::from_error(e),
                }
            }
            BuildStep::BuildQuery => {
                let request = BuildQueryRequest {
                    app_version: b.app_version.clone(),
                    ..BuildQueryRequest::default()
                };
                let answer = alipay.mini_version_build_query(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_BUILD_QUERY,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    Ok(r) => match r.build_status {
                        Some(BuildStatus::Success) => Step::Next(BuildStep::AuditApply, now),
                        Some(ref status) if status.is_failure() => {
                            Step::Fail(format!("build {}", status.as_str()))
                        }
                        _ => Step::Poll(now + Duration::seconds(self.pipeline.poll_seconds.max(1))),
                    },
                    Err(e) => Step::from_error(e),
                }
            }
            BuildStep::AuditApply => {
                let request = AuditApplyRequest {
                    app_version: b.app_version.clone(),
                    version_desc: Some(format!(
                        "Version {} built from our industry template for the merchant's order.",
                        b.app_version
                    )),
                    auto_online: Some(self.pipeline.auto_online),
                    ..AuditApplyRequest::default()
                };
                let answer = alipay.mini_version_audit_apply(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_AUDIT_APPLY,
                    answer.as_ref().err(),
                )
                .await;
                // The audit's result arrives as a gateway message (`audit_result`); when none has
                // come by then, `version.detail.query` is asked (the `AwaitAudit` step).
                let ask_at = now + self.pipeline.audit_wait();
                match answer {
                    Ok(_) => Step::Next(BuildStep::AwaitAudit, ask_at),
                    Err(e) if already_done(&e) => Step::Next(BuildStep::AwaitAudit, ask_at),
                    Err(e) => Step::from_error(e),
                }
            }
            BuildStep::AwaitAudit => {
                let request = VersionDetailRequest {
                    app_version: b.app_version.clone(),
                    ..VersionDetailRequest::default()
                };
                let answer = alipay.mini_version_detail_query(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_VERSION_DETAIL,
                    answer.as_ref().err(),
                )
                .await;
                let again = now + self.pipeline.audit_wait();
                match answer {
                    Ok(detail) => Step::Audit(detail.status, detail.reject_reason, again),
                    Err(e) if e.is_invalid_app_auth_token() => Step::TokenRefused(e.to_string()),
                    // The audit message may still come: a failed ask never ends the build. The
                    // error stays on the row for support, and the ask is repeated.
                    Err(e) => {
                        tracing::warn!(mini_app_id = %b.mini_app_id, version = %b.app_version, error = %e, "version.detail.query failed; asked again later");
                        let at = if e.is_retryable() {
                            now + self.pipeline.retry().wait(b.attempts)
                        } else {
                            again
                        };
                        Step::Wait(at, Some(e.to_string()))
                    }
                }
            }
            BuildStep::Online => {
                let request = VersionOnlineRequest {
                    app_version: b.app_version.clone(),
                    ..VersionOnlineRequest::default()
                };
                let answer = alipay.mini_version_online(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_VERSION_ONLINE,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    Ok(_) => Step::Next(BuildStep::Done, now),
                    Err(e) => Step::from_error(e),
                }
            }
            // Claimed rows are in one of the steps above (`claim_due`); the others are final,
            // and a row that is there now was moved after the claim.
            BuildStep::Done | BuildStep::Rejected | BuildStep::Failed | BuildStep::Cancelled => {
                return Ok(());
            }
        };
        self.finish_step(b, outcome, now).await
    }

    async fn finish_step(
        &self,
        b: &BuildRow,
        step: Step,
        now: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        // A step that keeps failing is given up like a permanent failure: support sees it and
        // retries it with the admin API.
        let step = match step {
            Step::Retry(error) => match self.pipeline.retry().after_failure(b.attempts) {
                AfterFailure::GiveUp { attempts } => {
                    Step::Fail(format!("gave up after {attempts} attempts: {error}"))
                }
                AfterFailure::Retry { .. } => Step::Retry(error),
            },
            other => other,
        };
        let (s, b) = (self.clone(), b.clone());
        let alert = self
            .db_write(move |conn| -> Result<Option<Alert>, PipelineError> {
                let db_now = to_db_time(now);
                match step {
                    Step::Next(to, at) => {
                        if builds::advance(conn, b.id, b.step, to, to_db_time(at), None, db_now)? {
                            if to == BuildStep::Done {
                                // Our version is online: the merchant's service is live.
                                s.service_went_live(conn, &b.mini_app_id, now)?;
                            }
                            note(
                                conn,
                                &b.commodity_order_id,
                                &format!("build_{}", b.step),
                                format!("version {} → {to}", b.app_version),
                                now,
                            )?;
                        }
                        Ok(None)
                    }
                    Step::Poll(at) => {
                        builds::retry(conn, b.id, b.step, b.attempts, to_db_time(at), None, db_now)?;
                        Ok(None)
                    }
                    Step::Wait(at, error) => {
                        builds::retry(
                            conn,
                            b.id,
                            b.step,
                            b.attempts + i32::from(error.is_some()),
                            to_db_time(at),
                            error.as_deref(),
                            db_now,
                        )?;
                        Ok(None)
                    }
                    Step::Retry(error) => {
                        // Not given up (settled above): again after the one retry policy's wait.
                        let at = to_db_time(now + s.pipeline.retry().wait(b.attempts));
                        builds::retry(conn, b.id, b.step, b.attempts + 1, at, Some(&error), db_now)?;
                        Ok(None)
                    }
                    Step::Versions(list) => s.version_decided(conn, &b, &list, now),
                    Step::Audit(status, reason, again) => {
                        s.audit_polled(conn, &b, status, reason, again, now)
                    }
                    Step::TokenRefused(error) => {
                        if !builds::advance(
                            conn,
                            b.id,
                            b.step,
                            BuildStep::Failed,
                            db_now,
                            Some(&error),
                            db_now,
                        )? {
                            return Ok(None);
                        }
                        // Retrying cannot help until the merchant authorizes again.
                        crate::store::merchant_orders::flag_authorization(
                            conn,
                            &b.mini_app_id,
                            &error,
                            db_now,
                        )?;
                        note(
                            conn,
                            &b.commodity_order_id,
                            "build_failed",
                            format!("version {}: {error}; authorization flagged", b.app_version),
                            now,
                        )?;
                        Ok(Some(Alert {
                            kind: "app_auth_token_refused".into(),
                            subject: b.mini_app_id.clone(),
                            message: format!(
                                "Alipay refused the merchant's app_auth_token building version {} of mini program {} ({error}); \
                                 authorization flagged, build stopped: retry with the admin API once the merchant authorizes again",
                                b.app_version, b.mini_app_id
                            ),
                        }))
                    }
                    Step::Fail(error) => {
                        // Guarded: a build stopped meanwhile (its service ended) stays cancelled.
                        if !builds::advance(
                            conn,
                            b.id,
                            b.step,
                            BuildStep::Failed,
                            db_now,
                            Some(&error),
                            db_now,
                        )? {
                            return Ok(None);
                        }
                        note(
                            conn,
                            &b.commodity_order_id,
                            "build_failed",
                            format!("version {}: {error}", b.app_version),
                            now,
                        )?;
                        Ok(Some(Alert {
                            kind: "build_failed".into(),
                            subject: b.commodity_order_id.clone(),
                            message: format!(
                                "mini program {} version {}: {error}; retry with the admin API",
                                b.mini_app_id, b.app_version
                            ),
                        }))
                    }
                }
            })
            .await?;
        if let Some(alert) = alert {
            self.alerts.raise(alert).await;
        }
        Ok(())
    }

    /// The audit's result, from `alipay.open.mini.version.audit.passed` / `.rejected`, inside the
    /// apply transaction. Returns an alert to raise for a rejection.
    pub fn audit_result(
        &self,
        conn: &mut AnyConnection,
        mini_app_id: &str,
        app_version: Option<&str>,
        rejection: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Alert>, LifecycleError> {
        let build = match app_version {
            Some(v) => builds::find_version(conn, mini_app_id, v)?,
            None => builds::latest(conn, mini_app_id)?,
        };
        let Some(build) = build.filter(|b| b.step == BuildStep::AwaitAudit) else {
            return Ok(None);
        };
        let db_now = to_db_time(now);
        match rejection {
            None => {
                let next = if self.pipeline.auto_online {
                    BuildStep::Done
                } else {
                    BuildStep::Online
                };
                if builds::advance(
                    conn,
                    build.id,
                    BuildStep::AwaitAudit,
                    next,
                    db_now,
                    None,
                    db_now,
                )? {
                    note(
                        conn,
                        &build.commodity_order_id,
                        "build_audit_passed",
                        format!("version {}", build.app_version),
                        now,
                    )?;
                    if next == BuildStep::Done {
                        // Auto-online: Alipay put the approved version online itself.
                        self.service_went_live(conn, mini_app_id, now)?;
                    }
                }
                Ok(None)
            }
            Some(reason) => {
                builds::advance(
                    conn,
                    build.id,
                    BuildStep::AwaitAudit,
                    BuildStep::Rejected,
                    db_now,
                    Some(reason),
                    db_now,
                )?;
                note(
                    conn,
                    &build.commodity_order_id,
                    "build_audit_rejected",
                    format!("version {}: {reason}", build.app_version),
                    now,
                )?;
                Ok(Some(Alert {
                    kind: "audit_rejected".into(),
                    subject: build.commodity_order_id.clone(),
                    message: format!(
                        "mini program {mini_app_id} version {} was rejected: {reason}; fix and retry with the admin API",
                        build.app_version
                    ),
                }))
            }
        }
    }

    /// Support's retry after a rejected or failed build: a new build at the next version.
    /// Returns the order the build is for.
    pub async fn retry_build(
        &self,
        mini_app_id: &crate::domain::MiniAppId,
    ) -> Result<crate::domain::OrderId, PipelineError> {
        let now = self.clock.now();
        let mini_app_id = mini_app_id.as_str().to_string();
        self.db_write(move |conn| {
            let last = builds::latest(conn, &mini_app_id)?
                .ok_or_else(|| PipelineError::NotFound(mini_app_id.clone()))?;
            if last.step != BuildStep::Rejected && last.step != BuildStep::Failed {
                return Err(PipelineError::Refused(format!(
                    "version {} is {}, not rejected or failed",
                    last.app_version, last.step
                )));
            }
            // No new build starts for a service that ended (a re-order reopens it first).
            if let Some(service) = orders::find_service(conn, &mini_app_id)?
                && service.status.has_ended()
            {
                return Err(PipelineError::Refused(format!(
                    "the service of {mini_app_id} is {}",
                    service.status.as_str()
                )));
            }
            let version = last.template_version.as_deref();
            let planned = planned_version(conn, &mini_app_id)?;
            if !builds::start(
                conn,
                &mini_app_id,
                &last.commodity_order_id,
                (&last.template_id, version),
                &planned,
                to_db_time(now),
            )? {
                return Err(PipelineError::Refused(
                    "another build started at the same time".into(),
                ));
            }
            note(
                conn,
                &last.commodity_order_id,
                "build_retried",
                format!("after version {}", last.app_version),
                now,
            )?;
            Ok(crate::domain::OrderId::from(last.commodity_order_id))
        })
        .await
    }
}

enum Step {
    Next(BuildStep, DateTime<Utc>),
    Poll(DateTime<Utc>),
    /// The same step again at this time, with what went wrong (kept on the row) if anything.
    Wait(DateTime<Utc>, Option<String>),
    Retry(String),
    Fail(String),
    /// Alipay's versions of the mini program: the build's version follows them.
    Versions(VersionListResponse),
    /// What `version.detail.query` said of a version waiting for its audit; asked again at the
    /// time given while it is still auditing (or says something we do not know).
    Audit(Option<VersionStatus>, Option<String>, DateTime<Utc>),
    /// Alipay refused the merchant's token (`20001`): the build fails, the authorization is
    /// flagged.
    TokenRefused(String),
}

/// The version a new build of the mini program plans until Alipay's list is read: the next one
/// after our own builds, `0.0.1` for the first.
fn planned_version(conn: &mut AnyConnection, mini_app_id: &str) -> Result<String, PipelineError> {
    Ok(highest_of_ours(conn, mini_app_id, None)?
        .map(|v| v.next())
        .unwrap_or_else(AppVersion::first)
        .to_string())
}

/// The highest version of our builds of the mini program (but `except`). A version of ours that
/// does not read is corrupt data, never skipped.
fn highest_of_ours(
    conn: &mut AnyConnection,
    mini_app_id: &str,
    except: Option<i64>,
) -> Result<Option<AppVersion>, PipelineError> {
    let mut highest: Option<AppVersion> = None;
    for (id, text) in builds::versions(conn, mini_app_id)? {
        if Some(id) == except {
            continue;
        }
        let v = AppVersion::parse(&text).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "template_builds.app_version: {text:?} of {mini_app_id} is not a version"
            ))
        })?;
        if highest.as_ref().is_none_or(|h| v > *h) {
            highest = Some(v);
        }
    }
    Ok(highest)
}

impl Services {
    /// The build's version from Alipay's list (`version_list` → `upload`): past the highest
    /// version Alipay holds and past every build of ours; `0.0.1` when both are empty. List
    /// entries that do not read as versions are shown to support, never guessed at.
    fn version_decided(
        &self,
        conn: &mut AnyConnection,
        b: &BuildRow,
        list: &VersionListResponse,
        now: DateTime<Utc>,
    ) -> Result<Option<Alert>, PipelineError> {
        let (alipay_highest, unread) = list.highest();
        let ours = highest_of_ours(conn, &b.mini_app_id, Some(b.id))?;
        let version = [alipay_highest, ours]
            .into_iter()
            .flatten()
            .map(|v| v.next())
            .chain(std::iter::once(AppVersion::first()))
            .max()
            .unwrap_or_else(AppVersion::first)
            .to_string();
        if !builds::set_version(conn, b.id, &version, to_db_time(now))? {
            return Ok(None);
        }
        note(
            conn,
            &b.commodity_order_id,
            "build_version_list",
            format!(
                "version {version} (Alipay holds {})",
                if list.app_versions.is_empty() {
                    "none".to_string()
                } else {
                    list.app_versions.join(", ")
                }
            ),
            now,
        )?;
        if unread.is_empty() {
            return Ok(None);
        }
        tracing::warn!(mini_app_id = %b.mini_app_id, unread = ?unread, "version.list.query returned texts that are not versions");
        Ok(Some(Alert {
            kind: "unknown_alipay_version".into(),
            subject: b.mini_app_id.clone(),
            message: format!(
                "version.list.query of mini program {} returned {unread:?}, not versions; built {version} past the others",
                b.mini_app_id
            ),
        }))
    }

    /// `version.detail.query`'s answer for a build waiting for its audit message: passed
    /// (`WAIT_RELEASE`, `RELEASE`, `GRAY`) goes on as the audit-passed message would, and the
    /// orders ask Alipay; `AUDIT_REJECT` is rejected with `reject_reason` as the rejected message
    /// would be; `AUDITING` waits. Anything else is kept verbatim, logged, shown to support, and
    /// waited on.
    fn audit_polled(
        &self,
        conn: &mut AnyConnection,
        b: &BuildRow,
        status: Option<VersionStatus>,
        reason: Option<String>,
        again: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Alert>, PipelineError> {
        let db_now = to_db_time(now);
        // The audit message may have moved the build while Alipay was asked: it decided.
        let current = builds::find_version(conn, &b.mini_app_id, &b.app_version)?;
        if current.is_none_or(|c| c.id != b.id || c.step != BuildStep::AwaitAudit) {
            return Ok(None);
        }
        let text = status.as_ref().map_or("(none)", |s| s.as_str()).to_string();
        builds::set_alipay_status(conn, b.id, &text, db_now)?;
        let wait = |conn: &mut AnyConnection, error: Option<&str>| {
            builds::retry(conn, b.id, b.step, 0, to_db_time(again), error, db_now)
        };
        match status {
            Some(VersionStatus::Auditing) => {
                wait(conn, None)?;
                Ok(None)
            }
            Some(
                passed
                @ (VersionStatus::WaitRelease | VersionStatus::Release | VersionStatus::Gray),
            ) => {
                self.audit_result(conn, &b.mini_app_id, Some(&b.app_version), None, now)?;
                if passed == VersionStatus::Release {
                    // Already online: no `version.online` to call.
                    if builds::advance(
                        conn,
                        b.id,
                        BuildStep::Online,
                        BuildStep::Done,
                        db_now,
                        None,
                        db_now,
                    )? {
                        self.service_went_live(conn, &b.mini_app_id, now)?;
                    }
                }
                note(
                    conn,
                    &b.commodity_order_id,
                    "build_audit_polled",
                    format!(
                        "version {}: version.detail.query says {text}",
                        b.app_version
                    ),
                    now,
                )?;
                for id in crate::store::orders::ids_for_mini_app(conn, &b.mini_app_id)? {
                    self.order_event(
                        conn,
                        &id,
                        crate::domain::lifecycle::OrderEvent::AuditPassed { at: now },
                        now,
                    )?;
                }
                Ok(None)
            }
            Some(VersionStatus::AuditReject) => {
                let reason = reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "rejected (version.detail.query gave no reason)".into());
                Ok(self.audit_result(
                    conn,
                    &b.mini_app_id,
                    Some(&b.app_version),
                    Some(&reason),
                    now,
                )?)
            }
            Some(
                VersionStatus::Init
                | VersionStatus::BaseAuditPass
                | VersionStatus::Offline
                | VersionStatus::AuditOffline
                | VersionStatus::Other(_),
            )
            | None => {
                let problem =
                    format!("version.detail.query says {text}, outside our table; still waiting");
                tracing::warn!(mini_app_id = %b.mini_app_id, version = %b.app_version, status = %text, "unknown audit status; still waiting");
                // Once per new value: the ask repeats every audit_poll_seconds.
                let known = b.alipay_status.as_deref() == Some(text.as_str());
                wait(conn, Some(&problem))?;
                if known {
                    return Ok(None);
                }
                note(
                    conn,
                    &b.commodity_order_id,
                    "build_audit_unknown",
                    format!("version {}: {problem}", b.app_version),
                    now,
                )?;
                Ok(Some(Alert {
                    kind: "unknown_alipay_status".into(),
                    subject: b.mini_app_id.clone(),
                    message: format!(
                        "mini program {} version {}: {problem}",
                        b.mini_app_id, b.app_version
                    ),
                }))
            }
        }
    }
}

impl Step {
    /// Every step is idempotent (the version is fixed; Alipay answers an upload or audit of a
    /// version it already has with an error we read as done), so whatever may be transient —
    /// transport errors, 5xx, `20000`, rate limiting (`40005`), an answer whose signature does
    /// not verify — is retried; a business refusal fails the build for support.
    fn from_error(e: AlipayError) -> Step {
        if e.is_invalid_app_auth_token() {
            return Step::TokenRefused(e.to_string());
        }
        let transient =
            e.is_retryable() || e.code() == Some("40005") || matches!(e, AlipayError::Response(_));
        if transient {
            Step::Retry(e.to_string())
        } else {
            Step::Fail(e.to_string())
        }
    }
}
