//! Admin web UI and self-service portal: server-rendered pages (maud) on core's admin
//! address, with vendored htmx for small enhancements. Every page calls the same core use
//! cases as the REST API; this crate holds no SQL and no business rules.

mod assets;
mod auth;
mod forms;
mod layout;
mod pages;
mod qr;

use axum::routing::{get, post};
use axum::Router;
use onramp_core::Core;
use std::sync::Arc;

/// Largest form body the UI accepts (settings templates are the biggest).
pub const MAX_FORM_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    /// Mark cookies `Secure` (the admin address is served over HTTPS).
    pub secure_cookies: bool,
    /// Proxies in front of the admin address whose `X-Forwarded-For` counts.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Clone)]
pub(crate) struct Ui {
    pub core: Core,
    pub cfg: Arc<UiConfig>,
}

/// The UI's routes. Merged beside the REST API's: the API owns `/api/*` and `/metrics`,
/// the UI everything else (and the HTML 404).
pub fn router(core: Core, cfg: UiConfig) -> Router {
    use pages::*;
    let ui = Ui { core, cfg: Arc::new(cfg) };
    Router::new()
        .route("/", get(home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/{file}", get(assets::asset))
        .route("/users", get(users::list))
        .route("/users/new", get(users::new_form).post(users::create))
        .route("/users/bulk", post(users::bulk))
        .route("/users/{username}", get(users::edit_form).post(users::update))
        .route("/users/{username}/delete", get(users::delete_form).post(users::delete))
        .route("/users/{username}/active", post(users::set_active))
        .route("/users/{username}/revoke", post(users::revoke))
        .route("/users/{username}/directory-link", post(users::directory_link))
        .route("/users/{username}/devices", get(users::devices))
        .route("/users/{username}/devices/{id}/delete", post(users::delete_device))
        .route("/users/{username}/devices/{id}/config", get(users::device_config))
        .route("/users/{username}/enroll", get(tokens::enroll_dialog).post(tokens::enroll))
        .route("/users/{username}/desktop", get(tokens::desktop_dialog).post(tokens::desktop))
        .route("/provisioning.json", post(tokens::provisioning_file))
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/{name}", get(groups::show))
        .route("/groups/{name}/members", post(groups::add_member))
        .route("/groups/{name}/members/{username}/remove", post(groups::remove_member))
        .route("/groups/{name}/delete", post(groups::delete))
        .route("/locations", get(locations::list))
        .route("/locations/new", get(locations::new_form).post(locations::create))
        .route("/locations/{id}", get(locations::show).post(locations::update))
        .route("/locations/{id}/delete", post(locations::delete))
        .route("/locations/{id}/gateway-tokens", post(locations::create_gateway_token))
        .route("/locations/{id}/gateway-tokens/{token_id}/revoke", post(locations::revoke_gateway_token))
        .route("/me", get(me::page))
        .route("/me/desktop", post(me::desktop))
        .route("/me/password", post(me::change_password))
        .route("/me/devices/{id}/delete", post(me::delete_device))
        .route("/settings/enrollment", get(settings::enrollment).post(settings::save_enrollment))
        .route("/settings/smtp", get(settings::smtp).post(settings::save_smtp))
        .route("/settings/smtp/test", post(settings::test_smtp))
        .route("/settings/directory", get(directory::show).post(directory::save))
        .route("/settings/directory/sync", post(directory::run))
        .route("/settings/entra", get(entra::show).post(entra::save))
        .route("/settings/entra/sync", post(entra::run))
        .route("/api-tokens", get(ops::api_tokens).post(ops::create_api_token))
        .route("/api-tokens/{id}/revoke", post(ops::revoke_api_token))
        .route("/audit", get(ops::audit))
        .route("/mail", get(ops::mail))
        .route("/mail/{id}/retry", post(ops::retry_mail))
        .fallback(layout::not_found)
        // Deny by default: every non-GET request needs a live session and its CSRF token.
        .layer(axum::middleware::from_fn_with_state(ui.clone(), auth::csrf_guard))
        .layer(axum::middleware::from_fn(layout::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(ui)
}
