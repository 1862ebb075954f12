//! Directory sync settings (LDAP / Active Directory): the connection, what is synced, the
//! schedule; "Dry run" and "Sync now" with the run's report; the last run's status.

use crate::auth::{page, SignedIn, SignedInAdmin};
use crate::forms::{checkbox, field, FormError};
use crate::layout::{self, csrf, notice_banner, time};
use crate::Ui;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use onramp_core::{CoreError, DirectorySettings, DirectorySource, SettingsPatch, SyncReport, SyncStatus};
use serde::Deserialize;
use serde_json::json;

use super::settings::DoneQuery;

#[derive(Deserialize, Default)]
pub struct DirectoryForm {
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    starttls: Option<String>,
    #[serde(default)]
    ca_file: String,
    #[serde(default)]
    bind_dn: String,
    #[serde(default)]
    password_file: String,
    #[serde(default)]
    user_base: String,
    #[serde(default)]
    user_filter: String,
    #[serde(default)]
    group_base: String,
    #[serde(default)]
    group_filter: String,
    #[serde(default)]
    username_attribute: String,
    #[serde(default)]
    first_name_attribute: String,
    #[serde(default)]
    last_name_attribute: String,
    #[serde(default)]
    email_attribute: String,
    #[serde(default)]
    phone_attribute: String,
    #[serde(default)]
    sync_groups: String,
    #[serde(default)]
    interval_minutes: String,
    #[serde(default)]
    provisioning_attribute: String,
}

impl DirectoryForm {
    fn of(d: &DirectorySettings) -> Self {
        Self {
            enabled: d.enabled.then(|| "on".into()),
            url: d.url.clone(),
            starttls: d.starttls.then(|| "on".into()),
            ca_file: d.ca_file.clone().unwrap_or_default(),
            bind_dn: d.bind_dn.clone().unwrap_or_default(),
            password_file: d.password_file.clone().unwrap_or_default(),
            user_base: d.user_base.clone(),
            user_filter: d.user_filter.clone(),
            group_base: d.group_base.clone(),
            group_filter: d.group_filter.clone(),
            username_attribute: d.username_attribute.clone(),
            first_name_attribute: d.first_name_attribute.clone(),
            last_name_attribute: d.last_name_attribute.clone(),
            email_attribute: d.email_attribute.clone(),
            phone_attribute: d.phone_attribute.clone(),
            sync_groups: d.sync_groups.join(", "),
            interval_minutes: (d.interval_secs / 60).to_string(),
            provisioning_attribute: d.provisioning_attribute.clone(),
        }
    }

    fn patch(&self) -> Result<SettingsPatch, CoreError> {
        let minutes: i64 = self.interval_minutes.trim().parse().map_err(|_| {
            CoreError::invalid_input("directory.interval_secs", "must be a whole number of minutes (1 to 1440)")
        })?;
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let groups: Vec<String> =
            self.sync_groups.split([',', '\n']).map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
        Ok(SettingsPatch {
            directory: Some(json!({
                "enabled": self.enabled.is_some(),
                "url": self.url.trim(),
                "starttls": self.starttls.is_some(),
                "ca_file": opt(&self.ca_file),
                "bind_dn": opt(&self.bind_dn),
                "password_file": opt(&self.password_file),
                "user_base": self.user_base.trim(),
                "user_filter": self.user_filter.trim(),
                "group_base": self.group_base.trim(),
                "group_filter": self.group_filter.trim(),
                "username_attribute": self.username_attribute.trim(),
                "first_name_attribute": self.first_name_attribute.trim(),
                "last_name_attribute": self.last_name_attribute.trim(),
                "email_attribute": self.email_attribute.trim(),
                "phone_attribute": self.phone_attribute.trim(),
                "sync_groups": groups,
                "interval_secs": minutes.saturating_mul(60),
                "provisioning_attribute": self.provisioning_attribute.trim(),
            })),
            ..SettingsPatch::default()
        })
    }
}

const FIELDS: &[&str] = &[
    "directory.url",
    "directory.enabled",
    "directory.user_filter",
    "directory.group_filter",
    "directory.username_attribute",
    "directory.first_name_attribute",
    "directory.last_name_attribute",
    "directory.email_attribute",
    "directory.phone_attribute",
    "directory.provisioning_attribute",
    "directory.interval_secs",
];

/// What the page shows below the form: a run's report or why it failed.
pub(crate) enum RunResult {
    Report(Box<SyncReport>),
    Error(String),
}

pub(crate) fn status_card(st: &SyncStatus) -> Markup {
    html! {
        section.card #directory-status {
            h2 { "Last sync" }
            dl {
                dt { "Schedule" }
                dd { @if st.scheduled { "every " (st.interval_secs / 60) " min" } @else { "off (runs only when asked)" } }
                @if let Some(h) = &st.running_on { dt { "Running now on" } dd { (h) } }
                dt { "Last run" }
                dd { @if let Some(t) = st.last_finished { (time(t)) } @else { "never" } }
                @if let Some(e) = &st.last_error {
                    dt { "Error" }
                    dd.error role="alert" { (e) " (" (st.failures_in_a_row) " run(s) in a row; retried automatically)" }
                }
                @if let Some(s) = &st.last_summary {
                    dt { "Outcome" }
                    dd { (s["users_read"]) " users read, " (s["created"]) " created, " (s["updated"]) " updated, "
                         (s["disabled"]) " disabled, " (s["conflicts"]) " not synced" }
                }
            }
        }
    }
}

pub(crate) fn report_card(r: &RunResult) -> Markup {
    let list = |title: String, items: Vec<String>| {
        html! {
            @if !items.is_empty() {
                h3 { (title) " (" (items.len()) ")" }
                ul { @for i in items.iter().take(200) { li { (i) } } @if items.len() > 200 { li.muted { "…" } } }
            }
        }
    };
    html! {
        section.card.wide #sync-report role="status" {
            @match r {
                RunResult::Error(m) => { h2 { "The sync failed: nothing was changed" } p.error { (m) } }
                RunResult::Report(r) => {
                    @let verb = if r.dry_run { "would be " } else { "" };
                    h2 { @if r.dry_run { "Dry run: nothing was written" } @else { "Synced" } }
                    p { (r.users_read) " user entries and " (r.groups_read) " group entries read in " (r.round_trips)
                        @if r.source == DirectorySource::Ldap { " LDAP requests, " } @else { " Graph requests, " }
                        (r.duration_ms) " ms."
                        @if !r.changed_anything() { " Nothing to change." } }
                    (list(format!("Users {verb}created"), r.created.clone()))
                    (list(format!("Users {verb}updated"),
                        r.updated.iter().map(|u| format!("{} ({})", u.username, u.fields.join(", "))).collect()))
                    (list(format!("Users {verb}disabled"),
                        r.disabled.iter().map(|d| format!("{}: {}", d.username, d.reason)).collect()))
                    (list(format!("Users {verb}enabled"), r.enabled.clone()))
                    (list(format!("Groups {verb}created"), r.groups_created.clone()))
                    (list(format!("Memberships {verb}added"),
                        r.memberships_added.iter().map(|m| format!("{} → {}", m.username, m.group)).collect()))
                    (list(format!("Memberships {verb}removed"),
                        r.memberships_removed.iter().map(|m| format!("{} ✕ {}", m.username, m.group)).collect()))
                    (list(format!("Invitations {verb}mailed"), r.invitations_mailed.clone()))
                    (list(format!("Provisioning attributes {verb}written"), r.attributes_written.clone()))
                    (list(format!("Provisioning attributes {verb}cleared"), r.attributes_cleared.clone()))
                    (list("Not synced".into(), r.conflicts.iter().map(|c| format!("{}: {}", c.username, c.reason)).collect()))
                    (list("Attribute errors".into(),
                        r.attribute_errors.iter().map(|c| format!("{}: {}", c.username, c.reason)).collect()))
                }
            }
        }
    }
}

fn directory_page(
    me: &SignedIn,
    f: &DirectoryForm,
    err: &Option<FormError>,
    done: Option<&str>,
    status: &SyncStatus,
    run: Option<&RunResult>,
) -> Markup {
    let e = |k: &str| FormError::on(err, k);
    html! {
        (notice_banner(done))
        p.hint { "Users of the synced groups are created and kept up to date from the directory; leavers and users "
            "disabled there are disabled (their devices stay). Users created in Onramp are never changed. "
            "Invitations for new users: " a href="/settings/enrollment#directory-invites" { "Enrollment settings" } "." }
        @if let Some(r) = run { (report_card(r)) }
        form #directory-settings method="post" action="/settings/directory" {
            (csrf(me))
            @if let Some(m) = FormError::general(err, FIELDS) { p.error role="alert" { (m) } }
            section.card {
                h2 { "Connection" }
                (field("Directory URL (ldap:// or ldaps://)", "url", "text", &f.url, e("directory.url").as_deref(), false))
                (checkbox("Upgrade ldap:// with StartTLS", "starttls", f.starttls.is_some()))
                (field("CA certificate file on the server (PEM)", "ca_file", "text", &f.ca_file, None, false))
                (field("Bind DN", "bind_dn", "text", &f.bind_dn, None, false))
                (field("Bind password file on the server", "password_file", "text", &f.password_file, None, false))
            }
            section.card {
                h2 { "What to sync" }
                (field("Groups to sync (names, comma-separated)", "sync_groups", "text", &f.sync_groups, None, false))
                (field("User search base", "user_base", "text", &f.user_base, None, false))
                (field("User filter", "user_filter", "text", &f.user_filter, e("directory.user_filter").as_deref(), true))
                (field("Group search base (empty: the user base)", "group_base", "text", &f.group_base, None, false))
                (field("Group filter", "group_filter", "text", &f.group_filter, e("directory.group_filter").as_deref(), true))
            }
            section.card {
                h2 { "Attributes" }
                (field("Username (uid, sAMAccountName)", "username_attribute", "text", &f.username_attribute,
                    e("directory.username_attribute").as_deref(), true))
                (field("First name", "first_name_attribute", "text", &f.first_name_attribute,
                    e("directory.first_name_attribute").as_deref(), true))
                (field("Last name", "last_name_attribute", "text", &f.last_name_attribute,
                    e("directory.last_name_attribute").as_deref(), true))
                (field("E-mail", "email_attribute", "text", &f.email_attribute, e("directory.email_attribute").as_deref(), true))
                (field("Phone", "phone_attribute", "text", &f.phone_attribute, e("directory.phone_attribute").as_deref(), true))
                (field("Provisioning attribute (tokens for the installer)", "provisioning_attribute", "text",
                    &f.provisioning_attribute, e("directory.provisioning_attribute").as_deref(), true))
            }
            section.card {
                h2 { "Schedule" }
                (checkbox("Sync on a schedule", "enabled", f.enabled.is_some()))
                @if let Some(m) = e("directory.enabled") { p.field-error { (m) } }
                (field("Every (minutes)", "interval_minutes", "number", &f.interval_minutes,
                    e("directory.interval_secs").as_deref(), true))
            }
            div.buttons {
                button.primary #save-directory type="submit" { "Save settings" }
                a.button href="/settings/directory" { "Discard changes" }
            }
        }
        section.card #directory-run {
            h2 { "Run a sync" }
            p.hint { "Uses the saved settings. A dry run reads the directory and lists what would change." }
            div.buttons {
                form method="post" action="/settings/directory/sync" {
                    (csrf(me)) input type="hidden" name="dry_run" value="on";
                    button #dry-run type="submit" { "Dry run" }
                }
                form method="post" action="/settings/directory/sync" {
                    (csrf(me))
                    button.primary #sync-now type="submit" { "Sync now" }
                }
            }
        }
        (status_card(status))
    }
}

pub(crate) async fn status(ui: &Ui, source: DirectorySource) -> SyncStatus {
    ui.core.directory_sync_status(Some(source)).await.unwrap_or_else(|e| SyncStatus {
        source,
        configured: false,
        scheduled: false,
        interval_secs: 0,
        running_on: None,
        last_started: None,
        last_finished: None,
        last_error: Some(e.to_string()),
        failures_in_a_row: 0,
        last_summary: None,
        next_run_at: None,
    })
}

pub async fn show(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(q): Query<DoneQuery>) -> Response {
    let f = DirectoryForm::of(&ui.core.settings().await.directory);
    let st = status(&ui, DirectorySource::Ldap).await;
    page(&me, "Directory sync", directory_page(&me, &f, &None, q.done(), &st, None))
}

pub async fn save(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(f): Form<DirectoryForm>) -> Response {
    let result = match f.patch() {
        Ok(patch) => ui.core.update_settings(&me.actor, patch).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to("/settings/directory?done=saved").into_response(),
        Err(e) => {
            let st = status(&ui, DirectorySource::Ldap).await;
            let body = directory_page(&me, &f, &Some(FormError::of(&e)), None, &st, None);
            let mut r = page(&me, "Directory sync", body);
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct RunForm {
    #[serde(default)]
    pub(crate) dry_run: Option<String>,
}

pub async fn run(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(r): Form<RunForm>) -> Response {
    let result = match ui.core.directory_sync(&me.actor, Some(DirectorySource::Ldap), r.dry_run.is_some()).await {
        Ok(report) => RunResult::Report(Box::new(report)),
        Err(e) => RunResult::Error(layout::message_of(&e)),
    };
    let f = DirectoryForm::of(&ui.core.settings().await.directory);
    let st = status(&ui, DirectorySource::Ldap).await;
    page(&me, "Directory sync", directory_page(&me, &f, &None, None, &st, Some(&result)))
}
