//! A real X display (Xvfb) with a D-Bus session bus, and the `onramp-desktop` binary run on
//! it with its log read line by line. Shared by the window tests and the benchmark.

#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_onramp-desktop");

/// Xvfb on a free display number and a private session bus; both end when dropped.
pub struct Display {
    xvfb: Child,
    dbus: Child,
    pub display: String,
    pub bus: String,
    _dir: tempfile::TempDir,
}

impl Display {
    pub fn start() -> Display {
        let dir = tempfile::tempdir().unwrap();
        // Xvfb picks a free display itself and writes its number to stdout (-displayfd):
        // tests running at the same time never race for one.
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Xvfb ({e}); install it: apt-get install -y xvfb"));
        let mut line = String::new();
        std::io::BufReader::new(xvfb.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let n: u32 = line.trim().parse().unwrap_or_else(|_| panic!("Xvfb did not say its display: {line:?}"));
        let bus = format!("unix:path={}", dir.path().join("bus").display());
        let dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", &format!("--address={bus}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dbus-daemon ({e}); install it: apt-get install -y dbus"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !dir.path().join("bus").exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Display { xvfb, dbus, display: format!(":{n}"), bus, _dir: dir }
    }

    /// Starts the app on this display with `data` as its data directory.
    pub fn launch(&self, data: &Path, args: &[&str]) -> App {
        let mut child = self
            .command(data, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start onramp-desktop");
        let started = Instant::now();
        let log = Arc::new(Mutex::new(Vec::<(Duration, String)>::new()));
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push((started.elapsed(), line));
            }
        });
        App { child, log, started }
    }

    pub fn command(&self, data: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env_remove("WAYLAND_DISPLAY")
            .env("ONRAMP_CLIENT_DATA_DIR", data)
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
            .env("ONRAMP_CLIENT_RETRIES", "0")
            .env("ONRAMP_CLIENT_SYSTEM_DIR", data.join("no-etc"))
            .env("ONRAMP_CLIENT_SOCKET", data.join("no-service.sock"))
            .env("ONRAMP_DESKTOP_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    /// `xwininfo`'s map state of the app's window ("IsViewable", "IsUnMapped"), if it has one.
    pub fn window_state(&self) -> Option<String> {
        let out = Command::new("xwininfo")
            .args(["-display", &self.display, "-name", "Onramp"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run xwininfo ({e}); install it: apt-get install -y x11-utils"));
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|l| l.trim().strip_prefix("Map State: ").map(str::to_owned))
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.dbus.kill();
        let _ = self.xvfb.kill();
        let _ = self.dbus.wait();
        let _ = self.xvfb.wait();
    }
}

pub struct App {
    pub child: Child,
    /// Each line with when it came, from the launch on.
    log: Arc<Mutex<Vec<(Duration, String)>>>,
    pub started: Instant,
}

impl App {
    /// Waits for a log line containing `text`; returns it and when it came after the launch.
    pub fn wait_line(&self, text: &str, limit: Duration) -> (String, Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((at, l)) = self.log.lock().unwrap().iter().find(|(_, l)| l.contains(text)) {
                return (l.clone(), *at);
            }
            assert!(Instant::now() < deadline, "no log line with {text:?}; the app logged:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Resident memory in KiB (from /proc): now, peak, and now split into anonymous (the
    /// app's own heap and the driver's buffers) and file-backed (mapped libraries).
    pub fn rss_kib(&self) -> (u64, u64, u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"), field("RssAnon:"), field("RssFile:"))
    }

    /// CPU time used so far (user + system), from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn data_dir(root: &Path) -> PathBuf {
    let d = root.join("data");
    std::fs::create_dir_all(&d).unwrap();
    d
}
