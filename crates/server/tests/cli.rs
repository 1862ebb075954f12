//! The real `onramp` binary: serve, healthcheck, admin commands, provisioning files, and
//! a full run whose logs must not contain any issued secret.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_onramp");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Server {
    fn start(data_dir: &Path, db_url: Option<&str>) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = data_dir.with_extension("log");
        let mut cmd = Command::new(BIN);
        // Any free gateway port: tests run many cores at once.
        cmd.arg("serve")
            .env("ONRAMP_GATEWAY_ADDR", "127.0.0.1:0")
            .env("ONRAMP_DATA_DIR", data_dir)
            .env("ONRAMP_HTTP_ADDR", &addr)
            .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("ONRAMP_PUBLIC_URL", "https://edge.example.com")
            .env("ONRAMP_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(u) = db_url {
            cmd.env("ONRAMP_DATABASE_URL", u);
        }
        let child = cmd.spawn().expect("spawn onramp serve");
        let s = Server { child, addr, log };
        for _ in 0..100 {
            if s.admin(&["healthcheck"]).status.success() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not become healthy; log:\n{}", std::fs::read_to_string(&s.log).unwrap_or_default());
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("ONRAMP_HTTP_ADDR", &self.addr).env("ONRAMP_PUBLIC_URL", "https://edge.example.com");
        c
    }

    fn admin(&self, args: &[&str]) -> std::process::Output {
        self.cmd().args(args).output().unwrap()
    }

    fn stop(mut self) -> String {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn run(mut c: Command) -> (String, String) {
    let out = c.output().unwrap();
    let (so, se) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "command failed: {se}");
    (so, se)
}

async fn http(client: &reqwest::Client, addr: &str, token: &str, method: &str, path: &str, body: Value) -> Value {
    let r = client
        .request(method.parse().unwrap(), format!("http://{addr}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{method} {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn full_run(db_url: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, db_url);
    let with_db = |mut c: Command| {
        c.env("ONRAMP_DATA_DIR", &data);
        if let Some(u) = db_url {
            c.env("ONRAMP_DATABASE_URL", u);
        }
        c
    };
    let mut secrets = vec![];
    let mut c = with_db(server.cmd());
    c.args(["admin", "api-token", "create", "--name", "ci"]);
    let (token, cli_err) = run(c);
    let token = token.trim().to_owned();
    assert!(token.starts_with("onramp_"), "{token}");
    secrets.push(token.clone());
    let client = reqwest::Client::new();
    let a = &server.addr;
    http(
        &client,
        a,
        &token,
        "POST",
        "/api/v1/location",
        json!({"name": "office", "address": "10.10.0.1/24", "endpoint": "vpn.example.com", "port": 51820}),
    )
    .await;
    for u in ["ann", "bob"] {
        http(
            &client,
            a,
            &token,
            "POST",
            "/api/v1/user",
            json!({"username": u, "first_name": "F", "last_name": "L", "email": format!("{u}@example.com")}),
        )
        .await;
    }
    http(&client, a, &token, "POST", "/api/v1/group", json!({"name": "staff", "members": ["ann", "bob"]})).await;
    let t = http(&client, a, &token, "POST", "/api/v1/user/ann/start_enrollment", json!({})).await;
    secrets.push(t["enrollment_token"].as_str().unwrap().to_owned());
    let bulk = http(&client, a, &token, "POST", "/api/v1/provisioning/bulk", json!({"group": "staff"})).await;
    for r in bulk["results"].as_array().unwrap() {
        secrets.push(r["enrollment_token"].as_str().unwrap().to_owned());
    }

    // provision-group writes one provisioning.json per user (0600) and a CSV.
    let out = tmp.path().join("rollout");
    let mut c = with_db(server.cmd());
    c.args(["admin", "provision-group", "staff", "--out", out.to_str().unwrap(), "--include-token"]);
    let (_, err) = run(c);
    assert!(err.contains("2 provisioning file(s) written"), "{err}");
    let csv = std::fs::read_to_string(out.join("provisioning.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), "username,email,kind,enrollment_url,expires_at,note,enrollment_token");
    for u in ["ann", "bob"] {
        let f = out.join(u).join("provisioning.json");
        let p: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(p["enrollment_url"], "https://edge.example.com/");
        let tok = p["enrollment_token"].as_str().unwrap().to_owned();
        assert!(onramp_domain::token::is_well_formed(&tok));
        assert!(
            csv.contains(&format!("{u},{u}@example.com,enrollment,https://edge.example.com/")) && csv.contains(&tok)
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(out.join(u)).unwrap().permissions().mode() & 0o777, 0o700);
        secrets.push(tok);
    }
    // Without --include-token the CSV carries no secret (the files still do).
    let quiet = tmp.path().join("rollout2");
    let mut c = with_db(server.cmd());
    c.args(["admin", "provision-group", "staff", "--out", quiet.to_str().unwrap()]);
    let (_, err) = run(c);
    assert!(err.contains("2 provisioning file(s) written"), "{err}");
    let csv = std::fs::read_to_string(quiet.join("provisioning.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "username,email,kind,enrollment_url,expires_at,note");
    for u in ["ann", "bob"] {
        let p: Value =
            serde_json::from_str(&std::fs::read_to_string(quiet.join(u).join("provisioning.json")).unwrap()).unwrap();
        let tok = p["enrollment_token"].as_str().unwrap().to_owned();
        assert!(!csv.contains(&tok), "{csv}");
        secrets.push(tok);
    }

    // The newest tokens are the ones that work: the server sees the CLI's writes.
    let pending = http(&client, a, &token, "GET", "/api/v1/user/ann/tokens", Value::Null).await;
    assert_eq!(pending.as_array().unwrap().len(), 1);

    let mut c = with_db(server.cmd());
    c.args(["admin", "start-enrollment", "bob", "--expires", "12h"]);
    let (json_out, _) = run(c);
    let p: Value = serde_json::from_str(&json_out).unwrap();
    secrets.push(p["enrollment_token"].as_str().unwrap().to_owned());
    let mut c = with_db(server.cmd());
    c.args(["admin", "user", "list", "--json"]);
    let (users, _) = run(c);
    assert_eq!(serde_json::from_str::<Value>(&users).unwrap().as_array().unwrap().len(), 3);

    let log = server.stop();
    assert!(log.contains("admin API listening"), "{log}");
    assert!(log.contains("onramp admin api-token create"), "bootstrap tells the operator how to get in: {log}");
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a secret reached the server log");
        assert!(!cli_err.contains(s.as_str()), "a secret reached the CLI's stderr");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_run_on_sqlite_keeps_secrets_out_of_logs() {
    full_run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_run_on_postgres() {
    let url = onramp_testkit::pg::fresh_database_url().await;
    full_run(Some(&url)).await;
}

#[test]
fn mistyped_database_url_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("typo.db");
    let out = Command::new(BIN)
        .args(["migrate"])
        .env("ONRAMP_DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist") && err.contains("ONRAMP_DATABASE_URL"), "{err}");
    assert!(!db.exists());
    let out = Command::new(BIN)
        .args(["migrate", "--create"])
        .env("ONRAMP_DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn configuration_errors_name_the_setting() {
    for (var, val, needle) in [
        ("ONRAMP_HTTP_ADDR", "localhost", "http_addr"),
        ("ONRAMP_EDGE_ADDR", "x:y", "edge_addr"),
        ("ONRAMP_DATABASE_URL", "mysql://db/x", "database_url"),
        ("ONRAMP_PUBLIC_URL", "edge.example.com", "public_url"),
        ("ONRAMP_DATABASE_URL_FILE", "/nonexistent/url", "database_url_file"),
    ] {
        let out = Command::new(BIN).arg("migrate").env(var, val).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.contains(var), "{var}: {err}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("onramp.toml");
    std::fs::write(&cfg, "http_adr = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(BIN).args(["--config", cfg.to_str().unwrap(), "migrate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http_adr"));
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let out = Command::new(BIN)
        .arg("healthcheck")
        .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}
