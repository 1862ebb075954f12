//! VPN connectivity end to end (issue 11), with real userspace WireGuard over /dev/net/tun
//! inside three network namespaces joined by veth pairs:
//!
//! ```text
//!  client 172.31.1.2 ── 172.31.1.1 gateway (core, edge, onramp gateway) 172.31.2.1 ── 172.31.2.2 lan
//! ```
//! The lan host is the protected resource: it routes the tunnel network back through the
//! gateway and has no route to the client's own network, so only tunnelled traffic reaches it.
//! The client enrolls from provisioning.json, asks `onramp-client service` to connect, and
//! the test pings and opens TCP connections through the tunnel while the admin disables the
//! user, the gateway restarts, core stops and the device is deleted.
//! A second test does the same for a network device (a headless server, no user) enrolled
//! with `onramp-client add-instance --network-device`. A third brings the browser wizard's
//! wg-quick text up with `wg-quick`.
//! These tests need root and /dev/net/tun; without them they fail and say so.

mod netns;
mod procs;
use netns::*;
use procs::{free_port, Proc, BIN};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GW_IP: &str = "172.31.1.1";
const LAN_IP: &str = "172.31.2.2";
const PASSWORD: &str = "Str0ng!Pass";

/// The client binary is built by the same `cargo nextest run --workspace` as `onramp`.
fn client_bin() -> PathBuf {
    let p = Path::new(BIN).with_file_name("onramp-client");
    assert!(p.exists(), "{} is missing: build it with cargo build -p onramp-client", p.display());
    p
}

fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits up to `limit` for `cond`; panics naming `what` and showing the logs.
fn wait_for(what: &str, limit: Duration, logs: &[&Path], mut cond: impl FnMut() -> bool) -> Duration {
    let began = Instant::now();
    while !cond() {
        if began.elapsed() > limit {
            let logs: Vec<String> = logs.iter().map(|p| format!("--- {}\n{}", p.display(), log_of(p))).collect();
            panic!("timed out after {limit:?} waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    began.elapsed()
}

/// One ping that finds no answer within 0.3 s: a veth answers in well under a millisecond.
fn stopped(net: &Net) -> bool {
    !net.client.ping_within(LAN_IP, "0.3")
}

/// After the first lost ping, three more are lost too: the traffic stopped, not a blip.
fn assert_stays_stopped(net: &Net) {
    for _ in 0..3 {
        assert!(!net.client.ping(LAN_IP), "traffic came back");
    }
}

/// The three hosts and their addresses.
struct Net {
    client: Netns,
    gateway: Netns,
    lan: Netns,
}

impl Net {
    fn new(tag: &str) -> Net {
        require_root_and_tun();
        let net = Net {
            client: Netns::new(&format!("{tag}c")),
            gateway: Netns::new(&format!("{tag}g")),
            lan: Netns::new(&format!("{tag}l")),
        };
        link(&net.client, "172.31.1.2/24", &net.gateway, "172.31.1.1/24");
        link(&net.gateway, "172.31.2.1/24", &net.lan, "172.31.2.2/24");
        // The lan host answers the tunnel network through the gateway, and nothing else.
        net.lan.ip(&["route", "add", "10.77.0.0/24", "via", "172.31.2.1"]);
        assert!(!net.client.ping(LAN_IP), "the lan host must not be reachable without the tunnel");
        net
    }
}

/// Core (with its in-process edge on the gateway host's outer address) and its admin API,
/// reached from a thread inside the gateway namespace.
struct Core {
    proc: Option<Proc>,
    dir: PathBuf,
    http: u16,
    gw_port: u16,
    log: PathBuf,
    token: String,
}

impl Core {
    fn start(net: &Net, dir: &Path) -> Core {
        let mut core = Core {
            proc: None,
            dir: dir.to_owned(),
            http: free_port(),
            gw_port: free_port(),
            log: dir.join("core.log"),
            token: String::new(),
        };
        core.spawn(net);
        let out = run(net
            .gateway
            .command(BIN)
            .args(["admin", "api-token", "create", "--name", "connectivity"])
            .env("ONRAMP_DATA_DIR", dir.join("data")));
        core.token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_owned();
        core
    }

    fn spawn(&mut self, net: &Net) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = net
            .gateway
            .command(BIN)
            .arg("serve")
            .env("ONRAMP_DATA_DIR", self.dir.join("data"))
            .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{}", self.http))
            .env("ONRAMP_EDGE_ADDR", format!("{GW_IP}:8080"))
            .env("ONRAMP_PUBLIC_URL", format!("http://{GW_IP}:8080"))
            .env("ONRAMP_GATEWAY_ADDR", format!("127.0.0.1:{}", self.gw_port))
            .env("ONRAMP_GATEWAY_INSECURE", "true")
            .env("ONRAMP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn onramp serve");
        self.proc = Some(Proc(child));
        let http = self.http;
        let up = || {
            net.gateway
                .block_on(async move { reqwest::get(format!("http://127.0.0.1:{http}/api/v1/health")).await.is_ok() })
        };
        wait_for("core to answer", Duration::from_secs(60), &[&self.log], up);
    }

    fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }

    /// One admin API call from inside the gateway namespace.
    fn api(&self, net: &Net, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}/api/v1/{path}", self.http);
        let (token, method) = (self.token.clone(), reqwest::Method::from_bytes(method.as_bytes()).unwrap());
        net.gateway.block_on(async move {
            let mut r = reqwest::Client::new().request(method, url).bearer_auth(token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (
                status,
                if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) },
            )
        })
    }

    fn ok(&self, net: &Net, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.api(net, method, path, body);
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }
}

/// The location, a user with a provisioning file, and a gateway token.
fn seed(net: &Net, core: &Core, dir: &Path) -> (i64, PathBuf, PathBuf) {
    let loc = core.ok(
        net,
        "POST",
        "location",
        Some(json!({"name": "office", "address": "10.77.0.1/24", "endpoint": GW_IP, "port": 51820,
                    "allowed_ips": ["172.31.2.0/24"], "keepalive_interval": 5})),
    );
    let loc_id = loc["id"].as_i64().unwrap();
    core.ok(
        net,
        "POST",
        "user",
        Some(json!({"username": "jdoe", "first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"})),
    );
    let t = core.ok(net, "POST", "user/jdoe/start_enrollment", Some(json!({})));
    let prov = dir.join("provisioning.json");
    let file = json!({"enrollment_url": t["enrollment_url"], "enrollment_token": t["enrollment_token"]});
    write_secret(&prov, &file.to_string());
    let out = run(net
        .gateway
        .command(BIN)
        .args(["admin", "gateway-token", "create", "--location", "office"])
        .env("ONRAMP_DATA_DIR", core.dir.join("data")));
    let gw_token = dir.join("gateway.token");
    write_secret(&gw_token, String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim());
    (loc_id, prov, gw_token)
}

struct Gateway {
    proc: Option<Proc>,
    log: PathBuf,
    health: u16,
}

impl Gateway {
    fn start(net: &Net, core: &Core, dir: &Path, token: &Path) -> Gateway {
        let mut g = Gateway { proc: None, log: dir.join("gateway.log"), health: free_port() };
        g.spawn(net, core, dir, token);
        g
    }

    fn spawn(&mut self, net: &Net, core: &Core, dir: &Path, token: &Path) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let iface = format!("onrg{}", std::process::id() % 100_000);
        let child = net
            .gateway
            .command(BIN)
            .arg("gateway")
            .env("ONRAMP_GATEWAY_CORE_URL", format!("http://127.0.0.1:{}", core.gw_port))
            .env("ONRAMP_GATEWAY_TOKEN_FILE", token)
            .env("ONRAMP_GATEWAY_INTERFACE", iface)
            .env("ONRAMP_GATEWAY_DATA_DIR", dir.join("gateway-data"))
            .env("ONRAMP_GATEWAY_USERSPACE", "true")
            .env("ONRAMP_GATEWAY_HEALTH_ADDR", format!("127.0.0.1:{}", self.health))
            .env("ONRAMP_GATEWAY_STATS_INTERVAL", "1")
            .env("ONRAMP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn onramp gateway");
        self.proc = Some(Proc(child));
    }

    fn healthy(&self, net: &Net) -> bool {
        let url = format!("http://127.0.0.1:{}/", self.health);
        net.gateway.block_on(async move { reqwest::get(url).await.map(|r| r.status().is_success()).unwrap_or(false) })
    }

    fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }
}

/// A TCP echo server on the lan host: answers each connection with one line.
fn lan_tcp_server(net: &Net) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/var/run/netns/{}", net.lan.name);
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let l = std::net::TcpListener::bind((LAN_IP, 0)).unwrap();
        tx.send(l.local_addr().unwrap().port()).unwrap();
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"hello from the lan\n");
        }
    });
    rx.recv().unwrap()
}

fn tcp_works(net: &Net, port: u16) -> bool {
    net.client.enter(|| {
        let addr = format!("{LAN_IP}:{port}").parse().unwrap();
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).is_ok() && buf == "hello from the lan\n"
    })
}

/// The client side: its data directory, the service and the unprivileged commands.
struct Client {
    data: PathBuf,
    socket: PathBuf,
    prefix: String,
    service: Option<Proc>,
    log: PathBuf,
}

impl Client {
    fn cmd(&self, net: &Net) -> Command {
        let mut c = net.client.command(client_bin());
        c.env("ONRAMP_CLIENT_DATA_DIR", &self.data)
            .env("ONRAMP_CLIENT_SOCKET", &self.socket)
            .env("ONRAMP_CLIENT_INTERFACE_PREFIX", &self.prefix)
            .env("ONRAMP_CLIENT_USERSPACE", "true")
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1");
        c
    }

    fn start_service(&mut self, net: &Net) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = self.cmd(net).arg("service").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.service = Some(Proc(child));
        wait_for("the client service socket", Duration::from_secs(20), &[&self.log], || self.socket.exists());
    }

    fn status(&self, net: &Net) -> Value {
        let out = run(self.cmd(net).args(["status", "--json"]));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn enrolled_user_reaches_a_protected_host_through_the_gateway() {
    let net = Net::new("t1");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut core = Core::start(&net, dir);
    let (loc_id, prov, gw_token) = seed(&net, &core, dir);

    // The gateway registers its own key as the location's key.
    let mut gw = Gateway::start(&net, &core, dir, &gw_token);
    let logs = [core.log.as_path(), gw.log.as_path()];
    wait_for("the gateway to link to core", Duration::from_secs(30), &logs, || gw.healthy(&net));
    let loc = core.ok(&net, "GET", &format!("location/{loc_id}"), None);
    let gw_key = loc["pubkey"].as_str().unwrap_or_default().to_owned();
    assert_eq!(gw_key.len(), 44, "the location carries the gateway's key: {loc}");

    // The client enrolls from provisioning.json; the service brings the tunnel up.
    let mut client = Client {
        data: dir.join("client"),
        socket: dir.join("client.sock"),
        prefix: format!("onc{}", std::process::id() % 100_000),
        service: None,
        log: dir.join("client-service.log"),
    };
    let pw = dir.join("password");
    write_secret(&pw, PASSWORD);
    run(client.cmd(&net).args(["start", "--password-file"]).arg(&pw).arg("--provisioning-file").arg(&prov));
    client.start_service(&net);
    let (core_log, gw_log) = (core.log.clone(), gw.log.clone());
    let logs = [core_log.as_path(), gw_log.as_path(), client.log.as_path()];
    run(client.cmd(&net).args(["connect", "office"]));
    // A second connect leaves one tunnel.
    run(client.cmd(&net).args(["connect", "office"]));
    let links = String::from_utf8(net.client.ip(&["-o", "link", "show"]).stdout).unwrap();
    assert_eq!(links.matches(&client.prefix).count(), 1, "one tunnel interface:\n{links}");

    wait_for("a ping through the tunnel", Duration::from_secs(20), &logs, || net.client.ping(LAN_IP));
    let port = lan_tcp_server(&net);
    assert!(tcp_works(&net, port), "a TCP connection through the tunnel");

    let st = client.status(&net);
    assert_eq!(st["service"], "running", "{st}");
    let office = st["instances"][0]["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == "office")
        .cloned()
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(office["connected"], true, "{st}");
    assert!(office["latest_handshake"].as_i64().is_some(), "{st}");
    assert!(office["rx_bytes"].as_u64().unwrap() > 0 && office["tx_bytes"].as_u64().unwrap() > 0, "{st}");

    // The admin sees the device's handshake and traffic, reported by the gateway.
    wait_for("the device's stats in the admin API", Duration::from_secs(15), &logs, || {
        let devices = core.ok(&net, "GET", "device", None);
        devices.as_array().into_iter().flatten().any(|d| {
            d["stats"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["latest_handshake"].as_i64().is_some() && s["rx_bytes"].as_u64() > Some(0))
        })
    });
    let stats = core.ok(&net, "GET", &format!("location/{loc_id}/stats"), None);
    assert_eq!(stats["gateways"][0]["connected"], true, "{stats}");

    // Disabling the user stops the traffic; enabling brings it back.
    core.ok(&net, "PUT", "user/jdoe", Some(json!({"is_active": false})));
    let took = wait_for("traffic to stop after disabling the user", Duration::from_secs(2), &logs, || stopped(&net));
    println!("disabled user's traffic stopped after {took:?}");
    assert_stays_stopped(&net);
    core.ok(&net, "PUT", "user/jdoe", Some(json!({"is_active": true})));
    let took =
        wait_for("traffic to flow after enabling the user", Duration::from_secs(40), &logs, || net.client.ping(LAN_IP));
    println!("re-enabled user's traffic flows after {took:?}");

    // A restarted gateway comes back with the same key and the tunnel recovers by itself.
    gw.stop();
    gw.spawn(&net, &core, dir, &gw_token);
    wait_for("the restarted gateway to link to core", Duration::from_secs(30), &logs, || gw.healthy(&net));
    let took = wait_for("the tunnel to recover after a gateway restart", Duration::from_secs(40), &logs, || {
        net.client.ping(LAN_IP)
    });
    println!("tunnel recovered {took:?} after the gateway restart");
    let loc = core.ok(&net, "GET", &format!("location/{loc_id}"), None);
    assert_eq!(loc["pubkey"], gw_key.as_str(), "the gateway keeps its key across restarts");

    // Fail static: with core gone the established tunnel keeps working.
    core.stop();
    wait_for("the gateway to notice core is gone", Duration::from_secs(30), &logs, || !gw.healthy(&net));
    for _ in 0..3 {
        assert!(net.client.ping(LAN_IP), "the tunnel works while core is down");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(tcp_works(&net, port));
    core.spawn(&net);
    wait_for("the gateway to link again", Duration::from_secs(30), &logs, || gw.healthy(&net));

    // Deleting the device stops its traffic.
    let devices = core.ok(&net, "GET", "device", None);
    let id = devices.as_array().unwrap()[0]["id"].as_i64().unwrap();
    core.ok(&net, "DELETE", &format!("device/{id}"), None);
    let took = wait_for("traffic to stop after deleting the device", Duration::from_secs(2), &logs, || stopped(&net));
    println!("deleted device's traffic stopped after {took:?}");
    assert_stays_stopped(&net);

    // Disconnect removes the interface and its routes.
    run(client.cmd(&net).args(["disconnect", "office"]));
    let links = String::from_utf8(net.client.ip(&["-o", "link", "show"]).stdout).unwrap();
    assert!(!links.contains(&client.prefix), "{links}");
    let routes = String::from_utf8(net.client.ip(&["route", "show"]).stdout).unwrap();
    assert!(!routes.contains("172.31.2.0/24"), "{routes}");

    if let Some(s) = client.service.take() {
        s.stop();
    }
    gw.stop();
    core.stop();
}

/// A network device (a headless server the admin created for the location, no user)
/// enrolls with `onramp-client add-instance --network-device`, its token from a file; it
/// reaches the lan host through the real gateway from the address the admin chose, and
/// loses the tunnel within moments when the admin deletes it.
#[test]
fn network_device_reaches_a_protected_host_through_the_gateway() {
    let net = Net::new("t3");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut core = Core::start(&net, dir);
    let (_, _, gw_token) = seed(&net, &core, dir);
    let mut gw = Gateway::start(&net, &core, dir, &gw_token);
    let logs = [core.log.as_path(), gw.log.as_path()];
    wait_for("the gateway to link to core", Duration::from_secs(30), &logs, || gw.healthy(&net));

    // The admin, with the CLI: the device, then its token (the last line of stdout).
    let admin = |args: &[&str]| {
        let out = run(net.gateway.command(BIN).arg("admin").args(args).env("ONRAMP_DATA_DIR", core.dir.join("data")));
        String::from_utf8(out.stdout).unwrap().lines().last().unwrap_or_default().trim().to_owned()
    };
    let id = admin(&["network-device", "create", "--location", "office", "--name", "backup", "--ip", "10.77.0.50"]);
    let token = dir.join("device.token");
    write_secret(&token, &admin(&["network-device", "start-cli", &id]));

    let mut client = Client {
        data: dir.join("server-client"),
        socket: dir.join("server-client.sock"),
        prefix: format!("onn{}", std::process::id() % 100_000),
        service: None,
        log: dir.join("server-client-service.log"),
    };
    let url = format!("http://{GW_IP}:8080");
    run(client.cmd(&net).args(["add-instance", "--network-device", "--url", &url, "--token-file"]).arg(&token));
    client.start_service(&net);
    let (core_log, gw_log) = (core.log.clone(), gw.log.clone());
    let logs = [core_log.as_path(), gw_log.as_path(), client.log.as_path()];
    run(client.cmd(&net).args(["connect", "office"]));
    wait_for("a ping from the network device through the tunnel", Duration::from_secs(20), &logs, || {
        net.client.ping(LAN_IP)
    });
    let port = lan_tcp_server(&net);
    assert!(tcp_works(&net, port), "a TCP connection through the network device's tunnel");
    let addrs = String::from_utf8(net.client.ip(&["-o", "addr", "show"]).stdout).unwrap();
    assert!(addrs.contains("10.77.0.50"), "the tunnel has the address the admin chose:\n{addrs}");

    // Deleting the network device stops its traffic.
    core.ok(&net, "DELETE", &format!("device/network/{id}"), None);
    let took =
        wait_for("traffic to stop after deleting the network device", Duration::from_secs(2), &logs, || stopped(&net));
    println!("deleted network device's traffic stopped after {took:?}");
    assert_stays_stopped(&net);

    run(client.cmd(&net).args(["disconnect", "office"]));
    if let Some(s) = client.service.take() {
        s.stop();
    }
    gw.stop();
    core.stop();
}

/// The browser wizard's path: the page makes a key pair, enrolls through the edge and puts
/// its private key into the wg-quick text in place of `YOUR_PRIVATE_KEY`. The same text,
/// brought up with `wg-quick` (wireguard-go as the userspace implementation), reaches the
/// lan host: what Onramp hands out is a working config.
#[test]
fn the_wizards_wg_quick_config_brings_a_working_tunnel_up() {
    for (tool, package) in [("wg-quick", "wireguard-tools"), ("wireguard-go", "wireguard-go")] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        assert!(found.status.success(), "`{tool}` is missing: apt-get install -y {package}");
    }
    let net = Net::new("t2");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut core = Core::start(&net, dir);
    let (_, prov, gw_token) = seed(&net, &core, dir);
    let mut gw = Gateway::start(&net, &core, dir, &gw_token);
    let logs = [core.log.as_path(), gw.log.as_path()];
    wait_for("the gateway to link to core", Duration::from_secs(30), &logs, || gw.healthy(&net));

    // Enroll as the wizard does, from the client host, with a key made here.
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut seed).unwrap();
    let secret = x25519_dalek::StaticSecret::from(seed);
    let public = x25519_dalek::PublicKey::from(&secret);
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let (private, public) = (b64(secret.as_bytes()), b64(public.as_bytes()));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&prov).unwrap()).unwrap();
    let token = file["enrollment_token"].as_str().unwrap().to_owned();
    let config = net.client.block_on(async move {
        let c = reqwest::Client::new();
        let base = format!("http://{GW_IP}:8080/api/v1/enrollment");
        let r = c.post(format!("{base}/start")).json(&json!({"token": token})).send().await.unwrap();
        assert!(r.status().is_success(), "start: {}", r.status());
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let r = c
            .post(format!("{base}/activate_user"))
            .header("cookie", &cookie)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "activate_user: {}", r.status());
        let r = c
            .post(format!("{base}/create_device"))
            .header("cookie", &cookie)
            .json(&json!({"name": "browser", "pubkey": public}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create_device: {}", r.status());
        let v: Value = r.json().await.unwrap();
        v["configs"][0]["config"].as_str().unwrap().to_owned()
    });
    assert!(config.contains("YOUR_PRIVATE_KEY"), "{config}");
    let iface = format!("onrq{}", std::process::id() % 100_000);
    let conf = dir.join(format!("{iface}.conf"));
    write_secret(&conf, &config.replace("YOUR_PRIVATE_KEY", &private));

    let wg_quick = |action: &str| {
        net.client
            .command("wg-quick")
            .arg(action)
            .arg(&conf)
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go")
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .output()
            .unwrap()
    };
    let up = wg_quick("up");
    assert!(up.status.success(), "wg-quick up:\n{config}\n{}", String::from_utf8_lossy(&up.stderr));
    wait_for("a ping through the wg-quick tunnel", Duration::from_secs(20), &logs, || net.client.ping(LAN_IP));
    let port = lan_tcp_server(&net);
    assert!(tcp_works(&net, port));
    let down = wg_quick("down");
    assert!(down.status.success(), "wg-quick down: {}", String::from_utf8_lossy(&down.stderr));
    assert!(!net.client.ping(LAN_IP), "no tunnel, no route");
    gw.stop();
    core.stop();
}
