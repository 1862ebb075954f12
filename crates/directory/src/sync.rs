//! Reading a whole directory for a sync: users and groups in paged searches (RFC 2696; AD
//! answers at most 1,000 entries to one plain search), group nesting resolved here, and the
//! provisioning attribute written or cleared by DN.
//!
//! Nesting is resolved from one read of every group under the group base: a member that is
//! itself a group contributes its members. This covers AD's nested groups without the
//! in-chain matching rule (1.2.840.113556.1.4.1941), which OpenLDAP does not implement, so
//! one code path serves both and is tested against a real server.

use crate::{describe, DirectoryError};
use ldap3::controls::{ControlType, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use onramp_domain::directory::{DirUser, Snapshot};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How to read the directory. `Debug` hides the password.
#[derive(Clone)]
pub struct SyncSource {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM file of the CA that signed the server's certificate (ldaps or StartTLS).
    pub ca_file: Option<String>,
    pub bind_dn: Option<String>,
    pub password: Option<String>,
    pub user_base: String,
    pub user_filter: String,
    pub group_base: String,
    pub group_filter: String,
    /// `uid` (LDAP) or `sAMAccountName` (AD).
    pub username_attribute: String,
    pub first_name_attribute: String,
    pub last_name_attribute: String,
    pub email_attribute: String,
    pub phone_attribute: String,
    /// Group names (`cn`) to sync; empty: no groups, every user the filter finds.
    pub groups: Vec<String>,
    /// Read this attribute too (the provisioning attribute), to keep it fresh.
    pub provisioning_attribute: Option<String>,
    /// Entries per page.
    pub page_size: i32,
}

impl std::fmt::Debug for SyncSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncSource")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("user_base", &self.user_base)
            .field("group_base", &self.group_base)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// What one read cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// LDAP requests answered (bind, each page of each search).
    pub round_trips: u32,
    pub user_entries: usize,
    pub group_entries: usize,
}

/// An open, bound connection for a sync.
pub struct SyncConnection {
    ldap: ldap3::Ldap,
    src: SyncSource,
    pub stats: ReadStats,
}

fn other(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Other(e.to_string())
}

/// The TLS settings of an ldaps or StartTLS connection: trust the CA file when one is
/// given, else the system's CA store. Built here with an explicit crypto provider, so no
/// process-wide default is needed.
fn tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca_file) => {
            let pem = std::fs::read(ca_file).map_err(|e| other(format!("cannot read the CA file {ca_file}: {e}")))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| other(format!("the CA file {ca_file}: {e}")))?;
                roots.add(cert).map_err(|e| other(format!("the CA file {ca_file}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(other(format!("the CA file {ca_file} holds no PEM certificate")));
            }
        }
        None => {
            // Unreadable entries of the system store are skipped, as TLS clients usually do.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl SyncConnection {
    pub async fn open(src: &SyncSource) -> Result<SyncConnection, DirectoryError> {
        let unreachable =
            |e: ldap3::LdapError| DirectoryError::Unreachable { url: src.url.clone(), message: e.to_string() };
        let mut settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10));
        if src.starttls {
            if src.url.starts_with("ldaps://") {
                return Err(other("StartTLS is for ldap:// URLs; an ldaps:// URL is TLS already"));
            }
            settings = settings.set_starttls(true);
        }
        if src.starttls || src.url.starts_with("ldaps://") {
            settings = settings.set_config(tls_config(src.ca_file.as_deref())?);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &src.url).await.map_err(unreachable)?;
        ldap3::drive!(conn);
        ldap.with_timeout(Duration::from_secs(60));
        let mut stats = ReadStats::default();
        if let Some(dn) = &src.bind_dn {
            let res = ldap.simple_bind(dn, src.password.as_deref().unwrap_or("")).await.map_err(unreachable)?;
            stats.round_trips += 1;
            if res.rc != 0 {
                return Err(DirectoryError::Credentials { bind_dn: dn.clone(), message: describe(res.rc, &res.text) });
            }
        }
        Ok(SyncConnection { ldap, src: src.clone(), stats })
    }

    /// Every entry of a subtree search, page by page.
    async fn paged(&mut self, base: &str, filter: &str, attrs: &[&str]) -> Result<Vec<SearchEntry>, DirectoryError> {
        let mut cookie = Vec::new();
        let mut out = Vec::new();
        loop {
            let ctrl = PagedResults { size: self.src.page_size.max(1), cookie: std::mem::take(&mut cookie) };
            let res = self
                .ldap
                .with_controls(ctrl)
                .search(base, Scope::Subtree, filter, attrs.to_vec())
                .await
                .map_err(|e| DirectoryError::Unreachable { url: self.src.url.clone(), message: e.to_string() })?;
            self.stats.round_trips += 1;
            let ldap3::SearchResult(entries, result) = res;
            if result.rc != 0 {
                return Err(other(format!("searching {base} with {filter}: {}", describe(result.rc, &result.text))));
            }
            out.extend(entries.into_iter().map(SearchEntry::construct));
            let next = result.ctrls.iter().find_map(|c| match c {
                ldap3::controls::Control(Some(ControlType::PagedResults), raw) => Some(raw.parse::<PagedResults>()),
                _ => None,
            });
            match next {
                Some(p) if !p.cookie.is_empty() => cookie = p.cookie,
                _ => return Ok(out),
            }
        }
    }

    /// Reads the synced groups (with their nested groups) and the users in them.
    pub async fn read(&mut self) -> Result<Snapshot, DirectoryError> {
        let src = self.src.clone();
        let wanted: HashSet<String> = src.groups.iter().map(|g| g.trim().to_lowercase()).collect();
        // Groups: name and members of every group, so nesting can be followed.
        let mut groups: HashMap<String, (String, Vec<String>, Vec<String>)> = HashMap::new();
        if !wanted.is_empty() {
            let entries =
                self.paged(&src.group_base, &src.group_filter, &["cn", "member", "uniqueMember", "memberUid"]).await?;
            self.stats.group_entries = entries.len();
            for e in entries {
                let Some(cn) = first(&e, "cn") else { continue };
                let dns =
                    values(&e, "member").into_iter().chain(values(&e, "uniqueMember")).map(|d| norm_dn(&d)).collect();
                groups.insert(norm_dn(&e.dn), (cn, dns, values(&e, "memberUid")));
            }
        }
        // For each synced group: the DNs of every group inside it (itself included) and the
        // user DNs and memberUid values found on the way.
        let mut found_groups = BTreeSet::new();
        let mut member_dns: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut member_uids: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut closure: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (dn, (cn, _, _)) in &groups {
            if !wanted.contains(&cn.to_lowercase()) {
                continue;
            }
            let name = src.groups.iter().find(|g| g.trim().eq_ignore_ascii_case(cn)).cloned().unwrap_or(cn.clone());
            found_groups.insert(name.clone());
            let mut stack = vec![dn.clone()];
            let mut inside: HashSet<String> = HashSet::new();
            while let Some(g) = stack.pop() {
                if !inside.insert(g.clone()) {
                    continue; // a cycle, or a group reached twice
                }
                closure.entry(g.clone()).or_default().insert(name.clone());
                let Some((_, members, uids)) = groups.get(&g) else { continue };
                for m in members {
                    if groups.contains_key(m) {
                        stack.push(m.clone());
                    } else {
                        member_dns.entry(m.clone()).or_default().insert(name.clone());
                    }
                }
                for u in uids {
                    member_uids.entry(u.to_lowercase()).or_default().insert(name.clone());
                }
            }
        }
        let mut attrs = vec![
            src.username_attribute.as_str(),
            src.first_name_attribute.as_str(),
            src.last_name_attribute.as_str(),
            "cn",
            src.email_attribute.as_str(),
            src.phone_attribute.as_str(),
            "memberOf",
            "userAccountControl",
            "pwdAccountLockedTime",
        ];
        if let Some(a) = &src.provisioning_attribute {
            attrs.push(a.as_str());
        }
        let entries = self.paged(&src.user_base, &src.user_filter, &attrs).await?;
        self.stats.user_entries = entries.len();
        let mut users = Vec::new();
        for e in entries {
            let Some(username) = first(&e, &src.username_attribute) else { continue };
            let dn = norm_dn(&e.dn);
            let mut in_groups: BTreeSet<String> = member_dns.get(&dn).cloned().unwrap_or_default();
            in_groups.extend(member_uids.get(&username.to_lowercase()).cloned().unwrap_or_default());
            // memberOf (AD, or OpenLDAP's memberof overlay) names the direct groups.
            for g in values(&e, "memberOf") {
                if let Some(names) = closure.get(&norm_dn(&g)) {
                    in_groups.extend(names.iter().cloned());
                }
            }
            if !wanted.is_empty() && in_groups.is_empty() {
                continue;
            }
            // AD: bit 2 of userAccountControl is ACCOUNTDISABLE. OpenLDAP ppolicy: a locked account.
            let disabled =
                first(&e, "userAccountControl").and_then(|v| v.trim().parse::<i64>().ok()).is_some_and(|v| v & 2 != 0)
                    || first(&e, "pwdAccountLockedTime").is_some();
            users.push(DirUser {
                username,
                first_name: first(&e, &src.first_name_attribute),
                last_name: first(&e, &src.last_name_attribute),
                display_name: first(&e, "cn"),
                email: first(&e, &src.email_attribute),
                phone: first(&e, &src.phone_attribute),
                disabled,
                groups: in_groups,
                locator: e.dn.clone(),
                attribute: src.provisioning_attribute.as_deref().and_then(|a| first(&e, a)).filter(|v| !v.is_empty()),
            });
        }
        Ok(Snapshot { users, groups: found_groups })
    }

    /// Replaces the attribute on the entry `dn`, or removes it (`None`).
    pub async fn write_attribute(
        &mut self,
        dn: &str,
        attribute: &str,
        value: Option<&str>,
    ) -> Result<(), DirectoryError> {
        let m = match value {
            Some(v) => Mod::Replace(attribute, HashSet::from([v])),
            None => Mod::Replace(attribute, HashSet::new()),
        };
        let res = self.ldap.modify(dn, vec![m]).await.map_err(other)?;
        self.stats.round_trips += 1;
        if res.rc != 0 {
            return Err(other(format!("cannot write {attribute} on {dn}: {}", describe(res.rc, &res.text))));
        }
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// A DN in the form used for comparisons: lower case, no spaces around separators (LDAP
/// servers return the DNs that `member` holds as they were written).
fn norm_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

fn values(e: &SearchEntry, attr: &str) -> Vec<String> {
    e.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).map(|(_, v)| v.clone()).unwrap_or_default()
}

fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    values(e, attr).into_iter().next().or_else(|| {
        e.bin_attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .and_then(|(_, v)| v.first())
            .map(|b| String::from_utf8_lossy(b).into_owned())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(super::norm_dn("CN=Staff, OU=Groups ,DC=Example"), "cn=staff,ou=groups,dc=example");
    }
}
