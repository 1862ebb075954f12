//! Operations: admin API tokens, the audit log and the mail outbox.

use crate::auth::{page, SignedIn, SignedInAdmin};
use crate::forms::{field, FormError};
use crate::layout::{self, csrf, notice_banner, time};
use crate::Ui;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use onramp_core::mail::{MailStatus, OutboxEntry};
use onramp_core::{ApiTokenInfo, AuditEntry, AuditQuery, CoreError, NewApiToken};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

// ---------------------------------------------------------------------------------------
// API tokens

#[derive(Deserialize, Default)]
pub struct ApiTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    username: String,
}

fn api_tokens_page(
    me: &SignedIn,
    tokens: &[ApiTokenInfo],
    f: &ApiTokenForm,
    err: &Option<FormError>,
    created: Option<&NewApiToken>,
    done: Option<&str>,
) -> Response {
    let body = html! {
        (notice_banner(done))
        @if let Some(t) = created {
            section.card #new-token-card {
                p.notice role="status" { "API token " strong { (t.name) } " created for " strong { (t.username) }
                    ". It is shown only now: copy it before you leave this page." }
                div.copy-row {
                    label for="new-api-token" { "New API token" }
                    input #new-api-token readonly value=(t.token) autocomplete="off";
                    button.copy type="button" data-copy="new-api-token" { "Copy" }
                }
                p.hint { "Send it as " code { "Authorization: Bearer onramp_…" } " to the REST API under "
                    code { "/api/v1/" } "." }
            }
        }
        section {
            h2 { "Tokens" }
            table.api-tokens {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Starts with" } th scope="col" { "Acts as" }
                    th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "State" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody {
                    @for t in tokens {
                        tr data-token-id=(t.id) {
                            td { (t.name) }
                            td { code { (t.prefix) "…" } }
                            td { (t.username) }
                            td { (time(t.created_at)) }
                            td { @match t.last_used_at { Some(at) => (time(at)), None => span.muted { "never" } } }
                            td { @if t.revoked { span.badge.disabled { "revoked" } } @else { span.badge.enrolled { "active" } } }
                            td {
                                @if !t.revoked {
                                    form method="post" action={ "/api-tokens/" (t.id) "/revoke" } {
                                        (csrf(me))
                                        button.danger type="submit" aria-label={ "Revoke API token " (t.name) } { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                    @if tokens.is_empty() { tr { td colspan="7" { "No API token yet." } } }
                }
            }
        }
        section {
            h2 { "Create an API token" }
            form.card #create-api-token method="post" action="/api-tokens" {
                (csrf(me))
                @if let Some(m) = FormError::general(err, &["name"]) { p.error role="alert" { (m) } }
                (field("Name (what uses it, e.g. \"HR sync\")", "name", "text", &f.name,
                    FormError::on(err, "name").as_deref(), true))
                (field("Acts as (an administrator's username)", "username", "text", &f.username, None, true))
                p.hint { "The token can do everything this administrator can, until it is revoked or they leave the admin group." }
                div.buttons { button.primary #create-token type="submit" { "Create token" } }
            }
        }
    };
    page(me, "API tokens", body)
}

pub async fn api_tokens(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Query(q): Query<DoneQuery>,
) -> Response {
    let tokens = match ui.core.list_api_tokens().await {
        Ok(t) => t,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let f = ApiTokenForm { name: String::new(), username: me.session.user.username.clone() };
    api_tokens_page(&me, &tokens, &f, &None, None, q.done.as_deref())
}

pub async fn create_api_token(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Form(f): Form<ApiTokenForm>,
) -> Response {
    let username =
        if f.username.trim().is_empty() { me.session.user.username.clone() } else { f.username.trim().to_owned() };
    let result = ui.core.create_api_token(&me.actor, &f.name, &username).await;
    let tokens = match ui.core.list_api_tokens().await {
        Ok(t) => t,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    match result {
        Ok(t) => {
            let blank = ApiTokenForm { name: String::new(), username: me.session.user.username.clone() };
            api_tokens_page(&me, &tokens, &blank, &None, Some(&t), None)
        }
        Err(e) => {
            let mut r = api_tokens_page(&me, &tokens, &f, &Some(FormError::of(&e)), None, None);
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

pub async fn revoke_api_token(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Path(id): Path<i64>) -> Response {
    match ui.core.revoke_api_token(&me.actor, id).await {
        Ok(()) => Redirect::to("/api-tokens?done=api-token-revoked").into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

// ---------------------------------------------------------------------------------------
// Audit log

pub const AUDIT_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct AuditForm {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    before: Option<i64>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `since` from a date (`2024-05-01`) or datetime-local (`2024-05-01T08:30`) input, in UTC
/// like every time the UI shows.
fn parse_since(s: &str) -> Result<i64, CoreError> {
    use chrono::{NaiveDate, NaiveDateTime};
    let t = s.trim();
    let at = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default()))
        .map_err(|_| {
            CoreError::invalid_input("since", format!("{t:?} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)"))
        })?;
    Ok(at.and_utc().timestamp())
}

fn audit_url(f: &AuditForm, before: Option<i64>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::from("/audit?"));
    for (k, v) in [("actor", &f.actor), ("action", &f.action), ("since", &f.since)] {
        if let Some(v) = nonempty(v) {
            s.append_pair(k, &v);
        }
    }
    if let Some(b) = before {
        s.append_pair("before", &b.to_string());
    }
    s.finish().trim_end_matches('?').to_owned()
}

fn details_text(d: &serde_json::Value) -> String {
    match d {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(o) if o.is_empty() => String::new(),
        other => other.to_string(),
    }
}

pub async fn audit(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(f): Query<AuditForm>) -> Response {
    let since = match nonempty(&f.since).map(|s| parse_since(&s)).transpose() {
        Ok(s) => s,
        Err(e) => return audit_page(&me, &f, Err(e)),
    };
    let q = AuditQuery {
        action: nonempty(&f.action),
        actor: nonempty(&f.actor),
        since,
        before_id: f.before,
        limit: Some(AUDIT_PAGE),
    };
    let rows = ui.core.list_audit(q).await;
    audit_page(&me, &f, rows)
}

fn audit_page(me: &SignedIn, f: &AuditForm, rows: Result<Vec<AuditEntry>, CoreError>) -> Response {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let (rows, error) = match rows {
        Ok(r) => (r, None),
        Err(e @ CoreError::Internal(_)) => return layout::core_error_page(Some(me), &e),
        Err(e) => (Vec::new(), Some(FormError::of(&e))),
    };
    let filtered = nonempty(&f.actor).is_some() || nonempty(&f.action).is_some() || nonempty(&f.since).is_some();
    let body = html! {
        form.search.filters #audit-filter method="get" action="/audit" role="search" {
            div.toolbar {
                div.field {
                    label for="f-actor" { "User" }
                    input #f-actor name="actor" type="text" value=(v(&f.actor)) placeholder="e.g. admin";
                }
                div.field {
                    label for="f-action" { "Action" }
                    input #f-action name="action" type="text" value=(v(&f.action)) placeholder="e.g. user.created";
                }
                div.field {
                    label for="f-since" { "Since (UTC)" }
                    input #f-since name="since" type="datetime-local" value=(v(&f.since))
                        aria-invalid=[error.as_ref().map(|_| "true")];
                }
                div.buttons {
                    button.primary #audit-apply type="submit" { "Filter" }
                    @if filtered { a.button href="/audit" { "Clear" } }
                }
            }
            p.hint { "User and action must match exactly (actions look like " code { "user.created" } ", "
                code { "settings.updated" } ", " code { "api_token.revoked" } ")." }
        }
        @if let Some(e) = &error { p.error role="alert" { (e.message) } }
        p.count { "Newest first, " (AUDIT_PAGE) " per page." }
        table.audit {
            thead { tr {
                th scope="col" { "At" } th scope="col" { "User" } th scope="col" { "Action" }
                th scope="col" { "Subject" } th scope="col" { "Details" } th scope="col" { "IP" }
            } }
            tbody {
                @for r in &rows {
                    tr data-audit-id=(r.id) {
                        td.nowrap { (time(r.at)) }
                        td { (r.actor) }
                        td.action { code { (r.action) } }
                        td { (r.subject.clone().unwrap_or_default()) }
                        td { code.details { (details_text(&r.details)) } }
                        td { (r.ip.clone().unwrap_or_default()) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="6" { "No event matches." } } }
            }
        }
        nav.pager aria-label="Pages" {
            @if f.before.is_some() { a #audit-newest href=(audit_url(f, None)) { "← Newest" } }
            @if rows.len() as i64 == AUDIT_PAGE {
                @if let Some(last) = rows.last() { a #audit-older rel="next" href=(audit_url(f, Some(last.id))) { "Older →" } }
            }
        }
    };
    page(me, "Audit log", body)
}

// ---------------------------------------------------------------------------------------
// Mail outbox

pub const MAIL_LIMIT: i64 = 200;

#[derive(Deserialize, Default)]
pub struct MailQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

fn status_badge(s: MailStatus) -> Markup {
    let class = match s {
        MailStatus::Pending | MailStatus::Retrying => "badge pending",
        MailStatus::Sent => "badge up",
        MailStatus::Failed => "badge down",
        MailStatus::Cancelled => "badge disabled",
    };
    html! { span class=(class) { (s.as_str()) } }
}

/// Core re-queues failed messages and makes retrying ones due now.
fn retryable(m: &OutboxEntry) -> bool {
    matches!(m.status, MailStatus::Failed | MailStatus::Retrying)
}

fn mail_page(
    me: &SignedIn,
    status: Option<&str>,
    rows: &[OutboxEntry],
    error: Option<String>,
    done: Option<&str>,
) -> Response {
    let status = status.unwrap_or("");
    let body = html! {
        (notice_banner(done))
        @if let Some(e) = &error { p.error role="alert" { (e) } }
        div.toolbar {
            form.search #mail-filter method="get" action="/mail" {
                label.visually-hidden for="status" { "Show messages" }
                select #status name="status" {
                    option value="" selected[status.is_empty()] { "All messages" }
                    @for s in MailStatus::ALL { option value=(s.as_str()) selected[status == s.as_str()] { (s.as_str()) } }
                }
                button type="submit" { "Filter" }
            }
        }
        p.count { "Newest first; at most " (MAIL_LIMIT) " messages"
            @if status.is_empty() { " of every status" } @else { " that are " strong { (status) } } ". "
            "Bodies are not shown: they may hold enrollment tokens." }
        table.mail {
            thead { tr {
                th scope="col" { "#" } th scope="col" { "Kind" } th scope="col" { "To" } th scope="col" { "Subject" }
                th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Last error" }
                th scope="col" { "Next attempt" } th scope="col" { span.visually-hidden { "Actions" } }
            } }
            tbody {
                @for m in rows {
                    tr data-mail-id=(m.id) data-status=(m.status.as_str()) {
                        td { (m.id) }
                        td { (m.kind) }
                        td { (m.to) }
                        td { (m.subject) }
                        td { (status_badge(m.status)) }
                        td { (m.attempts) " of " (m.max_attempts) }
                        td.last-error { (m.last_error.clone().unwrap_or_default()) }
                        td { @match (m.next_attempt_at, m.sent_at) {
                            (Some(at), _) => (time(at)),
                            (None, Some(sent)) => span.muted { "sent " (time(sent)) },
                            _ => span.muted { "none" },
                        } }
                        td {
                            @if retryable(m) {
                                form method="post" action={ "/mail/" (m.id) "/retry" } {
                                    (csrf(me))
                                    input type="hidden" name="status" value=(status);
                                    button.retry type="submit" aria-label={ "Retry message " (m.id) } {
                                        (if m.status == MailStatus::Failed { "Retry" } else { "Send now" }) }
                                }
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="9" { "No message." } } }
            }
        }
    };
    page(me, "Mail outbox", body)
}

pub async fn mail(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(q): Query<MailQuery>) -> Response {
    let status = nonempty(&q.status);
    match ui.core.list_mail(status.as_deref(), MAIL_LIMIT).await {
        Ok(rows) => mail_page(&me, status.as_deref(), &rows, None, q.done.as_deref()),
        Err(e @ CoreError::Invalid(_)) => {
            let mut r = mail_page(&me, None, &[], Some(layout::message_of(&e)), None);
            *r.status_mut() = layout::status_of(&e);
            r
        }
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

#[derive(Deserialize, Default)]
pub struct RetryForm {
    #[serde(default)]
    status: Option<String>,
}

pub async fn retry_mail(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(id): Path<i64>,
    Form(f): Form<RetryForm>,
) -> Response {
    let status = nonempty(&f.status).filter(|s| MailStatus::parse(s).is_some());
    match ui.core.retry_mail(&me.actor, id).await {
        Ok(()) => {
            let mut url = url::form_urlencoded::Serializer::new(String::from("/mail?"));
            if let Some(s) = &status {
                url.append_pair("status", s);
            }
            url.append_pair("done", "retried");
            Redirect::to(&url.finish()).into_response()
        }
        Err(e @ (CoreError::NotFound { .. } | CoreError::Conflict { .. })) => {
            let rows = ui.core.list_mail(status.as_deref(), MAIL_LIMIT).await.unwrap_or_default();
            let mut r = mail_page(&me, status.as_deref(), &rows, Some(layout::message_of(&e)), None);
            *r.status_mut() = layout::status_of(&e);
            r
        }
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_accepts_dates_and_datetimes_in_utc() {
        assert_eq!(super::parse_since("1970-01-02").unwrap(), 86_400);
        assert_eq!(super::parse_since("1970-01-01T01:30").unwrap(), 5400);
        assert!(super::parse_since("yesterday").is_err());
    }
}
