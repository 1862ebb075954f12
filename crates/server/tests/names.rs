//! Names with invisible or bidirectional Unicode (issue 10, item 16) are refused with 400
//! and a message naming the field and the code point, on the admin API and the edge.

mod common;
use common::*;

on_both_backends!(bidi_and_invisible_names_are_refused);

const BAD: [(char, &str); 4] =
    [('\u{202E}', "U+202E"), ('\u{200B}', "U+200B"), ('\u{2028}', "U+2028"), ('\u{2029}', "U+2029")];

async fn bidi_and_invisible_names_are_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    // Admin API: users, groups, locations.
    for (c, code) in BAD {
        let (s, v) = app
            .call(
                "POST",
                "/api/v1/user",
                Some(json!({"username": "eve", "first_name": format!("Ev{c}e"), "last_name": "L", "email": "eve@example.com"})),
            )
            .await;
        assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("first_name") && msg.contains(code), "{msg}");
        let (s, v) = app.call("POST", "/api/v1/group", Some(json!({"name": format!("ops{c}")}))).await;
        assert_eq!(error_code(s, &v, StatusCode::BAD_REQUEST), "invalid_input");
        assert!(v["error"].as_str().unwrap().contains(code), "{v}");
    }
    let (s, v) = app.call("GET", "/api/v1/user/eve", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // The edge: create_device with such a name.
    app.create_user("ann").await;
    app.create_location("office", "10.1.0.1/24").await;
    let (_, v) = app.call("POST", "/api/v1/user/ann/start_enrollment", Some(json!({}))).await;
    let token = v["enrollment_token"].as_str().unwrap().to_owned();
    let r = app
        .client
        .post(format!("{}/api/v1/enrollment/start", app.edge_url))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    for (i, (c, code)) in BAD.into_iter().enumerate() {
        let r = app
            .client
            .post(format!("{}/api/v1/enrollment/create_device", app.edge_url))
            .header("cookie", &cookie)
            .json(&json!({"name": format!("laptop{c}gpj.exe"), "pubkey": pubkey(i as u8 + 1)}))
            .send()
            .await
            .unwrap();
        let s = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("name") && msg.contains(code), "{msg}");
    }
    let (_, devices) = app.call("GET", "/api/v1/device?username=ann", None).await;
    let list = devices.as_array().or(devices["items"].as_array()).unwrap_or_else(|| panic!("{devices}"));
    assert!(list.is_empty(), "{devices}");
    app.stop().await;
}
