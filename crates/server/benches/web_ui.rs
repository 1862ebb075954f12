//! Admin web UI benchmark: the users list page with 10,000 users. Starts the real
//! `onramp serve` (SQLite and PostgreSQL), creates the users, signs in through the sign-in
//! form, then requests the first page, a search, and a filtered search, one at a time.
//! Prints p50/p99 per page: the time from request to the last byte on loopback, an upper
//! bound of the server time.
//!
//! Run: `cargo bench -p onramp-server --bench web_ui` (env BENCH_USERS, BENCH_SAMPLES,
//! BENCH_BACKENDS=sqlite,postgres).

mod common;

use common::{post, quantile_ms, Proc, BIN};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Bench!Passw0rd";

struct Row {
    backend: &'static str,
    page: &'static str,
    p50: f64,
    p99: f64,
    bytes: usize,
}

fn set_admin_password(server: &Proc, dir: &std::path::Path) {
    let file = dir.join("admin-password");
    std::fs::write(&file, PASSWORD).unwrap();
    let out = Command::new(BIN)
        .args(["admin", "set-password", "admin", "--password-file"])
        .arg(&file)
        .envs(server.env.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Signs in through the form; returns the session cookie.
async fn sign_in(base: &str) -> String {
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = c.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = c
        .post(format!("{base}/login"))
        .header("cookie", login_cookie)
        .form(&[("_csrf", csrf.as_str()), ("username", "admin"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "sign-in failed");
    let cookie = r.headers().get_all("set-cookie").iter().find(|v| v.to_str().unwrap().starts_with("onramp_session="));
    cookie.unwrap().to_str().unwrap().split(';').next().unwrap().to_owned()
}

async fn run(
    backend: &'static str,
    env: Vec<(String, String)>,
    users: usize,
    samples: usize,
    dir: &std::path::Path,
) -> Vec<Row> {
    let (server, base, token) = common::serve_core(env);
    set_admin_password(&server, dir);
    let c = reqwest::Client::builder().pool_max_idle_per_host(8).build().unwrap();
    common::create_users(&c, &base, &token, users, 8).await;
    // A token per tenth user, so the rows show pending tokens as in a rollout.
    let some: Vec<String> = (0..users).step_by(10).map(|i| format!("user{i:05}")).collect();
    post(&c, format!("{base}/api/v1/provisioning/bulk"), &token, json!({"usernames": some})).await;
    let cookie = sign_in(&base).await;
    let pages: [(&'static str, String); 3] = [
        ("first page", "/users".into()),
        ("search \"user0999\"", "/users?q=user0999".into()),
        ("search + pending filter, page 3", "/users?q=bench&state=pending&page=3".into()),
    ];
    let mut rows = vec![];
    for (name, path) in pages {
        let mut times: Vec<Duration> = Vec::with_capacity(samples);
        let mut bytes = 0;
        for _ in 0..samples {
            let start = Instant::now();
            let r = c.get(format!("{base}{path}")).header("cookie", &cookie).send().await.unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK, "{path}");
            bytes = r.bytes().await.unwrap().len();
            times.push(start.elapsed());
        }
        rows.push(Row {
            backend,
            page: name,
            p50: quantile_ms(&mut times, 0.5),
            p99: quantile_ms(&mut times, 0.99),
            bytes,
        });
    }
    rows
}

fn main() {
    let users: usize = std::env::var("BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let samples: usize = std::env::var("BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut rows = vec![];
    let dir = tempfile::tempdir().unwrap();
    if backends.contains("sqlite") {
        let data = dir.path().join("sqlite");
        std::fs::create_dir_all(&data).unwrap();
        let env = vec![("ONRAMP_DATA_DIR".into(), data.display().to_string())];
        rows.extend(rt.block_on(run("sqlite", env, users, samples, dir.path())));
    }
    if backends.contains("postgres") {
        let pg = rt.block_on(onramp_testkit::pg::fresh_database_url());
        let data = dir.path().join("pg");
        std::fs::create_dir_all(&data).unwrap();
        let env = vec![("ONRAMP_DATABASE_URL".into(), pg), ("ONRAMP_DATA_DIR".into(), data.display().to_string())];
        rows.extend(rt.block_on(run("postgres", env, users, samples, dir.path())));
    }
    println!();
    println!("Users list page of the web UI: {users} users, {samples} sequential requests per page (loopback)");
    println!("| backend  | page                              | p50 (ms) | p99 (ms) | page size (KiB) |");
    println!("|----------|-----------------------------------|---------:|---------:|----------------:|");
    for r in rows {
        println!(
            "| {:<8} | {:<33} | {:>8.2} | {:>8.2} | {:>15.1} |",
            r.backend,
            r.page,
            r.p50,
            r.p99,
            r.bytes as f64 / 1024.0
        );
    }
    println!("Target: p99 < 30 ms for the first page and for a search.");
}
