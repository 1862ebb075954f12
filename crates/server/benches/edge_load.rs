//! Load on the public edge (issue 15, part 4): a real core (`onramp serve`) and a standalone
//! edge (`onramp edge`, rate limit ONRAMP_EDGE_RATE_LIMIT per client address) as separate
//! processes. Clients on many loopback addresses (127.0.x.y, each its own address to the
//! limiter) send enrollment starts with valid, invalid and expired tokens mixed, plus
//! password-reset requests, in timed phases: at the limit, three times above it, and a spray
//! from many addresses. Meanwhile an admin client reads the admin API. Prints per phase the
//! answers by status, timeouts, the edge's memory, and the admin API's p50/p99 next to an
//! idle baseline. Every phase ends by its clock; all traffic stays on loopback.
//!
//! Run: `cargo bench -p onramp-server --bench edge_load` (env BENCH_PHASE_SECS=10,
//! BENCH_RATE=30 requests/s per address, BENCH_ADDRESSES=20, BENCH_SPRAY_ADDRESSES=2000,
//! BENCH_SPRAY_MILLIRATE=250: each spraying address sends 0.25 requests/s, so the spray
//! offers about what the limited phases do, from a hundred times as many addresses).

mod common;

use common::{core_and_edge, post, quantile_ms, Proc};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a phase's requests got.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, u64>,
    timeouts: u64,
    errors: u64,
    first_error: Option<String>,
}

struct Phase {
    name: String,
    secs: f64,
    tally: Tally,
    edge_rss: (f64, f64),
    admin_p50: f64,
    admin_p99: f64,
    admin_n: usize,
}

/// The i-th client address: 127.0.x.y, skipping 127.0.0.1 (the admin client's).
fn address(i: u64) -> IpAddr {
    let n = i + 2;
    IpAddr::V4(Ipv4Addr::new(127, ((n >> 16) & 0xff) as u8, ((n >> 8) & 0xff) as u8, (n & 0xff) as u8))
}

struct Load {
    edge: String,
    valid: Vec<String>,
    expired: Vec<String>,
    emails: Vec<String>,
}

impl Load {
    /// The k-th request of an address: starts with valid, invalid and expired tokens, and
    /// password-reset requests for known and unknown addresses, in a fixed mix.
    fn request(&self, c: &reqwest::Client, k: u64) -> reqwest::RequestBuilder {
        let (path, body) = match k % 5 {
            0 => ("enrollment/start", json!({"token": self.valid[(k as usize / 5) % self.valid.len()]})),
            1 => ("enrollment/start", json!({"token": format!("{:0>32}", k)})),
            2 => ("enrollment/start", json!({"token": self.expired[(k as usize / 5) % self.expired.len()]})),
            3 => ("password-reset/request", json!({"email": self.emails[(k as usize / 5) % self.emails.len()]})),
            _ => ("password-reset/request", json!({"email": format!("nobody{k}@example.com")})),
        };
        c.post(format!("{}/api/v1/{path}", self.edge)).json(&body)
    }
}

/// `addresses` clients, each sending `rate` requests per second for `secs`; the admin
/// client reads a user every 50 ms meanwhile.
async fn phase(
    name: String,
    load: Arc<Load>,
    admin: (reqwest::Client, String, String),
    edge: &Proc,
    addresses: u64,
    rate: f64,
    secs: f64,
) -> Phase {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = vec![];
    for a in 0..addresses {
        let (load, tally) = (load.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            // A spray's clients come once and go: they keep no connection open (thousands of
            // idle ones would pass the listener's cap, ONRAMP_HTTP_MAX_CONNECTIONS).
            let c = reqwest::Client::builder()
                .local_address(address(a))
                .timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(if addresses > 100 { 0 } else { 4 })
                .build()
                .unwrap();
            // Addresses start spread over one period, not all at once.
            let period = Duration::from_secs_f64(1.0 / rate);
            let first = tokio::time::Instant::now() + period.mul_f64(a as f64 / addresses as f64);
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut k = a * 7;
            let mut inflight = tokio::task::JoinSet::new();
            while Instant::now() < until {
                tick.tick().await;
                let req = load.request(&c, k);
                let tally = tally.clone();
                k += 1;
                inflight.spawn(async move {
                    let r = req.send().await;
                    let mut t = tally.lock().unwrap();
                    match r {
                        Ok(r) => *t.by_status.entry(r.status().as_u16()).or_default() += 1,
                        Err(e) if e.is_timeout() => t.timeouts += 1,
                        Err(e) => {
                            t.errors += 1;
                            t.first_error.get_or_insert_with(|| onramp_proto::error_chain(&e));
                        }
                    }
                });
            }
            while inflight.join_next().await.is_some() {}
        }));
    }
    let (ac, api, token) = admin;
    let admin_lat = tokio::spawn(async move {
        let mut lat = vec![];
        while Instant::now() < until {
            let t = Instant::now();
            let r = ac.get(format!("{api}/user/user00000")).bearer_auth(&token).send().await.expect("admin API");
            assert!(r.status().is_success(), "admin API: {}", r.status());
            let _ = r.bytes().await;
            lat.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        lat
    });
    let mut peak = 0f64;
    while Instant::now() < until {
        peak = peak.max(edge.rss().0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lat = admin_lat.await.unwrap();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    Phase {
        name,
        secs,
        tally,
        edge_rss: (edge.rss().0, peak.max(edge.rss().0)),
        admin_p50: quantile_ms(&mut lat, 0.5),
        admin_p99: quantile_ms(&mut lat, 0.99),
        admin_n: lat.len(),
    }
}

#[tokio::main]
async fn main() {
    let secs = env_num("BENCH_PHASE_SECS", 10) as f64;
    let rate = env_num("BENCH_RATE", 30);
    let addresses = env_num("BENCH_ADDRESSES", 20);
    let spray = env_num("BENCH_SPRAY_ADDRESSES", 2000);
    let spray_rate = env_num("BENCH_SPRAY_MILLIRATE", 250) as f64 / 1000.0;
    let dir = tempfile::tempdir().unwrap();
    let store = vec![("ONRAMP_DATA_DIR".into(), dir.path().display().to_string())];
    let (core, edge, api, edge_url) = core_and_edge(store, rate as u32).await;
    let c = reqwest::Client::new();
    let admin = core.api_token();
    // 200 users: 100 with a live token, 100 whose token expires after a second.
    eprintln!("setting up users and tokens ...");
    let mut valid = vec![];
    let mut expired = vec![];
    let mut emails = vec![];
    for i in 0..200 {
        let name = format!("user{i:05}");
        let email = format!("{name}@example.com");
        post(
            &c,
            format!("{api}/user"),
            &admin,
            json!({"username": name, "first_name": "Load", "last_name": "User", "email": email}),
        )
        .await;
        let life = if i < 100 { "1d" } else { "1s" };
        let v = post(&c, format!("{api}/user/{name}/start_enrollment"), &admin, json!({"token_expiration_time": life}))
            .await;
        let t = v["enrollment_token"].as_str().unwrap().to_owned();
        if i < 100 {
            valid.push(t);
        } else {
            expired.push(t);
        }
        emails.push(email);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let load = Arc::new(Load { edge: edge_url.clone(), valid, expired, emails });
    let admin_client = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).build().unwrap();
    let a = || (admin_client.clone(), api.clone(), admin.clone());

    let mut phases = vec![];
    // Idle: no edge traffic, the admin API's baseline.
    phases.push(phase("idle (baseline)".into(), load.clone(), a(), &edge, 0, 1.0, secs.min(5.0)).await);
    let r = rate as f64;
    phases.push(
        phase(
            format!("{addresses} addresses at the limit ({rate}/s each)"),
            load.clone(),
            a(),
            &edge,
            addresses,
            r,
            secs,
        )
        .await,
    );
    phases.push(
        phase(format!("{addresses} addresses at 3x the limit"), load.clone(), a(), &edge, addresses, 3.0 * r, secs)
            .await,
    );
    phases.push(
        phase(
            format!("{spray} addresses, {spray_rate}/s each (spray)"),
            load.clone(),
            a(),
            &edge,
            spray,
            spray_rate,
            secs,
        )
        .await,
    );
    phases.push(
        phase(
            format!("{addresses} addresses at 3x the limit, again"),
            load.clone(),
            a(),
            &edge,
            addresses,
            3.0 * r,
            secs,
        )
        .await,
    );
    // A second spray: memory that held the first spray's connections is reused, not added to.
    let name = format!("{spray} addresses, {spray_rate}/s each, again");
    phases.push(phase(name, load.clone(), a(), &edge, spray, spray_rate, secs).await);

    println!();
    println!("Edge load: core and a standalone edge on loopback, rate limit {rate}/s per address (burst 4 s);");
    println!("mix per address: valid, invalid and expired enrollment starts, known and unknown reset requests");
    println!(
        "| phase | s | sent | 2xx | 401 | 429 | other | timeouts | failed | edge RSS end / peak (MiB) | admin p50 / p99 (ms), n |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &phases {
        let t = &p.tally;
        let sum = |f: &dyn Fn(u16) -> bool| t.by_status.iter().filter(|(s, _)| f(**s)).map(|(_, n)| n).sum::<u64>();
        let sent = sum(&|_| true) + t.timeouts + t.errors;
        let other = sum(&|s| !(200..300).contains(&s) && s != 401 && s != 429);
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1}, {} |",
            p.name,
            p.secs,
            sent,
            sum(&|s| (200..300).contains(&s)),
            sum(&|s| s == 401),
            sum(&|s| s == 429),
            other,
            t.timeouts,
            t.errors,
            p.edge_rss.0,
            p.edge_rss.1,
            p.admin_p50,
            p.admin_p99,
            p.admin_n
        );
        if other > 0 {
            println!("  other statuses: {:?}", t.by_status);
        }
        if let Some(e) = &t.first_error {
            println!("  first failure: {e}");
        }
    }
    let (core_now, core_peak) = core.rss();
    println!("core RSS now / peak: {core_now:.1} / {core_peak:.1} MiB");
    println!("Expected: 429s instead of timeouts above the limit, flat edge memory, admin p99 near the baseline.");
    drop(edge);
    drop(core);
}
