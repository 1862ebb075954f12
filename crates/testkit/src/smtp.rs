//! A real SMTP server (Python `aiosmtpd`) that stores every message it receives,
//! so tests can exercise the actual SMTP client path, including outages.
//!
//! Each message is stored byte-for-byte as received (no re-serialisation), together
//! with its SMTP envelope, as `<mailbox>/new/<ordered-name>.msg`: one JSON line
//! `{"mail_from":..,"rcpt_tos":[..]}` followed by the raw message. Files are written
//! to `tmp/` and renamed into `new/`, so readers never see partial messages.
//!
//! `ONRAMP_TEST_PYTHON` selects the interpreter; otherwise the first of
//! `/usr/bin/python3` and `python3` on PATH that can import `aiosmtpd` is used
//! (Debian's `python3-aiosmtpd` is invisible to pyenv/venv interpreters).

use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Greeting hostname; lets the readiness probe tell our server from a stranger.
const HOSTNAME: &str = "onramp-test-smtp";

/// Accepts any AUTH (PLAIN/LOGIN, also without TLS) so clients configured with
/// credentials work too; exits when its parent dies so aborted tests leave no orphans.
const SERVER_PY: &str = r#"
import asyncio, json, logging, os, sys, time
from aiosmtpd.smtp import SMTP, AuthResult

host, port, root, hostname = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
# Optional: mode (plain | starttls | tls), certificate, key, and the one login accepted.
mode = sys.argv[5] if len(sys.argv) > 5 else "plain"
cert, key = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else (None, None)
login = (os.environ.get("SINK_USER", "").encode(), os.environ.get("SINK_PASS", "").encode())
parent = os.getppid()
seq = 0
logging.getLogger("mail.log").setLevel(logging.ERROR)

class Sink:
    async def handle_DATA(self, server, session, envelope):
        global seq
        seq += 1
        name = "%020d-%08d-%d.msg" % (time.time_ns(), seq, os.getpid())
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        data = envelope.original_content
        if data is None:
            data = envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        tmp = os.path.join(root, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(json.dumps(meta).encode() + b"\n" + data)
        os.rename(tmp, os.path.join(root, "new", name))
        return "250 OK stored"

def accept_any(server, session, envelope, mechanism, auth_data):
    if not login[0]:
        return AuthResult(success=True)
    ok = (auth_data.login, auth_data.password) == login
    return AuthResult(success=ok, handled=False)

async def watch_parent():
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)

async def main():
    loop = asyncio.get_running_loop()
    ctx = None
    if cert:
        import ssl
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
    # STARTTLS mode refuses anything before the upgrade; with a login configured, mail
    # without AUTH is refused, so a delivered message proves the client authenticated.
    factory = lambda: SMTP(Sink(), hostname=hostname, enable_SMTPUTF8=True,
                           authenticator=accept_any, auth_require_tls=(mode != "plain"),
                           auth_required=bool(login[0]),
                           tls_context=ctx if mode == "starttls" else None,
                           require_starttls=(mode == "starttls"))
    srv = await loop.create_server(factory, host, port, ssl=ctx if mode == "tls" else None)
    watcher = asyncio.ensure_future(watch_parent())
    print("listening on %s:%d" % (host, port), flush=True)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
"#;

/// One message as received by [`SmtpSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// Envelope recipients (RCPT TO), i.e. who it was actually delivered to (incl. Bcc).
    pub to: Vec<String>,
    /// Envelope sender (MAIL FROM).
    pub from: String,
    /// Decoded `Subject:` header, empty if missing.
    pub subject: String,
    /// Decoded text/plain body (mail-parser derives it from the HTML if there is none).
    pub text: String,
    /// Decoded text/html body, only if the message really has an HTML part.
    pub html: Option<String>,
    /// (filename, "type/subtype", decoded bytes) for each attachment.
    pub attachments: Vec<(String, String, Vec<u8>)>,
    /// The message exactly as transferred (after SMTP dot-unstuffing).
    pub raw: Vec<u8>,
}

/// A running SMTP server on 127.0.0.1 that records what it receives.
pub struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    python: PathBuf,
    child: Option<Child>,
    tls: Option<SinkTls>,
}

/// How a TLS sink talks: STARTTLS (upgrade required) or implicit TLS from the first byte,
/// with a certificate and key (PEM files) and optionally the one login it accepts.
#[derive(Debug, Clone)]
pub struct SinkTls {
    pub implicit: bool,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub login: Option<(String, String)>,
}

impl SmtpSink {
    /// Starts the server on a free port and waits until it answers SMTP.
    /// Panics if python3/aiosmtpd is missing or the server does not come up.
    pub async fn start() -> SmtpSink {
        let python = find_python();
        let dir = tempfile::Builder::new().prefix("onramp-smtp-").tempdir().expect("create SMTP mailbox dir");
        for sub in ["tmp", "new"] {
            fs::create_dir(dir.path().join(sub)).expect("create SMTP mailbox subdir");
        }
        let mut sink = SmtpSink { port: free_port(), dir, python, child: None, tls: None };
        sink.spawn().await;
        sink
    }

    /// Like [`SmtpSink::start`], speaking STARTTLS or implicit TLS.
    pub async fn start_tls(tls: SinkTls) -> SmtpSink {
        let python = find_python();
        let dir = tempfile::Builder::new().prefix("onramp-smtp-").tempdir().expect("create SMTP mailbox dir");
        for sub in ["tmp", "new"] {
            fs::create_dir(dir.path().join(sub)).expect("create SMTP mailbox subdir");
        }
        let mut sink = SmtpSink { port: free_port(), dir, python, child: None, tls: Some(tls) };
        sink.spawn().await;
        sink
    }

    /// Port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server to simulate an outage; the port then refuses connections.
    pub async fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port with the same mailbox.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Mailbox directory (messages are in `new/`, server output in `server.log`).
    pub fn mailbox_dir(&self) -> &Path {
        self.dir.path()
    }

    /// All messages received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let new_dir = self.dir.path().join("new");
        let mut files: Vec<PathBuf> = fs::read_dir(&new_dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", new_dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "msg"))
            .collect();
        // Names start with a zero-padded nanosecond timestamp, so this is arrival order.
        files.sort();
        files
            .iter()
            .map(|p| {
                let bytes = fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                parse_stored(&bytes).unwrap_or_else(|e| panic!("malformed stored mail {}: {e}", p.display()))
            })
            .collect()
    }

    /// Polls until at least `n` messages have arrived and returns all of them.
    /// Panics on timeout, listing what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if msgs.len() >= n {
                return msgs;
            }
            if Instant::now() >= deadline {
                let summary: Vec<String> =
                    msgs.iter().map(|m| format!("  - to {:?}, subject {:?}", m.to, m.subject)).collect();
                panic!(
                    "SmtpSink (port {}): expected at least {n} message(s) within {timeout:?}, \
                     got {}:\n{}\nserver log:\n{}",
                    self.port,
                    msgs.len(),
                    summary.join("\n"),
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log_text(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let log_start = self.log_text().len();
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open SMTP server log");
        // Output goes to a file, not our pipes: a child holding the test's stdout
        // would make nextest report the test as leaky.
        let mut cmd = Command::new(&self.python);
        cmd.arg("-c").arg(SERVER_PY).arg("127.0.0.1").arg(self.port.to_string()).arg(self.dir.path()).arg(HOSTNAME);
        if let Some(t) = &self.tls {
            cmd.arg(if t.implicit { "tls" } else { "starttls" }).arg(&t.cert_file).arg(&t.key_file);
            if let Some((user, pass)) = &t.login {
                // The environment, not argv: other local users can read a process's argv.
                cmd.env("SINK_USER", user).env("SINK_PASS", pass);
            }
        }
        let child = cmd
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {} for the SMTP test server: {e}\n{INSTALL_HINT}", self.python.display())
            });
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                panic!(
                    "SMTP test server exited during start-up ({status}) on port {}:\n{}\n{INSTALL_HINT}",
                    self.port,
                    self.log_text()
                );
            }
            // An implicit-TLS server's greeting is encrypted: its "listening" line says it is up.
            let up = match &self.tls {
                Some(t) if t.implicit => self.log_text().get(log_start..).is_some_and(|l| l.contains("listening on")),
                _ => probe(self.port).await,
            };
            if up {
                return;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("SMTP test server did not answer on 127.0.0.1:{} within 20s:\n{}", self.port, self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // Reaped => the listening socket is closed once this returns.
            let _ = child.wait();
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.kill();
    }
}

const INSTALL_HINT: &str = "The SMTP test sink needs python3 with aiosmtpd. Install it with:\n    \
     apt-get install -y python3-aiosmtpd\n(or point ONRAMP_TEST_PYTHON at an interpreter that can `import aiosmtpd`)";

fn find_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("ONRAMP_TEST_PYTHON") {
            candidates.push(p.into());
        }
        candidates.push("/usr/bin/python3".into());
        candidates.push("python3".into());
        for c in &candidates {
            let ok = Command::new(c)
                .args(["-c", "import aiosmtpd.smtp"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(c.clone());
            }
        }
        Err(candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "))
    });
    match found {
        Ok(p) => p.clone(),
        Err(tried) => panic!(
            "\n==================== onramp-testkit: SMTP sink unavailable ====================\n\
             No python3 that can `import aiosmtpd` (tried: {tried}).\n{INSTALL_HINT}\n\
             ================================================================================\n"
        ),
    }
}

/// Asks the OS for a free port. Racy in principle (it is released before the server
/// binds), but the window is tiny.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to pick a free port")
}

/// True once our server (identified by its greeting) answers on `port`.
async fn probe(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut buf = vec![0u8; 512];
        let n = s.read(&mut buf).await.ok()?;
        let greeting = String::from_utf8_lossy(&buf[..n]).into_owned();
        let _ = s.write_all(b"QUIT\r\n").await;
        Some(greeting.starts_with("220") && greeting.contains(HOSTNAME))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.ok().flatten().unwrap_or(false)
}

fn parse_stored(bytes: &[u8]) -> Result<ReceivedMail, String> {
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or("missing envelope line")?;
    let meta: serde_json::Value =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("bad envelope JSON: {e}"))?;
    let raw = bytes[nl + 1..].to_vec();
    let from = meta["mail_from"].as_str().unwrap_or_default().to_string();
    let to = meta["rcpt_tos"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();

    let mut mail = ReceivedMail {
        to,
        from,
        subject: String::new(),
        text: String::new(),
        html: None,
        attachments: Vec::new(),
        raw: Vec::new(),
    };
    // Unparseable messages are still returned (raw + envelope) so tests can inspect them.
    if let Some(msg) = MessageParser::default().parse(&raw) {
        mail.subject = msg.subject().unwrap_or_default().to_string();
        mail.text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
        // body_html(0) would synthesise HTML from a text-only message; only report a real one.
        mail.html = msg.html_part(0).filter(|p| p.is_text_html()).and_then(|p| p.text_contents()).map(String::from);
        mail.attachments = msg
            .attachments()
            .map(|part| {
                let ctype = part
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".into());
                let name = part.attachment_name().unwrap_or_default().to_string();
                (name, ctype, part.contents().to_vec())
            })
            .collect();
    }
    mail.raw = raw;
    Ok(mail)
}
