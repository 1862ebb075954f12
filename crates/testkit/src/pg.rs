//! A real PostgreSQL server for tests, shared by every test process on the machine.
//!
//! nextest runs each test in its own process, so a per-test server would be far too
//! slow. Instead one server lives in a fixed directory on a fixed loopback port, is
//! started by whichever process gets there first (serialised by a file lock) and is
//! left running afterwards; later processes just reuse it. Each test gets its own
//! empty database from [`fresh_database_url`].
//!
//! Environment overrides:
//! - `ONRAMP_TEST_PG_PORT`: TCP port on 127.0.0.1 (default 54329).
//! - `ONRAMP_TEST_PG_DIR`: cluster directory (default `$TMPDIR/onramp-test-pg-<port>`).
//! - `ONRAMP_TEST_PG_BIN`: directory holding `initdb`/`pg_ctl`/`postgres`.
//! - `ONRAMP_TEST_PG_KEEP=1`: don't drop databases left behind by dead test processes.

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Once, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Default port; deliberately not 5432 so a system PostgreSQL is never touched.
pub const DEFAULT_PORT: u16 = 54329;

/// Prefix of every database created by [`fresh_database_url`].
const DB_PREFIX: &str = "onramp_test_";

/// Bump when the generated configuration changes, so old clusters get re-initialised.
const INIT_MARKER: &str = "initialized-v2";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Ensures the shared test server is running, creates a new, empty, uniquely named
/// database and returns its URL (`postgres://postgres@127.0.0.1:<port>/<db>`).
///
/// Panics (never skips) if PostgreSQL is not installed or cannot be started.
pub async fn fresh_database_url() -> String {
    tokio::task::spawn_blocking(fresh_database_url_blocking)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Ensures the shared server is up (starting or initialising it if needed) and
/// returns its port. Blocking; cheap after the first call in a process.
pub fn ensure_server() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let cfg = Config::from_env();
        cfg.ensure_running();
        cfg.port
    })
}

fn fresh_database_url_blocking() -> String {
    let port = ensure_server();
    let cfg = Config::from_env();
    static GC: Once = Once::new();
    GC.call_once(|| cfg.drop_orphaned_databases());

    // The pid in the name lets later processes tell which databases are orphaned.
    let name = format!("{DB_PREFIX}{}_{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let sql = format!("CREATE DATABASE \"{name}\"");
    let mut last_err = String::new();
    // Retried because CREATE DATABASE can fail transiently under heavy parallelism
    // (e.g. connection limit, template1 briefly busy).
    for attempt in 0..5 {
        let out = cfg.psql(&["-c", &sql]);
        if out.status.success() {
            return format!("postgres://postgres@127.0.0.1:{port}/{name}");
        }
        last_err = output_text(&out);
        sleep(Duration::from_millis(200 * (attempt + 1)));
    }
    cfg.die(&format!(
        "CREATE DATABASE {name} failed on 127.0.0.1:{port} (is something else listening \
         on that port? set ONRAMP_TEST_PG_PORT to use another):\n{last_err}"
    ))
}

struct Config {
    port: u16,
    base: PathBuf,
}

struct Bins {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

impl Config {
    fn from_env() -> Config {
        let port = match env::var("ONRAMP_TEST_PG_PORT") {
            Ok(p) => p.trim().parse().unwrap_or_else(|_| panic!("ONRAMP_TEST_PG_PORT={p:?} is not a valid port")),
            Err(_) => DEFAULT_PORT,
        };
        // The port is part of the default path so distinct ports never share a cluster.
        let base = env::var_os("ONRAMP_TEST_PG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| env::temp_dir().join(format!("onramp-test-pg-{port}")));
        Config { port, base }
    }

    fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.base.join("postgres.log")
    }

    fn initialized(&self) -> bool {
        self.base.join(INIT_MARKER).exists() && self.data_dir().join("PG_VERSION").exists()
    }

    fn ensure_running(&self) {
        // Fast path: another process already started it. The marker check makes an
        // outdated cluster (older INIT_MARKER) get rebuilt rather than reused forever.
        if self.initialized() && self.is_ready() {
            return;
        }
        fs::create_dir_all(&self.base)
            .unwrap_or_else(|e| self.die(&format!("cannot create {}: {e}", self.base.display())));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.base.join("lock"))
            .unwrap_or_else(|e| self.die(&format!("cannot open lock file: {e}")));
        lock.lock().unwrap_or_else(|e| self.die(&format!("cannot lock {}: {e}", self.base.display())));

        // Whoever held the lock before us may have started it meanwhile.
        if self.initialized() && self.is_ready() {
            return;
        }
        let bins = find_server_bins().unwrap_or_else(|tried| {
            self.die(&format!("PostgreSQL server binaries (initdb, pg_ctl) not found; looked in: {tried}"))
        });
        let owner = if is_root() { Some(postgres_user(self)) } else { None };
        if let Some((uid, gid)) = owner {
            // postgres must be able to create data/ and the log file in here.
            std::os::unix::fs::chown(&self.base, Some(uid), Some(gid))
                .unwrap_or_else(|e| self.die(&format!("chown {}: {e}", self.base.display())));
        }

        if !self.initialized() {
            self.initdb(&bins, owner);
        }
        self.start(&bins, owner);
        drop(lock);
    }

    fn initdb(&self, bins: &Bins, owner: Option<(u32, u32)>) {
        let data = self.data_dir();
        // Never delete a cluster from under a running (e.g. outdated-config) server.
        if self.postmaster_alive() {
            self.run(
                pg_command(&bins.pg_ctl, owner.is_some()).arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]),
                "pg_ctl stop",
            );
        }
        // Markers of this and older versions; the dir is about to be rebuilt.
        for entry in fs::read_dir(&self.base).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("initialized-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        // A half-finished earlier attempt leaves a dir initdb would refuse.
        if data.exists() {
            fs::remove_dir_all(&data).unwrap_or_else(|e| self.die(&format!("cannot remove {}: {e}", data.display())));
        }
        fs::create_dir(&data).unwrap_or_else(|e| self.die(&format!("cannot create {}: {e}", data.display())));
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).ok();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .unwrap_or_else(|e| self.die(&format!("chown {}: {e}", data.display())));
        }
        let out = self.run(
            pg_command(&bins.initdb, owner.is_some()).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ]),
            "initdb",
        );
        if !out.status.success() {
            self.die(&format!(
                "initdb failed (if it is a permission error, set ONRAMP_TEST_PG_DIR to a \
                 directory the postgres user can reach):\n{}",
                output_text(&out)
            ));
        }
        // Loopback TCP only (no Unix socket dir needed, so it works as any user), and
        // durability off: test data is disposable and fsync dominates test time.
        let conf = format!(
            "\n# onramp-testkit\n\
             listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = ''\n\
             max_connections = 300\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             log_min_messages = warning\n\
             log_checkpoints = off\n",
            self.port
        );
        OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| self.die(&format!("cannot write postgresql.conf: {e}")));
        File::create(self.base.join(INIT_MARKER))
            .unwrap_or_else(|e| self.die(&format!("cannot write init marker: {e}")));
    }

    fn start(&self, bins: &Bins, owner: Option<(u32, u32)>) {
        let data = self.data_dir();
        self.remove_stale_pid_file();
        let log = self.log_path();
        if !log.exists() {
            File::create(&log).ok();
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).ok();
        }
        // pg_ctl redirects the postmaster's stdio to the log and setsid()s it, so it
        // outlives this process and does not hold the test's output pipes open.
        let out = self.run(
            pg_command(&bins.pg_ctl, owner.is_some())
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        // A failed pg_ctl is only worth waiting on if a live postmaster owns the data
        // dir (e.g. still in crash recovery); otherwise report the error right away.
        if !out.status.success() && !self.is_ready() && !self.postmaster_alive() {
            self.die(&format!("pg_ctl start failed:\n{}", output_text(&out)));
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.is_ready() {
            if Instant::now() > deadline {
                self.die(&format!(
                    "server did not become ready on 127.0.0.1:{} within {READY_TIMEOUT:?}; \
                     pg_ctl said:\n{}",
                    self.port,
                    output_text(&out)
                ));
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Whether postmaster.pid names a running postgres process.
    fn postmaster_alive(&self) -> bool {
        let Ok(contents) = fs::read_to_string(self.data_dir().join("postmaster.pid")) else {
            return false;
        };
        let pid = contents.lines().next().unwrap_or("").trim();
        if pid.is_empty() {
            return false;
        }
        // /proc/<pid>/stat is "pid (comm) state ...". A zombie still carries the name
        // (in containers whose init never reaps, a killed postmaster stays one) but
        // postgres would treat it as alive, so count it as dead.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            return false;
        };
        let comm = &stat[open + 1..close];
        let state = stat[close + 1..].trim_start().chars().next();
        comm.starts_with("postgres") && !matches!(state, Some('Z' | 'X') | None)
    }

    /// After a reboot or kill -9 the pid in postmaster.pid may belong to an unrelated
    /// process, which makes postgres refuse to start; drop the file in that case.
    fn remove_stale_pid_file(&self) {
        let pid_file = self.data_dir().join("postmaster.pid");
        if pid_file.exists() && !self.postmaster_alive() {
            let _ = fs::remove_file(&pid_file);
        }
    }

    fn is_ready(&self) -> bool {
        match find_client_bin("pg_isready") {
            Some(pg_isready) => Command::new(pg_isready)
                .args(["-q", "-t", "3", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
                .args(["-p", &self.port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            None => self.psql(&["-c", "SELECT 1"]).status.success(),
        }
    }

    fn psql(&self, args: &[&str]) -> Output {
        let psql = find_client_bin("psql")
            .unwrap_or_else(|| self.die("psql not found (looked next to initdb, in /usr/bin and on PATH)"));
        let mut cmd = Command::new(psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"])
            .args(args)
            // PGCLUSTER steers Debian's psql wrapper; the others could alter the session.
            .env_remove("PGCLUSTER")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env("PGCONNECT_TIMEOUT", "10");
        self.run(&mut cmd, "psql")
    }

    /// Drops databases whose creating process no longer exists, so repeated test
    /// runs don't fill the disk (~7 MB each). Best effort; one process at a time.
    fn drop_orphaned_databases(&self) {
        if env::var_os("ONRAMP_TEST_PG_KEEP").is_some() || !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(gc_lock) = OpenOptions::new().create(true).truncate(false).write(true).open(self.base.join("gc.lock"))
        else {
            return;
        };
        if gc_lock.try_lock().is_err() {
            return; // someone else is already collecting
        }
        let out = self.psql(&["-c", "SELECT datname FROM pg_database WHERE datname LIKE 'onramp\\_test\\_%'"]);
        if !out.status.success() {
            return;
        }
        for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            let Some(pid) = name
                .strip_prefix(DB_PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = self.psql(&["-c", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")]);
            }
        }
    }

    fn run(&self, cmd: &mut Command, what: &str) -> Output {
        cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| self.die(&format!("cannot run {what} ({cmd:?}): {e}")))
    }

    fn die(&self, msg: &str) -> ! {
        let log = self.log_path();
        let tail = fs::read_to_string(&log)
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            })
            .unwrap_or_else(|_| "(no log yet)".into());
        panic!(
            "\n==================== onramp-testkit: PostgreSQL unavailable ====================\n\
             {msg}\n\n\
             Tests need a local PostgreSQL (15+). Install it with:\n    apt-get install -y postgresql\n\
             Cluster dir: {}\nServer log:  {}\n--- last lines of server log ---\n{tail}\n\
             ================================================================================\n",
            self.base.display(),
            log.display()
        );
    }
}

/// Directories to search for server binaries, in priority order.
fn server_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = env::var_os("ONRAMP_TEST_PG_BIN") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push("/usr/local/bin".into());
    // Debian/Ubuntu: /usr/lib/postgresql/<major>/bin, newest first.
    if let Ok(rd) = fs::read_dir("/usr/lib/postgresql") {
        let mut versioned: Vec<(u32, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        dirs.extend(versioned.into_iter().map(|(_, p)| p));
    }
    dirs.push("/usr/local/pgsql/bin".into());
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    dirs
}

/// initdb and pg_ctl from one directory (resolving symlinks), so versions match.
fn find_server_bins() -> Result<Bins, String> {
    let dirs = server_dirs();
    for dir in &dirs {
        let (initdb, pg_ctl) = (dir.join("initdb"), dir.join("pg_ctl"));
        if is_executable(&initdb) && is_executable(&pg_ctl) {
            let real_dir = fs::canonicalize(&initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|d| is_executable(&d.join("pg_ctl")))
                .unwrap_or_else(|| dir.clone());
            return Ok(Bins { initdb: real_dir.join("initdb"), pg_ctl: real_dir.join("pg_ctl") });
        }
    }
    Err(dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))
}

/// Client tools: prefer the server's own directory, then /usr/bin (Debian wrapper).
/// Cached: psql runs several times per test process.
fn find_client_bin(name: &'static str) -> Option<PathBuf> {
    static PSQL: OnceLock<Option<PathBuf>> = OnceLock::new();
    static PG_ISREADY: OnceLock<Option<PathBuf>> = OnceLock::new();
    let cell = if name == "psql" { &PSQL } else { &PG_ISREADY };
    cell.get_or_init(|| search_client_bin(name)).clone()
}

fn search_client_bin(name: &str) -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(bins) = find_server_bins() {
        if let Some(d) = bins.initdb.parent() {
            dirs.push(d.to_path_buf());
        }
    }
    dirs.push("/usr/bin".into());
    dirs.extend(server_dirs());
    dirs.into_iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    // Effective uid is the 2nd field of the Uid: line.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or_else(|| {
            Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        })
}

/// uid/gid of the `postgres` system user (PostgreSQL refuses to run as root).
fn postgres_user(cfg: &Config) -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => cfg.die(
            "running as root but there is no `postgres` system user to run the server as \
             (the Debian `postgresql` package creates it)",
        ),
    }
}

/// Command for a server binary; as root it is run as the `postgres` user.
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if !as_postgres {
        return Command::new(program);
    }
    let find = |cands: &[&str]| cands.iter().map(PathBuf::from).find(|p| is_executable(p));
    let mut cmd = if let Some(runuser) = find(&["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]) {
        let mut c = Command::new(runuser);
        c.args(["-u", "postgres", "--"]);
        c
    } else if let Some(setpriv) = find(&["/usr/bin/setpriv", "/bin/setpriv"]) {
        let mut c = Command::new(setpriv);
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]);
        c
    } else {
        panic!("running as root and neither runuser nor setpriv is available (apt-get install -y util-linux)");
    };
    cmd.arg(program);
    // The test's cwd may be unreadable for postgres, which makes the tools complain.
    cmd.current_dir("/");
    cmd
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}
