//! Helpers of the admin web UI tests (`mod web;`): sign in through the real page, find
//! things, save screenshots under `target/screenshots/` (and `docs/` when asked).
#![allow(dead_code)]

use crate::chrome::{browser, Driver};
use crate::common::TestApp;
use fantoccini::{Client, Locator};
use std::time::Duration;

pub const ADMIN_PASSWORD: &str = "Adm1n!Passw0rd";

/// Gives the bootstrap admin a password (as `onramp admin set-password` does).
pub async fn admin_password(app: &TestApp) {
    app.core
        .set_password(&onramp_core::Actor::system("test"), "admin", ADMIN_PASSWORD.into())
        .await
        .expect("set admin password");
}

/// A laptop-sized browser window.
pub async fn open(d: &Driver) -> Client {
    let c = browser(d).await;
    c.set_window_size(1366, 900).await.expect("window size");
    c
}

/// Signs in through the sign-in page and waits for the landing page.
pub async fn sign_in(c: &Client, app: &TestApp, username: &str, password: &str) {
    c.goto(&app.url("/login")).await.unwrap();
    fill(c, "#username", username).await;
    fill(c, "#password", password).await;
    click(c, "#signin").await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("form.logout"))
        .await
        .unwrap_or_else(|e| panic!("sign-in as {username} did not land on a signed-in page: {e}"));
}

pub async fn fill(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

pub async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
}

/// The text of the first match; retried while a navigation replaces the page under it.
pub async fn text(c: &Client, css: &str) -> String {
    for _ in 0..50 {
        if let Ok(t) = wait_for(c, css).await.text().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css}: the element kept going stale");
}

pub async fn body_text(c: &Client) -> String {
    text(c, "body").await
}

/// Saves a PNG of the window to `target/screenshots/NAME.png`, and to `docs/screenshots/`
/// too when `ONRAMP_UPDATE_DOCS_SCREENSHOTS=1` (how the README's pictures are refreshed).
pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    if std::env::var("ONRAMP_UPDATE_DOCS_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = root.join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
    }
}

/// The HTTP status of a page, fetched with the browser's cookies (WebDriver cannot read
/// statuses): `fetch` from inside the page.
pub async fn status_of(c: &Client, path: &str) -> u16 {
    let v = c
        .execute_async(
            "const [p, done] = arguments; fetch(p, {redirect: 'manual'}).then(r => done(r.status), e => done(-1));",
            vec![serde_json::json!(path)],
        )
        .await
        .unwrap();
    v.as_i64().unwrap() as u16
}
