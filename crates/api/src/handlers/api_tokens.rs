use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{ApiTokenInfo, NewApiToken};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenInput {
    pub name: String,
    /// Admin user the token acts as; defaults to the caller.
    pub username: Option<String>,
}

#[utoipa::path(get, summary = "List API tokens", path = "/api/v1/api_token", tag = "api tokens", security(("bearer" = [])), responses((status = 200, body = [ApiTokenInfo])))]
pub async fn list(State(s): State<AppState>, _a: Admin) -> ApiResult<Json<Vec<ApiTokenInfo>>> {
    Ok(Json(s.core.list_api_tokens().await?))
}

/// Creates a token; the secret is in this response only.
#[utoipa::path(post, summary = "Create an API token", path = "/api/v1/api_token", tag = "api tokens", security(("bearer" = [])), request_body = ApiTokenInput,
    responses((status = 201, body = NewApiToken), (status = 400, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(i): ApiJson<ApiTokenInput>,
) -> ApiResult<(StatusCode, Json<NewApiToken>)> {
    let username = i.username.unwrap_or_else(|| actor.name.clone());
    Ok((StatusCode::CREATED, Json(s.core.create_api_token(&actor, &i.name, &username).await?)))
}

#[utoipa::path(delete, summary = "Revoke an API token", path = "/api/v1/api_token/{id}", tag = "api tokens", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    s.core.revoke_api_token(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
