//! Driving the app's window in tests: wait for text, fill fields, save screenshots.

#![allow(dead_code)]

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use onramp_desktop::DesktopApp;
use std::path::Path;
use std::time::{Duration, Instant};

/// Steps the window until `label` shows (the worker answers in the background).
pub fn wait_for(h: &mut Harness<'_, DesktopApp>, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        h.step();
        if h.query_all_by_label_contains(label).next().is_some() {
            h.run_steps(2);
            return;
        }
        if Instant::now() > deadline {
            panic!("no {label:?} on the screen; it shows:\n{:#?}", h.root());
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Some text on the screen contains `text`.
pub fn shows(h: &Harness<'_, DesktopApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Puts `text` into the field labelled `label`, replacing what it held.
pub fn fill(h: &mut Harness<'_, DesktopApp>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label(label).type_text(text);
    h.run_steps(2);
}

pub fn screenshot(h: &mut Harness<'_, DesktopApp>, name: &str) {
    let img = h.render().expect("render the window (install mesa-vulkan-drivers for a software adapter)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec![root.join("target/screenshots")];
    if std::env::var("ONRAMP_UPDATE_DOCS_SCREENSHOTS").as_deref() == Ok("1") {
        dirs.push(root.join("docs/screenshots"));
    }
    for d in dirs {
        std::fs::create_dir_all(&d).unwrap();
        let f = std::fs::File::create(d.join(format!("desktop-{name}.png"))).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), img.width(), img.height());
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(img.as_raw()).unwrap();
    }
}
