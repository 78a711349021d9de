//! Sends gateway messages the way Alipay's platform does: a signed form POST (V1 sign content,
//! the platform key) to the ISV's application gateway, retried on anything but the exact body
//! `success`, on Alipay's published schedule (4m, 10m, 10m, 1h, 2h, 6h, 15h), scaled.
//!
//! First attempts go out one at a time in the order the messages were made (authorization before
//! order); a message that needs retrying continues in its own task, so it never holds up others.

use super::Inner;
use super::state::Outgoing;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Alipay's retry intervals after a failed delivery, in seconds.
pub const RETRY_SCHEDULE_SECS: [u64; 7] = [
    4 * 60,
    10 * 60,
    10 * 60,
    3600,
    2 * 3600,
    6 * 3600,
    15 * 3600,
];

/// The delay before retry `n` (0-based), scaled (`scale` 0.001 turns minutes into tenths of a
/// second: 4 min → 240 ms).
pub fn retry_delay(n: usize, scale: f64) -> Option<Duration> {
    let secs = *RETRY_SCHEDULE_SECS.get(n)? as f64 * scale.max(0.0);
    Some(Duration::from_secs_f64(secs))
}

pub(super) fn spawn(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let Some(url) = inner.gateway_url.clone() else {
                inner.record_delivery(&message.notify_id, 0, "unsent", None);
                continue;
            };
            let body = crate::alipay::notify::sign_message(&message.params, &inner.platform_key);
            if attempt(&inner, &url, &message.notify_id, &body, 1).await {
                continue;
            }
            let inner = inner.clone();
            tokio::spawn(async move {
                for (n, attempts) in (0..RETRY_SCHEDULE_SECS.len()).zip(2u32..) {
                    let Some(delay) = retry_delay(n, inner.retry_scale) else {
                        break;
                    };
                    tokio::time::sleep(delay).await;
                    if attempt(&inner, &url, &message.notify_id, &body, attempts).await {
                        return;
                    }
                }
                let attempts = RETRY_SCHEDULE_SECS.len() as u32 + 1;
                inner.record_delivery(&message.notify_id, attempts, "failed", None);
                tracing::warn!(notify_id = %message.notify_id, kind = %message.kind, "sim: gave up delivering a gateway message");
            });
        }
    });
}

/// One POST. True when the gateway answered exactly `success`.
async fn attempt(inner: &Inner, url: &str, notify_id: &str, body: &str, attempts: u32) -> bool {
    let answer = inner
        .http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body.to_string())
        .send()
        .await;
    let answer = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(bytes) if bytes.as_ref() == b"success" => {
                    inner.record_delivery(notify_id, attempts, "delivered", Some("success".into()));
                    return true;
                }
                Ok(bytes) => {
                    let text: String = String::from_utf8_lossy(&bytes).chars().take(100).collect();
                    format!("HTTP {status}: {text}")
                }
                Err(e) => format!("HTTP {status}: body: {}", e.without_url()),
            }
        }
        Err(e) => format!("transport: {}", e.without_url()),
    };
    tracing::debug!(notify_id, attempts, answer = %answer, "sim: gateway did not answer success");
    inner.record_delivery(notify_id, attempts, "pending", Some(answer));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_scales() {
        assert_eq!(retry_delay(0, 0.001), Some(Duration::from_millis(240)));
        assert_eq!(retry_delay(6, 1.0), Some(Duration::from_secs(15 * 3600)));
        assert_eq!(retry_delay(7, 1.0), None);
    }
}
