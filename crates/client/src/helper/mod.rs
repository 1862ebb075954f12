//! The provisioning helper (`onramp-client provision`): turns a directory attribute (LDAP /
//! Active Directory) or a prepared file into `provisioning.json` for the user who will run
//! the client. Called by installers, so every outcome has its own exit code.

mod os_user;
mod request;
mod write;

pub use os_user::current_user;
pub use request::{run, EntraOptions, LdapOptions, Outcome, Request, Source};
pub use write::{default_output, write};

use crate::exit::Exit;
use onramp_directory::{Directory, DirectoryError, LdapConfig};
use onramp_domain::provisioning::{parse_directory_attribute, parse_provisioning, ProvisioningFile};
use std::path::Path;

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
    pub fn exit(&self) -> Exit {
        match self {
            ProvisionError::NotJoined => Exit::Success,
            ProvisionError::Usage(_) => Exit::Usage,
            ProvisionError::Unreachable(_) => Exit::DirectoryUnreachable,
            ProvisionError::Missing(_) => Exit::AttributeMissing,
            ProvisionError::Malformed(_) => Exit::AttributeMalformed,
            ProvisionError::NotWritable { .. } => Exit::NotWritable,
            ProvisionError::Exists(_) => Exit::TargetExists,
            ProvisionError::Credentials(_) => Exit::CredentialsRefused,
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
