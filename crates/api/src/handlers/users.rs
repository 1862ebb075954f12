use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::paging::{paged, Paged, Paging};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{UserInfo, UserInput, UserPatch};

#[utoipa::path(get, summary = "List users", path = "/api/v1/user", tag = "users", security(("bearer" = [])), params(Paging),
    responses((status = 200, body = [UserInfo], headers(("X-Total-Count" = i64, description = "users in all"))), (status = 401, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, _a: Admin, ApiQuery(p): ApiQuery<Paging>) -> ApiResult<Paged<UserInfo>> {
    let (limit, offset) = p.bounds()?;
    Ok(paged(s.core.list_users_page(limit, offset).await?))
}

#[utoipa::path(post, summary = "Create a user", path = "/api/v1/user", tag = "users", security(("bearer" = [])), request_body = UserInput,
    responses((status = 201, body = UserInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(input): ApiJson<UserInput>,
) -> ApiResult<(StatusCode, Json<UserInfo>)> {
    Ok((StatusCode::CREATED, Json(s.core.create_user(&actor, input).await?)))
}

#[utoipa::path(get, summary = "Get a user", path = "/api/v1/user/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = UserInfo), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<UserInfo>> {
    Ok(Json(s.core.get_user(&username).await?))
}

#[utoipa::path(put, summary = "Update a user", path = "/api/v1/user/{username}", tag = "users", security(("bearer" = [])), request_body = UserPatch,
    params(("username" = String, Path)), responses((status = 200, body = UserInfo), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(username): ApiPath<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<UserInfo>> {
    Ok(Json(s.core.update_user(&actor, &username, patch).await?))
}

#[utoipa::path(delete, summary = "Delete a user", path = "/api/v1/user/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.core.delete_user(&actor, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}
