//! Web UI groups and locations pages in headless Chromium against a real server, and the
//! users list on a phone-sized screen.

mod common;
use common::*;
mod chrome;
mod web;
use chrome::start_chromedriver;
use fantoccini::Locator;
use web::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_locations() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    admin_password(&app).await;
    app.create_user("jdoe").await;
    let driver = start_chromedriver();
    let c = open(&driver).await;
    sign_in(&c, &app, "admin", ADMIN_PASSWORD).await;

    // Groups: create one, add and remove a member, see it on the list.
    c.goto(&app.url("/groups")).await.unwrap();
    fill(&c, "#f-name", "engineering").await;
    click(&c, "form.card button.primary").await;
    wait_for(&c, "p.notice").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/groups/engineering"));
    fill(&c, "#f-username", "nobody").await;
    click(&c, "form[action=\"/groups/engineering/members\"] button").await;
    assert!(text(&c, "p.error").await.contains("nobody"), "an unknown user is named");
    fill(&c, "#f-username", "jdoe").await;
    click(&c, "form[action=\"/groups/engineering/members\"] button").await;
    wait_for(&c, "p.notice").await;
    let (_, g) = app.call("GET", "/api/v1/group/engineering", None).await;
    assert_eq!(g["members"], json!(["jdoe"]));

    // Locations: a bad subnet is refused at its field with what was typed kept; then created
    // open to the group, which the group page then lists.
    c.goto(&app.url("/locations/new")).await.unwrap();
    fill(&c, "#f-name", "office").await;
    fill(&c, "#f-address", "10.1.0.1/33").await;
    fill(&c, "#f-endpoint", "vpn.example.com").await;
    click(&c, "input[name=allowed_groups][value=engineering]").await;
    click(&c, "form.card button.primary").await;
    let err = text(&c, "#f-address-error").await;
    assert!(!err.is_empty());
    assert_eq!(
        c.find(Locator::Id("f-endpoint")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("vpn.example.com")
    );
    assert_eq!(
        c.find(Locator::Css("input[name=allowed_groups][value=engineering]"))
            .await
            .unwrap()
            .prop("checked")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    fill(&c, "#f-address", "10.1.0.1/24").await;
    click(&c, "form.card button.primary").await;
    wait_for(&c, "p.notice").await;
    let (_, l) = app.call("GET", "/api/v1/location", None).await;
    let l = l.as_array().cloned().unwrap_or_else(|| l["locations"].as_array().unwrap().clone());
    assert_eq!(l[0]["allowed_groups"], json!(["engineering"]));
    assert!(text(&c, "main").await.contains("No gateway has connected yet"));

    // A gateway token is shown once on the location page.
    fill(&c, "#f-token_name", "gw1").await;
    click(&c, "#new-gateway-token").await;
    let token = wait_for(&c, "#gateway-token").await.prop("value").await.unwrap().unwrap();
    assert!(token.len() >= 32);
    let (_, tokens) = app.call("GET", &format!("/api/v1/location/{}/gateway_token", l[0]["id"]), None).await;
    assert!(tokens.to_string().contains("gw1"), "{tokens}");
    screenshot(&c, "location").await;

    // Edit: rename, and the list shows the new name and its gateway state.
    let id = l[0]["id"].as_i64().unwrap();
    c.goto(&app.url(&format!("/locations/{id}"))).await.unwrap();
    fill(&c, "#f-name", "hq").await;
    click(&c, "form.card button.primary").await;
    wait_for(&c, "p.notice").await;
    c.goto(&app.url("/locations")).await.unwrap();
    let list = text(&c, "table.locations").await;
    assert!(list.contains("hq") && list.contains("no gateway yet"), "{list}");
    c.goto(&app.url("/groups")).await.unwrap();
    assert!(text(&c, "table.groups").await.contains("hq"));
    screenshot(&c, "groups").await;

    // Removing the member from the group page.
    c.goto(&app.url("/groups/engineering")).await.unwrap();
    click(&c, "form[action=\"/groups/engineering/members/jdoe/remove\"] button").await;
    wait_for(&c, "p.notice").await;
    let (_, g) = app.call("GET", "/api/v1/group/engineering", None).await;
    assert_eq!(g["members"], json!([]));

    // The users list reads on a phone: rows stack, the menu still opens.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&app.url("/users")).await.unwrap();
    let menu = wait_for(&c, "tr[data-user=\"jdoe\"] details.menu").await;
    menu.find(Locator::Css("summary")).await.unwrap().click().await.unwrap();
    assert!(menu.find(Locator::LinkText("Start enrollment")).await.unwrap().is_displayed().await.unwrap());
    screenshot(&c, "users-list-phone").await;
    app.stop().await;
}
