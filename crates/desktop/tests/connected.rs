//! The connect switch with real tunnels: `onramp-client service` (the real binary, userspace
//! WireGuard) in network namespace A, a wireguard-go gateway in B with a host behind it. The
//! window flips the switch, shows the tunnel connected with a handshake and bytes, and
//! disconnects it. Needs root and the tools `onramp_testkit::netlab` names; it FAILS (never
//! skips) without them.

#![cfg(target_os = "linux")]

mod common;

use common::{screenshot, wait_for};
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use onramp_client::enroll::{self, DeviceName, Interaction};
use onramp_desktop::backend::{Backend, Config};
use onramp_desktop::prefs::Prefs;
use onramp_desktop::DesktopApp;
use onramp_testkit::app::{Backend as Db, TestApp};
use onramp_testkit::netlab::{Lab, ENDPOINT_B, GATEWAY_NET};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Unattended;

impl Interaction for Unattended {
    fn show_start(&mut self, _: &onramp_proto::EnrollmentStartResponse) {}
    fn password(&mut self) -> Result<String, String> {
        Ok("Str0ng!Pass".into())
    }
}

/// The `onramp-client` binary beside this test's (a workspace run builds it); built here
/// when missing, so this test also runs on its own.
fn client_bin() -> PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_owned();
    let bin = dir.join("onramp-client");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-p", "onramp-client", "--bin", "onramp-client"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok && bin.exists(), "cannot build onramp-client into {}", dir.display());
    }
    bin
}

#[test]
fn the_switch_connects_a_real_tunnel_and_shows_its_traffic() {
    std::env::set_var("ONRAMP_CLIENT_ALLOW_HTTP", "1");
    let mut lab = Lab::new(&client_bin());
    let gateway_key = lab.start_gateway();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = rt.block_on(async {
        let app = TestApp::builder(Db::Sqlite).spawn().await;
        app.create_user("jane").await;
        let (s, v) = app
            .call(
                "POST",
                "/api/v1/location",
                Some(json!({"name": "office", "address": GATEWAY_NET, "endpoint": ENDPOINT_B, "port": 51820,
                    "allowed_ips": ["10.61.0.0/24", "10.62.0.0/24"], "keepalive_interval": 5})),
            )
            .await;
        assert!(s.is_success(), "{v}");
        let id = v["id"].as_i64().unwrap();
        let (s, v) = app
            .call(
                "PUT",
                &format!("/api/v1/location/{id}"),
                Some(json!({"name": "office", "address": GATEWAY_NET, "endpoint": ENDPOINT_B, "port": 51820,
                    "allowed_ips": ["10.61.0.0/24", "10.62.0.0/24"], "pubkey": gateway_key, "keepalive_interval": 5})),
            )
            .await;
        assert!(s.is_success(), "{v}");
        app
    });
    let data = lab.data();
    let (pubkey, ip) = rt.block_on(async {
        let (_, t) = app.call("POST", "/api/v1/user/jane/start_enrollment", Some(json!({}))).await;
        let token = t["enrollment_token"].as_str().unwrap().to_owned();
        onramp_client::dirs::ensure_private_dir(&data).unwrap();
        let store = onramp_client::Store::open(&data).await.unwrap();
        let url = url::Url::parse(&format!("{}/", app.edge_url)).unwrap();
        enroll::enroll(&store, &url, &token, &DeviceName::Default("pc".into()), &mut Unattended).await.unwrap();
        let i = store.instances().await.unwrap().remove(0);
        let l = store.locations(&i.id).await.unwrap().remove(0);
        store.close().await;
        (i.pubkey, l.assigned_ip.split('/').next().unwrap().trim().to_owned())
    });
    lab.gateway_accepts(&pubkey, &ip);
    lab.start_service();

    let config = Config {
        data_dir: data.clone(),
        socket: lab.socket.clone(),
        poll_every: Duration::from_secs(300),
        status_every: Duration::from_millis(300),
    };
    let desktop = DesktopApp::new(Backend::start(config).unwrap(), Prefs::load(&data), true, None);
    let mut h =
        Harness::builder().with_size([560.0, 420.0]).build_ui_state(|ui, a: &mut DesktopApp| a.show(ui), desktop);
    wait_for(&mut h, "not connected");
    assert!(h.query_by_label_contains("Tunnel service not running").is_none());
    h.get_by_label("Connect office").click();
    wait_for(&mut h, "· connected ·");
    let toggled = h.get_by_label("Connect office").accesskit_node().toggled();
    assert_eq!(toggled, Some(egui::accesskit::Toggled::True), "the switch is on");
    // Traffic through the tunnel: the window shows the handshake and the bytes.
    assert!(lab.ping_through_tunnel(), "no ping through the tunnel; service log:\n{}", lab.service_log());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        h.step();
        let shown = h.query_all_by_label_contains("handshake just now").next().is_some()
            || h.query_all_by_label_contains("s ago").next().is_some();
        if shown && h.query_all_by_label_contains("received 0 B").next().is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "no handshake or bytes shown:\n{:#?}", h.root());
        std::thread::sleep(Duration::from_millis(50));
    }
    h.run_steps(2);
    screenshot(&mut h, "connected");
    assert_eq!(h.state().connected(), vec!["office".to_owned()], "the tray would show a tunnel up");
    // Off from the tray's menu (the same request its "Disconnect office" item sends).
    let (instance_id, network_id) = {
        let i = &h.state().instances()[0];
        (i.id.clone(), i.locations[0].network_id)
    };
    h.state_mut().outside(onramp_desktop::Outside::Disconnect { instance_id, network_id });
    wait_for(&mut h, "not connected");
    assert!(h.state().connected().is_empty());
    let toggled = h.get_by_label("Connect office").accesskit_node().toggled();
    assert_eq!(toggled, Some(egui::accesskit::Toggled::False), "the switch is off");
    assert!(!lab.ping_through_tunnel_once(), "the tunnel is down after the switch went off");
    rt.block_on(app.stop());
}
