//! `GET /admin/api/openapi.json`: the OpenAPI document of the admin API and the merchant-order
//! API (plus the gateway and health routes), generated with `utoipa`. Schemas come from the
//! response types themselves (`service::views`, `MerchantOrderView`, the query structs of
//! `http::admin`); the error and sync-result bodies, which handlers build as JSON, are described
//! by `ErrorBody` and `SyncResult` here. The operations below are declarations only (each route's
//! handler is in its own module); `tests/api/openapi.rs` checks real responses of every
//! documented route against this document. It holds no data, so it needs no token.

use super::admin::{MessageFilter, OrderFilter, Termination};
use crate::service::merchant_sync::MerchantOrderView;
use crate::service::views::{
    AuthorizationView, BuildView, DeadlineView, HistoryView, MessageView, OrderPage, OrderView,
    PeriodView, ServiceDetailView, ServiceView,
};
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/api/openapi.json", web::get().to(openapi_json));
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Every error: a stable code, the field at fault when there is one, and a message.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// A stable code, e.g. `not_found`, `invalid_field`, `invalid_transition`, `unauthorized`.
    error: String,
    /// The field at fault, when there is one.
    field: Option<String>,
    message: String,
    /// Every violation found (merchant-order sync 422).
    violations: Option<Vec<Violation>>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Violation {
    error: String,
    field: String,
    message: String,
}

/// The answer to a merchant-order sync.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SyncResult {
    /// `queued` (202), `duplicate` or `stale` (200).
    result: String,
    /// The merchant order's status (when queued).
    status: Option<String>,
    order_modified_time: Option<String>,
}

/// The `biz_content` of `alipay.merchant.order.sync` as in MERCHANT-ORDER-SYNC.md: checked field
/// by field against the rules of its `status` (422 lists every violation).
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct MerchantOrderSync(serde_json::Value);

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        components.add_security_scheme("admin", bearer("admin.token (ISV__ADMIN__TOKEN)"));
        components.add_security_scheme("api", bearer("api.token (ISV__API__TOKEN)"));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "isv-lifecycle",
        description = "Admin API (bearer admin.token) and merchant-order API (bearer api.token) of the Alipay ISV service. Every error body is JSON with at least `error` and `message`; no route returns a secret."
    ),
    paths(
        list_messages, replay_message, list_orders, get_order, terminate_order, reconcile_order,
        retry_build, get_service, get_authorization, check_authorization, resend_merchant_order, openapi_document,
        sync_merchant_order, get_merchant_order, gateway, healthz, readyz, metrics
    ),
    components(schemas(
        ErrorBody, Violation, SyncResult, MerchantOrderSync, OrderView, OrderPage, DeadlineView,
        HistoryView, ServiceView, BuildView, ServiceDetailView, PeriodView, AuthorizationView, MessageView, MerchantOrderView,
        Termination
    )),
    modifiers(&Security),
    tags(
        (name = "orders", description = "Marketplace orders: search, history, support actions"),
        (name = "messages", description = "Stored gateway messages"),
        (name = "services", description = "Merchants' services: periods, status, build"),
        (name = "authorizations", description = "Merchants' authorizations (never a token)"),
        (name = "merchant-orders", description = "The merchant-order API and its deliveries"),
        (name = "operations", description = "Gateway, health, metrics, this document")
    )
)]
struct ApiDoc;

#[utoipa::path(get, path = "/admin/api/messages", operation_id = "listMessages", tag = "messages",
    summary = "Stored gateway messages, newest first",
    params(MessageFilter), security(("admin" = [])),
    responses(
        (status = 200, description = "The messages", body = Vec<MessageView>),
        (status = 400, description = "Bad limit or state", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn list_messages() {}

#[utoipa::path(post, path = "/admin/api/messages/{app_id}/{notify_id}/replay", operation_id = "replayMessage", tag = "messages",
    summary = "Put a failed or quarantined message back in the apply queue (attempts 0, due now)",
    params(
        ("app_id" = String, Path, description = "The message's app_id; `-` for the empty app_id of order notifications"),
        ("notify_id" = String, Path, description = "The message's notify_id")
    ),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The message, now received", body = MessageView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 409, description = "Not in a state that can be replayed (only failed or quarantined)", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn replay_message() {}

#[utoipa::path(get, path = "/admin/api/orders", operation_id = "listOrders", tag = "orders",
    summary = "Orders, newest first, one page (without history); follow next_cursor until null",
    params(OrderFilter), security(("admin" = [])),
    responses(
        (status = 200, description = "One page of orders", body = OrderPage),
        (status = 400, description = "Bad status, limit or cursor (field names which)", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn list_orders() {}

#[utoipa::path(get, path = "/admin/api/orders/{commodity_order_id}", operation_id = "getOrder", tag = "orders",
    summary = "One order, with its history",
    params(("commodity_order_id" = String, Path, description = "Alipay's commodity_order_id")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn get_order() {}

#[utoipa::path(post, path = "/admin/api/orders/{commodity_order_id}/terminate", operation_id = "terminateOrder", tag = "orders",
    summary = "Terminate the order's service (cause support; recorded with actor api)",
    params(("commodity_order_id" = String, Path, description = "Alipay's commodity_order_id")),
    request_body = Termination,
    security(("admin" = [])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "The body is not JSON, or names an actor", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order changed concurrently", body = ErrorBody),
        (status = 422, description = "missing_field (reason) or invalid_transition", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn terminate_order() {}

#[utoipa::path(post, path = "/admin/api/orders/{commodity_order_id}/reconcile", operation_id = "reconcileOrder", tag = "orders",
    summary = "Ask Alipay (order.query) now and apply what it says",
    params(("commodity_order_id" = String, Path, description = "Alipay's commodity_order_id")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order changed concurrently", body = ErrorBody),
        (status = 502, description = "Alipay did not answer", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn reconcile_order() {}

#[utoipa::path(get, path = "/admin/api/services/{mini_app_id}", operation_id = "getService", tag = "services",
    summary = "A mini program's service: status, periods (one per paid order), newest build",
    params(("mini_app_id" = String, Path, description = "The merchant's mini program")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The service", body = ServiceDetailView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No service for that mini program", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn get_service() {}

#[utoipa::path(post, path = "/admin/api/builds/{mini_app_id}/retry", operation_id = "retryBuild", tag = "orders",
    summary = "Start a new template build (next version) after a rejected or failed one",
    params(("mini_app_id" = String, Path, description = "The merchant's mini program")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The order of that mini program", body = OrderView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "The mini program has no build", body = ErrorBody),
        (status = 409, description = "The last build is not rejected or failed", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn retry_build() {}

#[utoipa::path(get, path = "/admin/api/authorizations/{auth_app_id}", operation_id = "getAuthorization", tag = "authorizations",
    summary = "A merchant's authorization (never its token)",
    params(("auth_app_id" = String, Path, description = "The merchant's mini program")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The authorization", body = AuthorizationView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such authorization", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn get_authorization() {}

#[utoipa::path(post, path = "/admin/api/authorizations/{auth_app_id}/check", operation_id = "checkAuthorization", tag = "authorizations",
    summary = "Ask Alipay (auth.token.app.query) now whether the token holds; `invalid` ends the authorization like appauth.cancelled",
    params(("auth_app_id" = String, Path, description = "The merchant's mini program")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The authorization after the check", body = AuthorizationView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such authorization", body = ErrorBody),
        (status = 409, description = "Not active: no token to check", body = ErrorBody),
        (status = 502, description = "Alipay did not answer; the authorization stays as it was", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn check_authorization() {}

#[utoipa::path(post, path = "/admin/api/merchant-orders/{tiny_app_id}/{out_biz_no}/resend", operation_id = "resendMerchantOrder", tag = "merchant-orders",
    summary = "Queue a merchant order's failed delivery again (attempts 0, due now)",
    params(
        ("tiny_app_id" = String, Path, description = "The merchant's mini program"),
        ("out_biz_no" = String, Path, description = "The merchant's order number")
    ),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The merchant order, delivery queued", body = MerchantOrderView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such merchant order", body = ErrorBody),
        (status = 409, description = "Its newest sync's delivery did not fail", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn resend_merchant_order() {}

#[utoipa::path(get, path = "/admin/api/openapi.json", operation_id = "openapiDocument", tag = "operations",
    summary = "This document",
    responses((status = 200, description = "OpenAPI JSON", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_document() {}

#[utoipa::path(post, path = "/api/merchant-orders/sync", operation_id = "syncMerchantOrder", tag = "merchant-orders",
    summary = "Accept a merchant's booking-order sync: validated, stored and queued for delivery",
    request_body = MerchantOrderSync,
    security(("api" = [])),
    responses(
        (status = 202, description = "Accepted and queued", body = SyncResult),
        (status = 200, description = "duplicate (same order_modified_time) or stale (older; not delivered)", body = SyncResult),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 401, description = "No or wrong api token", body = ErrorBody),
        (status = 409, description = "The order changed concurrently; retry", body = ErrorBody),
        (status = 413, description = "Larger than the body limit", body = ErrorBody),
        (status = 422, description = "missing_field, invalid_field, invalid_transition, immutable_field or not_authorized, with violations", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn sync_merchant_order() {}

#[utoipa::path(get, path = "/api/merchant-orders/{tiny_app_id}/{out_biz_no}", operation_id = "getMerchantOrder", tag = "merchant-orders",
    summary = "A merchant order's status and delivery",
    params(
        ("tiny_app_id" = String, Path, description = "The merchant's mini program"),
        ("out_biz_no" = String, Path, description = "The merchant's order number")
    ),
    security(("api" = [])),
    responses(
        (status = 200, description = "The merchant order", body = MerchantOrderView),
        (status = 401, description = "No or wrong api token", body = ErrorBody),
        (status = 404, description = "No such merchant order", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn get_merchant_order() {}

#[utoipa::path(post, path = "/alipay/gateway", operation_id = "alipayGateway", tag = "operations",
    summary = "Alipay's signed gateway messages (RSA2); answers text/plain `success` once verified and stored, else `fail`",
    request_body(content = std::collections::HashMap<String, String>, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "`success` or `fail`", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn gateway() {}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    summary = "Liveness", responses((status = 200, description = "The process runs")))]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    summary = "Readiness",
    responses(
        (status = 200, description = "The database answers"),
        (status = 503, description = "It does not")
    ))]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}
