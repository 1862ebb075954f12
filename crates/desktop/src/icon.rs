//! The app's icon, drawn here so the window, the tray and the packages share one picture: a
//! rounded square with a road curving up (the "on-ramp"); grey when no tunnel is up.

pub use crate::icon_pixels::rgba;

pub fn egui_icon(size: u32, connected: bool) -> egui::IconData {
    egui::IconData { rgba: rgba(size, connected), width: size, height: size }
}
