//! The tunnels of the service on Windows: WireGuard-NT adapters through
//! `defguard_wireguard_rs`, which on Windows sets the key, the peer, the addresses, a route per
//! allowed network (and metric 0 on the adapter for a default route), and DNS (the adapter's
//! servers, and NRPT rules for search domains). Blocking code, one operation at a time.
//!
//! An adapter lives as long as this process holds its handle: a killed service leaves no
//! adapter behind (and the library sweeps the DNS rules of adapters that are gone when it
//! creates the next one), so there is nothing of ours to clean up at start.

use super::TunnelKey;
use super::{Applied, Failure, Owner, Who};
use crate::ipc::{Change, ErrorCode, TunnelConfig, TunnelStatus};
use defguard_wireguard_rs::{Kernel, WGApi, WireguardInterfaceApi};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where `defguard_wireguard_rs` loads WireGuard-NT's wireguard.dll from: relative to the
/// current directory, which the service sets to its own folder.
pub const WIREGUARD_DLL: &str = r"resources-windows\binaries\wireguard-amd64.dll";
const MAX_TUNNELS_PER_USER: usize = 16;

struct Tunnel {
    name: String,
    endpoint: String,
    iface: String,
    suffix: u32,
    api: WGApi<Kernel>,
    applied: Applied,
}

pub struct Manager {
    prefix: String,
    tunnels: BTreeMap<TunnelKey, Tunnel>,
    dll_loaded: bool,
}

/// FNV-1a: a stable adapter name suffix for the same user, instance and location.
fn suffix_for(key: &TunnelKey) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{}/{}/{}", key.0, key.1, key.2).bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & 0x00ff_ffff
}

/// What to say when wireguard.dll is missing or does not load.
pub fn missing_dll(path: &Path, error: Option<&str>) -> String {
    let why = match error {
        None => "is missing".to_owned(),
        Some(e) => format!("cannot be loaded ({e})"),
    };
    format!(
        "WireGuard-NT's wireguard.dll {why}: {}. Install it: download WireGuard-NT \
         (https://download.wireguard.com/wireguard-nt/), copy bin\\amd64\\wireguard.dll from the archive to that \
         path, and connect again",
        path.display()
    )
}

impl Manager {
    pub fn new(prefix: String) -> Manager {
        Manager { prefix, tunnels: BTreeMap::new(), dll_loaded: false }
    }

    /// Nothing to remove on Windows (see the module's note); kept for the shared start.
    pub fn cleanup_leftovers(&self) -> Vec<String> {
        vec![]
    }

    /// The library loads wireguard.dll on first use and panics when it cannot, so the
    /// service loads it first, to answer with what to install instead.
    fn check_dll(&mut self) -> Result<(), String> {
        if self.dll_loaded {
            return Ok(());
        }
        let dir = std::env::current_dir().unwrap_or_default();
        let path: PathBuf = dir.join(WIREGUARD_DLL);
        if !path.is_file() {
            return Err(missing_dll(&path, None));
        }
        // SAFETY: the DLL in the program's own folder (Program Files: administrators only),
        // the same file the library loads next.
        match unsafe { wireguard_nt::load_from_path(&path) } {
            Ok(_) => {
                self.dll_loaded = true;
                Ok(())
            }
            Err(e) => Err(missing_dll(&path, Some(&e.to_string()))),
        }
    }

    pub fn connect(
        &mut self,
        owner: &Owner,
        cfg: &TunnelConfig,
        want: Applied,
    ) -> Result<(String, Change, Vec<String>), Failure> {
        let key: TunnelKey = (owner.clone(), cfg.instance_id.clone(), cfg.network_id);
        if let Some(t) = self.tunnels.get_mut(&key) {
            t.name = cfg.name.clone();
            t.endpoint = cfg.endpoint.clone();
            if t.applied == want {
                return Ok((t.iface.clone(), Change::Unchanged, vec![]));
            }
        }
        if let Some(old) = self.tunnels.remove(&key) {
            // The library adds addresses and routes but has no call to remove one: the
            // adapter is made again with the new fields, on the UDP port the gateway knows.
            let port = old.api.read_interface_data().map(|h| h.listen_port).unwrap_or(0);
            let (iface, suffix) = (old.iface.clone(), old.suffix);
            teardown(old);
            return match create(&iface, &want, port) {
                Ok((api, warnings)) => {
                    tracing::info!(%owner, iface, location = %cfg.name, "tunnel reconfigured");
                    let t = Tunnel {
                        name: cfg.name.clone(),
                        endpoint: cfg.endpoint.clone(),
                        iface,
                        suffix,
                        api,
                        applied: want,
                    };
                    let iface = t.iface.clone();
                    self.tunnels.insert(key, t);
                    Ok((iface, Change::Reconfigured, warnings))
                }
                Err(e) => Err((ErrorCode::Failed, format!("reconfiguring {iface} failed, tunnel removed: {e}"))),
            };
        }
        if self.tunnels.keys().filter(|(o, _, _)| o == owner).count() >= MAX_TUNNELS_PER_USER {
            return Err((ErrorCode::Failed, format!("at most {MAX_TUNNELS_PER_USER} tunnels per user")));
        }
        self.check_dll().map_err(|e| (ErrorCode::Failed, e))?;
        let mut suffix = suffix_for(&key);
        while self.tunnels.values().any(|t| t.suffix == suffix) {
            suffix = (suffix + 1) & 0x00ff_ffff;
        }
        let iface = format!("{}{suffix:06x}", self.prefix);
        match create(&iface, &want, 0) {
            Ok((api, warnings)) => {
                tracing::info!(%owner, iface, location = %cfg.name, "tunnel up");
                let t = Tunnel {
                    name: cfg.name.clone(),
                    endpoint: cfg.endpoint.clone(),
                    iface: iface.clone(),
                    suffix,
                    api,
                    applied: want,
                };
                self.tunnels.insert(key, t);
                Ok((iface, Change::Created, warnings))
            }
            Err(e) => Err((ErrorCode::Failed, format!("setting up {iface} failed and was rolled back: {e}"))),
        }
    }

    /// Takes the caller's tunnels down (administrators: anyone's), all or the one location.
    pub fn disconnect(&mut self, who: Who, instance_id: Option<&str>, network_id: Option<i64>) -> Vec<String> {
        let keys = who.select(self.tunnels.keys(), instance_id, network_id);
        let mut gone = vec![];
        for k in keys {
            if let Some(t) = self.tunnels.remove(&k) {
                tracing::info!(owner = %k.0, iface = %t.iface, location = %t.name, "tunnel down");
                gone.push(t.iface.clone());
                teardown(t);
            }
        }
        gone
    }

    pub fn disconnect_all(&mut self) -> Vec<String> {
        self.disconnect(Who::Everyone, None, None)
    }

    /// The caller's tunnels (administrators: all) with handshake and traffic counters.
    pub fn status(&mut self, who: Who) -> Vec<TunnelStatus> {
        self.tunnels
            .iter()
            .filter(|((owner, _, _), _)| who.sees(owner))
            .map(|((_, instance_id, network_id), t)| {
                let status = super::TunnelStatusOf { name: &t.name, interface: &t.iface, endpoint: &t.endpoint };
                status.read_from(
                    instance_id,
                    *network_id,
                    t.api.read_interface_data().ok(),
                    t.applied.valid.gateway_key,
                )
            })
            .collect()
    }
}

/// A new adapter with `want` applied, or nothing (the adapter removed) and why.
fn create(iface: &str, want: &Applied, port: u16) -> Result<(WGApi<Kernel>, Vec<String>), String> {
    let mut api = WGApi::<Kernel>::new(iface).map_err(|e| e.to_string())?;
    api.create_interface().map_err(|e| format!("cannot create the adapter: {e}"))?;
    match apply(&api, iface, want, port) {
        Ok(warnings) => Ok((api, warnings)),
        Err(e) => {
            let _ = api.remove_interface();
            Err(e)
        }
    }
}

/// Key, peer, addresses and routes (one call of the library), then DNS; a DNS failure is a
/// warning, not a failed connect (as on Linux).
fn apply(api: &WGApi<Kernel>, iface: &str, want: &Applied, port: u16) -> Result<Vec<String>, String> {
    let v = &want.valid;
    let networks = want.networks();
    let config = want.interface(iface, &networks, port, None);
    api.configure_interface(&config).map_err(|e| format!("configuring the adapter: {e}"))?;
    let mut warnings = vec![];
    if !v.dns.is_empty() {
        let search: Vec<&str> = v.dns_search.iter().map(String::as_str).collect();
        if let Err(e) = api.configure_dns(&v.dns, &search) {
            let w = format!("DNS servers of this location not set: {e}");
            tracing::warn!(iface, "{w}");
            warnings.push(w);
        }
    }
    Ok(warnings)
}

/// Removes the adapter's DNS rules, then the adapter (closing its handle deletes it).
fn teardown(mut t: Tunnel) {
    if let Err(e) = t.api.remove_interface() {
        tracing::debug!(iface = %t.iface, "remove_interface: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_dll_says_what_to_install() {
        let m = missing_dll(Path::new(r"C:\Program Files\Onramp\resources-windows\binaries\wireguard-amd64.dll"), None);
        assert!(m.contains("wireguard.dll is missing"), "{m}");
        assert!(m.contains("WireGuard-NT"), "{m}");
    }
}
