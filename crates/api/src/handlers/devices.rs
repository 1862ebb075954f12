use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
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

/// Default and largest page of `GET /device`.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRename {
    pub name: String,
}

#[utoipa::path(get, path = "/api/v1/device", tag = "devices", security(("bearer" = [])), params(DeviceFilter),
    responses((status = 200, body = [DeviceInfo], headers(("X-Total-Count" = i64, description = "devices in all")))))]
pub async fn list(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(f): ApiQuery<DeviceFilter>,
) -> ApiResult<([(&'static str, String); 1], Json<Vec<DeviceInfo>>)> {
    // An array stays the body (scripts read it as before); the total goes in a header.
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(onramp_core::CoreError::invalid_input("limit", format!("must be between 1 and {MAX_LIMIT}")).into());
    }
    let offset = f.offset.unwrap_or(0);
    if offset < 0 {
        return Err(onramp_core::CoreError::invalid_input("offset", "must be 0 or more").into());
    }
    let (page, total) = s.core.list_devices_page(f.username.as_deref(), limit, offset).await?;
    Ok(([("x-total-count", total.to_string())], Json(page)))
}

#[utoipa::path(post, path = "/api/v1/device", tag = "devices", security(("bearer" = [])), request_body = DeviceInput,
    responses((status = 201, body = DeviceInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(input): ApiJson<DeviceInput>,
) -> ApiResult<(StatusCode, Json<DeviceInfo>)> {
    Ok((StatusCode::CREATED, Json(s.core.add_device(&actor, input).await?)))
}

#[utoipa::path(get, path = "/api/v1/device/{id}", tag = "devices", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = DeviceInfo), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, _a: Admin, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<DeviceInfo>> {
    Ok(Json(s.core.get_device(id).await?))
}

#[utoipa::path(put, path = "/api/v1/device/{id}", tag = "devices", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = DeviceRename, responses((status = 200, body = DeviceInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rename(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<DeviceRename>,
) -> ApiResult<Json<DeviceInfo>> {
    Ok(Json(s.core.rename_device(&actor, id, &r.name).await?))
}

#[utoipa::path(delete, path = "/api/v1/device/{id}", tag = "devices", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    s.core.delete_device(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
