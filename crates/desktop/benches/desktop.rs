//! The desktop app's startup, idle cost and memory, measured on the real binary in a real X
//! window (Xvfb, Mesa's software OpenGL) with a D-Bus session for the tray.
//!
//! `cargo bench -p onramp-desktop --bench desktop [-- RUNS]` prints:
//! - cold start to first frame, without and with a provisioning file (the second also to the
//!   "Welcome" screen, which needs the server's answer), over RUNS launches (default 5);
//! - idle CPU over 10 s with the window open on the locations list, and started in the tray;
//! - resident memory (now and peak).
//!
//! Targets (issue 13): first frame < 400 ms, idle CPU < 1 %, RSS < 80 MB.

#[path = "../tests/xvfb/mod.rs"]
mod xvfb;

use onramp_client::enroll::{self, DeviceName, Interaction};
use onramp_testkit::app::{Backend, TestApp};
use serde_json::json;
use std::time::Duration;

const PASSWORD: &str = "Str0ng!Pass";

struct Unattended;

impl Interaction for Unattended {
    fn show_start(&mut self, _: &onramp_proto::EnrollmentStartResponse) {}
    fn password(&mut self) -> Result<String, String> {
        Ok(PASSWORD.into())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:7.0} {:7.0} {:7.0}", v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    std::env::set_var("ONRAMP_CLIENT_ALLOW_HTTP", "1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(async {
        let app = TestApp::builder(Backend::Sqlite).spawn().await;
        app.create_location("office", "10.1.0.1/24").await;
        app
    });
    let token = |user: &str| {
        rt.block_on(async {
            app.create_user(user).await;
            let (_, v) = app.call("POST", &format!("/api/v1/user/{user}/start_enrollment"), Some(json!({}))).await;
            v["enrollment_token"].as_str().unwrap().to_owned()
        })
    };
    let x = xvfb::Display::start();
    println!("onramp-desktop ({}), {runs} launches each, Xvfb + llvmpipe", xvfb::BIN);
    println!();
    println!("{:<44} {:>7} {:>7} {:>7}", "cold start (ms)", "min", "median", "max");

    let mut plain = vec![];
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let a = x.launch(&xvfb::data_dir(dir.path()), &[]);
        plain.push(ms(a.wait_line("first frame", Duration::from_secs(60)).1));
        a.stop();
    }
    println!("{:<44} {}", "first frame, no provisioning file", summary(plain));

    let (mut first, mut welcome) = (vec![], vec![]);
    for i in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let data = xvfb::data_dir(dir.path());
        let t = token(&format!("cold{i}"));
        std::fs::write(
            data.join("provisioning.json"),
            json!({"enrollment_token": t, "enrollment_url": format!("{}/", app.edge_url)}).to_string(),
        )
        .unwrap();
        let a = x.launch(&data, &[]);
        first.push(ms(a.wait_line("first frame", Duration::from_secs(60)).1));
        welcome.push(ms(a.wait_line("screen: enroll", Duration::from_secs(60)).1));
        a.stop();
    }
    println!("{:<44} {}", "first frame, with provisioning.json", summary(first));
    println!("{:<44} {}", "\"Welcome\" screen shown, with provisioning.json", summary(welcome));

    // An enrolled machine: the window opens on the locations list.
    let dir = tempfile::tempdir().unwrap();
    let data = xvfb::data_dir(dir.path());
    let t = token("idle");
    rt.block_on(async {
        let store = onramp_client::Store::open(&data).await.unwrap();
        let url = url::Url::parse(&format!("{}/", app.edge_url)).unwrap();
        enroll::enroll(&store, &url, &t, &DeviceName::Default("bench".into()), &mut Unattended).await.unwrap();
        store.close().await;
    });
    println!();
    println!(
        "{:<44} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "idle, 10 s after 3 s to settle", "CPU %", "RSS MB", "peak MB", "anon MB", "file MB"
    );
    for (what, args) in [("window open (locations list)", &[][..]), ("started in the tray", &["--minimised"][..])] {
        let a = x.launch(&data, args);
        a.wait_line(if args.is_empty() { "first frame" } else { "tray icon ready" }, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(3));
        let before = a.cpu_time();
        std::thread::sleep(Duration::from_secs(10));
        let used = a.cpu_time() - before;
        let (rss, peak, anon, file) = a.rss_kib();
        let mb = |k: u64| k as f64 / 1024.0;
        println!(
            "{:<44} {:>7.2} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            what,
            used.as_secs_f64() / 10.0 * 100.0,
            mb(rss),
            mb(peak),
            mb(anon),
            mb(file)
        );
        a.stop();
    }
    drop(x);
    rt.block_on(app.stop());
}
