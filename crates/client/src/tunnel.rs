//! The unprivileged side of tunnels: asks `onramp-client service` (over its local socket) to
//! connect, disconnect or report, with the fields of the caller's own store.

use crate::ipc::{self, Body, ErrorCode, Op, Reply, TunnelConfig, TunnelStatus};
use crate::store::{Instance, Store, StoreError};
use onramp_proto::DeviceConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one request may take (connect resolves the endpoint and builds an interface).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the Onramp client service is not running; start it: {NOT_RUNNING_HINT}")]
    NotRunning,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("the Onramp client service at {path}: {detail}")]
    Protocol { path: String, detail: String },
    #[error("tunnels are not supported yet on this platform")]
    Unsupported,
}

#[cfg(not(windows))]
const NOT_RUNNING_HINT: &str = "sudo onramp-client service (or systemctl start onramp-client)";
#[cfg(windows)]
const NOT_RUNNING_HINT: &str =
    "sc start onramp-client in an administrator's prompt (or onramp-client service --console there, to see its log)";

/// `--socket` on Windows: a full pipe path (`\\.\pipe\NAME`), or a bare NAME under `\\.\pipe\`.
pub fn pipe_path(socket: &Path) -> String {
    let s = socket.to_string_lossy();
    if s.starts_with(r"\\") {
        s.into_owned()
    } else {
        format!(r"\\.\pipe\{s}")
    }
}

/// The socket path: `--socket` / `ONRAMP_CLIENT_SOCKET`, else [`ipc::DEFAULT_SOCKET`].
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(ipc::DEFAULT_SOCKET))
}

#[derive(Debug, Clone)]
pub struct ServiceClient {
    path: PathBuf,
}

impl ServiceClient {
    pub fn new(path: PathBuf) -> ServiceClient {
        ServiceClient { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and reads its reply; a service error reply becomes `Refused`.
    pub async fn call(&self, op: Op) -> Result<Body, ServiceError> {
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(op))
            .await
            .map_err(|_| self.protocol("no reply in time"))??;
        if reply.v != ipc::VERSION {
            return Err(self.protocol(&format!("speaks protocol version {} (this client: {})", reply.v, ipc::VERSION)));
        }
        match reply.body {
            Body::Error { code: ErrorCode::Forbidden, message } => Err(ServiceError::PermissionDenied(message)),
            Body::Error { code: ErrorCode::Unsupported, .. } => Err(ServiceError::Unsupported),
            Body::Error { code, message } => Err(ServiceError::Refused { code, message }),
            body => Ok(body),
        }
    }

    fn protocol(&self, detail: &str) -> ServiceError {
        ServiceError::Protocol { path: self.path.display().to_string(), detail: detail.to_owned() }
    }

    #[cfg(unix)]
    async fn exchange(&self, op: Op) -> Result<Reply, ServiceError> {
        let stream = match tokio::net::UnixStream::connect(&self.path).await {
            Ok(s) => s,
            Err(e) => return Err(self.connect_error(e)),
        };
        let (rd, wr) = stream.into_split();
        self.talk(rd, wr, op).await
    }

    /// One request line out, one reply line back.
    async fn talk(
        &self,
        rd: impl tokio::io::AsyncRead + Unpin,
        mut wr: impl tokio::io::AsyncWrite + Unpin,
        op: Op,
    ) -> Result<Reply, ServiceError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut line =
            serde_json::to_vec(&ipc::Request { v: ipc::VERSION, op }).map_err(|e| self.protocol(&e.to_string()))?;
        line.push(b'\n');
        // A refused caller gets its answer before the service reads anything and the write
        // may then fail (EPIPE): the reply, if any, still says why.
        let written = wr.write_all(&line).await;
        let mut buf = Vec::new();
        let mut rd = tokio::io::BufReader::new(rd).take(ipc::MAX_LINE as u64 + 1);
        let read = rd.read_until(b'\n', &mut buf).await;
        if buf.is_empty() {
            let e = written.err().map(|e| e.to_string()).or(read.err().map(|e| e.to_string()));
            return Err(self.protocol(e.as_deref().unwrap_or("closed the connection without a reply")));
        }
        if buf.len() > ipc::MAX_LINE {
            return Err(self.protocol("reply too long"));
        }
        serde_json::from_slice(&buf).map_err(|e| self.protocol(&format!("unreadable reply: {e}")))
    }

    #[cfg(unix)]
    fn connect_error(&self, e: std::io::Error) -> ServiceError {
        match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ServiceError::NotRunning,
            std::io::ErrorKind::PermissionDenied => ServiceError::PermissionDenied(denied_hint(&self.path)),
            _ => self.protocol(&e.to_string()),
        }
    }

    /// On Windows: the service's named pipe, opened for reading and writing only (not the
    /// right to create an instance, which the pipe's ACL does not grant) and letting the
    /// service identify this user but not act as it. While every instance is busy, waits.
    #[cfg(windows)]
    async fn exchange(&self, op: Op) -> Result<Reply, ServiceError> {
        use std::os::windows::fs::OpenOptionsExt;
        use std::os::windows::io::IntoRawHandle;
        const ERROR_PIPE_BUSY: i32 = 231;
        const FILE_FLAG_OVERLAPPED: u32 = 0x4000_0000;
        const SECURITY_IDENTIFICATION: u32 = 0x0001_0000;
        let name = pipe_path(&self.path);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let file = loop {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .access_mode(crate::service::winacl::PIPE_CLIENT_ACCESS)
                .custom_flags(FILE_FLAG_OVERLAPPED)
                .security_qos_flags(SECURITY_IDENTIFICATION)
                .open(&name);
            match opened {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(self.connect_error(e)),
            }
        };
        // SAFETY: an overlapped handle to a pipe's client end, owned from here on.
        let pipe = unsafe { tokio::net::windows::named_pipe::NamedPipeClient::from_raw_handle(file.into_raw_handle()) }
            .map_err(|e| self.protocol(&e.to_string()))?;
        let (rd, wr) = tokio::io::split(pipe);
        self.talk(rd, wr, op).await
    }

    #[cfg(windows)]
    fn connect_error(&self, e: std::io::Error) -> ServiceError {
        const ERROR_PIPE_BUSY: i32 = 231;
        match (e.kind(), e.raw_os_error()) {
            (std::io::ErrorKind::NotFound, _) => ServiceError::NotRunning,
            (std::io::ErrorKind::PermissionDenied, _) => ServiceError::PermissionDenied(format!(
                "permission denied on {}: only Administrators and members of the local group the service allows \
                 (by default {:?}) may use the Onramp client service; ask your administrator to add you \
                 (net localgroup \"{}\" %USERNAME% /add, then sign out and in again)",
                pipe_path(&self.path),
                ipc::DEFAULT_GROUP,
                ipc::DEFAULT_GROUP
            )),
            (_, Some(ERROR_PIPE_BUSY)) => self.protocol("every instance of the pipe stayed busy for 10 s"),
            _ => self.protocol(&e.to_string()),
        }
    }

    #[cfg(not(any(unix, windows)))]
    async fn exchange(&self, _op: Op) -> Result<Reply, ServiceError> {
        Err(ServiceError::Unsupported)
    }

    /// The caller's live tunnels.
    pub async fn tunnels(&self) -> Result<Vec<TunnelStatus>, ServiceError> {
        match self.call(Op::Status).await? {
            Body::Status { tunnels } => Ok(tunnels),
            other => Err(self.protocol(&format!("unexpected reply {other:?}"))),
        }
    }

    pub async fn connect(&self, tunnel: TunnelConfig) -> Result<(String, ipc::Change, Vec<String>), ServiceError> {
        match self.call(Op::Connect { tunnel }).await? {
            Body::Connected { interface, change, warnings } => Ok((interface, change, warnings)),
            other => Err(self.protocol(&format!("unexpected reply {other:?}"))),
        }
    }

    pub async fn disconnect(&self, which: Option<(String, i64)>) -> Result<Vec<String>, ServiceError> {
        let (instance_id, network_id) = match which {
            Some((i, n)) => (Some(i), Some(n)),
            None => (None, None),
        };
        match self.call(Op::Disconnect { instance_id, network_id }).await? {
            Body::Disconnected { interfaces } => Ok(interfaces),
            other => Err(self.protocol(&format!("unexpected reply {other:?}"))),
        }
    }
}

/// What to tell a user the socket refused: which group to join.
#[cfg(unix)]
fn denied_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let group = std::fs::metadata(path).ok().map(|m| m.gid()).filter(|g| *g != 0).and_then(group_name);
    match group {
        Some(g) => format!(
            "permission denied on {}: only root and members of group {g:?} may use the Onramp client service; \
             ask your administrator to add you (sudo usermod -aG {g} $USER, then log in again)",
            path.display()
        ),
        None => format!(
            "permission denied on {}: the Onramp client service allows only root; ask your administrator to \
             create group {:?}, add you to it and restart the service (or set ONRAMP_CLIENT_GROUP)",
            path.display(),
            ipc::DEFAULT_GROUP
        ),
    }
}

#[cfg(unix)]
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getgrgid_r fills `grp` with pointers into `buf`, which outlives their use; the
    // name is copied out before `buf` is dropped.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 || found.is_null() || grp.gr_name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(grp.gr_name).to_string_lossy().into_owned())
    }
}

/// Why a location cannot be picked by name.
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    #[error("no location named {name:?}; known: {known}")]
    Unknown { name: String, known: String },
    #[error("location {name:?} exists in several instances ({instances}); choose one with --instance")]
    Ambiguous { name: String, instances: String },
    #[error("no instance {0:?}; see onramp-client instances")]
    NoInstance(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The location named `name` (in `instance`, by id or name, when given).
pub async fn pick(store: &Store, name: &str, instance: Option<&str>) -> Result<(Instance, DeviceConfig), PickError> {
    let instances: Vec<Instance> =
        store.instances().await?.into_iter().filter(|i| instance.is_none_or(|w| w == i.id || w == i.name)).collect();
    if let (Some(w), true) = (instance, instances.is_empty()) {
        return Err(PickError::NoInstance(w.to_owned()));
    }
    let mut known = vec![];
    let mut found = vec![];
    for i in instances {
        for l in store.locations(&i.id).await? {
            known.push(l.network_name.clone());
            if l.network_name == name {
                found.push((i.clone(), l));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            known.sort();
            known.dedup();
            let known = if known.is_empty() { "(none)".to_owned() } else { known.join(", ") };
            Err(PickError::Unknown { name: name.to_owned(), known })
        }
        _ => Err(PickError::Ambiguous {
            name: name.to_owned(),
            instances: found.iter().map(|(i, _)| i.name.clone()).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The tunnel fields of `location`, with the instance's private key from the store.
pub async fn config_for(store: &Store, i: &Instance, location: &DeviceConfig) -> Result<TunnelConfig, String> {
    let key = store
        .private_key(&i.pubkey)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("instance {}: this device's private key is missing from the local store", i.name))?;
    Ok(ipc::tunnel_config(&i.id, location, &key))
}

/// After every sync: every connected location of this store gets its current fields again
/// (the service leaves an unchanged tunnel alone and reconfigures a changed one in place), so
/// a change reaches the live tunnel whichever command stored it (`sync`, `start`, `daemon`,
/// `update-instance`); a connected location the server removed is disconnected. Without a
/// running service (or one that refuses this user) there is nothing to do. Returns a line per
/// tunnel that changed, with the service's warnings.
pub async fn refresh_connected(store: &Store, service: &ServiceClient) -> Result<Vec<String>, StoreError> {
    let tunnels = match service.tunnels().await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!("not refreshing tunnels: {e}");
            return Ok(vec![]);
        }
    };
    let mut done = vec![];
    for t in tunnels {
        let Some(i) = store.instance(&t.instance_id).await? else { continue };
        let location = store.locations(&i.id).await?.into_iter().find(|l| l.network_id == t.network_id);
        let result = match location {
            None => service
                .disconnect(Some((t.instance_id.clone(), t.network_id)))
                .await
                .map(|_| ("disconnected (removed)", vec![])),
            Some(l) => match config_for(store, &i, &l).await {
                Ok(cfg) => service.connect(cfg).await.map(|(_, change, warnings)| {
                    let what = match change {
                        ipc::Change::Unchanged => "unchanged",
                        ipc::Change::Reconfigured => "reconfigured",
                        // The device had died: the service made the tunnel again.
                        ipc::Change::Created => "reconnected",
                    };
                    (what, warnings)
                }),
                Err(e) => {
                    tracing::warn!(location = %t.name, "cannot refresh: {e}");
                    continue;
                }
            },
        };
        match result {
            Ok(("unchanged", _)) => {}
            Ok((what, warnings)) => {
                done.push(format!("{}: {what}", t.name));
                done.extend(warnings.into_iter().map(|w| format!("{}: warning: {w}", t.name)));
            }
            Err(e) => done.push(format!("{}: tunnel refresh failed: {e}", t.name)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_names() {
        assert_eq!(pipe_path(Path::new("onramp-test")), r"\\.\pipe\onramp-test");
        assert_eq!(pipe_path(Path::new(r"\\.\pipe\onramp-client")), r"\\.\pipe\onramp-client");
    }
}
