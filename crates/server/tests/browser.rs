//! The browser wizard in real headless Chromium (Debian `chromium` + `chromium-driver`),
//! driven over WebDriver: a full enrollment whose downloaded configuration's private key
//! must match the public key core registered.

mod common;
use common::*;
mod chrome;
use chrome::{browser, start_chromedriver, text, visible};
use fantoccini::{Client, Locator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_enrollment_end_to_end() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.call(
        "PUT",
        "/api/v1/user/admin",
        Some(json!({"first_name": "Ada", "last_name": "Admin", "phone": "+1 555 0100"})),
    )
    .await;
    app.create_user("jdoe").await;
    app.create_location("office", "10.1.0.1/24").await;
    app.create_location("lab", "10.2.0.1/24").await;
    let (_, t) = app.call("POST", "/api/v1/user/jdoe/start_enrollment", Some(json!({}))).await;
    let token = t["enrollment_token"].as_str().unwrap().to_owned();

    let driver = start_chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/?token={token}", app.edge_url)).await.unwrap();
    visible(&c, "welcome").await;
    assert!(!c.current_url().await.unwrap().as_str().contains("token="), "token left in the address bar");
    assert!(text(&c, "#user-data").await.contains("jdoe@example.com"));
    let admin = text(&c, "#admin-data").await;
    assert!(
        admin.contains("Ada Admin") && admin.contains("admin@example.com") && admin.contains("+1 555 0100"),
        "{admin}"
    );
    assert!(text(&c, "#countdown").await.starts_with("Time left: "));
    c.find(Locator::Id("welcome-next")).await.unwrap().click().await.unwrap();

    visible(&c, "password").await;
    c.find(Locator::Id("password")).await.unwrap().send_keys("weak").await.unwrap();
    assert!(c.find(Locator::Css("#rules li:not(.ok)")).await.is_ok(), "live policy feedback shows unmet rules");
    let submit = c.find(Locator::Id("password-submit")).await.unwrap();
    assert_eq!(submit.attr("disabled").await.unwrap().as_deref(), Some("true"));
    c.find(Locator::Id("password")).await.unwrap().send_keys("Str0ng!Pass").await.unwrap();
    c.find(Locator::Id("password2")).await.unwrap().send_keys("weakStr0ng!Pass").await.unwrap();
    assert!(c.find(Locator::Css("#rules li:not(.ok)")).await.is_err(), "all rules met");
    submit.click().await.unwrap();

    visible(&c, "device").await;
    let name = c.find(Locator::Id("device-name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys("Browser laptop").await.unwrap();
    c.find(Locator::Id("device-submit")).await.unwrap().click().await.unwrap();

    visible(&c, "configs").await;
    let configs = c.find_all(Locator::Css("pre.wg-config")).await.unwrap();
    assert_eq!(configs.len(), 2);
    let conf = configs[0].text().await.unwrap();
    assert!(!conf.contains("YOUR_PRIVATE_KEY"), "{conf}");
    assert_eq!(c.find_all(Locator::Css(".config img")).await.unwrap().len(), 2, "a QR code per config");
    let private =
        conf.lines().find_map(|l| l.strip_prefix("PrivateKey = ")).expect("PrivateKey line").trim().to_owned();
    let bytes: [u8; 32] = base64_decode(&private).try_into().expect("32-byte private key");
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
    let (_, devices) = app.call("GET", "/api/v1/device?username=jdoe", None).await;
    assert_eq!(devices[0]["name"], "Browser laptop");
    assert_eq!(
        devices[0]["pubkey"].as_str().unwrap(),
        base64_encode(public.as_bytes()),
        "downloaded private key matches the registered public key"
    );
    let (_, user) = app.call("GET", "/api/v1/user/jdoe", None).await;
    assert_eq!(user["enrolled"], true);

    c.find(Locator::Id("configs-next")).await.unwrap().click().await.unwrap();
    visible(&c, "done").await;
    assert!(text(&c, "#final-page h3").await.contains("Welcome, First!"));

    // A used-up or unknown token gets a clear page, not a blank screen.
    assert!(error_page(&c, &app, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await.contains("not valid"));
    c.close().await.unwrap();
    app.stop().await;
}

/// The other paths through the wizard: a token typed on the page, the user's own public
/// key, the skippable VPN step, the desktop hand-off link, hostile markdown in the
/// onboarding message, and the pages for expired, used and timed-out tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_own_key_skip_and_error_pages() {
    let app = TestApp::builder(Backend::Sqlite).manual_clock().spawn().await;
    let clock = app.clock.clone().unwrap();
    let hostile =
        "# Hi {{ first_name }}\n\n<script>window.pwned = 1</script> <img src=x onerror=\"window.pwned=2\">\n\n\
                   [bad](javascript:window.pwned=3) **bold** [docs](https://docs.example.com/vpn)";
    let (s, v) = app
        .call(
            "PATCH",
            "/api/v1/settings",
            Some(json!({"enrollment": {"vpn_setup_optional": true, "welcome_message": hostile}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.create_location("office", "10.1.0.1/24").await;
    for u in ["kim", "lee", "max", "ned"] {
        app.create_user(u).await;
    }
    let issue = |user: &'static str, body: Value| {
        let app = &app;
        async move {
            let (_, t) = app.call("POST", &format!("/api/v1/user/{user}/start_enrollment"), Some(body)).await;
            t["enrollment_token"].as_str().unwrap().to_owned()
        }
    };
    let driver = start_chromedriver();
    let c = browser(&driver).await;

    // Typed token, own public key: the config keeps the placeholder (no private key here).
    let kim = issue("kim", json!({})).await;
    c.goto(&format!("{}/", app.edge_url)).await.unwrap();
    visible(&c, "token").await;
    c.find(Locator::Id("token")).await.unwrap().send_keys(&kim).await.unwrap();
    c.find(Locator::Css("#token-form button[type=submit]")).await.unwrap().click().await.unwrap();
    visible(&c, "welcome").await;
    let deep = c.find(Locator::Id("deep-link")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(deep.starts_with("onramp://enroll?url=http%3A%2F%2F127.0.0.1") && deep.ends_with(&kim), "{deep}");
    c.find(Locator::Id("welcome-next")).await.unwrap().click().await.unwrap();
    visible(&c, "password").await;
    set_password(&c).await;
    visible(&c, "device").await;
    c.find(Locator::Css("input[name=keymode][value=paste]")).await.unwrap().click().await.unwrap();
    let own = pubkey(42);
    c.find(Locator::Id("own-pubkey")).await.unwrap().send_keys(&own).await.unwrap();
    c.find(Locator::Id("device-submit")).await.unwrap().click().await.unwrap();
    visible(&c, "configs").await;
    let conf = text(&c, "pre.wg-config").await;
    assert!(conf.contains("PrivateKey = YOUR_PRIVATE_KEY"), "{conf}");
    let (_, devices) = app.call("GET", "/api/v1/device?username=kim", None).await;
    assert_eq!(devices[0]["pubkey"], own.as_str());

    // The onboarding page: markup from the message is shown as text, never run.
    c.find(Locator::Id("configs-next")).await.unwrap().click().await.unwrap();
    visible(&c, "done").await;
    assert_eq!(text(&c, "#final-page h3").await, "Hi First");
    assert!(c.find_all(Locator::Css("#final-page script, #final-page img")).await.unwrap().is_empty());
    assert!(text(&c, "#final-page").await.contains("<script>window.pwned = 1</script>"));
    let links = c.find_all(Locator::Css("#final-page a")).await.unwrap();
    assert_eq!(links.len(), 1, "only the https link becomes a link");
    assert_eq!(links[0].attr("href").await.unwrap().as_deref(), Some("https://docs.example.com/vpn"));
    assert_eq!(text(&c, "#final-page strong").await, "bold");
    assert_eq!(c.execute("return window.pwned === undefined", vec![]).await.unwrap(), json!(true));

    // The VPN step can be skipped when the settings allow it: enrolled, no device.
    let lee = issue("lee", json!({})).await;
    c.goto(&format!("{}/?token={lee}", app.edge_url)).await.unwrap();
    visible(&c, "welcome").await;
    c.find(Locator::Id("welcome-next")).await.unwrap().click().await.unwrap();
    visible(&c, "password").await;
    set_password(&c).await;
    visible(&c, "device").await;
    c.find(Locator::Id("skip-vpn")).await.unwrap().click().await.unwrap();
    visible(&c, "done").await;
    let (_, user) = app.call("GET", "/api/v1/user/lee", None).await;
    assert_eq!(user["enrolled"], true);
    let (_, devices) = app.call("GET", "/api/v1/device?username=lee", None).await;
    assert_eq!(devices.as_array().unwrap().len(), 0);

    // Expired token; a session that ran out while the page was open; a used-up token.
    let max = issue("max", json!({"token_expiration_time": "1h"})).await;
    let ned = issue("ned", json!({})).await;
    clock.advance(3601);
    assert!(error_page(&c, &app, &max).await.contains("has expired"));
    c.goto(&format!("{}/?token={ned}", app.edge_url)).await.unwrap();
    visible(&c, "welcome").await;
    c.find(Locator::Id("welcome-next")).await.unwrap().click().await.unwrap();
    visible(&c, "password").await;
    clock.advance(601);
    set_password(&c).await;
    visible(&c, "error").await;
    assert!(text(&c, "#error-text").await.contains("session has ended"));
    assert!(error_page(&c, &app, &ned).await.contains("session has ended"));
    assert!(error_page(&c, &app, &kim).await.contains("already used"));
    c.close().await.unwrap();
    app.stop().await;
}

/// Types a policy-compliant password twice and submits it.
async fn set_password(c: &Client) {
    c.find(Locator::Id("password")).await.unwrap().send_keys("Str0ng!Pass").await.unwrap();
    c.find(Locator::Id("password2")).await.unwrap().send_keys("Str0ng!Pass").await.unwrap();
    c.find(Locator::Id("password-submit")).await.unwrap().click().await.unwrap();
}

/// Opens the wizard with `token` and returns the text of the error page it must show.
async fn error_page(c: &Client, app: &TestApp, token: &str) -> String {
    c.goto(&format!("{}/?token={token}", app.edge_url)).await.unwrap();
    visible(c, "error").await;
    text(c, "#error-text").await
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).expect("base64")
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
