//! Fleet simulation (issue 15). N users in one group get their tokens in bulk as per-user
//! `provisioning.json` files (`onramp admin provision-group`); then N clients enroll through
//! a standalone edge, C at a time, each running the client library's first start
//! (`onramp_client::start::first_start`, what `onramp-client start` runs) with its own data
//! directory, store and key pair. At the end it checks, on the server and in every client's
//! store, that every user is enrolled with exactly one device, that each store holds every
//! location, and that no address is used twice. It prints wall time, enrollments/s against
//! the Argon2 bound measured in the same run, p50/p99 per enrollment, errors and retries by
//! kind, and peak RSS of core and edge.
//!
//! `--faults` (PostgreSQL, two cores behind one edge): the invitations are also e-mailed
//! (same tokens) through a real SMTP server that is killed and restarted while they go out;
//! then, while the clients enroll, a core is killed with SIGKILL and restarted and the edge
//! is killed and restarted. Every invitation must arrive exactly once.
//! `--desktop`: the users are enrolled already (created with a password), so the bulk issue
//! gives them desktop-configuration tokens and the clients skip the password step.
//!
//! Run: `scripts/fleet [--users N] [--workers C] [--backend sqlite|postgres] [--faults] [--desktop]`
//! (that is `cargo bench -p onramp-server --bench fleet -- ...`). Exits 0 only when every
//! check holds.

mod common;

use common::{argon2_bound, free_port, quantile_ms, BIN};
use onramp_client::enroll::{DeviceName, EnrollError, Interaction};
use onramp_client::start::{FirstStart, FirstStartError};
use onramp_client::{ApiError, Settings, Store};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: scripts/fleet [--users N] [--workers C] [--backend sqlite|postgres] [--faults] [--desktop]
  --users N      users and clients (default 10000, at most 20000)
  --workers C    clients enrolling at once (default 64)
  --backend B    sqlite (default) or postgres (default with --faults)
  --faults       PostgreSQL, two cores behind one edge: kill -9 a core and restart it, kill
                 and restart the edge, stop the SMTP server while invitations go out
  --desktop      users enrolled already: desktop-configuration tokens, no password step";

const GROUP: &str = "fleet";
/// Two locations every user may use and one only the fleet group may use: a store must
/// hold all three.
const LOCATIONS: [(&str, &str, Option<&str>); 3] =
    [("office", "10.0.0.1/16", None), ("lab", "10.1.0.1/16", None), ("fleet-only", "10.2.0.1/16", Some(GROUP))];
/// The admin API's body limit (256 KiB) bounds the group's member list sent at once.
const MAX_USERS: usize = 20_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Opts {
    users: usize,
    workers: usize,
    backend: Backend,
    faults: bool,
    desktop: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts { users: 10_000, workers: 64, backend: Backend::Sqlite, faults: false, desktop: false };
    let mut backend = None;
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.as_deref().and_then(|s| s.parse().ok()).ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            // cargo bench passes this to every bench binary.
            "--bench" => {}
            "--users" => o.users = num(args.next(), "--users")?,
            "--workers" => o.workers = num(args.next(), "--workers")?,
            "--backend" => {
                backend = Some(match args.next().as_deref() {
                    Some("sqlite") => Backend::Sqlite,
                    Some("postgres") => Backend::Postgres,
                    other => return Err(format!("--backend takes sqlite or postgres, not {other:?}\n{USAGE}")),
                })
            }
            "--faults" => o.faults = true,
            "--desktop" => o.desktop = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !(1..=MAX_USERS).contains(&o.users) {
        return Err(format!("--users must be between 1 and {MAX_USERS}"));
    }
    if !(1..=1024).contains(&o.workers) {
        return Err("--workers must be between 1 and 1024".into());
    }
    if o.faults && backend == Some(Backend::Sqlite) {
        return Err("--faults runs two cores on one database: it needs --backend postgres".into());
    }
    if o.faults && o.desktop {
        return Err("--faults e-mails invitations to users who are not enrolled yet; run --desktop without it".into());
    }
    o.backend = backend.unwrap_or(if o.faults { Backend::Postgres } else { Backend::Sqlite });
    Ok(o)
}

/// Seconds since the run began, for the fault timeline.
fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// One `onramp` process (core or edge) that may be killed and started again; its output
/// goes to a log file in the run directory. Killed on drop.
struct Server {
    name: String,
    subcommand: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// The highest VmHWM over every life of this server.
    peak_mib: f64,
}

impl Server {
    fn new(name: &str, subcommand: &'static str, env: Vec<(String, String)>, run: &Path) -> Server {
        let log = run.join(format!("{}.log", name.replace(' ', "-")));
        Server { name: name.into(), subcommand, env, log, child: None, peak_mib: 0.0 }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open server log");
        let child = Command::new(BIN)
            .arg(self.subcommand)
            .envs(self.env.clone())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start onramp {} ({}): {e}", self.subcommand, self.name));
        self.child = Some(child);
    }

    /// Reads the process's peak RSS into `peak_mib`.
    fn sample(&mut self) {
        if let Some(c) = &self.child {
            let status = std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap_or_default();
            let hwm = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0;
            self.peak_mib = self.peak_mib.max(hwm);
        }
    }

    /// Sends `signal` (libc::kill, never the kill program) and reaps the process.
    fn kill(&mut self, signal: i32) {
        self.sample();
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
            unsafe { libc::kill(c.id() as i32, signal) };
            let _ = c.wait();
        }
    }

    /// Waits until core answers `onramp healthcheck` with its settings.
    fn wait_core_healthy(&self, timeout: Duration) -> Result<(), String> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            let ok = Command::new(BIN)
                .arg("healthcheck")
                .envs(self.env.clone())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{} did not become healthy within {timeout:?}; see {}", self.name, self.log.display()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill(libc::SIGKILL);
    }
}

/// GET `path` on `addr` over plain HTTP/1.0; the status code, or None when unreachable.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Waits until the edge answers its health check with a core linked.
fn wait_edge_linked(addr: &str, timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if http_status(addr, "/api/v1/health") == Some(200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("the edge on {addr} had no core linked within {timeout:?}"))
}

/// The admin API of one core.
#[derive(Clone)]
struct Admin {
    c: reqwest::Client,
    base: String,
    token: Arc<String>,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut r =
            self.c.request(method.clone(), format!("{}/api/v1/{path}", self.base)).bearer_auth(self.token.as_str());
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.json().await.unwrap_or(Value::Null), headers)
    }

    /// A call that must succeed.
    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v, _) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {v}");
        v
    }

    /// Every entry of a paged list (`limit` at most 1000).
    async fn all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page =
                self.ok(reqwest::Method::GET, &format!("{path}{sep}limit=1000&offset={}", out.len()), None).await;
            let page = page.as_array().cloned().unwrap_or_default();
            let n = page.len();
            out.extend(page);
            if n < 1000 {
                return out;
            }
        }
    }
}

/// Counts the client library's retries by cause, from its `retrying` log events.
#[derive(Clone, Default)]
struct RetryCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RetryCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            error: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.message = format!("{value:?}"),
                    "error" => self.error = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let kind = if f.message == "retrying" {
            if f.error.starts_with("cannot reach") {
                "retry: connection failed or lost".to_owned()
            } else if let Some(i) = f.error.find(" answered ") {
                format!("retry: HTTP {}", f.error[i + 10..].chars().take(3).collect::<String>())
            } else {
                "retry: other".to_owned()
            }
        } else if f.message.starts_with("recovered the device") {
            "device recovered after an interruption".to_owned()
        } else {
            return;
        };
        *self.0.lock().unwrap().entry(kind).or_default() += 1;
    }
}

/// The unattended user of one client: checks the session is theirs and answers the
/// password question (which only a user who is not enrolled yet gets).
struct Unattended {
    login: String,
    password: String,
    saw_login: Option<String>,
    asked_password: bool,
}

impl Interaction for Unattended {
    fn show_start(&mut self, start: &onramp_proto::EnrollmentStartResponse) {
        self.saw_login = Some(start.user.login.clone());
    }

    fn password(&mut self) -> Result<String, String> {
        self.asked_password = true;
        Ok(self.password.clone())
    }
}

fn username(i: usize) -> String {
    format!("user{i:05}")
}

/// A password meeting the policy (test data, kept in memory only).
fn password(i: usize) -> String {
    format!("Fl33t!{i:05}pw")
}

/// One error kind, for the table: no message text (it may name an address), just the case.
fn error_kind(e: &FirstStartError) -> String {
    match e {
        FirstStartError::File(_) => "unusable provisioning file".into(),
        FirstStartError::Enroll(EnrollError::Api(a)) => match a {
            ApiError::Network { .. } => "edge unreachable after retries".into(),
            ApiError::Server { status, .. } => format!("server error {status}"),
            ApiError::Rejected { status, code, .. } => format!("refused {status} {}", code.as_deref().unwrap_or("")),
            ApiError::Unauthorized { status, .. } => format!("unauthorized {status}"),
            ApiError::TokenExpired { .. } => "token expired".into(),
            ApiError::TokenUsed { .. } => "token used".into(),
            ApiError::TokenRevoked { .. } => "token revoked".into(),
            ApiError::SessionExpired { .. } => "session expired".into(),
            ApiError::UnknownToken { .. } => "unknown token".into(),
            ApiError::AccountDisabled { .. } => "account disabled".into(),
            ApiError::DeviceRemoved => "device removed".into(),
            ApiError::Stopped { .. } => "stopped (402)".into(),
            ApiError::Redirect { .. } => "redirect".into(),
            ApiError::BadAnswer { .. } => "unusable answer".into(),
        },
        FirstStartError::Enroll(EnrollError::Store(_)) => "client store".into(),
        FirstStartError::Enroll(EnrollError::Refused(_)) => "refused by the client".into(),
        FirstStartError::Enroll(EnrollError::AlreadyEnrolled { .. }) => "already enrolled".into(),
        FirstStartError::Enroll(EnrollError::Input(_)) => "password input".into(),
    }
}

/// The first start of client `i` in its own data directory; the elapsed time, or the
/// error's kind and message.
async fn run_client(dir: PathBuf, i: usize, desktop: bool) -> Result<Duration, (String, String)> {
    let t = Instant::now();
    onramp_client::dirs::ensure_private_dir(&dir).map_err(|e| ("data directory".into(), e.to_string()))?;
    let settings = Settings::load(&dir);
    let store = Store::open(&dir).await.map_err(|e| ("client store".to_owned(), e.to_string()))?;
    let mut ui = Unattended { login: username(i), password: password(i), saw_login: None, asked_password: false };
    let result =
        onramp_client::start::first_start(&store, &dir, None, &settings, &DeviceName::from_host(), &mut ui).await;
    store.close().await;
    match result {
        Ok(FirstStart::Enrolled { .. }) => {}
        Ok(FirstStart::Initialized) => return Err(("already initialized".into(), dir.display().to_string())),
        Ok(FirstStart::NotProvisioned) => return Err(("no provisioning found".into(), dir.display().to_string())),
        Err(e) => return Err((error_kind(&e), e.to_string())),
    }
    if ui.saw_login.as_deref() != Some(ui.login.as_str()) {
        return Err(("session of another user".into(), format!("{} got {:?}", ui.login, ui.saw_login)));
    }
    // An enrolled user's desktop token skips the password step; a new user's does not.
    if ui.asked_password == desktop {
        return Err((
            "wrong password step".into(),
            format!("{}: asked for a password: {}", ui.login, ui.asked_password),
        ));
    }
    Ok(t.elapsed())
}

/// What one client's store holds after the run.
struct ClientState {
    device_id: i64,
    pubkey: String,
    /// location name -> assigned address(es)
    addresses: BTreeMap<String, String>,
}

async fn read_client(dir: &Path) -> Result<ClientState, String> {
    if dir.join("provisioning.json").exists() {
        return Err("provisioning.json is still there after the enrollment".into());
    }
    let store = Store::open(dir).await.map_err(|e| e.to_string())?;
    let result = async {
        let instances = store.instances().await.map_err(|e| e.to_string())?;
        let [inst] = instances.as_slice() else {
            return Err(format!("{} instances in the store, expected 1", instances.len()));
        };
        let private = store.private_key(&inst.pubkey).await.map_err(|e| e.to_string())?;
        if private.as_deref().and_then(onramp_client::keys::public_of).as_deref() != Some(inst.pubkey.as_str()) {
            return Err("the store has no private key matching the device's public key".into());
        }
        let locations = store.locations(&inst.id).await.map_err(|e| e.to_string())?;
        Ok(ClientState {
            device_id: inst.device_id,
            pubkey: inst.pubkey.clone(),
            addresses: locations.into_iter().map(|l| (l.network_name, l.assigned_ip)).collect(),
        })
    }
    .await;
    store.close().await;
    result
}

/// A failed check, collected; the run goes on to report everything it found.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failed.push(what());
        }
    }
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we pass.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

struct FaultEvent {
    at: f64,
    enrolled: usize,
    what: String,
}

async fn run(o: Opts) -> bool {
    let t0 = Instant::now();
    let run_dir = tempfile::Builder::new().prefix("onramp-fleet-").tempdir().expect("run directory");
    let run = run_dir.path().to_owned();
    let clients_dir = run.join("clients");
    // Every client keeps a SQLite store (with its WAL) here, and PostgreSQL's data goes here
    // too: a full disk shows up as thousands of "disk I/O error"s, so say it before the run.
    let need = 512 * 1024 * 1024 + o.users as u64 * 256 * 1024;
    if let Some(free) = free_bytes(&run) {
        if free < need {
            eprintln!(
                "fleet: only {} MiB free under {} and this run needs about {} MiB; free some space \
                 (or point TMPDIR elsewhere)",
                free >> 20,
                run.display(),
                need >> 20
            );
            return false;
        }
    }
    let backend = if o.backend == Backend::Postgres { "postgres" } else { "sqlite" };
    let mode = match (o.faults, o.desktop) {
        (true, _) => "faults",
        (_, true) => "desktop tokens",
        _ => "new users",
    };
    eprintln!("fleet: {} clients, {} workers, {backend}, {mode}; run directory {}", o.users, o.workers, run.display());

    let (edge_port, link_port) = (free_port(), free_port());
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let database = match o.backend {
        Backend::Postgres => Some(onramp_testkit::pg::fresh_database_url().await),
        Backend::Sqlite => None,
    };
    let mut smtp = if o.faults { Some(onramp_testkit::smtp::SmtpSink::start().await) } else { None };
    let cores = if o.faults { 2 } else { 1 };
    let mut core_env = Vec::new();
    let mut servers = Vec::new();
    for k in 0..cores {
        let http = format!("127.0.0.1:{}", free_port());
        let data = run.join(format!("core{}", k + 1));
        let mut env: Vec<(String, String)> = vec![
            ("ONRAMP_HTTP_ADDR".into(), http.clone()),
            ("ONRAMP_EDGE_ENABLED".into(), "false".into()),
            ("ONRAMP_EDGE_URLS".into(), format!("http://127.0.0.1:{link_port}")),
            ("ONRAMP_LINK_INSECURE".into(), "true".into()),
            ("ONRAMP_PUBLIC_URL".into(), format!("http://{edge_addr}/")),
            ("ONRAMP_GATEWAY_ADDR".into(), "127.0.0.1:0".into()),
            ("ONRAMP_DATA_DIR".into(), data.display().to_string()),
            // Replicas share the key that encrypts queued mail.
            ("ONRAMP_SECRET_KEY_FILE".into(), run.join("secret.key").display().to_string()),
            // A mail that met the SMTP outage is retried within seconds, not half a minute.
            ("ONRAMP_MAIL_RETRY_BASE_SECS".into(), "1".into()),
            ("ONRAMP_MAIL_POLL_INTERVAL_SECS".into(), "1".into()),
            ("ONRAMP_LOG".into(), "warn".into()),
        ];
        if let Some(url) = &database {
            env.push(("ONRAMP_DATABASE_URL".into(), url.clone()));
        }
        let mut s = Server::new(&format!("core {}", k + 1), "serve", env.clone(), &run);
        s.start();
        // One at a time: the first creates the schema and the secret key.
        s.wait_core_healthy(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        core_env.push((http, env));
        servers.push(s);
    }
    let mut edge = Server::new(
        "edge",
        "edge",
        vec![
            ("ONRAMP_EDGE_ADDR".into(), edge_addr.clone()),
            ("ONRAMP_EDGE_LINK_ADDR".into(), format!("127.0.0.1:{link_port}")),
            ("ONRAMP_LINK_INSECURE".into(), "true".into()),
            // Every simulated machine comes from 127.0.0.1; a real fleet comes from
            // thousands of addresses, so the per-address limit would measure nothing real.
            ("ONRAMP_EDGE_RATE_LIMIT".into(), "0".into()),
            ("ONRAMP_LOG".into(), "warn".into()),
        ],
        &run,
    );
    edge.start();
    wait_edge_linked(&edge_addr, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));

    let (admin_http, admin_env) = core_env[0].clone();
    let token_out = Command::new(BIN)
        .args(["admin", "api-token", "create", "--name", "fleet"])
        .envs(admin_env.clone())
        .output()
        .expect("onramp admin api-token create");
    assert!(token_out.status.success(), "api-token create: {}", String::from_utf8_lossy(&token_out.stderr));
    let admin = Admin {
        c: reqwest::Client::builder().pool_max_idle_per_host(32).build().unwrap(),
        base: format!("http://{admin_http}"),
        token: Arc::new(String::from_utf8(token_out.stdout).unwrap().trim().to_owned()),
    };
    use reqwest::Method;

    // Users, the group, the locations.
    let t_users = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let creators: Vec<_> = (0..16)
        .map(|_| {
            let (admin, next, desktop, n) = (admin.clone(), next.clone(), o.desktop, o.users);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let mut body = json!({"username": username(i), "first_name": "Fleet", "last_name": format!("User {i}"),
                                          "email": format!("{}@example.com", username(i))});
                    // Created with a password = enrolled: the bulk issue gives a desktop token.
                    if desktop {
                        body["password"] = json!(password(i));
                    }
                    admin.ok(Method::POST, "user", Some(body)).await;
                }
            })
        })
        .collect();
    for c in creators {
        c.await.unwrap();
    }
    let members: Vec<String> = (0..o.users).map(username).collect();
    admin.ok(Method::POST, "group", Some(json!({"name": GROUP, "members": members}))).await;
    for (name, address, group) in LOCATIONS {
        let net = address.replace(".1/", ".0/");
        admin
            .ok(
                Method::POST,
                "location",
                Some(json!({"name": name, "address": address, "endpoint": "vpn.example.com", "port": 51820,
                            "allowed_ips": [net], "allowed_groups": group.map(|g| vec![g]).unwrap_or_default()})),
            )
            .await;
    }
    let users_s = t_users.elapsed().as_secs_f64();
    eprintln!("  {} users in group {GROUP:?} and {} locations in {users_s:.1}s", o.users, LOCATIONS.len());

    if let Some(sink) = &smtp {
        admin
            .ok(
                Method::PATCH,
                "settings",
                Some(json!({"smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none",
                                     "sender": "vpn@example.com", "timeout_secs": 10}})),
            )
            .await;
    }

    // The tokens in bulk, one provisioning.json per user: DIR/<username>/provisioning.json
    // is also that client's data directory.
    let t_prov = Instant::now();
    let mut prov = Command::new(BIN);
    prov.args(["admin", "provision-group", GROUP, "--out"]).arg(&clients_dir).envs(admin_env.clone());
    if o.faults {
        prov.arg("--send-email");
    }
    let out = prov.output().expect("onramp admin provision-group");
    assert!(out.status.success(), "provision-group: {}", String::from_utf8_lossy(&out.stderr));
    let prov_s = t_prov.elapsed().as_secs_f64();
    eprintln!("  provisioning files written in {prov_s:.1}s");
    let mut checks = Checks::default();
    // Each user's token, to check that the invitation carries the file's token.
    let mut tokens = HashMap::new();
    for i in 0..o.users {
        let p = clients_dir.join(username(i)).join("provisioning.json");
        match std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
            Some(v) => {
                tokens.insert(username(i), v["enrollment_token"].as_str().unwrap_or_default().to_owned());
            }
            None => checks.failed.push(format!("{} is missing or unreadable", p.display())),
        }
    }

    let mut events: Vec<FaultEvent> = Vec::new();
    let mut mail_s = 0.0;
    // Invitations go out before the clients start: the outbox cancels a mail whose token
    // was used meanwhile (a spent token must not be mailed), so a client enrolling first
    // would make its invitation vanish rather than arrive.
    if let Some(sink) = smtp.as_mut() {
        let t_mail = Instant::now();
        let new_dir = sink.mailbox_dir().join("new");
        let count = || std::fs::read_dir(&new_dir).map(|d| d.count()).unwrap_or(0);
        let stop_at = (o.users / 5).max(1);
        let deadline = Instant::now() + Duration::from_secs(120 + o.users as u64 / 20);
        let mut restarted = false;
        loop {
            let n = count();
            if !restarted && n >= stop_at {
                sink.stop().await;
                let what = format!("SMTP server killed after {n} invitations arrived");
                events.push(FaultEvent { at: since(t0), enrolled: 0, what });
                tokio::time::sleep(Duration::from_secs(3)).await;
                sink.restart().await;
                let what = format!("SMTP server restarted ({} arrived)", count());
                events.push(FaultEvent { at: since(t0), enrolled: 0, what });
                restarted = true;
            }
            if n >= o.users && restarted {
                break;
            }
            if Instant::now() > deadline {
                checks.failed.push(format!("only {n} of {} invitations arrived within the time limit", o.users));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        mail_s = t_mail.elapsed().as_secs_f64();
        eprintln!("  invitations delivered in {mail_s:.1}s");
    }

    eprintln!("  measuring the Argon2 bound (3 s) ...");
    let bound = tokio::task::spawn_blocking(argon2_bound).await.unwrap();

    // The fleet.
    let servers = Arc::new(Mutex::new((servers, edge)));
    let done = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let fault_events = Arc::new(Mutex::new(Vec::<FaultEvent>::new()));
    let injector = o.faults.then(|| {
        let (servers, done, finished, ev, n, edge_addr) =
            (servers.clone(), done.clone(), finished.clone(), fault_events.clone(), o.users, edge_addr.clone());
        std::thread::spawn(move || {
            let log = |what: String| {
                ev.lock().unwrap().push(FaultEvent { at: since(t0), enrolled: done.load(Ordering::Relaxed), what })
            };
            let wait_for = |fraction: f64| {
                while (done.load(Ordering::Relaxed) as f64) < n as f64 * fraction {
                    if finished.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                true
            };
            if !wait_for(0.15) {
                return;
            }
            servers.lock().unwrap().0[1].kill(libc::SIGKILL);
            log("core 2 killed (SIGKILL)".into());
            std::thread::sleep(Duration::from_secs(2));
            servers.lock().unwrap().0[1].start();
            log("core 2 started again".into());
            let healthy = servers.lock().unwrap().0[1].wait_core_healthy(Duration::from_secs(30));
            log(match healthy {
                Ok(()) => "core 2 healthy".into(),
                Err(e) => e,
            });
            if !wait_for(0.45) {
                return;
            }
            servers.lock().unwrap().1.kill(libc::SIGKILL);
            log("edge killed (SIGKILL)".into());
            servers.lock().unwrap().1.start();
            log("edge started again".into());
            log(match wait_edge_linked(&edge_addr, Duration::from_secs(30)) {
                Ok(()) => "edge answering with a core linked".into(),
                Err(e) => e,
            });
        })
    });

    let retries = RetryCounter::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(retries.clone()));
    }
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(o.users)));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, (u64, String)>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let t_enroll = Instant::now();
    let progress = {
        let (done, finished, errors, n) = (done.clone(), finished.clone(), errors.clone(), o.users);
        tokio::spawn(async move {
            while !finished.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let d = done.load(Ordering::Relaxed);
                let e: u64 = errors.lock().unwrap().values().map(|v| v.0).sum();
                eprintln!(
                    "  {:>6.1}s  {d}/{n} clients done ({:.1}/s), {e} failed",
                    t_enroll.elapsed().as_secs_f64(),
                    d as f64 / t_enroll.elapsed().as_secs_f64()
                );
            }
        })
    };
    let workers: Vec<_> = (0..o.workers)
        .map(|_| {
            let (next, done, lat, errors, dir, n, desktop) = (
                next.clone(),
                done.clone(),
                latencies.clone(),
                errors.clone(),
                clients_dir.clone(),
                o.users,
                o.desktop,
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    match run_client(dir.join(username(i)), i, desktop).await {
                        Ok(d) => lat.lock().unwrap().push(d),
                        Err((kind, message)) => {
                            let mut g = errors.lock().unwrap();
                            let e = g.entry(kind).or_insert((0, message));
                            e.0 += 1;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let enroll_s = t_enroll.elapsed().as_secs_f64();
    finished.store(true, Ordering::Relaxed);
    progress.abort();
    if let Some(h) = injector {
        h.join().unwrap();
    }
    // Again after the clients: on a shared machine the bound moves during a long run, and
    // the percentage is taken against the mean of the two.
    let bound_after = tokio::task::spawn_blocking(argon2_bound).await.unwrap();
    events.append(&mut fault_events.lock().unwrap());
    if o.faults {
        // Eight events (SMTP down and up; core 2 killed, started, healthy; edge killed,
        // started, linked), each kill while clients were still enrolling.
        let kills_in_time = events.iter().filter(|e| e.what.contains("killed") && e.enrolled < o.users).count();
        checks.check(events.len() == 8 && kills_in_time == 3, || {
            format!(
                "the clients finished before every fault was injected ({} events, {kills_in_time} of 3 kills in time); use more --users",
                events.len()
            )
        });
    }

    // Checks: the server's view.
    eprintln!("  checking ...");
    let t_check = Instant::now();
    let users = admin.all("user").await;
    let fleet_users: Vec<&Value> =
        users.iter().filter(|u| u["groups"].as_array().is_some_and(|g| g.iter().any(|x| x == GROUP))).collect();
    checks.check(fleet_users.len() == o.users, || {
        format!("{} users in the group, expected {}", fleet_users.len(), o.users)
    });
    let not_enrolled = fleet_users.iter().filter(|u| u["enrolled"] != true).count();
    checks.check(not_enrolled == 0, || format!("{not_enrolled} users are not enrolled"));
    let devices = admin.all("device").await;
    let mut by_user: HashMap<String, Vec<&Value>> = HashMap::new();
    for d in &devices {
        by_user.entry(d["username"].as_str().unwrap_or_default().to_owned()).or_default().push(d);
    }
    let mut server_addresses: HashMap<String, HashSet<String>> = HashMap::new();
    let mut duplicate_server_addresses = 0;
    for d in &devices {
        for c in d["configs"].as_array().into_iter().flatten() {
            let set = server_addresses.entry(c["network_name"].as_str().unwrap_or_default().to_owned()).or_default();
            if !set.insert(c["assigned_ip"].as_str().unwrap_or_default().to_owned()) {
                duplicate_server_addresses += 1;
            }
        }
    }
    checks.check(duplicate_server_addresses == 0, || {
        format!("{duplicate_server_addresses} addresses used twice on the server")
    });
    let wrong_count: Vec<String> = (0..o.users)
        .map(username)
        .filter(|u| by_user.get(u).map_or(0, Vec::len) != 1)
        .map(|u| format!("{u}: {}", by_user.get(&u).map_or(0, Vec::len)))
        .collect();
    checks.check(wrong_count.is_empty(), || {
        format!(
            "{} users without exactly one device (first: {:?})",
            wrong_count.len(),
            &wrong_count[..wrong_count.len().min(5)]
        )
    });

    // Checks: every client's store, against the server's device.
    let states = Arc::new(Mutex::new(Vec::with_capacity(o.users)));
    let next = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (next, states, dir, n) = (next.clone(), states.clone(), clients_dir.clone(), o.users);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let s = read_client(&dir.join(username(i))).await;
                    states.lock().unwrap().push((i, s));
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    let expected: Vec<&str> = LOCATIONS.iter().map(|l| l.0).collect();
    let mut client_addresses: HashMap<String, HashSet<String>> = HashMap::new();
    let (mut bad_store, mut missing_locations, mut mismatch, mut duplicate_client_addresses) = (vec![], 0, 0, 0);
    for (i, s) in states.lock().unwrap().iter() {
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                bad_store.push(format!("{}: {e}", username(*i)));
                continue;
            }
        };
        let mut names: Vec<&str> = s.addresses.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut want = expected.clone();
        want.sort_unstable();
        if names != want {
            missing_locations += 1;
        }
        for (loc, ip) in &s.addresses {
            if !client_addresses.entry(loc.clone()).or_default().insert(ip.clone()) {
                duplicate_client_addresses += 1;
            }
        }
        // The store's device is the server's, with the same key and addresses.
        let server = by_user.get(&username(*i)).and_then(|d| d.first());
        let same = server.is_some_and(|d| {
            d["id"] == s.device_id
                && d["pubkey"] == s.pubkey.as_str()
                && d["configs"].as_array().is_some_and(|cs| {
                    cs.len() == s.addresses.len()
                        && cs.iter().all(|c| {
                            s.addresses.get(c["network_name"].as_str().unwrap_or_default()).map(String::as_str)
                                == c["assigned_ip"].as_str()
                        })
                })
        });
        if !same {
            mismatch += 1;
        }
    }
    checks.check(bad_store.is_empty(), || {
        format!("{} client stores are wrong (first: {:?})", bad_store.len(), &bad_store[..bad_store.len().min(3)])
    });
    checks.check(missing_locations == 0, || format!("{missing_locations} client stores lack a location"));
    checks.check(duplicate_client_addresses == 0, || {
        format!("{duplicate_client_addresses} addresses used twice across clients")
    });
    checks.check(mismatch == 0, || format!("{mismatch} client stores differ from the server's device"));
    let pubkeys: HashSet<&str> = devices.iter().filter_map(|d| d["pubkey"].as_str()).collect();
    checks.check(pubkeys.len() == devices.len(), || "two devices share a public key".into());

    // Checks: mail. Every invitation exactly once, to its user, with the file's token.
    let mut mail_lines = Vec::new();
    if let Some(sink) = &smtp {
        let subject = "Set up your VPN access";
        let messages = sink.messages();
        let mut invitations: HashMap<String, usize> = HashMap::new();
        let mut wrong_token = 0;
        let mut other: BTreeMap<String, usize> = BTreeMap::new();
        for m in &messages {
            if m.subject.starts_with(subject) {
                for to in &m.to {
                    let user = to.split('@').next().unwrap_or_default().to_owned();
                    if !tokens.get(&user).is_some_and(|t| !t.is_empty() && m.text.contains(t.as_str())) {
                        wrong_token += 1;
                    }
                    *invitations.entry(user).or_default() += 1;
                }
            } else {
                // By kind: names and numbers out ("Fleet User 7 completed enrollment").
                let kind: String = m
                    .subject
                    .split_whitespace()
                    .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                    .collect::<Vec<_>>()
                    .join(" ");
                *other.entry(kind).or_default() += 1;
            }
        }
        let once = (0..o.users).filter(|i| invitations.get(&username(*i)) == Some(&1)).count();
        let twice: usize = invitations.values().filter(|n| **n > 1).count();
        checks.check(once == o.users && invitations.len() == o.users, || {
            format!(
                "{once} of {} users got their invitation exactly once ({twice} more than once, {} got none)",
                o.users,
                o.users - invitations.len().min(o.users)
            )
        });
        checks.check(wrong_token == 0, || {
            format!("{wrong_token} invitations do not carry the user's provisioning token")
        });
        mail_lines.push(format!(
            "invitations: {} messages, {once} users exactly once, {twice} duplicated",
            messages.len() - other.values().sum::<usize>()
        ));
        for (s, n) in other {
            mail_lines.push(format!("  other mail so far (not checked; the outbox may still be sending): {n} x {s:?}"));
        }
    }
    let check_s = t_check.elapsed().as_secs_f64();

    // Figures.
    let (core_peak, edge_peak) = {
        let mut g = servers.lock().unwrap();
        for s in g.0.iter_mut() {
            s.sample();
        }
        g.1.sample();
        (g.0.iter().map(|s| s.peak_mib).fold(0.0, f64::max), g.1.peak_mib)
    };
    let mut lat = latencies.lock().unwrap();
    let ok = lat.len();
    let (p50, p99) = (quantile_ms(&mut lat, 0.5), quantile_ms(&mut lat, 0.99));
    let per_s = ok as f64 / enroll_s;
    let errors = errors.lock().unwrap();
    let failed: u64 = errors.values().map(|v| v.0).sum();
    let total_s = t0.elapsed().as_secs_f64();
    let bound_mean = (bound + bound_after) / 2.0;
    let bound_pct =
        if o.desktop { "n/a (no password)".to_owned() } else { format!("{:.0}%", 100.0 * per_s / bound_mean) };
    println!();
    println!(
        "Fleet: {} clients, {} workers, {backend}, {mode}; {} core(s) behind one standalone edge",
        o.users, o.workers, cores
    );
    println!(
        "Argon2 bound measured in this run (core's parameters, all CPUs): {bound:.1} hashes/s before the clients, {bound_after:.1} after, mean {bound_mean:.1}"
    );
    println!("| backend | run | clients | workers | enrolled | failed | enrollment (s) | enrollments/s | % of Argon2 bound | p50 (ms) | p99 (ms) | core peak RSS (MiB) | edge peak RSS (MiB) | total wall (s) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {backend} | {mode} | {} | {} | {ok} | {failed} | {enroll_s:.1} | {per_s:.1} | {bound_pct} | {p50:.0} | {p99:.0} | {core_peak:.1} | {edge_peak:.1} | {total_s:.1} |",
        o.users, o.workers
    );
    println!(
        "Phases: users + group + locations {users_s:.1}s, provisioning files {prov_s:.1}s, invitations {mail_s:.1}s, Argon2 bound 2 x 3s, enrollment {enroll_s:.1}s, checks {check_s:.1}s"
    );
    println!("Fleet process (the {} clients) peak RSS: {:.1} MiB", o.workers, own_peak_mib());
    if errors.is_empty() {
        println!("Errors by kind: none");
    } else {
        println!("Errors by kind:");
        for (kind, (n, example)) in errors.iter() {
            println!("  {n:>6} x {kind}   (e.g. {example})");
        }
    }
    let r = retries.0.lock().unwrap();
    if r.is_empty() {
        println!("Retries by the client library: none");
    } else {
        println!("Retries by the client library (each one a request sent again):");
        for (kind, n) in r.iter() {
            println!("  {n:>6} x {kind}");
        }
    }
    if !events.is_empty() {
        println!("Faults injected (seconds since the run began; clients finished by then):");
        for e in &events {
            println!("  {:>7.1}s  {:>6} done  {}", e.at, e.enrolled, e.what);
        }
    }
    for l in &mail_lines {
        println!("{l}");
    }
    checks.check(failed == 0, || format!("{failed} clients failed to enroll"));
    if checks.failed.is_empty() {
        println!("All checks hold: every user enrolled with exactly one device, every store holds all {} locations, no address used twice{}.",
            LOCATIONS.len(), if o.faults { ", every invitation delivered exactly once" } else { "" });
        true
    } else {
        println!("FAILED checks:");
        for f in &checks.failed {
            println!("  - {f}");
        }
        println!("Server logs: {} (kept)", run.display());
        // Kept for a look: the logs say what the servers saw.
        let _ = run_dir.keep();
        false
    }
}

/// This process's peak RSS in MiB.
fn own_peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Before any thread starts. The machine-wide provisioning place is searched when a
    // user's own file is missing: one that does not exist keeps this host's /etc/onramp out.
    std::env::set_var("ONRAMP_CLIENT_SYSTEM_DIR", "/nonexistent/onramp-fleet");
    // The edge is plain HTTP on loopback.
    std::env::set_var("ONRAMP_CLIENT_ALLOW_HTTP", "1");
    let ok = tokio::runtime::Runtime::new().unwrap().block_on(run(o));
    std::process::exit(if ok { 0 } else { 1 });
}
