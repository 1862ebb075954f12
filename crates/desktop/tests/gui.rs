//! The desktop app driven the way a person drives it: egui_kittest finds widgets by their
//! accessible labels, types and clicks, against a real Onramp server (core + edge over
//! HTTP, SQLite) and the app's real worker thread and client store. Each screen is rendered
//! (wgpu, software adapter) to `target/screenshots/desktop-*.png`.

mod common;

use common::{fill, screenshot, shows, wait_for};
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use onramp_desktop::backend::{Backend, Config};
use onramp_desktop::prefs::Prefs;
use onramp_desktop::{DesktopApp, Outside};
use onramp_testkit::app::{Backend as Db, TestApp};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Str0ng!Pass";

struct World {
    rt: tokio::runtime::Runtime,
    app: TestApp,
}

impl World {
    fn new() -> World {
        // The client library reads these; every test here wants the same values.
        std::env::set_var("ONRAMP_CLIENT_ALLOW_HTTP", "1");
        std::env::set_var("ONRAMP_CLIENT_RETRIES", "0");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let app = rt.block_on(async {
            let app = TestApp::builder(Db::Sqlite).manual_clock().spawn().await;
            let (s, v) = app
                .call(
                    "PUT",
                    "/api/v1/user/admin",
                    Some(json!({"first_name": "Ada", "last_name": "Admin", "phone": "+1 555 0100"})),
                )
                .await;
            assert!(s.is_success(), "{v}");
            let (s, v) = app
                .call(
                    "POST",
                    "/api/v1/user",
                    Some(json!({"username": "jane", "first_name": "Jane", "last_name": "Doe",
                        "email": "jane@example.com", "phone": "+1 555 0199"})),
                )
                .await;
            assert!(s.is_success(), "{v}");
            // The onboarding message, with a link of a kind the app must not open.
            let welcome = "## Welcome aboard\n\nConnect to **office** to reach the intranet.\n\n\
                           - Help: [it.example.com](https://it.example.com)\n- [bad](file:///etc/passwd)";
            let (s, v) =
                app.call("PATCH", "/api/v1/settings", Some(json!({"enrollment": {"welcome_message": welcome}}))).await;
            assert!(s.is_success(), "{v}");
            app.create_location("office", "10.1.0.1/24").await;
            app
        });
        World { rt, app }
    }

    fn token(&self, user: &str, kind: &str) -> String {
        self.rt.block_on(async {
            let (s, v) = self.app.call("POST", &format!("/api/v1/user/{user}/{kind}"), Some(json!({}))).await;
            assert!(s.is_success(), "{v}");
            v["enrollment_token"].as_str().unwrap().to_owned()
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        self.rt.block_on(async {
            let (s, v) = self.app.call(method, path, body).await;
            assert!(s.is_success(), "{method} {path}: {v}");
            v
        })
    }

    fn edge(&self) -> String {
        format!("{}/", self.app.edge_url)
    }
}

/// One user's machine: a data directory (with the service socket nobody serves).
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("ONRAMP_CLIENT_SYSTEM_DIR", dir.path().join("etc-onramp"));
        Machine { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn provision(&self, url: &str, token: &str) -> PathBuf {
        std::fs::create_dir_all(self.data()).unwrap();
        let p = self.data().join("provisioning.json");
        std::fs::write(&p, json!({"enrollment_token": token, "enrollment_url": url}).to_string()).unwrap();
        p
    }

    fn open(&self, link: Option<String>, poll: Duration) -> Harness<'static, DesktopApp> {
        let config = Config {
            data_dir: self.data(),
            socket: self.dir.path().join("no-service.sock"),
            poll_every: poll,
            status_every: Duration::from_millis(300),
        };
        let backend = Backend::start(config).unwrap();
        let app = DesktopApp::new(backend, Prefs::load(&self.data()), true, link);
        Harness::builder().with_size([560.0, 720.0]).build_ui_state(|ui, app: &mut DesktopApp| app.show(ui), app)
    }
}

/// The new-user screen's last steps: the password twice, then "Enroll this computer".
fn set_password_and_enroll(h: &mut Harness<'_, DesktopApp>) {
    fill(h, "Password", PASSWORD);
    fill(h, "Confirm password", PASSWORD);
    h.get_by_label("Enroll this computer").click();
    wait_for(h, "You're all set");
}

fn devices(w: &World, user: &str) -> Vec<serde_json::Value> {
    w.call("GET", &format!("/api/v1/device?username={user}"), None).as_array().cloned().unwrap()
}

#[test]
fn new_user_enrolls_from_the_provisioning_file() {
    let w = World::new();
    let m = Machine::new();
    let token = w.token("jane", "start_enrollment");
    let file = m.provision(&w.edge(), &token);
    let mut h = m.open(None, Duration::from_secs(300));
    wait_for(&mut h, "Welcome, Jane");
    // The user's data and the admin's contact, before anything is sent.
    for text in ["Jane Doe", "jane@example.com", "+1 555 0199", "Ada Admin", "Session ends in"] {
        assert!(shows(&h, text), "{text} missing");
    }
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    assert_eq!(h.get_by_label("Device name").value().as_deref(), Some(host.as_str()));
    // The policy is checked as the user types; the button waits for a good password.
    fill(&mut h, "Password", "short");
    h.run_steps(2);
    assert!(h.query_by_label("✖ at least 8 characters").is_some());
    assert!(h.get_by_label("Enroll this computer").accesskit_node().is_disabled());
    screenshot(&mut h, "welcome");
    fill(&mut h, "Password", "short!Pass0rd");
    fill(&mut h, "Confirm password", "short!Pass0rd");
    h.run_steps(2);
    assert!(h.query_by_label("✔ at least 8 characters").is_some());
    assert!(h.query_by_label("✔ both passwords match").is_some());
    h.get_by_label("Enroll this computer").click();
    wait_for(&mut h, "You're all set");
    assert!(shows(&h, "Your locations: office"));
    assert!(shows(&h, "Welcome aboard"), "the onboarding message is shown");
    screenshot(&mut h, "done");
    assert!(!file.exists(), "the spent provisioning file is deleted");
    let devs = devices(&w, "jane");
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!(devs[0]["name"], host.as_str());
    h.get_by_label("Show my locations").click();
    wait_for(&mut h, "Tunnel service not running");
    assert!(shows(&h, "10.1.0."));
    let switch = h.get_by_label("Connect office");
    assert!(switch.accesskit_node().is_disabled(), "no service: the switch cannot be used");
    screenshot(&mut h, "locations");
    // The password works: the account was activated with it.
    let v = w.call("GET", "/api/v1/user/jane", None);
    assert_eq!(v["enrolled"], true, "{v}");
}

#[test]
fn enrolled_user_with_a_desktop_token_sets_no_password() {
    let w = World::new();
    // Jane enrolled once already (first machine).
    let first = Machine::new();
    first.provision(&w.edge(), &w.token("jane", "start_enrollment"));
    let mut h = first.open(None, Duration::from_secs(300));
    wait_for(&mut h, "Welcome, Jane");
    set_password_and_enroll(&mut h);
    // Her second computer, with a desktop-configuration token.
    let m = Machine::new();
    m.provision(&w.edge(), &w.token("jane", "start_desktop"));
    let mut h = m.open(None, Duration::from_secs(300));
    wait_for(&mut h, "Welcome, Jane");
    assert!(h.query_by_label("Password").is_none(), "an enrolled user sets no password");
    // The host name is taken by her first computer: the suggestion moves on.
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    assert_eq!(h.get_by_label("Device name").value(), Some(format!("{host}-2")));
    screenshot(&mut h, "desktop-token");
    // The user insists on the first computer's name: refused, and the form stays to fix it.
    fill(&mut h, "Device name", &host);
    h.get_by_label("Enroll this computer").click();
    wait_for(&mut h, "already has a device named");
    assert!(shows(&h, "choose another name"), "no CLI flag in the window");
    fill(&mut h, "Device name", "laptop-two");
    h.get_by_label("Enroll this computer").click();
    wait_for(&mut h, "You're all set");
    let names: Vec<_> = devices(&w, "jane").iter().map(|d| d["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"laptop-two".to_owned()), "{names:?}");
}

#[test]
fn each_token_problem_is_its_own_sentence_naming_the_admin() {
    let w = World::new();
    let clock = w.app.clock.clone().unwrap();
    // Kim's token expires (Jane's newer tokens would revoke one of hers).
    let expired = w.rt.block_on(async {
        w.app.create_user("kim").await;
        let (_, v) =
            w.app.call("POST", "/api/v1/user/kim/start_enrollment", Some(json!({"token_expiration_time": "1h"}))).await;
        v["enrollment_token"].as_str().unwrap().to_owned()
    });
    clock.advance(3601);
    let revoked = w.token("jane", "start_enrollment");
    let used = w.token("jane", "start_enrollment");
    // `used` revoked the one before it; now spend `used` in a browser-like run.
    let m = Machine::new();
    m.provision(&w.edge(), &used);
    let mut h = m.open(None, Duration::from_secs(300));
    wait_for(&mut h, "Welcome, Jane");
    set_password_and_enroll(&mut h);
    clock.advance(601);
    let cases = [
        (expired.as_str(), "This invitation has expired", "has expired"),
        (used.as_str(), "This invitation was already used", "already used"),
        (revoked.as_str(), "This invitation was revoked", "newer one"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "This token is not known", "copied completely"),
    ];
    for (token, headline, sentence) in cases {
        let m = Machine::new();
        let file = m.provision(&w.edge(), token);
        let mut h = m.open(None, Duration::from_secs(300));
        wait_for(&mut h, headline);
        assert!(shows(&h, sentence), "{headline}: no {sentence:?}");
        let named = shows(&h, "Your administrator: Ada Admin");
        // An unknown token is nobody's: it gets no contact.
        assert_eq!(named, !headline.contains("not known"), "{headline}");
        assert!(h.query_by_label("Try again").is_none(), "a retry cannot fix {headline}");
        assert!(file.exists(), "the file stays for the admin to look at");
        if headline.contains("expired") {
            screenshot(&mut h, "token-expired");
        }
    }
}

/// A TCP forwarder to the edge that holds its port from the start (no other test can take
/// it) and drops every connection while `up` is false: the edge is "unreachable" first.
fn forwarder(w: &World, up: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (u16, tokio::task::JoinHandle<()>) {
    let target = w.app.edge_url.trim_start_matches("http://").to_owned();
    let l = w.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = l.local_addr().unwrap().port();
    let task = w.rt.spawn(async move {
        loop {
            let Ok((mut a, _)) = l.accept().await else { return };
            if !up.load(std::sync::atomic::Ordering::SeqCst) {
                drop(a);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    (port, task)
}

#[test]
fn an_unreachable_edge_offers_a_retry_that_works() {
    let w = World::new();
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (port, fwd) = forwarder(&w, up.clone());
    let m = Machine::new();
    m.provision(&format!("http://127.0.0.1:{port}/"), &w.token("jane", "start_enrollment"));
    let mut h = m.open(None, Duration::from_secs(300));
    wait_for(&mut h, "Cannot reach the server");
    assert!(shows(&h, &format!("127.0.0.1:{port}")));
    screenshot(&mut h, "unreachable");
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    h.get_by_label("Try again").click();
    wait_for(&mut h, "Welcome, Jane");
    // The retried enrollment still spends (and deletes) the provisioning file.
    set_password_and_enroll(&mut h);
    assert!(!m.data().join("provisioning.json").exists(), "the spent file is deleted after a retry");
    fwd.abort();
}

#[test]
fn update_instance_applies_a_new_token_and_polls_show_new_locations() {
    let w = World::new();
    let m = Machine::new();
    m.provision(&w.edge(), &w.token("jane", "start_enrollment"));
    let mut h = m.open(None, Duration::from_secs(1));
    wait_for(&mut h, "Welcome, Jane");
    set_password_and_enroll(&mut h);
    h.get_by_label("Show my locations").click();
    wait_for(&mut h, "office");
    // The admin adds a location while the window is open: the next poll shows it.
    w.rt.block_on(w.app.create_location("lab", "10.2.0.1/24"));
    wait_for(&mut h, "lab");
    assert!(h.query_by_label("Connect lab").is_some());
    // Update instance, from the instance's menu, with a new token from the admin.
    let name = w.call("GET", "/api/v1/settings", None)["instance_name"].as_str().unwrap().to_owned();
    h.get_by_label(&format!("{name} menu")).click();
    h.run_steps(2);
    h.get_by_label("Update instance").click();
    h.run_steps(2);
    fill(&mut h, "New token", "not-a-token");
    h.get_by_label("Apply").click();
    wait_for(&mut h, "32 letters and digits");
    let token = w.token("jane", "start_desktop");
    fill(&mut h, "New token", &token);
    screenshot(&mut h, "update-instance");
    h.get_by_label("Apply").click();
    wait_for(&mut h, &format!("{name} updated."));
    assert_eq!(devices(&w, "jane").len(), 1, "an update registers no new device");
    screenshot(&mut h, "after-update");
    // The admin mails a desktop token; its deep link, for an instance this machine has,
    // updates that instance (no enrollment screen, no new device).
    h.get_by_label("Dismiss").click();
    h.run_steps(2);
    assert!(!shows(&h, "updated."));
    let token = w.token("jane", "start_desktop");
    let mut link = url::Url::parse("onramp://enroll").unwrap();
    link.query_pairs_mut().append_pair("url", &w.edge()).append_pair("token", &token);
    h.state_mut().outside(Outside::DeepLink(link.to_string()));
    wait_for(&mut h, &format!("{name} updated."));
    assert!(h.query_by_label("Connect office").is_some(), "back on the locations");
    assert_eq!(devices(&w, "jane").len(), 1);
    // The admin removes the location again: it leaves the window.
    let lab = w.call("GET", "/api/v1/location", None);
    let id = lab.as_array().unwrap().iter().find(|n| n["name"] == "lab").unwrap()["id"].as_i64().unwrap();
    w.call("DELETE", &format!("/api/v1/location/{id}"), None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.query_by_label("Connect lab").is_some() {
        assert!(Instant::now() < deadline, "lab is still shown");
        h.step();
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_deep_link_opens_the_enrollment_and_add_instance_reads_pasted_links() {
    let w = World::new();
    let m = Machine::new();
    let mut h = m.open(None, Duration::from_secs(300));
    // Nothing to enroll with: the "Add instance" screen.
    wait_for(&mut h, "Add an instance");
    screenshot(&mut h, "add-instance");
    fill(&mut h, "Enrollment link or URL", "onramp://enroll?token=x");
    h.run_steps(2);
    h.get_by_label("Continue").click();
    wait_for(&mut h, "has no url=");
    // A deep link from the OS (a click in the invitation e-mail) while the app runs.
    let token = w.token("jane", "start_enrollment");
    let mut link = url::Url::parse("onramp://enroll").unwrap();
    link.query_pairs_mut().append_pair("url", &w.edge()).append_pair("token", &token);
    h.state_mut().outside(Outside::DeepLink(link.to_string()));
    wait_for(&mut h, "Welcome, Jane");
    assert!(shows(&h, "at 127.0.0.1"), "the screen names the server the link points at");
    // Not now: Cancel goes back (nothing enrolled yet: to Add an instance).
    h.get_by_label("Cancel").click();
    wait_for(&mut h, "Add an instance");
    // And the browser wizard's link pasted by hand works too (a fresh machine).
    let m2 = Machine::new();
    let mut h2 = m2.open(None, Duration::from_secs(300));
    wait_for(&mut h2, "Add an instance");
    let other = w.token("jane", "start_enrollment");
    // Pasted from the clipboard (Ctrl+V arrives as a paste event).
    h2.get_by_label("Enrollment link or URL").focus();
    h2.run_steps(1);
    h2.event(egui::Event::Paste(format!("{}?token={other}", w.edge())));
    h2.run_steps(2);
    assert!(h2.query_by_label("Token").is_none(), "the link carries the token");
    h2.get_by_label("Continue").click();
    wait_for(&mut h2, "Welcome, Jane");
}
