//! Alipay calls, measured: latency per method and results by `code`/`sub_code`, for `/metrics`.
//! A decorator around the client, so the protocol module stays free of metrics.

use crate::alipay::api;
use crate::alipay::client::{AlipayApi, AlipayError};
use crate::metrics::Metrics;
use futures_util::future::BoxFuture;
use secrecy::SecretString;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// A call's result as support and the metrics name it: `10000`, Alipay's `sub_code` (else its
/// `code`), or the kind of failure (`transport`, `http_502`, `bad_response`, `decode`).
pub fn result_code(error: Option<&AlipayError>) -> String {
    match error {
        None => "10000".to_string(),
        Some(AlipayError::Api { code, sub_code, .. }) => {
            sub_code.clone().unwrap_or_else(|| code.clone())
        }
        Some(AlipayError::Transport(_)) => "transport".into(),
        Some(AlipayError::Http { status }) => format!("http_{status}"),
        Some(AlipayError::Response(_)) => "bad_response".into(),
        Some(AlipayError::Decode(_)) => "decode".into(),
    }
}

pub struct MeteredAlipay {
    inner: Arc<dyn AlipayApi>,
    metrics: Arc<Metrics>,
}

impl MeteredAlipay {
    pub fn new(inner: Arc<dyn AlipayApi>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn measure<T>(
        &self,
        method: &'static str,
        call: BoxFuture<'_, Result<T, AlipayError>>,
    ) -> Result<T, AlipayError> {
        let started = Instant::now();
        let result = call.await;
        let outcome = result_code(result.as_ref().err());
        self.metrics
            .alipay_call(method, started.elapsed(), &outcome);
        result
    }
}

impl AlipayApi for MeteredAlipay {
    fn alipay_cert_download<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Result<(), AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_CERT_DOWNLOAD,
            self.inner.alipay_cert_download(sn),
        ))
    }

    fn servicemarket_order_query<'a>(
        &'a self,
        req: &'a api::OrderQueryRequest,
    ) -> BoxFuture<'a, Result<api::OrderQueryResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_ORDER_QUERY,
            self.inner.servicemarket_order_query(req),
        ))
    }

    fn auth_token_app<'a>(
        &'a self,
        req: &'a api::TokenAppRequest,
    ) -> BoxFuture<'a, Result<api::TokenAppResponse, AlipayError>> {
        Box::pin(self.measure(api::METHOD_TOKEN_APP, self.inner.auth_token_app(req)))
    }

    fn mini_version_upload<'a>(
        &'a self,
        token: &'a SecretString,
        req: &'a api::VersionUploadRequest,
    ) -> BoxFuture<'a, Result<api::VersionUploadResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_VERSION_UPLOAD,
            self.inner.mini_version_upload(token, req),
        ))
    }

    fn mini_version_build_query<'a>(
        &'a self,
        token: &'a SecretString,
        req: &'a api::BuildQueryRequest,
    ) -> BoxFuture<'a, Result<api::BuildQueryResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_BUILD_QUERY,
            self.inner.mini_version_build_query(token, req),
        ))
    }

    fn mini_version_audit_apply<'a>(
        &'a self,
        token: &'a SecretString,
        req: &'a api::AuditApplyRequest,
    ) -> BoxFuture<'a, Result<api::AuditApplyResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_AUDIT_APPLY,
            self.inner.mini_version_audit_apply(token, req),
        ))
    }

    fn mini_version_online<'a>(
        &'a self,
        token: &'a SecretString,
        req: &'a api::VersionOnlineRequest,
    ) -> BoxFuture<'a, Result<api::VersionOnlineResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_VERSION_ONLINE,
            self.inner.mini_version_online(token, req),
        ))
    }

    fn mini_version_list_query<'a>(
        &'a self,
        token: &'a SecretString,
        req: &'a api::VersionListRequest,
    ) -> BoxFuture<'a, Result<api::VersionListResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_VERSION_LIST,
            self.inner.mini_version_list_query(token, req),
        ))
    }

    fn mini_version_detail_query<'a>(
        &'a self,
        token: &'a SecretString,
        req: &'a api::VersionDetailRequest,
    ) -> BoxFuture<'a, Result<api::VersionDetailResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_VERSION_DETAIL,
            self.inner.mini_version_detail_query(token, req),
        ))
    }

    fn auth_token_app_query<'a>(
        &'a self,
        req: &'a api::TokenQueryRequest,
    ) -> BoxFuture<'a, Result<api::TokenQueryResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_TOKEN_QUERY,
            self.inner.auth_token_app_query(req),
        ))
    }

    fn merchant_order_sync<'a>(
        &'a self,
        token: &'a SecretString,
        biz: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<api::MerchantOrderSyncResponse, AlipayError>> {
        Box::pin(self.measure(
            api::METHOD_MERCHANT_ORDER_SYNC,
            self.inner.merchant_order_sync(token, biz),
        ))
    }
}

impl super::Services {
    /// `/metrics`: the counters, the Alipay call histogram, and backlog gauges counted now
    /// (without a database the gauges are left out, the counters still answer).
    pub async fn metrics_text(&self) -> String {
        self.off_executor(move |s| {
            let mut body = s.metrics.render();
            let statements = s.pool.statements();
            body.push_str(&Metrics::render_counters(&[
                (
                    "isv_db_statements_total",
                    "Statements sent to the database, transaction control included.",
                    statements.sent.load(Relaxed) as f64,
                ),
                (
                    "isv_db_statements_prepared_total",
                    "Statements prepared and cached by a connection.",
                    statements.prepared.load(Relaxed) as f64,
                ),
            ]));
            let now = crate::store::to_db_time(s.clock.now());
            let backlog = s
                .pool
                .get()
                .ok()
                .and_then(|mut conn| crate::store::gauges::backlog(&mut conn, now).ok());
            if let Some(b) = backlog {
                let lag = b
                    .inbox_oldest
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                body.push_str(&Metrics::render_gauges(&[
                    (
                        "isv_inbox_pending",
                        "Gateway messages stored and not applied yet.",
                        b.inbox_pending as f64,
                    ),
                    (
                        "isv_inbox_apply_lag_seconds",
                        "Age of the oldest message waiting to be applied.",
                        lag,
                    ),
                    (
                        "isv_deadlines_due",
                        "Deadline, warning and query rows due and not fired.",
                        b.deadlines_due as f64,
                    ),
                    (
                        "isv_outbox_merchant_syncs",
                        "Merchant-order syncs waiting for delivery.",
                        b.outbox_merchant_syncs as f64,
                    ),
                    (
                        "isv_outbox_builds",
                        "Template builds between upload and online.",
                        b.outbox_builds as f64,
                    ),
                ]));
            }
            body
        })
        .await
    }
}

impl super::Services {
    /// Keeps one outbound call about an order for support's timeline. Best effort: a failure to
    /// record is logged, never allowed to fail the work that made the call.
    pub async fn record_call(
        &self,
        order_id: &str,
        method: &'static str,
        error: Option<&AlipayError>,
    ) {
        let (id, result) = (order_id.to_string(), result_code(error));
        let at = crate::store::to_db_time(self.clock.now());
        let recorded = self
            .db_write(move |conn| {
                crate::store::dashboard::record_call(conn, &id, method, &result, at)
                    .map_err(crate::store::StoreError::from)
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(order = %order_id, method, %error, "an Alipay call could not be recorded");
        }
    }
}
