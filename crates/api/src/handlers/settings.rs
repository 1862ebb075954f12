use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use onramp_core::{Settings, SettingsPatch};

/// Settings as shown: the SMTP password is replaced by `password_set`.
fn view(s: Settings) -> serde_json::Value {
    let has_password = s.smtp.password.is_some();
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(smtp) = v.get_mut("smtp").and_then(|s| s.as_object_mut()) {
        smtp.remove("password");
        smtp.insert("password_set".into(), has_password.into());
    }
    v
}

#[utoipa::path(get, summary = "Get the settings", path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, description = "settings; smtp.password is never returned, smtp.password_set tells whether one is stored")))]
pub async fn get(State(s): State<AppState>, _a: Admin) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(view(s.core.settings().await)))
}

#[utoipa::path(patch, summary = "Update the settings", path = "/api/v1/settings", tag = "settings", security(("bearer" = [])), request_body = SettingsPatch,
    responses((status = 200, description = "updated settings"), (status = 400, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(view(s.core.update_settings(&actor, patch).await?)))
}
