//! The template build pipeline (LIFECYCLE.md "Implementation pipeline"): once an order is
//! implementing and its mini program's authorization is active, build the merchant's version from
//! our template — `version.upload`, poll `build.query`, `audit.apply`, wait for the audit message,
//! `version.online` unless auto-online — as outbox rows moved one guarded step at a time, with the
//! merchant's own token. Each step is idempotent under retries and noted in the order's history;
//! the order itself moves on when `order.query` agrees (the audit message queues that query). A
//! rejected audit alerts support and waits for a retry (`retry_build`).

use super::alerts::Alert;
use super::apply::token_context;
use super::{Services, blocking};
use crate::alipay::api::{
    AuditApplyRequest, BuildQueryRequest, BuildStatus, VersionOnlineRequest, VersionUploadRequest,
};
use crate::alipay::client::AlipayError;
use crate::store::builds::{self, BuildRow};
use crate::store::{AnyConnection, authorizations, orders, to_db_time};
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use std::collections::HashMap;

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
}

impl PipelineSettings {
    fn template(&self, item_code: Option<&str>) -> Option<&TemplateRef> {
        item_code
            .and_then(|c| self.items.get(c))
            .or(self.default.as_ref())
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelinePass {
    pub started: usize,
    pub steps: usize,
}

const LEASE_SECONDS: i64 = 300;

fn backoff(attempts: i32) -> Duration {
    let secs = (1i64 << attempts.clamp(0, 10)).min(900);
    Duration::seconds(secs + (rand::random::<u64>() % (secs as u64 / 2 + 1)) as i64)
}

/// A note in the order's history: the pipeline's steps are visible to support.
fn note(
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
            from_status: Some(order.status.clone()),
            to_status: order.status,
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
    pub async fn run_pipeline(&self, limit: i64) -> Result<PipelinePass, String> {
        let now = self.clock.now();
        let s = self.clone();
        let started = blocking(move || -> Result<usize, String> {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let _writer = s.pool.write_guard();
            let mut started = 0;
            for (order_id, mini_app_id, item_code) in
                builds::orders_needing_a_build(&mut conn, limit).map_err(|e| e.to_string())?
            {
                let Some(template) = s.pipeline.template(item_code.as_deref()).cloned() else {
                    continue;
                };
                let version = (!template.template_version.is_empty())
                    .then_some(template.template_version.as_str());
                if builds::start(
                    &mut conn,
                    &mini_app_id,
                    &order_id,
                    (&template.template_id, version),
                    to_db_time(now),
                )
                .map_err(|e| e.to_string())?
                {
                    note(
                        &mut conn,
                        &order_id,
                        "build_started",
                        format!("template {}", template.template_id),
                        now,
                    )
                    .map_err(|e| e.to_string())?;
                    started += 1;
                }
            }
            Ok(started)
        })
        .await
        .map_err(|e| e.to_string())??;
        let s = self.clone();
        let claimed = blocking(move || {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let _writer = s.pool.write_guard();
            builds::claim_due(
                &mut conn,
                to_db_time(now),
                to_db_time(now + Duration::seconds(LEASE_SECONDS)),
                limit,
            )
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let steps = claimed.len();
        for build in claimed {
            if let Err(error) = self.run_step(&build, now).await {
                tracing::warn!(mini_app_id = %build.mini_app_id, version = %build.app_version, step = %build.step, %error, "build step failed");
            }
        }
        Ok(PipelinePass { started, steps })
    }

    fn merchant_token(
        &self,
        conn: &mut AnyConnection,
        mini_app_id: &str,
    ) -> Result<Option<SecretString>, String> {
        match authorizations::find(conn, mini_app_id).map_err(|e| e.to_string())? {
            Some(a) if a.status == "active" => {}
            _ => return Ok(None),
        }
        let Some(sealed) =
            authorizations::sealed_token(conn, mini_app_id).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let plain = self
            .sealer
            .open(&token_context("app_auth_token", mini_app_id), &sealed)
            .map_err(|e| e.to_string())?;
        String::from_utf8(plain)
            .map(|t| Some(SecretString::from(t)))
            .map_err(|_| "stored token is not UTF-8".to_string())
    }

    async fn run_step(&self, b: &BuildRow, now: DateTime<Utc>) -> Result<(), String> {
        let (s, app) = (self.clone(), b.mini_app_id.clone());
        let token = blocking(move || {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            s.merchant_token(&mut conn, &app)
        })
        .await
        .map_err(|e| e.to_string())??;
        let Some(token) = token else {
            return self
                .finish_step(
                    b,
                    Step::Fail("no active authorization for the mini program".into()),
                    now,
                )
                .await;
        };
        let outcome = match b.step.as_str() {
            builds::UPLOAD => {
                let ext = serde_json::json!({"extEnable": true, "ext": {"commodityOrderId": b.commodity_order_id, "miniAppId": b.mini_app_id}});
                let request = VersionUploadRequest {
                    app_version: b.app_version.clone(),
                    template_id: b.template_id.clone(),
                    template_version: b.template_version.clone(),
                    ext: Some(ext.to_string()),
                    ..VersionUploadRequest::default()
                };
                let answer = self.alipay.mini_version_upload(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_VERSION_UPLOAD,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    Ok(_) => Step::Next(builds::BUILD_QUERY, now),
                    Err(e) if already_done(&e) => Step::Next(builds::BUILD_QUERY, now),
                    Err(e) => Step::from_error(e),
                }
            }
            builds::BUILD_QUERY => {
                let request = BuildQueryRequest {
                    app_version: b.app_version.clone(),
                    ..BuildQueryRequest::default()
                };
                let answer = self.alipay.mini_version_build_query(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_BUILD_QUERY,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    Ok(r) => match r.build_status {
                        Some(BuildStatus::Success) => Step::Next(builds::AUDIT_APPLY, now),
                        Some(ref status) if status.is_failure() => {
                            Step::Fail(format!("build {}", status.as_str()))
                        }
                        _ => Step::Poll(now + Duration::seconds(self.pipeline.poll_seconds.max(1))),
                    },
                    Err(e) => Step::from_error(e),
                }
            }
            builds::AUDIT_APPLY => {
                let request = AuditApplyRequest {
                    app_version: b.app_version.clone(),
                    version_desc: Some(format!(
                        "Version {} built from our industry template for the merchant's order.",
                        b.app_version
                    )),
                    auto_online: Some(self.pipeline.auto_online),
                    ..AuditApplyRequest::default()
                };
                let answer = self.alipay.mini_version_audit_apply(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_AUDIT_APPLY,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    // The audit's result arrives as a gateway message (`audit_result`).
                    Ok(_) => Step::Next(builds::AWAIT_AUDIT, now + Duration::days(365)),
                    Err(e) if already_done(&e) => {
                        Step::Next(builds::AWAIT_AUDIT, now + Duration::days(365))
                    }
                    Err(e) => Step::from_error(e),
                }
            }
            builds::ONLINE => {
                let request = VersionOnlineRequest {
                    app_version: b.app_version.clone(),
                    ..VersionOnlineRequest::default()
                };
                let answer = self.alipay.mini_version_online(&token, &request).await;
                self.record_call(
                    &b.commodity_order_id,
                    crate::alipay::api::METHOD_VERSION_ONLINE,
                    answer.as_ref().err(),
                )
                .await;
                match answer {
                    Ok(_) => Step::Next(builds::DONE, now),
                    Err(e) => Step::from_error(e),
                }
            }
            other => Step::Fail(format!("unexpected step {other}")),
        };
        self.finish_step(b, outcome, now).await
    }

    async fn finish_step(
        &self,
        b: &BuildRow,
        step: Step,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let (s, b) = (self.clone(), b.clone());
        let alert = blocking(move || -> Result<Option<Alert>, String> {
            let mut conn = s.pool.get().map_err(|e| e.to_string())?;
            let _writer = s.pool.write_guard();
            let e = |e: diesel::result::Error| e.to_string();
            let db_now = to_db_time(now);
            match step {
                Step::Next(to, at) => {
                    if builds::advance(&mut conn, b.id, &b.step, to, to_db_time(at), None, db_now)
                        .map_err(e)?
                    {
                        if to == builds::DONE {
                            // Our version is online: the merchant's service is live.
                            s.service_went_live(&mut conn, &b.mini_app_id, now)
                                .map_err(|e| e.to_string())?;
                        }
                        note(
                            &mut conn,
                            &b.commodity_order_id,
                            &format!("build_{}", b.step),
                            format!("version {} → {to}", b.app_version),
                            now,
                        )
                        .map_err(e)?;
                    }
                    Ok(None)
                }
                Step::Poll(at) => {
                    builds::retry(&mut conn, b.id, b.attempts, to_db_time(at), None, db_now)
                        .map(|_| None)
                        .map_err(e)
                }
                Step::Retry(error) => {
                    let at = to_db_time(now + backoff(b.attempts));
                    builds::retry(&mut conn, b.id, b.attempts + 1, at, Some(&error), db_now)
                        .map(|_| None)
                        .map_err(e)
                }
                Step::Fail(error) => {
                    builds::advance(
                        &mut conn,
                        b.id,
                        &b.step,
                        builds::FAILED,
                        db_now,
                        Some(&error),
                        db_now,
                    )
                    .map_err(e)?;
                    note(
                        &mut conn,
                        &b.commodity_order_id,
                        "build_failed",
                        format!("version {}: {error}", b.app_version),
                        now,
                    )
                    .map_err(e)?;
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
        .await
        .map_err(|e| e.to_string())??;
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
    ) -> diesel::QueryResult<Option<Alert>> {
        let build = match app_version {
            Some(v) => builds::find_version(conn, mini_app_id, v)?,
            None => builds::latest(conn, mini_app_id)?,
        };
        let Some(build) = build.filter(|b| b.step == builds::AWAIT_AUDIT) else {
            return Ok(None);
        };
        let db_now = to_db_time(now);
        match rejection {
            None => {
                let next = if self.pipeline.auto_online {
                    builds::DONE
                } else {
                    builds::ONLINE
                };
                if builds::advance(
                    conn,
                    build.id,
                    builds::AWAIT_AUDIT,
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
                    if next == builds::DONE {
                        // Auto-online: Alipay put the approved version online itself.
                        self.service_went_live(conn, mini_app_id, now)
                            .map_err(|e| {
                                diesel::result::Error::QueryBuilderError(e.to_string().into())
                            })?;
                    }
                }
                Ok(None)
            }
            Some(reason) => {
                builds::advance(
                    conn,
                    build.id,
                    builds::AWAIT_AUDIT,
                    builds::REJECTED,
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
    pub fn retry_build(&self, mini_app_id: &str) -> Result<String, String> {
        let now = self.clock.now();
        let mut conn = self.pool.get().map_err(|e| e.to_string())?;
        let _writer = self.pool.write_guard();
        let last = builds::latest(&mut conn, mini_app_id)
            .map_err(|e| e.to_string())?
            .ok_or("no build for this mini program")?;
        if last.step != builds::REJECTED && last.step != builds::FAILED {
            return Err(format!(
                "version {} is {}, not rejected or failed",
                last.app_version, last.step
            ));
        }
        let version = last.template_version.as_deref();
        if !builds::start(
            &mut conn,
            mini_app_id,
            &last.commodity_order_id,
            (&last.template_id, version),
            to_db_time(now),
        )
        .map_err(|e| e.to_string())?
        {
            return Err("another build started at the same time".into());
        }
        note(
            &mut conn,
            &last.commodity_order_id,
            "build_retried",
            format!("after version {}", last.app_version),
            now,
        )
        .map_err(|e| e.to_string())?;
        Ok(last.commodity_order_id)
    }
}

enum Step {
    Next(&'static str, DateTime<Utc>),
    Poll(DateTime<Utc>),
    Retry(String),
    Fail(String),
}

impl Step {
    /// Every step is idempotent (the version is fixed; Alipay answers an upload or audit of a
    /// version it already has with an error we read as done), so whatever may be transient —
    /// transport errors, 5xx, `20000`, rate limiting (`40005`), an answer whose signature does
    /// not verify — is retried; a business refusal fails the build for support.
    fn from_error(e: AlipayError) -> Step {
        let transient =
            e.is_retryable() || e.code() == Some("40005") || matches!(e, AlipayError::Response(_));
        if transient {
            Step::Retry(e.to_string())
        } else {
            Step::Fail(e.to_string())
        }
    }
}
