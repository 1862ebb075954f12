//! Who a user is, from the operating system (never from the environment alone).

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

/// The name of the user this process runs as.
pub fn current_user() -> Option<String> {
    std::env::var("USER").ok().or_else(|| std::env::var("USERNAME").ok())
}
