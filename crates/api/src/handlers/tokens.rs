use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, JsonOrEmpty};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{BulkOutcome, BulkRequest, PendingToken};
use onramp_proto::{StartEnrollmentRequest, StartEnrollmentResponse};
use serde::Serialize;

#[utoipa::path(post, summary = "Issue an enrollment token", path = "/api/v1/user/{username}/start_enrollment", tag = "provisioning", security(("bearer" = [])),
    params(("username" = String, Path)), request_body = StartEnrollmentRequest,
    responses((status = 201, body = StartEnrollmentResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn start_enrollment(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(username): ApiPath<String>,
    JsonOrEmpty(body): JsonOrEmpty<StartEnrollmentRequest>,
) -> ApiResult<(StatusCode, Json<StartEnrollmentResponse>)> {
    let r = s.core.start_enrollment(&actor, &username, body).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[utoipa::path(post, summary = "Issue a desktop-configuration token", path = "/api/v1/user/{username}/start_desktop", tag = "provisioning", security(("bearer" = [])),
    params(("username" = String, Path)), request_body = StartEnrollmentRequest,
    responses((status = 201, body = StartEnrollmentResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn start_desktop(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(username): ApiPath<String>,
    JsonOrEmpty(body): JsonOrEmpty<StartEnrollmentRequest>,
) -> ApiResult<(StatusCode, Json<StartEnrollmentResponse>)> {
    let r = s.core.start_desktop(&actor, &username, body).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[utoipa::path(get, summary = "List a user's pending tokens", path = "/api/v1/user/{username}/tokens", tag = "provisioning", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = [PendingToken]), (status = 404, body = ErrorBody)))]
pub async fn pending(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<Vec<PendingToken>>> {
    Ok(Json(s.core.pending_tokens(&username).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

#[utoipa::path(delete, summary = "Revoke all of a user's pending tokens", path = "/api/v1/user/{username}/tokens", tag = "provisioning", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = Revoked), (status = 404, body = ErrorBody)))]
pub async fn revoke_all(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<Revoked>> {
    Ok(Json(Revoked { revoked: s.core.revoke_tokens(&actor, &username, None).await? }))
}

#[utoipa::path(delete, summary = "Revoke one pending token", path = "/api/v1/user/{username}/tokens/{id}", tag = "provisioning", security(("bearer" = [])),
    params(("username" = String, Path), ("id" = i64, Path)), responses((status = 200, body = Revoked), (status = 404, body = ErrorBody)))]
pub async fn revoke_one(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath((username, id)): ApiPath<(String, i64)>,
) -> ApiResult<Json<Revoked>> {
    Ok(Json(Revoked { revoked: s.core.revoke_tokens(&actor, &username, Some(id)).await? }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BulkItem {
    pub username: String,
    pub email: String,
    /// `enrollment`, `desktop_config`, or absent when skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BulkResponse {
    pub issued: usize,
    pub skipped: usize,
    pub results: Vec<BulkItem>,
}

/// Issues tokens for a whole group and/or a list of users in one transaction.
#[utoipa::path(post, summary = "Issue tokens in bulk", path = "/api/v1/provisioning/bulk", tag = "provisioning", security(("bearer" = [])), request_body = BulkRequest,
    responses((status = 201, body = BulkResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn bulk(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<BulkRequest>,
) -> ApiResult<(StatusCode, Json<BulkResponse>)> {
    let outcomes = s.core.issue_bulk(&actor, req).await?;
    let results: Vec<BulkItem> = outcomes
        .into_iter()
        .map(|o| match o {
            BulkOutcome::Issued(t) => BulkItem {
                username: t.username,
                email: t.email,
                kind: Some(t.kind.as_str().to_owned()),
                enrollment_token: Some(t.token.expose().to_owned()),
                enrollment_url: Some(t.enrollment_url),
                expires_at: Some(t.expires_at),
                skipped: None,
            },
            BulkOutcome::Skipped { username, email, reason } => BulkItem {
                username,
                email,
                kind: None,
                enrollment_token: None,
                enrollment_url: None,
                expires_at: None,
                skipped: Some(reason),
            },
        })
        .collect();
    let issued = results.iter().filter(|r| r.skipped.is_none()).count();
    Ok((StatusCode::CREATED, Json(BulkResponse { issued, skipped: results.len() - issued, results })))
}
