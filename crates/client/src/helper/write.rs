//! Where provisioning.json goes and how it is written.

use super::ProvisionError;
use onramp_domain::provisioning::ProvisioningFile;
use std::path::{Path, PathBuf};

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
    let home =
        super::os_user::user_home(user).ok_or_else(|| ProvisionError::Usage(format!("no local user {user:?}")))?;
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
    if let Some((_, uid, gid)) = user.and_then(super::os_user::passwd) {
        // Hand the folder and file to the user who runs the client.
        for p in [dir, path] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(not_writable)?;
        }
    }
    #[cfg(not(unix))]
    let _ = user;
    Ok(())
}
