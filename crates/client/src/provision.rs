//! Finding and reading `provisioning.json` (PROTOCOL.md 1.1) on first start.

use onramp_domain::provisioning::{parse_provisioning, ProvisioningFile};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "provisioning.json";
/// Far above any real file (two short strings); a larger file is refused unread.
pub const MAX_BYTES: u64 = 64 * 1024;

/// A provisioning file that cannot be used: names the file and the exact problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FileError {
    pub path: String,
    pub problem: String,
}

pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads and checks the file; `Ok(None)` when there is none. The file is never changed.
pub fn load(path: &Path, allow_http: bool) -> Result<Option<ProvisioningFile>, FileError> {
    let fail = |problem: String| FileError { path: path.display().to_string(), problem };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(format!("cannot be read: {e}"))),
    };
    if meta.is_dir() {
        return Err(fail("is a directory, not a file".into()));
    }
    if meta.len() > MAX_BYTES {
        return Err(fail(format!(
            "is {} bytes; a provisioning file is a few hundred bytes (limit {MAX_BYTES})",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    parse_provisioning(&bytes, allow_http).map(Some).map_err(|e| fail(e.to_string()))
}

/// Where a provisioning came from, in the order the client looks (the first found wins):
/// an explicit `--provisioning-file`, the user's own file, then the machine-wide source of
/// the platform (macOS managed preferences, or `/etc/onramp/provisioning.json` elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A file the client may delete once the token is spent.
    UserFile(PathBuf),
    /// A machine-wide source the user does not own: left in place.
    MachineWide(String),
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::UserFile(p) => write!(f, "{}", p.display()),
            Found::MachineWide(s) => f.write_str(s),
        }
    }
}

/// The machine-wide folder (`ONRAMP_CLIENT_SYSTEM_DIR` overrides it, for packagers and tests).
pub fn system_dir() -> PathBuf {
    std::env::var_os("ONRAMP_CLIENT_SYSTEM_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/etc/onramp"))
}

/// The macOS managed-preferences domain an MDM profile fills (sample profile in
/// `deploy/macos/`): keys `EnrollmentURL` and `EnrollmentToken`.
pub const MANAGED_DOMAIN: &str = "net.onramp.client";

/// Finds the provisioning to use when the client is not initialized.
pub fn find(
    data_dir: &Path,
    explicit: Option<&Path>,
    allow_http: bool,
) -> Result<Option<(Found, ProvisioningFile)>, FileError> {
    if let Some(p) = explicit {
        return Ok(load(p, allow_http)?.map(|f| (Found::UserFile(p.to_owned()), f)));
    }
    let own = default_path(data_dir);
    if let Some(f) = load(&own, allow_http)? {
        return Ok(Some((Found::UserFile(own), f)));
    }
    if cfg!(target_os = "macos") {
        let user = std::env::var("USER").unwrap_or_default();
        let managed = Path::new("/Library/Managed Preferences");
        for p in [
            managed.join(&user).join(format!("{MANAGED_DOMAIN}.plist")),
            managed.join(format!("{MANAGED_DOMAIN}.plist")),
        ] {
            if let Some(f) = load_managed_plist(&p, allow_http)? {
                return Ok(Some((Found::MachineWide(p.display().to_string()), f)));
            }
        }
        return Ok(None);
    }
    let system = system_dir().join(FILE_NAME);
    match load_system(&system, allow_http)? {
        Some(f) => Ok(Some((Found::MachineWide(system.display().to_string()), f))),
        None => Ok(None),
    }
}

/// The machine-wide file, refused when others could have written it (anyone who can write
/// it could send every user of the machine to their own server).
pub fn load_system(path: &Path, allow_http: bool) -> Result<Option<ProvisioningFile>, FileError> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o002 != 0 {
            return Err(FileError {
                path: path.display().to_string(),
                problem: format!(
                    "is writable by every user (mode {:o}); refusing it. Make it 0644 or stricter, owned by root",
                    mode & 0o777
                ),
            });
        }
    }
    load(path, allow_http)
}

/// A managed-preferences plist (XML or binary) with `EnrollmentURL` and `EnrollmentToken`.
pub fn load_managed_plist(path: &Path, allow_http: bool) -> Result<Option<ProvisioningFile>, FileError> {
    let fail = |problem: String| FileError { path: path.display().to_string(), problem };
    if !path.exists() {
        return Ok(None);
    }
    let dict: plist::Dictionary =
        plist::from_file(path).map_err(|e| fail(format!("is not a readable property list: {e}")))?;
    let get = |key: &str| dict.get(key).and_then(|v| v.as_string()).map(str::to_owned);
    let (Some(url), Some(token)) = (get("EnrollmentURL"), get("EnrollmentToken")) else {
        return Err(fail("needs the string keys EnrollmentURL and EnrollmentToken".into()));
    };
    let json = serde_json::json!({"enrollment_url": url, "enrollment_token": token}).to_string();
    parse_provisioning(json.as_bytes(), allow_http).map(Some).map_err(|e| fail(e.to_string()))
}

/// After a successful enrollment the token is spent: the file is deleted so it does not
/// stay on disk in clear.
pub fn consume(found: &Found) {
    let Found::UserFile(path) = found else { return };
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not delete the used provisioning file; delete it by hand");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "6B8fg2wiyczb1uDCDwUyMsnYz6qQBVu0";

    #[test]
    fn managed_plist_in_xml_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = plist::Dictionary::new();
        d.insert("EnrollmentURL".into(), "https://edge.example.com/".into());
        d.insert("EnrollmentToken".into(), TOKEN.into());
        let xml = dir.path().join("x.plist");
        plist::to_file_xml(&xml, &d).unwrap();
        let bin = dir.path().join("b.plist");
        plist::to_file_binary(&bin, &d).unwrap();
        for p in [&xml, &bin] {
            assert_eq!(load_managed_plist(p, false).unwrap().unwrap().enrollment_token, TOKEN);
        }
        let mut partial = plist::Dictionary::new();
        partial.insert("EnrollmentURL".into(), "https://edge.example.com/".into());
        plist::to_file_xml(&xml, &partial).unwrap();
        assert!(load_managed_plist(&xml, false).unwrap_err().problem.contains("EnrollmentToken"));
        assert!(load_managed_plist(&dir.path().join("none.plist"), false).unwrap().is_none());
    }

    #[test]
    fn the_sample_profile_carries_the_keys() {
        let text = include_str!("../../../deploy/macos/onramp-provisioning.mobileconfig");
        assert!(text.contains(MANAGED_DOMAIN) && text.contains("EnrollmentURL") && text.contains("EnrollmentToken"));
        let v: plist::Value = plist::from_bytes(text.as_bytes()).unwrap();
        assert!(v.as_dictionary().unwrap().contains_key("PayloadContent"));
    }
}
