//! The "Start enrollment" and "Configure desktop client" dialogs: send the token by e-mail,
//! or show it here (token and URL with copy buttons, `provisioning.json`, QR code, deep link).

use crate::auth::{page, SignedIn, SignedInAdmin};
use crate::layout::{self, csrf};
use crate::Ui;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use onramp_core::mail::{deep_link, wizard_link};
use onramp_core::{CoreError, UserInfo};
use onramp_domain::provisioning::ProvisioningFile;
use onramp_proto::{StartEnrollmentRequest, StartEnrollmentResponse};
use serde::Deserialize;

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Enrollment,
    Desktop,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Enrollment => "Start enrollment",
            Kind::Desktop => "Configure desktop client",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Kind::Enrollment => "enroll",
            Kind::Desktop => "desktop",
        }
    }
}

/// The dialog body (`#dialog-body`): htmx lifts it into the page's `<dialog>`; without
/// script the same page is shown on its own.
fn dialog(
    me: &SignedIn,
    kind: Kind,
    u: &UserInfo,
    smtp: bool,
    unavailable: Option<&str>,
    error: Option<&str>,
) -> Markup {
    html! {
        div #dialog-body .dialog-card {
            h2 #dialog-title { (kind.title()) " for " (u.first_name) " " (u.last_name) " (" (u.username) ")" }
            @if let Some(why) = unavailable {
                p.error role="alert" { (why) }
                @if why.starts_with("No VPN") { p { a href="/locations" { "Create a location" } } }
                div.buttons { a.button href="/users" data-close-dialog { "Close" } }
            } @else {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action={ "/users/" (u.username) "/" (kind.path()) } {
                    (csrf(me))
                    fieldset {
                        legend { "How should the token reach " (u.first_name) "?" }
                        div.choice {
                            input #deliver-email type="radio" name="delivery" value="email" checked[smtp] disabled[!smtp];
                            label for="deliver-email" { "Send by e-mail" }
                            @if smtp {
                                div.field {
                                    label for="email" { "To" }
                                    input #email type="email" name="email" value=(u.email) autocomplete="off";
                                }
                            } @else {
                                p.reason #smtp-reason { "E-mail is unavailable: SMTP is not configured. "
                                    a href="/settings/smtp" { "Configure SMTP" } }
                            }
                        }
                        div.choice {
                            input #deliver-show type="radio" name="delivery" value="show" checked[!smtp];
                            label for="deliver-show" { "Show it here" }
                            p.hint { "You get the token, its link, a provisioning.json file, a QR code and a deep link to hand over yourself." }
                        }
                    }
                    div.field {
                        label for="expires" { "Valid for" span.optional { " (optional, e.g. 12h, 3d; default from Enrollment settings)" } }
                        input #expires name="expires" type="text" inputmode="text" pattern="[0-9]+[smhdw]?";
                    }
                    div.buttons {
                        button.primary #issue type="submit" { (kind.title()) }
                        a.button href="/users" data-close-dialog { "Cancel" }
                    }
                }
            }
        }
    }
}

async fn show_dialog(ui: &Ui, me: &SignedIn, kind: Kind, username: &str) -> Response {
    let u = match ui.core.get_user(username).await {
        Ok(u) => u,
        Err(e) => return layout::core_error_page(Some(me), &e),
    };
    let has_locations = match ui.core.has_locations().await {
        Ok(b) => b,
        Err(e) => return layout::core_error_page(Some(me), &e),
    };
    let a = u.token_actions(has_locations);
    let why = if kind == Kind::Enrollment { a.enrollment } else { a.desktop };
    let smtp = ui.core.settings().await.smtp.is_configured();
    page(me, kind.title(), dialog(me, kind, &u, smtp, why, None))
}

pub async fn enroll_dialog(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Path(u): Path<String>) -> Response {
    show_dialog(&ui, &me, Kind::Enrollment, &u).await
}

pub async fn desktop_dialog(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Path(u): Path<String>) -> Response {
    show_dialog(&ui, &me, Kind::Desktop, &u).await
}

#[derive(Deserialize)]
pub struct IssueForm {
    #[serde(default)]
    delivery: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    expires: Option<String>,
}

async fn issue(ui: &Ui, me: &SignedIn, kind: Kind, username: &str, f: IssueForm) -> Response {
    let by_mail = f.delivery == "email";
    let req = StartEnrollmentRequest {
        send_enrollment_notification: by_mail,
        email: if by_mail { f.email.clone().filter(|e| !e.trim().is_empty()) } else { None },
        token_expiration_time: f.expires.clone().filter(|e| !e.trim().is_empty()),
    };
    let result = match kind {
        Kind::Enrollment => ui.core.start_enrollment(&me.actor, username, req).await,
        Kind::Desktop => ui.core.start_desktop(&me.actor, username, req).await,
    };
    match result {
        Ok(r) if by_mail => {
            let to = match f.email.filter(|e| !e.trim().is_empty()) {
                Some(e) => e,
                None => ui.core.get_user(username).await.map(|u| u.email).unwrap_or_default(),
            };
            let body = html! {
                div #dialog-body .dialog-card {
                    h2 #dialog-title { "Sent" }
                    p.notice role="status" #sent { "The token is on its way to " strong { (to) } ". Valid until " (r.expires_at) "." }
                    p { a href="/mail" { "Follow it in the mail outbox" } " · " a href="/users" { "Back to users" } }
                }
            };
            page(me, kind.title(), body)
        }
        Ok(r) => page(me, kind.title(), token_card(me, &r, username)),
        Err(e) => {
            let u = match ui.core.get_user(username).await {
                Ok(u) => u,
                Err(e) => return layout::core_error_page(Some(me), &e),
            };
            let smtp = ui.core.settings().await.smtp.is_configured();
            let mut resp = page(me, kind.title(), dialog(me, kind, &u, smtp, None, Some(&layout::message_of(&e))));
            *resp.status_mut() = layout::status_of(&e);
            resp
        }
    }
}

pub async fn enroll(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(u): Path<String>,
    Form(f): Form<IssueForm>,
) -> Response {
    issue(&ui, &me, Kind::Enrollment, &u, f).await
}

pub async fn desktop(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(u): Path<String>,
    Form(f): Form<IssueForm>,
) -> Response {
    issue(&ui, &me, Kind::Desktop, &u, f).await
}

/// "Show it here": everything a person needs to hand the token over, shown once.
pub fn token_card(me: &SignedIn, r: &StartEnrollmentResponse, username: &str) -> Markup {
    let link = wizard_link(&r.enrollment_url, &r.enrollment_token);
    let deep = deep_link(&r.enrollment_url, &r.enrollment_token);
    let qr = crate::qr::svg_data_url(&link);
    html! {
        div #dialog-body .dialog-card.token-card {
            h2 #dialog-title { "Token for " (username) }
            p.notice role="status" { "Token for " strong { (username) } ", valid until " (r.expires_at)
                ". It is shown only now: copy it or download the file before you leave this page." }
            div.copy-row {
                label for="token" { "Token" }
                input #token readonly value=(r.enrollment_token);
                button.copy type="button" data-copy="token" { "Copy" }
            }
            div.copy-row {
                label for="url" { "Enrollment URL" }
                input #url readonly value=(r.enrollment_url);
                button.copy type="button" data-copy="url" { "Copy" }
            }
            div.copy-row {
                label for="wizard-link" { "Browser link (enroll in a browser)" }
                input #wizard-link readonly value=(link);
                button.copy type="button" data-copy="wizard-link" { "Copy" }
            }
            div.copy-row {
                label for="deep-link" { "Desktop client deep link" }
                input #deep-link readonly value=(deep);
                button.copy type="button" data-copy="deep-link" { "Copy" }
                a.button #open-deep-link href=(deep) { "Open in the desktop client" }
            }
            div.qr {
                @if let Some(src) = qr { img #qr src=(src) alt="QR code of the browser link" width="220" height="220"; }
            }
            form method="post" action="/provisioning.json" {
                (csrf(me))
                input type="hidden" name="enrollment_token" value=(r.enrollment_token);
                input type="hidden" name="enrollment_url" value=(r.enrollment_url);
                button.primary #download-provisioning type="submit" { "Download provisioning.json" }
            }
            p { a href="/users" data-close-dialog { "Done" } }
        }
    }
}

/// The `provisioning.json` of a token just shown, as a download. A POST (the token is in
/// the body), so the secret never appears in a URL, a log line or the browser history.
pub async fn provisioning_file(_me: SignedIn, Form(f): Form<ProvisioningFile>) -> Response {
    if onramp_domain::provisioning::check_url(&f.enrollment_url, true).is_err() || f.enrollment_token.len() > 256 {
        return layout::core_error_page(None, &CoreError::invalid_input("enrollment_url", "not a provisioning file"));
    }
    match serde_json::to_string_pretty(&f) {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"provisioning.json\""),
            ],
            json,
        )
            .into_response(),
        Err(e) => layout::core_error_page(None, &CoreError::Internal(e.to_string())),
    }
}
