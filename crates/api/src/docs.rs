//! OpenAPI document and an interactive docs page (Swagger UI, served from embedded assets:
//! no CDN, works offline).

use crate::error::ApiError;
use crate::handlers::*;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Onramp admin API", description = "Users, groups, VPN locations, gateways, devices, network devices, enrollment tokens, settings and audit. \
        Authenticate with `Authorization: Bearer <API token>` (create one with `onramp admin api-token create`)."),
    paths(
        health::health,
        users::list, users::create, users::get, users::update, users::remove,
        tokens::start_enrollment, tokens::start_desktop, tokens::pending, tokens::revoke_all, tokens::revoke_one, tokens::bulk,
        groups::list, groups::create, groups::get, groups::update, groups::remove, groups::add_member, groups::remove_member,
        locations::list, locations::create, locations::get, locations::update, locations::remove,
        gateways::create_token, gateways::list_tokens, gateways::revoke_token, gateways::stats,
        devices::list, devices::create, devices::get, devices::rename, devices::remove,
        network_devices::create, network_devices::list, network_devices::get, network_devices::remove, network_devices::start_cli,
        network_devices::revoke_tokens,
        settings::get, settings::update,
        api_tokens::list, api_tokens::create, api_tokens::revoke,
        audit::list,
        mail::list, mail::retry, mail::test,
        directory::sync, directory::status, directory::link, directory::unlink,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Onramp admin API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/api/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script></body></html>"#;

const INIT: &str = r##"window.ui = SwaggerUIBundle({ url: "/api/v1/openapi.json", dom_id: "#swagger-ui", persistAuthorization: false });"##;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (ct, body): (&str, &'static [u8]) = match file.as_str() {
        "swagger-ui-bundle.js" => ("text/javascript", include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js")),
        "swagger-ui.css" => ("text/css", include_bytes!("../assets/swagger-ui/swagger-ui.css")),
        "init.js" => ("text/javascript", INIT.as_bytes()),
        _ => return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}
