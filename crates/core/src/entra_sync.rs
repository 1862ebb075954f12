//! Entra ID as a sync source: its settings (stored `entra.*`, `ONRAMP_ENTRA_*` on top) and
//! the Graph session they make. The sync itself is `directory_sync`'s, for every directory.

use crate::directory_sync::{DirectorySource, Job};
use crate::{Core, CoreError, CoreResult};
use onramp_directory::graph::{self, GraphSource};
use serde::{Deserialize, Serialize};

/// The `source` of users the Entra ID sync created or was linked to.
pub const ENTRA_SOURCE: &str = "entra";

/// Entra ID sync settings: an app registration with the application permissions
/// `User.Read.All` and `GroupMember.Read.All` (plus `CustomSecAttributeAssignment.ReadWrite.All`
/// when tokens go into the custom security attributes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default)]
pub struct EntraSettings {
    /// Sync on a schedule (every `interval_secs`).
    pub enabled: bool,
    /// The tenant's id or primary domain (`contoso.onmicrosoft.com`).
    pub tenant: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// File (on the core host) holding the app's client secret.
    pub client_secret_file: Option<String>,
    /// Group display names whose members (nested groups included) are synced. Empty:
    /// every user of the tenant, and no groups.
    pub sync_groups: Vec<String>,
    /// Where usernames come from: `userPrincipalName` (the part before '@'),
    /// `mailNickname` or `onPremisesSamAccountName`.
    pub username_property: String,
    pub interval_secs: i64,
    /// Users per Graph page (`$top`, at most 999).
    pub page_size: i64,
    /// The custom security attribute set holding `EnrollmentToken` and `EnrollmentUrl`
    /// (PROTOCOL.md 1.3), written when `enrollment.directory_invite_attribute` is on.
    pub attribute_set: String,
    /// Microsoft Graph, and the sign-in endpoint (other clouds than the global one).
    pub graph_url: String,
    pub login_url: String,
}

impl Default for EntraSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            tenant: String::new(),
            client_id: String::new(),
            client_secret_file: None,
            sync_groups: vec![],
            username_property: "userPrincipalName".into(),
            interval_secs: 300,
            page_size: 999,
            attribute_set: graph::DEFAULT_ATTRIBUTE_SET.into(),
            graph_url: graph::DEFAULT_GRAPH_URL.into(),
            login_url: graph::DEFAULT_LOGIN_URL.into(),
        }
    }
}

/// `ONRAMP_ENTRA_*` and `ONRAMP_GRAPH_URL` from the process's environment (the names the
/// client's provisioning helper takes); each set one overrides the stored setting.
#[derive(Debug, Clone, Default)]
pub struct EntraEnv {
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub graph_url: Option<String>,
    pub login_url: Option<String>,
    pub sync_groups: Option<Vec<String>>,
    /// `ONRAMP_ENTRA_SYNC=true`: sync on the schedule.
    pub enabled: Option<bool>,
    /// `ONRAMP_ENTRA_INVITE_ATTRIBUTES=true`: keep new users' tokens in the attribute set.
    pub invite_attributes: Option<bool>,
}

impl EntraSettings {
    pub(crate) fn validate(&self) -> CoreResult<()> {
        let bad = |field: &'static str, why: String| Err(CoreError::invalid(field, why));
        let name_ok = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !name_ok(&self.tenant) {
            return bad("entra.tenant", format!("{:?} is not a tenant id or domain", self.tenant));
        }
        if !name_ok(&self.client_id) {
            return bad("entra.client_id", format!("{:?} is not an application (client) id", self.client_id));
        }
        if !graph::USERNAME_PROPERTIES.contains(&self.username_property.as_str()) {
            return bad(
                "entra.username_property",
                format!("{:?}: choose one of {}", self.username_property, graph::USERNAME_PROPERTIES.join(", ")),
            );
        }
        if !(60..=86_400).contains(&self.interval_secs) {
            return bad("entra.interval_secs", "must be between 60 and 86400 seconds".into());
        }
        if !(1..=999).contains(&self.page_size) {
            return bad("entra.page_size", "must be between 1 and 999".into());
        }
        let set = &self.attribute_set;
        if set.is_empty() || set.len() > 32 || !set.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return bad("entra.attribute_set", format!("{set:?} is not an attribute set name (letters, digits, _)"));
        }
        for (field, url) in [("entra.graph_url", &self.graph_url), ("entra.login_url", &self.login_url)] {
            crate::settings::normalize_public_url(field, url)?;
        }
        if self.enabled && (self.tenant.is_empty() || self.client_id.is_empty()) {
            return bad("entra.enabled", "set entra.tenant and entra.client_id first".into());
        }
        Ok(())
    }
}

impl Core {
    /// The Entra ID settings in force, and whether tokens go into the attribute set.
    pub async fn effective_entra(&self) -> (EntraSettings, bool) {
        let stored = self.settings().await;
        let env = &self.config().entra_env;
        let mut s = stored.entra.clone();
        let set = |field: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *field = v.clone();
            }
        };
        set(&mut s.tenant, &env.tenant);
        set(&mut s.client_id, &env.client_id);
        set(&mut s.graph_url, &env.graph_url);
        set(&mut s.login_url, &env.login_url);
        if let Some(v) = &env.client_secret_file {
            s.client_secret_file = Some(v.clone());
        }
        if let Some(v) = &env.sync_groups {
            s.sync_groups = v.clone();
        }
        if let Some(v) = env.enabled {
            s.enabled = v;
        }
        let attributes = env.invite_attributes.unwrap_or(stored.enrollment.directory_invite_attribute);
        (s, attributes)
    }

    pub(crate) async fn entra_job(&self) -> Job {
        let (s, attributes) = self.effective_entra().await;
        let configured = !s.tenant.is_empty() && !s.client_id.is_empty();
        Job {
            source: DirectorySource::Entra,
            configured,
            scheduled: configured && s.enabled,
            interval_secs: s.interval_secs,
            invite_email: self.settings().await.enrollment.directory_invite_email,
            attributes,
        }
    }

    pub(crate) async fn graph_source(&self) -> CoreResult<GraphSource> {
        let (s, attributes) = self.effective_entra().await;
        let missing = |what: &str| {
            Err(CoreError::refused("directory_not_configured", format!("Entra ID sync is not configured: set {what}")))
        };
        if s.tenant.is_empty() {
            return missing(
                "entra.tenant (onramp admin settings set entra.tenant contoso.onmicrosoft.com) or ONRAMP_ENTRA_TENANT",
            );
        }
        if s.client_id.is_empty() {
            return missing("entra.client_id or ONRAMP_ENTRA_CLIENT_ID (the app registration's application id)");
        }
        let Some(file) = &s.client_secret_file else {
            return missing(
                "entra.client_secret_file or ONRAMP_ENTRA_CLIENT_SECRET_FILE (a file holding the app's secret)",
            );
        };
        let secret = std::fs::read_to_string(file)
            .map_err(|e| {
                CoreError::refused("directory_unavailable", format!("cannot read the client secret file {file}: {e}"))
            })?
            .trim()
            .to_owned();
        if secret.is_empty() {
            return Err(CoreError::refused(
                "directory_not_configured",
                format!("the client secret file {file} is empty"),
            ));
        }
        Ok(GraphSource {
            tenant: s.tenant,
            client_id: s.client_id,
            client_secret: secret,
            graph_url: s.graph_url,
            login_url: s.login_url,
            groups: s.sync_groups,
            username_property: s.username_property,
            attribute_set: attributes.then_some(s.attribute_set),
            page_size: s.page_size.clamp(1, 999) as u32,
        })
    }
}
