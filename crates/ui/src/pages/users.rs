//! Users: the searchable list with each row's actions, add/edit/delete, devices, bulk tokens.

use crate::auth::{page, SignedInAdmin};
use crate::forms::{self, checkbox, field, FormError};
use crate::layout::{self, csrf, notice_banner, time};
use crate::Ui;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use onramp_core::{
    BulkOutcome, BulkRequest, PendingToken, TokenActions, UserFilter, UserInfo, UserInput, UserPatch, UserSearch,
};
use serde::Deserialize;

pub const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    page: Option<i64>,
    #[serde(default)]
    done: Option<String>,
}

fn filter_of(s: Option<&str>) -> Option<UserFilter> {
    match s? {
        "pending" => Some(UserFilter::Pending),
        "enrolled" => Some(UserFilter::Enrolled),
        "disabled" => Some(UserFilter::Disabled),
        _ => None,
    }
}

fn state_badge(u: &UserInfo) -> Markup {
    let (class, text) = if !u.is_active {
        ("badge disabled", "disabled")
    } else if u.enrolled {
        ("badge enrolled", "enrolled")
    } else {
        ("badge pending", "pending")
    };
    html! {
        span class=(class) { (text) }
        // The directory sync is authoritative for these: edits here are overwritten.
        @if u.source != "local" { " " span.badge.directory title="Managed by the directory sync" { "directory" } }
    }
}

fn tokens_cell(tokens: &[PendingToken]) -> Markup {
    html! {
        @if tokens.is_empty() { span.muted { "none" } }
        @for t in tokens {
            span.token-chip title={ "expires " (time(t.expires_at)) } { (t.kind) " · until " (time(t.expires_at)) }
        }
    }
}

/// The row's action menu: a disclosure (works without script, keyboard-friendly).
fn actions(u: &UserInfo, a: &TokenActions) -> Markup {
    let base = format!("/users/{}", u.username);
    html! {
        details.menu {
            summary aria-label={ "Actions for " (u.username) } { "Actions" }
            ul role="list" {
                li { @match a.enrollment {
                    None => a.action href={ (base) "/enroll" } hx-get={ (base) "/enroll" } hx-target="#dialog"
                        hx-select="#dialog-body" { "Start enrollment" },
                    Some(why) => span.action.disabled aria-disabled="true" title=(why) { "Start enrollment" span.reason { (why) } },
                } }
                li { @match a.desktop {
                    None => a.action href={ (base) "/desktop" } hx-get={ (base) "/desktop" } hx-target="#dialog"
                        hx-select="#dialog-body" { "Configure desktop client" },
                    Some(why) => span.action.disabled aria-disabled="true" title=(why) {
                        "Configure desktop client" span.reason { (why) }
                        @if why.starts_with("No VPN") { " " a href="/locations" { "Locations" } }
                    },
                } }
                li { button.action type="submit" formaction={ (base) "/revoke" } { "Revoke pending tokens" } }
                li { button.action type="submit" formaction={ (base) "/active" } name="active"
                        value=(if u.is_active { "false" } else { "true" }) {
                    (if u.is_active { "Disable" } else { "Enable" }) } }
                li { a.action href=(base) { "Edit" } }
                li { a.action href={ (base) "/devices" } { "Devices" } }
                li { a.action.danger href={ (base) "/delete" } { "Delete" } }
            }
        }
    }
}

fn list_url(q: &ListQuery, page: i64) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::from("/users?"));
    if let Some(t) = q.q.as_deref().filter(|t| !t.is_empty()) {
        s.append_pair("q", t);
    }
    if let Some(st) = q.state.as_deref().filter(|t| !t.is_empty()) {
        s.append_pair("state", st);
    }
    if page > 1 {
        s.append_pair("page", &page.to_string());
    }
    s.finish().trim_end_matches('?').to_owned()
}

pub async fn list(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(q): Query<ListQuery>) -> Response {
    let page_no = q.page.unwrap_or(1).clamp(1, i64::MAX / PAGE_SIZE);
    let search = UserSearch {
        text: q.q.clone(),
        filter: filter_of(q.state.as_deref()),
        limit: PAGE_SIZE,
        offset: (page_no - 1) * PAGE_SIZE,
    };
    let result = match ui.core.search_users(&search).await {
        Ok(r) => r,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let has_locations = match ui.core.has_locations().await {
        Ok(b) => b,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let groups = match ui.core.group_names().await {
        Ok(g) => g,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let smtp = ui.core.settings().await.smtp.is_configured();
    let pages = ((result.total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    if page_no > pages {
        // Past the end (a stale link after deletions, or a typed number): the last page.
        return Redirect::to(&list_url(&q, pages)).into_response();
    }
    let first = if result.total == 0 { 0 } else { search.offset + 1 };
    let last = search.offset + result.users.len() as i64;
    let state = q.state.clone().unwrap_or_default();
    let body = html! {
        (notice_banner(q.done.as_deref()))
        div.toolbar {
            form.search method="get" action="/users" role="search" {
                label.visually-hidden for="q" { "Search users" }
                input #q type="search" name="q" value=(q.q.clone().unwrap_or_default())
                    placeholder="Search by username, name or e-mail"
                    hx-get="/users" hx-trigger="input changed delay:300ms, search" hx-target="#users"
                    hx-select="#users" hx-swap="outerHTML" hx-include="#state" hx-push-url="true";
                label.visually-hidden for="state" { "Show" }
                select #state name="state" {
                    @for (v, l) in [("", "All users"), ("pending", "Pending"), ("enrolled", "Enrolled"), ("disabled", "Disabled")] {
                        option value=(v) selected[state == v] { (l) }
                    }
                }
                button type="submit" { "Search" }
            }
            a.button.primary href="/users/new" { "Add user" }
        }
        div #users {
            form #bulk method="post" action="/users/bulk" {
                (csrf(&me))
                p.count { "Showing " (first) "–" (last) " of " (result.total) " users" }
                table.users {
                    thead { tr {
                        th scope="col" { span.visually-hidden { "Select" } }
                        th scope="col" { "Username" } th scope="col" { "Name" } th scope="col" { "E-mail" }
                        th scope="col" { "State" } th scope="col" { "Pending tokens" } th scope="col" { "Groups" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for (u, tokens) in &result.users {
                            tr data-user=(u.username) {
                                td { input type="checkbox" name="user" value=(u.username) aria-label={ "Select " (u.username) }; }
                                td { a href={ "/users/" (u.username) } { (u.username) } }
                                td { (u.first_name) " " (u.last_name) }
                                td { (u.email) }
                                td { (state_badge(u)) }
                                td { (tokens_cell(tokens)) }
                                td { (u.groups.join(", ")) }
                                td { (actions(u, &u.token_actions(has_locations))) }
                            }
                        }
                        @if result.users.is_empty() { tr { td colspan="8" { "No user matches." } } }
                    }
                }
                nav.pager aria-label="Pages" {
                    @if page_no > 1 { a rel="prev" href=(list_url(&q, page_no - 1)) { "← Previous" } }
                    span { "Page " (page_no) " of " (pages) }
                    @if page_no < pages { a rel="next" href=(list_url(&q, page_no + 1)) { "Next →" } }
                }
                fieldset.bulk {
                    legend { "Issue enrollment tokens in bulk" }
                    p.hint { "For the users ticked above, and/or every member of a group: pending users get enrollment tokens, enrolled users desktop-configuration tokens; disabled users are skipped (listed in the CSV). New tokens replace a user's unused ones of the same kind." }
                    label for="bulk-group" { "Group" }
                    select #bulk-group name="group" {
                        option value="" { "(no group: ticked users only)" }
                        @for g in &groups { option value=(g) { (g) } }
                    }
                    @if !smtp { p.reason { "E-mail is unavailable: SMTP is not configured. " a href="/settings/smtp" { "Configure SMTP" } } }
                    div.buttons {
                        button #bulk-zip type="submit" name="mode" value="zip" { "Download provisioning files (ZIP)" }
                        button #bulk-mail type="submit" name="mode" value="mail" disabled[!smtp] { "Send invitations by e-mail" }
                    }
                }
            }
        }
    };
    page(&me, "Users", body)
}

#[derive(Deserialize, Default)]
pub struct UserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    is_active: Option<String>,
}

fn user_form(me: &crate::auth::SignedIn, action: &str, f: &UserForm, err: &Option<FormError>, new: bool) -> Markup {
    let fields = ["username", "first_name", "last_name", "email", "phone"];
    html! {
        form.card method="post" action=(action) {
            (csrf(me))
            @if let Some(e) = FormError::general(err, &fields) { p.error role="alert" { (e) } }
            @if new {
                (field("Username", "username", "text", &f.username, FormError::on(err, "username").as_deref(), true))
            }
            (field("First name", "first_name", "text", &f.first_name, FormError::on(err, "first_name").as_deref(), true))
            (field("Last name", "last_name", "text", &f.last_name, FormError::on(err, "last_name").as_deref(), true))
            (field("E-mail", "email", "email", &f.email, FormError::on(err, "email").as_deref(), true))
            (field("Phone", "phone", "tel", &f.phone, FormError::on(err, "phone").as_deref(), false))
            (checkbox("Active (may enroll and connect)", "is_active", f.is_active.is_some()))
            div.buttons {
                button.primary type="submit" { (if new { "Create user" } else { "Save" }) }
                a.button href="/users" { "Cancel" }
            }
        }
    }
}

pub async fn new_form(SignedInAdmin(me): SignedInAdmin) -> Response {
    let f = UserForm { is_active: Some("on".into()), ..Default::default() };
    page(&me, "Add user", user_form(&me, "/users/new", &f, &None, true))
}

pub async fn create(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(f): Form<UserForm>) -> Response {
    let input = UserInput {
        username: f.username.trim().to_owned(),
        first_name: f.first_name.clone(),
        last_name: f.last_name.clone(),
        email: f.email.clone(),
        phone: Some(f.phone.clone()).filter(|p| !p.trim().is_empty()),
        password: None,
        is_active: Some(f.is_active.is_some()),
    };
    match ui.core.create_user(&me.actor, input).await {
        Ok(u) => Redirect::to(&format!("/users?q={}&done=created", u.username)).into_response(),
        Err(e) => {
            let mut r = page(&me, "Add user", user_form(&me, "/users/new", &f, &Some(FormError::of(&e)), true));
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

pub async fn edit_form(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(username): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let u = match ui.core.get_user(&username).await {
        Ok(u) => u,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let sources = ui.core.configured_directory_sources().await;
    let f = UserForm {
        username: u.username.clone(),
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        email: u.email.clone(),
        phone: u.phone.clone().unwrap_or_default(),
        is_active: u.is_active.then(|| "on".into()),
    };
    let body = html! {
        (notice_banner(q.done.as_deref()))
        p { "Username: " strong { (u.username) } " · " (state_badge(&u)) " · groups: " (u.groups.join(", ")) }
        (user_form(&me, &format!("/users/{}", u.username), &f, &None, false))
        section.card #directory-link {
            h2 { "Directory" }
            @if u.source == "local" {
                p.hint { "Created in Onramp: the directory sync leaves this user alone. Link them to hand them over "
                    "to the directory entry with the same username (from the next sync it updates and disables them)." }
                @if sources.is_empty() {
                    p.hint #directory-none { "No directory is set up yet: configure "
                        a href="/settings/directory" { "LDAP / Active Directory" } " or "
                        a href="/settings/entra" { "Entra ID" } " first." }
                } @else {
                    form method="post" action={ "/users/" (u.username) "/directory-link" } {
                        (csrf(&me))
                        input type="hidden" name="link" value="true";
                        // One button per directory that is set up: with both, the admin picks.
                        @for s in &sources {
                            button id={ "directory-link-" (s.as_str()) } type="submit" name="source" value=(s.as_str()) {
                                "Link to " (s.title())
                            }
                            " "
                        }
                    }
                }
            } @else {
                p.hint { "Managed by the directory sync (" (source_title(&u.source)) "): changes made here are overwritten "
                    "by the next sync. Unlink to make this user Onramp's own again." }
                form method="post" action={ "/users/" (u.username) "/directory-link" } {
                    (csrf(&me))
                    input type="hidden" name="link" value="false";
                    button #directory-unlink type="submit" { "Unlink from the directory" }
                }
            }
        }
    };
    page(&me, &format!("Edit {}", u.username), body)
}

pub async fn update(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(username): Path<String>,
    Form(f): Form<UserForm>,
) -> Response {
    let patch = UserPatch {
        first_name: Some(f.first_name.clone()),
        last_name: Some(f.last_name.clone()),
        email: Some(f.email.clone()),
        phone: Some(Some(f.phone.clone()).filter(|p| !p.trim().is_empty())),
        is_active: Some(f.is_active.is_some()),
    };
    match ui.core.update_user(&me.actor, &username, patch).await {
        Ok(_) => Redirect::to(&format!("/users/{username}?done=saved")).into_response(),
        Err(e) => {
            let f = UserForm { username: username.clone(), ..f };
            let body = user_form(&me, &format!("/users/{username}"), &f, &Some(FormError::of(&e)), false);
            let mut r = page(&me, &format!("Edit {username}"), body);
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

pub async fn delete_form(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(username): Path<String>,
) -> Response {
    let u = match ui.core.get_user(&username).await {
        Ok(u) => u,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let devices = ui.core.list_devices(Some(&username)).await.map(|d| d.len()).unwrap_or(0);
    let body = html! {
        form.card.danger method="post" action={ "/users/" (u.username) "/delete" } {
            (csrf(&me))
            p { "Delete " strong { (u.first_name) " " (u.last_name) " (" (u.username) ")" } "? "
                "Their " (devices) " device(s) are removed and lose VPN access at once, and their pending tokens stop working. This cannot be undone." }
            div.buttons {
                button.danger #confirm-delete type="submit" { "Delete " (u.username) }
                a.button href="/users" { "Cancel" }
            }
        }
    };
    page(&me, &format!("Delete {}", u.username), body)
}

pub async fn delete(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Path(username): Path<String>) -> Response {
    match ui.core.delete_user(&me.actor, &username).await {
        Ok(()) => Redirect::to("/users?done=deleted").into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

#[derive(Deserialize)]
pub struct ActiveForm {
    active: String,
}

pub async fn set_active(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(username): Path<String>,
    Form(f): Form<ActiveForm>,
) -> Response {
    let active = f.active == "true";
    let patch = UserPatch { is_active: Some(active), ..Default::default() };
    match ui.core.update_user(&me.actor, &username, patch).await {
        Ok(_) => {
            let done = if active { "enabled" } else { "disabled" };
            Redirect::to(&format!("/users?q={username}&done={done}")).into_response()
        }
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

#[derive(Deserialize)]
pub struct LinkForm {
    link: String,
    /// Which directory (`ldap`, `entra`); none: the configured one.
    source: Option<String>,
}

/// A user's `source` as people call it.
fn source_title(source: &str) -> &str {
    source.parse::<onramp_core::DirectorySource>().map(|s| s.title()).unwrap_or(source)
}

pub async fn directory_link(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(username): Path<String>,
    Form(f): Form<LinkForm>,
) -> Response {
    let link = match (f.link.as_str(), f.source.as_deref().map(str::parse::<onramp_core::DirectorySource>)) {
        ("true", Some(Ok(source))) => Some(source),
        ("true", None) => Some(ui.core.default_directory_source().await),
        ("true", Some(Err(why))) => return layout::error_page(StatusCode::BAD_REQUEST, "Unknown directory", &why),
        _ => None,
    };
    match ui.core.set_directory_link(&me.actor, &username, link).await {
        Ok(_) => Redirect::to(&format!("/users/{username}?done=saved")).into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

pub async fn revoke(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Path(username): Path<String>) -> Response {
    match ui.core.revoke_tokens(&me.actor, &username, None).await {
        Ok(_) => Redirect::to(&format!("/users?q={username}&done=revoked")).into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

/// A device table; `delete_base` is where each row's delete form posts (admin or self).
pub fn devices_table(
    me: &crate::auth::SignedIn,
    devices: &[onramp_core::DeviceInfo],
    delete_base: &str,
    config_base: Option<&str>,
) -> Markup {
    html! {
        table.devices {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Addresses" } th scope="col" { "Public key" }
                th scope="col" { "Added" } th scope="col" { span.visually-hidden { "Actions" } } } }
            tbody {
                @for d in devices {
                    tr {
                        td { (d.name) }
                        td { @for c in &d.configs { span.addr { (c.network_name) ": " (c.assigned_ip) } " " } }
                        td { code { (d.pubkey) } }
                        td { (time(d.created_at)) }
                        td { div.row-actions {
                            @if let Some(base) = config_base {
                                @for c in &d.configs {
                                    a.button href={ (base) "/" (d.id) "/config?location=" (c.network_id) } {
                                        "Config for " (c.network_name) }
                                }
                            }
                            form method="post" action={ (delete_base) "/" (d.id) "/delete" } {
                                (csrf(me))
                                button.danger type="submit" aria-label={ "Delete device " (d.name) } { "Delete" }
                            }
                        } }
                    }
                }
                @if devices.is_empty() { tr { td colspan="5" { "No devices." } } }
            }
        }
    }
}

pub async fn devices(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(username): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let devices = match ui.core.list_devices(Some(&username)).await {
        Ok(d) => d,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let base = format!("/users/{username}/devices");
    let body = html! {
        (notice_banner(q.done.as_deref()))
        p.hint { "A downloaded configuration has a placeholder for the private key: the key never leaves the user's machine." }
        (devices_table(&me, &devices, &base, Some(&base)))
        p { a href="/users" { "← Users" } }
    };
    page(&me, &format!("Devices of {username}"), body)
}

pub async fn delete_device(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path((username, id)): Path<(String, i64)>,
) -> Response {
    match ui.core.delete_device_of(&me.actor, &username, id).await {
        Ok(()) => Redirect::to(&format!("/users/{username}/devices?done=device-deleted")).into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

#[derive(Deserialize)]
pub struct ConfigQuery {
    location: i64,
}

pub async fn device_config(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path((username, id)): Path<(String, i64)>,
    Query(q): Query<ConfigQuery>,
) -> Response {
    let device = match ui.core.get_device(id).await {
        Ok(d) if d.username == username => d,
        Ok(_) => return layout::not_found().await,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    match device.configs.into_iter().find(|c| c.network_id == q.location) {
        Some(c) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.conf\"", file_stem(&c.network_name))),
            ],
            c.config,
        )
            .into_response(),
        None => layout::not_found().await,
    }
}

/// Bulk issue for ticked users and/or a group: a ZIP of `USER/provisioning.json` plus
/// `provisioning.csv`, or queued invitation mails.
pub async fn bulk(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, body: Bytes) -> Response {
    let usernames = forms::all_values(&body, "user");
    let group = forms::first_value(&body, "group").filter(|g| !g.is_empty());
    let mail = forms::first_value(&body, "mode").as_deref() == Some("mail");
    if usernames.is_empty() && group.is_none() {
        let body = html! { p.error role="alert" { "Tick at least one user or choose a group." } p { a href="/users" { "← Users" } } };
        let mut r = page(&me, "Bulk enrollment", body);
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }
    let req = BulkRequest { group, usernames, token_expiration_time: None, send_enrollment_notification: mail };
    let outcomes = match ui.core.issue_bulk(&me.actor, req).await {
        Ok(o) => o,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    if mail {
        let issued = outcomes.iter().filter(|o| matches!(o, BulkOutcome::Issued(_))).count();
        let body = html! {
            p.notice role="status" { (issued) " invitation(s) queued. " a href="/mail" { "See the mail outbox" } }
            (skipped_list(&outcomes))
            p { a href="/users" { "← Users" } }
        };
        return page(&me, "Invitations sent", body);
    }
    match bulk_zip(&outcomes) {
        Ok(zip) => (
            [
                (header::CONTENT_TYPE, "application/zip"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"provisioning.zip\""),
            ],
            zip,
        )
            .into_response(),
        Err(e) => layout::core_error_page(Some(&me), &onramp_core::CoreError::Internal(e)),
    }
}

fn skipped_list(outcomes: &[BulkOutcome]) -> Markup {
    html! {
        @let skipped: Vec<_> = outcomes.iter().filter_map(|o| match o {
            BulkOutcome::Skipped { username, reason, .. } => Some((username, reason)), _ => None }).collect();
        @if !skipped.is_empty() {
            h2 { "Skipped" }
            ul { @for (u, r) in skipped { li { strong { (u) } ": " (r) } } }
        }
    }
}

fn bulk_zip(outcomes: &[BulkOutcome]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o600);
    let mut csv = csv::Writer::from_writer(Vec::new());
    let err = |e: &dyn std::fmt::Display| e.to_string();
    csv.write_record(BulkOutcome::csv_header(false)).map_err(|e| err(&e))?;
    for o in outcomes {
        csv.write_record(o.csv_record(false)).map_err(|e| err(&e))?;
        if let (BulkOutcome::Issued(t), Some(file)) = (o, o.provisioning_file()) {
            zip.start_file(format!("{}/provisioning.json", t.username), opts).map_err(|e| err(&e))?;
            zip.write_all(serde_json::to_string_pretty(&file).map_err(|e| err(&e))?.as_bytes()).map_err(|e| err(&e))?;
        }
    }
    zip.start_file("provisioning.csv", opts).map_err(|e| err(&e))?;
    zip.write_all(&csv.into_inner().map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    Ok(zip.finish().map_err(|e| err(&e))?.into_inner())
}

/// A file name from a location name: letters, digits, `-` and `_` only.
fn file_stem(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() {
        "onramp".into()
    } else {
        s
    }
}
