//! The edge API's OpenAPI document (`GET /api/v1/openapi.json`), so clients and fuzzers
//! work from the same description as the admin API. The wire types are PROTOCOL.md's
//! (`onramp_proto`); the few answers that are not are described here.

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Onramp enrollment edge API",
        description = "The public enrollment API (PROTOCOL.md section 3): \
        enrollment with a token, device registration, configuration polling and password reset. \
        A session opened by `start` continues with its cookie, or with `token` in the body. \
        Requests per client address are limited: 429 with `Retry-After` above the limit."
    ),
    paths(
        crate::start,
        crate::activate_user,
        crate::create_device,
        crate::network_info,
        crate::poll,
        crate::password_reset_request,
        crate::password_reset_start,
        crate::password_reset,
        crate::health,
        crate::info,
    )
)]
pub struct EdgeDoc;

/// `poll`'s answer.
#[derive(Serialize, ToSchema)]
pub struct PollResponse {
    pub device_config: onramp_proto::DeviceConfigResponse,
}

/// `password-reset/start`'s answer: when the reset session ends (Unix seconds).
#[derive(Serialize, ToSchema)]
pub struct ResetStartResponse {
    pub deadline_timestamp: i64,
}

/// `health`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when connected.
    pub status: Option<String>,
    /// `connected` or `disconnected`.
    pub core: String,
    /// Why the edge cannot serve enrollments, when it cannot.
    pub error: Option<String>,
}

/// `info`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Info {
    pub version: String,
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(EdgeDoc::openapi())
}
