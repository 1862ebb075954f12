//! Enrollment benchmark (issue: public edge). Runs core (`onramp serve`) and a standalone
//! edge (`onramp edge`) as separate processes linked by the gRPC stream, puts 5,000 devices
//! into one location, then drives full enrollments (start, activate_user, create_device)
//! through the edge with 1, 16 and 64 concurrent clients. Prints throughput, p50/p99 of a
//! full enrollment and of create_device, next to the Argon2 bound measured in the same run
//! (password hashes/s with core's parameters on every core of this machine). Then fills the
//! location to 10,000 devices and measures poll throughput, and the edge's RSS.
//!
//! Run: `cargo bench -p onramp-server --bench enrollment` (env BENCH_DEVICES=5000,
//! BENCH_POLL_DEVICES=10000, BENCH_ENROLL_SECS=8 (per concurrency level), BENCH_BACKEND=sqlite|postgres).

mod common;

use common::{argon2_bound, concurrently, core_and_edge, post, quantile_ms};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pubkey(i: usize) -> String {
    use base64::Engine;
    let mut b = [7u8; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}

struct Bench {
    c: reqwest::Client,
    api: String,
    edge: String,
    admin: String,
}

impl Bench {
    /// POST to the edge; returns the session cookie when one is set. Panics on failure, so
    /// a broken flow can never look fast.
    async fn edge_post(&self, path: &str, cookie: Option<&str>, body: Value) -> (Value, Option<String>) {
        let mut r = self.c.post(format!("{}/api/v1/{path}", self.edge)).json(&body);
        if let Some(ck) = cookie {
            r = r.header("cookie", ck);
        }
        let r = r.send().await.expect("edge request");
        let status = r.status();
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(String::from);
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        (serde_json::from_str(&text).unwrap_or(Value::Null), cookie)
    }

    /// Users `prefix00000..` in one group; returns their enrollment tokens (bulk issuance).
    async fn users_with_tokens(&self, prefix: &str, n: usize) -> Vec<String> {
        let (c, api, admin) = (self.c.clone(), self.api.clone(), self.admin.clone());
        let p = prefix.to_owned();
        concurrently(n, 8, move |i| {
            let (c, api, admin, p) = (c.clone(), api.clone(), admin.clone(), p.clone());
            async move {
                let body = json!({"username": format!("{p}{i:05}"), "first_name": "Bench", "last_name": "User",
                                  "email": format!("{p}{i:05}@example.com")});
                post(&c, format!("{api}/user"), &admin, body).await;
            }
        })
        .await;
        let members: Vec<String> = (0..n).map(|i| format!("{prefix}{i:05}")).collect();
        post(&self.c, format!("{}/group", self.api), &self.admin, json!({"name": prefix, "members": members})).await;
        let v = post(&self.c, format!("{}/provisioning/bulk", self.api), &self.admin, json!({"group": prefix})).await;
        let tokens: Vec<String> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["enrollment_token"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(tokens.len(), n);
        tokens
    }

    /// start + create_device (the desktop order, no password): a device with a polling token.
    async fn device(&self, token: &str, i: usize) -> String {
        let (_, cookie) = self.edge_post("enrollment/start", None, json!({"token": token})).await;
        let (v, _) = self
            .edge_post(
                "enrollment/create_device",
                cookie.as_deref(),
                json!({"name": format!("d{i}"), "pubkey": pubkey(i)}),
            )
            .await;
        v["token"].as_str().expect("polling token").to_owned()
    }

    async fn add_devices(self: &Arc<Self>, tokens: Vec<String>, offset: usize, out: Arc<Mutex<Vec<String>>>) {
        let tokens = Arc::new(tokens);
        let me = self.clone();
        concurrently(tokens.len(), 16, move |i| {
            let (me, tokens, out) = (me.clone(), tokens.clone(), out.clone());
            async move {
                let polling = me.device(&tokens[i], offset + i).await;
                out.lock().unwrap().push(polling);
            }
        })
        .await;
    }
}

struct Row {
    clients: usize,
    n: usize,
    per_s: f64,
    p50: f64,
    p99: f64,
    cd_p50: f64,
    cd_p99: f64,
}

async fn run() {
    let existing = env_num("BENCH_DEVICES", 5000);
    let poll_devices = env_num("BENCH_POLL_DEVICES", 10_000).max(existing);
    let enroll_secs = env_num("BENCH_ENROLL_SECS", 8) as f64;
    let backend = std::env::var("BENCH_BACKEND").unwrap_or_else(|_| "sqlite".into());
    let dir = tempfile::tempdir().unwrap();
    let store = match backend.as_str() {
        "postgres" => ("ONRAMP_DATABASE_URL".into(), onramp_testkit::pg::fresh_database_url().await),
        _ => ("ONRAMP_DATA_DIR".into(), dir.path().display().to_string()),
    };
    let (core, edge, api, edge_url) = core_and_edge(vec![store], 0).await;
    let c = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let b = Arc::new(Bench { c: c.clone(), api, edge: edge_url, admin: core.api_token() });
    post(&c, format!("{}/location", b.api), &b.admin,
        json!({"name": "office", "address": "10.0.0.1/16", "endpoint": "vpn.example.com", "port": 51820, "allowed_ips": ["10.0.0.0/16"]}))
        .await;

    eprintln!("setting up {existing} existing devices ...");
    let polling = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let tokens = b.users_with_tokens("pre", existing).await;
    b.add_devices(tokens, 0, polling.clone()).await;
    eprintln!("  done in {:.1}s", t0.elapsed().as_secs_f64());

    eprintln!("measuring the Argon2 bound ...");
    let bound = argon2_bound();

    let mut rows = vec![];
    let mut offset = existing;
    for (k, clients) in [1usize, 16, 64].into_iter().enumerate() {
        // Enough users for the time budget at the Argon2 bound, at least a few per client.
        let n = ((bound * enroll_secs) as usize).max(clients * 3).max(10);
        let tokens = Arc::new(b.users_with_tokens(&format!("e{k}u"), n).await);
        let lat = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let (me, l) = (b.clone(), lat.clone());
        let elapsed = concurrently(n, clients, move |i| {
            let (me, tokens, l) = (me.clone(), tokens.clone(), l.clone());
            async move {
                let t = Instant::now();
                let (_, cookie) = me.edge_post("enrollment/start", None, json!({"token": tokens[i]})).await;
                let ck = cookie.as_deref();
                me.edge_post("enrollment/activate_user", ck, json!({"password": "Str0ng!Password"})).await;
                let td = Instant::now();
                me.edge_post("enrollment/create_device", ck, json!({"name": "laptop", "pubkey": pubkey(offset + i)}))
                    .await;
                let mut g = l.lock().unwrap();
                g.1.push(td.elapsed());
                g.0.push(t.elapsed());
            }
        })
        .await;
        offset += n;
        let mut g = lat.lock().unwrap();
        rows.push(Row {
            clients,
            n,
            per_s: n as f64 / elapsed,
            p50: quantile_ms(&mut g.0, 0.5),
            p99: quantile_ms(&mut g.0, 0.99),
            cd_p50: quantile_ms(&mut g.1, 0.5),
            cd_p99: quantile_ms(&mut g.1, 0.99),
        });
    }
    let devices_after = offset;

    let more = poll_devices.saturating_sub(existing);
    eprintln!("adding {more} devices with polling tokens for the poll run ...");
    let tokens = b.users_with_tokens("poll", more).await;
    b.add_devices(tokens, offset, polling.clone()).await;
    let polling = Arc::new(polling.lock().unwrap().clone());
    let polls = polling.len() * 2;
    let me = b.clone();
    let p = polling.clone();
    let poll_t = concurrently(polls, 32, move |i| {
        let (me, p) = (me.clone(), p.clone());
        async move {
            let (v, _) = me.edge_post("poll", None, json!({"token": p[i % p.len()]})).await;
            assert!(v["device_config"]["configs"].is_array());
        }
    })
    .await;
    let (edge_now, edge_peak) = edge.rss();
    let (core_now, core_peak) = core.rss();

    println!();
    println!(
        "Full enrollment through a standalone edge ({backend}; one location, {existing} devices before, {devices_after} after)"
    );
    println!("Argon2 bound (core's parameters, all CPUs): {bound:.1} hashes/s");
    println!("| clients | enrollments | enrollments/s | % of Argon2 bound | full p50 (ms) | full p99 (ms) | create_device p50 (ms) | create_device p99 (ms) |");
    println!("|--------:|------------:|--------------:|------------------:|--------------:|--------------:|-----------------------:|-----------------------:|");
    for r in &rows {
        println!(
            "| {:>7} | {:>11} | {:>13.1} | {:>16.0}% | {:>13.1} | {:>13.1} | {:>22.1} | {:>22.1} |",
            r.clients,
            r.n,
            r.per_s,
            100.0 * r.per_s / bound,
            r.p50,
            r.p99,
            r.cd_p50,
            r.cd_p99
        );
    }
    println!();
    println!("Poll: {polls} polls over {} devices, 32 clients: {:.0} requests/s", polling.len(), polls as f64 / poll_t);
    println!("Edge RSS: {edge_now:.1} MiB now, {edge_peak:.1} MiB peak; core RSS: {core_now:.1} MiB now, {core_peak:.1} MiB peak");
    println!("Targets: create_device p99 < 25 ms at 5,000 devices; full enrollment >= 70% of the Argon2 bound; poll >= 5,000/s; edge RSS < 30 MB.");
}

fn main() {
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}
