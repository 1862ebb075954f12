//! The Windows transport of the service: a named pipe with an explicit ACL (see
//! [`super::winacl`]), the first instance created with FILE_FLAG_FIRST_PIPE_INSTANCE (no other
//! process may have squatted the name), remote clients rejected; each caller identified by
//! impersonating it for a moment and reading its token. The service runs under the Service
//! Control Manager as LocalSystem, or in a console (`service --console`, or when the SCM did
//! not start it) for debugging and tests.

use super::winacl::{self, ADMINISTRATORS_SID};
use super::{read_line, serve, tunnels, Line, Options, Shared, SERVICE_NAME};
use crate::ipc;
use std::ffi::{c_void, OsStr, OsString};
use std::future::Future;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::AsRawHandle;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::windows::named_pipe::{NamedPipeServer, PipeMode, ServerOptions};
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult, ServiceStatusHandle};
use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, ERROR_NONE_MAPPED, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, ConvertStringSidToSidW,
    SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    CheckTokenMembership, GetTokenInformation, LookupAccountNameW, RevertToSelf, TokenUser, PSECURITY_DESCRIPTOR, PSID,
    SECURITY_ATTRIBUTES, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Pipes::ImpersonateNamedPipeClient;
use windows_sys::Win32::System::Threading::{GetCurrentThread, OpenThreadToken};

/// The SCM did not start this process (StartServiceCtrlDispatcher's ERROR_FAILED_SERVICE_CONTROLLER_CONNECT).
const NOT_UNDER_SCM: i32 = 1063;

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// A SID the system allocated with LocalAlloc.
struct LocalSid(PSID);

impl LocalSid {
    fn parse(s: &str) -> Result<LocalSid, String> {
        let mut sid: PSID = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string in, a LocalAlloc'd SID out (freed in Drop).
        if unsafe { ConvertStringSidToSidW(wide(OsStr::new(s)).as_ptr(), &mut sid) } == 0 {
            return Err(format!("SID {s}: {}", last_error()));
        }
        Ok(LocalSid(sid))
    }
}

impl Drop for LocalSid {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSidToSidW with LocalAlloc.
        unsafe { LocalFree(self.0) };
    }
}

fn sid_text(sid: PSID) -> Option<String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is a valid SID; the string is LocalAlloc'd and freed below.
    unsafe {
        if ConvertSidToStringSidW(sid, &mut text) == 0 {
            return None;
        }
        let len = (0..).take_while(|&i| *text.add(i) != 0).count();
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
        LocalFree(text.cast());
        Some(s)
    }
}

/// The SID of a local group (or any account) by name; None when no such account exists.
fn account_sid(name: &str) -> Result<Option<String>, String> {
    let name_w = wide(OsStr::new(name));
    let mut sid = vec![0u8; 256];
    let mut sid_len = sid.len() as u32;
    let mut domain = vec![0u16; 256];
    let mut domain_len = domain.len() as u32;
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: buffers with their sizes; a SID is at most 68 bytes, a domain name 255 chars.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            name_w.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    };
    if ok == 0 {
        let e = last_error();
        if e.raw_os_error() == Some(ERROR_NONE_MAPPED as i32) {
            return Ok(None);
        }
        return Err(format!("cannot look up the account {name:?}: {e}"));
    }
    Ok(sid_text(sid.as_mut_ptr().cast()))
}

/// A security descriptor from SDDL, LocalAlloc'd by the system.
struct Descriptor(PSECURITY_DESCRIPTOR);

impl Descriptor {
    fn from_sddl(sddl: &str) -> Result<Descriptor, String> {
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: a NUL-terminated SDDL string in, a LocalAlloc'd descriptor out (freed in Drop).
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide(OsStr::new(sddl)).as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(format!("the pipe's security descriptor {sddl}: {}", last_error()));
        }
        Ok(Descriptor(sd))
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

// SAFETY: the descriptor is only read (by CreateNamedPipeW) after it is made.
unsafe impl Send for Descriptor {}
unsafe impl Sync for Descriptor {}

fn create_pipe(name: &str, sd: &Descriptor, first: bool) -> std::io::Result<NamedPipeServer> {
    let mut sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    };
    // SAFETY: `sa` and the descriptor it points to live across the call.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .pipe_mode(PipeMode::Byte)
            .create_with_security_attributes_raw(name, (&mut sa as *mut SECURITY_ATTRIBUTES).cast::<c_void>())
    }
}

struct Token(HANDLE);

impl Drop for Token {
    fn drop(&mut self) {
        // SAFETY: a handle OpenThreadToken returned.
        unsafe { CloseHandle(self.0) };
    }
}

impl Token {
    /// The token of the pipe's client: impersonated just long enough to open it (the client
    /// allows identification, not more), then reverted. The client must have written first.
    fn of_client(pipe: HANDLE) -> Result<Token, String> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `pipe` is a connected server end. The thread acts as the client only
        // between these calls, none of which can await or unwind.
        unsafe {
            if ImpersonateNamedPipeClient(pipe) == 0 {
                return Err(format!("cannot identify the caller: {}", last_error()));
            }
            let opened = OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token);
            let open_error = last_error();
            if RevertToSelf() == 0 {
                // Going on as the caller would be worse than stopping.
                std::process::abort();
            }
            if opened == 0 {
                return Err(format!("cannot read the caller's token: {open_error}"));
            }
        }
        Ok(Token(token))
    }

    fn user_sid(&self) -> Result<String, String> {
        let mut buf = vec![0u64; 64]; // 512 bytes, aligned for TOKEN_USER
        let mut len = 0u32;
        // SAFETY: the buffer and its size in bytes; TOKEN_USER points into it.
        unsafe {
            if GetTokenInformation(self.0, TokenUser, buf.as_mut_ptr().cast(), (buf.len() * 8) as u32, &mut len) == 0 {
                return Err(format!("cannot read the caller's user: {}", last_error()));
            }
            let user = &*(buf.as_ptr() as *const TOKEN_USER);
            sid_text(user.User.Sid).ok_or_else(|| "the caller's user has no SID text".to_owned())
        }
    }

    fn member_of(&self, sid: &LocalSid) -> bool {
        let mut is = 0;
        // SAFETY: an impersonation token (OpenThreadToken while impersonating) and a SID.
        unsafe { CheckTokenMembership(self.0, sid.0, &mut is) != 0 && is != 0 }
    }
}

/// Whether this process may create adapters: SYSTEM, or an elevated administrator.
fn privileged() -> bool {
    let Ok(admins) = LocalSid::parse(ADMINISTRATORS_SID) else { return false };
    let mut is = 0;
    // SAFETY: a null token means this thread's own (primary) token.
    unsafe { CheckTokenMembership(std::ptr::null_mut(), admins.0, &mut is) != 0 && is != 0 }
}

struct Access {
    /// The allowed group's name and SID.
    group: Option<(String, LocalSid)>,
    admins: LocalSid,
}

// SAFETY: the SIDs are only read after they are made.
unsafe impl Send for Access {}
unsafe impl Sync for Access {}

/// Runs the service: under the SCM when it started this process, else in this console.
/// Blocking: it makes its own runtime.
pub fn run(opts: Options) -> Result<(), String> {
    super::check_prefix(&opts.interface_prefix)?;
    if opts.userspace {
        return Err(
            "--userspace: on Windows tunnels use WireGuard-NT (wireguard.dll); there is no userspace mode".into()
        );
    }
    // The WireGuard library loads wireguard.dll relative to the current directory, and a
    // service starts in System32: work from the program's own folder.
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    if let Some(dir) = exe.parent() {
        std::env::set_current_dir(dir).map_err(|e| format!("cannot change to {}: {e}", dir.display()))?;
    }
    if opts.console {
        return console(opts);
    }
    *PENDING.lock().unwrap_or_else(|p| p.into_inner()) = Some(opts);
    match windows_service::service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => RESULT.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or(Ok(())),
        Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(NOT_UNDER_SCM) => {
            tracing::info!("not started by the Service Control Manager: running in this console (Ctrl+C stops)");
            let opts = PENDING.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or("options gone")?;
            console(opts)
        }
        Err(e) => Err(format!("cannot connect to the Service Control Manager: {e}")),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))
}

fn console(opts: Options) -> Result<(), String> {
    runtime()?.block_on(listen(
        opts,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        || {},
    ))
}

/// The options for the SCM's thread, and its result back.
static PENDING: Mutex<Option<Options>> = Mutex::new(None);
static RESULT: Mutex<Option<Result<(), String>>> = Mutex::new(None);

windows_service::define_windows_service!(ffi_service_main, service_main);

fn service_main(_args: Vec<OsString>) {
    let result = under_scm();
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    *RESULT.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
}

fn report(status: ServiceStatusHandle, state: ServiceState, exit: ServiceExitCode) {
    let controls = if state == ServiceState::Running {
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
    } else {
        ServiceControlAccept::empty()
    };
    let s = ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: controls,
        exit_code: exit,
        checkpoint: 0,
        wait_hint: Duration::from_secs(30),
        process_id: None,
    };
    if let Err(e) = status.set_service_status(s) {
        tracing::warn!("cannot report {state:?} to the Service Control Manager: {e}");
    }
}

/// The SCM's service thread: Running once the pipe listens, Stopped after every tunnel is
/// down (on Stop, or Shutdown when Windows shuts down).
fn under_scm() -> Result<(), String> {
    let opts = PENDING.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or("options gone")?;
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = tx.send(true);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = service_control_handler::register(SERVICE_NAME, handler)
        .map_err(|e| format!("cannot register with the Service Control Manager: {e}"))?;
    report(status, ServiceState::StartPending, ServiceExitCode::Win32(0));
    let stop = async move {
        let _ = rx.wait_for(|stop| *stop).await;
        report(status, ServiceState::StopPending, ServiceExitCode::Win32(0));
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(listen(opts, stop, || report(status, ServiceState::Running, ServiceExitCode::Win32(0))))
    });
    let exit = if result.is_ok() { ServiceExitCode::Win32(0) } else { ServiceExitCode::ServiceSpecific(1) };
    report(status, ServiceState::Stopped, exit);
    result
}

/// Listens on the pipe until `stop` completes, then takes every tunnel down.
async fn listen(opts: Options, stop: impl Future<Output = ()>, ready: impl FnOnce()) -> Result<(), String> {
    if !privileged() {
        return Err(format!(
            "onramp-client service must run as LocalSystem (sc start {SERVICE_NAME}) or from an elevated \
             prompt (it creates network adapters)"
        ));
    }
    let group = match &opts.group {
        Some(name) => Some((
            name.clone(),
            account_sid(name)?
                .ok_or_else(|| format!("group {name:?} does not exist; create it: net localgroup \"{name}\" /add"))?,
        )),
        None => account_sid(ipc::DEFAULT_GROUP)?.map(|sid| (ipc::DEFAULT_GROUP.to_owned(), sid)),
    };
    let sddl = winacl::group_sddl(group.as_ref().map(|(_, sid)| sid.as_str()))?;
    let sd = Descriptor::from_sddl(&sddl)?;
    let name = crate::tunnel::pipe_path(&opts.socket);
    let mut server = create_pipe(&name, &sd, true).map_err(|e| {
        format!("cannot create the pipe {name}: {e} (another Onramp client service, or another program, has it)")
    })?;
    let manager = tunnels::Manager::new(opts.interface_prefix.clone());
    let removed = manager.cleanup_leftovers();
    if !removed.is_empty() {
        tracing::info!("removed leftovers of an earlier run: {}", removed.join(", "));
    }
    let access = Arc::new(Access {
        group: match group {
            Some((name, sid)) => Some((name, LocalSid::parse(&sid)?)),
            None => None,
        },
        admins: LocalSid::parse(ADMINISTRATORS_SID)?,
    });
    match &access.group {
        Some((g, _)) => {
            tracing::info!(pipe = %name, group = %g, "listening; SYSTEM, Administrators and group members may connect")
        }
        None => tracing::info!(
            pipe = %name,
            "listening for Administrators only; to allow users: net localgroup \"{0}\" /add, net localgroup \"{0}\" USER /add, restart the service (or set ONRAMP_CLIENT_GROUP)",
            ipc::DEFAULT_GROUP
        ),
    }
    let shared = Shared::new(manager, false);
    ready();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            connected = server.connect() => {
                // The next instance first, so that a client never finds the name missing.
                let next = match create_pipe(&name, &sd, false) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!("cannot create another instance of {name}: {e}");
                        break;
                    }
                };
                let conn = std::mem::replace(&mut server, next);
                match connected {
                    Ok(()) => {
                        let (shared, access) = (shared.clone(), access.clone());
                        tokio::spawn(async move { serve_pipe(conn, shared, access).await });
                    }
                    // A client that left at once; its instance is dropped.
                    Err(e) => tracing::debug!("pipe connect: {e}"),
                }
            }
            _ = &mut stop => break,
        }
    }
    shared.shutdown().await;
    Ok(())
}

async fn serve_pipe(pipe: NamedPipeServer, shared: Arc<Shared>, access: Arc<Access>) {
    // Kept as a number: the raw handle is not Send, and the pipe (owner of the handle)
    // outlives its use below.
    let handle = pipe.as_raw_handle() as usize;
    let (rd, mut wr) = tokio::io::split(pipe);
    let mut rd = tokio::io::BufReader::new(rd);
    // Windows lets a server impersonate its client only after reading from the pipe.
    let first = read_line(&mut rd).await;
    if matches!(first, Line::End) {
        return;
    }
    let identified = Token::of_client(handle as HANDLE).and_then(|t| {
        let sid = t.user_sid()?;
        let admin = t.member_of(&access.admins);
        let member = access.group.as_ref().is_some_and(|(_, g)| t.member_of(g));
        Ok((winacl::caller(&sid, admin)?, member))
    });
    let caller = match identified {
        Ok((caller, member)) if caller.admin || member => caller,
        Ok((caller, _)) => {
            // The ACL lets only these in; this is the same rule, said in words.
            tracing::warn!(owner = %caller.owner, "refused a caller outside the allowed group");
            let group = access.group.as_ref().map(|(g, _)| g.as_str());
            super::refuse(&mut wr, winacl::refusal(&caller.owner.to_string(), group)).await;
            return;
        }
        Err(e) => {
            tracing::warn!("{e}");
            super::refuse(&mut wr, e).await;
            return;
        }
    };
    serve(rd, wr, caller, Some(first), shared).await;
}
