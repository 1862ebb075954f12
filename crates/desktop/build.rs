//! For Windows builds: the app's icon as `onramp.ico` (16 to 256 px, drawn by the same code
//! as the window and tray icons) linked into the executable, so Explorer, the Start menu
//! shortcut and the `onramp://` registration show it.

#[path = "src/icon_pixels.rs"]
#[allow(dead_code)]
mod icon_pixels;

fn main() {
    println!("cargo:rerun-if-changed=src/icon_pixels.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut dir = ico::IconDir::new(ico::ResourceType::Icon);
    for size in [16, 24, 32, 48, 64, 128, 256] {
        let image = ico::IconImage::from_rgba_data(size, size, icon_pixels::rgba(size, true));
        dir.add_entry(ico::IconDirEntry::encode(&image).expect("encode the icon"));
    }
    let ico_path = out.join("onramp.ico");
    dir.write(std::fs::File::create(&ico_path).expect("write onramp.ico")).expect("write onramp.ico");
    let rc = out.join("onramp.rc");
    let escaped = ico_path.display().to_string().replace('\\', "\\\\");
    std::fs::write(&rc, format!("1 ICON \"{escaped}\"\n")).expect("write onramp.rc");
    embed_resource::compile(&rc, embed_resource::NONE).manifest_required().expect("link the icon resource");
}
