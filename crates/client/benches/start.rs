//! Client start-up benchmark (issue: client). Measures, over real `onramp-client` processes:
//! (a) start to the first enrollment request: a provisioning.json points at a local TCP
//! listener, and the clock stops when the client connects to it (network excluded);
//! (b) `start` on an initialized store (one instance, 10 locations) until it exits;
//! and the client's peak RSS over all runs (getrusage of the children).
//!
//! Run: `cargo bench -p onramp-client --bench start` (env BENCH_RUNS=30).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");

fn quantiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort_unstable();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    (q(0.5), q(0.95), q(1.0))
}

fn config(i: i64) -> onramp_proto::DeviceConfig {
    onramp_proto::DeviceConfig {
        network_id: i,
        network_name: format!("location-{i}"),
        config: "[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\n".into(),
        endpoint: "vpn.example.com:51820".into(),
        assigned_ip: format!("10.{i}.0.2"),
        pubkey: "GW=".into(),
        allowed_ips: "10.0.0.0/8".into(),
        dns: None,
        mfa_enabled: false,
        keepalive_interval: 25,
        location_mfa_mode: None,
        service_location_mode: None,
    }
}

/// A store with one instance, as an enrollment leaves it.
async fn initialized_store(dir: &std::path::Path) {
    onramp_client::dirs::ensure_private_dir(dir).unwrap();
    let store = onramp_client::Store::open(dir).await.unwrap();
    let k = onramp_client::keys::generate();
    store.save_pending_key("https://edge.example.com/", &k).await.unwrap();
    let resp = onramp_proto::DeviceConfigResponse {
        device: onramp_proto::Device {
            id: 1,
            name: "laptop".into(),
            pubkey: k.public.clone(),
            user_id: 1,
            created_at: 0,
        },
        configs: (1..=10).map(config).collect(),
        instance: onramp_proto::InstanceInfo {
            id: "00000000-0000-4000-8000-000000000001".into(),
            name: "Bench".into(),
            url: "https://core.example.com/".into(),
            proxy_url: "https://edge.example.com/".into(),
            username: "ann".into(),
            enterprise_enabled: false,
            disable_all_traffic: false,
            openid_display_name: None,
            client_traffic_policy: None,
        },
        token: Some("P".repeat(32)),
    };
    store.save_instance("https://edge.example.com/", &resp, resp.token.as_deref(), None, None).await.unwrap();
    store.close().await;
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let tmp = tempfile::tempdir().unwrap();

    // (a) first enrollment request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let mut to_prompt = vec![];
    for i in 0..runs {
        let dir = tmp.path().join(format!("fresh{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let body = serde_json::json!({"enrollment_token": "A".repeat(32), "enrollment_url": url});
        std::fs::write(dir.join("provisioning.json"), body.to_string()).unwrap();
        let t = Instant::now();
        let mut child = Command::new(BIN)
            .arg("start")
            .env("ONRAMP_CLIENT_DATA_DIR", &dir)
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (conn, _) = listener.accept().unwrap();
        to_prompt.push(t.elapsed());
        drop(conn);
        let _ = child.kill();
        let _ = child.wait();
    }

    // (b) start on an initialized store.
    let dir = tmp.path().join("initialized");
    tokio::runtime::Runtime::new().unwrap().block_on(initialized_store(&dir));
    let mut initialized = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        let out =
            Command::new(BIN).arg("start").env("ONRAMP_CLIENT_DATA_DIR", &dir).stdin(Stdio::null()).output().unwrap();
        initialized.push(t.elapsed());
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("location-10"));
    }

    // Peak RSS of the largest child so far (Linux reports KiB).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let peak_mib = usage.ru_maxrss as f64 / 1024.0;

    let (a50, a95, amax) = quantiles(to_prompt);
    let (b50, b95, bmax) = quantiles(initialized);
    println!();
    println!("onramp-client start-up, {runs} runs each");
    println!("| measurement                                   | p50 (ms) | p95 (ms) | max (ms) |");
    println!("|-----------------------------------------------|---------:|---------:|---------:|");
    println!("| start to first enrollment request (no network) | {a50:>8.1} | {a95:>8.1} | {amax:>8.1} |");
    println!("| start on an initialized store (10 locations)  | {b50:>8.1} | {b95:>8.1} | {bmax:>8.1} |");
    println!("Client peak RSS: {peak_mib:.1} MiB");
    println!("Targets: < 50 ms each; peak RSS < 30 MB.");
}
