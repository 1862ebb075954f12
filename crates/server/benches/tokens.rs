//! Token issuance benchmark (issue: control plane). Starts the real `onramp serve` binary on
//! SQLite and on PostgreSQL, creates 10,000 users, then issues 10,000 enrollment tokens
//! (a) through the bulk endpoint and (b) through per-user `start_enrollment` calls from 8
//! concurrent HTTP clients. Prints tokens/s and the server's RSS (current and peak).
//!
//! Run: `cargo bench -p onramp-server --bench tokens` (env BENCH_USERS, BENCH_CLIENTS,
//! BENCH_BACKENDS=sqlite,postgres).

mod common;

use common::{concurrently, post};
use serde_json::json;
use std::time::Instant;

struct Row {
    backend: &'static str,
    users_per_s: f64,
    bulk_per_s: f64,
    per_user_per_s: f64,
    rss_now: f64,
    rss_peak: f64,
}

async fn run(backend: &'static str, env: Vec<(String, String)>, users: usize, clients: usize) -> Row {
    let (server, base, token) = common::serve_core(env);
    let c = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();

    let t = common::create_users(&c, &base, &token, users, clients).await;
    let users_per_s = users as f64 / t;
    let members: Vec<String> = (0..users).map(|i| format!("user{i:05}")).collect();
    post(&c, format!("{base}/api/v1/group"), &token, json!({"name": "rollout", "members": members})).await;

    let start = Instant::now();
    let v = post(&c, format!("{base}/api/v1/provisioning/bulk"), &token, json!({"group": "rollout"})).await;
    let bulk_t = start.elapsed().as_secs_f64();
    assert_eq!(v["issued"].as_u64(), Some(users as u64));

    let t = {
        let (c, base, token) = (c.clone(), base.clone(), token.clone());
        concurrently(users, clients, move |i| {
            let (c, base, token) = (c.clone(), base.clone(), token.clone());
            async move {
                post(&c, format!("{base}/api/v1/user/user{i:05}/start_enrollment"), &token, json!({})).await;
            }
        })
        .await
    };
    let (rss_now, rss_peak) = server.rss();
    Row { backend, users_per_s, bulk_per_s: users as f64 / bulk_t, per_user_per_s: users as f64 / t, rss_now, rss_peak }
}

fn main() {
    let users: usize = std::env::var("BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let clients: usize = std::env::var("BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut rows = vec![];
    let dir = tempfile::tempdir().unwrap();
    if backends.contains("sqlite") {
        let env = vec![("ONRAMP_DATA_DIR".into(), dir.path().display().to_string())];
        rows.push(rt.block_on(run("sqlite", env, users, clients)));
    }
    if backends.contains("postgres") {
        let pg = rt.block_on(onramp_testkit::pg::fresh_database_url());
        rows.push(rt.block_on(run("postgres", vec![("ONRAMP_DATABASE_URL".into(), pg)], users, clients)));
    }
    println!();
    println!("Token issuance: {users} users, {clients} concurrent HTTP clients for per-user calls");
    println!("| backend  | create users/s | bulk tokens/s | per-user tokens/s ({clients} clients) | core RSS after (MiB) | core peak RSS (MiB) |");
    println!("|----------|---------------:|--------------:|-----------------------:|---------------------:|--------------------:|");
    for r in rows {
        println!(
            "| {:<8} | {:>14.0} | {:>13.0} | {:>22.0} | {:>20.1} | {:>19.1} |",
            r.backend, r.users_per_s, r.bulk_per_s, r.per_user_per_s, r.rss_now, r.rss_peak
        );
    }
    println!("Targets: bulk >= 10,000 tokens/s (SQLite); per-user >= 2,500 tokens/s with 8 clients; core RSS < 60 MB after the run.");
}
