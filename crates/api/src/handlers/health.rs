use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

/// Liveness and database reachability.
#[utoipa::path(get, summary = "Health check", path = "/api/v1/health", tag = "system",
    responses((status = 200, description = "core and database up"), (status = 503, description = "database unreachable")))]
pub async fn health(State(s): State<AppState>) -> impl IntoResponse {
    if s.core.health().await {
        (StatusCode::OK, Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({"status": "error", "error": "database unreachable", "code": "database_unavailable"}),
            ),
        )
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
