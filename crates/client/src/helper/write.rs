//! Where provisioning.json goes and how it is written.

use super::ProvisionError;
use onramp_domain::provisioning::ProvisioningFile;
use std::path::{Path, PathBuf};

/// Where the client of `user` looks for provisioning.json; `None` = the current user.
pub fn default_output(user: Option<&str>) -> Result<PathBuf, ProvisionError> {
    let dir = match user {
        None => crate::dirs::data_dir().map_err(ProvisionError::Usage)?,
        Some(u) => user_data_dir(u)?,
    };
    Ok(dir.join(crate::provision::FILE_NAME))
}

#[cfg(unix)]
fn user_data_dir(user: &str) -> Result<PathBuf, ProvisionError> {
    let home =
        super::os_user::user_home(user).ok_or_else(|| ProvisionError::Usage(format!("no local user {user:?}")))?;
    let base =
        if cfg!(target_os = "macos") { home.join("Library/Application Support") } else { home.join(".local/share") };
    Ok(base.join(crate::dirs::APP_FOLDER))
}

#[cfg(windows)]
fn user_data_dir(user: &str) -> Result<PathBuf, ProvisionError> {
    // An installer running as SYSTEM writes into the interactive user's roaming profile.
    let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
    Ok(PathBuf::from(format!("{drive}\\Users\\{user}\\AppData\\Roaming")).join(crate::dirs::APP_FOLDER))
}

/// Writes the file atomically, without BOM, 0600, never replacing an existing file unless
/// `force`. Run as root for another `user`, it never follows a symbolic link below that
/// user's home (or in the data directory itself): each folder is opened with `O_NOFOLLOW`,
/// the temporary file is created new (`O_EXCL`), and ownership is handed over on the open
/// descriptors. A data directory that is a link or belongs to someone else is refused.
#[cfg(unix)]
pub fn write(path: &Path, file: &ProvisioningFile, force: bool, user: Option<&str>) -> Result<(), ProvisionError> {
    let json = serde_json::to_vec_pretty(file).map_err(|e| ProvisionError::Usage(e.to_string()))?;
    safe::write(path, &json, force, user)
}

#[cfg(not(unix))]
pub fn write(path: &Path, file: &ProvisioningFile, force: bool, user: Option<&str>) -> Result<(), ProvisionError> {
    let _ = user;
    let not_writable =
        |e: std::io::Error| ProvisionError::NotWritable { path: path.display().to_string(), message: e.to_string() };
    if path.exists() && !force {
        return Err(ProvisionError::Exists(path.display().to_string()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::dirs::ensure_private_dir(dir).map_err(not_writable)?;
    let json = serde_json::to_vec_pretty(file).map_err(|e| ProvisionError::Usage(e.to_string()))?;
    crate::dirs::write_private(path, &json).map_err(not_writable)
}

#[cfg(unix)]
mod safe {
    use super::ProvisionError;
    use std::ffi::{CString, OsStr, OsString};
    use std::io::{Error, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Component, Path};

    fn cstr(name: &OsStr) -> std::io::Result<CString> {
        CString::new(name.as_bytes()).map_err(|_| Error::new(std::io::ErrorKind::InvalidInput, "NUL in a path"))
    }

    fn check(rc: libc::c_int) -> std::io::Result<libc::c_int> {
        if rc < 0 {
            Err(Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    fn open_at(dir: &OwnedFd, name: &OsStr, flags: libc::c_int, mode: libc::mode_t) -> std::io::Result<OwnedFd> {
        let c = cstr(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name; the new
        // descriptor is owned by the returned OwnedFd.
        let fd = check(unsafe {
            libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode as libc::c_uint)
        })?;
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `lstat` of `name` in `dir`; `None` when there is nothing.
    fn stat_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Option<libc::stat>> {
        let c = cstr(name)?;
        // SAFETY: the struct is plain data the kernel fills.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        match check(unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }) {
            Ok(_) => Ok(Some(st)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn stat_fd(fd: &OwnedFd) -> std::io::Result<libc::stat> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
        Ok(st)
    }

    fn is_link(st: &libc::stat) -> bool {
        st.st_mode & libc::S_IFMT == libc::S_IFLNK
    }

    fn shown(p: &Path) -> String {
        p.display().to_string()
    }

    fn fail(p: &Path, message: String) -> ProvisionError {
        ProvisionError::NotWritable { path: shown(p), message }
    }

    fn io(p: &Path) -> impl Fn(Error) -> ProvisionError + '_ {
        move |e| fail(p, e.to_string())
    }

    pub fn write(path: &Path, bytes: &[u8], force: bool, user: Option<&str>) -> Result<(), ProvisionError> {
        let name = path.file_name().ok_or_else(|| fail(path, "names no file".into()))?;
        let data_dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        let target = user.and_then(super::super::os_user::passwd);
        // Root writing for another user hands over what it creates; everyone else writes as themself.
        let hand_over = target.as_ref().filter(|_| euid == 0).map(|(_, uid, gid)| (*uid, *gid));
        let owner_uid = target.as_ref().map(|t| t.1).unwrap_or(euid);
        // The user controls everything below their home: walk it without following links.
        // Above it (or for a path elsewhere, above the data directory) the path is the
        // caller's own choice.
        let below_home = target.as_ref().and_then(|(home, _, _)| data_dir.strip_prefix(home).ok().map(|r| (home, r)));
        let (base, rel): (&Path, Vec<OsString>) = match below_home {
            Some((home, rel)) if rel.components().next().is_some() => {
                let mut parts = vec![];
                for c in rel.components() {
                    match c {
                        Component::Normal(p) => parts.push(p.to_owned()),
                        _ => return Err(fail(path, "must not contain \"..\" or \".\" below the home folder".into())),
                    }
                }
                (home.as_path(), parts)
            }
            _ => match (data_dir.parent(), data_dir.file_name()) {
                (Some(parent), Some(last)) => {
                    (if parent.as_os_str().is_empty() { Path::new(".") } else { parent }, vec![last.to_owned()])
                }
                _ => (data_dir, vec![]),
            },
        };
        std::fs::create_dir_all(base).map_err(io(base))?;
        let base_file =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(base).map_err(io(base))?;
        let mut dir = OwnedFd::from(base_file);
        let mut at = base.to_path_buf();
        let last = rel.len();
        for (i, part) in rel.iter().enumerate() {
            at.push(part);
            let created = match stat_at(&dir, part).map_err(io(&at))? {
                Some(st) if is_link(&st) => {
                    return Err(fail(&at, "is a symbolic link; refusing to write through it".into()));
                }
                Some(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => {
                    return Err(fail(&at, "is not a folder".into()));
                }
                Some(_) => false,
                None => {
                    let c = cstr(part).map_err(io(&at))?;
                    // SAFETY: valid descriptor and name.
                    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) }).map_err(io(&at))?;
                    true
                }
            };
            // O_NOFOLLOW closes the window between the check and the open.
            let next =
                open_at(&dir, part, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(|e| match e.raw_os_error() {
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                        fail(&at, "is a symbolic link or not a folder; refusing".into())
                    }
                    _ => io(&at)(e),
                })?;
            if created {
                if let Some((uid, gid)) = hand_over {
                    // SAFETY: a descriptor we own.
                    check(unsafe { libc::fchown(next.as_raw_fd(), uid, gid) }).map_err(io(&at))?;
                }
            }
            if i + 1 == last {
                let st = stat_fd(&next).map_err(io(&at))?;
                if st.st_uid != owner_uid {
                    return Err(fail(
                        &at,
                        format!(
                            "belongs to uid {}, not to {} (uid {owner_uid}); refusing to write into it",
                            st.st_uid,
                            user.unwrap_or("the current user")
                        ),
                    ));
                }
                // SAFETY: as above. The data folder is the user's alone.
                check(unsafe { libc::fchmod(next.as_raw_fd(), 0o700) }).map_err(io(&at))?;
            }
            dir = next;
        }
        match stat_at(&dir, name).map_err(io(path))? {
            Some(_) if !force => return Err(ProvisionError::Exists(shown(path))),
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => return Err(fail(path, "is a folder".into())),
            _ => {}
        }
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let tmp_path = data_dir.join(&tmp_name);
        // Created new: whatever sits at this name (a planted link, a hard link to another
        // user's file) is never opened.
        let fd = open_at(&dir, &tmp_name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600).map_err(|e| {
            if e.raw_os_error() == Some(libc::EEXIST) {
                fail(
                    &tmp_path,
                    "already exists (left over, or planted); refusing to write through it. Remove it and run again"
                        .into(),
                )
            } else {
                io(&tmp_path)(e)
            }
        })?;
        let unlink_tmp = || {
            if let Ok(c) = cstr(&tmp_name) {
                // SAFETY: valid descriptor and name; removes our own temporary file.
                unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
            }
        };
        let written = (|| -> std::io::Result<()> {
            if let Some((uid, gid)) = hand_over {
                // SAFETY: a descriptor we own.
                check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
            }
            check(unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) })?;
            let mut f = std::fs::File::from(fd);
            f.write_all(bytes)?;
            f.sync_all()?;
            let (from, to) = (cstr(&tmp_name)?, cstr(name)?);
            // SAFETY: both names relative to the same directory descriptor; rename replaces
            // the entry itself, never what a link there points to.
            check(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })?;
            Ok(())
        })();
        if let Err(e) = written {
            unlink_tmp();
            return Err(io(path)(e));
        }
        Ok(())
    }
}
