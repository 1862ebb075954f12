use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::paging::{page_bounds, paged, Paged};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{DeviceInfo, DeviceInput};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceFilter {
    /// Only this user's devices.
    pub username: Option<String>,
    /// Page size: default 100, at most 1000. The total is in the `X-Total-Count` header.
    pub limit: Option<i64>,
    /// Devices to skip (oldest first).
    pub offset: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRename {
    pub name: String,
}

#[utoipa::path(get, summary = "List devices", path = "/api/v1/device", tag = "devices", security(("bearer" = [])), params(DeviceFilter),
    responses((status = 200, body = [DeviceInfo], headers(("X-Total-Count" = i64, description = "devices in all")))))]
pub async fn list(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(f): ApiQuery<DeviceFilter>,
) -> ApiResult<Paged<DeviceInfo>> {
    let (limit, offset) = page_bounds(f.limit, f.offset)?;
    Ok(paged(s.core.list_devices_page(f.username.as_deref(), limit, offset).await?))
}

#[utoipa::path(post, summary = "Add a device for a user", path = "/api/v1/device", tag = "devices", security(("bearer" = [])), request_body = DeviceInput,
    responses((status = 201, body = DeviceInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(input): ApiJson<DeviceInput>,
) -> ApiResult<(StatusCode, Json<DeviceInfo>)> {
    Ok((StatusCode::CREATED, Json(s.core.add_device(&actor, input).await?)))
}

#[utoipa::path(get, summary = "Get a device", path = "/api/v1/device/{id}", tag = "devices", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = DeviceInfo), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, _a: Admin, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<DeviceInfo>> {
    Ok(Json(s.core.get_device(id).await?))
}

#[utoipa::path(put, summary = "Rename a device", path = "/api/v1/device/{id}", tag = "devices", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = DeviceRename, responses((status = 200, body = DeviceInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rename(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<DeviceRename>,
) -> ApiResult<Json<DeviceInfo>> {
    Ok(Json(s.core.rename_device(&actor, id, &r.name).await?))
}

#[utoipa::path(delete, summary = "Delete a device", path = "/api/v1/device/{id}", tag = "devices", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    s.core.delete_device(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
