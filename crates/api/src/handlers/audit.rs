use crate::error::ApiResult;
use crate::extract::{Admin, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use onramp_core::{AuditEntry, AuditQuery};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// e.g. `enrollment_token.added`
    pub action: Option<String>,
    /// Acting username.
    pub actor: Option<String>,
    /// Unix seconds.
    pub since: Option<i64>,
    /// Page backwards: events with id below this.
    pub before_id: Option<i64>,
    /// 1-1000, default 100.
    pub limit: Option<i64>,
}

#[utoipa::path(get, summary = "List audit events", path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = [AuditEntry])))]
pub async fn list(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    Ok(Json(
        s.core
            .list_audit(AuditQuery {
                action: p.action,
                actor: p.actor,
                since: p.since,
                before_id: p.before_id,
                limit: p.limit,
            })
            .await?,
    ))
}
