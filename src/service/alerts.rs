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

#[derive(Clone)]
pub struct Alerter {
    webhook: Option<reqwest::Url>,
    http: reqwest::Client,
}

impl Alerter {
    pub fn new(webhook_url: &str) -> Result<Self, String> {
        let webhook = match webhook_url.trim() {
            "" => None,
            url => {
                Some(reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?)
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
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
