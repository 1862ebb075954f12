//! The real Windows `onramp-client.exe` under wine: its tunnel service on a named pipe and the
//! commands that talk to it. A real Onramp server (in this process) enrolls a client store
//! with the Linux binary; the Windows binary then uses that store (SQLite files are the same
//! on both). Checked: without the service, `status` and `connect` say how to start it;
//! `service --console` listens on its pipe and answers `status --json` (no tunnel) and
//! `disconnect`; `connect` validates the location and, without WireGuard-NT's wireguard.dll
//! (wine has no WireGuard-NT driver), fails saying what to install and where. Then the same
//! exe as a service of wine's Service Control Manager (`sc create`, `sc start`, `sc stop`):
//! Running, answering, Stopped with exit code 0.
//!
//! Run by `scripts/test-windows`, which builds the exe and a wine 8 shim (bcryptprimitives.dll,
//! whose ProcessPrng Rust's standard library needs and wine 8 lacks) and passes them in
//! ONRAMP_WINDOWS_EXE and ONRAMP_WINE_SHIM. Ignored in the plain test run, which does not
//! build for Windows; without wine it FAILS naming the install command.

#![cfg(target_os = "linux")]

use onramp_testkit::app::{Backend, TestApp};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn all(&self) -> String {
        format!("exit {}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs a command to its exit. Its output goes through files, not pipes: the wine processes
/// a first command starts (wineserver, services.exe) would hold pipes open after it exits.
async fn output(mut c: tokio::process::Command) -> Ran {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    c.stdin(Stdio::null()).stdout(out.reopen().unwrap()).stderr(err.reopen().unwrap()).kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(120), c.status())
        .await
        .expect("a command took more than 120 s")
        .expect("cannot run the command");
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(out.path()).unwrap(),
        stderr: std::fs::read_to_string(err.path()).unwrap(),
    }
}

/// Paths as the Windows program sees them: wine maps `/` to drive Z:.
fn z(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

struct Wine {
    prefix: PathBuf,
    exe: PathBuf,
    data: PathBuf,
    pipe: String,
}

impl Wine {
    fn cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("wine");
        c.arg(&self.exe)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            // No display: these are console programs, and wine must not try to open windows.
            .env_remove("DISPLAY")
            .env("ONRAMP_CLIENT_DATA_DIR", z(&self.data))
            .env("ONRAMP_CLIENT_SOCKET", &self.pipe)
            .env_remove("ONRAMP_CLIENT_LOG")
            .env_remove("ONRAMP_TOKEN");
        c
    }

    /// A wine tool (`wine sc ...`, `wineserver`) in this prefix.
    fn tool(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(program);
        c.args(args).env("WINEPREFIX", &self.prefix).env("WINEDEBUG", "-all").env_remove("DISPLAY");
        c
    }

    async fn run(&self, args: &[&str]) -> Ran {
        output(self.cmd(args)).await
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        // Ends this prefix's wineserver and whatever still runs in it (the service).
        let _ = std::process::Command::new("wineserver").arg("-k").env("WINEPREFIX", &self.prefix).status();
    }
}

fn env_path(name: &str) -> PathBuf {
    let p = std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{name} is not set: run this test through scripts/test-windows"));
    assert!(p.is_file(), "{name}={}: no such file (scripts/test-windows builds it)", p.display());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the Windows build under wine: scripts/test-windows"]
async fn windows_service_under_wine() {
    let version = std::process::Command::new("wine").arg("--version").output();
    match version {
        Ok(o) if o.status.success() => {}
        _ => panic!("wine is missing: apt-get install -y wine64"),
    }
    let exe = env_path("ONRAMP_WINDOWS_EXE");
    let shim = env_path("ONRAMP_WINE_SHIM");
    let dir = tempfile::tempdir().unwrap();
    // The program's folder, as %ProgramFiles%\Onramp: the exe, wine's missing ProcessPrng,
    // and no resources-windows\binaries\wireguard-amd64.dll.
    let install = dir.path().join("Onramp");
    std::fs::create_dir_all(&install).unwrap();
    std::fs::copy(&exe, install.join("onramp-client.exe")).unwrap();
    std::fs::copy(&shim, install.join("bcryptprimitives.dll")).unwrap();
    let wine = Wine {
        prefix: dir.path().join("prefix"),
        exe: install.join("onramp-client.exe"),
        data: dir.path().join("data"),
        pipe: format!("onramp-test-{}", std::process::id()),
    };

    // A server with two locations: office has a gateway key, lab not yet.
    let app = TestApp::builder(Backend::Sqlite).spawn().await;
    app.create_user("ann").await;
    let gateway = onramp_client::keys::generate().public;
    for (name, address, key) in [("office", "10.71.0.1/24", gateway.as_str()), ("lab", "10.72.0.1/24", "")] {
        let (s, loc) = app
            .call(
                "POST",
                "/api/v1/location",
                Some(json!({"name": name, "address": address, "endpoint": "192.0.2.1", "port": 51820,
                             "allowed_ips": ["10.60.0.0/16"], "keepalive_interval": 25})),
            )
            .await;
        assert!(s.is_success(), "{loc}");
        if !key.is_empty() {
            let id = loc["id"].as_i64().unwrap();
            let (s, v) = app
                .call(
                    "PUT",
                    &format!("/api/v1/location/{id}"),
                    Some(json!({"name": name, "address": address, "endpoint": "192.0.2.1", "port": 51820,
                                 "allowed_ips": ["10.60.0.0/16"], "pubkey": key, "keepalive_interval": 25})),
                )
                .await;
            assert!(s.is_success(), "{v}");
        }
    }
    let (_, t) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let token = dir.path().join("token");
    std::fs::write(&token, t["enrollment_token"].as_str().unwrap()).unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "Str0ng!Pass\n").unwrap();
    let mut enroll = tokio::process::Command::new(BIN);
    enroll
        .args(["add-instance", "--url", &format!("{}/", app.edge_url), "--token-file"])
        .arg(&token)
        .arg("--password-file")
        .arg(&pw)
        .args(["--device-name", "pc"])
        .env("ONRAMP_CLIENT_DATA_DIR", &wine.data)
        .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
        .env_remove("ONRAMP_CLIENT_SOCKET");
    let r = output(enroll).await;
    assert_eq!(r.code, 0, "enrollment (Linux binary): {}", r.all());

    // No service yet: said, with how to start it on Windows.
    let r = wine.run(&["status"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("office"), "{}", r.all());
    assert!(
        r.stdout.contains("Tunnels: the Onramp client service is not running; start it: sc start onramp-client"),
        "{}",
        r.all()
    );
    let r = wine.run(&["connect", "office"]).await;
    assert_eq!(r.code, 6, "{}", r.all());
    assert!(r.stderr.contains("not running; start it: sc start onramp-client"), "{}", r.all());
    // No gateway key: said before any service is asked.
    let r = wine.run(&["connect", "lab"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("has no gateway yet"), "{}", r.all());

    // The service, in its console mode, on this test's own pipe.
    let log = dir.path().join("service.log");
    let mut svc = wine.cmd(&["service", "--console"]);
    svc.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).kill_on_drop(true);
    let mut service = svc.spawn().expect("cannot start the service under wine");
    let started = Instant::now();
    let status = loop {
        let r = wine.run(&["status", "--json"]).await;
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
        if v["service"] == "running" {
            break v;
        }
        if let Ok(Some(exit)) = service.try_wait() {
            panic!("the service ended ({exit}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the service did not answer in 90 s: {v}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let locations = status["instances"][0]["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 2, "{status}");
    for l in locations {
        assert_eq!((l["tunnel_up"].as_bool(), l["connected"].as_bool()), (Some(false), Some(false)), "{status}");
        assert!(l["interface"].is_null(), "{status}");
    }
    assert!(status["service_error"].is_null(), "{status}");
    let svc_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(svc_log.contains(&format!(r"\\.\pipe\{}", wine.pipe)), "{svc_log}");

    // A valid location, and no WireGuard-NT: the service says what to install, and where.
    let r = wine.run(&["connect", "office"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("WireGuard-NT's wireguard.dll is missing"), "{}", r.all());
    let expected = format!(r"{}\resources-windows\binaries\wireguard-amd64.dll", z(&install));
    assert!(r.stderr.to_lowercase().contains(&expected.to_lowercase()), "{expected}: {}", r.all());
    assert!(r.stderr.contains("download WireGuard-NT"), "{}", r.all());

    let r = wine.run(&["disconnect"]).await;
    assert_eq!((r.code, r.stdout.trim()), (0, "no location was connected"), "{}", r.all());
    let r = wine.run(&["status", "--json"]).await;
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    assert_eq!(v["service"], "running", "the service survived the failed connect: {v}");

    // Gone again: every command says so.
    service.kill().await.unwrap();
    let _ = service.wait().await;
    let started = Instant::now();
    loop {
        let r = wine.run(&["status", "--json"]).await;
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
        if v["service"] == "not_running" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the pipe outlived its service: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Under wine's Service Control Manager, as the MSI installs it: Running once the pipe
    // listens (working from its own folder, where it looks for wireguard.dll), Stopped with
    // exit code 0 after `sc stop`. Wine runs services only while its server does: keep it.
    let _ = output(wine.tool("wineserver", &["-k"])).await;
    let _ = output(wine.tool("wineserver", &["-w"])).await;
    let r = output(wine.tool("wineserver", &["-p"])).await;
    assert_eq!(r.code, 0, "wineserver -p: {}", r.all());
    let bin_path = format!("{} --socket {} service", z(&wine.exe), wine.pipe);
    let r = output(wine.tool("wine", &["sc", "create", "onramp-client", "binPath=", &bin_path])).await;
    assert_eq!(r.code, 0, "sc create: {}", r.all());
    let r = output(wine.tool("wine", &["sc", "start", "onramp-client"])).await;
    assert_eq!(r.code, 0, "sc start: {}", r.all());
    let started = Instant::now();
    loop {
        let r = wine.run(&["status", "--json"]).await;
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
        if v["service"] == "running" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the SCM's service did not answer in 60 s: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = output(wine.tool("wine", &["sc", "query", "onramp-client"])).await;
    assert!(r.stdout.contains("RUNNING"), "{}", r.all());
    let r = wine.run(&["connect", "office"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.to_lowercase().contains(&expected.to_lowercase()), "{expected}: {}", r.all());
    let r = output(wine.tool("wine", &["sc", "stop", "onramp-client"])).await;
    assert_eq!(r.code, 0, "sc stop: {}", r.all());
    let started = Instant::now();
    loop {
        let r = output(wine.tool("wine", &["sc", "query", "onramp-client"])).await;
        if r.stdout.contains("STOPPED") {
            assert!(r.stdout.contains("WIN32_EXIT_CODE    : 0 "), "a clean stop: {}", r.all());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not stopped in 60 s: {}", r.all());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = wine.run(&["status", "--json"]).await;
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    assert_eq!(v["service"], "not_running", "{v}");
    // Its standard error went nowhere: its log is beside the exe.
    let svc_log = std::fs::read_to_string(install.join("service.log")).unwrap_or_default();
    assert!(svc_log.contains(&format!(r"\\.\pipe\{}", wine.pipe)), "{svc_log}");
    assert!(svc_log.contains("connect failed: WireGuard-NT's wireguard.dll is missing"), "{svc_log}");
    assert!(svc_log.contains("stopping: taking every tunnel down"), "{svc_log}");
    assert!(!svc_log.contains('\u{1b}'), "no colour codes in the file: {svc_log}");
    app.stop().await;
}
