//! Entra ID sync settings: the app registration, what is synced, the schedule; "Dry run"
//! and "Sync now" with the run's report; the last run's status. The report and status
//! cards are the LDAP page's.

use super::directory::{report_card, status, status_card, RunForm, RunResult};
use super::settings::DoneQuery;
use crate::auth::{page, SignedIn, SignedInAdmin};
use crate::forms::{checkbox, field, FormError};
use crate::layout::{self, csrf, notice_banner};
use crate::Ui;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use onramp_core::{CoreError, DirectorySource, EntraSettings, SettingsPatch, SyncStatus};
use serde::Deserialize;
use serde_json::json;

const USERNAME_CHOICES: &[(&str, &str)] = &[
    ("userPrincipalName", "UPN before the @ (ann.lee@… → ann.lee)"),
    ("mailNickname", "Mail nickname (alias)"),
    ("onPremisesSamAccountName", "sAMAccountName (synced from AD)"),
];

#[derive(Deserialize, Default)]
pub struct EntraForm {
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret_file: String,
    #[serde(default)]
    sync_groups: String,
    #[serde(default)]
    username_property: String,
    #[serde(default)]
    attribute_set: String,
    #[serde(default)]
    interval_minutes: String,
    #[serde(default)]
    graph_url: String,
    #[serde(default)]
    login_url: String,
}

impl EntraForm {
    fn of(e: &EntraSettings) -> Self {
        Self {
            enabled: e.enabled.then(|| "on".into()),
            tenant: e.tenant.clone(),
            client_id: e.client_id.clone(),
            client_secret_file: e.client_secret_file.clone().unwrap_or_default(),
            sync_groups: e.sync_groups.join(", "),
            username_property: e.username_property.clone(),
            attribute_set: e.attribute_set.clone(),
            interval_minutes: (e.interval_secs / 60).to_string(),
            graph_url: e.graph_url.clone(),
            login_url: e.login_url.clone(),
        }
    }

    fn patch(&self) -> Result<SettingsPatch, CoreError> {
        let minutes: i64 = self.interval_minutes.trim().parse().map_err(|_| {
            CoreError::invalid_input("entra.interval_secs", "must be a whole number of minutes (1 to 1440)")
        })?;
        let secret = Some(self.client_secret_file.trim().to_owned()).filter(|s| !s.is_empty());
        let groups: Vec<String> =
            self.sync_groups.split([',', '\n']).map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
        Ok(SettingsPatch {
            entra: Some(json!({
                "enabled": self.enabled.is_some(),
                "tenant": self.tenant.trim(),
                "client_id": self.client_id.trim(),
                "client_secret_file": secret,
                "sync_groups": groups,
                "username_property": self.username_property.trim(),
                "attribute_set": self.attribute_set.trim(),
                "interval_secs": minutes.saturating_mul(60),
                "graph_url": self.graph_url.trim(),
                "login_url": self.login_url.trim(),
            })),
            ..SettingsPatch::default()
        })
    }
}

const FIELDS: &[&str] = &[
    "entra.tenant",
    "entra.client_id",
    "entra.enabled",
    "entra.username_property",
    "entra.attribute_set",
    "entra.interval_secs",
    "entra.graph_url",
    "entra.login_url",
];

fn entra_page(
    me: &SignedIn,
    f: &EntraForm,
    err: &Option<FormError>,
    done: Option<&str>,
    st: &SyncStatus,
    run: Option<&RunResult>,
) -> Markup {
    let e = |k: &str| FormError::on(err, k);
    html! {
        (notice_banner(done))
        p.hint { "Members of the chosen Entra ID groups (nested groups included) are created and kept up to date; "
            "users removed from the groups or disabled in Entra are disabled (their devices stay). Users created in "
            "Onramp or by the LDAP sync are never changed. Invitations for new users: "
            a href="/settings/enrollment#directory-invites" { "Enrollment settings" } "." }
        @if let Some(r) = run { (report_card(r)) }
        form #entra-settings method="post" action="/settings/entra" {
            (csrf(me))
            @if let Some(m) = FormError::general(err, FIELDS) { p.error role="alert" { (m) } }
            section.card {
                h2 { "App registration" }
                p.hint { "Application permissions, with admin consent: User.Read.All and GroupMember.Read.All; "
                    "CustomSecAttributeAssignment.ReadWrite.All to write enrollment tokens into the attribute set." }
                (field("Tenant (id or domain)", "tenant", "text", &f.tenant, e("entra.tenant").as_deref(), false))
                (field("Application (client) id", "client_id", "text", &f.client_id, e("entra.client_id").as_deref(), false))
                (field("Client secret file on the server", "client_secret_file", "text", &f.client_secret_file, None, false))
            }
            section.card {
                h2 { "What to sync" }
                (field("Groups to sync (display names, comma-separated)", "sync_groups", "text", &f.sync_groups, None, false))
                div.field {
                    label for="f-username_property" { "Username" }
                    select #f-username_property name="username_property" {
                        @for (value, label) in USERNAME_CHOICES {
                            option value=(value) selected[f.username_property == *value] { (label) }
                        }
                    }
                    @if let Some(m) = e("entra.username_property") { p.field-error { (m) } }
                }
                (field("Attribute set for enrollment tokens (EnrollmentToken, EnrollmentUrl)", "attribute_set", "text",
                    &f.attribute_set, e("entra.attribute_set").as_deref(), true))
            }
            section.card {
                h2 { "Schedule" }
                (checkbox("Sync on a schedule", "enabled", f.enabled.is_some()))
                @if let Some(m) = e("entra.enabled") { p.field-error { (m) } }
                (field("Every (minutes)", "interval_minutes", "number", &f.interval_minutes,
                    e("entra.interval_secs").as_deref(), true))
            }
            details.card {
                summary { "Other clouds" }
                (field("Microsoft Graph URL", "graph_url", "url", &f.graph_url, e("entra.graph_url").as_deref(), true))
                (field("Sign-in URL", "login_url", "url", &f.login_url, e("entra.login_url").as_deref(), true))
            }
            div.buttons {
                button.primary #save-entra type="submit" { "Save settings" }
                a.button href="/settings/entra" { "Discard changes" }
            }
        }
        section.card #entra-run {
            h2 { "Run a sync" }
            p.hint { "Uses the saved settings. A dry run reads Entra ID and lists what would change." }
            div.buttons {
                form method="post" action="/settings/entra/sync" {
                    (csrf(me)) input type="hidden" name="dry_run" value="on";
                    button #dry-run type="submit" { "Dry run" }
                }
                form method="post" action="/settings/entra/sync" {
                    (csrf(me))
                    button.primary #sync-now type="submit" { "Sync now" }
                }
            }
        }
        (status_card(st))
    }
}

const TITLE: &str = "Entra ID sync";

pub async fn show(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(q): Query<DoneQuery>) -> Response {
    let f = EntraForm::of(&ui.core.settings().await.entra);
    let st = status(&ui, DirectorySource::Entra).await;
    page(&me, TITLE, entra_page(&me, &f, &None, q.done(), &st, None))
}

pub async fn save(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(f): Form<EntraForm>) -> Response {
    let result = match f.patch() {
        Ok(patch) => ui.core.update_settings(&me.actor, patch).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to("/settings/entra?done=saved").into_response(),
        Err(e) => {
            let st = status(&ui, DirectorySource::Entra).await;
            let mut r = page(&me, TITLE, entra_page(&me, &f, &Some(FormError::of(&e)), None, &st, None));
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

pub async fn run(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(r): Form<RunForm>) -> Response {
    let result = match ui.core.directory_sync(&me.actor, Some(DirectorySource::Entra), r.dry_run.is_some()).await {
        Ok(report) => RunResult::Report(Box::new(report)),
        Err(e) => RunResult::Error(layout::message_of(&e)),
    };
    let f = EntraForm::of(&ui.core.settings().await.entra);
    let st = status(&ui, DirectorySource::Entra).await;
    page(&me, TITLE, entra_page(&me, &f, &None, None, &st, Some(&result)))
}
