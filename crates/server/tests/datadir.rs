//! Where the data is and what the logs say: only `serve` (and `migrate --create`) make a
//! database; a bad setting stops `serve` before it writes anything; the log of a run reads
//! as text (no colour codes, no Debug dumps), warns about mistyped variables, and does not
//! nag about a public URL that is already stored.

mod procs;
use procs::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn admin_commands_refuse_a_missing_database_and_create_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["admin", "api-token", "list"])
        .current_dir(cwd.path())
        .env_remove("ONRAMP_DATA_DIR")
        .env_remove("ONRAMP_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "answered from a database that does not exist");
    let err = stderr(&out);
    // The absolute path it looked at, and how to point elsewhere.
    let looked = cwd.path().canonicalize().unwrap().join("onramp-data").join("onramp.db");
    assert!(err.contains(&looked.display().to_string()), "{err}");
    for how in ["--data-dir", "ONRAMP_DATA_DIR", "ONRAMP_DATABASE_URL", "--config", "onramp serve"] {
        assert!(err.contains(how), "{how} missing: {err}");
    }
    assert_eq!(entries(cwd.path()), Vec::<String>::new());

    // The same through the environment, and for `migrate` without --create.
    let elsewhere = cwd.path().join("srv").join("onramp");
    for args in [&["admin", "api-token", "list"][..], &["migrate"][..]] {
        let out =
            Command::new(BIN).args(args).current_dir(cwd.path()).env("ONRAMP_DATA_DIR", &elsewhere).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(&elsewhere.join("onramp.db").display().to_string()), "{}", stderr(&out));
    }
    assert_eq!(entries(cwd.path()), Vec::<String>::new());

    // `migrate --create` makes it; then admin commands work on it.
    let data = cwd.path().join("data");
    let ok = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("ONRAMP_DATA_DIR", &data).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    ok(&["migrate", "--create"]);
    ok(&["admin", "api-token", "list"]);
}

/// Runs `serve` with `env` in a fresh directory; it must fail, and leave no data behind.
fn serve_fails(env: &[(&str, String)], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .current_dir(tmp.path())
        .env("ONRAMP_DATA_DIR", &data)
        .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("ONRAMP_GATEWAY_ADDR", "127.0.0.1:0")
        .env("ONRAMP_PUBLIC_URL", "https://edge.example.com")
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    // A serve that does not fail would run forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!status.success(), "{env:?}");
    assert!(err.contains(needle), "{env:?}: expected {needle:?} in {err}");
    assert!(!data.exists(), "{env:?} left {}: {:?}", data.display(), entries(&data));
    assert_eq!(entries(tmp.path()), Vec::<String>::new(), "{env:?}");
}

#[test]
fn serve_checks_every_setting_before_it_creates_the_database() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let port = |name: &'static str| vec![(name, busy.clone())];
    serve_fails(&port("ONRAMP_HTTP_ADDR"), "ONRAMP_HTTP_ADDR");
    serve_fails(&port("ONRAMP_EDGE_ADDR"), "ONRAMP_EDGE_ADDR");
    serve_fails(&port("ONRAMP_GATEWAY_ADDR"), "ONRAMP_GATEWAY_ADDR");
    serve_fails(&[("ONRAMP_PUBLIC_URL", "edge.example.com".into())], "add https://");
    serve_fails(&[("ONRAMP_EDGE_URLS", "edge.internal:50051".into())], "add https://");
    let missing = "/nonexistent/onramp/edge.pem".to_owned();
    serve_fails(
        &[("ONRAMP_EDGE_TLS_CERT_FILE", missing.clone()), ("ONRAMP_EDGE_TLS_KEY_FILE", missing.clone())],
        "edge_tls_cert_file",
    );
    serve_fails(
        &[("ONRAMP_GATEWAY_TLS_CERT_FILE", missing.clone()), ("ONRAMP_GATEWAY_TLS_KEY_FILE", missing)],
        "gateway_tls_cert_file",
    );
    serve_fails(&[("ONRAMP_SECRET_KEY_FILE", "/nonexistent/onramp/secret.key".into())], "secret_key_file");
}

struct Serve {
    proc: Proc,
    log: std::path::PathBuf,
}

fn serve(data: &Path, log: &Path, env: &[(&str, &str)]) -> Serve {
    let http = free_port();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("ONRAMP_DATA_DIR", data)
        .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("ONRAMP_EDGE_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("ONRAMP_GATEWAY_ADDR", "127.0.0.1:0")
        .env_remove("ONRAMP_PUBLIC_URL")
        .env_remove("ONRAMP_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc(cmd.spawn().unwrap());
    for _ in 0..200 {
        let ok = Command::new(BIN)
            .arg("healthcheck")
            .env("ONRAMP_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .output()
            .unwrap()
            .status
            .success();
        if ok {
            return Serve { proc, log: log.to_owned() };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("serve did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
}

impl Serve {
    fn stop(self) -> String {
        self.proc.stop();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn assert_readable(log: &str) {
    assert!(!log.contains('\u{1b}'), "ANSI escape in a log that is not a terminal:\n{log}");
    for dump in ["MetadataMap", "Some(", "None,"] {
        assert!(!log.contains(dump), "Debug dump {dump:?} in the log:\n{log}");
    }
}

#[test]
fn the_log_reads_as_text_and_warns_only_about_real_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // First start: the public URL is configured; a mistyped variable is pointed out.
    let log = serve(
        &data,
        &tmp.path().join("1.log"),
        &[("ONRAMP_PUBLIC_URL", "https://edge.example.com"), ("ONRAMP_MAIL_POLL_INTERVAL_SEC", "5")],
    )
    .stop();
    assert_readable(&log);
    let abs = data.join("onramp.db");
    assert!(log.contains(&format!("SQLite database {}", abs.display())), "{log}");
    assert!(
        log.contains("ONRAMP_MAIL_POLL_INTERVAL_SEC is ignored; did you mean ONRAMP_MAIL_POLL_INTERVAL_SECS?"),
        "{log}"
    );

    // A restart without the variable uses the stored URL, without a warning.
    let log = serve(&data, &tmp.path().join("2.log"), &[]).stop();
    assert_readable(&log);
    let warns: Vec<_> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(!warns.iter().any(|l| l.to_lowercase().contains("public")), "{warns:#?}");
    assert!(log.contains("https://edge.example.com/"), "{log}");

    // A different configured URL: warned about, saying which one wins.
    let log = serve(&data, &tmp.path().join("3.log"), &[("ONRAMP_PUBLIC_URL", "https://vpn.example.org")]).stop();
    assert_readable(&log);
    let warn = log.lines().find(|l| l.contains("WARN") && l.contains("differs")).unwrap_or_else(|| panic!("{log}"));
    assert!(warn.contains("https://vpn.example.org/") && warn.contains("https://edge.example.com/"), "{warn}");
    assert!(warn.contains("configured one wins"), "{warn}");
}

#[test]
fn toml_errors_name_the_key_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("onramp.toml");
    std::fs::write(&cfg, "http_addr = \"localhost\"\npublic_url = \"https://edge.example.com\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "migrate"])
        .env_remove("ONRAMP_HTTP_ADDR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`http_addr`") && err.contains(&cfg.display().to_string()), "{err}");
    assert!(!err.contains("ONRAMP_HTTP_ADDR"), "names the variable, not the key: {err}");
}

#[test]
fn link_certs_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pki");
    link_certs(&out, "onramp-core");
    let before = std::fs::read(out.join("ca.key")).unwrap();
    let again = Command::new(BIN)
        .args(["admin", "link-certs", "--out"])
        .arg(&out)
        .args(["--edge-name", "edge.example.com"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    assert_eq!(std::fs::read(out.join("ca.key")).unwrap(), before);
    let bad = Command::new(BIN)
        .args(["admin", "link-certs", "--out"])
        .arg(tmp.path().join("x"))
        .args(["--edge-name", "https://edge.example.com"])
        .output()
        .unwrap();
    assert!(!bad.status.success() && stderr(&bad).contains("not a host name"), "{}", stderr(&bad));
}
