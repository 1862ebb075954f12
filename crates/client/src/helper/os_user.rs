//! Who a user is, from the operating system (never from the environment alone).

#[cfg(unix)]
use std::path::PathBuf;

#[cfg(unix)]
pub(crate) fn passwd(user: &str) -> Option<(PathBuf, u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy out at once.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return None;
        }
        let home = std::ffi::CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned();
        Some((PathBuf::from(home), (*pw).pw_uid, (*pw).pw_gid))
    }
}

#[cfg(unix)]
pub(crate) fn user_home(user: &str) -> Option<PathBuf> {
    passwd(user).map(|p| p.0)
}

/// The name of the user this process runs as, asked of the OS (a service, a CI job or an
/// installer often runs without `$USER`); the environment only where the OS gives none.
pub fn current_user() -> Option<String> {
    os_current_user().or_else(|| std::env::var("USER").ok()).or_else(|| std::env::var("USERNAME").ok())
}

#[cfg(unix)]
fn os_current_user() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwuid_r fills `pwd` with pointers into `buf`, which outlives their use;
    // the name is copied out before `buf` is dropped.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(libc::geteuid(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    }
}

#[cfg(windows)]
fn os_current_user() -> Option<String> {
    #[link(name = "advapi32")]
    extern "system" {
        fn GetUserNameW(buffer: *mut u16, size: *mut u32) -> i32;
    }
    // UNLEN (256) plus the terminating NUL.
    let mut buf = [0u16; 257];
    let mut len = buf.len() as u32;
    // SAFETY: the buffer and its length in characters, as the API documents; on success
    // `len` counts the characters written including the NUL.
    let ok = unsafe { GetUserNameW(buf.as_mut_ptr(), &mut len) };
    if ok == 0 || len <= 1 {
        return None;
    }
    Some(String::from_utf16_lossy(&buf[..len as usize - 1]))
}

#[cfg(not(any(unix, windows)))]
fn os_current_user() -> Option<String> {
    None
}
