//! `GET /admin/api/openapi.json`: a hand-written OpenAPI 3.0 description of the admin API and the
//! merchant-order API (plus the gateway and health routes). It holds no data, so it needs no token.
//! Field names follow INTERFACE.md and the views in `service::views` and `service::merchant_sync`.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/api/openapi.json", web::get().to(openapi_json));
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": json_content(schema) })
}

fn error(description: &str) -> Value {
    json!({ "description": description, "content": json_content(schema_ref("Error")) })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
        "schema": { "type": "string" } })
}

fn nullable_string() -> Value {
    json!({ "type": "string", "nullable": true })
}

fn timestamp() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn nullable_timestamp() -> Value {
    json!({ "type": "string", "format": "date-time", "nullable": true })
}

fn string_enum(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

const ORDER_STATUSES: &[&str] = &[
    "awaiting_payment",
    "implementing",
    "awaiting_confirmation",
    "completed",
    "cancelled",
];
const MESSAGE_STATES: &[&str] = &["received", "applied", "parked", "quarantined", "failed"];

fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "description": "A stable code, e.g. not_found, invalid_field, invalid_transition, unauthorized" },
                "field": { "type": "string", "description": "The field at fault, when there is one" },
                "message": { "type": "string" },
                "violations": {
                    "type": "array",
                    "description": "Every violation found (merchant-order sync 422)",
                    "items": {
                        "type": "object",
                        "required": ["error", "field", "message"],
                        "properties": {
                            "error": { "type": "string" },
                            "field": { "type": "string" },
                            "message": { "type": "string" }
                        }
                    }
                }
            }
        },
        "Deadline": {
            "type": "object",
            "required": ["kind", "due_at", "state"],
            "properties": {
                "kind": { "type": "string", "example": "payment" },
                "due_at": timestamp(),
                "state": { "type": "string", "example": "pending" }
            }
        },
        "History": {
            "type": "object",
            "required": ["to_status", "actor", "cause", "inferred", "at"],
            "properties": {
                "from_status": nullable_string(),
                "to_status": { "type": "string" },
                "actor": { "type": "string" },
                "cause": { "type": "string" },
                "reason": nullable_string(),
                "inferred": { "type": "boolean" },
                "at": timestamp()
            }
        },
        "Service": {
            "type": "object",
            "nullable": true,
            "required": ["status"],
            "properties": {
                "status": { "type": "string" },
                "termination_cause": nullable_string(),
                "terminated_by": nullable_string(),
                "termination_reason": nullable_string()
            }
        },
        "Build": {
            "type": "object",
            "nullable": true,
            "required": ["app_version", "step"],
            "properties": {
                "app_version": { "type": "string" },
                "step": string_enum(&["upload", "build_query", "audit_apply", "await_audit", "online", "done", "rejected", "failed"]),
                "last_error": nullable_string()
            }
        },
        "Order": {
            "type": "object",
            "required": ["commodity_order_id", "status", "cancel_reason", "ordered_at", "status_since", "deadlines", "service", "open_tasks"],
            "properties": {
                "commodity_order_id": { "type": "string" },
                "status": string_enum(ORDER_STATUSES),
                "cancel_reason": {
                    "type": "string", "nullable": true,
                    "enum": ["unpaid_timeout", "implementation_timeout", "merchant_refund", "isv_cancelled", null]
                },
                "merchant_pid": nullable_string(),
                "mini_app_id": nullable_string(),
                "item_code": nullable_string(),
                "total_price": nullable_string(),
                "ordered_at": timestamp(),
                "status_since": timestamp(),
                "deadlines": { "type": "array", "items": schema_ref("Deadline") },
                "service": schema_ref("Service"),
                "open_tasks": { "type": "array", "items": { "type": "string" } },
                "refund": { "type": "string", "nullable": true, "enum": ["automatic", "offline", null] },
                "alipay_reading": nullable_string(),
                "reconciled_at": nullable_timestamp(),
                "build": schema_ref("Build"),
                "history": {
                    "type": "array", "items": schema_ref("History"),
                    "description": "Oldest first; only on the single-order routes, not in lists"
                }
            }
        },
        "Authorization": {
            "type": "object",
            "description": "Never carries a token",
            "required": ["auth_app_id", "status", "auth_time", "updated_at"],
            "properties": {
                "auth_app_id": { "type": "string" },
                "user_id": nullable_string(),
                "status": string_enum(&["active", "superseded", "cancelled"]),
                "auth_time": timestamp(),
                "updated_at": timestamp(),
                "attention": nullable_string()
            }
        },
        "Message": {
            "type": "object",
            "required": ["notify_id", "app_id", "kind", "received_at", "state", "sign_variant", "attempts"],
            "properties": {
                "notify_id": { "type": "string" },
                "app_id": { "type": "string", "description": "Empty for order notifications, which carry none" },
                "kind": { "type": "string", "description": "The msg_method or notify_type value" },
                "received_at": timestamp(),
                "state": string_enum(MESSAGE_STATES),
                "sign_variant": { "type": "string" },
                "attempts": { "type": "integer" },
                "last_error": nullable_string(),
                "applied_at": nullable_timestamp()
            }
        },
        "Termination": {
            "type": "object",
            "required": ["reason"],
            "properties": {
                "reason": { "type": "string" },
                "actor": { "type": "string", "description": "Who decided (default support)" }
            }
        },
        "MerchantOrderSync": {
            "type": "object",
            "description": "The biz_content of alipay.merchant.order.sync (see MERCHANT-ORDER-SYNC.md)",
            "required": ["out_biz_no", "buyer_open_id", "order_type", "order_create_time", "order_modified_time", "ext_info"],
            "additionalProperties": true,
            "properties": {
                "out_biz_no": { "type": "string" },
                "buyer_open_id": { "type": "string" },
                "order_type": { "type": "string", "example": "service_order" },
                "order_create_time": { "type": "string", "example": "2024-06-10 10:00:00" },
                "order_modified_time": { "type": "string", "example": "2024-06-10 10:05:00.000" },
                "amount": { "type": "string" },
                "trade_no": { "type": "string" },
                "item_order_list": { "type": "array", "items": { "type": "object", "additionalProperties": true } },
                "ext_info": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["ext_key", "ext_value"],
                        "properties": { "ext_key": { "type": "string" }, "ext_value": { "type": "string" } }
                    }
                }
            }
        },
        "SyncResult": {
            "type": "object",
            "required": ["result"],
            "properties": {
                "result": string_enum(&["queued", "duplicate", "stale"]),
                "status": { "type": "string" },
                "order_modified_time": { "type": "string" }
            }
        },
        "MerchantOrder": {
            "type": "object",
            "required": ["tiny_app_id", "out_biz_no", "status", "order_modified_time", "delivery"],
            "properties": {
                "tiny_app_id": { "type": "string" },
                "out_biz_no": { "type": "string" },
                "status": { "type": "string" },
                "order_modified_time": { "type": "string" },
                "delivery": string_enum(&["queued", "delivered", "failed"]),
                "alipay_order_id": nullable_string(),
                "record_id": nullable_string(),
                "sub_code": nullable_string(),
                "last_error": nullable_string()
            }
        }
    })
}

fn admin_paths() -> Value {
    let admin = json!([{ "admin": [] }]);
    let order_id = path_param("commodity_order_id", "Alipay's commodity_order_id");
    let limit = json!({ "name": "limit", "in": "query", "required": false,
        "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } });
    json!({
        "/admin/api/messages": { "get": {
            "summary": "Stored gateway messages, newest first",
            "security": admin,
            "parameters": [
                limit,
                { "name": "state", "in": "query", "required": false, "schema": string_enum(MESSAGE_STATES) }
            ],
            "responses": {
                "200": ok("The messages", json!({ "type": "array", "items": schema_ref("Message") })),
                "400": error("Bad limit or state"),
                "401": error("No or wrong admin token")
            }
        }},
        "/admin/api/messages/{app_id}/{notify_id}/replay": { "post": {
            "summary": "Put a failed or quarantined message back in the apply queue (attempts 0, due now)",
            "security": admin,
            "parameters": [
                path_param("app_id", "The message's app_id; `-` for the empty app_id of order notifications"),
                path_param("notify_id", "The message's notify_id")
            ],
            "responses": {
                "200": ok("The message, now received", schema_ref("Message")),
                "401": error("No or wrong admin token"),
                "404": error("No such message"),
                "409": error("Not in a state that can be replayed (only failed or quarantined; never one for another app_id)")
            }
        }},
        "/admin/api/orders": { "get": {
            "summary": "Orders, newest first, without history",
            "security": admin,
            "parameters": [
                { "name": "status", "in": "query", "required": false, "schema": string_enum(ORDER_STATUSES) },
                limit
            ],
            "responses": {
                "200": ok("The orders", json!({ "type": "array", "items": schema_ref("Order") })),
                "400": error("Bad status or limit"),
                "401": error("No or wrong admin token")
            }
        }},
        "/admin/api/orders/{commodity_order_id}": { "get": {
            "summary": "One order, with its history",
            "security": admin,
            "parameters": [order_id],
            "responses": {
                "200": ok("The order", schema_ref("Order")),
                "401": error("No or wrong admin token"),
                "404": error("No such order")
            }
        }},
        "/admin/api/orders/{commodity_order_id}/terminate": { "post": {
            "summary": "Terminate the order's service (cause support)",
            "security": admin,
            "parameters": [order_id],
            "requestBody": { "required": true, "content": json_content(schema_ref("Termination")) },
            "responses": {
                "200": ok("The order", schema_ref("Order")),
                "400": error("The body is not JSON"),
                "401": error("No or wrong admin token"),
                "404": error("No such order"),
                "409": error("The order changed concurrently"),
                "422": error("missing_field (reason) or invalid_transition")
            }
        }},
        "/admin/api/orders/{commodity_order_id}/reconcile": { "post": {
            "summary": "Ask Alipay (order.query) now and apply what it says",
            "security": admin,
            "parameters": [order_id],
            "responses": {
                "200": ok("The order", schema_ref("Order")),
                "401": error("No or wrong admin token"),
                "404": error("No such order"),
                "409": error("The order changed concurrently"),
                "502": error("Alipay did not answer")
            }
        }},
        "/admin/api/builds/{mini_app_id}/retry": { "post": {
            "summary": "Start a new template build (next version) after a rejected or failed one",
            "security": admin,
            "parameters": [path_param("mini_app_id", "The merchant's mini program")],
            "responses": {
                "200": ok("The order of that mini program", schema_ref("Order")),
                "401": error("No or wrong admin token"),
                "409": error("Nothing to retry")
            }
        }},
        "/admin/api/authorizations/{auth_app_id}": { "get": {
            "summary": "A merchant's authorization (never its token)",
            "security": admin,
            "parameters": [path_param("auth_app_id", "The merchant's mini program")],
            "responses": {
                "200": ok("The authorization", schema_ref("Authorization")),
                "401": error("No or wrong admin token"),
                "404": error("No such authorization")
            }
        }},
        "/admin/api/merchant-orders/{tiny_app_id}/{out_biz_no}/resend": { "post": {
            "summary": "Queue a merchant order's failed delivery again (attempts 0, due now)",
            "security": admin,
            "parameters": [
                path_param("tiny_app_id", "The merchant's mini program"),
                path_param("out_biz_no", "The merchant's order number")
            ],
            "responses": {
                "200": ok("The merchant order, delivery queued", schema_ref("MerchantOrder")),
                "401": error("No or wrong admin token"),
                "404": error("No such merchant order"),
                "409": error("Its newest sync's delivery did not fail")
            }
        }},
        "/admin/api/openapi.json": { "get": {
            "summary": "This document",
            "security": [],
            "responses": { "200": { "description": "OpenAPI 3.0 JSON", "content": { "application/json": {} } } }
        }}
    })
}

fn other_paths() -> Value {
    let api = json!([{ "api": [] }]);
    json!({
        "/api/merchant-orders/sync": { "post": {
            "summary": "Accept a merchant's booking-order sync: validated, stored and queued for delivery",
            "security": api,
            "requestBody": { "required": true, "content": json_content(schema_ref("MerchantOrderSync")) },
            "responses": {
                "202": ok("Accepted and queued", schema_ref("SyncResult")),
                "200": ok("duplicate (same order_modified_time) or stale (older; not delivered)", schema_ref("SyncResult")),
                "400": error("The body is not a JSON object"),
                "401": error("No or wrong api token"),
                "409": error("The order changed concurrently; retry"),
                "413": error("Larger than 256 KiB"),
                "422": error("missing_field, invalid_field, invalid_transition, immutable_field or not_authorized, with violations")
            }
        }},
        "/api/merchant-orders/{tiny_app_id}/{out_biz_no}": { "get": {
            "summary": "A merchant order's status and delivery",
            "security": api,
            "parameters": [
                path_param("tiny_app_id", "The merchant's mini program"),
                path_param("out_biz_no", "The merchant's order number")
            ],
            "responses": {
                "200": ok("The merchant order", schema_ref("MerchantOrder")),
                "401": error("No or wrong api token"),
                "404": error("No such merchant order")
            }
        }},
        "/alipay/gateway": { "post": {
            "summary": "Alipay's signed gateway messages (RSA2); answers text/plain success or fail",
            "security": [],
            "requestBody": { "required": true, "content": {
                "application/x-www-form-urlencoded": { "schema": { "type": "object", "additionalProperties": { "type": "string" } } }
            }},
            "responses": { "200": { "description": "`success` once verified and stored, else `fail`",
                "content": { "text/plain": { "schema": string_enum(&["success", "fail"]) } } } }
        }},
        "/healthz": { "get": { "summary": "Liveness", "security": [],
            "responses": { "200": { "description": "The process runs" } } } },
        "/readyz": { "get": { "summary": "Readiness", "security": [],
            "responses": { "200": { "description": "The database answers" }, "503": { "description": "It does not" } } } },
        "/metrics": { "get": { "summary": "Prometheus metrics", "security": [],
            "responses": { "200": { "description": "Prometheus text format", "content": { "text/plain": {} } } } } }
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = admin_paths();
    if let (Some(all), Value::Object(more)) = (paths.as_object_mut(), other_paths()) {
        all.extend(more);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "isv-lifecycle",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Admin API (bearer admin.token) and merchant-order API (bearer api.token) of the Alipay ISV service. Every error body is JSON with at least `error` and `message`; no route returns a secret."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "admin": { "type": "http", "scheme": "bearer", "description": "admin.token (ISV__ADMIN__TOKEN)" },
                "api": { "type": "http", "scheme": "bearer", "description": "api.token (ISV__API__TOKEN)" }
            },
            "schemas": schemas()
        }
    })
}
