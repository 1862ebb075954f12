//! The provision helper's inputs turned into a directory configuration and a run: what
//! `onramp-client provision` does, callable from a GUI or an installer wrapper too.

use super::{ProvisionError, ProvisionError::Usage};
use crate::entra::{self, Credentials, EntraConfig};
use crate::join::{self, Join};
use crate::Settings;
use onramp_directory::LdapConfig;
use std::path::{Path, PathBuf};

/// Where the enrollment URL and token come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// By the machine's join state; a configured LDAP URL or Entra tenant on a machine
    /// joined to nothing; else nothing to do.
    Auto,
    /// Active Directory over LDAP: the user's sAMAccountName.
    Ad,
    /// An LDAP server: the user's uid.
    Ldap,
    /// Microsoft Entra ID custom security attributes through Microsoft Graph.
    Entra,
    /// A prepared file (`Request::from`).
    File,
}

#[derive(Clone, Default)]
pub struct LdapOptions {
    pub url: Option<String>,
    pub base_dn: Option<String>,
    pub bind_dn: Option<String>,
    /// File holding the bind password; wins over `password`.
    pub password_file: Option<PathBuf>,
    pub password: Option<String>,
}

impl std::fmt::Debug for LdapOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapOptions")
            .field("url", &self.url)
            .field("base_dn", &self.base_dn)
            .field("bind_dn", &self.bind_dn)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct EntraOptions {
    pub attribute_set: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    /// Client secret file (app sign-in); without it a person signs in with a device code.
    pub client_secret_file: Option<PathBuf>,
    /// The Entra user (object id or UPN); default: the signed-in user.
    pub user: Option<String>,
    pub graph_url: String,
    pub login_url: String,
}

impl Default for EntraOptions {
    fn default() -> Self {
        EntraOptions {
            attribute_set: entra::DEFAULT_ATTRIBUTE_SET.into(),
            tenant: None,
            client_id: None,
            client_secret_file: None,
            user: None,
            graph_url: entra::DEFAULT_GRAPH_URL.into(),
            login_url: entra::DEFAULT_LOGIN_URL.into(),
        }
    }
}

/// One provisioning run.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Source,
    /// The directory attribute holding {"enrollmentUrl","enrollmentToken"}.
    pub attribute: String,
    /// Where to write (default: the target user's app data directory).
    pub output: Option<PathBuf>,
    /// The user who will run the client (default: the user this process runs as).
    pub user: Option<String>,
    pub force: bool,
    pub dry_run: bool,
    /// With [`Source::File`]: the prepared file.
    pub from: Option<PathBuf>,
    pub ldap: LdapOptions,
    pub entra: EntraOptions,
}

impl Request {
    pub fn new(source: Source) -> Request {
        Request {
            source,
            attribute: onramp_directory::DEFAULT_ATTRIBUTE.into(),
            output: None,
            user: None,
            force: false,
            dry_run: false,
            from: None,
            ldap: LdapOptions::default(),
            entra: EntraOptions::default(),
        }
    }
}

/// What a run did; the token is never part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Joined to no directory and none configured: nothing written (not an error).
    NotJoined,
    WouldWrite {
        path: PathBuf,
        username: String,
        enrollment_url: String,
    },
    Written {
        path: PathBuf,
        username: String,
        enrollment_url: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotJoined => write!(f, "{}", ProvisionError::NotJoined),
            Outcome::WouldWrite { path, username, enrollment_url } => write!(
                f,
                "would write {} for {username}: enrollment URL {enrollment_url} (token not shown)",
                path.display()
            ),
            Outcome::Written { path, username, enrollment_url } => {
                write!(f, "wrote {} for {username}: enrollment URL {enrollment_url}", path.display())
            }
        }
    }
}

/// Runs the helper. `show` receives what a person must see (the Entra device-code prompt).
pub async fn run(req: &Request, settings: &Settings, show: &mut dyn FnMut(&str)) -> Result<Outcome, ProvisionError> {
    let source = match req.source {
        Source::Auto => match join::detect() {
            Join::Domain | Join::Hybrid => Source::Ad,
            Join::Entra => Source::Entra,
            Join::None if req.ldap.url.is_some() => Source::Ldap,
            Join::None if req.entra.tenant.is_some() => Source::Entra,
            Join::None => return Ok(Outcome::NotJoined),
        },
        other => other,
    };
    let username = || {
        req.user
            .clone()
            .or_else(super::current_user)
            .ok_or_else(|| Usage("cannot tell the user; pass --user NAME".into()))
    };
    let file = match source {
        Source::File => {
            let from = req.from.as_deref().ok_or_else(|| Usage("--source file needs --from FILE".into()))?;
            super::from_file(from, settings.allow_http)?
        }
        Source::Entra => {
            let cfg = entra_config(&req.entra)?;
            let token = entra::access_token(&cfg, show).await?;
            entra::read(&cfg, req.entra.user.as_deref(), &token, settings.allow_http).await?
        }
        Source::Ad | Source::Ldap | Source::Auto => {
            let attr = if source == Source::Ad { "sAMAccountName" } else { "uid" };
            super::from_ldap(&ldap_config(&req.ldap, attr)?, &username()?, &req.attribute, settings.allow_http).await?
        }
    };
    let path = match &req.output {
        Some(o) => o.clone(),
        None => super::default_output(req.user.as_deref())?,
    };
    let (username, enrollment_url) = (username()?, file.enrollment_url.clone());
    if req.dry_run {
        return Ok(Outcome::WouldWrite { path, username, enrollment_url });
    }
    super::write(&path, &file, req.force, req.user.as_deref())?;
    Ok(Outcome::Written { path, username, enrollment_url })
}

fn read_secret(f: &Path) -> Result<String, ProvisionError> {
    let s = std::fs::read_to_string(f).map_err(|e| Usage(format!("{}: cannot be read: {e}", f.display())))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_owned())
}

/// The LDAP configuration; for AD the logon domain names the directory and the search base
/// when they are not given.
pub fn ldap_config(o: &LdapOptions, user_attribute: &str) -> Result<LdapConfig, ProvisionError> {
    let ad = user_attribute == "sAMAccountName";
    let defaults =
        if ad { std::env::var("USERDNSDOMAIN").ok().and_then(|d| onramp_directory::ad_defaults(&d)) } else { None };
    let url = o
        .url
        .clone()
        .or_else(|| defaults.clone().map(|d| d.0))
        .ok_or_else(|| Usage("--ldap-url (ONRAMP_LDAP_URL) is required".into()))?;
    let base_dn = o
        .base_dn
        .clone()
        .or_else(|| defaults.map(|d| d.1))
        .ok_or_else(|| Usage("--ldap-base-dn (ONRAMP_LDAP_BASE_DN) is required".into()))?;
    let password = match &o.password_file {
        Some(f) => Some(read_secret(f)?),
        None => o.password.clone(),
    };
    Ok(LdapConfig {
        url,
        bind_dn: o.bind_dn.clone(),
        password,
        base_dn,
        user_attribute: user_attribute.into(),
        kerberos: ad,
    })
}

pub fn entra_config(o: &EntraOptions) -> Result<EntraConfig, ProvisionError> {
    let tenant = o.tenant.clone().ok_or_else(|| Usage("--entra-tenant (ONRAMP_ENTRA_TENANT) is required".into()))?;
    let client_id =
        o.client_id.clone().ok_or_else(|| Usage("--entra-client-id (ONRAMP_ENTRA_CLIENT_ID) is required".into()))?;
    let credentials = match &o.client_secret_file {
        Some(f) => {
            if o.user.is_none() {
                return Err(Usage("an app sign-in (client secret) needs --entra-user UPN".into()));
            }
            Credentials::ClientSecret { client_id, secret: read_secret(f)?.trim().to_owned() }
        }
        None => Credentials::DeviceCode { client_id },
    };
    Ok(EntraConfig {
        tenant,
        credentials,
        graph_url: o.graph_url.clone(),
        login_url: o.login_url.clone(),
        attribute_set: o.attribute_set.clone(),
    })
}
