//! JSON error bodies: every error names a code and says what is wrong.

use actix_web::{HttpResponse, http::StatusCode};
use serde_json::json;

pub fn json_error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "message": message.to_string() }))
}

pub fn not_found(what: &str, id: &str) -> HttpResponse {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} {id:?}"),
    )
}

pub fn from_view_error(e: crate::service::views::ViewError) -> HttpResponse {
    use crate::service::views::ViewError;
    match e {
        ViewError::Unavailable(m) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", m)
        }
        ViewError::Database(m) => {
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "database_error", m)
        }
    }
}

pub fn from_join_error(e: tokio::task::JoinError) -> HttpResponse {
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)
}
