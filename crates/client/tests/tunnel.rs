//! Real tunnels end to end: a real Onramp server (in this process) enrolls a client store;
//! `onramp-client service` (the real binary) runs in network namespace A with userspace
//! WireGuard; namespace B holds a wireguard-go peer standing in for the gateway and an
//! address behind it. The unprivileged commands connect, report, reconfigure (through the
//! sync daemon), disconnect; a killed service's leftovers are removed at its next start;
//! callers outside the group are refused. Needs root, /dev/net/tun, ip, wg, wireguard-go,
//! ping and setpriv: it FAILS (never skips) without them.

#![cfg(target_os = "linux")]

use onramp_testkit::app::{Backend, TestApp};
use onramp_testkit::netlab::{must, wait_for, Lab, ENDPOINT_B, GATEWAY_NET};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");
const PASSWORD: &str = "Str0ng!Pass";

/// libc, not the `kill` program: procps-ng 4.0.2's kill misreads some arguments (a
/// negative pid `-1234` as -1, every process on the machine).
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

fn office(status: &str) -> Value {
    let v: Value = serde_json::from_str(status).unwrap_or_else(|e| panic!("{e}: {status}"));
    v["instances"][0]["locations"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "office"))
        .cloned()
        .unwrap_or_else(|| panic!("no office in {v}"))
}

/// A fresh WireGuard public key (of a gateway that does not exist).
fn other_public_key() -> String {
    let key = must(&["wg", "genkey"]);
    let mut p = Command::new("wg").arg("pubkey").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    p.stdin.take().unwrap().write_all(key.as_bytes()).unwrap();
    String::from_utf8(p.wait_with_output().unwrap().stdout).unwrap().trim().to_owned()
}

async fn put_location(app: &TestApp, id: i64, gateway: &str, allowed: &[&str]) {
    let (s, v) = app
        .call(
            "PUT",
            &format!("/api/v1/location/{id}"),
            Some(json!({
                "name": "office", "address": GATEWAY_NET, "endpoint": ENDPOINT_B, "port": 51820,
                "allowed_ips": allowed, "pubkey": gateway, "keepalive_interval": 5,
            })),
        )
        .await;
    assert!(s.is_success(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_through_the_service() {
    let mut lab = Lab::new(Path::new(BIN));
    let gateway_key = lab.start_gateway();

    // The server: a location whose gateway has no key yet, a user, an enrollment.
    let app = TestApp::builder(Backend::Sqlite).spawn().await;
    app.create_user("ann").await;
    let (s, loc) = app
        .call(
            "POST",
            "/api/v1/location",
            Some(json!({
                "name": "office", "address": GATEWAY_NET, "endpoint": ENDPOINT_B, "port": 51820,
                "allowed_ips": ["10.61.0.0/24", "10.62.0.0/24"], "keepalive_interval": 5,
            })),
        )
        .await;
    assert!(s.is_success(), "{loc}");
    let location_id = loc["id"].as_i64().unwrap();
    let (_, t) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let token = t["enrollment_token"].as_str().unwrap().to_owned();
    let tf = lab.dir.path().join("token");
    std::fs::write(&tf, &token).unwrap();
    let pw = lab.dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let url = format!("{}/", app.edge_url);
    lab.client(&[
        "add-instance",
        "--url",
        &url,
        "--token-file",
        tf.to_str().unwrap(),
        "--password-file",
        pw.to_str().unwrap(),
        "--device-name",
        "pc",
    ])
    .await
    .ok();
    let (client_pubkey, client_ip) = {
        let store = onramp_client::Store::open(&lab.data()).await.unwrap();
        let i = store.instances().await.unwrap().remove(0);
        let l = store.locations(&i.id).await.unwrap().remove(0);
        store.close().await;
        (i.pubkey, l.assigned_ip.split('/').next().unwrap().trim().to_owned())
    };
    lab.gateway_accepts(&client_pubkey, &client_ip);

    // No gateway key yet: said plainly, before any service is needed.
    let r = lab.client(&["connect", "office"]).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("has no gateway yet"), "{}", r.stderr);

    put_location(&app, location_id, &gateway_key, &["10.61.0.0/24", "10.62.0.0/24"]).await;
    lab.client(&["sync"]).await.ok();

    // Without the service.
    let r = lab.client(&["connect", "office"]).await;
    assert_eq!(r.code, 6, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("the Onramp client service is not running; start it: sudo onramp-client service (or systemctl start onramp-client)"),
        "{}",
        r.stderr
    );
    let r = lab.client(&["status", "--json"]).await.ok();
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap()["service"], "not_running");
    assert_eq!(office(&r.stdout)["connected"], false);

    lab.start_service();
    let meta = std::fs::metadata(&lab.socket).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o660);

    // The protocol itself: versioned, bounded lines, every field checked.
    let raw = |line: Vec<u8>| -> Value {
        use std::io::{BufRead, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&lab.socket).unwrap();
        let _ = s.write_all(&line);
        let mut reply = String::new();
        std::io::BufReader::new(s).read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}"))
    };
    let r = raw(vec![b'x'; 70_000]);
    assert_eq!(r["code"], "bad_request", "{r}");
    assert!(r["message"].as_str().unwrap().contains("longer than"), "{r}");
    let r = raw(b"{\"v\":2,\"op\":\"hello\"}\n".to_vec());
    assert_eq!(r["code"], "bad_request", "{r}");
    let r = raw(b"{\"v\":1,\"op\":\"hello\"}\n".to_vec());
    assert_eq!((r["reply"].as_str(), r["uid"].as_u64()), (Some("hello"), Some(0)), "{r}");
    let tunnel = |change: &dyn Fn(&mut Value)| {
        let mut t = json!({
            "instance_id": "x", "network_id": 9, "name": "raw", "private_key": "abc",
            "addresses": ["10.9.0.2"], "gateway_key": gateway_key, "endpoint": format!("{ENDPOINT_B}:51820"),
            "allowed_ips": ["10.9.0.0/24"], "keepalive": 0,
        });
        change(&mut t);
        let mut line = serde_json::to_vec(&json!({"v": 1, "op": "connect", "tunnel": t})).unwrap();
        line.push(b'\n');
        raw(line)
    };
    let r = tunnel(&|_| {});
    assert_eq!(r["code"], "invalid", "{r}");
    assert!(r["message"].as_str().unwrap().contains("private_key"), "{r}");
    let r = tunnel(&|t| t["gateway_key"] = json!(""));
    assert_eq!(r["code"], "no_gateway", "{r}");
    let r = tunnel(&|t| {
        t["private_key"] = json!(must(&["wg", "genkey"]).trim());
        t["endpoint"] = json!("no-such-host.invalid:51820");
    });
    assert_eq!(r["code"], "failed", "{r}");
    assert!(lab.our_links().is_empty(), "a refused connect leaves nothing: {:?}", lab.our_links());

    // Unknown location.
    let r = lab.client(&["connect", "nowhere"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no location named \"nowhere\"; known: office"), "{}", r.stderr);

    // Connect: a ping reaches the address behind the gateway.
    let r = lab.client(&["connect", "office"]).await.ok();
    assert!(r.stdout.contains("connected to office"), "{}", r.stdout);
    assert!(lab.ping_through_tunnel(), "no ping through the tunnel; service log:\n{}", lab.service_log());
    let r = lab.client(&["status", "--json"]).await.ok();
    let o = office(&r.stdout);
    assert_eq!(o["connected"], true, "{o}");
    assert!(o["latest_handshake"].as_i64().is_some_and(|h| h > 0), "{o}");
    assert!(o["rx_bytes"].as_u64().unwrap() > 0 && o["tx_bytes"].as_u64().unwrap() > 0, "{o}");
    assert_eq!(o["endpoint"], format!("{ENDPOINT_B}:51820"));
    let iface = o["interface"].as_str().unwrap().to_owned();
    assert!(iface.starts_with(&lab.prefix) && iface.len() <= 15, "{iface}");
    // The device's UAPI socket hands out the private key: root only.
    let uapi = std::fs::metadata(format!("/var/run/wireguard/{iface}.sock")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&uapi.permissions()) & 0o077, 0, "UAPI socket open to others");
    let r = lab.client(&["status"]).await.ok();
    assert!(r.stdout.contains("connected on"), "{}", r.stdout);

    // A second connect leaves one tunnel.
    let r = lab.client(&["connect", "office"]).await.ok();
    assert!(r.stdout.contains("already connected"), "{}", r.stdout);
    assert_eq!(lab.our_links(), vec![iface.clone()]);

    // Callers outside the group: the socket refuses them, and so does the service itself
    // (SO_PEERCRED) when the file mode would let them in; a member is served.
    let r = lab.as_nobody(&["status", "--json"], None).await.ok();
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap()["service"], "refused", "{}", r.stdout);
    let r = lab.as_nobody(&["disconnect"], None).await;
    assert_eq!(r.code, 6, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("permission denied") && r.stderr.contains(&format!("group \"{}\"", lab.group)),
        "{}",
        r.stderr
    );
    std::fs::set_permissions(&lab.socket, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let r = lab.as_nobody(&["disconnect"], None).await;
    assert_eq!(r.code, 6, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nobody may not use the Onramp client service"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("group \"{}\"", lab.group)), "{}", r.stderr);
    std::fs::set_permissions(&lab.socket, std::os::unix::fs::PermissionsExt::from_mode(0o660)).unwrap();
    let r = lab.as_nobody(&["status", "--json"], Some(&lab.group)).await.ok();
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap()["service"], "running", "{}", r.stdout);
    let r = lab.as_nobody(&["disconnect"], Some(&lab.group)).await.ok();
    assert!(r.stdout.contains("no location was connected"), "another user's tunnel is not theirs: {}", r.stdout);
    assert_eq!(lab.our_links(), vec![iface.clone()]);

    // A key rotation reaches the live tunnel through a plain `sync` (no daemon), and the
    // status then says the tunnel is up but not connected: no handshake with the new key.
    let nets = ["10.61.0.0/24", "10.62.0.0/24"];
    let rotated = other_public_key();
    put_location(&app, location_id, &rotated, &nets).await;
    let r = lab.client(&["sync"]).await.ok();
    assert!(r.stdout.contains("office: reconfigured"), "{}", r.stdout);
    let peers = lab.in_a(&["wg", "show", &iface, "peers"]);
    assert_eq!(peers.trim(), rotated, "the live tunnel has the rotated gateway key");
    let o = office(&lab.client(&["status", "--json"]).await.ok().stdout);
    assert_eq!((o["tunnel_up"].as_bool(), o["connected"].as_bool()), (Some(true), Some(false)), "{o}");
    assert!(lab.client(&["status"]).await.ok().stdout.contains("not connected yet"));
    // A `sync --json` keeps standard output to the JSON.
    put_location(&app, location_id, &gateway_key, &nets).await;
    let r = lab.client(&["sync", "--json"]).await.ok();
    assert!(serde_json::from_str::<Value>(&r.stdout).is_ok(), "{}", r.stdout);
    assert!(r.stderr.contains("office: reconfigured"), "{}", r.stderr);
    assert_eq!(lab.in_a(&["wg", "show", &iface, "peers"]).trim(), gateway_key);
    assert!(lab.ping_through_tunnel(), "no ping after the key came back; log:\n{}", lab.service_log());
    assert_eq!(office(&lab.client(&["status", "--json"]).await.ok().stdout)["connected"], true);

    // Allowed IPs that include the machine's own LAN (A's veth network): that route stays the
    // machine's, through connect, reconfigure and disconnect; an IPv6 network's route is
    // added, and removed when the network goes.
    let lan = "192.0.2.0/24";
    let lan_route = lab.routes_a(&[lan]);
    assert!(lan_route.contains(&format!("dev ora{}", std::process::id() % 1_000_000)), "{lan_route}");
    put_location(&app, location_id, &gateway_key, &[nets[0], nets[1], lan, "fd62::/64"]).await;
    let r = lab.client(&["sync"]).await.ok();
    assert!(r.stdout.contains("office: reconfigured"), "{}", r.stdout);
    assert!(r.stdout.contains("office: warning: 192.0.2.0/24 is not routed through the tunnel"), "{}", r.stdout);
    assert_eq!(lab.routes_a(&[lan]), lan_route, "the LAN route was replaced");
    assert!(lab.in_a(&["ip", "-6", "route", "show", "dev", &iface]).contains("fd62::/64"));
    assert!(lab.ping_through_tunnel(), "no ping with the LAN in the allowed IPs; log:\n{}", lab.service_log());
    lab.client(&["disconnect", "office"]).await.ok();
    assert_eq!(lab.routes_a(&[lan]), lan_route, "the disconnect removed the machine's LAN route");
    let r = lab.client(&["connect", "office"]).await.ok();
    assert!(r.stderr.contains("warning: 192.0.2.0/24 is not routed through the tunnel"), "{}", r.stderr);
    assert_eq!(lab.routes_a(&[lan]), lan_route);
    assert!(lab.ping_through_tunnel(), "no ping after reconnecting; log:\n{}", lab.service_log());
    put_location(&app, location_id, &gateway_key, &nets).await;
    lab.client(&["sync"]).await.ok();
    assert_eq!(lab.routes_a(&[lan]), lan_route);
    let v6 = lab.in_a(&["ip", "-6", "route", "show", "dev", &iface]);
    assert!(!v6.contains("fd62::"), "a removed IPv6 network keeps its route: {v6}");
    assert!(lab.routes_a(&["dev", &iface]).contains("10.62.0.0/24"));

    // A crashed userspace device: status says so, and a connect makes the tunnel again.
    let pids = lab.device_pids(&iface);
    assert_eq!(pids.len(), 1, "{pids:?}");
    signal(pids[0].parse().unwrap(), libc::SIGKILL);
    wait_for(Duration::from_secs(10), "the device to die", || lab.device_pids(&iface).is_empty());
    let o = office(&lab.client(&["status", "--json"]).await.ok().stdout);
    assert_eq!((o["tunnel_up"].as_bool(), o["connected"].as_bool()), (Some(false), Some(false)), "{o}");
    assert!(lab.client(&["status"]).await.ok().stdout.contains("not connected"));
    let r = lab.client(&["connect", "office"]).await.ok();
    assert!(r.stdout.contains("connected to office"), "{}", r.stdout);
    assert!(lab.ping_through_tunnel(), "no ping after the device was made again; log:\n{}", lab.service_log());
    assert_eq!(lab.our_links(), vec![iface.clone()]);
    assert_eq!(lab.device_pids(&iface).len(), 1);

    // The admin sends everything through the tunnel: the sync daemon reconfigures the live
    // tunnel, which keeps reaching its endpoint (fwmark policy routing).
    put_location(&app, location_id, &gateway_key, &["0.0.0.0/0"]).await;
    let mut daemon =
        lab.cmd(&["daemon", "--interval", "1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ns_a = lab.ns_a.clone();
    let ifc = iface.clone();
    let reconfigured = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = Command::new("ip").args(["netns", "exec", &ns_a, "wg", "show", &ifc, "allowed-ips"]).output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("0.0.0.0/0")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })
    .await
    .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(reconfigured, "the daemon did not reconfigure the tunnel; service log:\n{}", lab.service_log());
    assert_eq!(lab.our_links(), vec![iface.clone()], "reconfigured in place");
    assert_eq!(lab.our_rules().len(), 2, "{:?}", lab.our_rules());
    assert!(lab.ping_through_tunnel(), "no ping after the switch to a full tunnel; log:\n{}", lab.service_log());
    let r = lab.client(&["connect", "office"]).await.ok();
    assert!(r.stdout.contains("already connected"), "{}", r.stdout);

    // Disconnect: interface, routes and rules gone.
    let r = lab.client(&["disconnect", "office"]).await.ok();
    assert!(r.stdout.contains("disconnected office"), "{}", r.stdout);
    assert!(lab.our_links().is_empty(), "{:?}", lab.our_links());
    assert!(lab.our_routes().is_empty(), "{:?}", lab.our_routes());
    assert!(lab.our_rules().is_empty(), "{:?}", lab.our_rules());
    assert_eq!(office(&lab.client(&["status", "--json"]).await.ok().stdout)["connected"], false);

    // Killed while connected: the next start removes what it left.
    lab.client(&["connect", "office"]).await.ok();
    assert!(lab.ping_through_tunnel());
    let mut service = lab.service.take().unwrap();
    // `ip netns exec` execs the service, so this is the service's own pid.
    signal(service.id() as i32, libc::SIGKILL);
    let _ = service.wait();
    assert!(!lab.our_rules().is_empty(), "a killed service leaves its policy rules");
    // What a hard-killed device leaves as well: a stale UAPI socket, and (kernel mode) an
    // interface.
    let stale = PathBuf::from(format!("/var/run/wireguard/{}abcdef.sock", lab.prefix));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    lab.in_a(&["ip", "tuntap", "add", "dev", &format!("{}abcdee", lab.prefix), "mode", "tun"]);
    // And the DNS entries it gave resolvconf (a stand-in here, logging its arguments): only
    // the entries of this service's own interfaces are removed.
    let bin = lab.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = lab.dir.path().join("resolvconf.calls");
    let fake = bin.join("resolvconf");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\n[ \"$1\" = -i ] && echo 'tun.{p}abcdef other0 tun.wg0 {p}abcded'\nexit 0\n",
            calls.display(),
            p = lab.prefix
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    lab.service_path = Some(format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    lab.start_service();
    assert!(lab.service_log().contains("removed leftovers"), "{}", lab.service_log());
    let called = std::fs::read_to_string(&calls).unwrap_or_default();
    let removed: Vec<&str> = called.lines().filter(|l| l.starts_with("-d ")).collect();
    assert_eq!(
        removed,
        vec![format!("-d {}abcded -f", lab.prefix), format!("-d tun.{}abcdef -f", lab.prefix)],
        "{called}"
    );
    assert!(lab.our_links().is_empty(), "{:?}", lab.our_links());
    assert!(lab.our_rules().is_empty(), "{:?}", lab.our_rules());
    assert!(lab.our_routes().is_empty(), "{:?}", lab.our_routes());
    assert!(lab.our_sockets().is_empty(), "{:?}", lab.our_sockets());

    // SIGTERM takes the tunnels down and removes the socket.
    lab.client(&["connect", "office"]).await.ok();
    assert_eq!(lab.our_links().len(), 1);
    let mut service = lab.service.take().unwrap();
    signal(service.id() as i32, libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || service.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(lab.our_links().is_empty() && lab.our_rules().is_empty() && lab.our_sockets().is_empty());
    assert!(!lab.socket.exists());
    let private = {
        let store = onramp_client::Store::open(&lab.data()).await.unwrap();
        let k = store.private_key(&client_pubkey).await.unwrap().unwrap();
        store.close().await;
        k
    };
    assert!(!lab.service_log().contains(&private), "the private key reached the service log");
    app.stop().await;
}
