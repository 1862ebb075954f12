//! Sign-in, sessions and CSRF. The session secret lives in an HttpOnly, SameSite=Strict
//! cookie (Secure under HTTPS); the session itself is in the database (core), so any core
//! replica serves any request. Every state-changing request must echo the session's CSRF
//! token, as a form field or the `X-CSRF-Token` header (htmx).

use crate::layout::{self, Page};
use crate::Ui;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use onramp_core::{Actor, CoreError, WebSession};
use serde::Deserialize;
use std::net::SocketAddr;

pub const SESSION_COOKIE: &str = "onramp_session";
/// Double-submit token of the sign-in form (there is no session to hold one yet).
const LOGIN_CSRF_COOKIE: &str = "onramp_login_csrf";
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(ui: &Ui, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if ui.cfg.secure_cookies {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie value is ASCII")
}

/// Request metadata for the audit log and the sign-in limits: the client's address (past
/// trusted proxies) and user agent.
pub fn request_meta(ui: &Ui, parts: &Parts) -> (Option<String>, Option<String>) {
    let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| {
        let hops: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        onramp_domain::net::forwarded_client(&ui.cfg.trusted_proxies, c.0.ip(), &hops).to_string()
    });
    let ua = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (ip, ua)
}

/// A signed-in user (admin or not), with the request's metadata.
pub struct SignedIn {
    pub session: WebSession,
    pub actor: Actor,
}

/// A signed-in admin; anyone else gets 403.
pub struct SignedInAdmin(pub SignedIn);

impl SignedIn {
    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }
}

async fn session_of(ui: &Ui, headers: &HeaderMap) -> Result<Option<WebSession>, CoreError> {
    match cookie(headers, SESSION_COOKIE) {
        Some(secret) if !secret.is_empty() => ui.core.web_session(&secret).await,
        _ => Ok(None),
    }
}

/// Where an unauthenticated request goes: the sign-in page, back here afterwards. htmx
/// requests are told to navigate (a redirect would be swapped into the page).
fn to_login(parts: &Parts, expired: bool) -> Response {
    let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let next = if parts.method == Method::GET { next } else { "/" };
    let mut url = url::form_urlencoded::Serializer::new(String::from("/login?"));
    url.append_pair("next", next);
    if expired {
        url.append_pair("expired", "1");
    }
    let url = url.finish();
    if parts.headers.contains_key("hx-request") {
        return (StatusCode::UNAUTHORIZED, [("hx-redirect", url)]).into_response();
    }
    Redirect::to(&url).into_response()
}

impl FromRequestParts<Ui> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Self::Rejection> {
        if let Some(s) = parts.extensions.get::<WebSession>() {
            let (ip, ua) = request_meta(ui, parts);
            return Ok(Self { actor: s.actor(ip, ua), session: s.clone() });
        }
        let had_cookie = cookie(&parts.headers, SESSION_COOKIE).is_some_and(|c| !c.is_empty());
        match session_of(ui, &parts.headers).await {
            Ok(Some(session)) => {
                let (ip, ua) = request_meta(ui, parts);
                Ok(Self { actor: session.actor(ip, ua), session })
            }
            Ok(None) => Err(to_login(parts, had_cookie)),
            Err(e) => Err(layout::core_error_page(None, &e)),
        }
    }
}

impl FromRequestParts<Ui> for SignedInAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Self::Rejection> {
        let me = SignedIn::from_request_parts(parts, ui).await?;
        if !me.session.is_admin {
            return Err(layout::forbidden(&me));
        }
        Ok(Self(me))
    }
}

/// Refuses every non-GET request without a live session and its CSRF token (sign-in has
/// its own double-submit check). The session is handed on to the extractors.
pub async fn csrf_guard(State(ui): State<Ui>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) || req.uri().path() == "/login" {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let session = match session_of(&ui, &parts.headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let had = cookie(&parts.headers, SESSION_COOKIE).is_some_and(|c| !c.is_empty());
            return to_login(&parts, had);
        }
        Err(e) => return layout::core_error_page(None, &e),
    };
    let header_token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = match axum::body::to_bytes(body, crate::MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return layout::error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                &format!("The form is larger than {} KiB.", crate::MAX_FORM_BYTES / 1024),
            )
        }
    };
    let form_token = form_field(&bytes, CSRF_FIELD);
    let given = header_token.or(form_token).unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
        tracing::warn!(path = %parts.uri.path(), user = %session.user.username, "refused a request without a valid CSRF token");
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was not sent from an Onramp page you have open (its security token is missing or \
             outdated). Reload the page and try again.",
        );
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    expired: Option<String>,
}

/// Only same-site paths: `next` must not send the user to another site after sign-in.
fn safe_next(next: Option<&str>) -> &str {
    // Printable ASCII without backslashes only: browsers drop tabs and newlines from URLs,
    // so `/\t/evil.example` would otherwise become `//evil.example`.
    let same_site = |n: &str| {
        n.starts_with('/') && !n.starts_with("//") && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'\\')
    };
    match next {
        Some(n) if same_site(n) => n,
        _ => "/",
    }
}

fn random_token() -> String {
    onramp_domain::token::TokenSecret::generate(&mut rand::rngs::OsRng).expose().to_owned()
}

/// The sign-in page. Its double-submit token is kept while the cookie holding it lives, so
/// two open sign-in tabs both work.
fn login_form(
    ui: &Ui,
    headers: &HeaderMap,
    q: &LoginQuery,
    error: Option<&str>,
    username: &str,
    status: StatusCode,
) -> Response {
    let csrf = cookie(headers, LOGIN_CSRF_COOKIE)
        .filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(random_token);
    let notice = if q.expired.is_some() { Some("Your session ended. Sign in again.") } else { None };
    let body = html! {
        main.signin {
            h1 { "Sign in to Onramp" }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if let Some(e) = error { p.error role="alert" id="login-error" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                input type="hidden" name="next" value=(safe_next(q.next.as_deref()));
                label for="username" { "Username" }
                input #username name="username" autocomplete="username" required autofocus value=(username);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button #signin type="submit" { "Sign in" }
            }
            p.hint { "Use the password you set when you enrolled. Administrators without one: "
                code { "onramp admin set-password USERNAME --password-file FILE" } }
        }
    };
    let mut resp = (status, layout::bare("Sign in", body)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(ui, LOGIN_CSRF_COOKIE, &csrf, Some(3600)));
    resp
}

pub async fn login_page(State(ui): State<Ui>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    if let Ok(Some(_)) = session_of(&ui, &headers).await {
        return Redirect::to(safe_next(q.next.as_deref())).into_response();
    }
    login_form(&ui, &headers, &q, None, "", StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login(State(ui): State<Ui>, parts: Parts, Form(f): Form<LoginForm>) -> Response {
    let q = LoginQuery { next: f.next.clone(), expired: None };
    let expected = cookie(&parts.headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        let why = "The sign-in form expired or came from another site; try again.";
        return login_form(&ui, &parts.headers, &q, Some(why), &f.username, StatusCode::FORBIDDEN);
    }
    let (ip, ua) = request_meta(&ui, &parts);
    let actor = Actor { name: f.username.trim().to_owned(), ip, user_agent: ua, ..Actor::default() };
    match ui.core.web_login(&actor, &f.username, f.password).await {
        Ok(login) => {
            let to = safe_next(f.next.as_deref());
            let to = if to == "/" && !login.is_admin { "/me" } else { to };
            let mut resp = Redirect::to(to).into_response();
            resp.headers_mut().append(header::SET_COOKIE, set_cookie(&ui, SESSION_COOKIE, &login.secret, None));
            resp.headers_mut().append(header::SET_COOKIE, set_cookie(&ui, LOGIN_CSRF_COOKIE, "", Some(0)));
            resp
        }
        Err(e @ CoreError::Unauthorized(_)) => {
            login_form(&ui, &parts.headers, &q, Some(&e.to_string()), &f.username, StatusCode::UNAUTHORIZED)
        }
        Err(e @ CoreError::Refused { .. }) => {
            login_form(&ui, &parts.headers, &q, Some(&e.to_string()), &f.username, StatusCode::TOO_MANY_REQUESTS)
        }
        Err(e) => layout::core_error_page(None, &e),
    }
}

pub async fn logout(State(ui): State<Ui>, me: SignedIn) -> Response {
    if let Err(e) = ui.core.web_logout(&me.actor, &me.session).await {
        return layout::core_error_page(Some(&me), &e);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(&ui, SESSION_COOKIE, "", Some(0)));
    resp
}

/// Renders a page for `me` (the layout needs the session for its menu and CSRF token).
pub fn page(me: &SignedIn, title: &str, body: maud::Markup) -> Response {
    Page { me, title, body }.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/users?q=a")), "/users?q=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(Some("/ok path")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; onramp_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn csrf_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
