//! Command dispatch: each subcommand as calls into the library, failures with their exit
//! code.

use crate::cli::{Cli, Command, EnrollArgs, ProvisionArgs, TokenArgs};
use crate::output::{self, say, warn};
use crate::prompt::{self, Terminal};
use onramp_client::enroll::{self, EnrollError};
use onramp_client::exit::Exit;
use onramp_client::start::{self, FirstStart, FirstStartError};
use onramp_client::tunnel::{self, ServiceClient, ServiceError};
use onramp_client::{dirs, helper, ipc, provision, sync, ApiError, Settings, Store};
use std::path::Path;
use std::time::Duration;

/// A failure with the exit code that tells scripts what kind it was.
pub struct Failure(pub Exit, pub String);

impl From<EnrollError> for Failure {
    fn from(e: EnrollError) -> Self {
        let code = match &e {
            EnrollError::Api(a) if a.is_token_problem() => Exit::TokenProblem,
            EnrollError::Api(ApiError::AccountDisabled { .. }) => Exit::AccountDisabled,
            EnrollError::Api(ApiError::Network { .. }) => Exit::EdgeUnreachable,
            _ => Exit::Failed,
        };
        let admin = match &e {
            EnrollError::Api(a) => a.admin().map(str::to_owned),
            _ => None,
        };
        Failure(code, e.to_string()).with_admin(admin.as_deref())
    }
}

impl From<onramp_client::store::StoreError> for Failure {
    fn from(e: onramp_client::store::StoreError) -> Self {
        Failure(Exit::Failed, e.to_string())
    }
}

impl From<helper::ProvisionError> for Failure {
    fn from(e: helper::ProvisionError) -> Self {
        Failure(e.exit(), e.to_string())
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        let code = match &e {
            ServiceError::NotRunning | ServiceError::PermissionDenied(_) => Exit::ServiceUnavailable,
            _ => Exit::Failed,
        };
        Failure(code, e.to_string())
    }
}

impl From<tunnel::PickError> for Failure {
    fn from(e: tunnel::PickError) -> Self {
        Failure(Exit::Failed, e.to_string())
    }
}

impl Failure {
    /// Names the administrator when the token was the problem.
    fn with_admin(mut self, admin: Option<&str>) -> Failure {
        if self.1.contains("(administrator: ") {
            return self;
        }
        if let Some(a) = admin.filter(|_| self.0 == Exit::TokenProblem) {
            self.1.push_str(&format!(" (administrator: {a})"));
        }
        self
    }
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Provision(args) = cli.command {
        let dir = cli.data_dir.clone().or_else(|| dirs::data_dir().ok()).unwrap_or_default();
        return provision_cmd(&args, &Settings::load(&dir)).await;
    }
    let service = ServiceClient::new(tunnel::socket_path(cli.socket.as_deref()));
    if let Command::ServiceDevice { interface } = &cli.command {
        return service_device(interface);
    }
    if let Command::Service(args) = cli.command {
        // Root's own data directory has nothing to do with the tunnels it serves.
        return service_cmd(args, service.path()).await;
    }
    let dir = match cli.data_dir {
        Some(d) => d,
        None => dirs::data_dir().map_err(|e| Failure(Exit::Failed, format!("cannot find the app data folder: {e}")))?,
    };
    dirs::ensure_private_dir(&dir)
        .map_err(|e| Failure(Exit::Failed, format!("cannot create {}: {e}", dir.display())))?;
    let settings = Settings::load(&dir);
    let store = Store::open(&dir).await?;
    let result = command(cli.command, &dir, &settings, &store, &service).await;
    store.close().await;
    result
}

async fn command(
    cmd: Command,
    dir: &Path,
    settings: &Settings,
    store: &Store,
    service: &ServiceClient,
) -> Result<(), Failure> {
    match cmd {
        Command::Start { enroll, provisioning_file, watch, interval } => {
            let device = device_name(&enroll);
            let mut ui = Terminal { password_file: enroll.password_file.clone(), admin: None };
            let explicit = provisioning_file.as_deref();
            match start::first_start(store, dir, explicit, settings, &device, &mut ui).await {
                Ok(FirstStart::Enrolled { enrolled, .. }) => output::enrolled(&enrolled),
                Ok(FirstStart::Initialized) => leftover_provisioning(dir, explicit, settings, store).await?,
                Ok(FirstStart::NotProvisioned) => {
                    say(&format!(
                        "This client is not enrolled yet.\nAsk your administrator for an enrollment token, then run\n  \
                         onramp-client add-instance --url <ENROLLMENT URL> --token-file <FILE>\nor place provisioning.json in {}",
                        dir.display()
                    ));
                    return Ok(());
                }
                Err(FirstStartError::File(e)) => return Err(Failure(Exit::BadProvisioningFile, e.to_string())),
                Err(FirstStartError::Enroll(e)) => return Err(Failure::from(e).with_admin(ui.admin.as_deref())),
            }
            // The store may have changed (an enrollment, a sync by another command).
            refresh(store, service, false).await?;
            output::status(store, &service.tunnels().await, false).await?;
            if watch {
                daemon(store, service, interval).await?;
            }
            Ok(())
        }
        Command::AddInstance { token, enroll } => {
            let (url, secret) = token_input(&token, settings, None)?;
            let done = enroll_with(store, &url, &secret, &enroll).await?;
            output::enrolled(&done);
            Ok(())
        }
        Command::UpdateInstance { token } => {
            let instances = store.instances().await?;
            let only = match instances.as_slice() {
                [one] => Some(one.edge_url.clone()),
                _ => None,
            };
            let (url, secret) = token_input(&token, settings, only)?;
            let done = enroll::update_instance(store, &url, &secret).await.map_err(|e| {
                // A refused token: point at the administrator this instance came from.
                let known = instances.iter().find(|i| i.edge_url == url.as_str());
                Failure::from(e).with_admin(known.and_then(|i| i.admin_contact.as_deref()))
            })?;
            output::updated(&done);
            refresh(store, service, false).await?;
            Ok(())
        }
        Command::Instances { json } => {
            output::instances(&store.instances().await?, json);
            Ok(())
        }
        Command::Locations { instance, json } => {
            let mut all = vec![];
            for i in store.instances().await? {
                if instance.as_deref().is_some_and(|w| w != i.id && w != i.name) {
                    continue;
                }
                for l in store.locations(&i.id).await? {
                    all.push((i.name.clone(), l));
                }
            }
            output::locations(&all, json);
            Ok(())
        }
        Command::Status { json } => Ok(output::status(store, &service.tunnels().await, json).await?),
        Command::Connect { location, instance } => {
            let (i, l) = tunnel::pick(store, &location, instance.as_deref()).await?;
            let cfg = tunnel::config_for(store, &i, &l).await.map_err(|e| Failure(Exit::Failed, e))?;
            // Checked here too, so a location without a gateway says so without a service.
            if let Err(e) = cfg.validate() {
                return Err(Failure(Exit::Failed, e.to_string()));
            }
            let (iface, change, warnings) = service.connect(cfg).await?;
            for w in warnings {
                warn(&format!("warning: {w}"));
            }
            say(&match change {
                ipc::Change::Created => format!("connected to {location} (interface {iface})"),
                ipc::Change::Reconfigured => format!("{location}: reconfigured the live tunnel (interface {iface})"),
                ipc::Change::Unchanged => format!("already connected to {location} (interface {iface})"),
            });
            Ok(())
        }
        Command::Disconnect { location, instance } => {
            let which = match &location {
                Some(name) => {
                    let (i, l) = tunnel::pick(store, name, instance.as_deref()).await?;
                    Some((i.id, l.network_id))
                }
                None => None,
            };
            let gone = service.disconnect(which).await?;
            say(&match (&location, gone.is_empty()) {
                (Some(name), true) => format!("{name} was not connected"),
                (Some(name), false) => format!("disconnected {name}"),
                (None, true) => "no location was connected".to_owned(),
                (None, false) => format!("disconnected {} tunnel(s)", gone.len()),
            });
            Ok(())
        }
        Command::RemoveInstance { instance } => {
            let found = store.instances().await?.into_iter().find(|i| i.id == instance || i.name == instance);
            let Some(i) = found else {
                return Err(Failure(Exit::Failed, format!("no instance {instance:?}; see onramp-client instances")));
            };
            store.remove_instance(&i.id).await?;
            say(&format!("removed instance {} ({})", i.name, i.id));
            Ok(())
        }
        Command::Sync { json } => {
            let results = sync::sync_once(store).await?;
            output::sync_report(&results, json);
            refresh(store, service, json).await?;
            match sync::exit_of(&results) {
                // The report above said what happened; the code tells scripts.
                Some(code) => Err(Failure(code, String::new())),
                None => Ok(()),
            }
        }
        Command::Daemon { interval } => daemon(store, service, interval).await,
        Command::Provision(_) | Command::Service(_) | Command::ServiceDevice { .. } => {
            unreachable!("handled before the store is opened")
        }
    }
}

/// `provision` runs before any store exists (often as another user than the client's).
async fn provision_cmd(args: &ProvisionArgs, settings: &Settings) -> Result<(), Failure> {
    let result = helper::run(&args.request(), settings, &mut |m| warn(m)).await;
    let result = match result {
        Ok(outcome) => {
            say(&outcome.to_string());
            Ok(())
        }
        Err(e) => Err(Failure::from(e)),
    };
    if let Some(log) = &args.log_file {
        let line = match &result {
            Ok(()) => "done (exit 0)".to_owned(),
            Err(Failure(code, msg)) => format!("{msg} (exit {code})"),
        };
        append_log(log, &format!("onramp-client provision: {line}"));
    }
    result
}

/// An initialized client does not read provisioning.json; but a file whose token already
/// enrolled this machine (the client stopped before deleting it) must not stay in clear.
async fn leftover_provisioning(
    dir: &Path,
    explicit: Option<&Path>,
    settings: &Settings,
    store: &Store,
) -> Result<(), Failure> {
    // Machine-wide sources are not the user's to delete or to be told about.
    let Ok(Some((found @ provision::Found::UserFile(_), prov))) = provision::find(dir, explicit, settings.allow_http)
    else {
        return Ok(());
    };
    if store.token_spent(&onramp_domain::token::hash_secret(&prov.enrollment_token)).await? {
        provision::consume(&found);
        say(&format!("Removed {found}: its token was already used to enroll this client."));
    } else {
        say(&format!(
            "Note: {found} was not used because this client is already enrolled; \
             run onramp-client update-instance to apply a new token."
        ));
    }
    Ok(())
}

fn append_log(path: &Path, line: &str) {
    use std::io::Write;
    let opened = std::fs::OpenOptions::new().create(true).append(true).open(path);
    if let Ok(mut f) = opened {
        // Local time with its offset: what an admin reading %TEMP%\onramp-provision.log expects.
        let at = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let _ = writeln!(f, "{at} {line}");
    }
}

fn service_options(args: crate::cli::ServiceArgs, socket: &Path) -> onramp_client::service::Options {
    onramp_client::service::Options {
        socket: socket.to_path_buf(),
        group: args.group,
        interface_prefix: args.interface_prefix,
        userspace: args.userspace,
        console: args.console,
    }
}

#[cfg(target_os = "linux")]
async fn service_cmd(args: crate::cli::ServiceArgs, socket: &Path) -> Result<(), Failure> {
    onramp_client::service::run(service_options(args, socket)).await.map_err(|e| Failure(Exit::Failed, e))
}

/// On Windows the service blocks in the Service Control Manager's dispatcher (or its console
/// loop) with a runtime of its own: on a thread outside this one's.
#[cfg(windows)]
async fn service_cmd(args: crate::cli::ServiceArgs, socket: &Path) -> Result<(), Failure> {
    let opts = service_options(args, socket);
    let thread = std::thread::spawn(move || onramp_client::service::run(opts));
    let result = tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| Failure(Exit::Failed, format!("the service stopped: {e}")))?
        .map_err(|_| Failure(Exit::Failed, "the service panicked".into()))?;
    result.map_err(|e| Failure(Exit::Failed, e))
}

#[cfg(target_os = "linux")]
fn service_device(interface: &str) -> Result<(), Failure> {
    onramp_client::service::run_device(interface).map_err(|e| Failure(Exit::Failed, e))
}

#[cfg(not(target_os = "linux"))]
fn service_device(_interface: &str) -> Result<(), Failure> {
    Err(Failure(Exit::Failed, "userspace devices exist only on Linux".into()))
}

#[cfg(not(any(target_os = "linux", windows)))]
async fn service_cmd(_args: crate::cli::ServiceArgs, _socket: &Path) -> Result<(), Failure> {
    Err(Failure(Exit::Failed, "the tunnel service is not supported yet on this platform".into()))
}

async fn daemon(store: &Store, service: &ServiceClient, interval: u64) -> Result<(), Failure> {
    let interval = Duration::from_secs(interval.max(1));
    loop {
        let results = sync::sync_once(store).await?;
        output::sync_report(&results, false);
        refresh(store, service, false).await?;
        tokio::select! {
            _ = tokio::time::sleep(sync::jittered(interval)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Pushes the stored fields of every connected location to the service after a sync: a
/// change (key rotation, endpoint, allowed IPs) reaches the live tunnel whether this command
/// or an earlier one stored it; an unchanged tunnel costs one "unchanged" answer. With
/// `--json` the lines go to standard error, leaving standard output to the JSON.
async fn refresh(store: &Store, service: &ServiceClient, json: bool) -> Result<(), Failure> {
    for line in tunnel::refresh_connected(store, service).await? {
        if json {
            warn(&line);
        } else {
            say(&line);
        }
    }
    Ok(())
}

/// The device name from the flags: chosen, a network device's, or the host name.
fn device_name(args: &EnrollArgs) -> enroll::DeviceName {
    match &args.device_name {
        _ if args.network_device => enroll::DeviceName::network_device(),
        Some(name) => enroll::DeviceName::Chosen(name.clone()),
        None => enroll::DeviceName::from_host(),
    }
}

async fn enroll_with(
    store: &Store,
    url: &url::Url,
    token: &str,
    args: &EnrollArgs,
) -> Result<enroll::Enrolled, Failure> {
    let device = device_name(args);
    let mut ui = Terminal { password_file: args.password_file.clone(), admin: None };
    let result = enroll::enroll(store, url, token, &device, &mut ui).await;
    result.map_err(|e| Failure::from(e).with_admin(ui.admin.as_deref()))
}

/// The edge URL and the token: never from argv.
fn token_input(
    args: &TokenArgs,
    settings: &Settings,
    default_url: Option<String>,
) -> Result<(url::Url, String), Failure> {
    let url =
        args.url.clone().or(default_url).ok_or_else(|| {
            Failure(Exit::Failed, "--url is required (the enrollment URL from the invitation)".into())
        })?;
    let url = onramp_domain::provisioning::check_url(&url, settings.allow_http)
        .map_err(|e| Failure(Exit::Failed, e.to_string()))?;
    let raw = if let Some(f) = &args.token_file {
        std::fs::read_to_string(f)
            .map_err(|e| Failure(Exit::Failed, format!("{}: cannot be read: {e}", f.display())))?
    } else if let Ok(t) = std::env::var("ONRAMP_TOKEN") {
        t
    } else {
        prompt::read_token()
            .map_err(|e| Failure(Exit::Failed, format!("cannot read the token from standard input: {e}")))?
    };
    let token = raw.trim().to_owned();
    if !onramp_domain::token::is_well_formed(&token) {
        return Err(Failure(
            Exit::TokenProblem,
            format!("the token must be 32 letters and digits (got {} characters)", token.chars().count()),
        ));
    }
    Ok((url, token))
}
