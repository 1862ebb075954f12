//! `/metrics` labels requests by method from a fixed set: invented methods must not each
//! create a new time series (issue 10, item 17).

mod common;
use common::*;

#[tokio::test]
async fn invented_methods_share_one_label() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for i in 0..5 {
        let m = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        for path in ["/api/v1/health", "/api/v1/user", "/api/v1/nope"] {
            let r = app.client.request(m.clone(), app.url(path)).bearer_auth(&app.token).send().await.unwrap();
            assert!(r.status().is_client_error(), "{path}: {}", r.status());
        }
    }
    app.call("GET", "/api/v1/user", None).await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("FOO"), "an invented method became a label:\n{metrics}");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
    assert!(metrics.contains(r#"method="GET""#), "{metrics}");
    app.stop().await;
}
