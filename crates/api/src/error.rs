//! One JSON error envelope for every failure: `{"error": message, "code": code, "field"?}`.
//! `error` is a human message (the same key as the edge API's `{"error": ...}`), `code` a
//! stable machine-readable identifier, `field` the offending input when there is one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use onramp_core::CoreError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Stable machine-readable code, e.g. `not_found`, `invalid_input`, `conflict`.
    pub code: String,
    /// The input field at fault, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, code: self.code.to_owned(), field: self.field.map(str::to_owned) };
        (self.status, Json(body)).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let status = match &e {
            CoreError::Invalid(_) | CoreError::Refused { .. } | CoreError::UnknownToken | CoreError::Token(_) => {
                StatusCode::BAD_REQUEST
            }
            CoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            CoreError::Conflict { .. } => StatusCode::CONFLICT,
            CoreError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            CoreError::Forbidden(_) => StatusCode::FORBIDDEN,
            CoreError::Internal(detail) => {
                // Logged once here; the caller gets a generic message.
                tracing::error!(detail = %detail, "internal error");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error");
            }
        };
        Self { status, code: e.code(), field: e.field(), message: e.to_string() }
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this endpoint")
}

pub type ApiResult<T> = Result<T, ApiError>;
