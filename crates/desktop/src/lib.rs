//! `onramp-desktop`: the Onramp client as a window. On first start it finds the provisioning
//! the way the CLI does and walks the user through enrollment; then it lists every instance's
//! locations with a connect switch, and sits in the tray. All logic (discovery, enrollment,
//! store, sync, tunnels through `onramp-client service`) is the client library's; this crate
//! only draws it and turns clicks into calls.

pub mod app;
pub mod backend;
pub mod icon;
mod icon_pixels;
pub mod markdown;
pub mod model;
pub mod prefs;
pub mod single;
pub mod tray;
pub mod widgets;

pub use app::{DesktopApp, Outside};
