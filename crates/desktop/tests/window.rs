//! The real `onramp-desktop` binary in a real X window (Xvfb, software OpenGL) with a D-Bus
//! session for its tray: it opens, a second launch hands its deep link to the running app
//! and exits, the token never reaches the log, and "start minimised" keeps the window in the
//! tray.

mod xvfb;

use std::time::Duration;
use xvfb::Display;

const TOKEN: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";

#[test]
fn the_window_opens_and_a_second_launch_hands_over_its_link() {
    let x = Display::start();
    let dir = tempfile::tempdir().unwrap();
    let data = xvfb::data_dir(dir.path());
    let app = x.launch(&data, &[]);
    app.wait_line("first frame", Duration::from_secs(60));
    // Nothing to enroll with: the window waits on "Add an instance".
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while x.window_state().as_deref() != Some("IsViewable") {
        assert!(std::time::Instant::now() < deadline, "the window never showed: {:?}", x.window_state());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The invitation's link clicked while the app runs: the OS starts a second process.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut link = url::Url::parse("onramp://enroll").unwrap();
    link.query_pairs_mut().append_pair("url", &format!("http://127.0.0.1:{port}/")).append_pair("token", TOKEN);
    let second = x.command(&data, &[link.as_str()]).output().unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    app.wait_line("request from another launch", Duration::from_secs(20));
    // The first app took the link and tried the (unreachable) edge with it.
    app.wait_line("Cannot reach", Duration::from_secs(20));
    let log = app.stop();
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
}

#[test]
fn start_minimised_stays_in_the_tray_until_asked() {
    let x = Display::start();
    let dir = tempfile::tempdir().unwrap();
    let data = xvfb::data_dir(dir.path());
    let app = x.launch(&data, &["--minimised"]);
    app.wait_line("tray icon ready", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(x.window_state().as_deref(), Some("IsViewable"), "a minimised start shows no window");
    // A second launch without a link brings the window up.
    let second = x.command(&data, &[]).output().unwrap();
    assert!(second.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while x.window_state().as_deref() != Some("IsViewable") {
        assert!(std::time::Instant::now() < deadline, "the window never showed:\n{}", app.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
