//! `/api/merchant-orders/*`, behind the bearer `api.token`: merchants' back ends push their
//! booking orders here; we validate, store and deliver them to Alipay.

use super::AppState;
use super::admin::bearer;
use super::error::{json_error, not_found, respond_error};
use crate::service::merchant_sync::{SyncError, SyncOutcome};
use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use futures_util::StreamExt as _;
use serde_json::json;

/// A sync is a few KB; anything far larger is not one.
const MAX_SYNC_BYTES: usize = 256 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/merchant-orders/sync", web::post().to(sync))
        .route(
            "/api/merchant-orders/{tiny_app_id}/{out_biz_no}",
            web::get().to(show),
        );
}

async fn sync(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> HttpResponse {
    if let Err(r) = bearer(&req, &state.api_token, "api") {
        return r;
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the request body could not be read",
            );
        };
        if body.len() + chunk.len() > MAX_SYNC_BYTES {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a sync is at most {MAX_SYNC_BYTES} bytes"),
            );
        }
        body.extend_from_slice(&chunk);
    }
    let Ok(raw) = String::from_utf8(body.to_vec()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not UTF-8",
        );
    };
    let biz: serde_json::Value = match serde_json::from_str(&raw) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body must be a JSON object (the biz_content)",
            );
        }
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not JSON: {e}"),
            );
        }
    };
    match state.services.accept_merchant_sync(&biz, raw).await {
        Ok(SyncOutcome::Queued {
            status,
            order_modified_time,
        }) => {
            state
                .services
                .metrics
                .merchant_syncs_accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            HttpResponse::Accepted().json(json!({ "result": "queued", "status": status, "order_modified_time": order_modified_time }))
        }
        Ok(SyncOutcome::Duplicate) => HttpResponse::Ok().json(json!({ "result": "duplicate" })),
        Ok(SyncOutcome::Stale) => HttpResponse::Ok().json(json!({ "result": "stale" })),
        Err(SyncError::Invalid(violations)) => {
            let first = &violations[0];
            let all: Vec<_> = violations
                .iter()
                .map(
                    |v| json!({ "error": v.code.as_str(), "field": v.field, "message": v.message }),
                )
                .collect();
            HttpResponse::UnprocessableEntity().json(json!({
                "error": first.code.as_str(), "field": first.field, "message": first.message, "violations": all,
            }))
        }
        Err(e) => respond_error(e),
    }
}

async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    if let Err(r) = bearer(&req, &state.api_token, "api") {
        return r;
    }
    let (tiny_app_id, out_biz_no) = path.into_inner();
    match state
        .services
        .merchant_order(&tiny_app_id, &out_biz_no)
        .await
    {
        Ok(Some(view)) => HttpResponse::Ok().json(view),
        Ok(None) => not_found("merchant order", &format!("{tiny_app_id}/{out_biz_no}")),
        Err(e) => respond_error(e),
    }
}
