//! The public enrollment edge (PROTOCOL.md section 3). It holds no database and no
//! long-lived secret: every request becomes one [`EdgeRequest`] sent to core through a
//! [`CoreLink`], so a compromised edge can only do what the enrollment API allows.

mod docs;
mod limit;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use onramp_proto::link::{ClientMeta, EdgeCall, EdgeReply, EdgeRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use limit::RateLimiter;

/// Session cookie name fixed by PROTOCOL.md (desktop clients copy it by hand).
pub const SESSION_COOKIE: &str = "defguard_proxy";
/// The password-reset session's own cookie, so a reset and an enrollment in one browser
/// do not overwrite each other's session.
pub const RESET_COOKIE: &str = "onramp_reset";
/// Largest request body the public API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub use onramp_proto::link::{CoreLink, LinkError, LinkFuture};

#[derive(Clone)]
pub struct EdgeConfig {
    /// Mark cookies `Secure` (the edge is reached over HTTPS, directly or via a proxy).
    pub secure_cookies: bool,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies): addresses or ranges.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Requests per second per client IP (burst = 4 s worth); 0 disables the limit.
    pub rate_limit_per_sec: u32,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self { secure_cookies: false, trusted_proxies: vec![], rate_limit_per_sec: 30 }
    }
}

#[derive(Clone)]
struct EdgeState {
    link: Arc<dyn CoreLink>,
    cfg: Arc<EdgeConfig>,
    limiter: Arc<RateLimiter>,
    ids: Arc<AtomicU64>,
}

pub fn router(link: Arc<dyn CoreLink>, cfg: EdgeConfig) -> Router {
    let limiter = Arc::new(RateLimiter::new(cfg.rate_limit_per_sec));
    let state = EdgeState { link, cfg: Arc::new(cfg), limiter, ids: Arc::new(AtomicU64::new(1)) };
    let api = Router::new()
        .route("/enrollment/start", post(start))
        .route("/enrollment/activate_user", post(activate_user))
        .route("/enrollment/create_device", post(create_device))
        .route("/enrollment/network_info", post(network_info))
        .route("/poll", post(poll))
        .route("/password-reset/request", post(password_reset_request))
        .route("/password-reset/start", post(password_reset_start))
        .route("/password-reset/reset", post(password_reset))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/openapi.json", get(docs::openapi_json))
        .fallback(|| async { edge_error(StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/", get(wizard_page))
        .route("/password-reset", get(reset_page))
        .route("/assets/{file}", get(asset))
        .nest("/api/v1", api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
}

fn edge_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Security headers on every response; API answers are never cached. Under HTTPS browsers
/// are also told to refuse plain HTTP to this host from then on (HSTS).
async fn security_headers(State(s): State<EdgeState>, req: Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if s.cfg.secure_cookies {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Per-IP rate limit in front of the API.
async fn guard(State(s): State<EdgeState>, req: Request, next: axum::middleware::Next) -> Response {
    let ip = client_ip(&s.cfg, &req);
    if let Some(ip) = ip {
        if let Err(retry_after) = s.limiter.check(ip) {
            let mut r = edge_error(StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            return r;
        }
    }
    next.run(req).await
}

/// The client's address: the peer, unless the peer is a trusted proxy; then the
/// `X-Forwarded-For` chain is walked from the right (each proxy appends the address it saw)
/// past every trusted proxy, so a client cannot forge its address by sending the header.
fn client_ip(cfg: &EdgeConfig, req: &Request) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    Some(forwarded_client(&cfg.trusted_proxies, peer, req.headers()))
}

fn forwarded_client(trusted: &[ipnet::IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    onramp_domain::net::forwarded_client(trusted, peer, &hops)
}

fn meta(cfg: &EdgeConfig, req: &Request) -> ClientMeta {
    let h = req.headers();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(512).collect::<String>());
    ClientMeta {
        ip: client_ip(cfg, req).map(|i| i.to_string()),
        user_agent: text("user-agent"),
        client_version: text("defguard-client-version"),
        client_platform: text("defguard-client-platform"),
    }
}

/// The session credential: the body's `token` field (the token itself), else the opaque
/// session id in the cookie `name`; core resolves either.
fn session_token(headers: &HeaderMap, body_token: Option<String>, name: &str) -> Option<String> {
    body_token.filter(|t| !t.is_empty()).or_else(|| {
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
            |c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name && !v.is_empty()).then(|| v.to_owned())
            },
        )
    })
}

/// Parses the JSON body with PROTOCOL.md-style errors.
async fn body<T: for<'de> Deserialize<'de>>(req: Request) -> Result<T, Response> {
    match Json::<T>::from_request(req, &()).await {
        Ok(Json(v)) => Ok(v),
        Err(rej) => {
            let status = if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            let detail = std::error::Error::source(&rej).map(ToString::to_string).unwrap_or_else(|| rej.body_text());
            Err(edge_error(status, &format!("invalid request: {detail}")))
        }
    }
}

async fn forward(s: &EdgeState, call: EdgeCall, meta: ClientMeta) -> Result<EdgeReply, Response> {
    let id = s.ids.fetch_add(1, Ordering::Relaxed);
    match s.link.call(EdgeRequest { id, call, meta }).await {
        Ok(r) => Ok(r),
        Err(LinkError::Disconnected) => {
            Err(edge_error(StatusCode::SERVICE_UNAVAILABLE, "enrollment service unavailable: core is not connected"))
        }
        Err(LinkError::Timeout) => {
            Err(edge_error(StatusCode::GATEWAY_TIMEOUT, "enrollment service did not answer in time"))
        }
        Err(LinkError::Interrupted) => Err(edge_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the connection to the enrollment service was lost during this request; it may or may not have been \
             carried out, so check before trying again",
        )),
    }
}

fn reply(r: EdgeReply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if r.body.is_null() {
        return status.into_response();
    }
    (status, Json(r.body)).into_response()
}

fn missing_session() -> Response {
    edge_error(StatusCode::UNAUTHORIZED, "invalid token")
}

#[derive(Deserialize, utoipa::ToSchema)]
struct StartBody {
    token: String,
}

/// Start an enrollment
///
/// Opens a session for the token (valid for the session lifetime) and returns the user,
/// the instance and the admin's contact. Sets the `defguard_proxy` session cookie.
#[utoipa::path(post, path = "/api/v1/enrollment/start", tag = "enrollment", request_body = StartBody,
    responses((status = 200, body = onramp_proto::EnrollmentStartResponse), (status = 400, body = onramp_proto::EdgeError),
        (status = 401, description = "unknown, used, revoked or expired token", body = onramp_proto::EdgeError),
        (status = 403, body = onramp_proto::EdgeError), (status = 429, body = onramp_proto::EdgeError),
        (status = 503, body = onramp_proto::EdgeError)))]
async fn start(State(s): State<EdgeState>, req: Request) -> Response {
    let m = meta(&s.cfg, &req);
    let b: StartBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let session = new_session_id();
    let call = EdgeCall::Start { token: b.token.trim().to_owned(), session: Some(session.clone()) };
    with_session_cookie(&s, forward(&s, call, m).await, SESSION_COOKIE, &session)
}

/// A fresh opaque browser-session id from the OS RNG (the token's alphabet and length).
/// Core stores only its hash, bound to the token, so the cookie never carries the token
/// and any edge or core replica behind a load balancer resolves it.
fn new_session_id() -> String {
    use rand::Rng;
    rand::rngs::OsRng.sample_iter(&rand::distributions::Alphanumeric).take(32).map(char::from).collect()
}

/// On success, sets the session cookie `name` (expiring with the session) for later calls.
fn with_session_cookie(s: &EdgeState, r: Result<EdgeReply, Response>, name: &str, session: &str) -> Response {
    match r {
        Ok(r) if r.status == 200 => {
            let deadline = r.body.get("deadline_timestamp").and_then(Value::as_i64).unwrap_or(0);
            let mut resp = reply(r);
            let cookie = session_cookie(name, session, deadline, s.cfg.secure_cookies);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(r) => reply(r),
        Err(resp) => resp,
    }
}

/// `name=<opaque session id>`, HttpOnly, SameSite=Strict, expiring with the session.
fn session_cookie(name: &str, session: &str, deadline: i64, secure: bool) -> String {
    let max_age = (deadline - now()).max(0);
    format!(
        "{name}={session}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ActivateBody {
    password: String,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// Set the password
///
/// Activates the user of the session (cookie or `token`) with a password that meets the
/// policy, and optionally a phone number. 200 with an empty body.
#[utoipa::path(post, path = "/api/v1/enrollment/activate_user", tag = "enrollment", request_body = ActivateBody,
    responses((status = 200, description = "activated"), (status = 400, body = onramp_proto::EdgeError),
        (status = 401, body = onramp_proto::EdgeError), (status = 403, body = onramp_proto::EdgeError),
        (status = 429, body = onramp_proto::EdgeError), (status = 503, body = onramp_proto::EdgeError)))]
async fn activate_user(State(s): State<EdgeState>, req: Request) -> Response {
    let (m, headers) = (meta(&s.cfg, &req), req.headers().clone());
    let b: ActivateBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(token) = session_token(&headers, b.token, SESSION_COOKIE) else { return missing_session() };
    forward(&s, EdgeCall::ActivateUser { token, password: b.password, phone_number: b.phone_number }, m)
        .await
        .map_or_else(|r| r, reply)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct DeviceBody {
    #[serde(default)]
    name: String,
    pubkey: String,
    #[serde(default)]
    token: Option<String>,
}

/// Register a device
///
/// Registers the device's public key (the private key never leaves the machine) and
/// returns its configuration for every location the user may use, and a polling token.
#[utoipa::path(post, path = "/api/v1/enrollment/create_device", tag = "enrollment", request_body = DeviceBody,
    responses((status = 200, body = onramp_proto::DeviceConfigResponse), (status = 400, body = onramp_proto::EdgeError),
        (status = 401, body = onramp_proto::EdgeError), (status = 403, body = onramp_proto::EdgeError),
        (status = 429, body = onramp_proto::EdgeError), (status = 503, body = onramp_proto::EdgeError)))]
async fn create_device(State(s): State<EdgeState>, req: Request) -> Response {
    let (m, headers) = (meta(&s.cfg, &req), req.headers().clone());
    let b: DeviceBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(token) = session_token(&headers, b.token, SESSION_COOKIE) else { return missing_session() };
    forward(&s, EdgeCall::CreateDevice { token, name: b.name, pubkey: b.pubkey }, m).await.map_or_else(|r| r, reply)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NetworkInfoBody {
    pubkey: String,
    #[serde(default)]
    token: Option<String>,
}

/// A registered device's configuration
#[utoipa::path(post, path = "/api/v1/enrollment/network_info", tag = "enrollment", request_body = NetworkInfoBody,
    responses((status = 200, body = onramp_proto::DeviceConfigResponse), (status = 400, body = onramp_proto::EdgeError),
        (status = 401, body = onramp_proto::EdgeError), (status = 404, body = onramp_proto::EdgeError),
        (status = 429, body = onramp_proto::EdgeError), (status = 503, body = onramp_proto::EdgeError)))]
async fn network_info(State(s): State<EdgeState>, req: Request) -> Response {
    let (m, headers) = (meta(&s.cfg, &req), req.headers().clone());
    let b: NetworkInfoBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(token) = session_token(&headers, b.token, SESSION_COOKIE) else { return missing_session() };
    forward(&s, EdgeCall::NetworkInfo { token, pubkey: b.pubkey }, m).await.map_or_else(|r| r, reply)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PollBody {
    token: String,
}

/// Poll for configuration changes
///
/// With the device's polling token: the current configuration of every location.
#[utoipa::path(post, path = "/api/v1/poll", tag = "client", request_body = PollBody,
    responses((status = 200, body = docs::PollResponse), (status = 400, body = onramp_proto::EdgeError),
        (status = 401, body = onramp_proto::EdgeError), (status = 403, body = onramp_proto::EdgeError),
        (status = 429, body = onramp_proto::EdgeError), (status = 503, body = onramp_proto::EdgeError)))]
async fn poll(State(s): State<EdgeState>, req: Request) -> Response {
    let m = meta(&s.cfg, &req);
    let b: PollBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    forward(&s, EdgeCall::Poll { token: b.token }, m).await.map_or_else(|r| r, reply)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EmailBody {
    email: String,
}

/// Request a password reset e-mail
///
/// Always 200 with an empty body: whether the address is known is not revealed.
#[utoipa::path(post, path = "/api/v1/password-reset/request", tag = "password reset", request_body = EmailBody,
    responses((status = 200, description = "accepted"), (status = 400, body = onramp_proto::EdgeError),
        (status = 429, body = onramp_proto::EdgeError), (status = 503, body = onramp_proto::EdgeError)))]
async fn password_reset_request(State(s): State<EdgeState>, req: Request) -> Response {
    let m = meta(&s.cfg, &req);
    let b: EmailBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match forward(&s, EdgeCall::PasswordResetRequest { email: b.email }, m).await {
        Ok(r) if r.status < 500 => StatusCode::OK.into_response(),
        Ok(r) => reply(r),
        Err(resp) => resp,
    }
}

/// Start a password reset
///
/// Opens a reset session for the e-mailed token; sets the `onramp_reset` cookie.
#[utoipa::path(post, path = "/api/v1/password-reset/start", tag = "password reset", request_body = StartBody,
    responses((status = 200, body = docs::ResetStartResponse), (status = 400, body = onramp_proto::EdgeError),
        (status = 401, body = onramp_proto::EdgeError), (status = 403, body = onramp_proto::EdgeError),
        (status = 429, body = onramp_proto::EdgeError), (status = 503, body = onramp_proto::EdgeError)))]
async fn password_reset_start(State(s): State<EdgeState>, req: Request) -> Response {
    let m = meta(&s.cfg, &req);
    let b: StartBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let session = new_session_id();
    let call = EdgeCall::PasswordResetStart { token: b.token.trim().to_owned(), session: Some(session.clone()) };
    with_session_cookie(&s, forward(&s, call, m).await, RESET_COOKIE, &session)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ResetBody {
    password: String,
    #[serde(default)]
    token: Option<String>,
}

/// Set the new password
#[utoipa::path(post, path = "/api/v1/password-reset/reset", tag = "password reset", request_body = ResetBody,
    responses((status = 200, description = "changed"), (status = 400, body = onramp_proto::EdgeError),
        (status = 401, body = onramp_proto::EdgeError), (status = 403, body = onramp_proto::EdgeError),
        (status = 429, body = onramp_proto::EdgeError), (status = 503, body = onramp_proto::EdgeError)))]
async fn password_reset(State(s): State<EdgeState>, req: Request) -> Response {
    let (m, headers) = (meta(&s.cfg, &req), req.headers().clone());
    let b: ResetBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(token) = session_token(&headers, b.token, RESET_COOKIE) else { return missing_session() };
    forward(&s, EdgeCall::PasswordReset { token, password: b.password }, m).await.map_or_else(|r| r, reply)
}

/// The browser enrollment wizard (also `/?token=...`); all assets are embedded.
async fn wizard_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("../assets/index.html")).into_response()
}

/// The password-reset page the reset e-mail links to (`/password-reset?token=...`).
async fn reset_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("../assets/reset.html")).into_response()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (ct, body): (&str, &'static str) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", include_str!("../assets/app.js")),
        "app.css" => ("text/css; charset=utf-8", include_str!("../assets/app.css")),
        "qrcode.js" => ("text/javascript; charset=utf-8", include_str!("../assets/qrcode.js")),
        "common.js" => ("text/javascript; charset=utf-8", include_str!("../assets/common.js")),
        "markdown.js" => ("text/javascript; charset=utf-8", include_str!("../assets/markdown.js")),
        "password.js" => ("text/javascript; charset=utf-8", include_str!("../assets/password.js")),
        "reset.js" => ("text/javascript; charset=utf-8", include_str!("../assets/reset.js")),
        _ => return edge_error(StatusCode::NOT_FOUND, "not found"),
    };
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}

/// Whether the edge is connected to core
#[utoipa::path(get, path = "/api/v1/health", tag = "service",
    responses((status = 200, body = docs::Health), (status = 503, body = docs::Health)))]
async fn health(State(s): State<EdgeState>) -> Response {
    if s.link.connected() {
        (StatusCode::OK, Json(json!({ "status": "ok", "core": "connected" }))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "core is not connected", "core": "disconnected" })))
            .into_response()
    }
}

/// The edge's version
#[utoipa::path(get, path = "/api/v1/info", tag = "service", responses((status = 200, body = docs::Info)))]
async fn info() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_body_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; defguard_proxy=TOKEN123; onramp_reset=R; c=d"));
        assert_eq!(session_token(&h, None, SESSION_COOKIE).as_deref(), Some("TOKEN123"));
        assert_eq!(session_token(&h, None, RESET_COOKIE).as_deref(), Some("R"));
        assert_eq!(session_token(&h, Some("BODY".into()), SESSION_COOKIE).as_deref(), Some("BODY"));
        assert_eq!(session_token(&HeaderMap::new(), None, SESSION_COOKIE), None);
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "192.0.2.1/32".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.1.2.3"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(forwarded_client(&trusted, ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // Behind two trusted proxies: the first untrusted hop from the right, not the forged left one.
        assert_eq!(forwarded_client(&trusted, ip("192.0.2.1"), &h), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(forwarded_client(&trusted, ip("10.9.9.9"), &HeaderMap::new()), ip("10.9.9.9"));
        // Garbage stops the walk at the last good hop.
        h.insert("x-forwarded-for", HeaderValue::from_static("junk, 10.1.2.3"));
        assert_eq!(forwarded_client(&trusted, ip("10.9.9.9"), &h), ip("10.1.2.3"));
    }

    #[test]
    fn cookie_flags() {
        let c = session_cookie(SESSION_COOKIE, "T", now() + 600, true);
        assert!(c.starts_with("defguard_proxy=T; Path=/; Max-Age="));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"));
        assert!(!session_cookie(SESSION_COOKIE, "T", now() + 600, false).contains("Secure"));
        let (a, b) = (new_session_id(), new_session_id());
        assert!(a != b && a.len() == 32 && a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
