//! Network devices: headless machines (servers, routers) of one location, with no user.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::handlers::tokens::Revoked;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{NetworkDeviceInfo, NetworkDeviceInput, StartCliRequest};
use onramp_proto::StartEnrollmentResponse;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NetworkDeviceFilter {
    /// Only this location's network devices (by name).
    pub location: Option<String>,
}

/// Creates a network device in one location: `assigned_ips` (inside the location's subnets
/// and free), or when absent one free address per subnet of the location.
#[utoipa::path(post, summary = "Add a network device", path = "/api/v1/device/network", tag = "network devices", security(("bearer" = [])),
    request_body = NetworkDeviceInput,
    responses((status = 201, body = NetworkDeviceInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(input): ApiJson<NetworkDeviceInput>,
) -> ApiResult<(StatusCode, Json<NetworkDeviceInfo>)> {
    Ok((StatusCode::CREATED, Json(s.core.create_network_device(&actor, input).await?)))
}

#[utoipa::path(get, summary = "List network devices", path = "/api/v1/device/network", tag = "network devices", security(("bearer" = [])),
    params(NetworkDeviceFilter), responses((status = 200, body = [NetworkDeviceInfo]), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(f): ApiQuery<NetworkDeviceFilter>,
) -> ApiResult<Json<Vec<NetworkDeviceInfo>>> {
    Ok(Json(s.core.list_network_devices(f.location.as_deref()).await?))
}

#[utoipa::path(get, summary = "Get a network device", path = "/api/v1/device/network/{id}", tag = "network devices", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = NetworkDeviceInfo), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<NetworkDeviceInfo>> {
    Ok(Json(s.core.get_network_device(id).await?))
}

/// Deletes a network device; its gateway drops the peer and its unused tokens are revoked.
#[utoipa::path(delete, summary = "Delete a network device", path = "/api/v1/device/network/{id}", tag = "network devices", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    s.core.delete_network_device(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token (shown once) with which a headless client enrolls the device through the edge:
/// `enrollment/start`, then `create_device` with its own public key. Revokes the device's
/// earlier unused tokens.
#[utoipa::path(post, summary = "Start a network device's enrollment", path = "/api/v1/device/network/start_cli", tag = "network devices", security(("bearer" = [])),
    request_body = StartCliRequest,
    responses((status = 201, body = StartEnrollmentResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn start_cli(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<StartCliRequest>,
) -> ApiResult<(StatusCode, Json<StartEnrollmentResponse>)> {
    Ok((StatusCode::CREATED, Json(s.core.start_network_device_cli(&actor, req).await?)))
}

/// Revokes the device's unused enrollment tokens (a token already used stays as it is).
#[utoipa::path(delete, summary = "Revoke a network device's tokens", path = "/api/v1/device/network/{id}/tokens", tag = "network devices", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = Revoked), (status = 404, body = ErrorBody)))]
pub async fn revoke_tokens(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Revoked>> {
    Ok(Json(Revoked { revoked: s.core.revoke_network_device_tokens(&actor, id).await? }))
}
