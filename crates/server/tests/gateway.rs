//! `onramp gateway` end to end with real WireGuard, inside two network namespaces made for
//! this test: the gateway (the real binary, userspace WireGuard) and a stand-in for core
//! (the link crate's gRPC server over an in-memory `GatewayControl`) live in one; a
//! WireGuard peer, configured with the key the gateway sent core, lives in the other,
//! joined by a veth pair. Traffic crosses the tunnel, stops when core removes the peer,
//! comes back when core adds it, keeps flowing while core is gone and stops while core
//! refuses the gateway (a revoked token); the gateway
//! reconnects when core returns, its health check follows the link, and SIGTERM removes
//! the interface and the NAT rule. Needs root and /dev/net/tun; fails (never skips) without.

mod netns;
use base64::Engine;
use defguard_wireguard_rs::{
    key::Key, net::IpAddrMask, peer::Peer, InterfaceConfiguration, Userspace, WGApi, WireguardInterfaceApi,
};
use netns::Netns;
use onramp_link::test_control::{SharedControl, TestControl};
use onramp_proto::gateway::{InterfaceSpec, PeerSpec, ToGateway};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "gw-test-token-5XbQ9rTz";

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (apt-get install -y iproute2 iptables iputils-ping)"))
}

fn sh(args: &[&str]) {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn require_root_and_tools() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the gateway test makes network namespaces and WireGuard interfaces: run it as root"
    );
    assert!(std::path::Path::new("/dev/net/tun").exists(), "/dev/net/tun is missing: modprobe tun");
    for (tool, arg) in [("ip", "-V"), ("ping", "-V"), ("iptables", "--version")] {
        let ok = Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is missing: apt-get install -y iproute2 iputils-ping iptables");
    }
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The health check's status code, or `None` if nothing answers.
fn health(ns: &Netns, port: u16) -> Option<u16> {
    ns.enter(|| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: gw\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    })
}

/// The core stand-in, in its own runtime so it can die the way a killed process does.
struct TestCore(Option<tokio::runtime::Runtime>);

impl TestCore {
    fn start(ns: &Netns, port: u16, control: &Arc<TestControl>) -> (TestCore, u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match ns.enter(|| std::net::TcpListener::bind(("127.0.0.1", port))) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("bind {port}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot bind the test core: {e}"),
            }
        };
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let control: Arc<dyn onramp_proto::gateway::GatewayControl> = Arc::new(SharedControl(control.clone()));
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            onramp_link::gateway::serve_gateway_link(l, control, None, std::future::pending()).await.unwrap();
        });
        (TestCore(Some(rt)), port)
    }

    fn kill(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The gateway process; killed on drop, its log printed if the test failed.
struct Gateway {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Gateway {
    fn start(ns: &str, args: &[String], log: std::path::PathBuf) -> Gateway {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_onramp"), "gateway"])
            .args(args)
            .env("ONRAMP_GATEWAY_TOKEN", TOKEN)
            .env("ONRAMP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Gateway { child: Some(child), log }
    }

    fn signal(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit on signal {sig}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- gateway log ----\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn gateway_serves_peers_fails_static_and_cleans_up() {
    require_root_and_tools();
    let id = std::process::id() % 100_000;
    let ns_gw = Netns::new("gw");
    let ns_peer = Netns::new("peer");
    let (veth_gw, veth_peer) = (format!("ogv{id}a"), format!("ogv{id}b"));
    let (wg_gw, wg_peer) = (format!("ogw{id}"), format!("ogp{id}"));
    sh(&["ip", "link", "add", &veth_gw, "type", "veth", "peer", "name", &veth_peer]);
    sh(&["ip", "link", "set", &veth_gw, "netns", &ns_gw.name]);
    sh(&["ip", "link", "set", &veth_peer, "netns", &ns_peer.name]);
    sh(&["ip", "-n", &ns_gw.name, "addr", "add", "192.168.231.1/24", "dev", &veth_gw]);
    sh(&["ip", "-n", &ns_peer.name, "addr", "add", "192.168.231.2/24", "dev", &veth_peer]);
    sh(&["ip", "-n", &ns_gw.name, "link", "set", &veth_gw, "up"]);
    sh(&["ip", "-n", &ns_peer.name, "link", "set", &veth_peer, "up"]);

    // The peer's key pair, made here like a client makes its own.
    let peer_secret = x25519_dalek::StaticSecret::random_from_rng(rand_core_os());
    let peer_pub = b64(x25519_dalek::PublicKey::from(&peer_secret).as_bytes());
    let peer_spec = PeerSpec { pubkey: peer_pub.clone(), allowed_ips: vec!["10.231.0.2/32".into()] };
    let control = TestControl::new(
        TOKEN,
        ToGateway::Full {
            interface: InterfaceSpec {
                location: "hq".into(),
                addresses: vec!["10.231.0.1/24".into()],
                listen_port: 51820,
            },
            peers: vec![
                peer_spec.clone(),
                // Malformed: skipped with a warning, never fatal.
                PeerSpec { pubkey: "not-a-key".into(), allowed_ips: vec!["10.231.0.9/32".into()] },
            ],
        },
    );
    let (mut core, core_port) = TestCore::start(&ns_gw, 0, &control);

    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("gw-data");
    let health_port = 18_000 + (id % 1000) as u16;
    let args: Vec<String> = [
        "--core-url",
        &format!("http://127.0.0.1:{core_port}"),
        "--userspace",
        "--interface",
        &wg_gw,
        "--gateway-data-dir",
        data_dir.to_str().unwrap(),
        "--health-addr",
        &format!("127.0.0.1:{health_port}"),
        "--stats-interval",
        "1",
        "--masquerade",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = tmp.path().join("gateway.log");
    let mut gw = Gateway::start(&ns_gw.name, &args, log.clone());

    wait_until("the gateway's hello", Duration::from_secs(30), || !control.seen().hellos.is_empty());
    let gw_pub = control.seen().hellos[0].0.pubkey.clone();
    // Stats about the peer prove the full configuration reached the interface.
    wait_until("a first stats report", Duration::from_secs(30), || {
        control.seen().stats.iter().any(|s| s.pubkey == peer_pub)
    });
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&data_dir.join("gateway.key")), 0o600);
    }
    wait_until("health 200 while linked", Duration::from_secs(10), || health(&ns_gw, health_port) == Some(200));

    // The peer, with the key the gateway sent core.
    let peer_api = ns_peer.enter(|| {
        let mut api = WGApi::<Userspace>::new(wg_peer.clone()).unwrap();
        api.create_interface().unwrap();
        let mut gw_peer = Peer::new(Key::try_from(gw_pub.as_str()).unwrap());
        gw_peer.endpoint = Some("192.168.231.1:51820".parse().unwrap());
        gw_peer.allowed_ips = vec!["10.231.0.0/24".parse::<IpAddrMask>().unwrap()];
        gw_peer.persistent_keepalive_interval = Some(1);
        api.configure_interface(&InterfaceConfiguration {
            name: wg_peer.clone(),
            prvkey: b64(&peer_secret.to_bytes()),
            addresses: vec!["10.231.0.2/24".parse().unwrap()],
            port: 51821,
            peers: vec![gw_peer],
            mtu: None,
            fwmark: None,
        })
        .unwrap();
        api
    });

    wait_until("ping across the tunnel", Duration::from_secs(30), || ns_peer.ping("10.231.0.1"));
    // WireGuard's MTU, so that tunnel packets and their outer headers fit the 1500-byte link.
    let link = run(&["ip", "-n", &ns_gw.name, "link", "show", &wg_gw]);
    assert!(String::from_utf8_lossy(&link.stdout).contains("mtu 1420"), "{}", String::from_utf8_lossy(&link.stdout));
    // A ping of a full 1420-byte packet crosses the tunnel.
    let big =
        ns_peer.command("ping").args(["-c", "1", "-W", "2", "-M", "do", "-s", "1392", "10.231.0.1"]).output().unwrap();
    assert!(big.status.success(), "a 1420-byte packet: {}", String::from_utf8_lossy(&big.stdout));
    wait_until("a handshake and bytes in the stats", Duration::from_secs(30), || {
        control.seen().stats.iter().any(|s| s.pubkey == peer_pub && s.latest_handshake.is_some() && s.rx_bytes > 0)
    });
    let rules = || {
        String::from_utf8_lossy(
            &run(&["ip", "netns", "exec", &ns_gw.name, "iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout,
        )
        .into_owned()
    };
    let r = rules();
    assert!(r.contains("10.231.0.0/24") && r.contains(&format!("onramp-gateway {wg_gw}")), "MASQUERADE rule: {r}");

    // Core removes the peer: traffic stops. Core adds it back: traffic returns.
    assert!(control.send(ToGateway::Remove { pubkey: peer_pub.clone() }));
    wait_until("traffic to stop after Remove", Duration::from_secs(20), || !ns_peer.ping("10.231.0.1"));
    assert!(control.send(ToGateway::Upsert { peer: peer_spec.clone() }));
    wait_until("traffic back after Upsert", Duration::from_secs(60), || ns_peer.ping("10.231.0.1"));

    // Core dies: the gateway keeps serving its peers, and says it is not linked.
    core.kill();
    wait_until("health 503 without core", Duration::from_secs(20), || health(&ns_gw, health_port) == Some(503));
    for _ in 0..3 {
        assert!(ns_peer.ping("10.231.0.1"), "traffic flows while core is away (fail static)");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Core returns on the same address: the gateway reconnects with the same key.
    let (mut core, _) = TestCore::start(&ns_gw, core_port, &control);
    wait_until("the gateway to reconnect", Duration::from_secs(30), || control.seen().hellos.len() >= 2);
    assert_eq!(control.seen().hellos[1].0.pubkey, gw_pub);
    wait_until("health 200 again", Duration::from_secs(10), || health(&ns_gw, health_port) == Some(200));
    assert!(ns_peer.ping("10.231.0.1"), "traffic still flows after the reconnect");

    // Core ends the session and then refuses the gateway (its token revoked): it stops
    // serving every peer, says so once, stays unhealthy and keeps asking.
    *control.refuse.lock().unwrap() = Some(onramp_proto::gateway::GatewayRefusal {
        kind: onramp_proto::gateway::RefusalKind::Unauthenticated,
        message: "the gateway token was revoked".into(),
    });
    control.end_sessions();
    wait_until("traffic to stop once refused", Duration::from_secs(30), || !ns_peer.ping("10.231.0.1"));
    let stopped_lines =
        || std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.contains("STOPPED SERVING")).count();
    wait_until("the refusal's reason in the log", Duration::from_secs(10), || stopped_lines() == 1);
    assert_eq!(health(&ns_gw, health_port), Some(503), "not healthy while refused");
    // Several retries later: still one "stopped" line, still no traffic.
    wait_until("retries", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).unwrap_or_default().matches("the gateway token was revoked").count() >= 4
    });
    assert_eq!(stopped_lines(), 1, "said once, not on every retry");
    assert!(!ns_peer.ping("10.231.0.1"), "no traffic while refused");
    assert_eq!(control.seen().hellos.len(), 2, "refused: no session");
    // The admin fixes it: the gateway is taken back and serves again.
    *control.refuse.lock().unwrap() = None;
    wait_until("the gateway to be taken back", Duration::from_secs(30), || control.seen().hellos.len() >= 3);
    wait_until("traffic back after the refusal ends", Duration::from_secs(60), || ns_peer.ping("10.231.0.1"));
    wait_until("health 200 once accepted", Duration::from_secs(10), || health(&ns_gw, health_port) == Some(200));

    // SIGTERM: exit 0, interface, socket and NAT rule gone.
    let status = gw.signal(libc::SIGTERM);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(!run(&["ip", "-n", &ns_gw.name, "link", "show", &wg_gw]).status.success(), "interface removed");
    assert!(!std::path::Path::new(&format!("/var/run/wireguard/{wg_gw}.sock")).exists(), "socket removed");
    assert!(!rules().contains(&format!("onramp-gateway {wg_gw}")), "MASQUERADE rule removed");

    // Killed outright, it leaves its socket; the next start cleans it up and reuses the key.
    let mut gw = Gateway::start(&ns_gw.name, &args, log.clone());
    wait_until("hello from the restarted gateway", Duration::from_secs(30), || control.seen().hellos.len() >= 4);
    assert_eq!(control.seen().hellos[3].0.pubkey, gw_pub, "the key survives a restart");
    wait_until("the restarted gateway's interface", Duration::from_secs(30), || {
        std::path::Path::new(&format!("/var/run/wireguard/{wg_gw}.sock")).exists()
    });
    gw.signal(libc::SIGKILL);
    assert!(std::path::Path::new(&format!("/var/run/wireguard/{wg_gw}.sock")).exists(), "a stale socket is left");
    let mut gw = Gateway::start(&ns_gw.name, &args, log.clone());
    wait_until("hello after the stale socket", Duration::from_secs(30), || control.seen().hellos.len() >= 5);
    wait_until("ping through the new interface", Duration::from_secs(60), || ns_peer.ping("10.231.0.1"));
    let status = gw.signal(libc::SIGTERM);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(!rules().contains(&format!("onramp-gateway {wg_gw}")), "adopted MASQUERADE rule removed");

    // Another machine (another key) for the same location: refused as a key conflict,
    // logged with the reason, retried; with --rotate-key it replaces the recorded key.
    let other_dir = tmp.path().join("gw-other");
    let mut other_args = args.clone();
    let i = other_args.iter().position(|a| a == "--gateway-data-dir").unwrap();
    other_args[i + 1] = other_dir.to_str().unwrap().to_owned();
    let other_log = tmp.path().join("other.log");
    let mut other = Gateway::start(&ns_gw.name, &other_args, other_log.clone());
    wait_until("the key conflict in the log", Duration::from_secs(30), || {
        let t = std::fs::read_to_string(&other_log).unwrap_or_default();
        t.contains("core refused this gateway") && t.contains("another key")
    });
    assert_eq!(control.seen().hellos.len(), 5, "a refused gateway opened no session");
    assert_eq!(health(&ns_gw, health_port), Some(503), "not linked while refused");
    assert!(other.signal(libc::SIGTERM).success(), "SIGTERM before any configuration exits 0 too");
    other_args.push("--rotate-key".into());
    let mut other = Gateway::start(&ns_gw.name, &other_args, other_log.clone());
    wait_until("the rotated key's hello", Duration::from_secs(30), || control.seen().hellos.len() >= 6);
    let (hello, _) = control.seen().hellos[5].clone();
    assert!(hello.rotate_key && hello.pubkey != gw_pub, "a new key, sent with rotate_key");
    assert!(other.signal(libc::SIGTERM).success());

    let text = std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(&other_log).unwrap();
    assert!(!text.contains(TOKEN), "the token never appears in the log");
    for dir in [&data_dir, &other_dir] {
        let key = std::fs::read_to_string(dir.join("gateway.key")).unwrap();
        assert!(!text.contains(key.trim()), "the private key never appears in the log");
    }
    assert!(text.contains("skipped a malformed peer"), "the malformed peer was reported: {text}");

    core.kill();
    drop(peer_api);
}

fn rand_core_os() -> rand::rngs::OsRng {
    rand::rngs::OsRng
}
