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
    assert!(log.contains("admin web UI at"), "{log}");
    assert!(
        log.contains("onramp admin api-token create") && log.contains("onramp admin set-password admin"),
        "bootstrap tells the operator how to get in: {log}"
    );
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

/// Output of one `onramp` run, whatever its exit status.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn out(mut c: Command) -> Out {
    let o = c.output().unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

impl Out {
    fn ok(self, what: &str) -> Self {
        assert_eq!(self.code, Some(0), "{what}: {}", self.stderr);
        self
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
    /// A failure with one error line that names `needle` and does not name `not`.
    fn fails_naming(self, needle: &str, not: &[&str]) -> Self {
        assert_eq!(self.code, Some(1), "expected failure naming {needle}: {}{}", self.stdout, self.stderr);
        assert!(self.stderr.contains(needle), "error does not name {needle}: {}", self.stderr);
        for n in not {
            assert!(!self.stderr.contains(n), "error names {n}: {}", self.stderr);
        }
        // Printed once: not by both the logger and main.
        let lines = self.stderr.lines().filter(|l| l.to_lowercase().contains("error")).count();
        assert_eq!(lines, 1, "error printed more than once: {}", self.stderr);
        assert!(self.stdout.is_empty(), "a failed command printed: {}", self.stdout);
        self
    }
}

/// Every new `onramp admin` command against the real binary and database (and a real SMTP
/// server): exit codes, JSON output, errors that name the flag, and secrets that appear
/// only where they are meant to be printed.
async fn daily_admin_work(db_url: Option<&str>) {
    use onramp_testkit::smtp::SmtpSink;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sink = SmtpSink::start().await;
    let server = Server::start(&data, db_url);
    let cmd = |args: &[&str]| {
        let mut c = server.cmd();
        c.env("ONRAMP_DATA_DIR", &data).arg("admin").args(args);
        if let Some(u) = db_url {
            c.env("ONRAMP_DATABASE_URL", u);
        }
        c
    };
    let admin = |args: &[&str]| out(cmd(args));
    // Secrets, and every stderr (and the stdouts not meant to carry them) to search.
    let mut secrets: Vec<String> = vec![];
    let mut quiet: Vec<String> = vec![];
    let mut run = |args: &[&str]| {
        // Debug logs: a secret must not reach them either.
        let mut c = cmd(args);
        c.env("ONRAMP_LOG", "debug");
        let o = out(c).ok(&args.join(" "));
        quiet.push(o.stderr.clone());
        o
    };

    // Locations.
    let l = run(&[
        "location",
        "create",
        "--name",
        "office",
        "--address",
        "10.20.0.1/24",
        "--endpoint",
        "vpn.example.com",
        "--json",
    ])
    .json();
    assert_eq!((l["port"].as_i64(), l["allowed_ips"].clone()), (Some(51820), json!(["10.20.0.0/24"])), "{l}");
    admin(&[
        "location",
        "create",
        "--name",
        "lab",
        "--address",
        "10.30.0.1/24",
        "--endpoint",
        "vpn.example.com",
        "--allowed-ips",
        "10.0.0.0/33",
    ])
    .fails_naming("--allowed-ips", &["allowed_ips"]);
    admin(&["location", "create", "--name", "office", "--address", "10.40.0.1/24", "--endpoint", "vpn.example.com"])
        .fails_naming("--name", &[]);
    admin(&["location", "edit", "office", "--keepalive", "99999"]).fails_naming("--keepalive", &["keepalive_interval"]);
    admin(&["location", "edit", "nowhere", "--port", "1"]).fails_naming("nowhere", &[]);
    let l =
        run(&["location", "edit", "office", "--port", "51821", "--dns", "10.20.0.1", "--mfa", "internal", "--json"])
            .json();
    assert_eq!(
        (l["port"].as_i64(), l["mfa_mode"].as_i64(), l["dns"].as_str()),
        (Some(51821), Some(2), Some("10.20.0.1")),
        "{l}"
    );
    assert_eq!(l["address"], json!(["10.20.0.1/24"]), "edit keeps what no flag changes");
    let l = run(&["location", "edit", "office", "--address", "10.21.0.1/24", "--json"]).json();
    assert_eq!(l["allowed_ips"], json!(["10.21.0.0/24"]), "default allowed IPs follow the subnet: {l}");
    let list = run(&["location", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(run(&["location", "list"]).stdout.contains("office"));

    // Users.
    let u = run(&[
        "user",
        "create",
        "--username",
        "ann",
        "--first-name",
        "Ann",
        "--last-name",
        "L",
        "--email",
        "ann@example.com",
        "--json",
    ])
    .json();
    assert_eq!(u["username"], "ann");
    admin(&["user", "create", "--username", "bob", "--first-name", "B", "--last-name", "L", "--email", "nope"])
        .fails_naming("--email", &[]);
    assert!(run(&["user", "list", "--json"]).json().as_array().unwrap().iter().any(|u| u["username"] == "ann"));

    // Tokens: printed in exactly the form asked for.
    let o = run(&["user", "start-enrollment", "ann", "--print", "token"]);
    let tok = o.stdout.trim().to_owned();
    assert!(onramp_domain::token::is_well_formed(&tok) && o.stdout.lines().count() == 1, "{}", o.stdout);
    secrets.push(tok);
    let o = run(&["user", "start-enrollment", "ann", "--print", "url"]);
    assert_eq!(o.stdout, "https://edge.example.com/\n");
    let p = run(&["user", "start-enrollment", "ann", "--json"]).json();
    assert_eq!(p["enrollment_url"], "https://edge.example.com/");
    secrets.push(p["enrollment_token"].as_str().unwrap().to_owned());
    let o = run(&["user", "start-enrollment", "ann", "--expires", "2h"]);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("token: ") && lines[1] == "url: https://edge.example.com/",
        "{}",
        o.stdout
    );
    secrets.push(lines[0].trim_start_matches("token: ").to_owned());
    let file = tmp.path().join("ann.json");
    let o = run(&["user", "start-desktop", "ann", "--provisioning-file", file.to_str().unwrap()]);
    assert!(o.stdout.is_empty(), "the file holds the token, the terminal not: {}", o.stdout);
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(onramp_domain::token::is_well_formed(p["enrollment_token"].as_str().unwrap()));
    secrets.push(p["enrollment_token"].as_str().unwrap().to_owned());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    admin(&["user", "start-enrollment", "nobody"]).fails_naming("\"nobody\" not found", &[]);
    admin(&["user", "start-enrollment", "ann", "--expires", "soon"])
        .fails_naming("--expires", &["token_expiration_time"]);
    let o = admin(&["user", "start-enrollment", "ann", "--bogus"]);
    assert!(o.code == Some(2) && o.stderr.contains("--bogus"), "{}", o.stderr);

    // Settings: the SMTP password only from a file, never shown.
    let port = sink.port().to_string();
    for (k, v) in [
        ("smtp.host", "127.0.0.1"),
        ("smtp.port", port.as_str()),
        ("smtp.security", "none"),
        ("smtp.sender", "vpn@example.com"),
    ] {
        run(&["settings", "set", k, v]);
    }
    const PW: &str = "Hunter2-smtp-secret";
    admin(&["settings", "set", "smtp.password", PW]).fails_naming("--value-file", &[]);
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, format!("{PW}\n")).unwrap();
    run(&["settings", "set", "smtp.password", "--value-file", pw.to_str().unwrap()]);
    secrets.push(PW.into());
    let s = run(&["settings", "get", "--json"]);
    assert!(!s.stdout.contains(PW));
    let s = s.json();
    assert_eq!(
        (s["smtp"]["port"].as_u64(), s["smtp"]["password_set"].as_bool()),
        (Some(sink.port() as u64), Some(true)),
        "{s}"
    );
    assert!(s["smtp"].get("password").is_none());
    assert_eq!(run(&["settings", "get", "smtp.host"]).stdout, "127.0.0.1\n");
    assert!(!run(&["settings", "get"]).stdout.contains(PW));
    admin(&["settings", "set", "smtp.port", "lots"]).fails_naming("smtp.port", &[]);
    admin(&["settings", "set", "smtp.security", "carrier-pigeon"]).fails_naming("smtp.security", &[]);
    admin(&["settings", "set", "nosuch.key", "1"]).fails_naming("unknown setting", &[]);
    let mut c = server.cmd();
    c.env("ONRAMP_DATA_DIR", &data)
        .args(["admin", "settings", "set", "--file", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = db_url {
        c.env("ONRAMP_DATABASE_URL", u);
    }
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        br#"{"instance_name": "Test VPN", "enrollment": {"max_devices_per_user": 3}}"#,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (s["instance_name"].as_str(), s["enrollment"]["max_devices_per_user"].as_i64()),
        (Some("Test VPN"), Some(3))
    );

    // Mail: a test message shows the server's answer; invitations go by e-mail only.
    let o = run(&["mail", "test", "--to", "ops@example.com"]);
    assert!(o.stdout.starts_with("250"), "the SMTP answer: {}", o.stdout);
    admin(&["mail", "test", "--to", "not-an-address"]).fails_naming("--to", &[]);
    let o = run(&["user", "start-enrollment", "ann", "--email", "ann.private@example.com"]);
    assert!(o.stdout.is_empty() && o.stderr.contains("ann.private@example.com"), "{}{}", o.stdout, o.stderr);
    let msgs = sink.wait_for(2, Duration::from_secs(30)).await;
    assert!(msgs[0].to == ["ops@example.com"] && msgs[0].subject.contains("Test VPN"), "{:?}", msgs[0]);
    assert_eq!(msgs[1].to, ["ann.private@example.com"]);
    let mailed = msgs[1]
        .text
        .lines()
        .map(str::trim)
        .find(|l| onramp_domain::token::is_well_formed(l))
        .expect("token in the mail")
        .to_owned();
    secrets.push(mailed);
    let mut sent = Value::Null;
    for _ in 0..100 {
        sent = run(&["mail", "list", "--status", "sent", "--json"]).json();
        if sent.as_array().unwrap().iter().any(|m| m["kind"] == "invitation") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        sent.as_array().unwrap().iter().any(|m| m["kind"] == "invitation" && m["to"] == "ann.private@example.com"),
        "{sent}"
    );
    assert!(run(&["mail", "list"]).stdout.contains("ann.private@example.com"));
    admin(&["mail", "list", "--status", "bogus"]).fails_naming("--status", &[]);
    admin(&["mail", "retry", "999999"]).fails_naming("not found", &[]);

    // Devices: registered through the REST API, inspected and removed with the CLI.
    let mut c = server.cmd();
    c.env("ONRAMP_DATA_DIR", &data).args(["admin", "api-token", "create", "--name", "cli-test"]);
    if let Some(u) = db_url {
        c.env("ONRAMP_DATABASE_URL", u);
    }
    let api = out(c).ok("api-token").stdout.trim().to_owned();
    secrets.push(api.clone());
    let client = reqwest::Client::new();
    let key = pubkey(7);
    let d = http(
        &client,
        &server.addr,
        &api,
        "POST",
        "/api/v1/device",
        json!({"username": "ann", "name": "laptop", "pubkey": key}),
    )
    .await;
    let id = d["id"].as_i64().unwrap().to_string();
    let list = run(&["device", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(run(&["device", "list", "--user", "ann", "--json"]).json()[0]["pubkey"], key.as_str());
    admin(&["device", "list", "--user", "nobody"]).fails_naming("nobody", &[]);
    let conf = run(&["device", "config", &id]).stdout;
    assert!(conf.starts_with("[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = 10.21.0."), "{conf}");
    assert!(conf.contains("Endpoint = vpn.example.com:51821") && conf.contains("DNS = 10.20.0.1"), "{conf}");
    assert_eq!(run(&["device", "config", &id, "--location", "office", "--json"]).json()[0]["network_name"], "office");
    admin(&["device", "config", &id, "--location", "nowhere"]).fails_naming("--location", &[]);
    admin(&["device", "config", "424242"]).fails_naming("not found", &[]);
    run(&["device", "delete", &id]);
    assert!(run(&["device", "list", "--json"]).json().as_array().unwrap().is_empty());

    // Disable, enable, delete.
    run(&["user", "disable", "ann"]);
    admin(&["user", "start-enrollment", "ann"]).fails_naming("disabled", &[]);
    run(&["user", "enable", "ann"]);
    run(&["user", "delete", "ann"]);
    assert!(!run(&["user", "list", "--json"]).json().as_array().unwrap().iter().any(|u| u["username"] == "ann"));
    admin(&["user", "disable", "ann"]).fails_naming("\"ann\" not found", &[]);
    admin(&["user", "delete", "admin"]).fails_naming("active admin", &[]);

    // Audit: newest first, limited, filterable.
    let a = run(&["audit", "--limit", "3", "--json"]).json();
    assert_eq!(a.as_array().unwrap().len(), 3);
    assert_eq!(a[0]["action"], "user.deleted");
    let a = run(&["audit", "--action", "mail.test_sent", "--json"]).json();
    assert_eq!(a.as_array().unwrap().len(), 1, "a refused address sends and audits nothing: {a}");
    assert!(run(&["audit"]).stdout.contains("location.updated"));

    // Database flags after the subcommand work as well as the environment.
    let mut c = Command::new(BIN);
    c.args(["admin", "location", "list", "--json", "--data-dir", data.to_str().unwrap()]);
    if let Some(u) = db_url {
        c.args(["--database-url", u]);
    }
    assert_eq!(out(c).ok("flags").json()[0]["name"], "office");

    let log = server.stop();
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a secret reached the server log");
        for e in &quiet {
            assert!(!e.contains(s.as_str()), "a secret reached the CLI's stderr: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_admin_work_on_sqlite() {
    daily_admin_work(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_admin_work_on_postgres() {
    let url = onramp_testkit::pg::fresh_database_url().await;
    daily_admin_work(Some(&url)).await;
}

fn help(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert!(o.status.success(), "{args:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The subcommands a help text lists, each of which must have a description.
fn subcommands(text: &str) -> Vec<String> {
    let Some(start) = text.find("Commands:\n") else { return vec![] };
    text[start + 10..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            assert!(parts.next().is_some(), "subcommand {name} has no description:\n{text}");
            name
        })
        .filter(|n| n != "help")
        .collect()
}

/// Every admin subcommand says what it does, and each command shows only its own flags.
#[test]
fn help_describes_every_command_and_only_its_flags() {
    let mut todo = vec![vec!["admin".to_owned()]];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        assert!(
            text.contains("--data-dir") && text.contains("--database-url") && text.contains("--config"),
            "{args:?}:\n{text}"
        );
        for flag in ["--http-addr", "--edge-addr", "--link-ca-file"] {
            assert!(!text.contains(flag), "{args:?} shows {flag}:\n{text}");
        }
        // Commands that print data offer --json.
        if ["list", "get", "audit", "config", "test"].contains(args.last().unwrap()) {
            assert!(text.contains("--json"), "{args:?} has no --json:\n{text}");
        }
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        seen += 1;
    }
    assert!(seen > 30, "walked only {seen} admin commands");
    let edge = help(&["edge"]);
    for flag in
        ["--link-addr", "--link-ca-file", "--link-cert-file", "--link-core-name", "--edge-addr", "ONRAMP_LINK_CA_FILE"]
    {
        assert!(edge.contains(flag), "edge help lacks {flag}:\n{edge}");
    }
    for flag in ["--data-dir", "--database-url", "--http-addr"] {
        assert!(!edge.contains(flag), "edge help shows {flag}:\n{edge}");
    }
    let serve = help(&["serve"]);
    for flag in ["--http-addr", "--edge-addr", "--public-url", "--data-dir", "--database-url"] {
        assert!(serve.contains(flag), "serve help lacks {flag}:\n{serve}");
    }
    let gateway = help(&["gateway"]);
    for flag in ["--data-dir", "--database-url", "--http-addr", "--config"] {
        assert!(!gateway.contains(&format!("{flag} ")), "gateway help shows {flag}:\n{gateway}");
    }
    assert!(!help(&["healthcheck"]).contains("--database-url"));
    let issue = help(&["admin", "user", "start-enrollment"]);
    assert!(issue.contains("--print") && issue.contains("--provisioning-file") && issue.contains("--email"), "{issue}");
}
