//! The app's own settings, in `desktop.json` beside the client store.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Prefs {
    /// Start in the tray, without a window (the window opens from the tray).
    #[serde(default)]
    pub start_minimised: bool,
    #[serde(skip)]
    path: PathBuf,
}

impl Prefs {
    pub fn load(data_dir: &std::path::Path) -> Prefs {
        let path = data_dir.join("desktop.json");
        let mut p: Prefs = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        p.path = path;
        p
    }

    pub fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        onramp_client::dirs::write_private(&self.path, &bytes)
    }
}
