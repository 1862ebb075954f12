//! The provisioning helper (`onramp-client provision`): turns a directory attribute (LDAP /
//! Active Directory) or a prepared file into `provisioning.json` for the user who will run
//! the client. Called by installers, so every outcome has its own exit code.

use onramp_directory::{Directory, DirectoryError, LdapConfig};
use onramp_domain::provisioning::{parse_directory_attribute, parse_provisioning, ProvisioningFile};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Not an error for installers: nothing to do on this machine.
    #[error("this machine is not joined to a directory and no directory is configured; nothing written")]
    NotJoined,
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Credentials(String),
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Malformed(String),
    #[error("{path}: cannot write: {message}")]
    NotWritable { path: String, message: String },
    #[error("{0} exists; use --force to replace it")]
    Exists(String),
    #[error("{0}")]
    Usage(String),
}

impl ProvisionError {
    /// Documented exit codes (README "Deploying to a fleet").
    pub fn exit_code(&self) -> u8 {
        match self {
            ProvisionError::NotJoined => 0,
            ProvisionError::Usage(_) => 2,
            ProvisionError::Unreachable(_) => 10,
            ProvisionError::Missing(_) => 11,
            ProvisionError::Malformed(_) => 12,
            ProvisionError::NotWritable { .. } => 13,
            ProvisionError::Exists(_) => 14,
            ProvisionError::Credentials(_) => 15,
        }
    }
}

impl From<DirectoryError> for ProvisionError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Unreachable { .. } => ProvisionError::Unreachable(e.to_string()),
            DirectoryError::Credentials { .. } => ProvisionError::Credentials(e.to_string()),
            DirectoryError::UserNotFound { .. } => ProvisionError::Missing(e.to_string()),
            DirectoryError::Other(_) => ProvisionError::Unreachable(e.to_string()),
        }
    }
}

/// Reads `attribute` of `username` from the directory and checks it.
pub async fn from_ldap(
    cfg: &LdapConfig,
    username: &str,
    attribute: &str,
    allow_http: bool,
) -> Result<ProvisioningFile, ProvisionError> {
    let mut dir = Directory::connect(cfg).await?;
    let value = dir.read_attribute(username, attribute).await;
    dir.close().await;
    let value = value?.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        ProvisionError::Missing(format!("the directory entry of {username} has no value in {attribute}"))
    })?;
    parse_directory_attribute(&value, allow_http)
        .map_err(|e| ProvisionError::Malformed(format!("{attribute} of {username}: {e}")))
}

/// A prepared file in either format (snake_case provisioning.json or the camelCase
/// directory value).
pub fn from_file(path: &Path, allow_http: bool) -> Result<ProvisioningFile, ProvisionError> {
    let bytes =
        std::fs::read(path).map_err(|e| ProvisionError::Missing(format!("{}: cannot be read: {e}", path.display())))?;
    parse_provisioning(&bytes, allow_http).or_else(|first| {
        let text = onramp_domain::provisioning::decode_text(&bytes)
            .map_err(|e| ProvisionError::Malformed(format!("{}: {e}", path.display())))?;
        parse_directory_attribute(&text, allow_http)
            .map_err(|_| ProvisionError::Malformed(format!("{}: {first}", path.display())))
    })
}

/// Where the client of `user` looks for provisioning.json; `None` = the current user.
pub fn default_output(user: Option<&str>) -> Result<PathBuf, ProvisionError> {
    let dir = match user {
        None => crate::dirs::data_dir().map_err(ProvisionError::Usage)?,
        Some(u) => user_data_dir(u)?,
    };
    Ok(dir.join(crate::provision::FILE_NAME))
}

#[cfg(unix)]
fn user_data_dir(user: &str) -> Result<PathBuf, ProvisionError> {
    let home = user_home(user).ok_or_else(|| ProvisionError::Usage(format!("no local user {user:?}")))?;
    let base =
        if cfg!(target_os = "macos") { home.join("Library/Application Support") } else { home.join(".local/share") };
    Ok(base.join(crate::dirs::APP_FOLDER))
}

#[cfg(windows)]
fn user_data_dir(user: &str) -> Result<PathBuf, ProvisionError> {
    // An installer running as SYSTEM writes into the interactive user's roaming profile.
    let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
    Ok(PathBuf::from(format!("{drive}\\Users\\{user}\\AppData\\Roaming")).join(crate::dirs::APP_FOLDER))
}

#[cfg(unix)]
fn passwd(user: &str) -> Option<(PathBuf, u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy out at once.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return None;
        }
        let home = std::ffi::CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned();
        Some((PathBuf::from(home), (*pw).pw_uid, (*pw).pw_gid))
    }
}

#[cfg(unix)]
fn user_home(user: &str) -> Option<PathBuf> {
    passwd(user).map(|p| p.0)
}

/// Writes the file atomically, without BOM, 0600 (owned by `user` when given and we are
/// root), never replacing an existing file unless `force`.
pub fn write(path: &Path, file: &ProvisioningFile, force: bool, user: Option<&str>) -> Result<(), ProvisionError> {
    let not_writable =
        |e: std::io::Error| ProvisionError::NotWritable { path: path.display().to_string(), message: e.to_string() };
    if path.exists() && !force {
        return Err(ProvisionError::Exists(path.display().to_string()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::dirs::ensure_private_dir(dir).map_err(not_writable)?;
    let json = serde_json::to_vec_pretty(file).map_err(|e| ProvisionError::Usage(e.to_string()))?;
    crate::dirs::write_private(path, &json).map_err(not_writable)?;
    #[cfg(unix)]
    if let Some((_, uid, gid)) = user.and_then(passwd) {
        // Hand the folder and file to the user who runs the client.
        for p in [dir, path] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(not_writable)?;
        }
    }
    #[cfg(not(unix))]
    let _ = user;
    Ok(())
}
