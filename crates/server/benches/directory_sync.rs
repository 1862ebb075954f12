//! Directory sync benchmark: 10,000 users in a real slapd (one synced group), synced into a
//! real `onramp serve` through `POST /api/v1/directory/sync`, on SQLite and PostgreSQL:
//! from nothing, then again with nothing changed; and the same with the provisioning
//! attribute on (a token issued and written per user, then checked for freshness). Then the
//! same against the Graph-shaped test server for Entra ID (in this process, on loopback).
//! Prints the wall time and the LDAP / Graph round trips of each run.
//!
//! Run: `cargo bench -p onramp-server --bench directory_sync` (env BENCH_USERS,
//! BENCH_BACKENDS=sqlite,postgres, BENCH_DIRECTORIES=ldap,entra). Needs slapd and ldap-utils.

mod common;

use common::Proc;
use onramp_testkit::graph::FakeGraph;
use onramp_testkit::ldap::{Slapd, GROUPS_DN, SYNC_DN, SYNC_PASSWORD, USERS_DN};
use serde_json::{json, Value};
use std::time::Instant;

/// Where the users come from.
enum Directory<'a> {
    Ldap(&'a Slapd),
    Entra(&'a FakeGraph),
}

struct Row {
    directory: &'static str,
    backend: &'static str,
    run: &'static str,
    secs: f64,
    round_trips: u64,
    summary: String,
}

async fn sync(c: &reqwest::Client, base: &str, token: &str) -> (f64, Value) {
    let start = Instant::now();
    let r = c
        .post(format!("{base}/api/v1/directory/sync"))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "sync failed: {}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    (start.elapsed().as_secs_f64(), v)
}

fn counts(v: &Value) -> String {
    let n = |k: &str| v[k].as_array().map(|a| a.len()).unwrap_or(0);
    format!(
        "created {}, memberships {}, attributes written {}; read {} ms, invitations and attributes {} ms",
        n("created"),
        n("memberships_added"),
        n("attributes_written"),
        v["read_ms"],
        v["invite_ms"]
    )
}

async fn run(
    backend: &'static str,
    env: Vec<(String, String)>,
    source: &Directory<'_>,
    dir: &std::path::Path,
    attribute: bool,
) -> Vec<Row> {
    let (server, base, token): (Proc, String, String) = common::serve_core(env);
    let c = reqwest::Client::new();
    let patch = match source {
        Directory::Ldap(slapd) => {
            let pw = dir.join(format!("bind-pw-{backend}-{attribute}"));
            std::fs::write(&pw, SYNC_PASSWORD).unwrap();
            json!({
                "enrollment": {"directory_invite_attribute": attribute},
                "directory": {"url": slapd.url(), "bind_dn": SYNC_DN, "password_file": pw, "user_base": USERS_DN,
                              "group_base": GROUPS_DN, "sync_groups": ["staff"], "page_size": 1000}
            })
        }
        Directory::Entra(graph) => {
            let secret = dir.join("entra-secret");
            std::fs::write(&secret, onramp_testkit::graph::CLIENT_SECRET).unwrap();
            json!({
                "enrollment": {"directory_invite_attribute": attribute},
                "entra": {"tenant": onramp_testkit::graph::TENANT, "client_id": onramp_testkit::graph::CLIENT_ID,
                          "client_secret_file": secret, "graph_url": graph.url, "login_url": graph.url,
                          "sync_groups": ["staff"]}
            })
        }
    };
    let directory = match source {
        Directory::Ldap(_) => "LDAP",
        Directory::Entra(_) => "Entra ID",
    };
    let r = c.patch(format!("{base}/api/v1/settings")).bearer_auth(&token).json(&patch).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut rows = vec![];
    let label = |first: bool| match (attribute, first) {
        (false, true) => "from nothing",
        (false, false) => "nothing changed",
        (true, true) => "from nothing, tokens written to the attribute",
        (true, false) => "nothing changed, attributes checked",
    };
    for first in [true, false] {
        let (secs, v) = sync(&c, &base, &token).await;
        rows.push(Row {
            directory,
            backend,
            run: label(first),
            secs,
            round_trips: v["round_trips"].as_u64().unwrap_or(0),
            summary: counts(&v),
        });
    }
    drop(server);
    rows
}

fn main() {
    let users: usize = std::env::var("BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let directories = std::env::var("BENCH_DIRECTORIES").unwrap_or_else(|_| "ldap,entra".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let graph = rt.block_on(FakeGraph::start());
    let ids: Vec<String> = (0..users)
        .map(|i| graph.add_user(&format!("user{i:05}@contoso.com"), "User", &format!("N{i}"), None))
        .collect();
    graph.add_group("staff", &ids.iter().map(String::as_str).collect::<Vec<_>>());
    let slapd = Slapd::start();
    let load = Instant::now();
    let mut members = Vec::with_capacity(users);
    let mut chunk = String::new();
    for i in 0..users {
        let u = format!("user{i:05}");
        chunk.push_str(&Slapd::person_ldif(&u, "User", &format!("N{i}")));
        members.push(Slapd::user_dn(&u));
        if chunk.len() > 4 << 20 {
            slapd.add(&std::mem::take(&mut chunk));
        }
    }
    chunk.push_str(&Slapd::group_ldif("staff", &members));
    slapd.add(&chunk);
    eprintln!("loaded {users} users into slapd in {:.1} s", load.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let mut rows = vec![];
    let mut sources = vec![];
    if directories.contains("ldap") {
        sources.push(("ldap", Directory::Ldap(&slapd)));
    }
    if directories.contains("entra") {
        sources.push(("entra", Directory::Entra(&graph)));
    }
    for (name, source) in &sources {
        for attribute in [false, true] {
            if backends.contains("sqlite") {
                let data = dir.path().join(format!("{name}-sqlite-{attribute}"));
                std::fs::create_dir_all(&data).unwrap();
                let env = vec![("ONRAMP_DATA_DIR".into(), data.display().to_string())];
                rows.extend(rt.block_on(run("sqlite", env, source, dir.path(), attribute)));
            }
            if backends.contains("postgres") {
                let pg = rt.block_on(onramp_testkit::pg::fresh_database_url());
                let data = dir.path().join(format!("{name}-pg-{attribute}"));
                std::fs::create_dir_all(&data).unwrap();
                let env =
                    vec![("ONRAMP_DATABASE_URL".into(), pg), ("ONRAMP_DATA_DIR".into(), data.display().to_string())];
                rows.extend(rt.block_on(run("postgres", env, source, dir.path(), attribute)));
            }
        }
    }
    println!();
    println!("Directory sync of {users} users in one group (slapd or the Graph-shaped server on loopback;");
    println!("pages of 1,000 for LDAP, 999 for Graph)");
    println!(
        "| directory | backend  | run                                            | time (s) | round trips | changes |"
    );
    println!(
        "|-----------|----------|------------------------------------------------|---------:|------------:|---------|"
    );
    for r in rows {
        println!(
            "| {:<9} | {:<8} | {:<46} | {:>8.2} | {:>11} | {} |",
            r.directory, r.backend, r.run, r.secs, r.round_trips, r.summary
        );
    }
    println!("Targets: from nothing < 30 s, nothing changed < 2 s.");
}
