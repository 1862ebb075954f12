//! Several core replicas on one PostgreSQL database share one standalone edge (issue 10,
//! item 6): both stay connected (neither displaces the other, so nobody reconnects in a
//! loop), enrollment traffic is served by both, and when one is killed mid-traffic every
//! request still answers promptly and every enrollment completes on the other.

mod common;
mod procs;
use common::*;
use procs::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USERS: usize = 24;
const WORKERS: usize = 4;
/// No request may take anywhere near the link's 15 s timeout.
const PROMPT: Duration = Duration::from_secs(5);

fn spawn_edge(edge: u16, link: u16, pki: &Pki, log: &std::path::Path) -> Proc {
    Proc(
        Command::new(BIN)
            .arg("edge")
            .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{edge}"))
            .env("ONRAMP_EDGE_LINK_ADDR", format!("127.0.0.1:{link}"))
            .env("ONRAMP_EDGE_RATE_LIMIT", "0")
            .env("ONRAMP_LINK_CERT_FILE", pki.path("edge.pem"))
            .env("ONRAMP_LINK_KEY_FILE", pki.path("edge.key"))
            .env("ONRAMP_LINK_CA_FILE", pki.path("ca.pem"))
            .env("ONRAMP_LINK_CORE_NAME", "onramp-core")
            .env("ONRAMP_EDGE_TLS_CERT_FILE", pki.path("edge.pem"))
            .env("ONRAMP_EDGE_TLS_KEY_FILE", pki.path("edge.key"))
            .env("ONRAMP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn onramp edge"),
    )
}

fn spawn_core(http: u16, edge: u16, link: u16, db: &str, pki: &Pki, log: &std::path::Path) -> Proc {
    Proc(
        Command::new(BIN)
            .arg("serve")
            // Any free port: tests run many cores at once.
            .env("ONRAMP_GATEWAY_ADDR", "127.0.0.1:0")
            .env("ONRAMP_DATABASE_URL", db)
            // Both replicas share the secret key in the test's own directory.
            .env("ONRAMP_DATA_DIR", data_dir(log))
            .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("ONRAMP_EDGE_ENABLED", "false")
            .env("ONRAMP_EDGE_URLS", format!("https://localhost:{link}"))
            .env("ONRAMP_LINK_CA_FILE", pki.path("ca.pem"))
            .env("ONRAMP_LINK_CERT_FILE", pki.path("core.pem"))
            .env("ONRAMP_LINK_KEY_FILE", pki.path("core.key"))
            .env("ONRAMP_PUBLIC_URL", format!("https://localhost:{edge}"))
            .env("ONRAMP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn onramp serve"),
    )
}

/// The data directory (secret key) beside the logs; every replica and the CLI share it.
fn data_dir(log: &std::path::Path) -> std::path::PathBuf {
    log.with_file_name("data")
}

/// How many core connections the edge has accepted so far, from its log.
fn core_connections(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).unwrap().lines().filter(|l| l.contains("core connected")).count()
}

/// Waits for `cond`; on timeout the panic carries every process log, so a CI failure says why.
async fn wait_until(what: &str, logs: &[&std::path::Path], cond: impl Fn() -> bool) {
    // Generous: under a loaded CI machine a cold start of core on PostgreSQL can be slow.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        if Instant::now() >= deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| format!("--- {}:\n{}", p.display(), std::fs::read_to_string(p).unwrap_or_default()))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Edge {
    c: reqwest::Client,
    base: String,
}

impl Edge {
    /// One call; panics unless the edge answers within [`PROMPT`].
    async fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> (StatusCode, Value, Option<String>) {
        let mut r = self.c.post(format!("{}/api/v1/{path}", self.base)).json(&body);
        if let Some(ck) = cookie {
            r = r.header("cookie", ck);
        }
        let began = Instant::now();
        let r = r.send().await.unwrap_or_else(|e| panic!("{path}: no answer after {:?}: {e}", began.elapsed()));
        let cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(began.elapsed() < PROMPT, "{path} took {:?} ({status} {text})", began.elapsed());
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }, cookie)
    }

    /// A call that changes state: when the edge lost core mid-request it says so (503)
    /// and the client tries again once; the retry may find the work already done.
    async fn change(&self, path: &str, cookie: &str, body: Value, interrupted: &AtomicUsize) -> (StatusCode, Value) {
        let (s, v, _) = self.post(path, Some(cookie), body.clone()).await;
        if s == StatusCode::SERVICE_UNAVAILABLE && v["error"].as_str().is_some_and(|e| e.contains("lost")) {
            interrupted.fetch_add(1, Ordering::SeqCst);
            let (s, v, _) = self.post(path, Some(cookie), body).await;
            assert!(s.as_u16() < 500, "{path} retry: {s} {v}");
            return (StatusCode::OK, v);
        }
        (s, v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_share_one_edge_and_survive_a_kill() {
    let db = onramp_testkit::pg::fresh_database_url().await;
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("edge.log");
    let (edge, link, http1, http2) = (free_port(), free_port(), free_port(), free_port());
    let pki = Pki::new();
    let _edge = spawn_edge(edge, link, &pki, &log);
    let (log1, log2) = (tmp.path().join("core1.log"), tmp.path().join("core2.log"));
    let logs = [log.as_path(), log1.as_path(), log2.as_path()];
    let core1 = spawn_core(http1, edge, link, &db, &pki, &log1);
    wait_until("core 1 on the edge", &logs, || core_connections(&log) >= 1).await;
    // The second replica starts after the first has migrated the database.
    let _core2 = spawn_core(http2, edge, link, &db, &pki, &log2);
    wait_until("core 2 on the edge", &logs, || core_connections(&log) >= 2).await;

    // Both stay connected: a replica that displaced the other would see it reconnect.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(core_connections(&log), 2, "cores keep reconnecting:\n{}", std::fs::read_to_string(&log).unwrap());

    let out = Command::new(BIN)
        .args(["admin", "api-token", "create", "--name", "t"])
        .env("ONRAMP_DATABASE_URL", &db)
        .env("ONRAMP_DATA_DIR", data_dir(&log))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let c = pki.client();
    let api = |port: u16, path: &str| format!("http://127.0.0.1:{port}/api/v1/{path}");
    let r = c
        .post(api(http2, "location"))
        .bearer_auth(&token)
        .json(&json!({"name": "office", "address": "10.8.0.1/16", "endpoint": "vpn.example.com", "port": 51820}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let mut tokens = vec![];
    for i in 0..USERS {
        // Spread the admin calls over both replicas too.
        let port = if i % 2 == 0 { http1 } else { http2 };
        let user = json!({"username": format!("u{i}"), "first_name": "U", "last_name": "L", "email": format!("u{i}@example.com")});
        let r = c.post(api(port, "user")).bearer_auth(&token).json(&user).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let t: Value = c
            .post(api(port, &format!("user/u{i}/start_enrollment")))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(t["enrollment_token"].as_str().unwrap().to_owned());
    }

    // Enrollment traffic from four workers; core 1 is killed a third of the way through.
    let e = Arc::new(Edge { c: c.clone(), base: format!("https://localhost:{edge}") });
    let (done, interrupted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let mine: Vec<(usize, String)> = tokens.iter().cloned().enumerate().filter(|(i, _)| i % WORKERS == w).collect();
        let (e, done, interrupted) = (e.clone(), done.clone(), interrupted.clone());
        workers.spawn(async move {
            for (i, t) in mine {
                let (s, v, cookie) = e.post("enrollment/start", None, json!({"token": t})).await;
                assert_eq!(s, StatusCode::OK, "start u{i}: {v}");
                let cookie = cookie.expect("session cookie");
                let (s, v) = e
                    .change("enrollment/activate_user", &cookie, json!({"password": "Str0ng!Pass"}), &interrupted)
                    .await;
                assert_eq!(s, StatusCode::OK, "activate u{i}: {v}");
                let body = json!({"name": "laptop", "pubkey": pubkey(i as u8)});
                let (s, v) = e.change("enrollment/create_device", &cookie, body, &interrupted).await;
                assert_eq!(s, StatusCode::OK, "create_device u{i}: {v}");
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    wait_until("a third of the enrollments", &logs, || done.load(Ordering::SeqCst) >= USERS / 3).await;
    drop(core1); // SIGKILL
    while let Some(r) = workers.join_next().await {
        r.unwrap();
    }
    // Only requests core 1 held when it died can have been interrupted.
    assert!(interrupted.load(Ordering::SeqCst) <= WORKERS, "{} interrupted", interrupted.load(Ordering::SeqCst));

    // Every user is enrolled with a device, as the surviving replica sees it.
    for (i, t) in tokens.iter().enumerate() {
        let (s, v, _) = e.post("enrollment/start", None, json!({"token": t})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["user"]["enrolled"], true, "u{i}: {v}");
        assert_eq!(v["user"]["device_names"].as_array().map(Vec::len), Some(1), "u{i}: {v}");
    }
    assert_eq!(core_connections(&log), 2, "a core reconnected");
}
