//! The first start (PROTOCOL.md 1.1): a client whose store holds no instance looks for a
//! provisioning, enrolls with its token and deletes the spent file. The command line and
//! the fleet simulation (`scripts/fleet`) both run exactly this.

use crate::enroll::{self, DeviceName, EnrollError, Enrolled, Interaction};
use crate::provision::{self, FileError, Found};
use crate::{Settings, Store};
use std::path::Path;

/// What a first start found and did.
#[derive(Debug)]
pub enum FirstStart {
    /// The store already has an instance: provisioning is not read.
    Initialized,
    /// Not initialized, and no provisioning anywhere.
    NotProvisioned,
    /// Enrolled from `found`, which was deleted when it was the user's own file (boxed:
    /// the other cases carry nothing).
    Enrolled { found: Found, enrolled: Box<Enrolled> },
}

#[derive(Debug, thiserror::Error)]
pub enum FirstStartError {
    /// The provisioning cannot be used (unreadable, malformed, a refused URL); it is left as it was.
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Enroll(#[from] EnrollError),
}

/// Runs the first start with the data directory `dir` (its store already open as `store`):
/// `explicit` is a `--provisioning-file`, else the usual places are searched.
pub async fn first_start(
    store: &Store,
    dir: &Path,
    explicit: Option<&Path>,
    settings: &Settings,
    device: &DeviceName,
    ui: &mut dyn Interaction,
) -> Result<FirstStart, FirstStartError> {
    if store.is_initialized().await.map_err(EnrollError::from)? {
        return Ok(FirstStart::Initialized);
    }
    let Some((found, prov)) = provision::find(dir, explicit, settings.allow_http)? else {
        return Ok(FirstStart::NotProvisioned);
    };
    let url = onramp_domain::provisioning::check_url(&prov.enrollment_url, settings.allow_http)
        .map_err(|e| FileError { path: found.to_string(), problem: e.to_string() })?;
    ui.found(&found, &url);
    let enrolled = enroll::enroll(store, &url, &prov.enrollment_token, device, ui).await?;
    provision::consume(&found);
    Ok(FirstStart::Enrolled { found, enrolled: Box::new(enrolled) })
}
