//! The Linux transport of the service: a Unix socket (mode 0660, owned by root and the allowed
//! group), each caller checked with SO_PEERCRED (root, or a member of the allowed group,
//! supplementary groups included).

use super::{serve, tunnels, Caller, Options, Owner, Shared};
use crate::ipc;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};

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
    super::check_prefix(&opts.interface_prefix)?;
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
    let shared = Shared::new(manager, userspace);
    let group = Arc::new(group);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (shared, group) = (shared.clone(), group.clone());
                    tokio::spawn(async move { serve_connection(stream, shared, &group).await });
                }
                Err(e) => tracing::warn!("accept: {e}"),
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    shared.shutdown().await;
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}

async fn serve_connection(stream: UnixStream, shared: Arc<Shared>, group: &Option<(String, u32)>) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot read the caller's credentials: {e}");
            return;
        }
    };
    let (uid, gid) = (cred.uid(), cred.gid());
    let allowed = uid == 0 || group.as_ref().is_some_and(|(_, g)| gid == *g || peer_groups(&stream).contains(g));
    let (rd, mut wr) = stream.into_split();
    if !allowed {
        let who = user_name(uid);
        tracing::warn!(uid, "refused a caller outside the allowed group");
        let message = match group {
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
        super::refuse(&mut wr, message).await;
        return;
    }
    let caller = Caller { owner: Owner::new(uid.to_string()), admin: uid == 0, uid, sid: None };
    serve(tokio::io::BufReader::new(rd), wr, caller, None, shared).await;
}
