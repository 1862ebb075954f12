//! LDAP and Active Directory access for provisioning (PROTOCOL.md 1.2): find a user's entry
//! by `uid` (LDAP) or `sAMAccountName` (AD), read the provisioning attribute (the client's
//! helper) or write it (core's `provision-directory`). Simple bind with credentials from a
//! file or the environment; anonymous when none are given.

pub mod graph;
pub mod sync;
pub use graph::{GraphConnection, GraphSource};
pub use sync::{ReadStats, SyncConnection, SyncSource};

use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use std::collections::HashSet;
use std::time::Duration;

/// The attribute name of PROTOCOL.md 1.2.
pub const DEFAULT_ATTRIBUTE: &str = "defguardProvisioningConfig";

#[derive(Clone)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    pub bind_dn: Option<String>,
    pub password: Option<String>,
    /// Where users are searched (subtree), e.g. `dc=example,dc=com`.
    pub base_dn: String,
    /// `uid` for LDAP, `sAMAccountName` for Active Directory.
    pub user_attribute: String,
    /// Without a bind DN: bind with the logged-on user's Kerberos ticket (Windows) instead
    /// of anonymously.
    pub kerberos: bool,
}

/// Active Directory defaults from the logon domain (`USERDNSDOMAIN`, e.g. `CONTOSO.COM`):
/// the domain name resolves to its domain controllers, and names the search base.
pub fn ad_defaults(dns_domain: &str) -> Option<(String, String)> {
    let d = dns_domain.trim().trim_end_matches('.');
    if d.is_empty() || !d.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return None;
    }
    let base = d.split('.').map(|p| format!("DC={p}")).collect::<Vec<_>>().join(",");
    Some((format!("ldap://{}", d.to_ascii_lowercase()), base))
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .field("user_attribute", &self.user_attribute)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot reach the directory at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the directory refused the credentials of {bind_dn}: {message}")]
    Credentials { bind_dn: String, message: String },
    #[error("no directory entry with {attribute}={username} under {base_dn}")]
    UserNotFound { attribute: String, username: String, base_dn: String },
    #[error("directory error: {0}")]
    Other(String),
}

/// Whether `filter` is an LDAP search filter (RFC 4515), and if not, why.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if !filter.trim_start().starts_with('(') {
        return Err(format!("{filter:?} is not an LDAP filter: it must be in parentheses, e.g. (objectClass=person)"));
    }
    ldap3::parse_filter(filter).map(drop).map_err(|_| format!("{filter:?} is not a valid LDAP filter"))
}

/// An attribute description: a letter, then letters, digits and hyphens (RFC 4512).
pub fn is_attribute_name(a: &str) -> bool {
    a.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// An open, bound connection.
pub struct Directory {
    ldap: ldap3::Ldap,
    cfg: LdapConfig,
}

impl Directory {
    pub async fn connect(cfg: &LdapConfig) -> Result<Directory, DirectoryError> {
        let unreachable =
            |e: ldap3::LdapError| DirectoryError::Unreachable { url: cfg.url.clone(), message: e.to_string() };
        let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10));
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url).await.map_err(unreachable)?;
        ldap3::drive!(conn);
        ldap.with_timeout(Duration::from_secs(30));
        if let Some(dn) = &cfg.bind_dn {
            let res = ldap.simple_bind(dn, cfg.password.as_deref().unwrap_or("")).await.map_err(unreachable)?;
            if res.rc != 0 {
                return Err(DirectoryError::Credentials { bind_dn: dn.clone(), message: describe(res.rc, &res.text) });
            }
        } else if cfg.kerberos {
            kerberos_bind(&mut ldap, &cfg.url).await?;
        }
        Ok(Directory { ldap, cfg: cfg.clone() })
    }

    /// The DN and the attribute's values of `username`'s entry.
    async fn find(&mut self, username: &str, attribute: &str) -> Result<(String, Option<String>), DirectoryError> {
        let filter = format!("({}={})", self.cfg.user_attribute, ldap3::ldap_escape(username));
        let (entries, _) = self
            .ldap
            .search(&self.cfg.base_dn, Scope::Subtree, &filter, vec![attribute])
            .await
            .and_then(|r| r.success())
            .map_err(|e| DirectoryError::Other(e.to_string()))?;
        let Some(first) = entries.into_iter().next() else {
            return Err(DirectoryError::UserNotFound {
                attribute: self.cfg.user_attribute.clone(),
                username: username.to_owned(),
                base_dn: self.cfg.base_dn.clone(),
            });
        };
        let entry = SearchEntry::construct(first);
        // Servers may return the attribute name in another case.
        let value = entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
            .and_then(|(_, v)| v.first().cloned())
            .or_else(|| {
                entry
                    .bin_attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attribute))
                    .and_then(|(_, v)| v.first())
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            });
        Ok((entry.dn, value))
    }

    /// The attribute's value on the user's entry (`None` when absent).
    pub async fn read_attribute(&mut self, username: &str, attribute: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self.find(username, attribute).await?.1)
    }

    /// Replaces the attribute's value on the user's entry.
    pub async fn write_attribute(
        &mut self,
        username: &str,
        attribute: &str,
        value: &str,
    ) -> Result<(), DirectoryError> {
        let (dn, _) = self.find(username, attribute).await?;
        let res = self
            .ldap
            .modify(&dn, vec![Mod::Replace(attribute, HashSet::from([value]))])
            .await
            .map_err(|e| DirectoryError::Other(e.to_string()))?;
        if res.rc != 0 {
            return Err(DirectoryError::Other(format!(
                "cannot write {attribute} on {dn}: {}",
                describe(res.rc, &res.text)
            )));
        }
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

#[cfg(windows)]
async fn kerberos_bind(ldap: &mut ldap3::Ldap, url: &str) -> Result<(), DirectoryError> {
    let host = url.split("://").nth(1).unwrap_or(url).split([':', '/']).next().unwrap_or("").to_owned();
    let who = "the logged-on user (Kerberos)".to_owned();
    let res = ldap
        .sasl_gssapi_bind(&host)
        .await
        .map_err(|e| DirectoryError::Credentials { bind_dn: who.clone(), message: e.to_string() })?;
    if res.rc != 0 {
        return Err(DirectoryError::Credentials { bind_dn: who, message: describe(res.rc, &res.text) });
    }
    Ok(())
}

#[cfg(not(windows))]
async fn kerberos_bind(_: &mut ldap3::Ldap, _: &str) -> Result<(), DirectoryError> {
    Err(DirectoryError::Credentials {
        bind_dn: "the logged-on user".into(),
        message: "a Kerberos bind is available on Windows only; give --ldap-bind-dn and a password".into(),
    })
}

pub(crate) fn describe(rc: u32, text: &str) -> String {
    let name = match rc {
        32 => "no such object",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        17 => "undefined attribute type",
        65 => "object class violation",
        _ => "LDAP error",
    };
    if text.is_empty() {
        format!("{name} (code {rc})")
    } else {
        format!("{name} (code {rc}): {text}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_and_attribute_names() {
        assert!(super::check_filter("(&(objectClass=person)(uid=*))").is_ok());
        assert!(super::check_filter("objectClass=person").unwrap_err().contains("parentheses"));
        assert!(super::check_filter("(&(uid=a)").is_err());
        assert!(super::is_attribute_name("sAMAccountName") && super::is_attribute_name("extensionAttribute4"));
        assert!(!super::is_attribute_name("1bad") && !super::is_attribute_name("a b") && !super::is_attribute_name(""));
    }

    #[test]
    fn ad_defaults_from_the_logon_domain() {
        assert_eq!(super::ad_defaults("CONTOSO.COM"), Some(("ldap://contoso.com".into(), "DC=CONTOSO,DC=COM".into())));
        assert_eq!(super::ad_defaults(""), None);
        assert_eq!(super::ad_defaults("bad domain"), None);
    }
}
