//! The gateway's userspace WireGuard device against real tools, in two network namespaces
//! made for this test: configured with `wg set`, read with `wg show`, handshaking and
//! passing pings between two devices over a veth pair. Checks that only peers with traffic
//! hold sessions, that peers change in place, that an address moves between peers, and that
//! a bad request changes nothing. Needs root, /dev/net/tun and wireguard-tools; fails (never
//! skips) without.

#[path = "../../server/tests/netns/mod.rs"]
mod netns;

use base64::Engine;
use netns::Netns;
use onramp_gateway::device::{socket_path, Device};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

fn require_wg() {
    let ok = Command::new("wg").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`wg` is missing: apt-get install -y --no-install-recommends wireguard-tools");
}

fn keypair() -> (String, String) {
    let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
    let public = x25519_dalek::PublicKey::from(&secret);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    (b64(secret.as_bytes()), b64(public.as_bytes()))
}

fn hex_of(b64: &str) -> String {
    hex::encode(base64::engine::general_purpose::STANDARD.decode(b64).unwrap())
}

/// `wg ARGS...`, which must succeed; its stdout.
fn wg(args: &[&str]) -> String {
    let out = Command::new("wg").args(args).output().unwrap();
    assert!(out.status.success(), "wg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One raw request on the configuration socket; the answer's lines.
fn uapi(iface: &str, request: &str) -> Vec<String> {
    let mut s = UnixStream::connect(socket_path(iface)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut lines = Vec::new();
    for l in BufReader::new(s).lines() {
        let l = l.unwrap();
        if l.is_empty() {
            break;
        }
        lines.push(l);
    }
    lines
}

/// The peers line by line from `wg show IFACE dump` (after the interface line):
/// key, psk, endpoint, allowed ips, latest handshake, rx, tx, keepalive.
fn dump(iface: &str) -> Vec<Vec<String>> {
    wg(&["show", iface, "dump"]).lines().skip(1).map(|l| l.split('\t').map(str::to_owned).collect()).collect()
}

fn peer_line(iface: &str, key: &str) -> Option<Vec<String>> {
    dump(iface).into_iter().find(|f| f[0] == key)
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Side {
    ns: Netns,
    iface: String,
    device: Option<Device>,
    key_file: tempfile::NamedTempFile,
    public: String,
}

fn side(tag: &str, iface: &str, tunnel_addr: &str) -> Side {
    let ns = Netns::new(tag);
    let device = ns.enter(|| Device::start(iface, None).unwrap());
    ns.ip(&["addr", "add", tunnel_addr, "dev", iface]);
    ns.ip(&["link", "set", iface, "up"]);
    let (private, public) = keypair();
    let mut key_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(key_file, "{private}").unwrap();
    Side { ns, iface: iface.to_owned(), device: Some(device), key_file, public }
}

#[test]
fn two_devices_handshake_pass_traffic_and_only_live_peers_hold_sessions() {
    netns::require_root_and_tun();
    require_wg();
    let pid = std::process::id() % 100_000;
    let a = side("dva", &format!("odva{pid}"), "10.92.0.1/24");
    let b = side("dvb", &format!("odvb{pid}"), "10.92.0.2/24");
    netns::link(&a.ns, "10.91.0.1/24", &b.ns, "10.91.0.2/24");
    let a_key = a.key_file.path().to_str().unwrap();
    let b_key = b.key_file.path().to_str().unwrap();

    // A is the gateway: many idle peers, and B, which it has never heard from.
    wg(&[
        "set",
        &a.iface,
        "private-key",
        a_key,
        "listen-port",
        "51901",
        "peer",
        &b.public,
        "allowed-ips",
        "10.92.0.2/32",
    ]);
    let mut idle = String::from("set=1\n");
    for i in 0..2000u32 {
        let (_, k) = keypair();
        idle.push_str(&format!("public_key={}\nallowed_ip=10.93.{}.{}/32\n", hex_of(&k), i / 250, i % 250 + 1));
    }
    idle.push('\n');
    assert_eq!(uapi(&a.iface, &idle), vec!["errno=0"]);
    assert_eq!(a.device.as_ref().unwrap().peer_counts(), (2001, 0), "no peer holds a session before traffic");
    assert_eq!(wg(&["show", &a.iface, "listen-port"]).trim(), "51901");

    // B dials A, keeping the link alive.
    wg(&[
        "set",
        &b.iface,
        "private-key",
        b_key,
        "peer",
        &a.public,
        "endpoint",
        "10.91.0.1:51901",
        "allowed-ips",
        "10.92.0.1/32",
        "persistent-keepalive",
        "1",
    ]);
    wait_until("B's ping through the tunnel", Duration::from_secs(10), || b.ns.ping("10.92.0.1"));
    let line = peer_line(&a.iface, &b.public).unwrap();
    assert_eq!(line[2].split(':').next(), Some("10.91.0.2"), "A learnt B's endpoint: {line:?}");
    assert!(line[4].parse::<u64>().unwrap() > 0, "A saw a handshake: {line:?}");
    assert!(line[5].parse::<u64>().unwrap() > 0 && line[6].parse::<u64>().unwrap() > 0, "bytes both ways: {line:?}");
    assert_eq!(a.device.as_ref().unwrap().peer_counts(), (2001, 1), "only B holds a session");

    // More addresses for B, in place: the session stays.
    let handshake = line[4].clone();
    wg(&["set", &a.iface, "peer", &b.public, "allowed-ips", "10.92.0.2/32,10.92.5.0/24"]);
    assert!(b.ns.ping("10.92.0.1"));
    let line = peer_line(&a.iface, &b.public).unwrap();
    assert_eq!(line[3], "10.92.0.2/32,10.92.5.0/24");
    assert_eq!(line[4], handshake, "changing allowed IPs kept the session");

    // An address given to another peer leaves B: A's replies go to the other peer.
    let (_, c) = keypair();
    wg(&["set", &a.iface, "peer", &c, "allowed-ips", "10.92.0.2/32"]);
    assert_eq!(peer_line(&a.iface, &b.public).unwrap()[3], "10.92.5.0/24");
    assert!(!b.ns.ping("10.92.0.1"), "the address moved to another peer");
    wg(&["set", &a.iface, "peer", &c, "remove", "peer", &b.public, "allowed-ips", "10.92.0.2/32"]);
    wait_until("B's ping with its address back", Duration::from_secs(5), || b.ns.ping("10.92.0.1"));

    // A bad request changes nothing, and says why it failed.
    let (_, d) = keypair();
    let bad = format!("set=1\npublic_key={}\nallowed_ip=10.92.9.9\n\n", hex_of(&d));
    assert_eq!(uapi(&a.iface, &bad), vec!["errno=22"]);
    assert!(peer_line(&a.iface, &d).is_none(), "no half-applied peer");
    assert_eq!(uapi(&a.iface, "set=1\nlisten_port=65536\n\n"), vec!["errno=22"]);
    assert_eq!(uapi(&a.iface, "frobnicate=1\n\n"), vec!["errno=22"]);
    assert_eq!(wg(&["show", &a.iface, "listen-port"]).trim(), "51901");

    // B removed: no traffic, no session left behind.
    wg(&["set", &a.iface, "peer", &b.public, "remove"]);
    assert!(!b.ns.ping("10.92.0.1"), "a removed peer's traffic stops at once");
    assert_eq!(a.device.as_ref().unwrap().peer_counts(), (2000, 0));

    // Stopping removes the socket and, with the last descriptor, the interface.
    let mut a = a;
    a.device.take().unwrap().stop();
    assert!(!socket_path(&a.iface).exists(), "socket removed");
    wait_until("the interface to go", Duration::from_secs(5), || {
        !Command::new("ip").args(["-n", &a.ns.name, "link", "show", &a.iface]).output().unwrap().status.success()
    });
}
