//! Instance settings: one JSON document in the store, cached in memory, edited through the
//! admin API. Fields added later get defaults, so old documents keep loading.
//!
//! Several processes share the document (core replicas, the `onramp admin` CLI): each save
//! bumps a version number in the store, and a core compares its cached version with the
//! stored one (one tiny query, at most every [`RECHECK`]) when settings are read, so a change
//! made anywhere is seen everywhere within a few seconds. The SMTP password is encrypted in
//! the stored document with the instance key (see `secrets`).

use crate::secrets::SecretKey;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::template;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default)]
pub struct Settings {
    /// Stable instance id; clients key instances by it. Never changes after first start.
    pub instance_id: String,
    pub instance_name: String,
    /// Public edge URL handed out as `enrollment_url`.
    pub public_url: String,
    pub enrollment: EnrollmentSettings,
    pub smtp: SmtpSettings,
    pub templates: Templates,
    /// Who enrolling users are told to contact (enrollment page, mails, client messages).
    /// `null`: the admin who issued their token.
    pub admin_contact: Option<AdminContact>,
    /// LDAP / Active Directory sync.
    pub directory: crate::directory_sync::DirectorySettings,
    /// Entra ID sync (Microsoft Graph).
    pub entra: crate::entra_sync::EntraSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminContact {
    /// e.g. "IT Service Desk".
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default)]
pub struct EnrollmentSettings {
    pub vpn_setup_optional: bool,
    pub only_client_activation: bool,
    pub admin_device_management: bool,
    pub mfa_required: bool,
    pub send_welcome_email: bool,
    /// Notify the issuing admin when a user completes enrollment.
    pub notify_admin_on_completion: bool,
    /// Enrollment token lifetime in seconds (24 h).
    pub token_lifetime_secs: i64,
    /// Desktop-configuration token lifetime in seconds (24 h).
    pub desktop_token_lifetime_secs: i64,
    /// Enrollment session length in seconds (10 min).
    pub session_lifetime_secs: i64,
    /// Devices one user may have at most (admin-created ones count too).
    pub max_devices_per_user: i64,
    /// A second password-reset request for one account within this many seconds sends no
    /// second mail (60 s).
    pub password_reset_cooldown_secs: i64,
    /// How long a password-reset link is valid, in seconds (1 h: shorter than an enrollment
    /// token, since anyone who knows the address can have one sent).
    pub password_reset_lifetime_secs: i64,
    /// Onboarding page shown at the end (markdown with variables).
    pub welcome_message: String,
    /// Show `welcome_message` on the last page of enrollment; when false that page has no
    /// onboarding content (the message may still be the welcome e-mail's body).
    pub show_welcome_message: bool,
    pub welcome_email_subject: String,
    /// Send `welcome_message` as the welcome e-mail body instead of `templates.welcome_body`.
    pub use_welcome_message_as_email: bool,
    /// "Invite new directory users" by e-mail (needs SMTP).
    pub directory_invite_email: bool,
    /// "Invite new directory users" by writing a token into their provisioning attribute
    /// (`directory.provisioning_attribute`), kept fresh until they enroll, then cleared.
    pub directory_invite_attribute: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    Starttls,
    Tls,
}

/// `Debug` (below) hides the password.
#[derive(Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default)]
pub struct SmtpSettings {
    /// Empty = mail not configured.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Plaintext in memory only: encrypted in the database with the instance key, never
    /// returned by the API, redacted by `Debug`.
    pub password: Option<String>,
    pub sender: String,
    /// Seconds before an SMTP attempt gives up.
    pub timeout_secs: u64,
    /// PEM file on the core host with CA certificates trusted for STARTTLS/TLS besides the
    /// public roots (a relay with a certificate from a private CA).
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default)]
pub struct Templates {
    pub invitation_subject: String,
    pub invitation_body: String,
    pub desktop_subject: String,
    pub desktop_body: String,
    pub welcome_body: String,
    pub admin_enrolled_subject: String,
    pub admin_enrolled_body: String,
    pub new_device_subject: String,
    pub new_device_body: String,
    pub password_reset_subject: String,
    pub password_reset_body: String,
    pub password_reset_done_subject: String,
    pub password_reset_done_body: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            instance_id: String::new(),
            instance_name: "Onramp".into(),
            public_url: "http://localhost:8080/".into(),
            enrollment: EnrollmentSettings::default(),
            smtp: SmtpSettings::default(),
            templates: Templates::default(),
            admin_contact: None,
            directory: Default::default(),
            entra: Default::default(),
        }
    }
}

impl Default for EnrollmentSettings {
    fn default() -> Self {
        Self {
            vpn_setup_optional: false,
            only_client_activation: false,
            admin_device_management: false,
            mfa_required: false,
            send_welcome_email: true,
            notify_admin_on_completion: true,
            token_lifetime_secs: 86_400,
            desktop_token_lifetime_secs: 86_400,
            session_lifetime_secs: 600,
            max_devices_per_user: 10,
            password_reset_cooldown_secs: 60,
            password_reset_lifetime_secs: 3600,
            welcome_message: "# Welcome, {{ first_name }}!\n\nYour VPN access to {{ instance_name }} is ready. \
                Questions? Contact {{ admin_first_name }} {{ admin_last_name }} ({{ admin_email }})."
                .into(),
            show_welcome_message: true,
            welcome_email_subject: "Welcome to {{ instance_name }}".into(),
            use_welcome_message_as_email: false,
            directory_invite_email: false,
            directory_invite_attribute: false,
        }
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            sender: "onramp@localhost.localdomain".into(),
            timeout_secs: 15,
            ca_file: None,
        }
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self {
            invitation_subject: "Set up your VPN access to {{ instance_name }}".into(),
            invitation_body: "Hello {{ first_name }},\n\n\
                {{ admin_first_name }} {{ admin_last_name }} invited you to set up VPN access to {{ instance_name }}.\n\n\
                With the Onramp desktop client, open this link:\n  {{ deep_link }}\n\n\
                Or enroll in a browser at:\n  {{ enrollment_url }}\n\
                and enter this token:\n  {{ token }}\n\n\
                On a phone, scan the attached QR code or open:\n  {{ wizard_link }}\n\n\
                The token is valid for {{ token_lifetime }}; once you start, you have {{ session_lifetime }} to finish.\n\n\
                Questions? Contact {{ admin_first_name }} {{ admin_last_name }} <{{ admin_email }}> {{ admin_phone }}\n"
                .into(),
            desktop_subject: "Configure the VPN client for {{ instance_name }}".into(),
            desktop_body: "Hello {{ first_name }},\n\nTo add {{ instance_name }} to your VPN client, open:\n  {{ deep_link }}\n\n\
                or add an instance with URL {{ enrollment_url }} and token:\n  {{ token }}\n\n\
                The token is valid for {{ token_lifetime }}.\n"
                .into(),
            welcome_body: "Hello {{ first_name }},\n\nyour account {{ username }} on {{ instance_name }} is ready.\n".into(),
            admin_enrolled_subject: "{{ first_name }} {{ last_name }} completed enrollment".into(),
            admin_enrolled_body: "User {{ username }} ({{ first_name }} {{ last_name }}) completed enrollment on {{ instance_name }}.\n".into(),
            new_device_subject: "New device added to your {{ instance_name }} account".into(),
            new_device_body: "Hello {{ first_name }},\n\nthe device \"{{ device_name }}\" was added to your account.\n\
                If this was not you, contact {{ admin_email }} right away.\n"
                .into(),
            password_reset_subject: "Reset your {{ instance_name }} password".into(),
            password_reset_body: "Hello {{ first_name }},\n\nto reset your password open {{ enrollment_url }}password-reset?token={{ token }}\n\
                The link is valid for {{ token_lifetime }}. If you did not ask for it, ignore this message.\n"
                .into(),
            password_reset_done_subject: "Your {{ instance_name }} password was changed".into(),
            password_reset_done_body: "Hello {{ first_name }},\n\nyour password was changed. If this was not you, contact your administrator.\n".into(),
        }
    }
}

/// Variables every template may use (PROTOCOL.md section 5 plus message-specific ones).
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "first_name",
    "last_name",
    "username",
    "email",
    "instance_name",
    "onramp_url",
    "onramp_version",
    "defguard_url",
    "defguard_version",
    "admin_first_name",
    "admin_last_name",
    "admin_email",
    "admin_phone",
    "enrollment_url",
    "token",
    "deep_link",
    "wizard_link",
    "token_lifetime",
    "session_lifetime",
    "device_name",
];

/// A partial update: absent fields keep their value. The SMTP password is set with
/// `Some(Some(p))`, cleared with `Some(None)` (JSON `null`).
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub instance_name: Option<String>,
    pub public_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub enrollment: Option<serde_json::Value>,
    /// Replaces the whole SMTP object: fields left out take their defaults and `null` clears
    /// a field, so a login does not survive a switch to a relay without authentication.
    #[schema(value_type = Option<Object>)]
    pub smtp: Option<serde_json::Value>,
    /// Merged: only the fields given change.
    #[schema(value_type = Option<Object>)]
    pub templates: Option<serde_json::Value>,
    /// `{name, email, phone?}`, or `null` to go back to the issuing admin.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AdminContact>)]
    pub admin_contact: Option<Option<AdminContact>>,
    /// Merged: only the fields given change.
    #[schema(value_type = Option<Object>)]
    pub directory: Option<serde_json::Value>,
    /// Merged: only the fields given change.
    #[schema(value_type = Option<Object>)]
    pub entra: Option<serde_json::Value>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sender", &self.sender)
            .field("timeout_secs", &self.timeout_secs)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The patch's `smtp` object may carry the SMTP password: `Debug` shows only which
/// sections and keys it sets.
impl std::fmt::Debug for SettingsPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |v: &Option<serde_json::Value>| {
            v.as_ref().map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default())
        };
        f.debug_struct("SettingsPatch")
            .field("instance_name", &self.instance_name)
            .field("public_url", &self.public_url)
            .field("enrollment", &self.enrollment)
            .field("smtp_keys", &keys(&self.smtp))
            .field("templates_keys", &keys(&self.templates))
            .field("admin_contact", &self.admin_contact)
            .field("directory", &self.directory)
            .field("entra", &self.entra)
            .finish()
    }
}

impl SmtpSettings {
    pub fn is_configured(&self) -> bool {
        !self.host.is_empty()
    }
}

/// How often a core compares its cached settings with the stored version.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The stored settings version a core holds, and when it last compared it with the store.
pub(crate) struct Seen {
    version: i64,
    checked: std::time::Instant,
}

impl Seen {
    pub(crate) fn new(version: i64) -> Self {
        Self { version, checked: std::time::Instant::now() }
    }
}

const SMTP_PASSWORD: &str = "settings.smtp.password";

/// The stored settings and their version, creating them with a new instance id on first
/// start. A legacy plaintext SMTP password is encrypted in place.
pub(crate) async fn load_or_init(store: &onramp_store::Store, key: &SecretKey) -> CoreResult<(Settings, i64)> {
    if let Some((json, version)) = store.settings_json().await? {
        let (settings, legacy) = from_stored(&json, key)?;
        if legacy {
            let version = store.save_settings_json(&to_stored(&settings, key)?).await?;
            tracing::info!("encrypted the SMTP password stored in clear by an earlier version");
            return Ok((settings, version));
        }
        return Ok((settings, version));
    }
    let fresh = Settings { instance_id: uuid::Uuid::new_v4().to_string(), ..Settings::default() };
    store.init_settings_json(&to_stored(&fresh, key)?).await?;
    // Another process may have won the race: read back what is stored.
    let (json, version) =
        store.settings_json().await?.ok_or_else(|| CoreError::Internal("settings vanished".into()))?;
    Ok((from_stored(&json, key)?.0, version))
}

/// Parses the stored document and decrypts the SMTP password; also says whether the
/// password was legacy plaintext.
fn from_stored(json: &str, key: &SecretKey) -> CoreResult<(Settings, bool)> {
    let mut s: Settings =
        serde_json::from_str(json).map_err(|e| CoreError::Internal(format!("stored settings: {e}")))?;
    let mut legacy = false;
    if let Some(p) = &s.smtp.password {
        legacy = !SecretKey::is_sealed(p);
        s.smtp.password = Some(key.open(SMTP_PASSWORD, p).map_err(CoreError::Internal)?);
    }
    Ok((s, legacy))
}

/// The document as stored: the SMTP password encrypted.
fn to_stored(s: &Settings, key: &SecretKey) -> CoreResult<String> {
    let mut s = s.clone();
    s.smtp.password = s.smtp.password.map(|p| key.seal(SMTP_PASSWORD, &p));
    serde_json::to_string(&s).map_err(|e| CoreError::Internal(e.to_string()))
}

/// Overlays `patch` (a JSON object) onto `target`'s JSON form, rejecting unknown keys.
/// A replacing section's `null` fields are left out, so they take the default (`None` for
/// optional fields) rather than failing to parse for required ones.
fn without_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(o) => {
            serde_json::Value::Object(o.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

fn merge_section<T: Serialize + for<'de> Deserialize<'de>>(
    field: &'static str,
    target: &T,
    patch: serde_json::Value,
) -> CoreResult<T> {
    let serde_json::Value::Object(p) = patch else {
        return Err(CoreError::invalid(field, "must be a JSON object"));
    };
    let mut base = serde_json::to_value(target).map_err(|e| CoreError::Internal(e.to_string()))?;
    let obj = base.as_object_mut().ok_or_else(|| CoreError::Internal("settings section".into()))?;
    for (k, v) in p {
        if !obj.contains_key(&k) {
            return Err(CoreError::invalid(field, format!("unknown setting {field}.{k}")));
        }
        obj.insert(k, v);
    }
    serde_json::from_value(base).map_err(|e| CoreError::invalid(field, e.to_string()))
}

impl Core {
    /// The current settings. At most every [`RECHECK`] this compares the cached version
    /// with the stored one (one small query) and reloads when another process saved.
    pub async fn settings(&self) -> Settings {
        let due = {
            let mut seen = self.inner.settings_seen.lock().unwrap_or_else(|e| e.into_inner());
            let due = seen.checked.elapsed() >= RECHECK;
            if due {
                seen.checked = std::time::Instant::now();
            }
            due
        };
        if due {
            match self.store().settings_version().await {
                Ok(Some(v)) if v != self.seen_version() => {
                    if let Err(e) = self.reload_settings().await {
                        tracing::error!(error = %e, "cannot reload the settings another process changed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the settings version"),
            }
        }
        self.inner.settings.read().await.clone()
    }

    fn seen_version(&self) -> i64 {
        self.inner.settings_seen.lock().unwrap_or_else(|e| e.into_inner()).version
    }

    fn set_seen_version(&self, version: i64) {
        self.inner.settings_seen.lock().unwrap_or_else(|e| e.into_inner()).version = version;
    }

    /// Re-reads the settings from the store now, whatever the cached version says.
    /// `settings()` does this by itself within [`RECHECK`] of a change.
    pub async fn reload_settings(&self) -> CoreResult<()> {
        let mut guard = self.inner.settings.write().await;
        let (fresh, version) = load_or_init(self.store(), self.key()).await?;
        *guard = fresh;
        self.set_seen_version(version);
        Ok(())
    }

    pub async fn update_settings(&self, actor: &Actor, patch: SettingsPatch) -> CoreResult<Settings> {
        let mut guard = self.inner.settings.write().await;
        // Start from the stored document, not the cache: another process may have saved
        // since, and its change must not be reverted by this one.
        let (stored, _) = load_or_init(self.store(), self.key()).await?;
        *guard = stored;
        let mut next = guard.clone();
        if let Some(name) = patch.instance_name {
            next.instance_name = onramp_domain::validate::parse_name("instance_name", &name, 64)?;
        }
        if let Some(url) = patch.public_url {
            next.public_url = normalize_public_url("public_url", &url)?;
        }
        if let Some(e) = patch.enrollment {
            next.enrollment = merge_section("enrollment", &next.enrollment, e)?;
        }
        if let Some(s) = patch.smtp {
            // Replaced, not merged: see `SettingsPatch::smtp`.
            next.smtp = merge_section("smtp", &SmtpSettings::default(), without_nulls(s))?;
        }
        if let Some(t) = patch.templates {
            next.templates = merge_section("templates", &next.templates, t)?;
        }
        if let Some(c) = patch.admin_contact {
            next.admin_contact = c;
        }
        if let Some(d) = patch.directory {
            next.directory = merge_section("directory", &next.directory, d)?;
        }
        if let Some(d) = patch.entra {
            next.entra = merge_section("entra", &next.entra, d)?;
        }
        validate(&next)?;
        let version = self.store().save_settings_json(&to_stored(&next, self.key())?).await?;
        let changes = crate::audit_diff(
            &serde_json::to_value(&*guard).unwrap_or_default(),
            &serde_json::to_value(&next).unwrap_or_default(),
        );
        *guard = next.clone();
        self.set_seen_version(version);
        drop(guard);
        self.audit(actor, "settings.updated", None, changes).await;
        Ok(next)
    }
}

/// An absolute http(s) URL, with a trailing slash so that paths can be appended.
pub fn normalize_public_url(field: &'static str, s: &str) -> CoreResult<String> {
    // "edge.example.com" or "localhost:8080" (which parses with scheme "localhost").
    if !s.contains("://") {
        let t = s.trim();
        return Err(CoreError::invalid(field, format!("{t:?} has no scheme; add https:// (https://{t})")));
    }
    let u = url::Url::parse(s.trim()).map_err(|e| CoreError::invalid(field, format!("invalid URL {s:?}: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(CoreError::invalid(field, "must be an absolute http:// or https:// URL"));
    }
    let mut out = u.to_string();
    if !out.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

fn validate(s: &Settings) -> CoreResult<()> {
    let e = &s.enrollment;
    let bounded = |field: &'static str, v: i64, min: i64, max: i64| {
        if v < min || v > max {
            Err(CoreError::invalid(field, format!("must be between {min} and {max} seconds")))
        } else {
            Ok(())
        }
    };
    bounded("enrollment.token_lifetime_secs", e.token_lifetime_secs, 60, 366 * 86_400)?;
    bounded("enrollment.desktop_token_lifetime_secs", e.desktop_token_lifetime_secs, 60, 366 * 86_400)?;
    bounded("enrollment.session_lifetime_secs", e.session_lifetime_secs, 60, 86_400)?;
    bounded("enrollment.max_devices_per_user", e.max_devices_per_user, 1, 10_000)?;
    bounded("enrollment.password_reset_lifetime_secs", e.password_reset_lifetime_secs, 60, 7 * 86_400)?;
    if s.smtp.is_configured() {
        if s.smtp.port == 0 {
            return Err(CoreError::invalid("smtp.port", "must be 1-65535"));
        }
        onramp_domain::validate::Email::parse("smtp.sender", &s.smtp.sender)?;
        if let Some(ca) = &s.smtp.ca_file {
            crate::mail::smtp::read_ca(ca).map_err(|e| CoreError::invalid("smtp.ca_file", e))?;
        }
    }
    s.directory.validate()?;
    s.entra.validate()?;
    if let Some(c) = &s.admin_contact {
        onramp_domain::validate::parse_name("admin_contact.name", &c.name, 128)?;
        onramp_domain::validate::Email::parse("admin_contact.email", &c.email)?;
    }
    let t = &s.templates;
    let all = [
        ("templates.invitation_subject", &t.invitation_subject),
        ("templates.invitation_body", &t.invitation_body),
        ("templates.desktop_subject", &t.desktop_subject),
        ("templates.desktop_body", &t.desktop_body),
        ("templates.welcome_body", &t.welcome_body),
        ("templates.admin_enrolled_subject", &t.admin_enrolled_subject),
        ("templates.admin_enrolled_body", &t.admin_enrolled_body),
        ("templates.new_device_subject", &t.new_device_subject),
        ("templates.new_device_body", &t.new_device_body),
        ("templates.password_reset_subject", &t.password_reset_subject),
        ("templates.password_reset_body", &t.password_reset_body),
        ("templates.password_reset_done_subject", &t.password_reset_done_subject),
        ("templates.password_reset_done_body", &t.password_reset_done_body),
        ("enrollment.welcome_message", &e.welcome_message),
        ("enrollment.welcome_email_subject", &e.welcome_email_subject),
    ];
    for (field, text) in all {
        let unknown = template::unknown_variables(text, TEMPLATE_VARIABLES);
        if !unknown.is_empty() {
            return Err(CoreError::invalid(
                field,
                format!(
                    "unknown template variable(s): {}; known: {}",
                    unknown.join(", "),
                    TEMPLATE_VARIABLES.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_contact_patch_tells_null_from_absent() {
        let p: SettingsPatch = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(p.admin_contact, None);
        let p: SettingsPatch = serde_json::from_value(serde_json::json!({"admin_contact": null})).unwrap();
        assert_eq!(p.admin_contact, Some(None));
        let p: SettingsPatch =
            serde_json::from_value(serde_json::json!({"admin_contact": {"name": "Desk", "email": "d@example.com"}}))
                .unwrap();
        assert_eq!(p.admin_contact.unwrap().unwrap().name, "Desk");
    }

    #[test]
    fn an_smtp_object_replaces_the_stored_one() {
        let mut old = SmtpSettings { host: "old".into(), username: Some("u".into()), ..SmtpSettings::default() };
        old.password = Some("p".into());
        let patch = without_nulls(serde_json::json!({"host": "relay", "port": 25, "username": null}));
        let next: SmtpSettings = merge_section("smtp", &SmtpSettings::default(), patch).unwrap();
        assert_eq!((next.host.as_str(), next.port, next.username, next.password), ("relay", 25, None, None));
    }

    #[test]
    fn debug_hides_the_smtp_password() {
        let mut s = Settings::default();
        s.smtp.password = Some("smtpS3cret!".into());
        let text = format!("{s:?}");
        assert!(!text.contains("smtpS3cret!") && text.contains("<redacted>"), "{text}");
        let patch: SettingsPatch =
            serde_json::from_value(serde_json::json!({"smtp": {"host": "mx", "password": "smtpS3cret!"}})).unwrap();
        let text = format!("{patch:?}");
        assert!(!text.contains("smtpS3cret!") && text.contains("password"), "{text}");
    }
}
