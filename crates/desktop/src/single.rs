//! One app per user: a second launch (or the OS opening an `onramp://` link) hands its
//! request to the running app over a local socket (a named pipe on Windows) and exits. A
//! link (it carries a token) never goes through the socket: the launch writes it to a
//! private file in the user's data directory and sends only that file's name, so whatever
//! answers on the socket learns nothing secret.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What a launch says to the running app: `show`, or `link <file name>`.
pub fn message(link_file: Option<&str>) -> String {
    match link_file {
        Some(f) => format!("link {f}\n"),
        None => "show\n".into(),
    }
}

/// A request read from the socket, before its link file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Show,
    LinkFile(String),
}

pub fn parse(line: &str) -> Option<Request> {
    let line = line.trim_end();
    match line.split_once(' ') {
        // Only names this module makes: nothing can point the app at another path.
        Some(("link", f)) if is_link_file(f) => Some(Request::LinkFile(f.to_owned())),
        None if line == "show" => Some(Request::Show),
        _ => None,
    }
}

fn is_link_file(name: &str) -> bool {
    name.strip_prefix("incoming-link-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads and deletes a link file the other launch wrote.
pub fn take_link(data_dir: &Path, req: Request) -> Option<crate::Outside> {
    match req {
        Request::Show => Some(crate::Outside::Show),
        Request::LinkFile(name) => {
            let path = data_dir.join(name);
            let link = std::fs::read_to_string(&path).ok()?;
            let _ = std::fs::remove_file(&path);
            Some(crate::Outside::DeepLink(link.trim().to_owned()))
        }
    }
}

/// Writes `link` where only this user can read it; returns the file's name.
fn write_link(data_dir: &Path, link: &str) -> std::io::Result<String> {
    let name = format!("incoming-link-{}", std::process::id());
    onramp_client::dirs::write_private(&data_dir.join(&name), link.as_bytes())?;
    Ok(name)
}

pub enum Claim {
    /// Another app runs; the request was handed to it.
    Forwarded,
    /// This is the app: requests from later launches come through `serve`.
    Primary(Listener),
}

/// Sends the request over an open connection to the running app.
fn forward(mut to: impl Write, data_dir: &Path, link: Option<&str>) -> std::io::Result<Claim> {
    let file = link.map(|l| write_link(data_dir, l)).transpose()?;
    to.write_all(message(file.as_deref()).as_bytes())?;
    Ok(Claim::Forwarded)
}

#[cfg(unix)]
pub struct Listener {
    socket: std::os::unix::net::UnixListener,
    data_dir: PathBuf,
}

/// Becomes the app, or forwards the request to the one that runs. The socket lives in the
/// user's private data directory.
#[cfg(unix)]
pub fn claim(data_dir: &Path, link: Option<&str>) -> std::io::Result<Claim> {
    use std::os::unix::net::{UnixListener, UnixStream};
    let path = data_dir.join("desktop.sock");
    let primary = |socket| Ok(Claim::Primary(Listener { socket, data_dir: data_dir.to_owned() }));
    match UnixListener::bind(&path) {
        Ok(l) => primary(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match UnixStream::connect(&path) {
            Ok(s) => forward(s, data_dir, link),
            Err(_) => {
                // Left by an app that crashed: nobody listens.
                std::fs::remove_file(&path)?;
                primary(UnixListener::bind(&path)?)
            }
        },
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
impl Listener {
    /// Hands each request to `f` on a thread of its own.
    pub fn serve(self, f: impl Fn(crate::Outside) + Send + 'static) {
        let _ = std::thread::Builder::new().name("onramp-single".into()).spawn(move || {
            use std::io::BufRead;
            for conn in self.socket.incoming().flatten() {
                // A silent client must not hold the next launch up for long.
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut line = String::new();
                let mut r = std::io::BufReader::new(std::io::Read::take(conn, 8192));
                if r.read_line(&mut line).is_ok() {
                    if let Some(o) = parse(&line).and_then(|req| take_link(&self.data_dir, req)) {
                        f(o);
                    }
                }
            }
        });
    }
}

#[cfg(windows)]
pub struct Listener {
    name: String,
    data_dir: PathBuf,
}

/// One pipe per user and session: named after the data directory (which is per user).
#[cfg(windows)]
fn pipe_name(data_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    let session = std::env::var("SESSIONNAME").unwrap_or_default();
    session.hash(&mut h);
    format!(r"\\.\pipe\onramp-desktop-{:016x}", h.finish())
}

#[cfg(windows)]
pub fn claim(data_dir: &Path, link: Option<&str>) -> std::io::Result<Claim> {
    const ERROR_PIPE_BUSY: i32 = 231;
    let name = pipe_name(data_dir);
    for _ in 0..20 {
        match std::fs::OpenOptions::new().write(true).open(&name) {
            Ok(f) => return forward(f, data_dir, link),
            // The app is between two clients: its next pipe instance comes at once.
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(_) => break,
        }
    }
    Ok(Claim::Primary(Listener { name, data_dir: data_dir.to_owned() }))
}

#[cfg(windows)]
impl Listener {
    pub fn serve(self, f: impl Fn(crate::Outside) + Send + Sync + 'static) {
        let _ = std::thread::Builder::new().name("onramp-single".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                use tokio::io::AsyncBufReadExt;
                use tokio::net::windows::named_pipe::ServerOptions;
                let f = std::sync::Arc::new(f);
                let mut server = match ServerOptions::new().first_pipe_instance(true).create(&self.name) {
                    Ok(s) => s,
                    Err(e) => return tracing::warn!("single-instance pipe: {e}"),
                };
                loop {
                    if server.connect().await.is_err() {
                        continue;
                    }
                    // The next instance exists before this client is served, so a launch
                    // never finds no pipe while the app runs.
                    let connected = server;
                    server = match ServerOptions::new().create(&self.name) {
                        Ok(s) => s,
                        Err(e) => return tracing::warn!("single-instance pipe: {e}"),
                    };
                    let (f, dir) = (f.clone(), self.data_dir.clone());
                    tokio::spawn(async move {
                        let mut line = String::new();
                        let mut r = tokio::io::BufReader::new(connected);
                        let read = tokio::time::timeout(std::time::Duration::from_secs(2), r.read_line(&mut line));
                        if let Ok(Ok(_)) = read.await {
                            if let Some(o) = parse(&line).and_then(|req| take_link(&dir, req)) {
                                f(o);
                            }
                        }
                    });
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_and_name_only_link_files() {
        assert_eq!(parse(&message(None)), Some(Request::Show));
        assert_eq!(parse("link incoming-link-42\n"), Some(Request::LinkFile("incoming-link-42".into())));
        for bad in ["bogus", "link ../../etc/passwd", "link incoming-link-", "link incoming-link-4x", "link onramp://x"]
        {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_second_launch_reaches_the_first_and_its_link_never_crosses_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let Claim::Primary(l) = claim(dir.path(), None).unwrap() else { panic!("first launch must be primary") };
        // Read what crosses the socket by standing in for the app.
        let (tx, rx) = std::sync::mpsc::channel();
        l.serve(move |o| tx.send(o).unwrap());
        assert!(matches!(claim(dir.path(), Some("onramp://enroll?x=1")).unwrap(), Claim::Forwarded));
        let got = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(got, crate::Outside::DeepLink("onramp://enroll?x=1".into()));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("desktop.sock")], "the link file is gone");
    }

    #[cfg(unix)]
    #[test]
    fn a_stale_socket_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        drop(std::os::unix::net::UnixListener::bind(dir.path().join("desktop.sock")).unwrap());
        assert!(matches!(claim(dir.path(), None).unwrap(), Claim::Primary(_)));
    }
}
