//! The Onramp client library: where the client keeps its data, the local store, the edge
//! API client, first-start provisioning and enrollment, and config sync. The command line
//! (`onramp-client`) is a thin layer over it; a desktop GUI reuses the same calls.

pub mod api;
pub mod dirs;
pub mod enroll;
pub mod entra;
pub mod exit;
pub mod helper;
pub mod http;
pub mod ipc;
pub mod join;
pub mod keys;
pub mod provision;
#[cfg(any(target_os = "linux", windows))]
pub mod service;
pub mod start;
pub mod store;
pub mod sync;
pub mod text;
pub mod tunnel;
pub mod wgconf;

pub use api::{ApiError, EdgeClient};
pub use store::Store;

/// Client settings that do not live in the store.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Talk to `http://` edges (labs and tests only).
    pub allow_http: bool,
}

impl Settings {
    /// `ONRAMP_CLIENT_ALLOW_HTTP=1`, or `settings.json` in the data directory holding
    /// `{"allow_http": true}`.
    pub fn load(data_dir: &std::path::Path) -> Settings {
        let env = std::env::var("ONRAMP_CLIENT_ALLOW_HTTP").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let file = std::fs::read(data_dir.join("settings.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["allow_http"].as_bool())
            .unwrap_or(false);
        Settings { allow_http: env || file }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
