//! The `onramp-client` binary end to end against a real Onramp server (core + edge over
//! HTTP, SQLite): first-start provisioning, desktop-configuration tokens, bad files,
//! add/update instance, sync, crash recovery, token errors. Tokens never reach the output.

use onramp_testkit::app::{Backend, TestApp};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_onramp-client");
const PASSWORD: &str = "Str0ng!Pass";

struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new() -> Client {
        Client { dir: tempfile::tempdir().unwrap() }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("ONRAMP_CLIENT_DATA_DIR", self.data())
            .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
            .env("ONRAMP_CLIENT_RETRIES", "1")
            .env("ONRAMP_CLIENT_SYSTEM_DIR", self.dir.path().join("etc-onramp"))
            .env_remove("ONRAMP_TOKEN")
            .stdin(Stdio::null());
        c
    }

    /// Runs the client off the async threads (the server runs in this process).
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
        Run::from(out)
    }

    fn password_file(&self) -> String {
        let p = self.dir.path().join("pw");
        std::fs::write(&p, format!("{PASSWORD}\n")).unwrap();
        p.display().to_string()
    }

    fn write_provisioning(&self, bytes: &[u8]) -> PathBuf {
        std::fs::create_dir_all(self.data()).unwrap();
        let p = self.data().join("provisioning.json");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    async fn store(&self) -> onramp_client::Store {
        onramp_client::Store::open(&self.data()).await.unwrap()
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    fn without(self, secret: &str) -> Run {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "secret leaked: {}{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

async fn setup() -> TestApp {
    let app = TestApp::builder(Backend::Sqlite).manual_clock().spawn().await;
    let (s, v) = app
        .call(
            "PUT",
            "/api/v1/user/admin",
            Some(json!({"first_name": "Ada", "last_name": "Admin", "phone": "+1 555 0100"})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    app.create_user("ann").await;
    app.create_location("office", "10.1.0.1/24").await;
    app.create_location("lab", "10.2.0.1/24").await;
    app
}

async fn token(app: &TestApp, user: &str, kind: &str) -> String {
    let (s, v) = app.call("POST", &format!("/api/v1/user/{user}/{kind}"), Some(json!({}))).await;
    assert!(s.is_success(), "{v}");
    v["enrollment_token"].as_str().unwrap().to_owned()
}

fn provisioning(app: &TestApp, token: &str) -> Vec<u8> {
    json!({"enrollment_token": token, "enrollment_url": format!("{}/", app.edge_url)}).to_string().into_bytes()
}

async fn server_devices(app: &TestApp, user: &str) -> Vec<Value> {
    let (_, v) = app.call("GET", &format!("/api/v1/device?username={user}"), None).await;
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_file_to_enrolled_instance() {
    let app = setup().await;
    let t = token(&app, "ann", "start_enrollment").await;
    let c = Client::new();
    // PowerShell 5.1 writes a UTF-8 BOM; it must be accepted.
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend(provisioning(&app, &t));
    let file = c.write_provisioning(&bytes);
    let pw = c.password_file();
    // Verbose logs too must not carry the token.
    let r = c
        .run(&["start", "--password-file", &pw, "--device-name", "laptop"], &[("ONRAMP_CLIENT_LOG", "trace")])
        .await
        .ok()
        .without(&t);
    assert!(r.stdout.contains("Ada Admin") && r.stdout.contains("+1 555 0100"), "admin contact shown: {}", r.stdout);
    assert!(r.stdout.contains("office") && r.stdout.contains("lab"), "{}", r.stdout);
    assert!(!file.exists(), "the used provisioning file is deleted");

    // Stored: both locations, and the key pair whose public half the server registered.
    let store = c.store().await;
    let inst = store.instances().await.unwrap();
    assert_eq!(inst.len(), 1);
    assert_eq!(inst[0].username, "ann");
    assert!(inst[0].polling_token.is_some());
    let locs = store.locations(&inst[0].id).await.unwrap();
    assert_eq!(locs.iter().map(|l| l.assigned_ip.as_str()).collect::<Vec<_>>(), ["10.2.0.2", "10.1.0.2"]);
    let private = store.private_key(&inst[0].pubkey).await.unwrap().unwrap();
    assert_eq!(onramp_client::keys::public_of(&private).unwrap(), inst[0].pubkey);
    let devices = server_devices(&app, "ann").await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["pubkey"], inst[0].pubkey.as_str());
    assert_eq!(devices[0]["name"], "laptop");
    store.close().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&c.data()), 0o700);
        assert_eq!(mode(&c.data().join("client.db")), 0o600);
    }
    let (_, user) = app.call("GET", "/api/v1/user/ann", None).await;
    assert_eq!(user["enrolled"], true, "{user}");

    // Every later start just shows what is there.
    let r = c.run(&["start"], &[]).await.ok();
    assert!(r.stdout.contains("Instance") && r.stdout.contains("10.1.0.2"), "{}", r.stdout);
    // A file still holding the spent token (the client stopped before deleting it) goes;
    // a file with another token stays, with a note.
    let file = c.write_provisioning(&provisioning(&app, &t));
    let r = c.run(&["start"], &[]).await.ok().without(&t);
    assert!(r.stdout.contains("Removed") && !file.exists(), "{}", r.stdout);
    let other = c.write_provisioning(&provisioning(&app, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let r = c.run(&["start"], &[]).await.ok();
    assert!(r.stdout.contains("was not used") && other.exists(), "{}", r.stdout);
    std::fs::remove_file(&other).unwrap();
    let r = c.run(&["locations", "--json"], &[]).await.ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v[0]["location"]["config"].as_str().unwrap().contains("[Peer]"));
    let r = c.run(&["status", "--json"], &[]).await.ok();
    assert!(!r.stdout.contains(inst[0].polling_token.as_deref().unwrap()), "polling token kept out of output");
    let r = c.run(&["sync"], &[("ONRAMP_CLIENT_LOG", "trace")]).await.ok();
    r.without(inst[0].polling_token.as_deref().unwrap());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_user_desktop_token_needs_no_password() {
    let app = setup().await;
    let first = Client::new();
    let t = token(&app, "ann", "start_enrollment").await;
    first.write_provisioning(&provisioning(&app, &t));
    let pw = first.password_file();
    first.run(&["start", "--password-file", &pw, "--device-name", "one"], &[]).await.ok();

    // A second machine: no terminal, no password file; must not be asked.
    let d = token(&app, "ann", "start_desktop").await;
    let second = Client::new();
    second.write_provisioning(&provisioning(&app, &d));
    let r = second.run(&["start", "--device-name", "two"], &[]).await.ok().without(&d);
    assert!(r.stdout.contains("Enrolled"), "{}", r.stdout);
    assert_eq!(server_devices(&app, "ann").await.len(), 2);

    // A new user without a terminal or password file gets a clear refusal.
    app.create_user("bob").await;
    let b = token(&app, "bob", "start_enrollment").await;
    let third = Client::new();
    let file = third.write_provisioning(&provisioning(&app, &b));
    let r = third.run(&["start"], &[]).await.without(&b);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--password-file"), "{}", r.stderr);
    assert!(file.exists());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_provisioning_files_are_named_and_kept() {
    let token = "6B8fg2wiyczb1uDCDwUyMsnYz6qQBVu0";
    let good_url = "https://edge.example.com/";
    let utf16: Vec<u8> = {
        // UTF-16 without a byte order mark cannot be told from garbage: refused as not UTF-8.
        let mut b = vec![];
        for u in format!(r#"{{"enrollment_token":"{token}","enrollment_url":"{good_url}"}}"#).encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        b
    };
    let corpus: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "the file is empty"),
        ("bom only", vec![0xEF, 0xBB, 0xBF], "the file is empty"),
        ("utf-16 without bom", utf16, "UTF-16 without a byte order mark"),
        ("not json", b"enrollment_token=abc".to_vec(), "not valid JSON"),
        ("array", b"[]".to_vec(), "must be a JSON object"),
        (
            "missing token",
            format!(r#"{{"enrollment_url":"{good_url}"}}"#).into_bytes(),
            "\"enrollment_token\" is missing",
        ),
        ("missing url", format!(r#"{{"enrollment_token":"{token}"}}"#).into_bytes(), "\"enrollment_url\" is missing"),
        (
            "camelCase",
            format!(r#"{{"enrollmentToken":"{token}","enrollmentUrl":"{good_url}"}}"#).into_bytes(),
            "\"enrollment_token\" is missing",
        ),
        (
            "wrong type",
            format!(r#"{{"enrollment_token":12,"enrollment_url":"{good_url}"}}"#).into_bytes(),
            "must be a string, not a number",
        ),
        (
            "short token",
            format!(r#"{{"enrollment_token":"abc","enrollment_url":"{good_url}"}}"#).into_bytes(),
            "32 letters and digits",
        ),
        (
            "relative url",
            format!(r#"{{"enrollment_token":"{token}","enrollment_url":"edge.example.com"}}"#).into_bytes(),
            "not an absolute URL",
        ),
        (
            "http url",
            format!(r#"{{"enrollment_token":"{token}","enrollment_url":"http://edge.example.com/"}}"#).into_bytes(),
            "must use https://",
        ),
        ("10 MB", vec![b' '; 10 * 1024 * 1024], "bytes; a provisioning file"),
    ];
    for (name, bytes, want) in corpus {
        let c = Client::new();
        let file = c.write_provisioning(&bytes);
        let r = c.run(&["start"], &[("ONRAMP_CLIENT_ALLOW_HTTP", "0")]).await.without(token);
        assert_eq!(r.code, 3, "{name}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(&file.display().to_string()), "{name}: names the file: {}", r.stderr);
        assert!(r.stderr.contains(want), "{name}: wanted {want:?} in {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{name}");
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{name}: file unchanged");
    }

    // A directory in the file's place.
    let c = Client::new();
    std::fs::create_dir_all(c.data().join("provisioning.json")).unwrap();
    let r = c.run(&["start"], &[]).await;
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("is a directory"), "{}", r.stderr);

    // Unreadable: run the client as an unprivileged user (root reads anything).
    let c = Client::new();
    let file =
        c.write_provisioning(format!(r#"{{"enrollment_token":"{token}","enrollment_url":"{good_url}"}}"#).as_bytes());
    let r = unreadable_run(&c, &file).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cannot be read") && r.stderr.contains("ermission denied"), "{}", r.stderr);

    // No file: how to add an instance.
    let c = Client::new();
    let r = c.run(&["start"], &[]).await.ok();
    assert!(r.stdout.contains("add-instance"), "{}", r.stdout);
}

/// Runs `start` so that it cannot read `file`: as a non-root user when we are root.
async fn unreadable_run(c: &Client, file: &Path) -> Run {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !is_root {
        return c.run(&["start"], &[]).await;
    }
    // nobody must be able to use the data directory but not the file.
    let status = Command::new("chown").args(["-R", "nobody", c.dir.path().to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("chown").args(["root", file.to_str().unwrap()]).status().unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", BIN, "start"])
        .env("ONRAMP_CLIENT_DATA_DIR", c.data())
        .stdin(Stdio::null());
    let out =
        tokio::task::spawn_blocking(move || cmd.output().expect("setpriv (util-linux) runs the client as nobody"))
            .await
            .unwrap();
    Run::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_update_sync_and_removal() {
    let app = setup().await;
    let c = Client::new();
    let url = format!("{}/", app.edge_url);
    let t = token(&app, "ann", "start_enrollment").await;
    let tf = c.dir.path().join("token");
    std::fs::write(&tf, &t).unwrap();
    let pw = c.password_file();
    c.run(
        &[
            "add-instance",
            "--url",
            &url,
            "--token-file",
            tf.to_str().unwrap(),
            "--password-file",
            &pw,
            "--device-name",
            "pc",
        ],
        &[],
    )
    .await
    .ok()
    .without(&t);

    // The admin adds a location and removes another: one sync applies both.
    app.create_location("branch", "10.3.0.1/24").await;
    let (_, locs) = app.call("GET", "/api/v1/location", None).await;
    let lab = locs.as_array().unwrap().iter().find(|l| l["name"] == "lab").unwrap()["id"].clone();
    let (s, _) = app.call("DELETE", &format!("/api/v1/location/{lab}"), None).await;
    assert!(s.is_success());
    let r = c.run(&["sync", "--json"], &[]).await.ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["state"], "updated", "{v}");
    assert_eq!(v[0]["detail"]["added"], json!(["branch"]));
    assert_eq!(v[0]["detail"]["removed"], json!(["lab"]));
    let r = c.run(&["locations"], &[]).await.ok();
    assert!(r.stdout.contains("branch") && !r.stdout.contains("lab:") && !r.stdout.contains(" lab "), "{}", r.stdout);

    // A new token from the admin updates the instance; the token comes on standard input.
    let d = token(&app, "ann", "start_desktop").await;
    let mut cmd = c.cmd(&["update-instance", "--url", &url]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let d2 = d.clone();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("{d2}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let r = Run::from(out).ok().without(&d);
    assert!(r.stdout.contains("Updated"), "{}", r.stdout);
    assert_eq!(server_devices(&app, "ann").await.len(), 1, "no second device");

    // A refused token names the administrator this instance came from.
    let bogus = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = c.run(&["update-instance", "--url", &url], &[("ONRAMP_TOKEN", bogus)]).await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("not known")
            && r.stderr.contains("(administrator: Ada Admin <admin@example.com>, +1 555 0100)"),
        "{}",
        r.stderr
    );

    // The daemon keeps the configuration current by itself.
    let mut daemon = c.cmd(&["daemon", "--interval", "1"]);
    daemon.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = daemon.spawn().unwrap();
    app.create_location("annex", "10.4.0.1/24").await;
    let mut seen = false;
    for _ in 0..100 {
        let store = c.store().await;
        let id = store.instances().await.unwrap()[0].id.clone();
        seen = store.locations(&id).await.unwrap().iter().any(|l| l.network_name == "annex");
        store.close().await;
        if seen {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "the daemon did not pick up the new location within 20 s");

    // A token of another instance is refused.
    let other = setup().await;
    let o = token(&other, "ann", "start_enrollment").await;
    let r = c
        .run(&["update-instance", "--url", &format!("{}/", other.edge_url)], &[("ONRAMP_TOKEN", &o)])
        .await
        .without(&o);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not enrolled in"), "{}", r.stderr);

    // The admin deletes the device: the client says so, drops its locations (their
    // tunnels would no longer be accepted) and exits with the documented code 8.
    let dev = server_devices(&app, "ann").await[0]["id"].clone();
    app.call("DELETE", &format!("/api/v1/device/{dev}"), None).await;
    let r = c.run(&["sync"], &[]).await;
    assert_eq!(r.code, 8, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("this device was removed by the administrator"), "{}", r.stdout);
    assert!(!r.stdout.contains("invalid token") && !r.stderr.contains("invalid token"), "{}{}", r.stdout, r.stderr);
    let r = c.run(&["locations"], &[]).await.ok();
    assert!(!r.stdout.contains("office") && !r.stdout.contains("branch"), "locations removed: {}", r.stdout);
    let r = c.run(&["status"], &[]).await.ok();
    assert!(r.stdout.contains("this device was removed by the administrator"), "{}", r.stdout);
    let r = c.run(&["sync", "--json"], &[]).await;
    assert_eq!(r.code, 8, "still reported on the next run: {}", r.stdout);
    assert!(r.stdout.contains("\"device_removed\""), "{}", r.stdout);

    let r = c.run(&["remove-instance", "nope"], &[]).await;
    assert_eq!(r.code, 1);
    let store = c.store().await;
    let id = store.instances().await.unwrap()[0].id.clone();
    store.close().await;
    c.run(&["remove-instance", &id], &[]).await.ok();
    let r = c.run(&["instances"], &[]).await.ok();
    assert!(r.stdout.contains("no instances"));
    other.stop().await;
    app.stop().await;
}

/// A disabled account: `sync` says so and names whom to contact (the `admin_contact`
/// setting), exits with code 7, and keeps the locations; re-enabled, sync works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_account_is_named_with_the_contact() {
    let app = setup().await;
    let c = Client::new();
    let t = token(&app, "ann", "start_enrollment").await;
    c.write_provisioning(&provisioning(&app, &t));
    let pw = c.password_file();
    c.run(&["start", "--password-file", &pw, "--device-name", "pc"], &[]).await.ok();
    let (s, v) = app
        .call(
            "PATCH",
            "/api/v1/settings",
            Some(json!({"admin_contact": {"name": "IT Service Desk", "email": "it@example.com", "phone": "+1 555 0199"}})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": false}))).await;
    let r = c.run(&["sync"], &[]).await;
    assert_eq!(r.code, 7, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("your account is disabled; contact IT Service Desk <it@example.com>, +1 555 0199"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("new token"), "{}", r.stdout);
    let r = c.run(&["sync", "--json"], &[]).await;
    assert_eq!(r.code, 7);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["state"], "account_disabled", "{v}");
    let r = c.run(&["locations"], &[]).await.ok();
    assert!(r.stdout.contains("office"), "kept while disabled: {}", r.stdout);
    app.call("PUT", "/api/v1/user/ann", Some(json!({"is_active": true}))).await;
    c.run(&["sync"], &[]).await.ok();
    // A disabled user's enrollment says the same, with the same code.
    app.create_user("bob").await;
    let tb = token(&app, "bob", "start_enrollment").await;
    app.call("PUT", "/api/v1/user/bob", Some(json!({"is_active": false}))).await;
    let c2 = Client::new();
    c2.write_provisioning(&provisioning(&app, &tb));
    let r = c2.run(&["start", "--password-file", &pw], &[]).await.without(&tb);
    assert_eq!(r.code, 7, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("your account is disabled; contact IT Service Desk"), "{}", r.stderr);
    app.stop().await;
}

/// The client died after the server registered the device but before the local save: the
/// next start finishes the job with the saved key pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_registration_and_save_recovers() {
    let app = setup().await;
    let t = token(&app, "ann", "start_enrollment").await;
    let c = Client::new();
    let url = url::Url::parse(&format!("{}/", app.edge_url)).unwrap();
    onramp_client::dirs::ensure_private_dir(&c.data()).unwrap();
    // What the first run did before dying: key saved, session opened, password set,
    // device registered; nothing stored about the instance.
    {
        let store = c.store().await;
        let k = onramp_client::keys::generate();
        store.save_pending_key(url.as_str(), &k).await.unwrap();
        let mut edge = onramp_client::EdgeClient::new(&url);
        edge.start(&t).await.unwrap();
        edge.activate_user(PASSWORD, None).await.unwrap();
        edge.create_device("laptop", &k.public).await.unwrap();
        assert!(!store.is_initialized().await.unwrap());
        store.close().await;
    }
    c.write_provisioning(&provisioning(&app, &t));
    let r = c.run(&["start"], &[]).await.ok().without(&t);
    assert!(r.stdout.contains("Enrolled") && r.stdout.contains("laptop"), "{}", r.stdout);
    assert_eq!(server_devices(&app, "ann").await.len(), 1, "the same device, not a second one");
    let store = c.store().await;
    let i = &store.instances().await.unwrap()[0];
    assert_eq!(store.locations(&i.id).await.unwrap().len(), 2);
    store.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_problems_have_distinct_messages() {
    let app = setup().await;
    let clock = app.clock.clone().unwrap();
    // Expired.
    let (_, v) =
        app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({"token_expiration_time": "1h"}))).await;
    let expired = v["enrollment_token"].as_str().unwrap().to_owned();
    clock.advance(3601);
    let c = Client::new();
    let file = c.write_provisioning(&provisioning(&app, &expired));
    let r = c.run(&["start"], &[]).await.without(&expired);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("expired") && r.stderr.contains("administrator"), "{}", r.stderr);
    assert!(file.exists());
    // Unknown.
    let c = Client::new();
    c.write_provisioning(&provisioning(&app, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let r = c.run(&["start"], &[]).await;
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("not known"), "{}", r.stderr);
    // Used: enrolled once, and the session is over.
    let t = token(&app, "ann", "start_enrollment").await;
    let c = Client::new();
    c.write_provisioning(&provisioning(&app, &t));
    let pw = c.password_file();
    c.run(&["start", "--password-file", &pw], &[]).await.ok();
    clock.advance(601);
    let c2 = Client::new();
    c2.write_provisioning(&provisioning(&app, &t));
    let r = c2.run(&["start"], &[]).await.without(&t);
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("already used"), "{}", r.stderr);
    // Revoked by a newer token.
    let old = token(&app, "ann", "start_desktop").await;
    token(&app, "ann", "start_desktop").await;
    let c3 = Client::new();
    c3.write_provisioning(&provisioning(&app, &old));
    let r = c3.run(&["start"], &[]).await.without(&old);
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("revoked"), "{}", r.stderr);
    // The edge is down: the URL is named.
    let c4 = Client::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{port}/");
    c4.write_provisioning(json!({"enrollment_token": t, "enrollment_url": dead}).to_string().as_bytes());
    let r = c4.run(&["start"], &[]).await.without(&t);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("127.0.0.1:{port}")), "{}", r.stderr);
    app.stop().await;
}

/// The machine-wide file (/etc/onramp/provisioning.json) is read when the user has none,
/// left in place afterwards, loses to the user's own file, and is refused when others can
/// write it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_wide_file_and_precedence() {
    let app = setup().await;
    app.create_user("bob").await;
    let pw_holder = Client::new();
    let pw = pw_holder.password_file();
    let system_file = |c: &Client, bytes: &[u8], mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let d = c.dir.path().join("etc-onramp");
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("provisioning.json");
        std::fs::write(&f, bytes).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        f
    };

    let t = token(&app, "ann", "start_enrollment").await;
    let c = Client::new();
    let sys = system_file(&c, &provisioning(&app, &t), 0o644);
    let r = c.run(&["start", "--password-file", &pw], &[]).await.ok().without(&t);
    assert!(r.stdout.contains(&sys.display().to_string()) && r.stdout.contains("Enrolled"), "{}", r.stdout);
    assert!(sys.exists(), "a machine-wide file is not the user's to delete");

    // The user's own file wins over the machine-wide one.
    let tb = token(&app, "bob", "start_enrollment").await;
    let c = Client::new();
    system_file(&c, &provisioning(&app, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 0o644);
    c.write_provisioning(&provisioning(&app, &tb));
    let r = c.run(&["start", "--password-file", &pw], &[]).await.ok().without(&tb);
    assert!(r.stdout.contains("Enrolled"), "{}", r.stdout);

    // World-writable: refused, named, untouched.
    let c = Client::new();
    let f = system_file(&c, &provisioning(&app, &tb), 0o666);
    let r = c.run(&["start"], &[]).await.without(&tb);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("writable by every user") && r.stderr.contains(&f.display().to_string()), "{}", r.stderr);
    app.stop().await;
}

fn host_name() -> String {
    hostname::get().unwrap().to_string_lossy().trim().to_owned()
}

async fn device_names(app: &TestApp, user: &str) -> Vec<String> {
    let mut names: Vec<String> =
        server_devices(app, user).await.iter().map(|d| d["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

/// The default device name (the host name) is not the user's choice: a second client of
/// the same user on a machine with the same host name (a reinstall, a second profile)
/// takes the next free name. A name chosen with --device-name that clashes is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_device_names_never_clash() {
    let app = setup().await;
    let host = host_name();
    let first = Client::new();
    let t = token(&app, "ann", "start_enrollment").await;
    first.write_provisioning(&provisioning(&app, &t));
    let pw = first.password_file();
    first.run(&["start", "--password-file", &pw], &[]).await.ok();
    // The second data directory: the same user, the same host name, zero touch.
    let second = Client::new();
    let t = token(&app, "ann", "start_desktop").await;
    second.write_provisioning(&provisioning(&app, &t));
    let r = second.run(&["start"], &[]).await.ok();
    assert!(r.stdout.contains(&format!("\"{host}-2\"")), "{}", r.stdout);
    assert_eq!(device_names(&app, "ann").await, [host.clone(), format!("{host}-2")]);

    // A name the user chose: a clash stops, saying how to choose another.
    let third = Client::new();
    let t = token(&app, "ann", "start_desktop").await;
    third.write_provisioning(&provisioning(&app, &t));
    let r = third.run(&["start", "--device-name", &host], &[]).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("already has a device named {host:?}")) && r.stderr.contains("--device-name"),
        "{}",
        r.stderr
    );
    assert_eq!(device_names(&app, "ann").await.len(), 2);
    app.stop().await;
}

/// Takes a device name on the server between the session start (which lists the user's
/// devices) and the registration, as another client of the same user could.
struct Racer {
    rt: tokio::runtime::Handle,
    app: std::sync::Arc<TestApp>,
    name: String,
}

impl onramp_client::enroll::Interaction for Racer {
    fn show_start(&mut self, _: &onramp_proto::EnrollmentStartResponse) {
        let (app, name) = (self.app.clone(), self.name.clone());
        let key = onramp_client::keys::generate().public;
        let (s, v) = tokio::task::block_in_place(|| {
            self.rt.block_on(app.call(
                "POST",
                "/api/v1/device",
                Some(json!({"username": "ann", "name": name, "pubkey": key})),
            ))
        });
        assert!(s.is_success(), "{v}");
    }

    fn password(&mut self) -> Result<String, String> {
        Ok(PASSWORD.into())
    }
}

/// The server's own name clash (a name taken after the session listed the devices) moves a
/// default name on as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_device_name_taken_meanwhile_moves_on() {
    let app = std::sync::Arc::new(setup().await);
    let t = token(&app, "ann", "start_enrollment").await;
    let c = Client::new();
    onramp_client::dirs::ensure_private_dir(&c.data()).unwrap();
    let store = c.store().await;
    let url = url::Url::parse(&format!("{}/", app.edge_url)).unwrap();
    let mut racer = Racer { rt: tokio::runtime::Handle::current(), app: app.clone(), name: "desk".into() };
    let name = onramp_client::enroll::DeviceName::Default("desk".into());
    let done = onramp_client::enroll::enroll(&store, &url, &t, &name, &mut racer).await.unwrap();
    assert_eq!(done.device_name, "desk-2");
    assert_eq!(device_names(&app, "ann").await, ["desk", "desk-2"]);
    store.close().await;
    drop(racer);
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
