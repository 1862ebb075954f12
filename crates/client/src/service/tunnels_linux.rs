//! The tunnels of the service: WireGuard interfaces through `defguard_wireguard_rs` (kernel
//! module when loaded, userspace boringtun over /dev/net/tun otherwise), routes and policy
//! rules through `ip`, DNS through systemd-resolved or resolvconf. Blocking code: the service
//! calls it from `spawn_blocking`, one operation at a time.
//!
//! Routing follows wg-quick: each allowed network gets a route on the interface (`ip route
//! add`, never `replace`: a network the machine already routes, such as its own LAN, keeps
//! its route, and the connect warns that the tunnel does not carry it); a default
//! route (0.0.0.0/0, ::/0) goes into the tunnel's own table, used by every packet that does
//! not carry the tunnel's fwmark, and the WireGuard socket itself marks its packets, so the
//! encrypted traffic to the endpoint still leaves through the main table. The library's
//! `configure_peer_routing` reads the fwmark over the kernel's WireGuard netlink family,
//! which a userspace device does not have, so the rules are made here (the same way for
//! both kinds of device, and identifiable for cleanup by their priorities).

use super::TunnelKey;
use super::{Applied, Failure, Owner, Who};
use crate::ipc::{Change, Cidr, ErrorCode, TunnelConfig, TunnelStatus};
use defguard_wireguard_rs::{dns::detect_dns_backend, Kernel, Userspace, WGApi, WireguardInterfaceApi};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

/// Priority of the "main table without its default route" rule (wg-quick's
/// `suppress_prefixlength 0`); the service owns every rule at these two priorities.
pub const PRIORITY_SUPPRESS: u32 = 30950;
/// Priority of the "not fwmark T lookup T" rules, one per full-tunnel interface.
pub const PRIORITY_MARK: u32 = 30951;
/// Tables and fwmarks of full tunnels: this base plus the interface's 24-bit suffix.
const TABLE_BASE: u32 = 0x4f00_0000;
const USERSPACE_SOCKET_DIR: &str = "/var/run/wireguard";
const MAX_TUNNELS_PER_USER: usize = 16;

enum Api {
    Kernel(WGApi<Kernel>),
    /// A userspace device runs in a child process (see [`run_device`]); the service talks
    /// to it through its UAPI socket like `wg` does.
    User(WGApi<Userspace>, std::process::Child),
}

impl Api {
    fn get(&self) -> &dyn WireguardInterfaceApi {
        match self {
            Api::Kernel(a) => a,
            Api::User(a, _) => a,
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Api::User(_, child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The hidden `onramp-client service-device IFACE`: one userspace WireGuard device, alive
/// until the service closes our standard input or dies. Why a process of its own: boringtun
/// takes SIGTERM and SIGINT for itself (a signalfd that stops the device), so in the
/// service's process a SIGTERM could stop a device instead of reaching the service, which
/// must then take every tunnel down in order.
pub fn run_device(iface: &str) -> Result<(), String> {
    // The UAPI socket answers `get=1` with the private key: owner-only, whatever umask the
    // service was started with (so is /var/run/wireguard when boringtun creates it).
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o077) };
    let mut api = WGApi::<Userspace>::new(iface).map_err(|e| e.to_string())?;
    api.create_interface().map_err(|e| e.to_string())?;
    println!("ready");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // Blocks until the service closes the pipe or dies (even by SIGKILL: the kernel closes
    // its end). Not PR_SET_PDEATHSIG: that fires when the spawning *thread* ends.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop(api);
    Ok(())
}

fn spawn_device(iface: &str) -> Result<std::process::Child, String> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut child = Command::new(exe)
        .args(["service-device", iface])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the userspace device: {e}"))?;
    let mut line = String::new();
    let out = child.stdout.take().ok_or("no pipe to the userspace device")?;
    let read = std::io::BufReader::new(out).read_line(&mut line);
    if read.is_err() || line.trim() != "ready" {
        let _ = child.kill();
        let status = child.wait().ok();
        return Err(format!("the userspace device did not start ({status:?})"));
    }
    Ok(child)
}

struct Tunnel {
    name: String,
    endpoint: String,
    iface: String,
    suffix: u32,
    api: Api,
    applied: Applied,
    /// The table / fwmark when a default route goes through this tunnel.
    table: Option<u32>,
    /// The routes this service added for the tunnel: the only ones it ever deletes.
    routes: Vec<Route>,
}

/// A route the service added: family, network, and its table when not main.
#[derive(Clone, Debug, PartialEq)]
struct Route {
    fam: &'static str,
    net: String,
    table: Option<String>,
}

impl Route {
    fn args<'a>(&'a self, verb: &'a str, iface: &'a str) -> Vec<&'a str> {
        let mut a = vec![self.fam, "route", verb, self.net.as_str(), "dev", iface];
        if let Some(t) = &self.table {
            a.extend(["table", t.as_str()]);
        }
        a
    }
}

impl Tunnel {
    /// Whether the tunnel's device still runs: a userspace device's process has not exited
    /// and the interface exists.
    fn alive(&mut self) -> bool {
        if let Api::User(_, child) = &mut self.api {
            if !matches!(child.try_wait(), Ok(None)) {
                return false;
            }
        }
        link_exists(&self.iface)
    }
}

pub struct Manager {
    prefix: String,
    userspace: bool,
    tunnels: BTreeMap<TunnelKey, Tunnel>,
}

/// FNV-1a: a stable interface suffix for the same user, instance and location.
fn suffix_for(key: &TunnelKey) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{}/{}/{}", key.0, key.1, key.2).bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & 0x00ff_ffff
}

/// Whether `name` is one of the interfaces a service with `prefix` makes.
pub fn is_ours(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|s| s.len() == 6 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Runs `ip` with arguments this module formats from validated values only.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn family(c: &Cidr) -> &'static str {
    if c.addr.is_ipv4() {
        "-4"
    } else {
        "-6"
    }
}

fn link_exists(iface: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", iface])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Deletes every rule matching `args` (they may have been added more than once).
fn delete_rules(fam: &str, args: &[&str]) {
    for _ in 0..64 {
        let mut all = vec![fam, "rule", "del"];
        all.extend_from_slice(args);
        if ip(&all).is_err() {
            break;
        }
    }
}

impl Manager {
    pub fn new(prefix: String, userspace: bool) -> Manager {
        Manager { prefix, userspace, tunnels: BTreeMap::new() }
    }

    /// Removes what a killed earlier service left: its interfaces (by prefix), stale
    /// userspace sockets, its policy rules and its resolvconf entries. Returns what was
    /// removed. systemd-resolved needs nothing: it forgets a link's DNS when the link goes.
    pub fn cleanup_leftovers(&self) -> Vec<String> {
        let mut removed = vec![];
        for entry in our_dns_entries(&self.prefix, &resolvconf_entries()) {
            let out = Command::new(RESOLVCONF).args(["-d", &entry, "-f"]).output();
            match out {
                Ok(o) if o.status.success() => removed.push(format!("resolvconf entry {entry}")),
                Ok(o) => tracing::warn!("resolvconf -d {entry}: {}", String::from_utf8_lossy(&o.stderr).trim()),
                Err(e) => tracing::warn!("resolvconf -d {entry}: {e}"),
            }
        }
        if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else { continue };
                if is_ours(&self.prefix, name) && ip(&["link", "del", "dev", name]).is_ok() {
                    removed.push(format!("interface {name}"));
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(USERSPACE_SOCKET_DIR) {
            for e in dir.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let Some(name) = file.strip_suffix(".sock") else { continue };
                // A socket nobody answers on is stale; a live one belongs to a running device.
                if is_ours(&self.prefix, name)
                    && std::os::unix::net::UnixStream::connect(e.path()).is_err()
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed.push(format!("socket {}", e.path().display()));
                }
            }
        }
        for fam in ["-4", "-6"] {
            for prio in [PRIORITY_MARK, PRIORITY_SUPPRESS] {
                let p = prio.to_string();
                let mut n = 0;
                while n < 256 && ip(&[fam, "rule", "del", "priority", &p]).is_ok() {
                    n += 1;
                }
                if n > 0 {
                    removed.push(format!("{n} {fam} rule(s) at priority {p}"));
                }
            }
        }
        removed
    }

    /// Brings a location's tunnel up, or brings a live one in line with `want`.
    pub fn connect(
        &mut self,
        owner: &Owner,
        cfg: &TunnelConfig,
        want: Applied,
    ) -> Result<(String, Change, Vec<String>), Failure> {
        let key: TunnelKey = (owner.clone(), cfg.instance_id.clone(), cfg.network_id);
        // A tunnel whose device died is removed here and made again below.
        self.reap();
        if let Some(t) = self.tunnels.get_mut(&key) {
            t.name = cfg.name.clone();
            t.endpoint = cfg.endpoint.clone();
            if t.applied == want {
                return Ok((t.iface.clone(), Change::Unchanged, vec![]));
            }
            let iface = t.iface.clone();
            return match apply(t, want, true) {
                Ok(warnings) => {
                    tracing::info!(%owner, iface, location = %cfg.name, "tunnel reconfigured");
                    Ok((iface, Change::Reconfigured, warnings))
                }
                Err(e) => {
                    // A half-changed tunnel is worse than none: take it down entirely.
                    if let Some(t) = self.tunnels.remove(&key) {
                        self.teardown(t);
                    }
                    Err((ErrorCode::Failed, format!("reconfiguring {iface} failed, tunnel removed: {e}")))
                }
            };
        }
        // Each tunnel is an interface (and a process in userspace mode): bounded per user.
        if self.tunnels.keys().filter(|(o, _, _)| o == owner).count() >= MAX_TUNNELS_PER_USER {
            return Err((ErrorCode::Failed, format!("at most {MAX_TUNNELS_PER_USER} tunnels per user")));
        }
        let mut suffix = suffix_for(&key);
        while self.tunnels.values().any(|t| t.suffix == suffix) {
            suffix = (suffix + 1) & 0x00ff_ffff;
        }
        let iface = format!("{}{suffix:06x}", self.prefix);
        if link_exists(&iface) {
            return Err((ErrorCode::Failed, format!("interface {iface} exists already and is not this service's")));
        }
        let api =
            self.create(&iface).map_err(|e| (ErrorCode::Failed, format!("cannot create interface {iface}: {e}")))?;
        let mut t = Tunnel {
            name: cfg.name.clone(),
            endpoint: cfg.endpoint.clone(),
            iface: iface.clone(),
            suffix,
            api,
            applied: want.clone(),
            table: None,
            routes: vec![],
        };
        match apply(&mut t, want, false) {
            Ok(warnings) => {
                tracing::info!(%owner, iface, location = %cfg.name, userspace = self.userspace, "tunnel up");
                self.tunnels.insert(key, t);
                Ok((iface, Change::Created, warnings))
            }
            Err(e) => {
                self.teardown(t);
                Err((ErrorCode::Failed, format!("setting up {iface} failed and was rolled back: {e}")))
            }
        }
    }

    fn create(&self, iface: &str) -> Result<Api, String> {
        if self.userspace {
            let child = spawn_device(iface)?;
            let api = WGApi::<Userspace>::new(iface).map_err(|e| e.to_string())?;
            Ok(Api::User(api, child))
        } else {
            let mut api = WGApi::<Kernel>::new(iface).map_err(|e| e.to_string())?;
            api.create_interface().map_err(|e| e.to_string())?;
            Ok(Api::Kernel(api))
        }
    }

    /// Removes the tunnels whose device is gone (a userspace device's process crashed or was
    /// killed, or the interface was deleted behind the service's back): their rules go too,
    /// so they no longer count as connected and the next connect makes them again.
    fn reap(&mut self) {
        let dead: Vec<TunnelKey> =
            self.tunnels.iter_mut().filter_map(|(k, t)| (!t.alive()).then(|| k.clone())).collect();
        for k in dead {
            if let Some(t) = self.tunnels.remove(&k) {
                tracing::warn!(owner = %k.0, iface = %t.iface, location = %t.name, "tunnel device gone; tunnel removed");
                self.teardown(t);
            }
        }
    }

    /// Takes the caller's tunnels down (root: anyone's), all or the one location.
    pub fn disconnect(&mut self, who: Who, instance_id: Option<&str>, network_id: Option<i64>) -> Vec<String> {
        self.reap();
        let keys = who.select(self.tunnels.keys(), instance_id, network_id);
        let mut gone = vec![];
        for k in keys {
            if let Some(t) = self.tunnels.remove(&k) {
                tracing::info!(owner = %k.0, iface = %t.iface, location = %t.name, "tunnel down");
                gone.push(t.iface.clone());
                self.teardown(t);
            }
        }
        gone
    }

    pub fn disconnect_all(&mut self) -> Vec<String> {
        self.disconnect(Who::Everyone, None, None)
    }

    /// The caller's tunnels (root: all) with handshake and traffic counters.
    pub fn status(&mut self, who: Who) -> Vec<TunnelStatus> {
        self.reap();
        self.tunnels
            .iter()
            .filter(|((owner, _, _), _)| who.sees(owner))
            .map(|((_, instance_id, network_id), t)| {
                let status = super::TunnelStatusOf { name: &t.name, interface: &t.iface, endpoint: &t.endpoint };
                status.read_from(
                    instance_id,
                    *network_id,
                    t.api.get().read_interface_data().ok(),
                    t.applied.valid.gateway_key,
                )
            })
            .collect()
    }

    /// Removes a tunnel's rules and interface; a suppress rule no other tunnel needs goes too.
    fn teardown(&self, t: Tunnel) {
        if let Some(table) = t.table {
            remove_mark_rules(table);
        }
        for fam in ["-4", "-6"] {
            let still_needed = self.tunnels.values().any(|o| {
                o.table.is_some() && o.applied.valid.allowed_ips.iter().any(|c| c.is_default() && family(c) == fam)
            });
            if !still_needed {
                delete_rules(fam, &["priority", &PRIORITY_SUPPRESS.to_string()]);
            }
        }
        // The library also clears DNS here and fails when no DNS backend exists; the
        // interface itself is then removed below in any case.
        if let Err(e) = t.api.get().remove_interface() {
            tracing::debug!(iface = %t.iface, "remove_interface: {e}");
        }
        let iface = t.iface.clone();
        drop(t); // a userspace device's process is ended here; its tun device goes with it
        for _ in 0..20 {
            if !link_exists(&iface) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if link_exists(&iface) {
            if let Err(e) = ip(&["link", "del", "dev", &iface]) {
                tracing::warn!("cannot remove interface {iface}: {e}");
            }
        }
        let _ = std::fs::remove_file(Path::new(USERSPACE_SOCKET_DIR).join(format!("{iface}.sock")));
    }
}

const RESOLVCONF: &str = "resolvconf";
/// Where Debian's resolvconf keeps one file per registered interface.
const RESOLVCONF_DIR: &str = "/run/resolvconf/interface";

/// Every interface name resolvconf holds DNS entries for: openresolv lists them with `-i`,
/// Debian's resolvconf as files. Nothing when neither is installed.
fn resolvconf_entries() -> Vec<String> {
    let mut names = vec![];
    if let Ok(out) = Command::new(RESOLVCONF).arg("-i").stderr(std::process::Stdio::null()).output() {
        if out.status.success() {
            names.extend(String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned));
        }
    }
    if let Ok(dir) = std::fs::read_dir(RESOLVCONF_DIR) {
        names.extend(dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
    }
    names
}

/// The entries among `names` that a service with `prefix` registered: an interface name of
/// ours, bare or behind the one `X.` that the WireGuard library prepends from resolvconf's
/// interface-order (`tun.`). Anything else, another program's entry, is left alone.
fn our_dns_entries(prefix: &str, names: &[String]) -> Vec<String> {
    let mut ours: Vec<String> = names
        .iter()
        .filter(|n| {
            let base = match n.split_once('.') {
                Some((order, base))
                    if !order.is_empty() && order.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                {
                    base
                }
                Some(_) => return false,
                None => n.as_str(),
            };
            is_ours(prefix, base)
        })
        .cloned()
        .collect();
    ours.sort();
    ours.dedup();
    ours
}

fn remove_mark_rules(table: u32) {
    let t = table.to_string();
    for fam in ["-4", "-6"] {
        delete_rules(fam, &["priority", &PRIORITY_MARK.to_string(), "table", &t]);
    }
}

/// Applies `want` to the tunnel's interface: addresses, key, peer, routes, rules, DNS.
/// Returns warnings (DNS not set) that do not stop the tunnel.
fn apply(t: &mut Tunnel, want: Applied, reconfigure: bool) -> Result<Vec<String>, String> {
    let v = &want.valid;
    let networks = want.networks();
    let full = networks.iter().any(|c| c.is_default());
    let table = full.then_some(TABLE_BASE | t.suffix);
    let api = t.api.get();
    let mut port = 0;
    if reconfigure {
        if let Some(old) = t.table.take() {
            remove_mark_rules(old);
        }
        // Keep the UDP port the gateway knows.
        port = api.read_interface_data().map(|h| h.listen_port).unwrap_or(0);
        // The routes of the old fields go, whatever the new ones keep: first those this
        // service added (its own table included), then anything else left on the interface
        // (removing the addresses drops IPv4 routes, but IPv6 routes stay otherwise). Only
        // routes through this tunnel's own interface are touched.
        for r in std::mem::take(&mut t.routes) {
            if let Err(e) = ip(&r.args("del", &t.iface)) {
                tracing::debug!("{e}");
            }
        }
        ip(&["address", "flush", "dev", &t.iface])?;
        for fam in ["-4", "-6"] {
            // Fails only where the family is disabled, with no route to remove.
            if let Err(e) = ip(&[fam, "route", "flush", "dev", &t.iface]) {
                tracing::debug!("{e}");
            }
        }
    }
    let config = want.interface(&t.iface, &networks, port, table);
    api.configure_interface(&config).map_err(|e| format!("configuring the interface: {e}"))?;
    t.table = table;
    let iface = t.iface.clone();
    let iface = iface.as_str();
    let mut warnings = vec![];
    for c in &networks {
        let fam = family(c);
        if let (true, Some(table)) = (c.is_default(), table) {
            let tbl = table.to_string();
            // The tunnel's own table: nothing else routes there.
            let route = Route { fam, net: c.to_string(), table: Some(tbl.clone()) };
            ip(&route.args("add", iface))?;
            t.routes.push(route);
            ip(&[fam, "rule", "add", "not", "fwmark", &tbl, "table", &tbl, "priority", &PRIORITY_MARK.to_string()])?;
            // One suppress rule serves every full tunnel; "exists already" is fine.
            if let Err(e) = ip(&[
                fam,
                "rule",
                "add",
                "table",
                "main",
                "suppress_prefixlength",
                "0",
                "priority",
                &PRIORITY_SUPPRESS.to_string(),
            ]) {
                if !e.contains("File exists") {
                    return Err(e);
                }
            }
            if c.addr.is_ipv4() {
                // Replies to marked packets must pass reverse-path filtering (as wg-quick).
                std::fs::write("/proc/sys/net/ipv4/conf/all/src_valid_mark", b"1")
                    .map_err(|e| format!("setting src_valid_mark: {e}"))?;
            }
        } else {
            // `add`, as wg-quick: a network this machine already routes (its LAN, another
            // tunnel's) keeps its route, which the service then never deletes. The tunnel
            // still comes up, for the other networks; the reply says which one it skipped.
            let route = Route { fam, net: c.to_string(), table: None };
            match ip(&route.args("add", iface)) {
                Ok(()) => t.routes.push(route),
                Err(e) if e.contains("File exists") => {
                    let w = format!(
                        "{c} is not routed through the tunnel: this machine already has a route to that network \
                         (ip route show {c}); traffic to it keeps that route"
                    );
                    tracing::warn!(iface, "{w}");
                    warnings.push(w);
                }
                Err(e) => return Err(e),
            }
        }
    }
    if !v.dns.is_empty() {
        let search: Vec<&str> = v.dns_search.iter().map(String::as_str).collect();
        let servers: Vec<IpAddr> = v.dns.clone();
        let result = match detect_dns_backend() {
            Ok(_) => api.configure_dns(&servers, &search).map_err(|e| e.to_string()),
            Err(_) => Err("neither systemd-resolved nor resolvconf is available".to_owned()),
        };
        if let Err(e) = result {
            let w = format!("DNS servers of this location not set: {e}");
            tracing::warn!(iface, "{w}");
            warnings.push(w);
        }
    }
    t.applied = want;
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_and_are_recognised() {
        let k = (Owner::new("1000"), "inst".to_owned(), 7);
        let s = suffix_for(&k);
        assert_eq!(s, suffix_for(&k), "stable");
        assert_ne!(s, suffix_for(&(Owner::new("1001"), "inst".to_owned(), 7)));
        let name = format!("onramp{s:06x}");
        assert!(name.len() <= 15);
        assert!(is_ours("onramp", &name));
        assert!(!is_ours("onramp", "onramp0"));
        assert!(!is_ours("onramp", "eth0"));
        assert!(!is_ours("onr", &name), "another prefix's interface is left alone");
    }

    #[test]
    fn only_our_resolvconf_entries_are_removed() {
        let names: Vec<String> = [
            "tun.onramp0a1b2c",
            "onramp0a1b2c",
            "onramp123abc",
            "eth0.dhclient",
            "tun.wg0",
            "onramp",
            "onramp0a1b2c.x",
            "a.b.onramp0a1b2c",
            ".onramp0a1b2c",
            "tun.onr0a1b2c",
            "lo.inet",
            "-d",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(our_dns_entries("onramp", &names), vec!["onramp0a1b2c", "onramp123abc", "tun.onramp0a1b2c"]);
        assert!(our_dns_entries("ot12", &names).is_empty());
    }
}
