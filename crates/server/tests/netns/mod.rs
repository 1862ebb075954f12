//! Network namespaces for the connectivity tests (included with `mod netns;`): each test
//! builds its own hosts joined by veth pairs, runs processes inside them with `ip netns
//! exec`, and makes its own HTTP and TCP calls from a thread moved into a namespace.
//! Everything is named after the test and the process id and removed on drop, even when
//! the test panics.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::{Command, Output};

/// Root and /dev/net/tun are required: the test fails (never skips) and says why.
pub fn require_root_and_tun() {
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the connectivity tests need root (network namespaces, TUN devices): run them as root, e.g. sudo ./scripts/test"
    );
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "the connectivity tests need /dev/net/tun (userspace WireGuard): load the tun module (modprobe tun) or give the container the device"
    );
    for (tool, package) in [("ip", "iproute2"), ("ping", "iputils-ping")] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        assert!(found.status.success(), "`{tool}` is missing: apt-get install -y {package}");
    }
}

/// Runs `cmd` and panics with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ip(args: &[&str]) -> Output {
    run(Command::new("ip").args(args))
}

/// One network namespace: a host of the test network.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `onr-TAG-PID`; a leftover of the same name (a crashed earlier run) is replaced.
    pub fn new(tag: &str) -> Netns {
        let name = format!("onr-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command to run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Whether one ping to `addr` from this namespace answers within a second.
    pub fn ping(&self, addr: &str) -> bool {
        self.ping_within(addr, "1")
    }

    /// Whether one ping answers within `secs` (fractions allowed): a short wait measures
    /// when traffic stops more finely.
    pub fn ping_within(&self, addr: &str, secs: &str) -> bool {
        self.command("ping")
            .args(["-c", "1", "-W", secs, "-q", addr])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Runs `f` on a thread that has entered this namespace, so every socket it opens
    /// lives there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Runs a future on a fresh runtime inside the namespace.
    pub fn block_on<T: Send>(&self, fut: impl std::future::Future<Output = T> + Send) -> T {
        self.enter(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes started with `ip netns exec` keep a namespace alive only while they run;
        // the test stops them first. Deleting the namespace removes its veth ends.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Joins two namespaces with a veth pair: `a_addr` / `b_addr` are CIDRs on each end.
pub fn link(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) {
    // Interface names are local to each namespace, but the pair is created in the root
    // namespace first, so they must be unique there too.
    let pid = std::process::id() % 100_000;
    let tag = |ns: &Netns| ns.name.split('-').nth(1).unwrap_or("x").chars().take(3).collect::<String>();
    let (an, bn) = (format!("v{}{}{pid}", tag(a), tag(b)), format!("v{}{}{pid}", tag(b), tag(a)));
    ip(&["link", "add", &an, "netns", &a.name, "type", "veth", "peer", "name", &bn, "netns", &b.name]);
    a.ip(&["addr", "add", a_addr, "dev", &an]);
    b.ip(&["addr", "add", b_addr, "dev", &bn]);
    a.ip(&["link", "set", &an, "up"]);
    b.ip(&["link", "set", &bn, "up"]);
}
