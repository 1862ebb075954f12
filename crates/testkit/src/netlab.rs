//! A lab of two network namespaces for real tunnels: A runs `onramp-client service`
//! (userspace WireGuard), B a wireguard-go peer standing in for the gateway with an address
//! behind it. Used by the client's tunnel tests and the desktop app's. Needs root,
//! /dev/net/tun, ip, wg, wireguard-go, ping and setpriv: it FAILS (never skips) without them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const GATEWAY_NET: &str = "10.61.0.1/24";
pub const PROTECTED: &str = "10.62.0.1";
pub const ENDPOINT_A: &str = "192.0.2.1";
pub const ENDPOINT_B: &str = "192.0.2.2";

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn must(args: &[&str]) -> String {
    let out = run(Command::new(args[0]).args(&args[1..]));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn require_tools() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "this test creates network namespaces and interfaces: run it as root (e.g. sudo -E cargo nextest run -p onramp-client)");
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: modprobe tun (in a container: --device /dev/net/tun)"
    );
    for tool in ["ip", "wg", "wireguard-go", "ping", "setpriv", "groupadd"] {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing: apt-get install -y iproute2 wireguard-tools wireguard-go iputils-ping util-linux passwd");
    }
}

/// Everything the test made outside its temp dirs, removed on drop (also after a panic).
pub struct Lab {
    pub ns_a: String,
    pub ns_b: String,
    pub gw_if: String,
    pub group: String,
    pub prefix: String,
    pub socket: PathBuf,
    pub children: Vec<Child>,
    pub service: Option<Child>,
    /// PATH of the service when set (a stand-in resolvconf first).
    pub service_path: Option<String>,
    pub dir: tempfile::TempDir,
    /// The `onramp-client` binary.
    pub bin: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut s) = self.service.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.gw_if));
        if let Ok(dir) = std::fs::read_dir("/var/run/wireguard") {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = Command::new("groupdel").arg(&self.group).status();
    }
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(self) -> Ran {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

impl Lab {
    /// `bin` is the `onramp-client` binary (the service, and the CLI of [`Lab::client`]).
    pub fn new(bin: &Path) -> Lab {
        require_tools();
        let pid = std::process::id();
        let short = pid % 1_000_000;
        let mut lab = Lab {
            ns_a: format!("onramp-a-{pid}"),
            ns_b: format!("onramp-b-{pid}"),
            gw_if: format!("orgw{short}"),
            group: format!("ort{short}"),
            prefix: format!("ot{short}"),
            socket: PathBuf::new(),
            children: vec![],
            service: None,
            service_path: None,
            dir: tempfile::tempdir().unwrap(),
            bin: bin.to_owned(),
        };
        lab.socket = lab.dir.path().join("service.sock");
        // nobody must reach the socket's directory for the refusal tests.
        std::fs::set_permissions(lab.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        must(&["groupadd", &lab.group]);
        must(&["ip", "netns", "add", &lab.ns_a]);
        must(&["ip", "netns", "add", &lab.ns_b]);
        let (va, vb) = (format!("ora{short}"), format!("orb{short}"));
        must(&["ip", "link", "add", &va, "type", "veth", "peer", "name", &vb]);
        must(&["ip", "link", "set", &va, "netns", &lab.ns_a]);
        must(&["ip", "link", "set", &vb, "netns", &lab.ns_b]);
        for (ns, dev, addr) in [(&lab.ns_a, &va, ENDPOINT_A), (&lab.ns_b, &vb, ENDPOINT_B)] {
            must(&["ip", "-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        must(&["ip", "-n", &lab.ns_b, "addr", "add", &format!("{PROTECTED}/32"), "dev", "lo"]);
        lab
    }

    /// The gateway stand-in: wireguard-go in B; returns its public key.
    pub fn start_gateway(&mut self) -> String {
        let key = must(&["wg", "genkey"]).trim().to_owned();
        let keyfile = self.dir.path().join("gw.key");
        std::fs::write(&keyfile, format!("{key}\n")).unwrap();
        std::fs::set_permissions(&keyfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut pubkey = Command::new("wg").arg("pubkey").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        pubkey.stdin.take().unwrap().write_all(key.as_bytes()).unwrap();
        let public = String::from_utf8(pubkey.wait_with_output().unwrap().stdout).unwrap().trim().to_owned();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_b, "wireguard-go", "-f", &self.gw_if])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        let sock = format!("/var/run/wireguard/{}.sock", self.gw_if);
        wait_for(Duration::from_secs(10), "wireguard-go's socket", || Path::new(&sock).exists());
        let b = self.ns_b.clone();
        must(&[
            "ip",
            "netns",
            "exec",
            &b,
            "wg",
            "set",
            &self.gw_if,
            "private-key",
            keyfile.to_str().unwrap(),
            "listen-port",
            "51820",
        ]);
        must(&["ip", "-n", &b, "addr", "add", GATEWAY_NET, "dev", &self.gw_if]);
        must(&["ip", "-n", &b, "link", "set", &self.gw_if, "up"]);
        public
    }

    pub fn gateway_accepts(&self, client_pubkey: &str, client_ip: &str) {
        must(&[
            "ip",
            "netns",
            "exec",
            &self.ns_b,
            "wg",
            "set",
            &self.gw_if,
            "peer",
            client_pubkey,
            "allowed-ips",
            &format!("{client_ip}/32"),
        ]);
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("ONRAMP_CLIENT_DATA_DIR", self.data())
            .env("ONRAMP_CLIENT_SOCKET", &self.socket)
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
            .env("ONRAMP_CLIENT_RETRIES", "1")
            .env_remove("ONRAMP_TOKEN")
            .env_remove("ONRAMP_CLIENT_LOG")
            .stdin(Stdio::null());
        c
    }

    pub async fn client(&self, args: &[&str]) -> Ran {
        let mut c = self.cmd(args);
        let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A client command as `nobody` with its own (empty) data dir, in `groups` if given.
    pub async fn as_nobody(&self, args: &[&str], groups: Option<&str>) -> Ran {
        let data = self.dir.path().join("nobody-data");
        std::fs::create_dir_all(&data).unwrap();
        must(&["chown", "nobody", data.to_str().unwrap()]);
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup"]);
        match groups {
            Some(g) => c.arg(format!("--groups={g}")),
            None => c.arg("--clear-groups"),
        };
        c.arg("--").arg(&self.bin).args(args);
        c.env("ONRAMP_CLIENT_DATA_DIR", &data).env("ONRAMP_CLIENT_SOCKET", &self.socket).stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn start_service(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("service.log")).unwrap();
        let mut cmd = Command::new("ip");
        if let Some(path) = &self.service_path {
            cmd.env("PATH", path);
        }
        let child = cmd
            .args(["netns", "exec", &self.ns_a, self.bin.to_str().unwrap(), "service", "--group", &self.group])
            .env("ONRAMP_CLIENT_SOCKET", &self.socket)
            .env("ONRAMP_CLIENT_INTERFACE_PREFIX", &self.prefix)
            .env("ONRAMP_CLIENT_USERSPACE", "true")
            .env_remove("ONRAMP_CLIENT_LOG")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.service = Some(child);
        let sock = self.socket.clone();
        wait_for(Duration::from_secs(15), "the service's socket", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    pub fn service_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    pub fn in_a(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", self.ns_a.as_str()];
        all.extend_from_slice(args);
        must(&all)
    }

    pub fn our_links(&self) -> Vec<String> {
        self.in_a(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|n| n.starts_with(&self.prefix))
            .map(str::to_owned)
            .collect()
    }

    pub fn our_rules(&self) -> Vec<String> {
        let mut rules = self.in_a(&["ip", "-4", "rule", "show"]);
        rules.push_str(&self.in_a(&["ip", "-6", "rule", "show"]));
        rules.lines().filter(|l| l.starts_with("30950:") || l.starts_with("30951:")).map(str::to_owned).collect()
    }

    pub fn our_routes(&self) -> Vec<String> {
        self.in_a(&["ip", "route", "show", "table", "all"])
            .lines()
            .filter(|l| l.contains(&self.prefix))
            .map(str::to_owned)
            .collect()
    }

    pub fn our_sockets(&self) -> Vec<String> {
        std::fs::read_dir("/var/run/wireguard")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&self.prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The lines of `ip route show ARGS` in A.
    pub fn routes_a(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "route", "show"];
        all.extend_from_slice(args);
        self.in_a(&all)
    }

    /// The processes of the userspace device `iface` (`onramp-client service-device IFACE`).
    pub fn device_pids(&self, iface: &str) -> Vec<String> {
        let mut pids = vec![];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.windows(2).any(|w| w[0] == b"service-device" && w[1] == iface.as_bytes()) {
                pids.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        pids
    }

    /// Pings the protected address from A until it answers (a handshake may be under way).
    pub fn ping_through_tunnel(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ping_through_tunnel_once() {
                return true;
            }
        }
        false
    }

    /// One ping of the protected address from A (1 s timeout).
    pub fn ping_through_tunnel_once(&self) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.ns_a, "ping", "-c", "1", "-W", "1", PROTECTED])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
