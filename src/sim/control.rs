//! The control API (JSON) under `/sim/`: drives the sim's world the way merchants and Alipay's
//! clock would. No route returns a token.

use super::state::{NewOrder, SimError};
use super::{Inner, SimHandle};
use actix_web::{HttpResponse, web};
use std::sync::Arc;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/sim")
            .route("/orders", web::post().to(create_order))
            .route("/orders/{id}/pay", web::post().to(pay))
            .route("/orders/{id}/refund", web::post().to(refund))
            .route("/orders/{id}/confirm", web::post().to(confirm))
            .route(
                "/authorizations/{id}/cancel",
                web::post().to(cancel_authorization),
            )
            .route("/authorizations/{id}/code", web::post().to(auth_code))
            .route("/audit/{mini_app_id}/reject", web::post().to(reject_audit))
            .route(
                "/audit/{mini_app_id}/lose-messages",
                web::post().to(lose_audit_messages),
            )
            .route(
                "/authorizations/{id}/invalidate",
                web::post().to(invalidate_authorization),
            )
            .route("/mini-apps/{id}/versions", web::post().to(seed_versions))
            .route("/clock/advance", web::post().to(advance))
            .route("/state", web::get().to(state))
            .route("/calls", web::get().to(calls)),
    );
}

fn handle(inner: web::Data<Inner>) -> SimHandle {
    SimHandle {
        inner: Arc::clone(&inner.into_inner()),
    }
}

fn json(value: &serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(value.to_string())
}

fn error(status: u16, error: &str, message: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::json!({"error": error, "message": message}).to_string())
}

fn answer(result: Result<serde_json::Value, SimError>) -> HttpResponse {
    match result {
        Ok(v) => json(&v),
        Err(e) => error(e.http, e.sub_code, &e.message),
    }
}

/// An optional JSON body: empty means defaults. The error is the message for a 400.
fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("body is not the expected JSON: {e}"))
}

fn bad_body(message: String) -> HttpResponse {
    error(400, "invalid_body", &message)
}

async fn create_order(inner: web::Data<Inner>, bytes: web::Bytes) -> HttpResponse {
    match body::<NewOrder>(&bytes) {
        Ok(req) => answer(handle(inner).create_order(req)),
        Err(m) => bad_body(m),
    }
}

async fn pay(inner: web::Data<Inner>, id: web::Path<String>) -> HttpResponse {
    answer(handle(inner).pay(&id))
}

async fn refund(inner: web::Data<Inner>, id: web::Path<String>) -> HttpResponse {
    answer(handle(inner).refund(&id))
}

async fn confirm(inner: web::Data<Inner>, id: web::Path<String>) -> HttpResponse {
    answer(handle(inner).confirm(&id))
}

async fn cancel_authorization(inner: web::Data<Inner>, id: web::Path<String>) -> HttpResponse {
    answer(handle(inner).cancel_authorization(&id))
}

/// A single-use `app_auth_code` (for `alipay.open.auth.token.app`): a code, not a token.
async fn auth_code(inner: web::Data<Inner>, id: web::Path<String>) -> HttpResponse {
    answer(
        handle(inner)
            .issue_auth_code(&id)
            .map(|code| serde_json::json!({"auth_app_id": *id, "app_auth_code": code})),
    )
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Reject {
    reason: Option<String>,
}

async fn reject_audit(
    inner: web::Data<Inner>,
    id: web::Path<String>,
    bytes: web::Bytes,
) -> HttpResponse {
    let req = match body::<Reject>(&bytes) {
        Ok(r) => r,
        Err(m) => return bad_body(m),
    };
    let reason = req
        .reason
        .unwrap_or_else(|| "小程序名称与主体不符 (simulated rejection)".into());
    handle(inner).reject_next_audit(&id, reason);
    json(&serde_json::json!({"mini_app_id": *id, "reject_next_audit": true}))
}

/// The merchant's authorization ends and its `appauth.cancelled` message is lost.
async fn invalidate_authorization(inner: web::Data<Inner>, id: web::Path<String>) -> HttpResponse {
    answer(handle(inner).invalidate_authorization(&id))
}

#[derive(serde::Deserialize)]
#[serde(default)]
struct Lose {
    lose: bool,
}

impl Default for Lose {
    fn default() -> Self {
        Lose { lose: true }
    }
}

/// The mini program's audit messages are lost from now on (`{"lose": false}` undoes it).
async fn lose_audit_messages(
    inner: web::Data<Inner>,
    id: web::Path<String>,
    bytes: web::Bytes,
) -> HttpResponse {
    let req = match body::<Lose>(&bytes) {
        Ok(r) => r,
        Err(m) => return bad_body(m),
    };
    handle(inner).lose_audit_messages(&id, req.lose);
    json(&serde_json::json!({"mini_app_id": *id, "lose_audit_messages": req.lose}))
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Seed {
    app_versions: Vec<String>,
}

/// Versions the mini program already has on Alipay (what `version.list.query` reports).
async fn seed_versions(
    inner: web::Data<Inner>,
    id: web::Path<String>,
    bytes: web::Bytes,
) -> HttpResponse {
    match body::<Seed>(&bytes) {
        Ok(req) => json(&handle(inner).seed_versions(&id, &req.app_versions)),
        Err(m) => bad_body(m),
    }
}

#[derive(Default, serde::Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance(inner: web::Data<Inner>, bytes: web::Bytes) -> HttpResponse {
    let req = match body::<Advance>(&bytes) {
        Ok(r) => r,
        Err(m) => return bad_body(m),
    };
    if req.seconds < 0 {
        return error(
            400,
            "invalid_body",
            "seconds must not be negative: the clock only moves forward",
        );
    }
    let Some(by) = chrono::Duration::try_seconds(req.seconds) else {
        return error(400, "invalid_body", "seconds is out of range");
    };
    let now = handle(inner).advance(by);
    json(&serde_json::json!({"now": now}))
}

async fn state(inner: web::Data<Inner>) -> HttpResponse {
    json(&handle(inner).snapshot())
}

async fn calls(inner: web::Data<Inner>) -> HttpResponse {
    json(&serde_json::json!(handle(inner).calls()))
}
