//! Settings: enrollment (lifetimes, onboarding message, welcome e-mail, contact) and SMTP
//! (with a test message). Saved through core's settings patch, which validates everything.

use crate::auth::{page, SignedIn, SignedInAdmin};
use crate::forms::{checkbox, field, FormError};
use crate::layout::{self, csrf, notice_banner};
use crate::Ui;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use onramp_core::mail::MailTestOutcome;
use onramp_core::settings::TEMPLATE_VARIABLES;
use onramp_core::{AdminContact, CoreError, Settings, SettingsPatch, SmtpSecurity};
use onramp_domain::duration::parse_lifetime;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

impl DoneQuery {
    pub fn done(&self) -> Option<&str> {
        self.done.as_deref()
    }
}

/// Seconds as admins write lifetimes (`24h`, `10m`, `3d`, `1w`), read back by `parse_lifetime`.
fn short_duration(secs: i64) -> String {
    if secs > 0 && secs % 604_800 == 0 {
        format!("{}w", secs / 604_800)
    } else if secs > 86_400 && secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs > 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Browsers send textarea lines with CRLF; templates are stored with LF.
fn lf(s: &str) -> String {
    s.replace("\r\n", "\n")
}

fn on(v: &Option<String>) -> bool {
    v.is_some()
}

fn flag(b: bool) -> Option<String> {
    b.then(|| "on".to_owned())
}

/// A labelled textarea with its error, like `forms::field`.
fn textarea(label: &str, name: &str, value: &str, error: Option<&str>, rows: u32, hint: Option<&str>) -> Markup {
    let id = format!("f-{name}");
    let err_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described = match (error, hint) {
        (Some(_), _) => Some(err_id.clone()),
        (None, Some(_)) => Some(hint_id.clone()),
        _ => None,
    };
    html! {
        div.field {
            label for=(id) { (label) }
            @if let Some(h) = hint { span.hint id=(hint_id) { (h) } }
            textarea id=(id) name=(name) rows=(rows) aria-invalid=[error.map(|_| "true")]
                aria-describedby=[described] { (value) }
            @if let Some(e) = error { p.field-error id=(err_id) { (e) } }
        }
    }
}

/// A text input with a hint under its label.
fn hinted(label: &str, name: &str, value: &str, error: Option<&str>, hint: &str) -> Markup {
    let id = format!("f-{name}");
    let err_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) name=(name) type="text" value=(value) required
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=(if error.is_some() { err_id.as_str() } else { hint_id.as_str() });
            span.hint id=(hint_id) { (hint) }
            @if let Some(e) = error { p.field-error id=(err_id) { (e) } }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Enrollment settings

#[derive(Deserialize, Default)]
pub struct EnrollmentForm {
    #[serde(default)]
    token_lifetime: String,
    #[serde(default)]
    desktop_token_lifetime: String,
    #[serde(default)]
    session_lifetime: String,
    #[serde(default)]
    vpn_setup_optional: Option<String>,
    #[serde(default)]
    welcome_message: String,
    #[serde(default)]
    show_welcome_message: Option<String>,
    #[serde(default)]
    send_welcome_email: Option<String>,
    #[serde(default)]
    welcome_email_subject: String,
    #[serde(default)]
    use_welcome_message_as_email: Option<String>,
    #[serde(default)]
    welcome_body: String,
    #[serde(default)]
    contact_name: String,
    #[serde(default)]
    contact_email: String,
    #[serde(default)]
    contact_phone: String,
    #[serde(default)]
    directory_invite_email: Option<String>,
    #[serde(default)]
    directory_invite_attribute: Option<String>,
}

impl EnrollmentForm {
    fn of(s: &Settings) -> Self {
        let e = &s.enrollment;
        let c = s.admin_contact.as_ref();
        Self {
            token_lifetime: short_duration(e.token_lifetime_secs),
            desktop_token_lifetime: short_duration(e.desktop_token_lifetime_secs),
            session_lifetime: short_duration(e.session_lifetime_secs),
            vpn_setup_optional: flag(e.vpn_setup_optional),
            welcome_message: e.welcome_message.clone(),
            show_welcome_message: flag(e.show_welcome_message),
            send_welcome_email: flag(e.send_welcome_email),
            welcome_email_subject: e.welcome_email_subject.clone(),
            use_welcome_message_as_email: flag(e.use_welcome_message_as_email),
            welcome_body: s.templates.welcome_body.clone(),
            contact_name: c.map(|c| c.name.clone()).unwrap_or_default(),
            contact_email: c.map(|c| c.email.clone()).unwrap_or_default(),
            contact_phone: c.and_then(|c| c.phone.clone()).unwrap_or_default(),
            directory_invite_email: flag(e.directory_invite_email),
            directory_invite_attribute: flag(e.directory_invite_attribute),
        }
    }

    /// The settings patch of this form; lifetimes are parsed here (they are typed as `24h`).
    fn patch(&self) -> Result<SettingsPatch, CoreError> {
        let token = parse_lifetime("enrollment.token_lifetime_secs", &self.token_lifetime)?;
        let desktop = parse_lifetime("enrollment.desktop_token_lifetime_secs", &self.desktop_token_lifetime)?;
        let session = parse_lifetime("enrollment.session_lifetime_secs", &self.session_lifetime)?;
        let (name, email, phone) = (self.contact_name.trim(), self.contact_email.trim(), self.contact_phone.trim());
        let contact = if name.is_empty() && email.is_empty() && phone.is_empty() {
            None
        } else {
            Some(AdminContact {
                name: name.to_owned(),
                email: email.to_owned(),
                phone: Some(phone.to_owned()).filter(|p| !p.is_empty()),
            })
        };
        Ok(SettingsPatch {
            enrollment: Some(json!({
                "token_lifetime_secs": token,
                "desktop_token_lifetime_secs": desktop,
                "session_lifetime_secs": session,
                "vpn_setup_optional": on(&self.vpn_setup_optional),
                "welcome_message": lf(&self.welcome_message),
                "show_welcome_message": on(&self.show_welcome_message),
                "send_welcome_email": on(&self.send_welcome_email),
                "welcome_email_subject": self.welcome_email_subject.trim(),
                "use_welcome_message_as_email": on(&self.use_welcome_message_as_email),
                "directory_invite_email": on(&self.directory_invite_email),
                "directory_invite_attribute": on(&self.directory_invite_attribute),
            })),
            templates: Some(json!({ "welcome_body": lf(&self.welcome_body) })),
            admin_contact: Some(contact),
            ..SettingsPatch::default()
        })
    }
}

const ENROLLMENT_FIELDS: &[&str] = &[
    "enrollment.token_lifetime_secs",
    "enrollment.desktop_token_lifetime_secs",
    "enrollment.session_lifetime_secs",
    "enrollment.welcome_message",
    "enrollment.welcome_email_subject",
    "templates.welcome_body",
    "admin_contact.name",
    "admin_contact.email",
];

fn enrollment_form(me: &SignedIn, f: &EnrollmentForm, err: &Option<FormError>, done: Option<&str>) -> Markup {
    let e = |k: &str| FormError::on(err, k);
    let vars = html! {
        details.variables {
            summary { "Template variables" }
            p.hint { "Write them as " code { "{{ first_name }}" } " in the message, the subject and the e-mail body." }
            ul.vars #template-variables {
                @for v in TEMPLATE_VARIABLES { li { code { "{{ " (v) " }}" } } }
            }
        }
    };
    html! {
        (notice_banner(done))
        form #enrollment-settings method="post" action="/settings/enrollment" {
            (csrf(me))
            @if let Some(m) = FormError::general(err, ENROLLMENT_FIELDS) { p.error role="alert" { (m) } }
            section.card {
                h2 { "Lifetimes" }
                (hinted("Enrollment token valid for", "token_lifetime", &f.token_lifetime,
                    e("enrollment.token_lifetime_secs").as_deref(),
                    "Default for new enrollment tokens: a number and s, m, h, d or w (e.g. 24h, 3d, 1w)."))
                (hinted("Desktop-client token valid for", "desktop_token_lifetime", &f.desktop_token_lifetime,
                    e("enrollment.desktop_token_lifetime_secs").as_deref(),
                    "Default for tokens that add this instance to a desktop client."))
                (hinted("Time to finish an enrollment", "session_lifetime", &f.session_lifetime,
                    e("enrollment.session_lifetime_secs").as_deref(),
                    "Once a user starts, they have this long to complete the steps (1m to 24h)."))
                (checkbox("The VPN step is optional (users may finish without adding a device)", "vpn_setup_optional",
                    on(&f.vpn_setup_optional)))
            }
            section.card.wide {
                h2 { "Welcome message" }
                p.hint { "Markdown shown on the last page of the enrollment: headings (#), **bold**, *italic*, "
                    "`code`, lists (- item) and https:// links." }
                (checkbox("Display the welcome message at the end of enrollment", "show_welcome_message",
                    on(&f.show_welcome_message)))
                div.grid2 {
                    div {
                        script src="/assets/markdown.js" defer {}
                        (textarea("Message (Markdown)", "welcome_message", &f.welcome_message,
                            e("enrollment.welcome_message").as_deref(), 12, None))
                    }
                    div {
                        div.field {
                            span #welcome-preview-label { "Preview (as users will see it)" }
                            div #welcome-preview .markdown aria-labelledby="welcome-preview-label" {
                                p.muted { "The preview needs JavaScript." }
                            }
                        }
                    }
                }
                (vars)
            }
            section.card {
                h2 { "Welcome e-mail" }
                (checkbox("Send welcome email (when a user completes enrollment; needs SMTP)", "send_welcome_email",
                    on(&f.send_welcome_email)))
                (field("Subject", "welcome_email_subject", "text", &f.welcome_email_subject,
                    e("enrollment.welcome_email_subject").as_deref(), true))
                (checkbox("Use the welcome message above as the e-mail body", "use_welcome_message_as_email",
                    on(&f.use_welcome_message_as_email)))
                (textarea("E-mail body (plain text)", "welcome_body", &f.welcome_body,
                    e("templates.welcome_body").as_deref(), 8,
                    Some("Used when the box above is not ticked.")))
            }
            section.card #directory-invites {
                h2 { "Invite new directory users" }
                p.hint { "For users the " a href="/settings/directory" { "directory sync" } " creates." }
                (checkbox("By e-mail (the invitation, with their token; needs SMTP)", "directory_invite_email",
                    on(&f.directory_invite_email)))
                (checkbox("By writing their token into their provisioning attribute, kept fresh until they enroll",
                    "directory_invite_attribute", on(&f.directory_invite_attribute)))
            }
            section.card {
                h2 { "Contact shown to enrolling users" }
                p.hint { "On the enrollment pages and in e-mails. Leave all three empty to show the administrator "
                    "who issued the user's token." }
                (field("Name", "contact_name", "text", &f.contact_name, e("admin_contact.name").as_deref(), false))
                (field("E-mail", "contact_email", "email", &f.contact_email, e("admin_contact.email").as_deref(), false))
                (field("Phone", "contact_phone", "tel", &f.contact_phone, None, false))
            }
            div.buttons {
                button.primary #save-enrollment type="submit" { "Save settings" }
                a.button href="/settings/enrollment" { "Discard changes" }
            }
        }
    }
}

pub async fn enrollment(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Query(q): Query<DoneQuery>,
) -> Response {
    let f = EnrollmentForm::of(&ui.core.settings().await);
    page(&me, "Enrollment settings", enrollment_form(&me, &f, &None, q.done.as_deref()))
}

pub async fn save_enrollment(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Form(f): Form<EnrollmentForm>,
) -> Response {
    let result = match f.patch() {
        Ok(patch) => ui.core.update_settings(&me.actor, patch).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to("/settings/enrollment?done=saved").into_response(),
        Err(e) => {
            let mut r = page(&me, "Enrollment settings", enrollment_form(&me, &f, &Some(FormError::of(&e)), None));
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

// ---------------------------------------------------------------------------------------
// SMTP settings

#[derive(Deserialize, Default)]
pub struct SmtpForm {
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    security: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    clear_password: Option<String>,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    timeout: String,
    #[serde(default)]
    ca_file: String,
}

fn security_str(s: SmtpSecurity) -> &'static str {
    match s {
        SmtpSecurity::None => "none",
        SmtpSecurity::Starttls => "starttls",
        SmtpSecurity::Tls => "tls",
    }
}

impl SmtpForm {
    fn of(s: &Settings) -> Self {
        let m = &s.smtp;
        Self {
            host: m.host.clone(),
            port: m.port.to_string(),
            security: security_str(m.security).to_owned(),
            username: m.username.clone().unwrap_or_default(),
            password: String::new(),
            clear_password: None,
            sender: m.sender.clone(),
            timeout: m.timeout_secs.to_string(),
            ca_file: m.ca_file.clone().unwrap_or_default(),
        }
    }

    /// The patch's `smtp` object replaces the stored one: an empty password field keeps the
    /// stored password by sending it back.
    fn patch(&self, stored_password: Option<String>) -> Result<SettingsPatch, CoreError> {
        let port: u16 = self
            .port
            .trim()
            .parse()
            .map_err(|_| CoreError::invalid_input("smtp.port", "must be a number from 1 to 65535"))?;
        let timeout: u64 = self
            .timeout
            .trim()
            .parse()
            .map_err(|_| CoreError::invalid_input("smtp.timeout_secs", "must be a whole number of seconds"))?;
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let password = if on(&self.clear_password) {
            None
        } else if self.password.is_empty() {
            stored_password
        } else {
            Some(self.password.clone())
        };
        Ok(SettingsPatch {
            smtp: Some(json!({
                "host": self.host.trim(),
                "port": port,
                "security": self.security,
                "username": opt(&self.username),
                "password": password,
                "sender": self.sender.trim(),
                "timeout_secs": timeout,
                "ca_file": opt(&self.ca_file),
            })),
            ..SettingsPatch::default()
        })
    }
}

const SMTP_FIELDS: &[&str] =
    &["smtp.host", "smtp.port", "smtp.username", "smtp.sender", "smtp.timeout_secs", "smtp.ca_file"];

/// What the test form shows: the server's answer, or why no message was tried.
enum TestResult {
    Outcome(MailTestOutcome),
    Error(String),
}

struct SmtpView<'a> {
    form: &'a SmtpForm,
    error: Option<FormError>,
    has_password: bool,
    configured: bool,
    test_to: String,
    test: Option<TestResult>,
    done: Option<&'a str>,
}

impl<'a> SmtpView<'a> {
    /// The view of `form` over the stored settings `s`: nothing failed, nothing tested yet.
    fn new(me: &SignedIn, s: &onramp_core::Settings, form: &'a SmtpForm) -> Self {
        Self {
            form,
            error: None,
            has_password: s.smtp.password.is_some(),
            configured: s.smtp.is_configured(),
            test_to: me.session.user.email.clone(),
            test: None,
            done: None,
        }
    }
}

fn smtp_page(me: &SignedIn, v: SmtpView) -> Response {
    let f = v.form;
    let err = &v.error;
    let e = |k: &str| FormError::on(err, k);
    let body = html! {
        (notice_banner(v.done))
        @if !v.configured { p.reason #smtp-unconfigured { "Mail is off: no SMTP host is set. Invitations, welcome "
            "e-mails and password resets need it." } }
        div.grid2 {
        form.card #smtp-settings method="post" action="/settings/smtp" {
            (csrf(me))
            @if let Some(m) = FormError::general(err, SMTP_FIELDS) { p.error role="alert" { (m) } }
            (field("SMTP server", "host", "text", &f.host, e("smtp.host").as_deref(), false))
            (field("Port", "port", "number", &f.port, e("smtp.port").as_deref(), true))
            div.field {
                label for="f-security" { "Security" }
                select #f-security name="security" {
                    @for (value, label) in [("starttls", "STARTTLS (usually port 587)"), ("tls", "TLS from the first byte (usually port 465)"), ("none", "None: plain text (only on a trusted network)")] {
                        option value=(value) selected[f.security == value] { (label) }
                    }
                }
            }
            (field("Username", "username", "text", &f.username, e("smtp.username").as_deref(), false))
            div.field {
                label for="f-password" { "Password" span.optional { " (optional)" } }
                input #f-password name="password" type="password" autocomplete="new-password" value=""
                    aria-describedby="f-password-hint"
                    placeholder=(if v.has_password { "•••••••• (stored)" } else { "" });
                span.hint #f-password-hint { @if v.has_password { "A password is stored. Leave this empty to keep it." }
                    @else { "No password is stored." } }
            }
            @if v.has_password { (checkbox("Remove the stored password", "clear_password", on(&f.clear_password))) }
            (field("Sender address (From)", "sender", "email", &f.sender, e("smtp.sender").as_deref(), true))
            (field("Timeout in seconds", "timeout", "number", &f.timeout, e("smtp.timeout_secs").as_deref(), true))
            (field("Extra CA certificates (PEM file on the core host)", "ca_file", "text", &f.ca_file,
                e("smtp.ca_file").as_deref(), false))
            div.buttons {
                button.primary #save-smtp type="submit" { "Save SMTP settings" }
                a.button href="/settings/smtp" { "Discard changes" }
            }
        }
        div {
        section.card #smtp-test {
            h2 { "Send a test e-mail" }
            p.hint { "Sent at once with the saved settings (not through the outbox); the server's answer is shown here." }
            form method="post" action="/settings/smtp/test" {
                (csrf(me))
                div.field {
                    label for="test-to" { "To" }
                    input #test-to name="to" type="email" value=(v.test_to) required;
                }
                button #send-test type="submit" disabled[!v.configured] { "Send a test e-mail" }
            }
            @match &v.test {
                Some(TestResult::Outcome(o)) => div #smtp-test-result role="status" {
                    @if o.delivered {
                        p.notice { "Delivered: " (o.server) " accepted the message." }
                    } @else {
                        p.error { "Not delivered: " (o.server) " refused it or could not be reached." }
                    }
                    p { "Server answer: " code { @if let Some(c) = o.code { (c) " " } (o.reply) } }
                },
                Some(TestResult::Error(m)) => div #smtp-test-result role="alert" { p.error { (m) } },
                None => {},
            }
        }
        }
        }
    };
    page(me, "SMTP settings", body)
}

pub async fn smtp(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(q): Query<DoneQuery>) -> Response {
    let s = ui.core.settings().await;
    let form = SmtpForm::of(&s);
    smtp_page(&me, SmtpView { done: q.done.as_deref(), ..SmtpView::new(&me, &s, &form) })
}

pub async fn save_smtp(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(f): Form<SmtpForm>) -> Response {
    let stored = ui.core.settings().await;
    let result = match f.patch(stored.smtp.password.clone()) {
        Ok(patch) => ui.core.update_settings(&me.actor, patch).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to("/settings/smtp?done=saved").into_response(),
        Err(e) => {
            let mut r = smtp_page(&me, SmtpView { error: Some(FormError::of(&e)), ..SmtpView::new(&me, &stored, &f) });
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

#[derive(Deserialize, Default)]
pub struct TestForm {
    #[serde(default)]
    to: String,
}

pub async fn test_smtp(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(t): Form<TestForm>) -> Response {
    let test = match ui.core.send_test_mail(&me.actor, t.to.trim()).await {
        Ok(o) => TestResult::Outcome(o),
        Err(e @ CoreError::Internal(_)) => return layout::core_error_page(Some(&me), &e),
        Err(e) => TestResult::Error(layout::message_of(&e)),
    };
    let s = ui.core.settings().await;
    let form = SmtpForm::of(&s);
    smtp_page(&me, SmtpView { test_to: t.to, test: Some(test), ..SmtpView::new(&me, &s, &form) })
}

#[cfg(test)]
mod tests {
    use super::short_duration;
    use onramp_domain::duration::parse_lifetime;

    #[test]
    fn durations_read_back() {
        for (secs, text) in [(86_400, "24h"), (600, "10m"), (3 * 86_400, "3d"), (604_800, "1w"), (90, "90s")] {
            assert_eq!(short_duration(secs), text);
            assert_eq!(parse_lifetime("t", text).unwrap(), secs);
        }
    }
}
