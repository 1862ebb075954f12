use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::paging::{paged, Paged, Paging};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{LocationInfo, LocationInput};

#[utoipa::path(get, summary = "List VPN locations", path = "/api/v1/location", tag = "locations", security(("bearer" = [])), params(Paging),
    responses((status = 200, body = [LocationInfo], headers(("X-Total-Count" = i64, description = "locations in all")))))]
pub async fn list(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(p): ApiQuery<Paging>,
) -> ApiResult<Paged<LocationInfo>> {
    let (limit, offset) = p.bounds()?;
    Ok(paged(s.core.list_locations_page(limit, offset).await?))
}

#[utoipa::path(post, summary = "Create a VPN location", path = "/api/v1/location", tag = "locations", security(("bearer" = [])), request_body = LocationInput,
    responses((status = 201, body = LocationInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(input): ApiJson<LocationInput>,
) -> ApiResult<(StatusCode, Json<LocationInfo>)> {
    Ok((StatusCode::CREATED, Json(s.core.create_location(&actor, input).await?)))
}

#[utoipa::path(get, summary = "Get a VPN location", path = "/api/v1/location/{id}", tag = "locations", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = LocationInfo), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, _a: Admin, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<LocationInfo>> {
    Ok(Json(s.core.get_location(id).await?))
}

#[utoipa::path(put, summary = "Update a VPN location", path = "/api/v1/location/{id}", tag = "locations", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = LocationInput, responses((status = 200, body = LocationInfo), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<LocationInput>,
) -> ApiResult<Json<LocationInfo>> {
    Ok(Json(s.core.update_location(&actor, id, input).await?))
}

#[utoipa::path(delete, summary = "Delete a VPN location", path = "/api/v1/location/{id}", tag = "locations", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    s.core.delete_location(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
