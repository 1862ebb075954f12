//! `onramp-desktop [LINK] [--minimised]`: the Onramp app. LINK is an `onramp://enroll?...`
//! link (the OS passes it when one is clicked); a second launch hands it to the running app.

// A window app on Windows: no console window beside it.
#![cfg_attr(windows, windows_subsystem = "windows")]

use clap::Parser;
use onramp_desktop::backend::{Backend, Config, ServiceState};
use onramp_desktop::single::{self, Claim};
use onramp_desktop::tray::Tray;
use onramp_desktop::{icon, prefs::Prefs, DesktopApp, Outside};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

#[derive(Parser)]
#[command(name = "onramp-desktop", version, about = "The Onramp VPN client app")]
struct Args {
    /// An onramp://enroll?url=...&token=... link, or an enrollment URL.
    link: Option<String>,
    /// Start in the tray without opening the window.
    #[arg(long, alias = "minimized")]
    minimised: bool,
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONRAMP_DESKTOP_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot find the app data folder: {e}")),
    };
    if let Err(e) = onramp_client::dirs::ensure_private_dir(&config.data_dir) {
        return fail(&format!("cannot create {}: {e}", config.data_dir.display()));
    }
    // Requests from outside the window (later launches, the tray) queue here from the
    // start; the window wakes for them once it exists.
    let (tx, outside) = mpsc::channel();
    let window: Arc<Mutex<Option<egui::Context>>> = Arc::default();
    let inbox = {
        let window = window.clone();
        move |o: Outside| {
            let _ = tx.send(o);
            if let Some(ctx) = window.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                ctx.request_repaint();
            }
        }
    };
    match single::claim(&config.data_dir, args.link.as_deref()) {
        Ok(Claim::Forwarded) => return ExitCode::SUCCESS,
        // Served at once, so a launch right after this one finds the app.
        Ok(Claim::Primary(l)) => {
            let inbox = inbox.clone();
            l.serve(move |o| {
                // Never the link itself: it carries a token.
                tracing::info!(
                    kind = if matches!(o, Outside::Show) { "show" } else { "link" },
                    "request from another launch"
                );
                inbox(o)
            });
        }
        Err(e) => tracing::warn!("running without the single-instance socket: {e}"),
    }
    let prefs = Prefs::load(&config.data_dir);
    let allow_http = onramp_client::Settings::load(&config.data_dir).allow_http;
    let hidden = args.minimised || prefs.start_minimised;
    let backend = match Backend::start(config) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let app = DesktopApp::new(backend, prefs, allow_http, args.link);
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Glow,
        viewport: egui::ViewportBuilder::default()
            .with_title("Onramp")
            .with_app_id("onramp-desktop")
            .with_inner_size([560.0, 680.0])
            .with_min_inner_size([420.0, 360.0])
            .with_icon(icon::egui_icon(64, true))
            .with_visible(!hidden),
        ..Default::default()
    };
    let result = eframe::run_native(
        "Onramp",
        options,
        Box::new(move |cc| {
            *window.lock().unwrap_or_else(|e| e.into_inner()) = Some(cc.egui_ctx.clone());
            Ok(Box::new(Shell::new(&cc.egui_ctx, app, outside, inbox, hidden, started)))
        }),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot open the window: {e}")),
    }
}

/// Hides the window; Wayland cannot hide a window (winit ignores it there), so it is
/// minimised instead.
fn hide(ctx: &egui::Context) {
    if std::env::var_os("WAYLAND_DISPLAY").is_some() {
        ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(true));
    } else {
        ctx.send_viewport_cmd(egui::ViewportCommand::Visible(false));
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("onramp-desktop: {msg}");
    ExitCode::FAILURE
}

/// The window's surroundings: the tray, requests from other launches, close-to-tray.
struct Shell {
    app: DesktopApp,
    tray: Option<Tray>,
    outside: mpsc::Receiver<Outside>,
    menu: mpsc::Receiver<tray_icon::menu::MenuId>,
    quitting: bool,
    started: Option<Instant>,
}

impl Shell {
    fn new(
        ctx: &egui::Context,
        app: DesktopApp,
        outside: mpsc::Receiver<Outside>,
        wake: impl Fn(Outside) + Send + Sync + Clone + 'static,
        hidden: bool,
        started: Instant,
    ) -> Shell {
        let (mtx, menu) = mpsc::channel();
        let c = ctx.clone();
        let mtx = std::sync::Mutex::new(mtx);
        Tray::route(move |id| {
            let _ = mtx.lock().map(|t| t.send(id));
            c.request_repaint();
        });
        let tray = match Tray::new(wake) {
            Ok(t) => {
                tracing::info!("tray icon ready");
                Some(t)
            }
            Err(e) => {
                tracing::warn!("no tray icon ({e}); closing the window quits");
                None
            }
        };
        // eframe shows the window after its first frame whatever the builder said: hide it
        // again when asked, but only if the tray can bring it back.
        if hidden && tray.is_some() {
            hide(ctx);
        }
        Shell { app, tray, outside, menu, quitting: false, started: Some(started) }
    }

    fn handle(&mut self, ctx: &egui::Context, o: Outside) {
        match o {
            Outside::Show => {
                ctx.send_viewport_cmd(egui::ViewportCommand::Visible(true));
                ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(false));
                ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
            }
            Outside::Quit => {
                self.quitting = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            Outside::DeepLink(_) => {
                self.handle(ctx, Outside::Show);
                self.app.outside(o);
            }
            other => self.app.outside(other),
        }
    }
}

impl eframe::App for Shell {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.app.pump(ctx);
        while let Ok(o) = self.outside.try_recv() {
            self.handle(ctx, o);
        }
        while let Ok(id) = self.menu.try_recv() {
            if let Some(o) = self.tray.as_ref().and_then(|t| t.action(&id)) {
                self.handle(ctx, o);
            }
        }
        if let Some(t) = self.tray.as_mut() {
            t.update(self.app.instances(), *self.app.service() == ServiceState::Running);
        }
        if ctx.input(|i| i.viewport().close_requested()) && self.tray.is_some() && !self.quitting {
            // Close to the tray: tunnels stay up, the tray brings the window back.
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            hide(ctx);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.show(ui);
        if let Some(t) = self.started.take() {
            tracing::info!(ms = t.elapsed().as_millis() as u64, "first frame");
        }
    }
}
