//! Directory sync (LDAP / Active Directory, and Entra ID through Microsoft Graph): read the
//! directory, plan the changes (`onramp_domain::directory`), apply them, then invite the new
//! users (by e-mail and/or through the provisioning attribute) and keep every pending user's
//! attribute holding a live token. One sync of a directory at a time across every process
//! sharing the database (a lease row per directory); every core runs the schedule, and
//! whichever takes the lease when a run is due does it. Users carry the directory they come
//! from (`source`): a sync changes only its own users, never another directory's or
//! Onramp's own.

use crate::entra_sync::ENTRA_SOURCE;
use crate::{Actor, BulkOutcome, BulkRequest, Core, CoreError, CoreResult};
use onramp_directory::{DirectoryError, GraphConnection, GraphSource, ReadStats, SyncConnection, SyncSource};
use onramp_domain::directory::{self as plan_rules, AttributeAction, Conflict, Plan, Snapshot};
use onramp_domain::provisioning::DirectoryAttribute;
use onramp_domain::token::hash_secret;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The `source` of users the LDAP sync created or was linked to.
pub const LDAP_SOURCE: &str = "ldap";

/// A directory Onramp syncs from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DirectorySource {
    #[default]
    /// LDAP or Active Directory (`directory.*`, `ONRAMP_LDAP_*`).
    Ldap,
    /// Microsoft Entra ID through Graph (`entra.*`, `ONRAMP_ENTRA_*`).
    Entra,
}

impl DirectorySource {
    pub const ALL: [DirectorySource; 2] = [DirectorySource::Ldap, DirectorySource::Entra];

    /// The users' `source` value, and the name of the directory's lease row.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectorySource::Ldap => LDAP_SOURCE,
            DirectorySource::Entra => ENTRA_SOURCE,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            DirectorySource::Ldap => "LDAP / Active Directory",
            DirectorySource::Entra => "Entra ID",
        }
    }
}

impl std::str::FromStr for DirectorySource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ldap" | "ad" => Ok(DirectorySource::Ldap),
            "entra" | "entra-id" | "azure" => Ok(DirectorySource::Entra),
            other => Err(format!("{other:?} is not a directory: ldap or entra")),
        }
    }
}

/// One directory's run settings, whatever its kind.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub source: DirectorySource,
    pub configured: bool,
    pub scheduled: bool,
    pub interval_secs: i64,
    pub invite_email: bool,
    /// Keep the provisioning attribute(s) of new and pending users holding a live token.
    pub attributes: bool,
}

/// Where a sync reads from.
pub(crate) enum Target {
    Ldap(SyncSource),
    Entra(GraphSource),
}

/// An open directory session.
enum Conn {
    /// The connection, and the attribute tokens are kept in.
    Ldap(Box<SyncConnection>, String),
    Entra(Box<GraphConnection>),
}

impl Conn {
    async fn open(target: &Target) -> Result<Conn, DirectoryError> {
        Ok(match target {
            Target::Ldap(src) => {
                let attribute = src.provisioning_attribute.clone().unwrap_or_default();
                Conn::Ldap(Box::new(SyncConnection::open(src).await?), attribute)
            }
            Target::Entra(src) => Conn::Entra(Box::new(GraphConnection::open(src).await?)),
        })
    }

    async fn read(&mut self) -> Result<Snapshot, DirectoryError> {
        match self {
            Conn::Ldap(c, _) => c.read().await,
            Conn::Entra(c) => c.read().await,
        }
    }

    /// Writes (or, `None`, clears) the user's provisioning attribute(s).
    async fn write(&mut self, locator: &str, value: Option<&DirectoryAttribute>) -> Result<(), DirectoryError> {
        match self {
            Conn::Ldap(c, attribute) => {
                let json = value.map(|v| serde_json::to_string(v).expect("serializable"));
                c.write_attribute(locator, attribute, json.as_deref()).await
            }
            Conn::Entra(c) => c.write_attribute(locator, value).await,
        }
    }

    fn stats(&self) -> ReadStats {
        match self {
            Conn::Ldap(c, _) => c.stats,
            Conn::Entra(c) => c.stats,
        }
    }

    async fn close(self) {
        if let Conn::Ldap(c, _) = self {
            (*c).close().await;
        }
    }
}

/// How long a sync may hold the lease; a process that dies mid-sync blocks others this long.
const LEASE_SECS: i64 = 15 * 60;

/// Directory sync settings (stored; `ONRAMP_LDAP_*` in the environment overrides them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default)]
pub struct DirectorySettings {
    /// Sync on a schedule (every `interval_secs`). `onramp admin directory sync` works
    /// whenever `url` is set.
    pub enabled: bool,
    /// `ldap://dc.example.com:389` or `ldaps://dc.example.com:636`.
    pub url: String,
    /// Upgrade `ldap://` with StartTLS.
    pub starttls: bool,
    /// PEM file (on the core host) of the CA of the directory's certificate.
    pub ca_file: Option<String>,
    pub bind_dn: Option<String>,
    /// File (on the core host) holding the bind password.
    pub password_file: Option<String>,
    pub user_base: String,
    pub user_filter: String,
    pub group_base: String,
    pub group_filter: String,
    /// `uid` (LDAP) or `sAMAccountName` (Active Directory).
    pub username_attribute: String,
    pub first_name_attribute: String,
    pub last_name_attribute: String,
    pub email_attribute: String,
    pub phone_attribute: String,
    /// Group names (`cn`) whose members are synced; nested groups count. Empty: every
    /// user the filter finds, and no groups.
    pub sync_groups: Vec<String>,
    pub interval_secs: i64,
    pub page_size: i64,
    /// Where new users' tokens are written when `enrollment.directory_invite_attribute`
    /// is on (PROTOCOL.md 1.2).
    pub provisioning_attribute: String,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn: None,
            password_file: None,
            user_base: String::new(),
            // AD computer accounts are `user` objects too: `objectCategory=person` leaves them out.
            user_filter: "(|(objectClass=inetOrgPerson)(&(objectCategory=person)(objectClass=user)))".into(),
            group_base: String::new(),
            group_filter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=group))"
                .into(),
            username_attribute: "uid".into(),
            first_name_attribute: "givenName".into(),
            last_name_attribute: "sn".into(),
            email_attribute: "mail".into(),
            phone_attribute: "telephoneNumber".into(),
            sync_groups: vec![],
            interval_secs: 300,
            page_size: 500,
            provisioning_attribute: onramp_directory::DEFAULT_ATTRIBUTE.into(),
        }
    }
}

/// `ONRAMP_LDAP_*` from the environment of the process (the names `provision-directory`
/// takes); each set one overrides the stored setting. `Debug` hides the password.
#[derive(Clone, Default)]
pub struct DirectoryEnv {
    pub url: Option<String>,
    /// Sets both the user and the group search base.
    pub base_dn: Option<String>,
    pub bind_dn: Option<String>,
    pub password_file: Option<String>,
    /// `ONRAMP_LDAP_PASSWORD`, the password itself (the file is preferred).
    pub password: Option<String>,
    pub user_attribute: Option<String>,
    pub sync_groups: Option<Vec<String>>,
    /// Writes new directory users' tokens into this attribute (turns the attribute invite on).
    pub invite_attribute: Option<String>,
    /// `ONRAMP_LDAP_SYNC=true`: sync on the schedule.
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for DirectoryEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryEnv")
            .field("url", &self.url)
            .field("base_dn", &self.base_dn)
            .field("bind_dn", &self.bind_dn)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sync_groups", &self.sync_groups)
            .field("invite_attribute", &self.invite_attribute)
            .finish_non_exhaustive()
    }
}

/// The settings in force: stored, with the environment on top.
#[derive(Debug, Clone)]
pub struct EffectiveDirectory {
    pub settings: DirectorySettings,
    pub invite_email: bool,
    /// The attribute new and pending users' tokens are kept in, when that is on.
    pub invite_attribute: Option<String>,
}

/// What one sync did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub source: DirectorySource,
    pub dry_run: bool,
    /// Entries the directory returned, and the requests (LDAP or Graph) the run took.
    pub users_read: usize,
    pub groups_read: usize,
    pub round_trips: u32,
    pub duration_ms: u64,
    /// Of which reading the directory (sign-in or bind, and every page).
    pub read_ms: u64,
    /// Of which the invitations and the provisioning attributes (their checks and writes).
    pub invite_ms: u64,
    pub groups_created: Vec<String>,
    pub created: Vec<String>,
    pub updated: Vec<UpdatedUser>,
    pub enabled: Vec<String>,
    pub disabled: Vec<DisabledUser>,
    pub memberships_added: Vec<Membership>,
    pub memberships_removed: Vec<Membership>,
    /// Entries not applied, and why (a local user's name, a bad e-mail address, ...).
    #[schema(value_type = Vec<Object>)]
    pub conflicts: Vec<Conflict>,
    pub invitations_mailed: Vec<String>,
    /// Users whose attribute got a new token (new, empty, expiring or dead).
    pub attributes_written: Vec<String>,
    /// Enrolled or disabled users whose attribute was cleared.
    pub attributes_cleared: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub attribute_errors: Vec<Conflict>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpdatedUser {
    pub username: String,
    pub fields: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DisabledUser {
    pub username: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub group: String,
    pub username: String,
}

impl SyncReport {
    /// Whether anything was (or would be) written to Onramp or the directory.
    pub fn changed_anything(&self) -> bool {
        !(self.groups_created.is_empty()
            && self.created.is_empty()
            && self.updated.is_empty()
            && self.enabled.is_empty()
            && self.disabled.is_empty()
            && self.memberships_added.is_empty()
            && self.memberships_removed.is_empty()
            && self.invitations_mailed.is_empty()
            && self.attributes_written.is_empty()
            && self.attributes_cleared.is_empty())
    }

    /// Counts, for logs, the audit log and the status.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "users_read": self.users_read, "round_trips": self.round_trips, "duration_ms": self.duration_ms,
            "read_ms": self.read_ms, "invite_ms": self.invite_ms,
            "created": self.created.len(), "updated": self.updated.len(), "enabled": self.enabled.len(),
            "disabled": self.disabled.len(), "groups_created": self.groups_created.len(),
            "memberships_added": self.memberships_added.len(), "memberships_removed": self.memberships_removed.len(),
            "conflicts": self.conflicts.len(), "invitations_mailed": self.invitations_mailed.len(),
            "attributes_written": self.attributes_written.len(), "attributes_cleared": self.attributes_cleared.len(),
            "attribute_errors": self.attribute_errors.len(),
        })
    }

    fn from_plan(source: DirectorySource, p: &Plan, dry_run: bool) -> Self {
        let m = |v: &Vec<(String, String)>| {
            v.iter().map(|(g, u)| Membership { group: g.clone(), username: u.clone() }).collect()
        };
        Self {
            source,
            dry_run,
            groups_created: p.create_groups.clone(),
            created: p.create_users.iter().map(|u| u.username.clone()).collect(),
            updated: p
                .update_profiles
                .iter()
                .map(|c| UpdatedUser { username: c.username.clone(), fields: c.fields() })
                .collect(),
            enabled: p.enable.clone(),
            disabled: p.disable.iter().map(|(u, r)| DisabledUser { username: u.clone(), reason: r.as_str() }).collect(),
            memberships_added: m(&p.add_members),
            memberships_removed: m(&p.remove_members),
            conflicts: p.conflicts.clone(),
            ..Self::default()
        }
    }
}

/// The last run, for `onramp admin directory status` and the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    pub source: DirectorySource,
    pub configured: bool,
    pub scheduled: bool,
    pub interval_secs: i64,
    pub running_on: Option<String>,
    pub last_started: Option<i64>,
    pub last_finished: Option<i64>,
    pub last_error: Option<String>,
    pub failures_in_a_row: i64,
    #[schema(value_type = Option<Object>)]
    pub last_summary: Option<serde_json::Value>,
    pub next_run_at: Option<i64>,
}

fn unavailable(e: impl std::fmt::Display) -> CoreError {
    CoreError::refused("directory_unavailable", e.to_string())
}

impl DirectorySettings {
    pub(crate) fn validate(&self) -> CoreResult<()> {
        let bad = |field: &'static str, why: String| Err(CoreError::invalid(field, why));
        let scheme_ok = self.url.starts_with("ldap://") || self.url.starts_with("ldaps://");
        if !self.url.is_empty() && !scheme_ok {
            return bad("directory.url", format!("{:?} must start with ldap:// or ldaps://", self.url));
        }
        if !(60..=86_400).contains(&self.interval_secs) {
            return bad("directory.interval_secs", "must be between 60 and 86400 seconds".into());
        }
        if !(1..=5_000).contains(&self.page_size) {
            return bad("directory.page_size", "must be between 1 and 5000".into());
        }
        for (field, f) in [("directory.user_filter", &self.user_filter), ("directory.group_filter", &self.group_filter)]
        {
            if let Err(e) = onramp_directory::check_filter(f) {
                return bad(field, e);
            }
        }
        for (field, a) in [
            ("directory.username_attribute", &self.username_attribute),
            ("directory.first_name_attribute", &self.first_name_attribute),
            ("directory.last_name_attribute", &self.last_name_attribute),
            ("directory.email_attribute", &self.email_attribute),
            ("directory.phone_attribute", &self.phone_attribute),
            ("directory.provisioning_attribute", &self.provisioning_attribute),
        ] {
            if !onramp_directory::is_attribute_name(a) {
                return bad(field, format!("{a:?} is not an LDAP attribute name (letters, digits and '-')"));
            }
        }
        if self.enabled && self.url.is_empty() {
            return bad("directory.enabled", "set directory.url first".into());
        }
        Ok(())
    }
}

impl Core {
    /// The directory settings in force: the stored ones with `ONRAMP_LDAP_*` on top.
    pub async fn effective_directory(&self) -> EffectiveDirectory {
        let stored = self.settings().await;
        let env = &self.config().directory_env;
        let mut s = stored.directory.clone();
        if let Some(v) = &env.url {
            s.url = v.clone();
        }
        if let Some(v) = &env.base_dn {
            s.user_base = v.clone();
            s.group_base = v.clone();
        }
        if let Some(v) = &env.bind_dn {
            s.bind_dn = Some(v.clone());
        }
        if let Some(v) = &env.password_file {
            s.password_file = Some(v.clone());
        }
        if let Some(v) = &env.user_attribute {
            s.username_attribute = v.clone();
        }
        if let Some(v) = &env.sync_groups {
            s.sync_groups = v.clone();
        }
        if let Some(v) = env.enabled {
            s.enabled = v;
        }
        let mut invite_attribute =
            stored.enrollment.directory_invite_attribute.then(|| s.provisioning_attribute.clone());
        if let Some(a) = &env.invite_attribute {
            s.provisioning_attribute = a.clone();
            invite_attribute = Some(a.clone());
        }
        EffectiveDirectory { settings: s, invite_email: stored.enrollment.directory_invite_email, invite_attribute }
    }

    async fn ldap_source(&self, eff: &EffectiveDirectory) -> CoreResult<SyncSource> {
        let s = &eff.settings;
        if s.url.is_empty() {
            return Err(CoreError::refused(
                "directory_not_configured",
                "directory sync is not configured: set directory.url (onramp admin settings set directory.url \
                 ldap://dc.example.com) or ONRAMP_LDAP_URL",
            ));
        }
        if s.user_base.is_empty() {
            return Err(CoreError::refused(
                "directory_not_configured",
                "set the user search base: directory.user_base, or ONRAMP_LDAP_BASE_DN",
            ));
        }
        let password = match (&s.password_file, &self.config().directory_env.password) {
            (Some(f), _) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| unavailable(format!("cannot read the bind password file {f}: {e}")))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, Some(p)) => Some(p.clone()),
            (None, None) => None,
        };
        if s.bind_dn.is_some() && password.is_none() {
            return Err(CoreError::refused(
                "directory_not_configured",
                "a bind DN needs its password: directory.password_file or ONRAMP_LDAP_PASSWORD_FILE",
            ));
        }
        Ok(SyncSource {
            url: s.url.clone(),
            starttls: s.starttls,
            ca_file: s.ca_file.clone(),
            bind_dn: s.bind_dn.clone(),
            password,
            user_base: s.user_base.clone(),
            user_filter: s.user_filter.clone(),
            group_base: if s.group_base.is_empty() { s.user_base.clone() } else { s.group_base.clone() },
            group_filter: s.group_filter.clone(),
            username_attribute: s.username_attribute.clone(),
            first_name_attribute: s.first_name_attribute.clone(),
            last_name_attribute: s.last_name_attribute.clone(),
            email_attribute: s.email_attribute.clone(),
            phone_attribute: s.phone_attribute.clone(),
            groups: s.sync_groups.clone(),
            provisioning_attribute: eff.invite_attribute.clone(),
            page_size: s.page_size.clamp(1, 5_000) as i32,
        })
    }

    /// How `source` is set up: configured, scheduled, its interval and invitations.
    pub(crate) async fn directory_job(&self, source: DirectorySource) -> Job {
        match source {
            DirectorySource::Ldap => {
                let eff = self.effective_directory().await;
                let configured = !eff.settings.url.is_empty();
                Job {
                    source,
                    configured,
                    scheduled: configured && eff.settings.enabled,
                    interval_secs: eff.settings.interval_secs,
                    invite_email: eff.invite_email,
                    attributes: eff.invite_attribute.is_some(),
                }
            }
            DirectorySource::Entra => self.entra_job().await,
        }
    }

    async fn directory_target(&self, source: DirectorySource) -> CoreResult<Target> {
        match source {
            DirectorySource::Ldap => {
                let eff = self.effective_directory().await;
                Ok(Target::Ldap(self.ldap_source(&eff).await?))
            }
            DirectorySource::Entra => Ok(Target::Entra(self.graph_source().await?)),
        }
    }

    /// The directories that are set up (a URL, or a tenant), in [`DirectorySource::ALL`]'s order.
    pub async fn configured_directory_sources(&self) -> Vec<DirectorySource> {
        let mut out = Vec::new();
        for source in DirectorySource::ALL {
            if self.directory_job(source).await.configured {
                out.push(source);
            }
        }
        out
    }

    /// The directory a request that names none means: the first configured (LDAP before
    /// Entra ID), or LDAP when none is.
    pub async fn default_directory_source(&self) -> DirectorySource {
        for source in DirectorySource::ALL {
            if self.directory_job(source).await.configured {
                return source;
            }
        }
        DirectorySource::Ldap
    }

    /// One sync now (`onramp admin directory sync`, `POST /api/v1/directory/sync`) of
    /// `source` (default: [`Self::default_directory_source`]). A dry run reads the directory
    /// and reports what would change, writing nothing anywhere.
    pub async fn directory_sync(
        &self,
        actor: &Actor,
        source: Option<DirectorySource>,
        dry_run: bool,
    ) -> CoreResult<SyncReport> {
        let source = match source {
            Some(s) => s,
            None => self.default_directory_source().await,
        };
        let job = self.directory_job(source).await;
        let target = self.directory_target(source).await?;
        if dry_run {
            return self.sync_once(actor, &job, &target, true).await;
        }
        let holder = holder_name();
        let now = self.now();
        let lease = source.as_str();
        if !self.store().directory_lease_acquire(lease, &holder, now, now + LEASE_SECS, false).await? {
            let who = self.store().directory_sync_state(lease).await?.and_then(|s| s.holder).unwrap_or_default();
            return Err(CoreError::refused(
                "sync_running",
                format!("a {} sync is already running ({who}); try again when it has finished", source.title()),
            ));
        }
        let result = self.sync_once(actor, &job, &target, false).await;
        self.finish_run(&holder, &job, &result).await;
        result
    }

    async fn finish_run(&self, holder: &str, job: &Job, result: &CoreResult<SyncReport>) {
        let now = self.now();
        let lease = job.source.as_str();
        let state = self.store().directory_sync_state(lease).await.ok().flatten();
        let interval = job.interval_secs.max(60);
        let (next, outcome) = match result {
            Ok(r) => (now + interval, Ok(r.summary().to_string())),
            Err(e) => {
                // Back off from 30 s, doubling, up to the interval: a directory that is down
                // for a minute is synced again soon, one that stays down is not hammered.
                let failures = state.map(|s| s.failures).unwrap_or(0).clamp(0, 20) as u32;
                let backoff = 30i64.saturating_mul(1 << failures.min(12)).min(interval);
                (now + backoff, Err(e.to_string()))
            }
        };
        let outcome_ref = outcome.as_ref().map(String::as_str).map_err(String::as_str);
        if let Err(e) = self.store().directory_lease_finish(lease, holder, now, next, outcome_ref).await {
            tracing::error!(error = %e, "cannot record the directory sync's outcome");
        }
    }

    async fn sync_once(&self, actor: &Actor, job: &Job, target: &Target, dry_run: bool) -> CoreResult<SyncReport> {
        let started = std::time::Instant::now();
        let source = job.source;
        let mut conn = Conn::open(target).await.map_err(unavailable)?;
        let snapshot = match conn.read().await {
            Ok(s) => s,
            Err(e) => {
                conn.close().await;
                return Err(unavailable(e));
            }
        };
        let read_ms = started.elapsed().as_millis() as u64;
        let known = self.known_for_sync(source).await?;
        let plan = plan_rules::plan(&snapshot, &known);
        let mut report = SyncReport::from_plan(source, &plan, dry_run);
        report.read_ms = read_ms;
        report.users_read = conn.stats().user_entries;
        report.groups_read = conn.stats().group_entries;
        if !dry_run && !plan.is_empty() {
            let audit = |action: &str, subject: &str, details: serde_json::Value| {
                self.audit_record(actor, action, Some(subject.to_owned()), details)
            };
            let kept = self.store().apply_directory_plan(source.as_str(), &plan, &audit, self.now()).await?;
            if !kept {
                conn.close().await;
                return Err(crate::users::last_admin("the directory sync".into()));
            }
        }
        let inviting = std::time::Instant::now();
        self.invite(actor, job, &snapshot, &plan, &mut conn, &mut report).await?;
        report.invite_ms = inviting.elapsed().as_millis() as u64;
        report.round_trips = conn.stats().round_trips;
        conn.close().await;
        report.duration_ms = started.elapsed().as_millis() as u64;
        if !dry_run && report.changed_anything() {
            self.audit(actor, "directory.synced", Some(source.as_str().into()), report.summary()).await;
        }
        Ok(report)
    }

    /// Onramp's side of the comparison: users of another directory count as Onramp's own.
    async fn known_for_sync(&self, source: DirectorySource) -> CoreResult<plan_rules::Known> {
        let rows = self.store().list_users().await?;
        let groups = self.store().list_groups().await?;
        let mut by_user: HashMap<i64, BTreeSet<String>> = HashMap::new();
        for (uid, g) in self.store().all_memberships().await? {
            by_user.entry(uid).or_default().insert(g);
        }
        Ok(plan_rules::Known {
            users: rows
                .into_iter()
                .map(|r| plan_rules::KnownUser {
                    groups: by_user.remove(&r.id).unwrap_or_default(),
                    from_directory: r.source == source.as_str(),
                    disabled_by_directory: r.directory_disabled,
                    username: r.username,
                    first_name: r.first_name,
                    last_name: r.last_name,
                    email: r.email,
                    phone: r.phone,
                    is_active: r.is_active,
                    enrolled: r.enrolled,
                })
                .collect(),
            admin_groups: groups.iter().filter(|g| g.is_admin).map(|g| g.name.clone()).collect(),
            groups: groups.into_iter().map(|g| g.name).collect(),
        })
    }

    /// Invitations for the users the plan created, and the provisioning attributes of
    /// every synced user: a live token for the pending, nothing for the enrolled and the
    /// disabled. Failures to write one attribute are reported, not fatal.
    async fn invite(
        &self,
        actor: &Actor,
        job: &Job,
        snapshot: &Snapshot,
        plan: &Plan,
        conn: &mut Conn,
        report: &mut SyncReport,
    ) -> CoreResult<()> {
        let settings = self.settings().await;
        let created: Vec<String> = plan.create_users.iter().map(|u| u.username.clone()).collect();
        let mail = job.invite_email && settings.smtp.is_configured();
        if job.invite_email && !settings.smtp.is_configured() && !created.is_empty() {
            tracing::warn!("directory invitations by e-mail are on, but SMTP is not configured: none sent");
        }
        // The token each user gets in this run (mailed ones are written to the attribute too).
        let mut tokens: HashMap<String, DirectoryAttribute> = HashMap::new();
        if mail && !created.is_empty() {
            if report.dry_run {
                report.invitations_mailed = created.clone();
            } else {
                let req = BulkRequest {
                    group: None,
                    usernames: created.clone(),
                    token_expiration_time: None,
                    send_enrollment_notification: true,
                };
                for o in self.issue_bulk(actor, req).await? {
                    if let BulkOutcome::Issued(t) = o {
                        report.invitations_mailed.push(t.username.clone());
                        let value = DirectoryAttribute {
                            enrollment_url: t.enrollment_url.clone(),
                            enrollment_token: t.token.expose().to_owned(),
                        };
                        tokens.insert(t.username.clone(), value);
                    }
                }
            }
        }
        if !job.attributes {
            return Ok(());
        }
        // Every synced entry and its Onramp user, after the plan.
        let users: HashMap<String, onramp_store::UserRow> = self
            .store()
            .list_users()
            .await?
            .into_iter()
            .filter(|u| u.source == job.source.as_str())
            .map(|u| (u.username.clone(), u))
            .collect();
        let held: HashMap<&str, String> = snapshot
            .users
            .iter()
            .filter_map(|d| {
                let v: DirectoryAttribute = serde_json::from_str(d.attribute.as_deref()?).ok()?;
                Some((d.locator.as_str(), hash_secret(&v.enrollment_token)))
            })
            .collect();
        let live: HashMap<(String, i64), i64> = self
            .store()
            .live_enrollment_tokens(&held.values().cloned().collect::<Vec<_>>(), self.now())
            .await?
            .into_iter()
            .map(|(h, uid, exp)| ((h, uid), exp))
            .collect();
        let margin = plan_rules::refresh_margin(settings.enrollment.token_lifetime_secs, job.interval_secs);
        let now = self.now();
        let mut refresh = Vec::new();
        let mut clear = Vec::new();
        for d in &snapshot.users {
            let Ok(profile) = plan_rules::profile_of(d) else { continue };
            let Some(u) = users.get(&profile.username) else {
                // A dry run: a user the plan creates would get a token.
                if report.dry_run && report.created.contains(&profile.username) {
                    report.attributes_written.push(profile.username.clone());
                }
                continue;
            };
            if tokens.contains_key(&u.username) {
                refresh.push((u.username.clone(), d.locator.clone()));
                continue;
            }
            let expires = held.get(d.locator.as_str()).and_then(|h| live.get(&(h.clone(), u.id))).copied();
            match plan_rules::attribute_action(u.is_active, u.enrolled, d.attribute.is_some(), expires, now, margin) {
                AttributeAction::Keep => {}
                AttributeAction::Refresh => refresh.push((u.username.clone(), d.locator.clone())),
                AttributeAction::Clear => clear.push((u.username.clone(), d.locator.clone())),
            }
        }
        if report.dry_run {
            report.attributes_written.extend(refresh.into_iter().map(|(u, _)| u));
            report.attributes_cleared.extend(clear.into_iter().map(|(u, _)| u));
            return Ok(());
        }
        // New tokens are delivered first and stored only once written: a directory that
        // refuses the write (no permission, an unknown attribute) must not revoke the token a
        // user already has, such as the one in their invitation mail.
        let lifetime = settings.enrollment.token_lifetime_secs;
        let mut fresh: Vec<(onramp_store::UserRow, String)> = Vec::new();
        for (username, locator) in refresh {
            match tokens.get(&username) {
                Some(value) => match conn.write(&locator, Some(value)).await {
                    Ok(()) => report.attributes_written.push(username),
                    Err(e) => report.attribute_errors.push(Conflict { username, reason: e.to_string() }),
                },
                None => {
                    if let Some(u) = users.get(&username) {
                        fresh.push((u.clone(), locator));
                    }
                }
            }
        }
        for chunk in fresh.chunks(200) {
            let targets: Vec<(onramp_store::UserRow, onramp_domain::token::TokenKind)> =
                chunk.iter().map(|(u, _)| (u.clone(), onramp_domain::token::TokenKind::Enrollment)).collect();
            let prepared = self.prepare_tokens(actor, &targets, lifetime, None).await;
            let mut written = std::collections::HashSet::new();
            for (t, (u, locator)) in prepared.issued.iter().zip(chunk) {
                let value = DirectoryAttribute {
                    enrollment_url: t.enrollment_url.clone(),
                    enrollment_token: t.token.expose().to_owned(),
                };
                match conn.write(locator, Some(&value)).await {
                    Ok(()) => {
                        written.insert(u.username.clone());
                    }
                    Err(e) => {
                        report.attribute_errors.push(Conflict { username: u.username.clone(), reason: e.to_string() })
                    }
                }
            }
            let committed = self.commit_tokens(prepared, |t| written.contains(&t.username)).await?;
            report.attributes_written.extend(committed.into_iter().map(|t| t.username));
        }
        for (username, locator) in clear {
            match conn.write(&locator, None).await {
                Ok(()) => report.attributes_cleared.push(username),
                Err(e) => report.attribute_errors.push(Conflict { username, reason: e.to_string() }),
            }
        }
        Ok(())
    }

    /// Runs the schedule until the process ends: every `tick`, for each directory whose
    /// sync is scheduled and due, whichever process takes the lease syncs it.
    pub async fn run_directory_sync_loop(self, tick: std::time::Duration) {
        let actor = Actor::system("directory sync");
        loop {
            tokio::time::sleep(tick).await;
            for source in DirectorySource::ALL {
                let job = self.directory_job(source).await;
                if job.scheduled {
                    self.scheduled_run(&actor, &job).await;
                }
            }
        }
    }

    async fn scheduled_run(&self, actor: &Actor, job: &Job) {
        let holder = holder_name();
        let now = self.now();
        let lease = job.source.as_str();
        match self.store().directory_lease_acquire(lease, &holder, now, now + LEASE_SECS, true).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, directory = lease, "cannot check the directory sync's schedule");
                return;
            }
        }
        let result = match self.directory_target(job.source).await {
            Ok(target) => self.sync_once(actor, job, &target, false).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(r) => tracing::info!(directory = lease, summary = %r.summary(), "directory sync done"),
            Err(e) => tracing::error!(directory = lease, error = %e,
                "directory sync failed; nothing was changed, it will be retried"),
        }
        self.finish_run(&holder, job, &result).await;
    }

    /// The sync status of `source` (default: [`Self::default_directory_source`]).
    pub async fn directory_sync_status(&self, source: Option<DirectorySource>) -> CoreResult<SyncStatus> {
        let source = match source {
            Some(s) => s,
            None => self.default_directory_source().await,
        };
        let job = self.directory_job(source).await;
        let state = self.store().directory_sync_state(source.as_str()).await?;
        let now = self.now();
        Ok(SyncStatus {
            source,
            configured: job.configured,
            scheduled: job.scheduled,
            interval_secs: job.interval_secs,
            running_on: state.as_ref().filter(|s| s.lease_until > now).and_then(|s| s.holder.clone()),
            last_started: state.as_ref().and_then(|s| s.last_started),
            last_finished: state.as_ref().and_then(|s| s.last_finished),
            last_error: state.as_ref().and_then(|s| s.last_error.clone()),
            failures_in_a_row: state.as_ref().map(|s| s.failures).unwrap_or(0),
            last_summary: state
                .as_ref()
                .and_then(|s| s.last_summary.as_deref())
                .and_then(|s| serde_json::from_str(s).ok()),
            next_run_at: state.as_ref().map(|s| s.next_run_at),
        })
    }

    /// Hands a user created in Onramp over to a directory (`Some`, its entry with that
    /// username is authoritative from the next sync), or back to Onramp (`None`).
    pub async fn set_directory_link(
        &self,
        actor: &Actor,
        username: &str,
        link: Option<DirectorySource>,
    ) -> CoreResult<crate::UserInfo> {
        let row = self.user_row(username).await?;
        let source = link.map(DirectorySource::as_str).unwrap_or("local");
        let row = self.store().set_user_source(row.id, source, self.now()).await?;
        let action = if link.is_some() { "directory.user_linked" } else { "directory.user_unlinked" };
        self.audit(actor, action, Some(row.username.clone()), serde_json::json!({"source": source})).await;
        self.user_info(row).await
    }
}

/// Who holds the lease: host and process, so a status can say where a sync runs, and a
/// random part, since one process may run several cores (tests) or runs.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "core".into());
    let run = uuid::Uuid::new_v4().simple().to_string();
    format!("{} pid {} run {}", host.trim(), std::process::id(), &run[..8])
}
