//! `onramp-client service`: the privileged part of the client (root). It owns the tunnels and
//! listens on a local Unix socket (mode 0660, group `onramp` when that group exists) for the
//! unprivileged commands; each caller is checked with SO_PEERCRED (root, or a member of the
//! allowed group, supplementary groups included).
//!
//! Where a tunnel's fields come from: the caller sends them, read from its own client store.
//! The alternative, the service opening the caller's store through their home directory, would
//! make a root process parse a database in a directory the user controls (symlinks, a crafted
//! SQLite file) and guess the data directory (XDG_DATA_HOME, ONRAMP_CLIENT_DATA_DIR). Taking
//! the fields from the caller is simpler and no less safe: whoever may use the service can
//! already send any fields, and each is validated (keys, CIDRs, endpoint, port, DNS) before
//! it reaches an interface. Being in the group therefore means being trusted to route this
//! machine's traffic into a WireGuard tunnel, as membership of `netdev` is for NetworkManager.

mod tunnels;

use crate::ipc::{self, Body, ErrorCode, Op, Reply, Request};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
pub use tunnels::{run_device, PRIORITY_MARK, PRIORITY_SUPPRESS};

/// A connection may stay idle this long between requests.
const IDLE: Duration = Duration::from_secs(300);

pub struct Options {
    pub socket: PathBuf,
    /// The group allowed to call; None: `onramp` if it exists, else root only.
    pub group: Option<String>,
    pub interface_prefix: String,
    /// Userspace WireGuard even when the kernel module is loaded.
    pub userspace: bool,
}

struct Shared {
    manager: Mutex<tunnels::Manager>,
    group: Option<(String, u32)>,
    userspace: bool,
}

fn gid_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getgrnam_r fills `grp` with pointers into `buf`; only the gid is read.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut found);
        (rc == 0 && !found.is_null()).then_some(grp.gr_gid)
    }
}

/// The peer's supplementary groups, as the kernel recorded them at connect (SO_PEERGROUPS).
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    // SO_PEERGROUPS (Linux 4.13); not every libc target exposes the constant.
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const SO_PEERGROUPS: libc::c_int = 59;
    #[cfg(target_arch = "sparc64")]
    const SO_PEERGROUPS: libc::c_int = 0x3d;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64", target_arch = "sparc64")))]
    const SO_PEERGROUPS: libc::c_int = 59;
    let mut groups = vec![0 as libc::gid_t; 1024];
    let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
    // SAFETY: the buffer and its length in bytes; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len)
    };
    if rc != 0 {
        return vec![];
    }
    groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
    groups
}

fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwuid_r fills `pwd` with pointers into `buf`; the name is copied out first.
    let name = unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        (rc == 0 && !found.is_null() && !pwd.pw_name.is_null())
            .then(|| std::ffi::CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    };
    name.unwrap_or_else(|| format!("uid {uid}"))
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

/// Removes a stale socket file; refuses when a service answers on it or it is not a socket.
fn free_socket_path(path: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(format!("{} exists and is not a socket; remove it or choose another --socket", path.display()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!("another Onramp client service is already running on {}", path.display()));
    }
    std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    tracing::info!(socket = %path.display(), "removed a stale socket");
    Ok(())
}

fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Created owner-only, then opened to the group: never briefly wider than 0660.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = listener.map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::os::unix::fs::chown(path, Some(0), Some(gid.unwrap_or(0)))
        .map_err(|e| format!("cannot set the group of {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(listener)
}

/// Runs the service until SIGTERM or SIGINT, then takes every tunnel down.
pub async fn run(opts: Options) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "onramp-client service must run as root (it creates network interfaces): sudo onramp-client service".into(),
        );
    }
    check_prefix(&opts.interface_prefix)?;
    let userspace = opts.userspace || !Path::new("/sys/module/wireguard").exists();
    if userspace && !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun is missing (userspace WireGuard needs it): modprobe tun".into());
    }
    let group = match &opts.group {
        Some(name) => Some((name.clone(), gid_of(name).ok_or_else(|| format!("group {name:?} does not exist"))?)),
        None => gid_of(ipc::DEFAULT_GROUP).map(|gid| (ipc::DEFAULT_GROUP.to_owned(), gid)),
    };
    free_socket_path(&opts.socket)?;
    let manager = tunnels::Manager::new(opts.interface_prefix.clone(), userspace);
    // Nothing else runs yet: blocking here is harmless.
    let removed = manager.cleanup_leftovers();
    if !removed.is_empty() {
        tracing::info!("removed leftovers of an earlier run: {}", removed.join(", "));
    }
    let listener = bind(&opts.socket, group.as_ref().map(|g| g.1))?;
    match &group {
        Some((name, _)) => {
            tracing::info!(socket = %opts.socket.display(), group = %name, userspace, "listening; root and group members may connect")
        }
        None => tracing::info!(
            socket = %opts.socket.display(),
            userspace,
            "listening for root only; to allow users: groupadd {0}, usermod -aG {0} USER, restart the service (or set ONRAMP_CLIENT_GROUP)",
            ipc::DEFAULT_GROUP
        ),
    }
    let shared = Arc::new(Shared { manager: Mutex::new(manager), group, userspace });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { serve_connection(stream, shared).await });
                }
                Err(e) => tracing::warn!("accept: {e}"),
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("stopping: taking every tunnel down");
    let s = shared.clone();
    let gone = tokio::task::spawn_blocking(move || lock(&s).disconnect_all()).await.unwrap_or_default();
    if !gone.is_empty() {
        tracing::info!("removed {}", gone.join(", "));
    }
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, tunnels::Manager> {
    s.manager.lock().unwrap_or_else(|p| p.into_inner())
}

async fn write_reply(stream: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

async fn serve_connection(stream: UnixStream, shared: Arc<Shared>) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot read the caller's credentials: {e}");
            return;
        }
    };
    let (uid, gid) = (cred.uid(), cred.gid());
    let allowed = uid == 0 || shared.group.as_ref().is_some_and(|(_, g)| gid == *g || peer_groups(&stream).contains(g));
    let (rd, mut wr) = stream.into_split();
    if !allowed {
        let who = user_name(uid);
        tracing::warn!(uid, "refused a caller outside the allowed group");
        let message = match &shared.group {
            Some((g, _)) => format!(
                "{who} may not use the Onramp client service: only root and members of group {g:?} may; \
                 ask your administrator to add you (usermod -aG {g} {who}, then log in again)"
            ),
            None => format!(
                "{who} may not use the Onramp client service: it allows only root; ask your administrator to create \
                 group {:?}, add you to it and restart the service",
                ipc::DEFAULT_GROUP
            ),
        };
        let _ = write_reply(&mut wr, &Reply::error(ErrorCode::Forbidden, message)).await;
        return;
    }
    let mut rd = tokio::io::BufReader::new(rd);
    loop {
        let mut buf = Vec::new();
        let read =
            tokio::time::timeout(IDLE, (&mut rd).take(ipc::MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::debug!("read: {e}");
                return;
            }
            Ok(Ok(_)) => {}
        }
        if buf.len() > ipc::MAX_LINE {
            let too_long = format!("request longer than {} bytes", ipc::MAX_LINE);
            let _ = write_reply(&mut wr, &Reply::error(ErrorCode::BadRequest, too_long)).await;
            return;
        }
        let reply = match serde_json::from_slice::<serde_json::Value>(&buf) {
            Ok(v) if v["v"] != serde_json::json!(ipc::VERSION) => Reply::error(
                ErrorCode::BadRequest,
                format!("protocol version {} is not supported (this service speaks {})", v["v"], ipc::VERSION),
            ),
            Ok(v) => match serde_json::from_value::<Request>(v) {
                Ok(req) => handle(uid, req.op, &shared).await,
                Err(e) => Reply::error(ErrorCode::BadRequest, format!("not a request: {e}")),
            },
            Err(e) => Reply::error(ErrorCode::BadRequest, format!("not JSON: {e}")),
        };
        if write_reply(&mut wr, &reply).await.is_err() {
            return;
        }
    }
}

async fn handle(uid: u32, op: Op, shared: &Arc<Shared>) -> Reply {
    let s = shared.clone();
    let work = tokio::task::spawn_blocking(move || -> Reply {
        match op {
            Op::Hello => Reply::new(Body::Hello { uid, userspace: s.userspace }),
            Op::Status => Reply::new(Body::Status { tunnels: lock(&s).status(uid) }),
            Op::Disconnect { instance_id, network_id } => Reply::new(Body::Disconnected {
                interfaces: lock(&s).disconnect(uid, instance_id.as_deref(), network_id),
            }),
            Op::Connect { tunnel } => {
                // Validation and the endpoint lookup happen before the lock.
                let result = tunnels::prepare(&tunnel).and_then(|want| lock(&s).connect(uid, &tunnel, want));
                match result {
                    Ok((interface, change, warnings)) => Reply::new(Body::Connected { interface, change, warnings }),
                    Err((code, message)) => {
                        tracing::warn!(uid, location = %tunnel.name, "connect failed: {message}");
                        Reply::error(code, message)
                    }
                }
            }
        }
    });
    work.await.unwrap_or_else(|e| Reply::error(ErrorCode::Failed, format!("internal error: {e}")))
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
}
