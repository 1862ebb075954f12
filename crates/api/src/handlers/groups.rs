use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::paging::{paged, Paged, Paging};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{GroupInfo, GroupInput};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub is_admin: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    pub username: String,
}

#[utoipa::path(get, summary = "List groups", path = "/api/v1/group", tag = "groups", security(("bearer" = [])), params(Paging),
    responses((status = 200, body = [GroupInfo], headers(("X-Total-Count" = i64, description = "groups in all")))))]
pub async fn list(State(s): State<AppState>, _a: Admin, ApiQuery(p): ApiQuery<Paging>) -> ApiResult<Paged<GroupInfo>> {
    let (limit, offset) = p.bounds()?;
    Ok(paged(s.core.list_groups_page(limit, offset).await?))
}

#[utoipa::path(post, summary = "Create a group", path = "/api/v1/group", tag = "groups", security(("bearer" = [])), request_body = GroupInput,
    responses((status = 201, body = GroupInfo), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(input): ApiJson<GroupInput>,
) -> ApiResult<(StatusCode, Json<GroupInfo>)> {
    Ok((StatusCode::CREATED, Json(s.core.create_group(&actor, input).await?)))
}

#[utoipa::path(get, summary = "Get a group", path = "/api/v1/group/{name}", tag = "groups", security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 200, body = GroupInfo), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, _a: Admin, ApiPath(name): ApiPath<String>) -> ApiResult<Json<GroupInfo>> {
    Ok(Json(s.core.get_group(&name).await?))
}

#[utoipa::path(put, summary = "Update a group", path = "/api/v1/group/{name}", tag = "groups", security(("bearer" = [])), params(("name" = String, Path)),
    request_body = GroupUpdate, responses((status = 200, body = GroupInfo), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(u): ApiJson<GroupUpdate>,
) -> ApiResult<Json<GroupInfo>> {
    Ok(Json(s.core.update_group(&actor, &name, u.name, u.is_admin).await?))
}

#[utoipa::path(delete, summary = "Delete a group", path = "/api/v1/group/{name}", tag = "groups", security(("bearer" = [])), params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.core.delete_group(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, summary = "Add a member to a group", path = "/api/v1/group/{name}/member", tag = "groups", security(("bearer" = [])), params(("name" = String, Path)),
    request_body = MemberInput, responses((status = 201, body = GroupInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_member(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(m): ApiJson<MemberInput>,
) -> ApiResult<(StatusCode, Json<GroupInfo>)> {
    Ok((StatusCode::CREATED, Json(s.core.add_group_member(&actor, &name, &m.username).await?)))
}

#[utoipa::path(delete, summary = "Remove a member from a group", path = "/api/v1/group/{name}/member/{username}", tag = "groups", security(("bearer" = [])),
    params(("name" = String, Path), ("username" = String, Path)), responses((status = 200, body = GroupInfo), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath((name, username)): ApiPath<(String, String)>,
) -> ApiResult<Json<GroupInfo>> {
    Ok(Json(s.core.remove_group_member(&actor, &name, &username).await?))
}
