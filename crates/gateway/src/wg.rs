//! The WireGuard interface the gateway serves, through `defguard_wireguard_rs`: kernel
//! WireGuard over netlink where the module exists, otherwise an in-process userspace device
//! (boringtun over /dev/net/tun, configured on /var/run/wireguard/IFACE.sock).
//!
//! Every call here blocks (netlink, a Unix socket); the agent runs them off the async
//! threads.

use crate::keys::PrivateKey;
use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{InterfaceConfiguration, Kernel, Userspace, WGApi, WireguardInterfaceApi};
use onramp_proto::gateway::{InterfaceSpec, PeerSpec, PeerStats};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where userspace WireGuard devices listen for configuration.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kernel WireGuard if the module is loaded, else userspace.
    Auto,
    Userspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Kernel,
    Userspace,
}

/// A validated peer: its key and its allowed IPs, normalised and sorted so two
/// descriptions of the same peer compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPeer {
    pub key: Key,
    pub allowed_ips: Vec<IpAddrMask>,
}

fn sorted_ips(ips: impl IntoIterator<Item = IpAddrMask>) -> Vec<IpAddrMask> {
    let set: BTreeSet<(std::net::IpAddr, u8)> = ips.into_iter().map(|m| (m.normalized().address, m.cidr)).collect();
    set.into_iter().map(|(a, c)| IpAddrMask::new(a, c)).collect()
}

/// Checks every field of a peer from core. A WireGuard key is 32 bytes of base64.
pub fn validate_peer(p: &PeerSpec) -> Result<ValidPeer, String> {
    let key =
        Key::try_from(p.pubkey.as_str()).map_err(|_| format!("public key {:?} is not a WireGuard key", p.pubkey))?;
    if p.allowed_ips.is_empty() {
        return Err("no allowed IPs".into());
    }
    let ips = p
        .allowed_ips
        .iter()
        .map(|s| {
            let s = s.trim();
            // Insist on the prefix: a bare address is ambiguous.
            if !s.contains('/') {
                return Err(format!("allowed IP {s:?} has no /prefix"));
            }
            s.parse::<IpAddrMask>().map_err(|_| format!("allowed IP {s:?} is not an address/prefix"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ValidPeer { key, allowed_ips: sorted_ips(ips) })
}

/// The interface's own settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidInterface {
    pub addresses: Vec<IpAddrMask>,
    pub listen_port: u16,
}

pub fn validate_interface(spec: &InterfaceSpec) -> Result<ValidInterface, String> {
    let addresses = spec
        .addresses
        .iter()
        .map(|a| {
            a.trim().parse::<IpAddrMask>().map_err(|_| format!("interface address {a:?} is not an address/prefix"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addresses.is_empty() {
        return Err("the location has no gateway address".into());
    }
    if spec.listen_port == 0 {
        return Err("listen port 0".into());
    }
    Ok(ValidInterface { addresses, listen_port: spec.listen_port })
}

/// One change to bring the interface's peers to the wanted set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add the peer, or set its allowed IPs (the peer, its session and endpoint stay).
    Set(ValidPeer),
    Remove(Key),
}

/// The changes that turn `current` into `wanted`: only peers that are new, gone, or whose
/// allowed IPs differ. Ordered by key, removals first (so an address moving from one peer
/// to another is free before it is given).
pub fn diff(current: &HashMap<Key, Vec<IpAddrMask>>, wanted: &[ValidPeer]) -> Vec<Change> {
    let wanted_map: HashMap<&Key, &ValidPeer> = wanted.iter().map(|p| (&p.key, p)).collect();
    let mut removes: Vec<Key> = current.keys().filter(|k| !wanted_map.contains_key(k)).cloned().collect();
    removes.sort_by_key(|k| k.to_string());
    let mut sets: Vec<ValidPeer> = wanted
        .iter()
        .filter(|p| current.get(&p.key).map(|ips| sorted_ips(ips.iter().cloned())) != Some(p.allowed_ips.clone()))
        .cloned()
        .collect();
    sets.sort_by_key(|p| p.key.to_string());
    removes.into_iter().map(Change::Remove).chain(sets.into_iter().map(Change::Set)).collect()
}

/// Validates a whole peer set: malformed peers are logged and skipped, a key given twice
/// keeps its last entry.
pub fn validate_peers(peers: &[PeerSpec]) -> Vec<ValidPeer> {
    let mut out: Vec<ValidPeer> = Vec::with_capacity(peers.len());
    // Where each key is in `out`: a linear search made a 10,000-peer sync quadratic.
    let mut at: HashMap<Key, usize> = HashMap::with_capacity(peers.len());
    for p in peers {
        match validate_peer(p) {
            Ok(v) => match at.get(&v.key) {
                Some(&i) => {
                    tracing::warn!(pubkey = %p.pubkey, "peer listed twice; the last entry wins");
                    out[i] = v;
                }
                None => {
                    at.insert(v.key.clone(), out.len());
                    out.push(v);
                }
            },
            Err(why) => tracing::warn!(pubkey = %p.pubkey, %why, "skipped a malformed peer from core"),
        }
    }
    out
}

enum Api {
    Kernel(WGApi<Kernel>),
    Userspace(WGApi<Userspace>, UserspaceDevice),
}

impl Api {
    fn get(&self) -> &dyn WireguardInterfaceApi {
        match self {
            Api::Kernel(a) => a,
            Api::Userspace(a, _) => a,
        }
    }
}

/// The in-process userspace device ([`crate::device`]), and what it says when it fails on
/// its own: then the gateway must notice and shut down.
struct UserspaceDevice {
    device: Option<crate::device::Device>,
}

impl UserspaceDevice {
    fn start(name: &str, on_exit: Option<tokio::sync::mpsc::UnboundedSender<()>>) -> Result<Self, String> {
        let on_failure: Option<Box<dyn FnOnce(String) + Send>> = on_exit.map(|tx| {
            Box::new(move |_why: String| {
                let _ = tx.send(());
            }) as Box<dyn FnOnce(String) + Send>
        });
        // The configuration socket answers `get=1` with the private key and takes `set=1`
        // from whoever can connect: owner-only, whatever umask the gateway was started with.
        let device = with_umask(0o077, || crate::device::Device::start(name, on_failure))?;
        let socket = socket_path(name);
        if let Err(e) = restrict_to_owner(&socket) {
            device.stop();
            return Err(format!("cannot restrict {} to root: {e}", socket.display()));
        }
        Ok(UserspaceDevice { device: Some(device) })
    }

    /// Ends the device's threads; its interface goes with its last file descriptor.
    fn finish(&mut self) {
        if let Some(d) = self.device.take() {
            d.stop();
        }
    }
}

/// Runs `f` with the process file creation mask set to `mask`, then restores the old one.
/// The mask is process-wide: anything another thread creates meanwhile gets `mask` too,
/// which can only make it stricter here.
fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(mask) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    out
}

/// chmod 0600, and a check that it took (the socket must exist).
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        return Err(std::io::Error::other(format!("mode is {mode:o} after chmod 600")));
    }
    Ok(())
}

fn set_link_up(name: &str) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(["link", "set", "dev", name, "up"])
        .output()
        .map_err(|e| format!("cannot run ip (apt-get install -y iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!("ip link set dev {name} up: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

fn wg_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The interface and what the gateway last configured on it.
pub struct Interface {
    name: String,
    mode: Mode,
    key: PrivateKey,
    api: Option<Api>,
    spec: Option<ValidInterface>,
    /// Told when a userspace device stops on its own.
    on_exit: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    masquerade: bool,
    nat: Option<crate::masq::Masquerade>,
    /// The peers as the gateway last set them (it is the interface's only writer), so a
    /// single change needs no read of the whole device: with thousands of peers that read
    /// cost more than the change. Re-read from the device on every `Full`.
    known: std::sync::Mutex<HashMap<Key, Vec<IpAddrMask>>>,
}

/// Peer changes sent to a userspace device per `set=1` request.
const UAPI_BATCH: usize = 1000;

/// What applying a message did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub created: bool,
    pub set: usize,
    pub removed: usize,
    pub skipped: usize,
}

impl Interface {
    /// `masquerade`: NAT traffic from the tunnel networks out of other interfaces.
    pub fn new(name: &str, mode: Mode, key: PrivateKey, masquerade: bool) -> Self {
        Self {
            name: name.to_owned(),
            mode,
            key,
            api: None,
            spec: None,
            on_exit: None,
            masquerade,
            nat: None,
            known: Default::default(),
        }
    }

    /// `tx` hears when a userspace device stops without being asked to.
    pub fn notify_device_exit(&mut self, tx: tokio::sync::mpsc::UnboundedSender<()>) {
        self.on_exit = Some(tx);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn backend(&self) -> Option<Backend> {
        self.api.as_ref().map(|a| match a {
            Api::Kernel(_) => Backend::Kernel,
            Api::Userspace(..) => Backend::Userspace,
        })
    }

    /// The interface settings in force, if the interface exists.
    pub fn spec(&self) -> Option<&ValidInterface> {
        self.spec.as_ref()
    }

    fn create(&mut self, spec: &ValidInterface) -> Result<(), String> {
        let api = match self.mode {
            Mode::Userspace => self.create_userspace()?,
            Mode::Auto if !kernel_module_loaded() => {
                tracing::info!(interface = %self.name, "no kernel WireGuard module; using the userspace implementation");
                self.create_userspace()?
            }
            Mode::Auto => match self.create_kernel() {
                Ok(api) => api,
                Err(why) => {
                    tracing::warn!(interface = %self.name, %why, "kernel WireGuard failed; using the userspace implementation");
                    self.create_userspace()?
                }
            },
        };
        let config = InterfaceConfiguration {
            name: self.name.clone(),
            prvkey: self.key.base64().to_owned(),
            addresses: spec.addresses.clone(),
            port: spec.listen_port,
            peers: vec![],
            // WireGuard's usual 1420: a full-size tunnel packet plus its 80 bytes of outer
            // headers still fits a 1500-byte link (a userspace device would start at 1500).
            mtu: Some(1420),
            fwmark: None,
        };
        if let Err(e) = api.get().configure_interface(&config) {
            self.api = Some(api);
            self.remove();
            return Err(format!("cannot configure interface {}: {e}", self.name));
        }
        self.api = Some(api);
        self.spec = Some(spec.clone());
        if self.masquerade {
            // The tunnel itself works without it; say so loudly and go on.
            match crate::masq::Masquerade::add(&self.name, &spec.addresses) {
                Ok(m) => self.nat = Some(m),
                Err(e) => tracing::error!(error = %e, "masquerading is NOT in place"),
            }
        }
        Ok(())
    }

    fn create_kernel(&self) -> Result<Api, String> {
        let mut api = WGApi::<Kernel>::new(self.name.clone()).map_err(wg_err)?;
        api.create_interface().map_err(wg_err)?;
        Ok(Api::Kernel(api))
    }

    fn create_userspace(&self) -> Result<Api, String> {
        clean_stale_socket(&self.name)?;
        let mut device = UserspaceDevice::start(&self.name, self.on_exit.clone())?;
        // `WGApi` only talks to the device, through its socket and netlink.
        let api = match WGApi::<Userspace>::new(self.name.clone())
            .map_err(wg_err)
            .and_then(|api| set_link_up(&self.name).map(|_| api))
        {
            Ok(api) => api,
            Err(e) => {
                let _ = std::fs::remove_file(socket_path(&self.name));
                device.finish();
                return Err(e);
            }
        };
        Ok(Api::Userspace(api, device))
    }

    /// Removes the interface (and so every peer). Nothing happens if there is none. A link
    /// that cannot be removed is logged as an error.
    pub fn remove(&mut self) {
        if let Err(e) = self.try_remove() {
            tracing::error!(interface = %self.name, error = %e, "the interface is still there");
        }
    }

    /// Removes the interface and checks that the link is gone.
    fn try_remove(&mut self) -> Result<(), String> {
        // Rules first: they name the interface's networks.
        self.nat.take();
        let Some(api) = self.api.take() else { return Ok(()) };
        self.spec = None;
        self.known.lock().unwrap().clear();
        // The library's removal clears DNS settings first (through systemd-resolved or
        // resolvconf) and gives up before deleting the link when that fails, which it does
        // on hosts without a resolver manager; the gateway never sets DNS, so that error
        // alone means nothing: whether the link is gone is checked below.
        if let Err(e) = api.get().remove_interface() {
            tracing::debug!(interface = %self.name, error = %e, "interface removal reported an error");
        }
        // Userspace: removing the socket and dropping the device handle stops the device.
        if let Api::Userspace(_, mut device) = api {
            let _ = std::fs::remove_file(socket_path(&self.name));
            device.finish();
        }
        delete_link(&self.name)
    }
    /// Makes the interface match `spec` and its peers equal to `peers`, changing only what
    /// differs. The interface is (re)made only when it does not exist or `spec` changed.
    pub fn apply_full(&mut self, spec: &InterfaceSpec, peers: &[PeerSpec]) -> Result<Applied, String> {
        let spec = validate_interface(spec)?;
        let mut applied = Applied::default();
        if self.spec.as_ref() != Some(&spec) {
            self.try_remove().map_err(|e| format!("cannot remake interface {}: {e}", self.name))?;
            self.create(&spec)?;
            applied.created = true;
        }
        let wanted = validate_peers(peers);
        applied.skipped = peers.len() - wanted.len();
        let current = self.current_peers()?;
        *self.known.lock().unwrap() = current.clone();
        let changes = diff(&current, &wanted);
        applied.set = changes.iter().filter(|c| matches!(c, Change::Set(_))).count();
        applied.removed = changes.len() - applied.set;
        if self.backend() == Some(Backend::Userspace) {
            // One request per batch instead of one per peer: a full sync of 10,000 peers
            // is 10 requests, not 10,000. Removals first, so that an address moving from
            // one peer to another is free before it is given.
            let mut removals = Vec::new();
            let mut sets = Vec::new();
            for change in &changes {
                match change {
                    Change::Set(p) => {
                        // Changed in place (`replace_allowed_ips`): the session stays.
                        let mut peer = Peer::new(p.key.clone());
                        peer.allowed_ips = p.allowed_ips.clone();
                        sets.push(peer.as_uapi_update());
                    }
                    Change::Remove(k) => removals.push(Peer::new(k.clone()).as_uapi_remove()),
                }
            }
            for batch in removals.chunks(UAPI_BATCH).chain(sets.chunks(UAPI_BATCH)) {
                uapi_set(&self.name, &batch.concat())
                    .map_err(|e| format!("cannot apply peers to {}: {e}", self.name))?;
            }
        } else {
            for change in &changes {
                match change {
                    Change::Set(p) => self.set_peer(p)?,
                    Change::Remove(k) => self.remove_peer(k)?,
                }
            }
        }
        *self.known.lock().unwrap() = wanted.into_iter().map(|p| (p.key, p.allowed_ips)).collect();
        Ok(applied)
    }

    fn api(&self) -> Result<&dyn WireguardInterfaceApi, String> {
        self.api.as_ref().map(Api::get).ok_or_else(|| "no interface yet (core has not sent the configuration)".into())
    }

    /// Adds the peer, or changes the allowed IPs of the one with its key in place.
    fn set_peer(&self, p: &ValidPeer) -> Result<(), String> {
        let api = self.api()?;
        let mut peer = Peer::new(p.key.clone());
        peer.allowed_ips = p.allowed_ips.clone();
        if self.backend() == Some(Backend::Userspace) {
            uapi_set(&self.name, &peer.as_uapi_update()).map_err(|e| format!("cannot set peer {}: {e}", p.key))?;
        } else {
            api.configure_peer(&peer).map_err(|e| format!("cannot set peer {}: {e}", p.key))?;
        }
        self.known.lock().unwrap().insert(p.key.clone(), p.allowed_ips.clone());
        Ok(())
    }

    /// The interface's peers and their allowed IPs, normalised like [`ValidPeer`]'s.
    fn current_peers(&self) -> Result<HashMap<Key, Vec<IpAddrMask>>, String> {
        Ok(self.read()?.peers.into_iter().map(|(k, p)| (k, sorted_ips(p.allowed_ips))).collect())
    }

    pub fn remove_peer(&self, key: &Key) -> Result<(), String> {
        let api = self.api()?;
        if self.backend() == Some(Backend::Userspace) {
            uapi_set(&self.name, &Peer::new(key.clone()).as_uapi_remove())
                .map_err(|e| format!("cannot remove peer {key}: {e}"))?;
        } else {
            api.remove_peer(key).map_err(|e| format!("cannot remove peer {key}: {e}"))?;
        }
        self.known.lock().unwrap().remove(key);
        Ok(())
    }

    /// Removes every peer and keeps the interface; returns how many there were.
    pub fn remove_all_peers(&self) -> Result<usize, String> {
        if self.api.is_none() {
            return Ok(0);
        }
        let keys: Vec<Key> = self.current_peers()?.into_keys().collect();
        for k in &keys {
            self.remove_peer(k)?;
        }
        Ok(keys.len())
    }

    /// Adds or replaces one peer; a malformed one is skipped with a warning.
    pub fn upsert(&self, p: &PeerSpec) -> Result<Applied, String> {
        match validate_peer(p) {
            Ok(v) => {
                // An unchanged peer is left alone.
                let known = self.known.lock().unwrap().get(&v.key).cloned();
                match known.as_ref() {
                    Some(ips) if *ips == v.allowed_ips => Ok(Applied::default()),
                    _ => self.set_peer(&v).map(|_| Applied { set: 1, ..Default::default() }),
                }
            }
            Err(why) => {
                tracing::warn!(pubkey = %p.pubkey, %why, "skipped a malformed peer from core");
                Ok(Applied { skipped: 1, ..Default::default() })
            }
        }
    }

    pub fn remove_by_key(&self, pubkey: &str) -> Result<Applied, String> {
        match Key::try_from(pubkey) {
            Ok(k) => self.remove_peer(&k).map(|_| Applied { removed: 1, ..Default::default() }),
            Err(_) => {
                tracing::warn!(%pubkey, "ignored a removal of a malformed key");
                Ok(Applied { skipped: 1, ..Default::default() })
            }
        }
    }

    pub fn read(&self) -> Result<Host, String> {
        let api = self.api()?;
        if self.backend() == Some(Backend::Userspace) {
            let text =
                uapi(&self.name, "get=1\n\n").map_err(|e| format!("cannot read interface {}: {e}", self.name))?;
            return Host::parse_uapi(std::io::Cursor::new(text))
                .map_err(|e| format!("cannot read interface {}: {e}", self.name));
        }
        api.read_interface_data().map_err(|e| format!("cannot read interface {}: {e}", self.name))
    }

    /// Every peer's counters, as core wants them.
    pub fn stats(&self) -> Result<Vec<PeerStats>, String> {
        let mut out: Vec<PeerStats> = self.read()?.peers.into_values().map(peer_stats).collect();
        out.sort_by(|a, b| a.pubkey.cmp(&b.pubkey));
        Ok(out)
    }
}

impl Drop for Interface {
    fn drop(&mut self) {
        self.remove();
    }
}

fn peer_stats(p: Peer) -> PeerStats {
    let latest_handshake = p
        .last_handshake
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        // The interface says 0 for "never".
        .filter(|s| *s > 0);
    PeerStats {
        pubkey: p.public_key.to_string(),
        endpoint: p.endpoint.map(|e| e.to_string()),
        latest_handshake,
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
    }
}

/// How long a userspace device may take to answer one configuration request.
const UAPI_TIMEOUT: Duration = Duration::from_secs(3);

/// One request on a userspace device's configuration socket, answered within
/// [`UAPI_TIMEOUT`] or failed. (The library's own socket calls retry a timed-out read for
/// ever, which would freeze the gateway behind a stuck device.)
fn uapi(interface: &str, request: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + UAPI_TIMEOUT;
    let mut s = std::os::unix::net::UnixStream::connect(socket_path(interface)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(UAPI_TIMEOUT))
        .and_then(|_| s.set_write_timeout(Some(UAPI_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    // The answer ends with "errno=N" and an empty line.
    while !(out.ends_with(b"\n\n") && out.windows(6).any(|w| w == b"errno=")) {
        if std::time::Instant::now() >= deadline {
            return Err(format!("the device did not answer within {UAPI_TIMEOUT:?}"));
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("the device did not answer within {UAPI_TIMEOUT:?}"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    String::from_utf8(out).map_err(|_| "the device answered with invalid UTF-8".into())
}

/// A `set=1` request; fails unless the device answers errno=0.
fn uapi_set(interface: &str, body: &str) -> Result<(), String> {
    let answer = uapi(interface, &format!("set=1\n{body}\n"))?;
    match answer.lines().find_map(|l| l.strip_prefix("errno=")) {
        Some("0") => Ok(()),
        Some(n) => Err(format!("the device refused the change (errno {n})")),
        None => Err("the device gave no status".into()),
    }
}

/// The configuration socket of a userspace interface.
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{interface}.sock"))
}

/// A socket left by a killed process is removed; one that answers belongs to a running
/// device (another gateway, or `wg-quick` with a userspace implementation), which this
/// process must not take over.
pub fn clean_stale_socket(interface: &str) -> Result<(), String> {
    let path = socket_path(interface);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(_) => Err(format!(
            "interface {interface} is already run by another process ({} answers); stop it or choose \
             another ONRAMP_GATEWAY_INTERFACE",
            path.display()
        )),
        Err(_) => {
            std::fs::remove_file(&path).map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
            tracing::info!(socket = %path.display(), "removed a stale WireGuard socket left by a stopped process");
            Ok(())
        }
    }
}

/// Makes sure no link named `name` is left: waits for one that is going away (the kernel
/// frees a userspace device's name once its threads let go of the tun file), then deletes
/// what is still there with `ip link del` and checks it is gone. `name` is the validated
/// interface name from the configuration, passed as one argument.
pub fn delete_link(name: &str) -> Result<(), String> {
    let gone_within = |tries: usize| {
        for _ in 0..tries {
            if !link_exists(name) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        !link_exists(name)
    };
    if gone_within(50) {
        return Ok(());
    }
    tracing::info!(interface = %name, "the link is still there; deleting it with ip link del");
    let out = std::process::Command::new("ip")
        .args(["link", "del", "dev", name])
        .output()
        .map_err(|e| format!("cannot run ip (apt-get install -y iproute2): {e}"))?;
    if gone_within(20) {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(format!("link {name} remains after ip link del dev {name} ({}: {why})", out.status))
}

/// Whether a network interface of this name exists in this thread's network namespace
/// (sysfs would show the namespace it was mounted in instead).
pub fn link_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else { return false };
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Whether the kernel has WireGuard loaded.
pub fn kernel_module_loaded() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key::new([n; 32])
    }

    fn spec(k: &Key, ips: &[&str]) -> PeerSpec {
        PeerSpec { pubkey: k.to_string(), allowed_ips: ips.iter().map(|s| s.to_string()).collect() }
    }

    fn valid(k: &Key, ips: &[&str]) -> ValidPeer {
        validate_peer(&spec(k, ips)).unwrap()
    }

    #[test]
    fn validation_names_the_bad_field() {
        let ok = validate_peer(&spec(&key(1), &["10.0.0.3/32", "10.0.0.2/32"])).unwrap();
        assert_eq!(
            ok.allowed_ips,
            valid(&key(1), &["10.0.0.2/32", "10.0.0.3/32"]).allowed_ips,
            "order does not matter"
        );
        let bad = |p: PeerSpec, needle: &str| {
            let e = validate_peer(&p).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        bad(PeerSpec { pubkey: "nope".into(), allowed_ips: vec!["10.0.0.2/32".into()] }, "not a WireGuard key");
        bad(PeerSpec { pubkey: "AAAA".into(), allowed_ips: vec!["10.0.0.2/32".into()] }, "not a WireGuard key");
        bad(spec(&key(1), &["10.0.0.300/32"]), "10.0.0.300/32");
        bad(spec(&key(1), &["10.0.0.2/33"]), "10.0.0.2/33");
        bad(spec(&key(1), &["10.0.0.2"]), "no /prefix");
        bad(spec(&key(1), &[]), "no allowed IPs");
        let peers = validate_peers(&[
            spec(&key(1), &["10.0.0.2/32"]),
            spec(&key(2), &["bogus"]),
            spec(&key(1), &["10.0.0.9/32"]),
        ]);
        assert_eq!(peers, vec![valid(&key(1), &["10.0.0.9/32"])], "malformed skipped, last duplicate wins");
        assert!(validate_interface(&InterfaceSpec { location: "x".into(), addresses: vec![], listen_port: 1 }).is_err());
        let e = validate_interface(&InterfaceSpec {
            location: "x".into(),
            addresses: vec!["10.0.0.1/40".into()],
            listen_port: 1,
        })
        .unwrap_err();
        assert!(e.contains("10.0.0.1/40"), "{e}");
    }

    #[test]
    fn diff_touches_only_what_differs() {
        let current: HashMap<Key, Vec<IpAddrMask>> = [
            (key(1), vec!["10.0.0.2/32".parse().unwrap()]),
            (key(2), vec!["10.0.0.3/32".parse().unwrap()]),
            (key(3), vec!["10.0.0.5/32".parse().unwrap(), "10.0.0.4/32".parse().unwrap()]),
        ]
        .into();
        let wanted = vec![
            valid(&key(1), &["10.0.0.2/32"]),
            valid(&key(3), &["10.0.0.4/32", "10.0.0.5/32"]),
            valid(&key(2), &["10.0.0.30/32"]),
            valid(&key(4), &["10.0.0.6/32"]),
        ];
        assert_eq!(
            diff(&current, &wanted),
            vec![Change::Set(valid(&key(2), &["10.0.0.30/32"])), Change::Set(valid(&key(4), &["10.0.0.6/32"]))]
        );
        assert_eq!(diff(&current, &wanted[..2]), vec![Change::Remove(key(2))]);
        let removes_first = diff(&current, &[valid(&key(4), &["10.0.0.2/32"])]);
        assert!(matches!(removes_first.last(), Some(Change::Set(_))));
        assert_eq!(removes_first.len(), 4);
        assert!(diff(&HashMap::new(), &[]).is_empty());
    }

    /// Root and /dev/net/tun, or a clear failure (never a silent skip).
    fn require_root_and_tun() {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "this test makes a real WireGuard interface: run it as root (it uses its own network namespace)"
        );
        assert!(Path::new("/dev/net/tun").exists(), "/dev/net/tun is missing: modprobe tun");
    }

    /// Moves this test's thread (and the device threads it starts) into a fresh network
    /// namespace, which disappears with them.
    fn own_netns() {
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }

    fn iface_spec(port: u16) -> InterfaceSpec {
        InterfaceSpec { location: "t".into(), addresses: vec!["10.77.0.1/24".into()], listen_port: port }
    }

    fn peers_on(i: &Interface) -> HashMap<Key, Vec<IpAddrMask>> {
        i.read().unwrap().peers.into_iter().map(|(k, p)| (k, sorted_ips(p.allowed_ips))).collect()
    }

    #[test]
    fn a_real_interface_gets_only_the_difference() {
        require_root_and_tun();
        own_netns();
        let name = format!("ogu{}", std::process::id() % 1_000_000);
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let key_b64 = Key::new(secret.to_bytes()).to_string();
        let pk = crate::keys::tests_support::private_key(&key_b64);
        let mut i = Interface::new(&name, Mode::Userspace, pk, false);

        let a = i
            .apply_full(
                &iface_spec(51001),
                &[spec(&key(1), &["10.77.0.2/32"]), spec(&key(2), &["10.77.0.3/32"]), spec(&key(3), &["10.77.0.4/32"])],
            )
            .unwrap();
        assert_eq!(a, Applied { created: true, set: 3, removed: 0, skipped: 0 });
        assert_eq!(i.backend(), Some(Backend::Userspace));
        assert!(link_exists(&name));
        let host = i.read().unwrap();
        assert_eq!(host.listen_port, 51001);
        assert_eq!(host.private_key.map(|k| k.to_string()), Some(key_b64.clone()));

        // Mark peer 1 the way a live session would: an endpoint core never sets. If the
        // next full configuration re-added it, the mark would be gone.
        let mut marked = Peer::new(key(1));
        marked.endpoint = Some("192.0.2.7:4444".parse().unwrap());
        marked.allowed_ips = vec!["10.77.0.2/32".parse().unwrap()];
        i.remove_peer(&key(1)).unwrap();
        i.api().unwrap().configure_peer(&marked).unwrap();

        let a = i
            .apply_full(
                &iface_spec(51001),
                &[
                    spec(&key(1), &["10.77.0.2/32"]),
                    spec(&key(2), &["10.77.0.30/32"]),
                    spec(&key(4), &["10.77.0.5/32"]),
                    PeerSpec { pubkey: "garbage".into(), allowed_ips: vec!["10.77.0.9/32".into()] },
                    spec(&key(5), &["not-an-ip/32"]),
                ],
            )
            .unwrap();
        assert_eq!(a, Applied { created: false, set: 2, removed: 1, skipped: 2 });
        let want: HashMap<Key, Vec<IpAddrMask>> = [
            (key(1), vec!["10.77.0.2/32".parse().unwrap()]),
            (key(2), vec!["10.77.0.30/32".parse().unwrap()]),
            (key(4), vec!["10.77.0.5/32".parse().unwrap()]),
        ]
        .into();
        assert_eq!(peers_on(&i), want);
        let host = i.read().unwrap();
        assert_eq!(host.peers[&key(1)].endpoint, Some("192.0.2.7:4444".parse().unwrap()), "peer 1 was left alone");

        // Single changes.
        assert_eq!(i.upsert(&spec(&key(6), &["10.77.0.6/32"])).unwrap().set, 1);
        assert_eq!(i.upsert(&spec(&key(6), &["10.77.0.6/32"])).unwrap(), Applied::default(), "unchanged: untouched");
        assert_eq!(i.upsert(&spec(&key(6), &["10.77.0.16/32"])).unwrap().set, 1, "changed in place");
        assert_eq!(peers_on(&i)[&key(6)], vec!["10.77.0.16/32".parse::<IpAddrMask>().unwrap()]);
        assert_eq!(i.upsert(&spec(&key(7), &["10.77.0.7"])).unwrap().skipped, 1);
        assert_eq!(i.remove_by_key(&key(2).to_string()).unwrap().removed, 1);
        assert_eq!(i.remove_by_key("garbage").unwrap().skipped, 1);
        let keys: BTreeSet<String> = peers_on(&i).keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, [key(1), key(4), key(6)].iter().map(|k| k.to_string()).collect());
        let stats = i.stats().unwrap();
        assert_eq!(stats.len(), 3);
        assert!(stats.iter().all(|s| s.latest_handshake.is_none() && s.rx_bytes == 0));
        assert_eq!(i.remove_all_peers().unwrap(), 3);
        assert!(peers_on(&i).is_empty(), "no peer left");
        assert_eq!(i.read().unwrap().listen_port, 51001, "the interface stays");
        assert_eq!(i.remove_all_peers().unwrap(), 0);

        // A changed interface spec remakes the interface with the wanted peers.
        let a = i.apply_full(&iface_spec(51002), &[spec(&key(1), &["10.77.0.2/32"])]).unwrap();
        assert_eq!(a, Applied { created: true, set: 1, removed: 0, skipped: 0 });
        assert_eq!(i.read().unwrap().listen_port, 51002);
        assert_eq!(peers_on(&i).len(), 1);

        i.remove();
        assert!(!link_exists(&name), "interface gone");
        assert!(!socket_path(&name).exists(), "socket gone");
        assert!(i.read().is_err());
    }

    fn test_key() -> PrivateKey {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        crate::keys::tests_support::private_key(&Key::new(secret.to_bytes()).to_string())
    }

    #[test]
    fn the_config_socket_is_owner_only_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        require_root_and_tun();
        own_netns();
        // Each test runs in a process of its own (nextest), so this umask stays here.
        unsafe { libc::umask(0) };
        let name = format!("ogm{}", std::process::id() % 1_000_000);
        let mut i = Interface::new(&name, Mode::Userspace, test_key(), false);
        i.apply_full(&iface_spec(51004), &[]).unwrap();
        let mode = std::fs::metadata(socket_path(&name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the socket that hands out the private key is owner-only");
        let now = unsafe { libc::umask(0) };
        assert_eq!(now, 0, "the process umask is restored");
        // A remade interface (spec change) gets an owner-only socket as well.
        i.apply_full(&iface_spec(51005), &[]).unwrap();
        let mode = std::fs::metadata(socket_path(&name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        i.remove();
        assert!(!link_exists(&name));
    }

    #[test]
    fn a_link_left_behind_is_deleted() {
        require_root_and_tun();
        own_netns();
        let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status().unwrap().success();
        // A link nothing is tearing down, as kernel WireGuard leaves one when the library's
        // removal stops at its DNS step (no kernel module here, so a veth pair stands in).
        let (a, b) = ("ogd0", "ogd1");
        assert!(ip(&["link", "add", a, "type", "veth", "peer", "name", b]));
        assert!(link_exists(a) && link_exists(b));
        delete_link(a).unwrap();
        assert!(!link_exists(a) && !link_exists(b), "deleted (with its veth peer)");
        delete_link(a).unwrap();
        // One that cannot be deleted is an error naming it, not a silent success.
        let e = delete_link("lo").unwrap_err();
        assert!(e.contains("link lo remains"), "{e}");
    }

    #[test]
    fn stale_sockets_are_removed_live_ones_refuse() {
        require_root_and_tun();
        let name = format!("ogs{}", std::process::id() % 1_000_000);
        std::fs::create_dir_all(SOCKET_DIR).unwrap();
        let path = socket_path(&name);
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = clean_stale_socket(&name).unwrap_err();
        assert!(e.contains("already run by another process") && e.contains("ONRAMP_GATEWAY_INTERFACE"), "{e}");
        assert!(path.exists());
        drop(live); // the file stays, nobody answers: what a killed process leaves
        assert!(path.exists());
        clean_stale_socket(&name).unwrap();
        assert!(!path.exists());
        clean_stale_socket(&name).unwrap();
    }
}
