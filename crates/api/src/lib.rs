//! Admin REST API (axum). Handlers are thin: extract, call a core use case, map the result.

mod docs;
mod error;
mod extract;
mod handlers;
mod metrics_layer;
mod paging;

pub use docs::ApiDoc;
pub use error::ApiError;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, post};
use axum::Router;
use onramp_core::Core;

/// Largest request body the admin API accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    pub fn new(core: Core) -> Self {
        Self { core, metrics: metrics_layer::handle() }
    }
}

pub fn router(state: AppState) -> Router {
    use handlers::*;
    let api = Router::new()
        .route("/health", get(health::health))
        .route("/user", get(users::list).post(users::create))
        .route("/user/{username}", get(users::get).put(users::update).patch(users::update).delete(users::remove))
        .route("/user/{username}/start_enrollment", post(tokens::start_enrollment))
        .route("/user/{username}/start_desktop", post(tokens::start_desktop))
        .route("/user/{username}/tokens", get(tokens::pending).delete(tokens::revoke_all))
        .route("/user/{username}/tokens/{id}", delete(tokens::revoke_one))
        .route("/provisioning/bulk", post(tokens::bulk))
        .route("/group", get(groups::list).post(groups::create))
        .route("/group/{name}", get(groups::get).put(groups::update).patch(groups::update).delete(groups::remove))
        .route("/group/{name}/member", post(groups::add_member))
        .route("/group/{name}/member/{username}", delete(groups::remove_member))
        .route("/location", get(locations::list).post(locations::create))
        .route("/location/{id}", get(locations::get).put(locations::update).delete(locations::remove))
        .route("/location/{id}/gateway_token", get(gateways::list_tokens).post(gateways::create_token))
        .route("/location/{id}/gateway_token/{token_id}", delete(gateways::revoke_token))
        .route("/location/{id}/stats", get(gateways::stats))
        .route("/device", get(devices::list).post(devices::create))
        .route("/device/network", get(network_devices::list).post(network_devices::create))
        .route("/device/network/start_cli", post(network_devices::start_cli))
        .route("/device/network/{id}", get(network_devices::get).delete(network_devices::remove))
        .route("/device/network/{id}/tokens", delete(network_devices::revoke_tokens))
        .route("/device/{id}", get(devices::get).put(devices::rename).patch(devices::rename).delete(devices::remove))
        .route("/settings", get(settings::get).put(settings::update).patch(settings::update))
        .route("/api_token", get(api_tokens::list).post(api_tokens::create))
        .route("/api_token/{id}", delete(api_tokens::revoke))
        .route("/audit", get(audit::list))
        .route("/mail", get(mail::list))
        .route("/mail/{id}/retry", post(mail::retry))
        .route("/mail/test", post(mail::test))
        .route("/directory/sync", post(directory::sync))
        .route("/directory/status", get(directory::status))
        .route("/user/{username}/directory_link", post(directory::link).delete(directory::unlink))
        .route("/openapi.json", get(docs::openapi_json));
    Router::new()
        .nest("/api/v1", api)
        .route("/api/docs", get(docs::page))
        .route("/api/docs/", get(docs::page))
        .route("/api/docs/{file}", get(docs::asset))
        .route("/metrics", get(health::metrics))
        // Unknown API paths answer in the API's JSON envelope (after authentication); every
        // other path belongs to the web UI, merged beside this router.
        .route("/api/{*rest}", any(error::not_found))
        .method_not_allowed_fallback(error::method_not_allowed)
        // Deny by default: only the routes `extract::is_public` lists answer without a token.
        .layer(axum::middleware::from_fn_with_state(state.clone(), extract::require_admin))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(metrics_layer::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
