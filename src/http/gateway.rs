//! `POST /alipay/gateway`: the only route that answers with the literal `success` / `fail`.

use super::AppState;
use crate::service::ingest::IngestError;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/alipay/gateway", web::post().to(receive));
}

fn answer(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

#[tracing::instrument(name = "gateway", skip_all)]
async fn receive(state: web::Data<AppState>, mut payload: web::Payload) -> HttpResponse {
    let mut body = web::BytesMut::new();
    // A client that trickles its body is cut off: Alipay sends a message in one go, and a slow
    // sender must not hold a worker's memory and a connection for long.
    // The edge middleware (`edge.rs`) enforces the same `server.body_timeout_ms` on every route
    // and, having started first, normally cuts the body off before this deadline does (the
    // chunk error below); this bound stays so the gateway never depends on being wrapped.
    let deadline = tokio::time::Instant::now() + state.body_timeout;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                state
                    .reject_log
                    .log(|| tracing::warn!("gateway body not received in time; answering fail"));
                return HttpResponse::RequestTimeout()
                    .content_type("text/plain; charset=utf-8")
                    .body("fail");
            }
        };
        let Ok(chunk) = chunk else {
            return answer("fail");
        };
        if body.len() + chunk.len() > state.max_body_bytes {
            state.services.metrics.reject("malformed_form");
            state.reject_log.log(|| {
                tracing::warn!(
                    limit = state.max_body_bytes,
                    "gateway body too large; answering fail"
                )
            });
            return HttpResponse::PayloadTooLarge()
                .content_type("text/plain; charset=utf-8")
                .body("fail");
        }
        body.extend_from_slice(&chunk);
    }
    match state.services.ingest(&body).await {
        Ok(ingested) => {
            tracing::debug!(notify_id = %ingested.notify_id, kind = %ingested.kind, new = ingested.new,
                quarantined = ingested.quarantined, sign_variant = ingested.variant.as_str(), "message stored");
            answer("success")
        }
        Err(IngestError::Rejected(reason)) => {
            state.reject_log.log(|| tracing::warn!(reason = reason.code(), detail = %reason, "gateway message refused"));
            answer("fail")
        }
        Err(IngestError::Storage(error)) => {
            state
                .reject_log
                .log(|| tracing::error!(%error, "gateway message not stored; answering fail"));
            answer("fail")
        }
    }
}

/// At most `per_second` log lines a second; the rest are counted and reported with the next one,
/// so a flood of bad requests cannot flood the log.
pub struct LogLimiter {
    per_second: u64,
    second: AtomicU64,
    used: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub fn new(per_second: u64) -> Self {
        Self {
            per_second,
            second: AtomicU64::new(0),
            used: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    pub fn log(&self, emit: impl FnOnce()) {
        // Wall-clock seconds only pace log output; no rule depends on them.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.second.swap(now, Relaxed) != now {
            self.used.store(0, Relaxed);
        }
        if self.used.fetch_add(1, Relaxed) < self.per_second {
            let skipped = self.suppressed.swap(0, Relaxed);
            if skipped > 0 {
                tracing::warn!(suppressed = skipped, "similar gateway log lines suppressed");
            }
            emit();
        } else {
            self.suppressed.fetch_add(1, Relaxed);
        }
    }
}
