//! Extractors whose rejections use the error envelope, and admin authentication.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use onramp_core::Actor;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// JSON body; malformed JSON, wrong types, missing fields and oversized bodies become 4xx
/// envelopes naming the problem.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field and the expected type.
            let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_else(|| e.body_text());
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("invalid request body: {detail}"))
        }
        JsonRejection::JsonSyntaxError(e) => {
            let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_else(|| e.body_text());
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("malformed JSON: {detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body larger than {} bytes", crate::MAX_BODY_BYTES),
        ),
        other => ApiError::new(other.status(), "invalid_body", other.body_text()),
    }
}

pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| Self(p.0)).map_err(
            |e: PathRejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    format!("invalid path parameter: {}", e.body_text()),
                )
            },
        )
    }
}

pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| Self(q.0)).map_err(
            |e: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("invalid query: {}", e.body_text()))
            },
        )
    }
}

/// Routes anyone may call without a token (GET or HEAD only). Everything else, including
/// paths that match no route, goes through [`require_admin`]: authentication is deny by
/// default, so a new handler cannot be left open by forgetting an extractor.
const PUBLIC_PATHS: &[&str] = &["/api/v1/health", "/api/v1/openapi.json", "/api/docs", "/metrics"];
/// Path prefixes under which every GET is public (Swagger UI's static assets).
const PUBLIC_PREFIXES: &[&str] = &["/api/docs/"];

pub(crate) fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (PUBLIC_PATHS.contains(&path) || PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)))
}

/// Router-wide layer: authenticates the bearer API token of every non-public request and
/// hands the admin to the handler (via [`Admin`]); refuses the request otherwise.
pub(crate) async fn require_admin(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match bearer(&req) {
        Some(bearer) => match state.core.authenticate_admin(&bearer).await {
            Ok(admin) => {
                let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
                let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let actor = Actor { user_id: Some(admin.user_id), name: admin.username, ip, user_agent, client: None };
                req.extensions_mut().insert(Admin(actor));
                next.run(req).await
            }
            Err(e) => ApiError::from(e).into_response(),
        },
        None => unauthorized().into_response(),
    }
}

fn bearer(req: &Request) -> Option<String> {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::to_owned)
}

fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing API token: send Authorization: Bearer <token>")
}

/// The authenticated admin (bearer API token) of the request, as the actor. Set by
/// [`require_admin`]; a handler on a route the layer let through unauthenticated (a public
/// one) gets 401 rather than running without an admin.
#[derive(Clone)]
pub struct Admin(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Admin>().cloned().ok_or_else(unauthorized)
    }
}

/// JSON body where an empty body means all defaults (automation scripts often POST
/// `start_enrollment` with no body at all).
pub struct JsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0")
            || (req.headers().get(header::CONTENT_TYPE).is_none()
                && req.headers().get(header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(Self(T::default()));
        }
        ApiJson::<T>::from_request(req, state).await.map(|ApiJson(v)| Self(v))
    }
}
