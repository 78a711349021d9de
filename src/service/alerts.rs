//! Alerts for support: always a log line (target `alert`), and a small JSON POST to
//! `alerts.webhook_url` when one is set. Best effort: an unreachable webhook is logged, never
//! retried in a loop, and never blocks the work that raised the alert.

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    /// e.g. `implementation_deadline_warning`, `app_auth_token_refused`.
    pub kind: String,
    /// What it is about: an order id, a mini program app id...
    pub subject: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AlerterError {
    #[error("{0:?} is not a URL: {1}")]
    NotAUrl(String, String),
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

#[derive(Clone)]
pub struct Alerter {
    webhook: Option<reqwest::Url>,
    http: reqwest::Client,
}

impl Alerter {
    pub fn new(webhook_url: &str) -> Result<Self, AlerterError> {
        let webhook = match webhook_url.trim() {
            "" => None,
            url => Some(
                reqwest::Url::parse(url)
                    .map_err(|e| AlerterError::NotAUrl(url.to_string(), e.to_string()))?,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlerterError::Client(e.to_string()))?;
        Ok(Self { webhook, http })
    }

    pub async fn raise(&self, alert: Alert) {
        tracing::warn!(target: "alert", kind = %alert.kind, subject = %alert.subject, message = %alert.message, "ALERT");
        let Some(url) = &self.webhook else { return };
        let body = serde_json::to_string(&alert).expect("an alert serialises");
        let sent = self
            .http
            .post(url.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(status = r.status().as_u16(), kind = %alert.kind, "alert webhook refused the alert")
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), kind = %alert.kind, "alert webhook unreachable")
            }
        }
    }
}
