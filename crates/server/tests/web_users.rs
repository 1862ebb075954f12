//! The admin web UI's users list and its actions, driven in headless Chromium against a
//! real server: the disabled-with-reason states, "show it here" (the shown token then
//! enrolls the real client), "send by e-mail" (at a real SMTP sink), search, add, edit,
//! disable, devices, delete, and the bulk ZIP.

mod common;
use common::*;
mod chrome;
mod web;
use chrome::start_chromedriver;
use fantoccini::{Client, Locator};
use onramp_testkit::smtp::SmtpSink;
use std::path::Path;
use std::time::Duration;
use web::*;

const BIN: &str = env!("CARGO_BIN_EXE_onramp");

fn client_bin() -> std::path::PathBuf {
    let p = Path::new(BIN).with_file_name("onramp-client");
    assert!(p.exists(), "{} is missing: build it with cargo build -p onramp-client", p.display());
    p
}

/// An app whose tokens point at its own edge (so a real client can enroll with them).
async fn app_with_real_edge() -> TestApp {
    let app = TestApp::builder(Backend::Sqlite).config(|c| c.public_url = None).spawn().await;
    let (s, v) = app.call("PATCH", "/api/v1/settings", Some(json!({"public_url": app.edge_url.clone()}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app
}

/// The browser's session cookie and the page's CSRF token, for requests the browser
/// would make as downloads (WebDriver cannot read downloaded files).
async fn session_of(c: &Client) -> (String, String) {
    let cookie = c.get_named_cookie("onramp_session").await.expect("session cookie");
    let csrf = c
        .find(Locator::Css("input[name=_csrf]"))
        .await
        .expect("a form with a CSRF token")
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    (format!("onramp_session={}", cookie.value()), csrf)
}

async fn open_menu(c: &Client, user: &str) -> fantoccini::elements::Element {
    let menu = wait_for(c, &format!("tr[data-user=\"{user}\"] details.menu")).await;
    menu.find(Locator::Css("summary")).await.unwrap().click().await.unwrap();
    menu
}

async fn row_text(c: &Client, user: &str) -> String {
    text(c, &format!("tr[data-user=\"{user}\"]")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_list_dialogs_and_a_shown_token_enrolls_the_client() {
    let app = app_with_real_edge().await;
    admin_password(&app).await;
    app.create_user("jdoe").await;
    app.create_user("asmith").await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;
    assert!(c.current_url().await.unwrap().path().ends_with("/users"), "admins land on the users list");
    assert!(row_text(&c, "jdoe").await.contains("pending"));

    // No location yet: desktop configuration is disabled, with the reason and a way out.
    let menu = open_menu(&c, "jdoe").await;
    let disabled = menu.find(Locator::Css("span.action.disabled")).await.unwrap().text().await.unwrap();
    assert!(disabled.contains("Configure desktop client") && disabled.contains("No VPN location"), "{disabled}");
    assert!(menu.find(Locator::Css("a[href=\"/locations\"]")).await.is_ok());
    screenshot(&c, "users-list").await;

    // Start enrollment opens as a dialog; without SMTP "send by e-mail" is disabled with the reason.
    menu.find(Locator::LinkText("Start enrollment")).await.unwrap().click().await.unwrap();
    wait_for(&c, "dialog#dialog[open] #dialog-body").await;
    let email = c.find(Locator::Id("deliver-email")).await.unwrap();
    assert_eq!(email.attr("disabled").await.unwrap().as_deref(), Some("true"));
    let reason = text(&c, "#smtp-reason").await;
    assert!(reason.contains("SMTP is not configured"), "{reason}");
    assert!(c.find(Locator::Css("#smtp-reason a[href=\"/settings/smtp\"]")).await.is_ok());
    screenshot(&c, "start-enrollment-dialog").await;
    click(&c, "#deliver-show").await;
    click(&c, "#issue").await;

    // "Show it here": token, URL, links, QR code and the provisioning.json download.
    let token = wait_for(&c, "#token").await.prop("value").await.unwrap().unwrap();
    assert_eq!(token.len(), 32, "{token}");
    let url = c.find(Locator::Id("url")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert_eq!(url.trim_end_matches('/'), app.edge_url.trim_end_matches('/'));
    let deep = c.find(Locator::Id("deep-link")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(deep.starts_with("onramp://enroll?") && deep.contains(&token), "{deep}");
    let qr = c.find(Locator::Id("qr")).await.unwrap().attr("src").await.unwrap().unwrap();
    assert!(qr.starts_with("data:image/svg+xml;base64,"));
    screenshot(&c, "token-shown").await;

    // The download is a POST (the token stays out of URLs); fetch it as the browser would.
    let (cookie, csrf) = session_of(&c).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .post(app.url("/provisioning.json"))
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf.as_str()), ("enrollment_token", token.as_str()), ("enrollment_url", url.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("provisioning.json"));
    let prov_text = r.text().await.unwrap();
    let prov: Value = serde_json::from_str(&prov_text).unwrap();
    assert_eq!(prov["enrollment_token"], token.as_str());

    // The real client enrolls with that file.
    let dir = tempfile::tempdir().unwrap();
    let prov_path = dir.path().join("provisioning.json");
    std::fs::write(&prov_path, &prov_text).unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "Str0ng!Pass\n").unwrap();
    let out = tokio::process::Command::new(client_bin())
        .env("ONRAMP_CLIENT_DATA_DIR", dir.path().join("data"))
        .env("ONRAMP_CLIENT_ALLOW_HTTP", "1")
        .env("HOME", dir.path())
        .args(["start", "--password-file"])
        .arg(&pw)
        .arg("--provisioning-file")
        .arg(&prov_path)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "client enrollment failed: {}", String::from_utf8_lossy(&out.stderr));
    let (_, u) = app.call("GET", "/api/v1/user/jdoe", None).await;
    assert_eq!(u["enrolled"], true, "{u}");

    // Back on the list: enrolled now, so Start enrollment is disabled with the reason.
    c.goto(&app.url("/users?q=jdoe")).await.unwrap();
    assert!(row_text(&c, "jdoe").await.contains("enrolled"));
    let menu = open_menu(&c, "jdoe").await;
    let disabled = menu.find(Locator::Css("span.action.disabled")).await.unwrap().text().await.unwrap();
    assert!(disabled.contains("Already enrolled"), "{disabled}");

    // With a location and SMTP, Configure desktop client sends by e-mail.
    app.create_location("office", "10.1.0.1/24").await;
    let sink = SmtpSink::start().await;
    let smtp =
        json!({"smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none", "sender": "vpn@example.com"}});
    assert_eq!(app.call("PATCH", "/api/v1/settings", Some(smtp)).await.0, StatusCode::OK);
    c.goto(&app.url("/users?q=jdoe")).await.unwrap();
    let menu = open_menu(&c, "jdoe").await;
    menu.find(Locator::LinkText("Configure desktop client")).await.unwrap().click().await.unwrap();
    wait_for(&c, "dialog#dialog[open] #deliver-email").await;
    assert_eq!(c.find(Locator::Id("deliver-email")).await.unwrap().attr("disabled").await.unwrap(), None);
    fill(&c, "#email", "jane.laptop@example.com").await;
    screenshot(&c, "configure-desktop-dialog").await;
    click(&c, "#issue").await;
    assert!(text(&c, "#sent").await.contains("jane.laptop@example.com"));
    let mails = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails[0].to, vec!["jane.laptop@example.com".to_string()]);
    let (_, pending) = app.call("GET", "/api/v1/user/jdoe/tokens", None).await;
    assert_eq!(pending[0]["kind"], "desktop_config", "{pending}");

    // Search narrows the list as you type (htmx), and the state filter works.
    c.goto(&app.url("/users")).await.unwrap();
    fill(&c, "#q", "asm").await;
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#users .count")).await.unwrap();
    for _ in 0..50 {
        if c.find(Locator::Css("tr[data-user=\"jdoe\"]")).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.find(Locator::Css("tr[data-user=\"jdoe\"]")).await.is_err(), "search did not filter");
    assert!(c.find(Locator::Css("tr[data-user=\"asmith\"]")).await.is_ok());
    c.goto(&app.url("/users?state=enrolled")).await.unwrap();
    assert!(c.find(Locator::Css("tr[data-user=\"jdoe\"]")).await.is_ok());
    assert!(c.find(Locator::Css("tr[data-user=\"asmith\"]")).await.is_err());

    // Disable: the badge changes and both token actions say why they are unavailable.
    c.goto(&app.url("/users?q=asmith")).await.unwrap();
    let menu = open_menu(&c, "asmith").await;
    menu.find(Locator::Css("button[formaction=\"/users/asmith/active\"]")).await.unwrap().click().await.unwrap();
    wait_for(&c, "p.notice").await;
    assert!(row_text(&c, "asmith").await.contains("disabled"));
    let menu = open_menu(&c, "asmith").await;
    let reasons = menu.find_all(Locator::Css("span.action.disabled")).await.unwrap();
    assert_eq!(reasons.len(), 2);
    for r in reasons {
        assert!(r.text().await.unwrap().contains("disabled"));
    }

    // Add a user, edit them, then delete with confirmation.
    c.goto(&app.url("/users/new")).await.unwrap();
    fill(&c, "#f-username", "jdoe").await;
    fill(&c, "#f-first_name", "Min").await;
    fill(&c, "#f-last_name", "Lee").await;
    fill(&c, "#f-email", "mlee@example.com").await;
    click(&c, "form.card button.primary").await;
    // The server's refusal is shown at the field, and what was typed stays.
    let err = text(&c, "#f-username-error").await;
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(c.find(Locator::Id("f-first_name")).await.unwrap().prop("value").await.unwrap().as_deref(), Some("Min"));
    fill(&c, "#f-username", "mlee").await;
    click(&c, "form.card button.primary").await;
    assert!(row_text(&c, "mlee").await.contains("pending"));
    c.goto(&app.url("/users/mlee")).await.unwrap();
    fill(&c, "#f-phone", "+1 555 0199").await;
    click(&c, "form.card button.primary").await;
    wait_for(&c, "p.notice").await;
    let (_, u) = app.call("GET", "/api/v1/user/mlee", None).await;
    assert_eq!(u["phone"], "+1 555 0199");
    c.goto(&app.url("/users/mlee/delete")).await.unwrap();
    click(&c, "#confirm-delete").await;
    wait_for(&c, "p.notice").await;
    assert_eq!(app.call("GET", "/api/v1/user/mlee", None).await.0, StatusCode::NOT_FOUND);

    // Devices: the enrolled device is listed, its config downloads, and it can be deleted.
    c.goto(&app.url("/users/jdoe/devices")).await.unwrap();
    let devices = text(&c, "table.devices").await;
    assert!(devices.contains("office"), "{devices}");
    let (cookie, csrf) = session_of(&c).await;
    let href = c.find(Locator::Css(".row-actions a.button")).await.unwrap().attr("href").await.unwrap().unwrap();
    let conf = http.get(app.url(&href)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(conf.contains("[Interface]") && conf.contains("10.1.0."), "{conf}");
    screenshot(&c, "user-devices").await;
    click(&c, ".row-actions button.danger").await;
    wait_for(&c, "p.notice").await;
    let (_, d) = app.call("GET", "/api/v1/device?username=jdoe", None).await;
    assert_eq!(d.as_array().map(Vec::len).unwrap_or_else(|| d["devices"].as_array().unwrap().len()), 0, "{d}");

    // Bulk: tick users, get a ZIP of provisioning files and the CSV.
    app.create_user("bsmith").await;
    app.create_user("cjones").await;
    let r = http
        .post(app.url("/users/bulk"))
        .header("cookie", &cookie)
        .form(&[
            ("_csrf", csrf.as_str()),
            ("user", "bsmith"),
            ("user", "cjones"),
            ("user", "jdoe"),
            ("user", "asmith"),
            ("mode", "zip"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    // Enrolled jdoe gets a desktop token; disabled asmith is skipped, with the reason in the CSV.
    assert_eq!(
        names,
        ["bsmith/provisioning.json", "cjones/provisioning.json", "jdoe/provisioning.json", "provisioning.csv"]
    );
    let mut csv = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("provisioning.csv").unwrap(), &mut csv).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("jdoe,") && l.contains("desktop_config")), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("asmith,") && l.contains("skipped")), "{csv}");

    // Or the invitations by e-mail, for a whole group.
    let (s, v) =
        app.call("POST", "/api/v1/group", Some(json!({"name": "sales", "members": ["bsmith", "cjones"]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = http
        .post(app.url("/users/bulk"))
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf.as_str()), ("group", "sales"), ("mode", "mail")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("2 invitation(s) queued"));
    let invited = |m: &onramp_testkit::smtp::ReceivedMail| {
        m.to.iter().any(|t| t == "bsmith@example.com" || t == "cjones@example.com")
    };
    let mut got = 0;
    for _ in 0..300 {
        got = sink.messages().iter().filter(|m| invited(m)).count();
        if got >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, 2, "one invitation each to bsmith and cjones");
    app.stop().await;
}
