//! The one mapping from use-case errors to HTTP: every error body is JSON naming a code and
//! saying what is wrong (`field` too when one input is at fault). Alipay's failures are named as
//! Alipay's (502), the database's as the database's (503), a race as a conflict (409).

use crate::alipay::client::AlipayError;
use crate::domain::lifecycle::RuleError;
use crate::service::checks::CheckError;
use crate::service::lifecycle::LifecycleError;
use crate::service::merchant_sync::SyncError;
use crate::service::pipeline::PipelineError;
use crate::service::support::SupportError;
use crate::service::views::ViewError;
use crate::store::StoreError;
use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde_json::json;

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> Self {
        ApiError {
            status,
            code,
            message: message.to_string(),
            field: None,
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} {id:?}"),
        )
    }

    /// Names what was not found, for errors that only know an id.
    pub fn about(mut self, what: &str, id: &str) -> Self {
        if self.status == StatusCode::NOT_FOUND {
            self.message = format!("no {what} {id:?}");
        }
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        HttpResponse::build(self.status).json(body)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::Corrupt(_) => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt_data"),
        };
        ApiError::new(status, code, e)
    }
}

impl From<AlipayError> for ApiError {
    fn from(e: AlipayError) -> Self {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "alipay_unavailable",
            format!("Alipay: {e}"),
        )
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(id) => ApiError::not_found("order", &id),
            LifecycleError::Rule(RuleError::MissingSupportField(field)) => ApiError {
                field: Some(field.to_string()),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "missing_field",
                    format!("{field} is required"),
                )
            },
            LifecycleError::Rule(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_transition", e)
            }
            LifecycleError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the order changed concurrently; retry",
            ),
            LifecycleError::Store(e) => e.into(),
            LifecycleError::Alipay(e) => e.into(),
            LifecycleError::Unexpected(m) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
            }
        }
    }
}

impl From<SupportError> for ApiError {
    fn from(e: SupportError) -> Self {
        match e {
            SupportError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found")
            }
            SupportError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", m)
            }
            SupportError::Store(e) => e.into(),
        }
    }
}

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::Store(e) => e.into(),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Store(e) => e.into(),
            PipelineError::Lifecycle(e) => e.into(),
            PipelineError::NotFound(app) => ApiError::not_found("build for mini program", &app),
            PipelineError::Refused(m) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", m)
            }
            PipelineError::Token(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_data", e)
            }
        }
    }
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::NotFound(id) => ApiError::not_found("authorization", &id),
            CheckError::NotActive(..) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", e)
            }
            CheckError::Store(e) => e.into(),
            CheckError::Lifecycle(e) => e.into(),
            CheckError::Pipeline(e) => e.into(),
            CheckError::Alipay(e) => e.into(),
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Invalid(violations) => match violations.first() {
                Some(first) => ApiError {
                    field: Some(first.field.clone()),
                    ..ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        first.code.as_str(),
                        &first.message,
                    )
                },
                None => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "invalid"),
            },
            SyncError::NotAuthorized(app) => ApiError {
                field: Some("ext_info.tiny_app_id".into()),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not_authorized",
                    format!("mini program {app} has no active authorization"),
                )
            },
            SyncError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the order changed concurrently; retry",
            ),
            SyncError::CorruptRecord(..) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_data", e)
            }
            SyncError::Store(e) => e.into(),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::from(e).into()
    }
}

pub fn json_error(
    status: StatusCode,
    code: &'static str,
    message: impl std::fmt::Display,
) -> HttpResponse {
    ApiError::new(status, code, message).error_response()
}

pub fn not_found(what: &str, id: &str) -> HttpResponse {
    ApiError::not_found(what, id).error_response()
}

/// The response for any error the API maps.
pub fn respond_error(e: impl Into<ApiError>) -> HttpResponse {
    e.into().error_response()
}
