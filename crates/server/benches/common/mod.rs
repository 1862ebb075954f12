//! What the benchmarks share: the real `onramp` binary as a child process, its memory
//! figures from /proc, and a bounded pool of concurrent HTTP workers.
#![allow(dead_code)]

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_onramp");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `onramp` process (`serve` or `edge`), killed on drop.
pub struct Proc {
    pub child: Child,
    pub env: Vec<(String, String)>,
}

impl Proc {
    pub fn spawn(subcommand: &str, mut env: Vec<(String, String)>) -> Proc {
        env.push(("ONRAMP_LOG".into(), "warn".into()));
        if subcommand == "serve" && !env.iter().any(|(k, _)| k == "ONRAMP_GATEWAY_ADDR") {
            env.push(("ONRAMP_GATEWAY_ADDR".into(), "127.0.0.1:0".into()));
        }
        let child = Command::new(BIN)
            .arg(subcommand)
            .envs(env.clone())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn onramp {subcommand}: {e}"));
        Proc { child, env }
    }

    /// Waits until `onramp healthcheck` (same settings) succeeds.
    pub fn wait_healthy(&self) {
        for _ in 0..200 {
            if Command::new(BIN).arg("healthcheck").envs(self.env.clone()).output().unwrap().status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("onramp did not become healthy");
    }

    /// A new admin API token, made with the CLI on the same database.
    pub fn api_token(&self) -> String {
        let out = Command::new(BIN)
            .args(["admin", "api-token", "create", "--name", "bench"])
            .envs(self.env.clone())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// (current RSS, peak RSS) in MiB, from /proc.
    pub fn rss(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs JSON with a bearer token and insists on success.
pub async fn post(c: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let r = c.post(url).bearer_auth(token).json(&body).send().await.expect("request");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// Runs jobs `0..n` over `clients` concurrent workers; returns elapsed seconds.
pub async fn concurrently<F, Fut>(n: usize, clients: usize, job: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let job = job.clone();
            tokio::spawn(async move {
                let mut i = w;
                while i < n {
                    job(i).await;
                    i += clients;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// `onramp serve` with `env` on a free admin port, without the embedded edge, healthy;
/// returns it with its admin base URL and a fresh API token.
pub fn serve_core(mut env: Vec<(String, String)>) -> (Proc, String, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    env.push(("ONRAMP_HTTP_ADDR".into(), addr.clone()));
    env.push(("ONRAMP_EDGE_ENABLED".into(), "false".into()));
    env.push(("ONRAMP_PUBLIC_URL".into(), "https://edge.example.com".into()));
    let server = Proc::spawn("serve", env);
    server.wait_healthy();
    let token = server.api_token();
    (server, format!("http://{addr}"), token)
}

/// Creates `n` users `user00000`... over the admin API from `clients` concurrent clients;
/// returns the seconds it took.
pub async fn create_users(c: &reqwest::Client, base: &str, token: &str, n: usize, clients: usize) -> f64 {
    let (c, base, token) = (c.clone(), base.to_owned(), token.to_owned());
    concurrently(n, clients, move |i| {
        let (c, base, token) = (c.clone(), base.clone(), token.clone());
        async move {
            let body = serde_json::json!({"username": format!("user{i:05}"), "first_name": "Bench",
                "last_name": format!("User {i}"), "email": format!("user{i:05}@example.com")});
            post(&c, format!("{base}/api/v1/user"), &token, body).await;
        }
    })
    .await
}

/// The q-quantile (0..=1) of unsorted samples, in milliseconds.
pub fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

/// `onramp serve` (admin API on its own port, no embedded edge) and a standalone `onramp
/// edge` it dials over the plaintext link on loopback; `core_env` adds the store settings.
/// Returns both processes, the admin base URL (`http://.../api/v1`) and the edge's URL,
/// once the edge answers its health check.
pub async fn core_and_edge(mut core_env: Vec<(String, String)>, rate_limit: u32) -> (Proc, Proc, String, String) {
    let (http, edge_port, link) = (free_port(), free_port(), free_port());
    core_env.extend([
        ("ONRAMP_HTTP_ADDR".into(), format!("127.0.0.1:{http}")),
        ("ONRAMP_EDGE_ENABLED".into(), "false".into()),
        ("ONRAMP_EDGE_URLS".into(), format!("http://127.0.0.1:{link}")),
        ("ONRAMP_LINK_INSECURE".into(), "true".into()),
        ("ONRAMP_PUBLIC_URL".into(), format!("http://127.0.0.1:{edge_port}")),
    ]);
    let core = Proc::spawn("serve", core_env);
    core.wait_healthy();
    let edge = Proc::spawn(
        "edge",
        vec![
            ("ONRAMP_EDGE_ADDR".into(), format!("127.0.0.1:{edge_port}")),
            ("ONRAMP_EDGE_LINK_ADDR".into(), format!("127.0.0.1:{link}")),
            ("ONRAMP_LINK_INSECURE".into(), "true".into()),
            ("ONRAMP_EDGE_RATE_LIMIT".into(), rate_limit.to_string()),
        ],
    );
    let edge_url = format!("http://127.0.0.1:{edge_port}");
    let c = reqwest::Client::new();
    for _ in 0..200 {
        match c.get(format!("{edge_url}/api/v1/health")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    (core, edge, format!("http://127.0.0.1:{http}/api/v1"), edge_url)
}

/// Password hashes per second with core's Argon2 parameters, one thread per CPU.
pub fn argon2_bound() -> f64 {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let until = Instant::now() + Duration::from_secs(3);
    let start = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut n = 0;
                    while Instant::now() < until {
                        let salt = SaltString::generate(&mut OsRng);
                        argon2::Argon2::default().hash_password(b"Str0ng!Password", &salt).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}
