//! The app's worker: a tokio runtime on its own thread that runs every network, store and
//! service call through the client library, so the window never waits on I/O. The window
//! sends [`Cmd`]s and drains [`Event`]s; each event wakes the window for one repaint.

use crate::model::{Problem, Retry};
use onramp_client::enroll::{self, DeviceName, EnrollError, Session};
use onramp_client::ipc::TunnelStatus;
use onramp_client::provision::{self, Found};
use onramp_client::tunnel::{self, ServiceClient, ServiceError};
use onramp_client::{sync, Settings, Store};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc as tmpsc;

/// Where the app keeps its data and whom it talks to.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// How often instances are polled for config changes.
    pub poll_every: Duration,
    /// How often tunnel status (handshake, bytes) is read from the service.
    pub status_every: Duration,
}

impl Config {
    /// The client's data directory and service socket, as the CLI finds them; the poll
    /// interval from `ONRAMP_DESKTOP_POLL_SECS` (default 5 minutes, like `daemon`).
    pub fn from_env() -> Result<Config, String> {
        let data_dir = match std::env::var_os("ONRAMP_CLIENT_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => onramp_client::dirs::data_dir()?,
        };
        let socket = tunnel::socket_path(std::env::var_os("ONRAMP_CLIENT_SOCKET").map(PathBuf::from).as_deref());
        let poll = std::env::var("ONRAMP_DESKTOP_POLL_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
        Ok(Config { data_dir, socket, poll_every: Duration::from_secs(poll), status_every: Duration::from_secs(2) })
    }
}

/// No `Debug`: commands carry tokens and passwords.
pub enum Cmd {
    /// First start: is there an instance, or a provisioning to enroll with?
    Discover,
    /// Opens an enrollment session.
    Start {
        url: url::Url,
        token: String,
        found: Option<Found>,
    },
    /// Finishes the open session: the password (new accounts) and the device name.
    Finish {
        password: Option<String>,
        device: DeviceName,
    },
    /// The user left the enrollment screen: the session (and its token) is dropped.
    Abandon,
    /// Applies a new token from the admin to an instance this machine has.
    UpdateInstance {
        url: url::Url,
        token: String,
    },
    Remove {
        instance_id: String,
    },
    Connect {
        instance_id: String,
        network_id: i64,
    },
    Disconnect {
        instance_id: String,
        network_id: i64,
    },
    /// Poll every instance now.
    Sync,
}

/// An enrollment session the user is looking at.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub first_name: String,
    pub last_name: String,
    pub login: String,
    pub email: String,
    pub phone: Option<String>,
    pub admin: Option<String>,
    pub instance_name: String,
    /// The server the invitation points at, shown so a link cannot hide where it leads.
    pub host: String,
    pub deadline: i64,
    pub needs_password: bool,
    /// This machine's host name, or its first suffix the user's other devices leave free.
    pub suggested_name: String,
    pub onboarding: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LocationView {
    pub network_id: i64,
    pub name: String,
    pub address: String,
    pub tunnel: Option<TunnelStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub edge_url: String,
    pub device_name: String,
    pub admin: Option<String>,
    /// `ok`, `needs_token`, `account_disabled`, `device_removed`, `stopped`.
    pub sync_state: String,
    pub last_sync_at: Option<i64>,
    pub locations: Vec<LocationView>,
}

/// Whether tunnels can be used here.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceState {
    Unknown,
    Running,
    /// Not running or refusing this user: the sentence says what to do.
    Unavailable(String),
}

/// No `Debug`: a failure can carry the token for its retry.
pub enum Event {
    /// The store has no instance and nothing to enroll with: show "Add instance".
    NothingToEnroll {
        problem: Option<String>,
    },
    /// A provisioning was found; enrollment starts with it.
    Provisioned {
        source: String,
    },
    SessionOpened(SessionView),
    Enrolled {
        instance_name: String,
        locations: Vec<String>,
        onboarding: String,
    },
    Updated {
        instance_name: String,
        added: Vec<String>,
        removed: Vec<String>,
    },
    Failed(Problem),
    /// Update instance failed (shown in its dialog, not as a screen).
    UpdateFailed(Problem),
    Instances(Vec<InstanceView>),
    Service(ServiceState),
    /// A passing message for the main window (a tunnel refused, a remove done).
    Notice(String),
}

/// The window's handle on the worker.
pub struct Backend {
    cmds: tmpsc::UnboundedSender<Cmd>,
    events: mpsc::Receiver<Event>,
    waker: Waker,
    _thread: std::thread::JoinHandle<()>,
}

/// Wakes the window when an event arrives; the context is known from the first frame on.
#[derive(Clone, Default)]
pub struct Waker(Arc<Mutex<Option<egui::Context>>>);

impl Waker {
    pub fn set(&self, ctx: &egui::Context) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(ctx.clone());
        }
    }

    pub fn wake(&self) {
        if let Some(ctx) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            ctx.request_repaint();
        }
    }
}

impl Backend {
    pub fn start(config: Config) -> Result<Backend, String> {
        onramp_client::dirs::ensure_private_dir(&config.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
        let (cmd_tx, cmd_rx) = tmpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let waker = Waker::default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("onramp-worker")
            .build()
            .map_err(|e| format!("cannot start: {e}"))?;
        let store = rt
            .block_on(Store::open(&config.data_dir))
            .map_err(|e| format!("cannot open the client store in {}: {e}", config.data_dir.display()))?;
        let w = waker.clone();
        let thread = std::thread::Builder::new()
            .name("onramp-backend".into())
            .spawn(move || {
                let worker = Worker {
                    settings: Settings::load(&config.data_dir),
                    service: ServiceClient::new(config.socket.clone()),
                    config,
                    store,
                    out: Sender { tx: ev_tx, waker: w },
                    session: None,
                    found: None,
                    last_status: None,
                };
                rt.block_on(worker.run(cmd_rx));
            })
            .map_err(|e| format!("cannot start: {e}"))?;
        Ok(Backend { cmds: cmd_tx, events: ev_rx, waker, _thread: thread })
    }

    pub fn send(&self, cmd: Cmd) {
        let _ = self.cmds.send(cmd);
    }

    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Events since the last frame.
    pub fn drain(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }
}

#[derive(Clone)]
struct Sender {
    tx: mpsc::Sender<Event>,
    waker: Waker,
}

impl Sender {
    fn send(&self, e: Event) {
        if let Event::Failed(p) | Event::UpdateFailed(p) = &e {
            tracing::warn!(headline = p.headline, "{}", p.sentence);
        }
        if self.tx.send(e).is_ok() {
            self.waker.wake();
        }
    }
}

struct Worker {
    config: Config,
    settings: Settings,
    store: Store,
    service: ServiceClient,
    out: Sender,
    session: Option<Session>,
    /// Where the session's token came from (deleted once spent, if the user's own file).
    found: Option<Found>,
    /// The last status sent, so an unchanged one wakes no one.
    last_status: Option<(Vec<InstanceView>, ServiceState)>,
}

impl Worker {
    async fn run(mut self, mut cmds: tmpsc::UnboundedReceiver<Cmd>) {
        let mut poll = tokio::time::interval(self.config.poll_every);
        let mut status = tokio::time::interval(self.config.status_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                _ = poll.tick() => self.sync().await,
                _ = status.tick() => self.publish().await,
            }
        }
        self.store.close().await;
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Discover => self.discover().await,
            Cmd::Start { url, token, found } => {
                self.session = None;
                self.found = found.clone();
                match Session::open(&self.store, &url, &token).await {
                    Ok(s) => {
                        let view = session_view(&s, &url);
                        self.session = Some(s);
                        self.out.send(Event::SessionOpened(view));
                    }
                    // A new token for an instance this machine has (a desktop token mailed
                    // by the admin): what the user wants is the update.
                    Err(EnrollError::AlreadyEnrolled { .. }) => self.update(url, token, false).await,
                    Err(e) => self.out.send(Event::Failed(Problem::of(&e, Retry::Start { url, token, found }))),
                }
            }
            Cmd::Finish { password, device } => self.finish(password, device).await,
            Cmd::Abandon => {
                self.session = None;
                self.found = None;
            }
            Cmd::UpdateInstance { url, token } => self.update(url, token, true).await,
            Cmd::Remove { instance_id } => {
                // Its tunnels go first: the service must not keep a tunnel nobody can see.
                for t in self.service.tunnels().await.unwrap_or_default() {
                    if t.instance_id == instance_id {
                        let _ = self.service.disconnect(Some((t.instance_id, t.network_id))).await;
                    }
                }
                match self.store.remove_instance(&instance_id).await {
                    Ok(_) => self.out.send(Event::Notice("Instance removed from this computer.".into())),
                    Err(e) => self.out.send(Event::Notice(format!("Could not remove the instance: {e}"))),
                }
                self.publish_now().await;
            }
            Cmd::Connect { instance_id, network_id } => {
                if let Err(msg) = self.connect(&instance_id, network_id).await {
                    self.out.send(Event::Notice(msg));
                }
                self.publish_now().await;
            }
            Cmd::Disconnect { instance_id, network_id } => {
                if let Err(e) = self.service.disconnect(Some((instance_id, network_id))).await {
                    self.out.send(Event::Notice(format!("Could not disconnect: {e}")));
                }
                self.publish_now().await;
            }
            Cmd::Sync => self.sync().await,
        }
    }

    async fn discover(&mut self) {
        match self.store.is_initialized().await {
            Ok(true) => return self.publish_now().await,
            Ok(false) => {}
            Err(e) => return self.out.send(Event::NothingToEnroll { problem: Some(e.to_string()) }),
        }
        match provision::find(&self.config.data_dir, None, self.settings.allow_http) {
            Ok(Some((found, file))) => {
                match onramp_domain::provisioning::check_url(&file.enrollment_url, self.settings.allow_http) {
                    Ok(url) => {
                        self.out.send(Event::Provisioned { source: found.to_string() });
                        Box::pin(self.handle(Cmd::Start { url, token: file.enrollment_token, found: Some(found) }))
                            .await;
                    }
                    Err(e) => self.out.send(Event::NothingToEnroll { problem: Some(format!("{found}: {e}")) }),
                }
            }
            Ok(None) => self.out.send(Event::NothingToEnroll { problem: None }),
            Err(e) => self.out.send(Event::NothingToEnroll { problem: Some(e.to_string()) }),
        }
    }

    /// `from_dialog`: the user asked in the Update instance dialog (failures go there).
    async fn update(&mut self, url: url::Url, token: String, from_dialog: bool) {
        match enroll::update_instance(&self.store, &url, &token).await {
            Ok(done) => {
                self.out.send(Event::Updated {
                    instance_name: done.instance_name,
                    added: done.diff.added,
                    removed: done.diff.removed,
                });
                let _ = tunnel::refresh_connected(&self.store, &self.service).await;
                self.publish_now().await;
            }
            Err(e) if from_dialog => self.out.send(Event::UpdateFailed(Problem::of(&e, Retry::None))),
            Err(e) => self.out.send(Event::Failed(Problem::of(&e, Retry::None))),
        }
    }

    async fn finish(&mut self, password: Option<String>, device: DeviceName) {
        let Some(mut session) = self.session.take() else {
            return self.out.send(Event::Failed(Problem::plain("The enrollment session is gone; start again.")));
        };
        let onboarding = session.start.final_page_content.clone();
        if let Some(p) = password.as_deref().filter(|_| session.needs_password()) {
            if let Err(e) = session.set_password(p).await {
                let problem = Problem::of(&e, Retry::None);
                // A refused password (policy) leaves the session open for another try.
                if !problem.ends_session {
                    self.session = Some(session);
                }
                return self.out.send(Event::Failed(problem));
            }
        }
        match session.register(&self.store, &device).await {
            Ok(done) => {
                if let Some(found) = self.found.take() {
                    provision::consume(&found);
                }
                self.out.send(Event::Enrolled {
                    instance_name: done.instance_name,
                    locations: done.locations,
                    onboarding,
                });
                self.publish_now().await;
            }
            Err(e) => {
                let problem = Problem::of(&e, Retry::None);
                // A refused name leaves the session open: the user picks another.
                if !problem.ends_session {
                    self.session = Some(session);
                }
                self.out.send(Event::Failed(problem));
            }
        }
    }

    async fn connect(&self, instance_id: &str, network_id: i64) -> Result<(), String> {
        let i = self.store.instance(instance_id).await.map_err(|e| e.to_string())?.ok_or("that instance is gone")?;
        let l = self
            .store
            .locations(&i.id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|l| l.network_id == network_id)
            .ok_or("that location is gone")?;
        let cfg = tunnel::config_for(&self.store, &i, &l).await?;
        // Checked here too, so a location without a gateway says so even without a service.
        cfg.validate().map_err(|e| format!("{}: {e}", l.network_name))?;
        self.service.connect(cfg).await.map(|_| ()).map_err(|e| format!("{}: {e}", l.network_name))
    }

    async fn sync(&mut self) {
        match self.store.is_initialized().await {
            Ok(true) => {}
            _ => return,
        }
        match sync::sync_once(&self.store).await {
            Ok(results) => {
                for (i, outcome) in results {
                    tracing::info!(instance = %i.name, ?outcome, "polled");
                }
                let _ = tunnel::refresh_connected(&self.store, &self.service).await;
            }
            Err(e) => tracing::warn!("sync failed: {e}"),
        }
        self.publish_now().await;
    }

    /// Sends the instances and tunnel status when they changed since the last time.
    async fn publish(&mut self) {
        if !matches!(self.store.is_initialized().await, Ok(true)) {
            return;
        }
        let (tunnels, service) = match self.service.tunnels().await {
            Ok(t) => (t, ServiceState::Running),
            Err(e) => (vec![], ServiceState::Unavailable(service_hint(&e))),
        };
        let instances = match self.instances(&tunnels).await {
            Ok(v) => v,
            Err(e) => return tracing::warn!("cannot read the store: {e}"),
        };
        let now = (instances, service);
        if self.last_status.as_ref() == Some(&now) {
            return;
        }
        self.last_status = Some(now.clone());
        self.out.send(Event::Service(now.1));
        self.out.send(Event::Instances(now.0));
    }

    async fn publish_now(&mut self) {
        self.last_status = None;
        self.publish().await;
    }

    async fn instances(&self, tunnels: &[TunnelStatus]) -> Result<Vec<InstanceView>, onramp_client::store::StoreError> {
        let mut out = vec![];
        for i in self.store.instances().await? {
            let locations = self
                .store
                .locations(&i.id)
                .await?
                .into_iter()
                .map(|l| LocationView {
                    tunnel: tunnels.iter().find(|t| t.instance_id == i.id && t.network_id == l.network_id).cloned(),
                    network_id: l.network_id,
                    name: l.network_name,
                    address: l.assigned_ip,
                })
                .collect();
            out.push(InstanceView {
                id: i.id,
                name: i.name,
                edge_url: i.edge_url,
                device_name: i.device_name,
                admin: i.admin_contact,
                sync_state: i.sync_state,
                last_sync_at: i.last_sync_at,
                locations,
            });
        }
        Ok(out)
    }
}

fn session_view(s: &Session, url: &url::Url) -> SessionView {
    let host = match DeviceName::from_host() {
        DeviceName::Default(h) | DeviceName::Chosen(h) => h,
    };
    let u = &s.start.user;
    SessionView {
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        login: u.login.clone(),
        email: u.email.clone(),
        phone: u.phone_number.clone().filter(|p| !p.is_empty()),
        admin: s.admin_contact(),
        instance_name: s.start.instance.name.clone(),
        host: url.host_str().unwrap_or_default().to_owned(),
        deadline: s.start.deadline_timestamp,
        needs_password: s.needs_password(),
        suggested_name: s.suggested_name(&host),
        onboarding: s.start.final_page_content.clone(),
    }
}

/// What the window says while the service cannot be used.
fn service_hint(e: &ServiceError) -> String {
    match e {
        ServiceError::NotRunning => {
            if cfg!(windows) {
                "The Onramp service is not running. Start \"Onramp client service\" in Services, or reinstall Onramp."
                    .into()
            } else {
                "The Onramp service is not running, so tunnels cannot start. Start it with: sudo systemctl start onramp-client (or sudo onramp-client service)."
                    .into()
            }
        }
        ServiceError::Unsupported => "Tunnels are not supported on this platform yet.".into(),
        other => other.to_string(),
    }
}
