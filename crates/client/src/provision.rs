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

/// After a successful enrollment the token is spent: the file is deleted so it does not
/// stay on disk in clear.
pub fn consume(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not delete the used provisioning file; delete it by hand");
    }
}
