//! `onramp-client service`: the privileged part of the client (root on Linux, LocalSystem on
//! Windows). It owns the tunnels and listens on a local endpoint for the unprivileged
//! commands: a Unix socket on Linux (mode 0660, group `onramp` when that group exists, each
//! caller checked with SO_PEERCRED), a named pipe on Windows (an ACL for SYSTEM,
//! Administrators and the group `Onramp Users` when it exists, each caller identified by its
//! token). Only that transport is platform code ([`unix`], [`windows`]); requests are read,
//! checked and answered here, the same way on both.
//!
//! Where a tunnel's fields come from: the caller sends them, read from its own client store.
//! The alternative, the service opening the caller's store through their home directory, would
//! make a root process parse a database in a directory the user controls (symlinks, a crafted
//! SQLite file) and guess the data directory (XDG_DATA_HOME, ONRAMP_CLIENT_DATA_DIR). Taking
//! the fields from the caller is simpler and no less safe: whoever may use the service can
//! already send any fields, and each is validated (keys, CIDRs, endpoint, port, DNS) before
//! it reaches an interface. Being in the group therefore means being trusted to route this
//! machine's traffic into a WireGuard tunnel, as membership of `netdev` is for NetworkManager.

#[cfg(target_os = "linux")]
#[path = "tunnels_linux.rs"]
mod tunnels;
#[cfg(windows)]
#[path = "tunnels_windows.rs"]
mod tunnels;
#[cfg(target_os = "linux")]
mod unix;
pub mod winacl;
#[cfg(windows)]
mod windows;

use crate::ipc::{self, Body, ErrorCode, Op, Reply, Request, TunnelConfig, ValidTunnel};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

#[cfg(target_os = "linux")]
pub use tunnels::{run_device, PRIORITY_MARK, PRIORITY_SUPPRESS};
#[cfg(target_os = "linux")]
pub use unix::run;
#[cfg(windows)]
pub use windows::run;

/// The service's name: the systemd unit, and the Windows service (`sc start onramp-client`).
pub const SERVICE_NAME: &str = "onramp-client";

/// A connection may stay idle this long between requests.
const IDLE: Duration = Duration::from_secs(300);

pub struct Options {
    /// The Unix socket, or on Windows the pipe (`\\.\pipe\NAME`).
    pub socket: PathBuf,
    /// The group allowed to call; None: the platform's default group if it exists (`onramp`,
    /// `Onramp Users`), else only root / SYSTEM and Administrators.
    pub group: Option<String>,
    pub interface_prefix: String,
    /// Userspace WireGuard even when the kernel module is loaded (Linux only).
    pub userspace: bool,
    /// Windows: run in this console instead of under the Service Control Manager.
    pub console: bool,
}

/// Who owns a tunnel: the caller's uid on Linux, its user SID on Windows (as text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner(String);

impl Owner {
    pub fn new(id: impl Into<String>) -> Owner {
        Owner(id.into())
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose tunnels a request may see and end.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// root, SYSTEM, an elevated administrator, or the service itself at shutdown.
    Everyone,
    Only(&'a Owner),
}

impl Who<'_> {
    pub fn sees(&self, owner: &Owner) -> bool {
        match self {
            Who::Everyone => true,
            Who::Only(o) => *o == owner,
        }
    }

    /// Of the tunnels keyed (owner, instance, location), those this caller may end: all
    /// it sees, or the one instance's / location's.
    pub fn select<'k>(
        &self,
        keys: impl Iterator<Item = &'k TunnelKey>,
        instance_id: Option<&str>,
        network_id: Option<i64>,
    ) -> Vec<TunnelKey> {
        keys.filter(|(owner, i, n)| {
            self.sees(owner) && instance_id.is_none_or(|w| w == i) && network_id.is_none_or(|w| w == *n)
        })
        .cloned()
        .collect()
    }
}

/// A tunnel: its owner, the instance and the location it belongs to.
pub type TunnelKey = (Owner, String, i64);

/// An allowed caller, as the transport identified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: Owner,
    /// root / SYSTEM / an elevated administrator: sees and ends every tunnel.
    pub admin: bool,
    /// For `hello`: the uid (Windows: the SID's last part, its RID).
    pub uid: u32,
    /// For `hello` on Windows: the caller's user SID.
    pub sid: Option<String>,
}

impl Caller {
    fn who(&self) -> Who<'_> {
        if self.admin {
            Who::Everyone
        } else {
            Who::Only(&self.owner)
        }
    }
}

pub type Failure = (ErrorCode, String);

/// The fields applied to an interface: validated, with the endpoint resolved. A connect
/// whose `Applied` equals the live one changes nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Applied {
    pub valid: ValidTunnel,
    pub endpoint: SocketAddr,
}

impl Applied {
    /// The allowed networks with host bits cleared, sorted, each once.
    fn networks(&self) -> Vec<ipc::Cidr> {
        let mut networks: Vec<ipc::Cidr> = self.valid.allowed_ips.iter().map(|c| c.network()).collect();
        networks.sort();
        networks.dedup();
        networks
    }

    /// The WireGuard settings of the tunnel's interface: its key and addresses, and the
    /// gateway as its one peer, routed `networks`.
    fn interface(
        &self,
        name: &str,
        networks: &[ipc::Cidr],
        port: u16,
        fwmark: Option<u32>,
    ) -> defguard_wireguard_rs::InterfaceConfiguration {
        use base64::Engine;
        use defguard_wireguard_rs::{key::Key, net::IpAddrMask, peer::Peer};
        let mask = |c: &ipc::Cidr| IpAddrMask::new(c.addr, c.prefix);
        let v = &self.valid;
        let mut peer = Peer::new(Key::new(v.gateway_key));
        peer.endpoint = Some(self.endpoint);
        peer.persistent_keepalive_interval = (v.keepalive > 0).then_some(v.keepalive);
        peer.allowed_ips = networks.iter().map(mask).collect();
        defguard_wireguard_rs::InterfaceConfiguration {
            name: name.to_owned(),
            prvkey: base64::engine::general_purpose::STANDARD.encode(v.private_key),
            addresses: v.addresses.iter().map(mask).collect(),
            port,
            peers: vec![peer],
            mtu: None,
            fwmark,
        }
    }
}

/// Checks a connect request and resolves its endpoint (no interface touched yet).
pub fn prepare(cfg: &TunnelConfig) -> Result<Applied, Failure> {
    let valid = cfg.validate().map_err(|e| match e {
        crate::ipc::Invalid::NoGateway(_) => (ErrorCode::NoGateway, e.to_string()),
        crate::ipc::Invalid::Field(m) => (ErrorCode::Invalid, format!("location {:?}: {m}", cfg.name)),
    })?;
    let endpoint = (valid.endpoint_host.as_str(), valid.endpoint_port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| (ErrorCode::Failed, format!("cannot resolve the endpoint {:?}", cfg.endpoint)))?;
    Ok(Applied { valid, endpoint })
}

/// 1 to 9 ASCII letters and digits, starting with a letter: with the 6-character suffix the
/// name stays within Linux's 15.
pub fn check_prefix(p: &str) -> Result<(), String> {
    let ok = (1..=9).contains(&p.len())
        && p.bytes().all(|b| b.is_ascii_alphanumeric())
        && p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(format!("interface prefix {p:?}: 1 to 9 letters and digits, starting with a letter"))
    }
}

struct Shared {
    manager: Mutex<tunnels::Manager>,
    userspace: bool,
}

impl Shared {
    fn new(manager: tunnels::Manager, userspace: bool) -> Arc<Shared> {
        Arc::new(Shared { manager: Mutex::new(manager), userspace })
    }

    /// At shutdown: every tunnel down.
    async fn shutdown(self: &Arc<Shared>) {
        tracing::info!("stopping: taking every tunnel down");
        let s = self.clone();
        let gone = tokio::task::spawn_blocking(move || lock(&s).disconnect_all()).await.unwrap_or_default();
        if !gone.is_empty() {
            tracing::info!("removed {}", gone.join(", "));
        }
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, tunnels::Manager> {
    s.manager.lock().unwrap_or_else(|p| p.into_inner())
}

async fn write_reply(stream: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

/// One request line as read from a connection.
enum Line {
    Data(Vec<u8>),
    TooLong,
    /// Closed, idle too long, or a read error: the connection ends without a reply.
    End,
}

async fn read_line(rd: &mut (impl AsyncBufRead + Unpin)) -> Line {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(IDLE, rd.take(ipc::MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)).await;
    match read {
        Ok(Ok(0)) | Err(_) => Line::End,
        Ok(Err(e)) => {
            tracing::debug!("read: {e}");
            Line::End
        }
        Ok(Ok(_)) if buf.len() > ipc::MAX_LINE => Line::TooLong,
        Ok(Ok(_)) => Line::Data(buf),
    }
}

/// Answers a refused caller once, with why.
async fn refuse(wr: &mut (impl AsyncWriteExt + Unpin), message: String) {
    let _ = write_reply(wr, &Reply::error(ErrorCode::Forbidden, message)).await;
}

/// Serves an allowed caller's requests, one line each way, until it closes or idles;
/// `first` is a line the transport already read (Windows reads one before it can identify
/// the caller).
async fn serve(
    mut rd: impl AsyncBufRead + Unpin,
    mut wr: impl AsyncWriteExt + Unpin,
    caller: Caller,
    first: Option<Line>,
    shared: Arc<Shared>,
) {
    let mut next = first;
    loop {
        let line = match next.take() {
            Some(l) => l,
            None => read_line(&mut rd).await,
        };
        let buf = match line {
            Line::End => return,
            Line::TooLong => {
                let too_long = format!("request longer than {} bytes", ipc::MAX_LINE);
                let _ = write_reply(&mut wr, &Reply::error(ErrorCode::BadRequest, too_long)).await;
                return;
            }
            Line::Data(buf) => buf,
        };
        let reply = match serde_json::from_slice::<serde_json::Value>(&buf) {
            Ok(v) if v["v"] != serde_json::json!(ipc::VERSION) => Reply::error(
                ErrorCode::BadRequest,
                format!("protocol version {} is not supported (this service speaks {})", v["v"], ipc::VERSION),
            ),
            Ok(v) => match serde_json::from_value::<Request>(v) {
                Ok(req) => handle(&caller, req.op, &shared).await,
                Err(e) => Reply::error(ErrorCode::BadRequest, format!("not a request: {e}")),
            },
            Err(e) => Reply::error(ErrorCode::BadRequest, format!("not JSON: {e}")),
        };
        if write_reply(&mut wr, &reply).await.is_err() {
            return;
        }
    }
}

async fn handle(caller: &Caller, op: Op, shared: &Arc<Shared>) -> Reply {
    let s = shared.clone();
    let caller = caller.clone();
    let work = tokio::task::spawn_blocking(move || -> Reply {
        let owner = &caller.owner;
        match op {
            Op::Hello => Reply::new(Body::Hello { uid: caller.uid, userspace: s.userspace, sid: caller.sid.clone() }),
            Op::Status => Reply::new(Body::Status { tunnels: lock(&s).status(caller.who()) }),
            Op::Disconnect { instance_id, network_id } => Reply::new(Body::Disconnected {
                interfaces: lock(&s).disconnect(caller.who(), instance_id.as_deref(), network_id),
            }),
            Op::Connect { tunnel } => {
                // Validation and the endpoint lookup happen before the lock.
                let result = prepare(&tunnel).and_then(|want| lock(&s).connect(owner, &tunnel, want));
                match result {
                    Ok((interface, change, warnings)) => Reply::new(Body::Connected { interface, change, warnings }),
                    Err((code, message)) => {
                        tracing::warn!(%owner, location = %tunnel.name, "connect failed: {message}");
                        Reply::error(code, message)
                    }
                }
            }
        }
    });
    work.await.unwrap_or_else(|e| Reply::error(ErrorCode::Failed, format!("internal error: {e}")))
}

/// What a tunnel reports about itself, filled in from its interface.
struct TunnelStatusOf<'a> {
    name: &'a str,
    interface: &'a str,
    endpoint: &'a str,
}

impl TunnelStatusOf<'_> {
    /// The gateway peer's handshake and counters as the interface (`None`: unreadable)
    /// reports them.
    fn read_from(
        &self,
        instance_id: &str,
        network_id: i64,
        host: Option<defguard_wireguard_rs::host::Host>,
        gateway_key: [u8; 32],
    ) -> ipc::TunnelStatus {
        let gateway = defguard_wireguard_rs::key::Key::new(gateway_key);
        let peer = host.and_then(|h| h.peers.get(&gateway).cloned());
        let handshake = peer
            .as_ref()
            .and_then(|p| p.last_handshake)
            .and_then(|s| s.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .filter(|s| *s > 0);
        ipc::TunnelStatus {
            instance_id: instance_id.to_owned(),
            network_id,
            name: self.name.to_owned(),
            interface: self.interface.to_owned(),
            endpoint: self.endpoint.to_owned(),
            latest_handshake: handshake,
            rx_bytes: peer.as_ref().map(|p| p.rx_bytes).unwrap_or(0),
            tx_bytes: peer.as_ref().map(|p| p.tx_bytes).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("onramp").is_ok());
        assert!(check_prefix("ot123456").is_ok());
        for bad in ["", "1abc", "toolongname", "on-ramp", "on ramp"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn callers_see_their_own_tunnels_admins_all() {
        let ann = Caller { owner: Owner::new("1000"), admin: false, uid: 1000, sid: None };
        let root = Caller { owner: Owner::new("0"), admin: true, uid: 0, sid: None };
        assert!(ann.who().sees(&Owner::new("1000")));
        assert!(!ann.who().sees(&Owner::new("1001")));
        assert!(root.who().sees(&Owner::new("1001")));
    }
}
