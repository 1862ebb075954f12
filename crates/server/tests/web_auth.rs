//! Web UI sign-in and the self-service portal, in headless Chromium against a real server:
//! CSRF refusal, idle and absolute session expiry, 403 for non-admins, sign-in limits, and
//! a non-admin managing their own devices, desktop token and password. Sessions live in the
//! database: one signed in on one core works on a second core sharing it.

mod common;
use common::*;
mod chrome;
mod web;
use chrome::start_chromedriver;
use fantoccini::Locator;
use std::time::Duration;
use web::*;

const USER_PASSWORD: &str = "Us3r!Passw0rd";

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Signs in over plain HTTP as the form would; returns the session cookie.
async fn sign_in_http(app: &TestApp, user: &str, password: &str) -> Result<String, (StatusCode, String)> {
    let h = http();
    let page = h.get(app.url("/login")).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"_csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = h
        .post(app.url("/login"))
        .header("cookie", &login_cookie)
        .form(&[("_csrf", csrf.as_str()), ("username", user), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::SEE_OTHER {
        return Err((r.status(), r.text().await.unwrap()));
    }
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("onramp_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    Ok(cookie.split(';').next().unwrap().to_owned())
}

/// A page's CSRF token, read from its HTML.
async fn csrf_of(app: &TestApp, cookie: &str, path: &str) -> String {
    let html = http().get(app.url(path)).header("cookie", cookie).send().await.unwrap().text().await.unwrap();
    html.split("name=\"_csrf\" value=\"").nth(1).expect("a CSRF field").split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_is_required_on_every_change() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    app.create_user("jdoe").await;
    let cookie = sign_in_http(&app, "admin", ADMIN_PASSWORD).await.unwrap();
    let h = http();
    let disable = |token: Option<&str>| {
        let mut form = vec![("active", "false")];
        if let Some(t) = token {
            form.push(("_csrf", t));
        }
        h.post(app.url("/users/jdoe/active")).header("cookie", &cookie).form(&form).send()
    };
    // No token, a wrong token: refused, nothing changed.
    for token in [None, Some("forged")] {
        let r = disable(token).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.text().await.unwrap().contains("Reload the page"));
    }
    let (_, u) = app.call("GET", "/api/v1/user/jdoe", None).await;
    assert_eq!(u["is_active"], true);
    // A token from a page works, also as htmx's header.
    let csrf = csrf_of(&app, &cookie, "/users").await;
    assert_eq!(disable(Some(&csrf)).await.unwrap().status(), StatusCode::SEE_OTHER);
    let (_, u) = app.call("GET", "/api/v1/user/jdoe", None).await;
    assert_eq!(u["is_active"], false);
    let r = h
        .post(app.url("/users/jdoe/active"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .form(&[("active", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Without a session a change goes to sign-in; the login form has its own token.
    let r = h.post(app.url("/users/jdoe/active")).form(&[("active", "false")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/login"));
    let r =
        h.post(app.url("/login")).form(&[("username", "admin"), ("password", ADMIN_PASSWORD)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a sign-in without the form's token is refused");
    // Security headers on every page.
    let r = h.get(app.url("/users")).header("cookie", &cookie).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_when_idle_and_at_their_lifetime() {
    let app = TestApp::builder(Backend::Sqlite)
        .manual_clock()
        .config(|c| {
            c.web_session_idle_secs = 600;
            c.web_session_max_secs = 3600;
        })
        .spawn()
        .await;
    let clock = app.clock.clone().unwrap();
    admin_password(&app).await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;
    // Active use keeps the session alive past the idle timeout...
    for _ in 0..5 {
        clock.advance(500);
        c.goto(&app.url("/users")).await.unwrap();
        wait_for(&c, "form.logout").await;
    }
    // ...but not past its lifetime (2,500 s so far; 3,600 s max).
    clock.advance(500);
    c.goto(&app.url("/users")).await.unwrap();
    wait_for(&c, "form.logout").await;
    clock.advance(700);
    c.goto(&app.url("/users")).await.unwrap();
    let notice = text(&c, "main.signin p.notice").await;
    assert!(notice.contains("session ended"), "{notice}");
    screenshot(&c, "sign-in").await;
    // Signing in again returns to the page that was asked for.
    fill(&c, "#username", "admin").await;
    fill(&c, "#password", ADMIN_PASSWORD).await;
    click(&c, "#signin").await;
    wait_for(&c, "form.logout").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/users"));
    // Idle timeout.
    clock.advance(601);
    c.goto(&app.url("/groups")).await.unwrap();
    wait_for(&c, "main.signin").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_and_audited() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    for _ in 0..5 {
        let (s, body) = sign_in_http(&app, "admin", "wrong").await.unwrap_err();
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(body.contains("wrong username or password"));
    }
    // The sixth try is refused even with the right password, without checking it.
    let (s, body) = sign_in_http(&app, "admin", ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("too many failed sign-ins"), "{body}");
    // An unknown user reads the same as a wrong password.
    let (_, body) = sign_in_http(&app, "nobody", "x").await.unwrap_err();
    assert!(body.contains("wrong username or password"));
    // Parallel guesses cannot slip past the limit: each counts before its password is checked.
    let other = app.create_user("jdoe").await;
    assert_eq!(other["username"], "jdoe");
    let guesses: Vec<_> = (0..12).map(|_| sign_in_http(&app, "jdoe", "guess")).collect();
    let results = futures::future::join_all(guesses).await;
    let checked = results.iter().filter(|r| matches!(r, Err((s, _)) if *s == StatusCode::UNAUTHORIZED)).count();
    assert!(checked <= 5, "{checked} parallel guesses were checked");
    let (_, audit) = app.call("GET", "/api/v1/audit?action=web.login_failed", None).await;
    let entries = audit.as_array().cloned().unwrap_or_else(|| audit["entries"].as_array().unwrap().clone());
    assert_eq!(entries.len(), 6 + checked, "{audit}");
    assert!(!audit.to_string().contains("wrong\""), "no password in the audit log");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_portal_and_403_for_non_admins() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.create_location("office", "10.1.0.1/24").await;
    let (s, v) = app
        .call(
            "POST",
            "/api/v1/user",
            Some(json!({"username": "jdoe", "first_name": "Jane", "last_name": "Doe",
                        "email": "jdoe@example.com", "password": USER_PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.create_user("other").await;
    let (_, mine) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "jdoe", "name": "laptop", "pubkey": pubkey(1)})))
        .await;
    let (_, theirs) = app
        .call("POST", "/api/v1/device", Some(json!({"username": "other", "name": "desk", "pubkey": pubkey(2)})))
        .await;

    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "jdoe", USER_PASSWORD).await;
    assert!(c.current_url().await.unwrap().path().ends_with("/me"), "non-admins land on their account");
    let nav = text(&c, "header.top nav").await;
    assert!(!nav.contains("Users"), "{nav}");
    assert!(text(&c, "table.devices").await.contains("laptop"));
    screenshot(&c, "my-account").await;

    // Admin pages: 403, with a way back.
    for path in ["/users", "/settings/enrollment", "/users/other/enroll", "/api-tokens"] {
        assert_eq!(status_of(&c, path).await, 403, "{path}");
    }
    c.goto(&app.url("/users")).await.unwrap();
    assert!(text(&c, "main").await.contains("for administrators"));

    // A device of someone else cannot be deleted through my page.
    let cookie = format!("onramp_session={}", c.get_named_cookie("onramp_session").await.unwrap().value());
    let csrf = csrf_of(&app, &cookie, "/me").await;
    let r = http()
        .post(app.url(&format!("/me/devices/{}/delete", theirs["id"])))
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.call("GET", &format!("/api/v1/device/{}", theirs["id"]), None).await.0, StatusCode::OK);

    // Configure desktop client for myself: a desktop token of my own account.
    c.goto(&app.url("/me")).await.unwrap();
    click(&c, "#me-desktop").await;
    let token = wait_for(&c, "#token").await.prop("value").await.unwrap().unwrap();
    assert_eq!(token.len(), 32);
    assert!(c.find(Locator::Id("qr")).await.is_ok() && c.find(Locator::Id("download-provisioning")).await.is_ok());
    let (_, pending) = app.call("GET", "/api/v1/user/jdoe/tokens", None).await;
    assert_eq!(pending[0]["kind"], "desktop_config", "{pending}");
    let (_, others) = app.call("GET", "/api/v1/user/other/tokens", None).await;
    assert_eq!(others.as_array().unwrap().len(), 0);

    // Change password: the current one is checked, the policy applies, then it works.
    c.goto(&app.url("/me")).await.unwrap();
    fill(&c, "#f-current_password", "wrong").await;
    fill(&c, "#f-password", "N3w!Password").await;
    fill(&c, "#f-password2", "N3w!Password").await;
    click(&c, "form[action=\"/me/password\"] button").await;
    assert!(text(&c, "#f-current_password-error").await.contains("current password is wrong"));
    fill(&c, "#f-current_password", USER_PASSWORD).await;
    fill(&c, "#f-password", "weak").await;
    fill(&c, "#f-password2", "weak").await;
    click(&c, "form[action=\"/me/password\"] button").await;
    assert!(text(&c, "#f-password-error").await.len() > 5);
    fill(&c, "#f-current_password", USER_PASSWORD).await;
    fill(&c, "#f-password", "N3w!Password").await;
    fill(&c, "#f-password2", "N3w!Password").await;
    click(&c, "form[action=\"/me/password\"] button").await;
    assert!(text(&c, "p.notice").await.contains("Password changed"));
    assert!(sign_in_http(&app, "jdoe", USER_PASSWORD).await.is_err());
    assert!(sign_in_http(&app, "jdoe", "N3w!Password").await.is_ok());

    // Delete my device.
    click(&c, "table.devices button.danger").await;
    for _ in 0..100 {
        if text(&c, "p.notice").await.contains("Device deleted") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text(&c, "p.notice").await.contains("Device deleted"));
    assert_eq!(app.call("GET", &format!("/api/v1/device/{}", mine["id"]), None).await.0, StatusCode::NOT_FOUND);

    // Sign out ends the session for good.
    click(&c, "form.logout button").await;
    wait_for(&c, "main.signin").await;
    assert_eq!(
        http().get(app.url("/me")).header("cookie", &cookie).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    app.stop().await;
}

/// Sessions are in the database: a second core on the same PostgreSQL honours them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_works_on_every_replica() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = TestApp::builder(Backend::Postgres).database_url(&a.database_url).spawn().await;
    admin_password(&a).await;
    let cookie = sign_in_http(&a, "admin", ADMIN_PASSWORD).await.unwrap();
    let r = http().get(b.url("/users")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Showing"));
    // Signing out on one ends it on the other.
    let csrf = csrf_of(&b, &cookie, "/users").await;
    http().post(b.url("/logout")).header("cookie", &cookie).form(&[("_csrf", csrf.as_str())]).send().await.unwrap();
    let r = http().get(a.url("/users")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    tokio::time::sleep(Duration::from_millis(10)).await;
    b.stop().await;
    a.stop().await;
}
