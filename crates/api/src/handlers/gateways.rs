use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiPath, JsonOrEmpty};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{GatewayTokenInfo, LocationStats, NewGatewayToken};
use serde::Deserialize;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayTokenInput {
    /// A note telling tokens apart, e.g. the gateway's host.
    pub name: Option<String>,
}

/// Creates a token for the location's gateway agent; the secret is in this response only.
#[utoipa::path(post, summary = "Create a gateway token", path = "/api/v1/location/{id}/gateway_token", tag = "gateways", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = GatewayTokenInput,
    responses((status = 201, body = NewGatewayToken), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(id): ApiPath<i64>,
    JsonOrEmpty(i): JsonOrEmpty<GatewayTokenInput>,
) -> ApiResult<(StatusCode, Json<NewGatewayToken>)> {
    Ok((StatusCode::CREATED, Json(s.core.create_gateway_token(&actor, id, i.name.as_deref()).await?)))
}

/// The location's gateway tokens (never the secrets).
#[utoipa::path(get, summary = "List a location's gateway tokens", path = "/api/v1/location/{id}/gateway_token", tag = "gateways", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = [GatewayTokenInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<GatewayTokenInfo>>> {
    Ok(Json(s.core.list_gateway_tokens(id).await?))
}

/// Revokes a token; gateways connected with it are disconnected.
#[utoipa::path(delete, summary = "Revoke a gateway token", path = "/api/v1/location/{id}/gateway_token/{token_id}", tag = "gateways", security(("bearer" = [])),
    params(("id" = i64, Path), ("token_id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath((id, token_id)): ApiPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    s.core.revoke_gateway_token(&actor, id, token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The location's gateways (connected or not, version, last contact) and its devices'
/// counters as the gateway reported them.
#[utoipa::path(get, summary = "Peer statistics of a location", path = "/api/v1/location/{id}/stats", tag = "gateways", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 200, body = LocationStats), (status = 404, body = ErrorBody)))]
pub async fn stats(State(s): State<AppState>, _a: Admin, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<LocationStats>> {
    Ok(Json(s.core.location_stats(id).await?))
}
