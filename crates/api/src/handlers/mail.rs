use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::mail::{MailTestOutcome, OutboxEntry};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MailParams {
    /// `pending`, `retrying`, `sent`, `failed` or `cancelled`.
    pub status: Option<String>,
    pub limit: Option<i64>,
}

/// List the mail outbox
///
/// Newest first. A message that keeps failing is `retrying` (attempt `attempts` of
/// `max_attempts`, `last_error`, `next_attempt_at`) and `failed` after the last attempt.
#[utoipa::path(get, summary = "List the mail outbox", path = "/api/v1/mail", tag = "mail", security(("bearer" = [])), params(MailParams),
    responses((status = 200, body = [OutboxEntry]), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(p): ApiQuery<MailParams>,
) -> ApiResult<Json<Vec<OutboxEntry>>> {
    Ok(Json(s.core.list_mail(p.status.as_deref(), p.limit.unwrap_or(100)).await?))
}

/// Retry a message now
///
/// A `retrying` message is tried at once; a `failed` one gets one more attempt (unless its
/// body, which held a token, was erased: 409).
#[utoipa::path(post, summary = "Retry a message now", path = "/api/v1/mail/{id}/retry", tag = "mail", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 202), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(State(s): State<AppState>, Admin(actor): Admin, ApiPath(id): ApiPath<i64>) -> ApiResult<StatusCode> {
    s.core.retry_mail(&actor, id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailTestRequest {
    /// Recipient address.
    pub to: String,
}

/// Send a test message
///
/// Sends at once with the stored SMTP settings (not through the outbox) and returns the SMTP
/// server's answer: its reply code and text, or the error. `delivered` is false when the
/// server refused or could not be reached; the HTTP status is still 200.
#[utoipa::path(post, summary = "Send a test message", path = "/api/v1/mail/test", tag = "mail", security(("bearer" = [])), request_body = MailTestRequest,
    responses((status = 200, body = MailTestOutcome), (status = 400, body = ErrorBody)))]
pub async fn test(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<MailTestRequest>,
) -> ApiResult<Json<MailTestOutcome>> {
    Ok(Json(s.core.send_test_mail(&actor, &req.to).await?))
}
