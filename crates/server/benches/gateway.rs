//! Gateway benchmark (issue 11). Runs as root with real userspace WireGuard in network
//! namespaces, like the connectivity test: core (SQLite) and `onramp gateway` on one host,
//! the client on another. Prints one table:
//! - a new device reaching the gateway: from the admin API's answer to the peer present on
//!   the gateway's interface (read through its WireGuard UAPI socket), p50/p99, with
//!   BENCH_LATENCY_PEERS (5,000) peers already on the interface;
//! - full sync of a gateway (re)starting on a location with BENCH_PEERS (10,000) peers:
//!   time until every peer is on the interface, and the gateway's peak RSS;
//! - TCP throughput client -> gateway host through the userspace tunnel against the raw
//!   veth between the same two hosts, one stream and four, and the ratio.
//!
//! Run: `sudo cargo bench -p onramp-server --bench gateway` (env BENCH_PEERS,
//! BENCH_LATENCY_PEERS, BENCH_SAMPLES (200), BENCH_SECS (5 per throughput run)).

#[path = "../tests/netns/mod.rs"]
mod netns;

use futures::StreamExt;
use netns::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_onramp");
const GW_IP: &str = "172.31.1.1";
const TUNNEL_GW_IP: &str = "10.77.0.1";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn secret_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn random_key() -> String {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut seed).unwrap();
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(seed));
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, public.as_bytes())
}

/// The base64 keys of the peers on a userspace interface, from its UAPI socket.
fn interface_peers(iface: &str) -> Option<std::collections::HashSet<String>> {
    let mut s = std::os::unix::net::UnixStream::connect(format!("/var/run/wireguard/{iface}.sock")).ok()?;
    s.write_all(b"get=1\n\n").ok()?;
    let mut out = String::new();
    let mut buf = [0u8; 65536];
    while !out.contains("errno=") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Some(
        out.lines()
            .filter_map(|l| l.strip_prefix("public_key="))
            .map(|hex| {
                let bytes = hex::decode(hex).unwrap();
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
            })
            .collect(),
    )
}

fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// A memory figure of /proc/PID/status in MiB (`VmRSS:` now, `VmHWM:` peak).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Setup {
    client: Netns,
    gateway: Netns,
    dir: tempfile::TempDir,
    http: u16,
    gw_port: u16,
    token: String,
    iface: String,
    _core: Killed,
}

impl Setup {
    fn new() -> Setup {
        require_root_and_tun();
        let client = Netns::new("bc");
        let gateway = Netns::new("bg");
        link(&client, "172.31.1.2/24", &gateway, "172.31.1.1/24");
        let dir = tempfile::tempdir().unwrap();
        let (http, gw_port) = (free_port(), free_port());
        let data = dir.path().join("data");
        let core = gateway
            .command(BIN)
            .arg("serve")
            .env("ONRAMP_DATA_DIR", &data)
            .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("ONRAMP_EDGE_ADDR", format!("{GW_IP}:8080"))
            .env("ONRAMP_PUBLIC_URL", format!("http://{GW_IP}:8080"))
            .env("ONRAMP_GATEWAY_ADDR", format!("127.0.0.1:{gw_port}"))
            .env("ONRAMP_GATEWAY_INSECURE", "true")
            // BENCH_CORE_LOG=warn,onramp_core::gateways=debug shows each peer-set read.
            .env("ONRAMP_LOG", std::env::var("BENCH_CORE_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let core = Killed(core);
        let url = format!("http://127.0.0.1:{http}/api/v1/health");
        for i in 0.. {
            let u = url.clone();
            if gateway.block_on(async move { reqwest::get(u).await.is_ok() }) {
                break;
            }
            assert!(i < 600, "core did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = run(gateway
            .command(BIN)
            .args(["admin", "api-token", "create", "--name", "bench"])
            .env("ONRAMP_DATA_DIR", &data));
        let token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned();
        let iface = format!("onrb{}", std::process::id() % 100_000);
        Setup { client, gateway, dir, http, gw_port, token, iface, _core: core }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Many admin API calls at once from inside the gateway namespace (64 in flight).
    fn api_many(&self, calls: Vec<(String, Value)>) -> Vec<Value> {
        let (http, token) = (self.http, self.token.clone());
        self.gateway.block_on(async move {
            let c = reqwest::Client::new();
            futures::stream::iter(calls)
                .map(|(path, body)| {
                    let (c, token) = (c.clone(), token.clone());
                    async move {
                        let r = c
                            .post(format!("http://127.0.0.1:{http}/api/v1/{path}"))
                            .bearer_auth(token)
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        let status = r.status();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        assert!(status.is_success(), "{path}: {status} {v}");
                        v
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await
        })
    }

    /// Users `from..to`, one device each.
    fn seed(&self, from: usize, to: usize) {
        let users = (from..to)
            .map(|i| {
                ("user".to_owned(), json!({"username": format!("u{i}"), "first_name": "U", "last_name": "L", "email": format!("u{i}@example.com")}))
            })
            .collect();
        self.api_many(users);
        let devices = (from..to)
            .map(|i| {
                ("device".to_owned(), json!({"username": format!("u{i}"), "name": "laptop", "pubkey": random_key()}))
            })
            .collect();
        self.api_many(devices);
    }

    fn gateway_token(&self) -> PathBuf {
        let out = run(self
            .gateway
            .command(BIN)
            .args(["admin", "gateway-token", "create", "--location", "office"])
            .env("ONRAMP_DATA_DIR", self.data()));
        let path = self.dir.path().join(format!("gw-{}.token", Instant::now().elapsed().as_nanos()));
        secret_file(&path, String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim());
        path
    }

    fn start_gateway(&self) -> Killed {
        let token = self.gateway_token();
        let child = self
            .gateway
            .command(BIN)
            .arg("gateway")
            .env("ONRAMP_GATEWAY_CORE_URL", format!("http://127.0.0.1:{}", self.gw_port))
            .env("ONRAMP_GATEWAY_TOKEN_FILE", token)
            .env("ONRAMP_GATEWAY_INTERFACE", &self.iface)
            .env("ONRAMP_GATEWAY_DATA_DIR", self.dir.path().join("gw"))
            .env("ONRAMP_GATEWAY_USERSPACE", "true")
            .env("ONRAMP_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Killed(child)
    }

    /// Waits until the interface holds `n` peers; returns how long that took.
    fn wait_peers(&self, n: usize, limit: Duration) -> Duration {
        let began = Instant::now();
        loop {
            if interface_peers(&self.iface).is_some_and(|p| p.len() >= n) {
                return began.elapsed();
            }
            assert!(began.elapsed() < limit, "the gateway did not reach {n} peers in {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
}

/// Mbit/s sent from the client host to `addr` over `streams` TCP connections for `secs`.
fn throughput(from: &Netns, to: &Netns, addr: &str, streams: usize, secs: u64) -> f64 {
    let (tx, rx) = std::sync::mpsc::channel();
    let to_path = format!("/var/run/netns/{}", to.name);
    let bind = addr.to_owned();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&to_path).unwrap();
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let l = std::net::TcpListener::bind((bind.as_str(), 0)).unwrap();
        tx.send(l.local_addr().unwrap().port()).unwrap();
        for s in l.incoming().take(streams) {
            let mut s = s.unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let port = rx.recv().unwrap();
    let target: std::net::SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let sent: u64 = from.enter(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..streams)
                .map(|_| {
                    s.spawn(move || {
                        let mut c = std::net::TcpStream::connect(target).unwrap();
                        let buf = vec![7u8; 1 << 16];
                        let (began, mut sent) = (Instant::now(), 0u64);
                        while began.elapsed() < Duration::from_secs(secs) {
                            c.write_all(&buf).unwrap();
                            sent += buf.len() as u64;
                        }
                        sent
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        })
    });
    sent as f64 * 8.0 / secs as f64 / 1e6
}

fn main() {
    let peers = env_usize("BENCH_PEERS", 10_000);
    let latency_peers = env_usize("BENCH_LATENCY_PEERS", 5_000).min(peers);
    let samples = env_usize("BENCH_SAMPLES", 200);
    let secs = env_usize("BENCH_SECS", 5) as u64;
    let s = Setup::new();
    s.api_many(vec![(
        "location".into(),
        json!({"name": "office", "address": "10.77.0.1/16", "endpoint": GW_IP, "port": 51820, "allowed_ips": ["10.77.0.0/16"]}),
    )]);

    // A new device reaching a gateway that already serves `latency_peers` peers.
    let began = Instant::now();
    s.seed(0, latency_peers);
    eprintln!("seeded {latency_peers} users and devices in {:?}", began.elapsed());
    let gw = s.start_gateway();
    s.wait_peers(latency_peers, Duration::from_secs(120));
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let key = random_key();
        let u = latency_peers + i;
        s.api_many(vec![(
            "user".into(),
            json!({"username": format!("u{u}"), "first_name": "U", "last_name": "L", "email": format!("u{u}@example.com")}),
        )]);
        s.api_many(vec![("device".into(), json!({"username": format!("u{u}"), "name": "laptop", "pubkey": key}))]);
        let answered = Instant::now();
        loop {
            if interface_peers(&s.iface).is_some_and(|p| p.contains(&key)) {
                break;
            }
            assert!(answered.elapsed() < Duration::from_secs(30), "device {u} never reached the gateway");
            std::thread::sleep(Duration::from_millis(2));
        }
        lat.push(answered.elapsed());
    }
    drop(gw);

    // Full sync of a gateway starting on `peers` peers.
    let have = latency_peers + samples;
    if peers > have {
        s.seed(have, peers);
    }
    let total = peers.max(have);
    let gw = s.start_gateway();
    let sync = s.wait_peers(total, Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(2));
    let rss = peak_rss_mib(gw.0.id());
    let rss_now = status_mib(gw.0.id(), "VmRSS:");

    // Throughput: a real client through the tunnel against the raw veth, same two hosts.
    let raw1 = throughput(&s.client, &s.gateway, GW_IP, 1, secs);
    let raw4 = throughput(&s.client, &s.gateway, GW_IP, 4, secs);
    let (tun1, tun4) = tunnel_throughput(&s, secs);
    drop(gw);

    println!();
    println!("| measure | value | target |");
    println!("|---|---:|---|");
    println!(
        "| new device -> gateway p50 ({latency_peers} peers, {samples} devices) | {:.1} ms | |",
        quantile_ms(&mut lat, 0.5)
    );
    println!("| new device -> gateway p99 | {:.1} ms | < 100 ms |", quantile_ms(&mut lat, 0.99));
    println!("| full sync of {total} peers | {:.2} s | < 2 s |", sync.as_secs_f64());
    println!("| gateway peak RSS after the sync | {rss:.1} MiB | < 50 MB |");
    println!("| gateway RSS 2 s after the sync | {rss_now:.1} MiB | |");
    println!("| TCP raw veth, 1 stream | {raw1:.0} Mbit/s | |");
    println!("| TCP userspace tunnel, 1 stream | {tun1:.0} Mbit/s | ratio {:.2} |", tun1 / raw1);
    println!("| TCP raw veth, 4 streams | {raw4:.0} Mbit/s | |");
    println!("| TCP userspace tunnel, 4 streams | {tun4:.0} Mbit/s | ratio {:.2} |", tun4 / raw4);
}

/// Enrolls a real client (provisioning file, `onramp-client start`), connects through its
/// service and measures client -> gateway tunnel address.
fn tunnel_throughput(s: &Setup, secs: u64) -> (f64, f64) {
    let client_bin = Path::new(BIN).with_file_name("onramp-client");
    assert!(client_bin.exists(), "build the client first: cargo build --release -p onramp-client");
    s.api_many(vec![(
        "user".into(),
        json!({"username": "bench", "first_name": "B", "last_name": "B", "email": "bench@example.com"}),
    )]);
    let t = s.api_many(vec![("user/bench/start_enrollment".into(), json!({}))]);
    let dir = s.dir.path();
    let prov = dir.join("provisioning.json");
    secret_file(
        &prov,
        &json!({"enrollment_url": t[0]["enrollment_url"], "enrollment_token": t[0]["enrollment_token"]}).to_string(),
    );
    let pw = dir.join("pw");
    secret_file(&pw, "Str0ng!Pass");
    let prefix = format!("onbc{}", std::process::id() % 100_000);
    let cmd = || {
        let mut c = s.client.command(&client_bin);
        c.env("ONRAMP_CLIENT_DATA_DIR", dir.join("client"))
            .env("ONRAMP_CLIENT_SOCKET", dir.join("client.sock"))
            .env("ONRAMP_CLIENT_INTERFACE_PREFIX", &prefix)
            .env("ONRAMP_CLIENT_USERSPACE", "true")
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1");
        c
    };
    run(cmd().args(["start", "--password-file"]).arg(&pw).arg("--provisioning-file").arg(&prov));
    let _service = Killed(cmd().arg("service").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    for _ in 0..200 {
        if dir.join("client.sock").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    run(cmd().args(["connect", "office"]));
    let began = Instant::now();
    while !s.client.ping(TUNNEL_GW_IP) {
        assert!(began.elapsed() < Duration::from_secs(30), "no ping through the tunnel");
    }
    let r = (
        throughput(&s.client, &s.gateway, TUNNEL_GW_IP, 1, secs),
        throughput(&s.client, &s.gateway, TUNNEL_GW_IP, 4, secs),
    );
    let _ = cmd().args(["disconnect"]).output();
    r
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
