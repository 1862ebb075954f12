//! The window: one screen at a time (first-start enrollment, add instance, problems, the
//! locations list), drawn from the state the worker reports. Nothing here waits on I/O; a
//! button sends a [`Cmd`] and the answer comes back as an [`Event`].

use crate::backend::{Backend, Cmd, Event, InstanceView, LocationView, ServiceState, SessionView};
use crate::model::{self, Problem, Retry};
use crate::prefs::Prefs;
use crate::widgets::switch;
use egui::{Color32, RichText};
use onramp_client::enroll::DeviceName;
use onramp_domain::link::parse_enroll_link;
use std::collections::HashMap;
use std::time::Duration;

/// Something outside the window asks for attention: a second launch, a deep link, the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside {
    Show,
    DeepLink(String),
    Connect { instance_id: String, network_id: i64 },
    Disconnect { instance_id: String, network_id: i64 },
    Quit,
}

/// No `Debug` on the screens and forms: they hold passwords and tokens.
enum Screen {
    /// The first discovery: the worker has not said yet what this machine has.
    Starting,
    Loading(String),
    AddInstance(AddForm),
    Enroll(Box<EnrollForm>),
    /// A step under way; the enrollment form comes back if the step can be tried again.
    Working(String, Option<Box<EnrollForm>>),
    Done {
        instance_name: String,
        locations: Vec<String>,
        onboarding: String,
    },
    Failed(Problem),
    Main,
}

#[derive(Default)]
struct AddForm {
    link: String,
    token: String,
    error: Option<String>,
}

struct EnrollForm {
    view: SessionView,
    password: String,
    confirm: String,
    device: String,
    error: Option<String>,
}

#[derive(Default)]
struct UpdateForm {
    instance_name: String,
    link: String,
    token: String,
    error: Option<String>,
}

pub struct DesktopApp {
    backend: Backend,
    prefs: Prefs,
    allow_http: bool,
    screen: Screen,
    instances: Vec<InstanceView>,
    service: ServiceState,
    /// Switches flipped whose answer has not come yet, with the state asked for.
    pending: HashMap<(String, i64), bool>,
    notice: Option<String>,
    update: Option<UpdateForm>,
    confirm_remove: Option<(String, String)>,
    /// A deep link that came before the first screen was known.
    queued_link: Option<String>,
    md_cache: egui_commonmark::CommonMarkCache,
    now: fn() -> i64,
}

impl DesktopApp {
    pub fn new(backend: Backend, prefs: Prefs, allow_http: bool, deep_link: Option<String>) -> DesktopApp {
        backend.send(Cmd::Discover);
        DesktopApp {
            backend,
            prefs,
            allow_http,
            screen: Screen::Starting,
            instances: vec![],
            service: ServiceState::Unknown,
            pending: HashMap::new(),
            notice: None,
            update: None,
            confirm_remove: None,
            queued_link: deep_link,
            md_cache: Default::default(),
            now: onramp_client::now,
        }
    }

    /// True while some tunnel is up (the tray icon shows it).
    pub fn connected(&self) -> Vec<String> {
        self.instances
            .iter()
            .flat_map(|i| i.locations.iter().filter(|l| l.tunnel.is_some()).map(|l| l.name.clone()))
            .collect()
    }

    pub fn instances(&self) -> &[InstanceView] {
        &self.instances
    }

    pub fn prefs(&self) -> &Prefs {
        &self.prefs
    }

    /// Handles a request from outside the window (tray, second launch, deep link).
    pub fn outside(&mut self, o: Outside) {
        match o {
            Outside::Show | Outside::Quit => {}
            Outside::DeepLink(link) => {
                if matches!(self.screen, Screen::Starting) {
                    self.queued_link = Some(link);
                } else {
                    self.open_link(link);
                }
            }
            Outside::Connect { instance_id, network_id } => {
                self.pending.insert((instance_id.clone(), network_id), true);
                self.backend.send(Cmd::Connect { instance_id, network_id });
            }
            Outside::Disconnect { instance_id, network_id } => {
                self.pending.insert((instance_id.clone(), network_id), false);
                self.backend.send(Cmd::Disconnect { instance_id, network_id });
            }
        }
    }

    fn open_link(&mut self, link: String) {
        match parse_enroll_link(&link, self.allow_http) {
            Ok(l) => match l.token {
                Some(token) => {
                    self.screen = Screen::Loading("Opening your invitation…".into());
                    self.backend.send(Cmd::Start { url: l.url, token, found: None });
                }
                None => self.screen = Screen::AddInstance(AddForm { link, ..Default::default() }),
            },
            Err(e) => {
                self.screen = Screen::AddInstance(AddForm { link, error: Some(e.to_string()), ..Default::default() })
            }
        }
    }

    fn apply(&mut self, e: Event) {
        match e {
            Event::NothingToEnroll { problem } => {
                self.screen = Screen::AddInstance(AddForm { error: problem, ..Default::default() });
            }
            Event::Provisioned { source } => {
                self.screen = Screen::Loading(format!("Found your invitation ({source}); opening it…"));
            }
            Event::SessionOpened(view) => {
                tracing::info!("screen: enroll");
                let device = view.suggested_name.clone();
                self.screen = Screen::Enroll(Box::new(EnrollForm {
                    view,
                    password: String::new(),
                    confirm: String::new(),
                    device,
                    error: None,
                }));
            }
            Event::Enrolled { instance_name, locations, onboarding } => {
                self.screen = Screen::Done { instance_name, locations, onboarding };
            }
            Event::Updated { instance_name, added, removed } => {
                self.update = None;
                let mut msg = format!("{instance_name} updated.");
                if !added.is_empty() {
                    msg.push_str(&format!(" New: {}.", added.join(", ")));
                }
                if !removed.is_empty() {
                    msg.push_str(&format!(" Removed: {}.", removed.join(", ")));
                }
                self.notice = Some(msg);
                // A deep link that turned out to be an update lands on the locations.
                if matches!(self.screen, Screen::Loading(_) | Screen::Starting) {
                    self.screen = Screen::Main;
                }
            }
            Event::UpdateFailed(problem) => {
                let mut text = problem.sentence.clone();
                if let Some(a) = &problem.admin {
                    text.push_str(&format!(" Your administrator: {a}"));
                }
                match self.update.as_mut() {
                    Some(u) => u.error = Some(text),
                    None => self.notice = Some(text),
                }
            }
            Event::Failed(mut problem) => {
                match std::mem::replace(&mut self.screen, Screen::Main) {
                    // A step the user can fix on the form (a name taken, a password refused).
                    Screen::Working(_, Some(mut f)) if !problem.ends_session => {
                        f.error = Some(problem.sentence);
                        self.screen = Screen::Enroll(f);
                    }
                    Screen::Working(_, Some(f)) => {
                        // Later steps' answers name nobody: the session's contact does.
                        problem.admin = problem.admin.or_else(|| f.view.admin.clone());
                        self.screen = Screen::Failed(problem);
                    }
                    _ => self.screen = Screen::Failed(problem),
                }
            }
            Event::Instances(v) => {
                // A switch stays busy until its tunnel is in the state asked for.
                self.pending.retain(|(id, net), want| {
                    let up = v
                        .iter()
                        .find(|i| &i.id == id)
                        .and_then(|i| i.locations.iter().find(|l| l.network_id == *net))
                        .map(|l| l.tunnel.is_some());
                    up.is_some_and(|up| up != *want)
                });
                self.instances = v;
                if matches!(self.screen, Screen::Starting) {
                    self.screen = Screen::Main;
                }
            }
            Event::Service(s) => self.service = s,
            Event::Notice(n) => {
                self.pending.clear();
                self.notice = Some(n);
            }
        }
        if !matches!(self.screen, Screen::Starting) {
            if let Some(link) = self.queued_link.take() {
                self.open_link(link);
            }
        }
    }

    /// Takes in what the worker reported; also runs while the window is hidden.
    pub fn pump(&mut self, ctx: &egui::Context) {
        self.backend.waker().set(ctx);
        for e in self.backend.drain() {
            self.apply(e);
        }
    }

    pub fn service(&self) -> &ServiceState {
        &self.service
    }

    /// Draws the window: call once per frame.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.pump(ui.ctx());
        egui::Panel::top("header").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading(RichText::new("Onramp").strong());
                if matches!(self.screen, Screen::Main) {
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if ui.button("Add instance").clicked() {
                            self.screen = Screen::AddInstance(AddForm::default());
                        }
                    });
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
                ui.add_space(8.0);
                match std::mem::replace(&mut self.screen, Screen::Main) {
                    Screen::Starting => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label("Looking for your invitation…");
                        });
                        self.screen = Screen::Starting;
                    }
                    Screen::Loading(msg) => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label(&msg);
                        });
                        self.screen = Screen::Loading(msg);
                    }
                    Screen::AddInstance(mut f) => {
                        let next = self.add_instance(ui, &mut f);
                        self.screen = next.unwrap_or(Screen::AddInstance(f));
                    }
                    Screen::Enroll(mut f) => {
                        let next = self.enroll(ui, &mut f);
                        self.screen = match next {
                            Some(Screen::Working(msg, None)) => Screen::Working(msg, Some(f)),
                            Some(s) => s,
                            None => Screen::Enroll(f),
                        };
                    }
                    Screen::Working(msg, form) => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label(&msg);
                        });
                        self.screen = Screen::Working(msg, form);
                    }
                    Screen::Done { instance_name, locations, onboarding } => {
                        let next = done(ui, &mut self.md_cache, &instance_name, &locations, &onboarding);
                        self.screen = next.unwrap_or(Screen::Done { instance_name, locations, onboarding });
                    }
                    Screen::Failed(p) => {
                        let next = self.failed(ui, &p);
                        self.screen = next.unwrap_or(Screen::Failed(p));
                    }
                    Screen::Main => self.main(ui),
                }
            });
        });
        self.dialogs(ui.ctx());
        crate::markdown::filter_links(ui.ctx());
    }

    fn add_instance(&mut self, ui: &mut egui::Ui, f: &mut AddForm) -> Option<Screen> {
        ui.heading("Add an instance");
        ui.label(
            "Paste the enrollment link from your invitation e-mail. If you have an enrollment URL and a \
             token instead, paste the URL here and the token below.",
        );
        ui.add_space(8.0);
        let l = ui.label("Enrollment link or URL");
        ui.add(
            egui::TextEdit::singleline(&mut f.link)
                .hint_text("onramp://enroll?… or https://…")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(l.id);
        let parsed = parse_enroll_link(&f.link, self.allow_http);
        let has_token = matches!(&parsed, Ok(p) if p.token.is_some());
        if has_token {
            ui.label(RichText::new("The link carries your token.").weak());
        } else {
            let l = ui.label("Token");
            ui.add(egui::TextEdit::singleline(&mut f.token).password(true).desired_width(f32::INFINITY))
                .labelled_by(l.id);
        }
        if let Some(e) = &f.error {
            error_text(ui, e);
        }
        ui.add_space(8.0);
        let mut next = None;
        ui.horizontal(|ui| {
            if ui.button("Continue").clicked() {
                match model::link_and_token(&f.link, &f.token, self.allow_http) {
                    Ok((url, token)) => {
                        self.backend.send(Cmd::Start { url, token, found: None });
                        next = Some(Screen::Loading("Opening your invitation…".into()));
                    }
                    Err(e) => f.error = Some(e),
                }
            }
            if !self.instances.is_empty() && ui.button("Cancel").clicked() {
                next = Some(Screen::Main);
            }
        });
        next
    }

    fn enroll(&mut self, ui: &mut egui::Ui, f: &mut EnrollForm) -> Option<Screen> {
        let v = &f.view;
        ui.heading(format!("Welcome, {}", v.first_name));
        ui.label(format!(
            "You are joining {} at {}. Check your details, then enroll this computer.",
            v.instance_name, v.host
        ));
        ui.add_space(8.0);
        let now = (self.now)();
        match model::countdown(v.deadline, now) {
            Some(left) => {
                ui.label(format!("Session ends in {left}"));
                ui.ctx().request_repaint_after(Duration::from_secs(1));
            }
            // Said, not enforced: this machine's clock may be off, and the server decides.
            None => error_text(
                ui,
                "The session has probably ended; if enrolling fails, ask your administrator for a new token.",
            ),
        }
        ui.add_space(6.0);
        egui::Grid::new("details").num_columns(2).spacing([16.0, 4.0]).show(ui, |ui| {
            let rows = [
                ("Name", format!("{} {}", v.first_name, v.last_name)),
                ("Login", v.login.clone()),
                ("E-mail", v.email.clone()),
                ("Phone", v.phone.clone().unwrap_or_else(|| "—".into())),
                ("Administrator", v.admin.clone().unwrap_or_else(|| "—".into())),
            ];
            for (k, val) in rows {
                ui.label(RichText::new(k).weak());
                ui.label(val);
                ui.end_row();
            }
        });
        ui.add_space(8.0);
        let mut ok = true;
        if v.needs_password {
            ui.label(RichText::new("Choose a password").strong());
            let l = ui.label("Password");
            ui.add(egui::TextEdit::singleline(&mut f.password).password(true)).labelled_by(l.id);
            let l = ui.label("Confirm password");
            ui.add(egui::TextEdit::singleline(&mut f.confirm).password(true)).labelled_by(l.id);
            let failed = onramp_domain::password::check(&f.password);
            for rule in [
                onramp_domain::password::PasswordRule::MinLength,
                onramp_domain::password::PasswordRule::Lowercase,
                onramp_domain::password::PasswordRule::Uppercase,
                onramp_domain::password::PasswordRule::Digit,
                onramp_domain::password::PasswordRule::Special,
            ] {
                let met = !failed.contains(&rule);
                rule_line(ui, met, rule.message());
            }
            if failed.contains(&onramp_domain::password::PasswordRule::MaxLength) {
                rule_line(ui, false, "at most 128 characters");
            }
            let same = !f.confirm.is_empty() && f.password == f.confirm;
            rule_line(ui, same, "both passwords match");
            ok &= failed.is_empty() && same;
            ui.add_space(8.0);
        }
        let l = ui.label("Device name");
        ui.add(egui::TextEdit::singleline(&mut f.device)).labelled_by(l.id);
        let name = f.device.trim();
        if name.is_empty() {
            ok = false;
        }
        if name.chars().count() > onramp_client::enroll::MAX_DEVICE_NAME {
            error_text(ui, "A device name has at most 64 characters.");
            ok = false;
        }
        if let Some(e) = &f.error {
            error_text(ui, e);
        }
        ui.add_space(8.0);
        let (enroll, cancel) = ui
            .horizontal(|ui| (ui.add_enabled(ok, egui::Button::new("Enroll this computer")), ui.button("Cancel")))
            .inner;
        if enroll.clicked() {
            // The suggestion is free already; one the user typed is theirs to keep or fix.
            let device = if name == v.suggested_name {
                DeviceName::Default(name.to_owned())
            } else {
                DeviceName::Chosen(name.to_owned())
            };
            let password = v.needs_password.then(|| f.password.clone());
            self.backend.send(Cmd::Finish { password, device });
            return Some(Screen::Working("Registering this computer…".into(), None));
        }
        if cancel.clicked() {
            self.backend.send(Cmd::Abandon);
            return Some(if self.instances.is_empty() {
                Screen::AddInstance(AddForm::default())
            } else {
                Screen::Main
            });
        }
        None
    }

    fn failed(&mut self, ui: &mut egui::Ui, p: &Problem) -> Option<Screen> {
        ui.heading(p.headline);
        ui.label(&p.sentence);
        if let Some(a) = &p.admin {
            ui.add_space(4.0);
            ui.label(format!("Your administrator: {a}"));
        }
        ui.add_space(8.0);
        let mut next = None;
        ui.horizontal(|ui| {
            if let Retry::Start { url, token, found } = &p.retry {
                if ui.button("Try again").clicked() {
                    self.backend.send(Cmd::Start { url: url.clone(), token: token.clone(), found: found.clone() });
                    next = Some(Screen::Loading("Trying again…".into()));
                }
            }
            if ui.button("Enter another token").clicked() {
                next = Some(Screen::AddInstance(AddForm::default()));
            }
            if !self.instances.is_empty() && ui.button("Back").clicked() {
                next = Some(Screen::Main);
            }
        });
        next
    }

    fn main(&mut self, ui: &mut egui::Ui) {
        if let ServiceState::Unavailable(msg) = &self.service {
            egui::Frame::group(ui.style()).fill(ui.visuals().warn_fg_color.gamma_multiply(0.15)).show(ui, |ui| {
                ui.label(RichText::new("Tunnel service not running").strong());
                ui.label(msg);
            });
            ui.add_space(6.0);
        }
        if let Some(n) = self.notice.clone() {
            ui.horizontal(|ui| {
                ui.label(n);
                if ui.small_button("Dismiss").clicked() {
                    self.notice = None;
                }
            });
            ui.add_space(6.0);
        }
        if self.instances.is_empty() {
            ui.label("This computer is not enrolled in any instance.");
            if ui.button("Add instance").clicked() {
                self.screen = Screen::AddInstance(AddForm::default());
            }
        }
        let can_switch = self.service == ServiceState::Running;
        let now = (self.now)();
        for i in self.instances.clone() {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    ui.label(RichText::new(&i.name).heading());
                    ui.label(RichText::new(format!("as {}", i.device_name)).weak());
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        ui.menu_button(format!("{} menu", i.name), |ui| {
                            if ui.button("Update instance").clicked() {
                                self.update = Some(UpdateForm {
                                    instance_name: i.name.clone(),
                                    link: i.edge_url.clone(),
                                    ..Default::default()
                                });
                            }
                            if ui.button("Remove").clicked() {
                                self.confirm_remove = Some((i.id.clone(), i.name.clone()));
                            }
                            ui.separator();
                            ui.label(RichText::new("Administrator").weak());
                            ui.label(i.admin.clone().unwrap_or_else(|| "not known".into()));
                        });
                    });
                });
                if let Some(note) = model::sync_note(&i.sync_state) {
                    error_text(ui, note);
                }
                if i.locations.is_empty() && model::sync_note(&i.sync_state).is_none() {
                    ui.label("No locations yet: your administrator has not given you any.");
                }
                for l in &i.locations {
                    self.location_row(ui, &i, l, can_switch, now);
                }
            });
            ui.add_space(8.0);
        }
        ui.add_space(8.0);
        ui.separator();
        let mut minimised = self.prefs.start_minimised;
        if ui.checkbox(&mut minimised, "Start minimised to the tray").changed() {
            self.prefs.start_minimised = minimised;
            if let Err(e) = self.prefs.save() {
                self.notice = Some(format!("Could not save the setting: {e}"));
            }
        }
    }

    fn location_row(&mut self, ui: &mut egui::Ui, i: &InstanceView, l: &LocationView, can_switch: bool, now: i64) {
        ui.horizontal(|ui| {
            let key = (i.id.clone(), l.network_id);
            let busy = self.pending.contains_key(&key);
            let mut on = l.tunnel.is_some();
            let resp = ui.add_enabled(can_switch && !busy, |ui: &mut egui::Ui| {
                switch(ui, &mut on, &format!("Connect {}", l.name))
            });
            if resp.changed() {
                self.pending.insert(key, on);
                let (instance_id, network_id) = (i.id.clone(), l.network_id);
                self.backend.send(if on {
                    Cmd::Connect { instance_id, network_id }
                } else {
                    Cmd::Disconnect { instance_id, network_id }
                });
            }
            ui.vertical(|ui| {
                ui.label(RichText::new(&l.name).strong());
                let status = match &l.tunnel {
                    Some(t) => {
                        let hs = match t.latest_handshake {
                            Some(h) if h > 0 => format!("handshake {}", model::ago(h, now)),
                            _ => "no handshake yet".into(),
                        };
                        format!(
                            "{} · connected · {hs} · received {} · sent {}",
                            l.address,
                            model::bytes(t.rx_bytes),
                            model::bytes(t.tx_bytes)
                        )
                    }
                    None if busy => format!("{} · working…", l.address),
                    None => format!("{} · not connected", l.address),
                };
                ui.label(RichText::new(status).weak());
            });
        });
    }

    fn dialogs(&mut self, ctx: &egui::Context) {
        if let Some(mut u) = self.update.take() {
            let mut keep = true;
            egui::Modal::new(egui::Id::unique("onramp-update")).show(ctx, |ui| {
                ui.set_width(420.0);
                ui.heading(format!("Update {}", u.instance_name));
                ui.label("Paste the new token (or the whole link) your administrator sent you.");
                let l = ui.label("Enrollment link or URL");
                ui.add(egui::TextEdit::singleline(&mut u.link).desired_width(f32::INFINITY)).labelled_by(l.id);
                let parsed = parse_enroll_link(&u.link, self.allow_http);
                if !matches!(&parsed, Ok(p) if p.token.is_some()) {
                    let l = ui.label("New token");
                    ui.add(egui::TextEdit::singleline(&mut u.token).password(true).desired_width(f32::INFINITY))
                        .labelled_by(l.id);
                }
                if let Some(e) = &u.error {
                    error_text(ui, e);
                }
                ui.horizontal(|ui| {
                    if ui.button("Apply").clicked() {
                        match model::link_and_token(&u.link, &u.token, self.allow_http) {
                            Ok((url, token)) => {
                                u.error = None;
                                self.backend.send(Cmd::UpdateInstance { url, token });
                            }
                            Err(e) => u.error = Some(e),
                        }
                    }
                    if ui.button("Cancel").clicked() {
                        keep = false;
                    }
                });
            });
            if keep {
                self.update = Some(u);
            }
        }
        if let Some((id, name)) = self.confirm_remove.take() {
            let mut keep = true;
            egui::Modal::new(egui::Id::unique("onramp-remove")).show(ctx, |ui| {
                ui.heading(format!("Remove {name}?"));
                ui.label("Its tunnels stop and its locations leave this computer. Your administrator still sees the device until they delete it.");
                ui.horizontal(|ui| {
                    if ui.button("Remove instance").clicked() {
                        self.backend.send(Cmd::Remove { instance_id: id.clone() });
                        keep = false;
                    }
                    if ui.button("Cancel").clicked() {
                        keep = false;
                    }
                });
            });
            if keep {
                self.confirm_remove = Some((id, name));
            }
        }
    }
}

fn done(
    ui: &mut egui::Ui,
    cache: &mut egui_commonmark::CommonMarkCache,
    instance: &str,
    locations: &[String],
    onboarding: &str,
) -> Option<Screen> {
    ui.heading("You're all set");
    ui.label(format!("This computer is enrolled in {instance}."));
    if locations.is_empty() {
        ui.label("You have no VPN locations yet; they appear here when your administrator adds them.");
    } else {
        ui.label(format!("Your locations: {}.", locations.join(", ")));
    }
    if !onboarding.trim().is_empty() {
        ui.add_space(8.0);
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            crate::markdown::show(ui, cache, onboarding);
        });
    }
    ui.add_space(8.0);
    ui.button("Show my locations").clicked().then_some(Screen::Main)
}

fn rule_line(ui: &mut egui::Ui, met: bool, text: &str) {
    let (mark, color) =
        if met { ("✔", Color32::from_rgb(40, 150, 70)) } else { ("✖", ui.visuals().error_fg_color) };
    ui.label(RichText::new(format!("{mark} {text}")).color(color));
}

fn error_text(ui: &mut egui::Ui, text: &str) {
    ui.label(RichText::new(text).color(ui.visuals().error_fg_color));
}
