//! One app per user: a second launch (or the OS opening an `onramp://` link) hands its
//! request to the running app over a private local socket and exits.

use std::io::Write;
use std::path::Path;

/// What a launch says to the running app: `show`, or `link <onramp://...>`.
pub fn message(deep_link: Option<&str>) -> String {
    match deep_link {
        Some(l) => format!("link {l}\n"),
        None => "show\n".into(),
    }
}

pub fn parse(line: &str) -> Option<crate::Outside> {
    let line = line.trim_end();
    match line.split_once(' ') {
        Some(("link", l)) => Some(crate::Outside::DeepLink(l.to_owned())),
        None if line == "show" => Some(crate::Outside::Show),
        _ => None,
    }
}

pub enum Claim {
    /// Another app runs; the message was handed to it.
    Forwarded,
    /// This is the app: requests from later launches come through `serve`.
    Primary(Listener),
}

#[cfg(unix)]
pub struct Listener(std::os::unix::net::UnixListener);

/// Becomes the app, or forwards `msg` to the one that runs. The socket lives in the
/// user's private data directory.
#[cfg(unix)]
pub fn claim(data_dir: &Path, msg: &str) -> std::io::Result<Claim> {
    use std::os::unix::net::{UnixListener, UnixStream};
    let path = data_dir.join("desktop.sock");
    let forward = |mut s: UnixStream| -> std::io::Result<Claim> {
        s.write_all(msg.as_bytes())?;
        Ok(Claim::Forwarded)
    };
    match UnixListener::bind(&path) {
        Ok(l) => Ok(Claim::Primary(Listener(l))),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match UnixStream::connect(&path) {
            Ok(s) => forward(s),
            Err(_) => {
                // Left by an app that crashed: nobody listens.
                std::fs::remove_file(&path)?;
                Ok(Claim::Primary(Listener(UnixListener::bind(&path)?)))
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
            for conn in self.0.incoming().flatten() {
                let mut line = String::new();
                let mut r = std::io::BufReader::new(std::io::Read::take(conn, 8192));
                if r.read_line(&mut line).is_ok() {
                    if let Some(o) = parse(&line) {
                        f(o);
                    }
                }
            }
        });
    }
}

#[cfg(windows)]
pub struct Listener(String);

#[cfg(windows)]
fn pipe_name() -> String {
    let user = std::env::var("USERNAME").unwrap_or_default();
    let user: String = user.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!(r"\\.\pipe\onramp-desktop-{user}")
}

#[cfg(windows)]
pub fn claim(_data_dir: &Path, msg: &str) -> std::io::Result<Claim> {
    let name = pipe_name();
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&name) {
        f.write_all(msg.as_bytes())?;
        return Ok(Claim::Forwarded);
    }
    Ok(Claim::Primary(Listener(name)))
}

#[cfg(windows)]
impl Listener {
    pub fn serve(self, f: impl Fn(crate::Outside) + Send + 'static) {
        let _ = std::thread::Builder::new().name("onramp-single".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                use tokio::io::AsyncBufReadExt;
                use tokio::net::windows::named_pipe::ServerOptions;
                let mut first = true;
                loop {
                    let server = match ServerOptions::new().first_pipe_instance(first).create(&self.0) {
                        Ok(s) => s,
                        Err(e) => return tracing::warn!("single-instance pipe: {e}"),
                    };
                    first = false;
                    if server.connect().await.is_err() {
                        continue;
                    }
                    let mut line = String::new();
                    let mut r = tokio::io::BufReader::new(server);
                    if r.read_line(&mut line).await.is_ok() {
                        if let Some(o) = parse(&line) {
                            f(o);
                        }
                    }
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back() {
        assert_eq!(parse(&message(None)), Some(crate::Outside::Show));
        assert_eq!(
            parse(&message(Some("onramp://enroll?a=b"))),
            Some(crate::Outside::DeepLink("onramp://enroll?a=b".into()))
        );
        assert_eq!(parse("bogus"), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_second_launch_reaches_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let Claim::Primary(l) = claim(dir.path(), "show\n").unwrap() else { panic!("first launch must be primary") };
        let (tx, rx) = std::sync::mpsc::channel();
        l.serve(move |o| tx.send(o).unwrap());
        assert!(matches!(claim(dir.path(), &message(Some("onramp://enroll?x=1"))).unwrap(), Claim::Forwarded));
        let got = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(got, crate::Outside::DeepLink("onramp://enroll?x=1".into()));
    }

    #[cfg(unix)]
    #[test]
    fn a_stale_socket_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        drop(std::os::unix::net::UnixListener::bind(dir.path().join("desktop.sock")).unwrap());
        assert!(matches!(claim(dir.path(), "show\n").unwrap(), Claim::Primary(_)));
    }
}
