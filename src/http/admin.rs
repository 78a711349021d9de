//! `/admin/api/*`, behind the bearer `admin.token`. Nothing here ever returns a token.

use super::AppState;
use super::error::{ApiError, json_error, not_found, respond_error};
use crate::service::blocking;
use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use secrecy::ExposeSecret;
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/api")
            .route("/messages", web::get().to(messages))
            .route(
                "/messages/{app_id}/{notify_id}/replay",
                web::post().to(replay_message),
            )
            .route(
                "/merchant-orders/{tiny_app_id}/{out_biz_no}/resend",
                web::post().to(resend_merchant_order),
            )
            .route("/orders", web::get().to(orders))
            .route("/orders/{commodity_order_id}", web::get().to(order))
            .route(
                "/orders/{commodity_order_id}/terminate",
                web::post().to(terminate),
            )
            .route(
                "/orders/{commodity_order_id}/reconcile",
                web::post().to(reconcile),
            )
            .route("/builds/{mini_app_id}/retry", web::post().to(retry_build))
            .route(
                "/authorizations/{auth_app_id}",
                web::get().to(authorization),
            ),
    );
}

/// Checks `Authorization: Bearer <admin.token>` in constant time.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), HttpResponse> {
    bearer(req, &state.admin_token, "admin")
}

/// Checks `Authorization: Bearer <token>` in constant time.
pub(super) fn bearer(
    req: &HttpRequest,
    token: &secrecy::SecretString,
    which: &str,
) -> Result<(), HttpResponse> {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = token.expose_secret();
    if aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), expected.as_bytes())
        .is_ok()
    {
        Ok(())
    } else {
        Err(json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("a valid {which} bearer token is required"),
        ))
    }
}

#[derive(Deserialize)]
struct MessageFilter {
    state: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
struct OrderFilter {
    status: Option<String>,
    limit: Option<i64>,
}

fn clamp_limit(limit: Option<i64>) -> Result<i64, HttpResponse> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        n => Err(json_error(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("limit {n} must be between 1 and 1000"),
        )),
    }
}

async fn messages(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<MessageFilter>,
) -> HttpResponse {
    use crate::store::messages::MessageState;
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let limit = match clamp_limit(query.limit) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let filter = match query.into_inner().state {
        None => None,
        Some(s) => match MessageState::parse(&s) {
            Some(state) => Some(state),
            None => {
                let all: Vec<&str> = MessageState::ALL.iter().map(|s| s.as_str()).collect();
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    format!("state {s:?} is not a message state ({})", all.join(", ")),
                );
            }
        },
    };
    let services = state.services.clone();
    match blocking(move || services.messages_in_state(filter, limit)).await {
        Ok(Ok(list)) => HttpResponse::Ok().json(list),
        Ok(Err(e)) => support_error(("messages", ""), e),
        Err(e) => respond_error(e),
    }
}

fn support_error(what: (&str, &str), e: crate::service::support::SupportError) -> HttpResponse {
    respond_error(ApiError::from(e).about(what.0, what.1))
}

/// Puts a `failed` or `quarantined` message back in the apply queue; answers the message JSON.
/// `-` stands for the empty app_id of order notifications.
async fn replay_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let (app_id, notify_id) = path.into_inner();
    let app_id = if app_id == "-" { String::new() } else { app_id };
    let shown = format!("{app_id}/{notify_id}");
    let services = state.services.clone();
    match blocking(move || services.replay_message(&app_id, &notify_id)).await {
        Ok(Ok(view)) => HttpResponse::Ok().json(view),
        Ok(Err(e)) => support_error(("message", &shown), e),
        Err(e) => respond_error(e),
    }
}

/// Queues a merchant order's failed delivery again; answers the merchant-order JSON.
async fn resend_merchant_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let (tiny_app_id, out_biz_no) = path.into_inner();
    let shown = format!("{tiny_app_id}/{out_biz_no}");
    let services = state.services.clone();
    match blocking(move || services.resend_merchant_order(&tiny_app_id, &out_biz_no)).await {
        Ok(Ok(view)) => HttpResponse::Ok().json(view),
        Ok(Err(e)) => support_error(("merchant order", &shown), e),
        Err(e) => respond_error(e),
    }
}

async fn orders(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OrderFilter>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let limit = match clamp_limit(query.limit) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let status = match query.into_inner().status {
        None => None,
        Some(s) => match crate::domain::OrderStatus::parse(&s) {
            Some(status) => Some(status),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    format!("status {s:?} is not an order status"),
                );
            }
        },
    };
    respond(&state, ("orders", ""), move |s| {
        s.orders(status, limit).map(Some)
    })
    .await
}

async fn order(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    let lookup = id.clone();
    respond(&state, ("order", &id), move |s| s.order(&lookup)).await
}

async fn authorization(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    let lookup = id.clone();
    respond(&state, ("authorization", &id), move |s| {
        s.authorization(&lookup)
    })
    .await
}

/// Runs a read model off the executor and maps it to a response; `None` is a 404 naming
/// `what` = (kind, id).
async fn respond<T: serde::Serialize + Send + 'static>(
    state: &AppState,
    what: (&str, &str),
    read: impl FnOnce(&crate::service::Services) -> Result<Option<T>, crate::service::views::ViewError>
    + Send
    + 'static,
) -> HttpResponse {
    let services = state.services.clone();
    match blocking(move || read(&services)).await {
        Ok(Ok(Some(view))) => HttpResponse::Ok().json(view),
        Ok(Ok(None)) => not_found(what.0, what.1),
        Ok(Err(e)) => respond_error(e),
        Err(e) => respond_error(e),
    }
}

#[derive(Deserialize)]
struct Termination {
    reason: Option<String>,
    /// Who decided; recorded in the history (default `support`).
    actor: Option<String>,
}

fn lifecycle_error(id: &str, e: crate::service::lifecycle::LifecycleError) -> HttpResponse {
    respond_error(ApiError::from(e).about("order", id))
}

/// Terminates the order's service with cause `support`; answers the order JSON.
async fn terminate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    let Ok(termination) = serde_json::from_slice::<Termination>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be JSON {\"reason\": \"...\"}",
        );
    };
    let event = crate::domain::lifecycle::OrderEvent::SupportTerminates {
        actor: termination.actor.unwrap_or_else(|| "support".into()),
        reason: termination.reason.unwrap_or_default(),
    };
    match state.services.order_event_now(&id, event).await {
        Ok(_) => order_json(&state, &id).await,
        Err(e) => lifecycle_error(&id, e),
    }
}

/// Asks Alipay (`order.query`) now and applies what it says; answers the order JSON.
async fn reconcile(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    match state.services.reconcile_order(&id).await {
        Ok(_) => order_json(&state, &id).await,
        Err(e) => lifecycle_error(&id, e),
    }
}

/// Starts a new build (next version) after a rejected or failed one; answers the order JSON.
async fn retry_build(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let app = path.into_inner();
    let services = state.services.clone();
    match services.retry_build(&app).await {
        Ok(order_id) => order_json(&state, &order_id).await,
        Err(e) => respond_error(e),
    }
}

/// The order JSON after an action on it (404 when it does not exist).
async fn order_json(state: &AppState, id: &str) -> HttpResponse {
    let lookup = id.to_string();
    respond(state, ("order", id), move |s| s.order(&lookup)).await
}
