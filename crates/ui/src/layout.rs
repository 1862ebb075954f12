//! The page shell (navigation, notices), error pages and the headers every response gets.

use crate::auth::{SignedIn, CSRF_FIELD};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use onramp_core::CoreError;

/// No inline script or style anywhere; images may be `data:` (QR codes).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Pages show tokens: no Referer leaves them, no cache keeps them.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    resp
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        // htmx must not inject its indicator <style> (the CSP refuses inline styles).
        meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
        title { (title) " · Onramp" }
        link rel="stylesheet" href="/assets/ui.css";
        script src="/assets/htmx.min.js" defer {}
        script src="/assets/ui.js" defer {}
    }
}

/// A page without navigation (sign-in, errors before sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body.bare { (body) }
        }
    }
}

/// A signed-in page: navigation by role, the CSRF token for htmx, the content.
pub struct Page<'a> {
    pub me: &'a SignedIn,
    pub title: &'a str,
    pub body: Markup,
}

const ADMIN_NAV: &[(&str, &str)] = &[
    ("/users", "Users"),
    ("/groups", "Groups"),
    ("/locations", "Locations"),
    ("/settings/enrollment", "Enrollment"),
    ("/settings/smtp", "SMTP"),
    ("/settings/directory", "Directory"),
    ("/settings/entra", "Entra ID"),
    ("/api-tokens", "API tokens"),
    ("/audit", "Audit log"),
    ("/mail", "Mail outbox"),
];

impl IntoResponse for Page<'_> {
    fn into_response(self) -> Response {
        let me = self.me;
        let headers = serde_json::json!({ "X-CSRF-Token": me.csrf() }).to_string();
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head { (head(self.title)) }
                body hx-headers=(headers) {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/" { "Onramp" }
                        nav aria-label="Main" {
                            ul {
                                @if me.session.is_admin {
                                    @for (href, label) in ADMIN_NAV {
                                        li { a href=(href) { (label) } }
                                    }
                                }
                                li { a href="/me" { "My account" } }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            input type="hidden" name=(CSRF_FIELD) value=(me.csrf());
                            span.who { (me.session.user.username) }
                            button type="submit" { "Sign out" }
                        }
                    }
                    main #main {
                        h1 { (self.title) }
                        (self.body)
                    }
                    dialog #dialog aria-labelledby="dialog-title" {}
                }
            }
        };
        markup.into_response()
    }
}

/// A hidden CSRF field for a form of `me`'s page.
pub fn csrf(me: &SignedIn) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(me.csrf()); }
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        main.signin {
            h1 { (title) }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to Onramp" } }
        }
    };
    (status, bare(title, body)).into_response()
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address.")
}

pub fn forbidden(me: &SignedIn) -> Response {
    let body = html! {
        p.error role="alert" { "This page is for administrators. You are signed in as "
            strong { (me.session.user.username) } ", who is not in an admin group." }
        p { a href="/me" { "Go to your account" } }
    };
    let mut resp = Page { me, title: "Not allowed", body }.into_response();
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp
}

/// The HTTP status a use-case failure maps to (as in the REST API).
pub fn status_of(e: &CoreError) -> StatusCode {
    match e {
        CoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        CoreError::Refused { .. } | CoreError::Conflict { .. } => StatusCode::CONFLICT,
        CoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        CoreError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        CoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        CoreError::UnknownToken | CoreError::Token(_) => StatusCode::BAD_REQUEST,
        CoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a person is shown for a failure: the use case's own sentence, except for internal
/// errors, whose detail goes to the log only.
pub fn message_of(e: &CoreError) -> String {
    match e {
        CoreError::Internal(detail) => {
            tracing::error!(error = %detail, "web UI request failed");
            "Something went wrong on the server; the details are in its log.".into()
        }
        other => other.to_string(),
    }
}

/// A full page for a failure, inside the layout when someone is signed in.
pub fn core_error_page(me: Option<&SignedIn>, e: &CoreError) -> Response {
    let status = status_of(e);
    let message = message_of(e);
    match me {
        Some(me) => {
            let body = html! { p.error role="alert" { (message) } p { a href="/" { "Back to the start page" } } };
            let mut resp = Page { me, title: "That did not work", body }.into_response();
            *resp.status_mut() = status;
            resp
        }
        None => error_page(status, "That did not work", &message),
    }
}

/// A notice carried across a redirect in the query string (`?done=...`), from a fixed list
/// so that a crafted link cannot put arbitrary text on the page.
pub fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "User created.",
        "saved" => "Changes saved.",
        "deleted" => "Deleted.",
        "enabled" => "User enabled.",
        "disabled" => "User disabled.",
        "revoked" => "Pending tokens revoked.",
        "device-deleted" => "Device deleted.",
        "password" => "Password changed. Your other sessions were signed out.",
        "retried" => "The message is queued again.",
        "api-token-revoked" => "API token revoked: it no longer authenticates.",
        "created-group" => "Group created.",
        "created-location" => "Location created. Next: create a gateway token and start its gateway.",
        "revoked-gateway-token" => "Gateway token revoked.",
        _ => return None,
    })
}

pub fn notice_banner(done: Option<&str>) -> Markup {
    html! { @if let Some(n) = notice(done) { p.notice role="status" { (n) } } }
}

/// `s` as one URL path segment (group names may hold `/`, `?`, `#`, spaces, non-ASCII).
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Everything but unreserved characters is encoded.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Unix seconds as a UTC date and time.
pub fn time(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}
