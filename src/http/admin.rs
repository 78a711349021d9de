//! `/admin/api/*`, behind the bearer `admin.token`. Nothing here ever returns a token.

use super::AppState;
use super::error::{ApiError, json_error, not_found, respond_error};
use crate::domain::{MiniAppId, OrderId};
use crate::service::views::decode_cursor;
use crate::store::orders::{OrderKey, OrderSearch};
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
            .route("/services/{mini_app_id}", web::get().to(service))
            .route(
                "/authorizations/{auth_app_id}",
                web::get().to(authorization),
            )
            .route(
                "/authorizations/{auth_app_id}/check",
                web::post().to(check_authorization),
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MessageFilter {
    /// Only messages in this state (received, applied, parked, quarantined, failed).
    state: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct OrderFilter {
    /// Only orders in this status (awaiting_payment, implementing, awaiting_confirmation,
    /// completed, cancelled).
    status: Option<String>,
    /// An order id, merchant PID, mini program id, or the start of a merchant name.
    q: Option<String>,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `true`: only orders with a pending implementation or confirmation deadline.
    at_risk: Option<bool>,
}

/// The order list's query, checked: (search, where to start, page size).
pub(super) fn order_query(
    status: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<&str>,
    at_risk: bool,
) -> Result<(OrderSearch, Option<OrderKey>, i64), (&'static str, String)> {
    let limit = match limit.unwrap_or(100) {
        n @ 1..=500 => n,
        n => return Err(("limit", format!("limit {n} must be between 1 and 500"))),
    };
    // An empty value (a form's "any status") is no filter.
    let status = status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && crate::domain::OrderStatus::parse(s).is_none()
    {
        return Err(("status", format!("status {s:?} is not an order status")));
    }
    let after = match cursor.filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_cursor(c).ok_or((
            "cursor",
            "cursor is not one this service gave out (use next_cursor as given)".to_string(),
        ))?),
        None => None,
    };
    let text = q.map(|q| q.trim().to_string()).filter(|q| !q.is_empty());
    Ok((
        OrderSearch {
            status,
            text,
            at_risk,
        },
        after,
        limit,
    ))
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
    match state.services.messages_in_state(filter, limit).await {
        Ok(list) => HttpResponse::Ok().json(list),
        Err(e) => support_error(("messages", ""), e),
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
    match state.services.replay_message(&app_id, &notify_id).await {
        Ok(view) => HttpResponse::Ok().json(view),
        Err(e) => support_error(("message", &shown), e),
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
    match state
        .services
        .resend_merchant_order(&tiny_app_id, &out_biz_no)
        .await
    {
        Ok(view) => HttpResponse::Ok().json(view),
        Err(e) => support_error(("merchant order", &shown), e),
    }
}

/// `GET /admin/api/orders`: newest first, one page, with the cursor of the next.
async fn orders(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OrderFilter>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let f = query.into_inner();
    let (search, after, limit) = match order_query(
        f.status,
        f.q,
        f.limit,
        f.cursor.as_deref(),
        f.at_risk.unwrap_or(false),
    ) {
        Ok(checked) => checked,
        Err((field, message)) => return invalid_field(field, message),
    };
    let page = state
        .services
        .order_page(&search, after.as_ref(), limit)
        .await;
    respond(("orders", ""), page.map(Some))
}

fn invalid_field(field: &str, message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({
        "error": "invalid_field", "field": field, "message": message,
    }))
}

async fn order(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    respond(("order", id.as_str()), state.services.order(&id).await)
}

async fn service(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<MiniAppId>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    respond(("service", id.as_str()), state.services.service(&id).await)
}

async fn authorization(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<MiniAppId>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    respond(
        ("authorization", id.as_str()),
        state.services.authorization(&id).await,
    )
}

/// Asks Alipay (`auth.token.app.query`) now whether the authorization's token holds; `invalid`
/// ends it like `appauth.cancelled`. Answers the authorization JSON.
async fn check_authorization(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<MiniAppId>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    if let Err(e) = state.services.check_authorization(&id).await {
        return respond_error(ApiError::from(e).about("authorization", id.as_str()));
    }
    respond(
        ("authorization", id.as_str()),
        state.services.authorization(&id).await,
    )
}

/// A read model's answer as a response; `None` is a 404 naming `what` = (kind, id).
fn respond<T: serde::Serialize>(
    what: (&str, &str),
    read: Result<Option<T>, crate::service::views::ViewError>,
) -> HttpResponse {
    match read {
        Ok(Some(view)) => HttpResponse::Ok().json(view),
        Ok(None) => not_found(what.0, what.1),
        Err(e) => respond_error(e),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct Termination {
    /// Why; recorded in the order's history.
    reason: Option<String>,
    /// Refused when present (400): the API's actor is always `api`, never a value from the body.
    #[schema(ignore)]
    actor: Option<serde_json::Value>,
}

fn lifecycle_error(id: &str, e: crate::service::lifecycle::LifecycleError) -> HttpResponse {
    respond_error(ApiError::from(e).about("order", id))
}

/// Terminates the order's service with cause `support`; answers the order JSON.
async fn terminate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
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
    if termination.actor.is_some() {
        return invalid_field(
            "actor",
            "actor is not accepted: actions through the admin API are recorded as `api`".into(),
        );
    }
    let event = crate::domain::lifecycle::OrderEvent::SupportTerminates {
        actor: "api".into(),
        reason: termination.reason.unwrap_or_default(),
    };
    match state.services.order_event_now(&id, event).await {
        Ok(_) => order_json(&state, &id).await,
        Err(e) => lifecycle_error(id.as_str(), e),
    }
}

/// Asks Alipay (`order.query`) now and applies what it says; answers the order JSON.
async fn reconcile(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> HttpResponse {
    if let Err(r) = authorize(&req, &state) {
        return r;
    }
    let id = path.into_inner();
    match state.services.reconcile_order(&id).await {
        Ok(_) => order_json(&state, &id).await,
        Err(e) => lifecycle_error(id.as_str(), e),
    }
}

/// Starts a new build (next version) after a rejected or failed one; answers the order JSON.
async fn retry_build(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<MiniAppId>,
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
async fn order_json(state: &AppState, id: &OrderId) -> HttpResponse {
    respond(("order", id.as_str()), state.services.order(id).await)
}
