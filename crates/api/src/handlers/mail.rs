use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::mail::OutboxEntry;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MailParams {
    /// `pending`, `sent` or `failed`.
    pub status: Option<String>,
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/mail", tag = "mail", security(("bearer" = [])), params(MailParams),
    responses((status = 200, body = [OutboxEntry]), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(p): ApiQuery<MailParams>,
) -> ApiResult<Json<Vec<OutboxEntry>>> {
    Ok(Json(s.core.list_mail(p.status.as_deref(), p.limit.unwrap_or(100)).await?))
}

#[utoipa::path(post, path = "/api/v1/mail/{id}/retry", tag = "mail", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 202), (status = 404, body = ErrorBody)))]
pub async fn retry(State(s): State<AppState>, Admin(actor): Admin, ApiPath(id): ApiPath<i64>) -> ApiResult<StatusCode> {
    s.core.retry_mail(&actor, id).await?;
    Ok(StatusCode::ACCEPTED)
}
