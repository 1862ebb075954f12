//! `onramp-client`: the command-line Onramp client. Exit codes: 0 success (also "nothing to
//! do"); 1 other errors; 2 usage; 3 unusable provisioning file; 4 token problem (expired,
//! used, revoked, unknown: contact the administrator); 5 the edge cannot be reached.

use clap::{Parser, Subcommand};
use onramp_client::enroll::{self, EnrollError, Interaction};
use onramp_client::store::Instance;
use onramp_client::{dirs, provision, sync, ApiError, Settings, Store};
use onramp_proto::EnrollmentStartResponse;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "onramp-client",
    version,
    about = "Onramp VPN client: enroll this machine and keep its VPN locations current"
)]
struct Cli {
    /// Data directory (default: the per-user app data folder; ONRAMP_CLIENT_DATA_DIR).
    #[arg(long, global = true, env = "ONRAMP_CLIENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct EnrollArgs {
    /// Read the new password from FILE (unattended runs) instead of asking on the terminal.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Device name (default: this machine's host name).
    #[arg(long)]
    device_name: Option<String>,
}

#[derive(clap::Args, Clone)]
struct TokenArgs {
    /// Edge URL (the enrollment URL from the invitation).
    #[arg(long)]
    url: Option<String>,
    /// File holding the token. Without it: ONRAMP_TOKEN, else standard input.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// What the client does on every start: show the instances, or enroll from provisioning.json.
    Start {
        #[command(flatten)]
        enroll: EnrollArgs,
        /// Where to look for provisioning.json (default: in the data directory).
        #[arg(long, value_name = "PATH")]
        provisioning_file: Option<PathBuf>,
        /// Keep running afterwards and sync the configuration.
        #[arg(long)]
        watch: bool,
        /// Seconds between polls with --watch.
        #[arg(long, default_value_t = 30)]
        interval: u64,
    },
    /// Enroll in an instance with a token (from --token-file, ONRAMP_TOKEN or standard input).
    AddInstance {
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        enroll: EnrollArgs,
    },
    /// Apply a new token from the administrator to an instance this machine already has.
    UpdateInstance {
        #[command(flatten)]
        token: TokenArgs,
    },
    /// List instances.
    Instances {
        #[arg(long)]
        json: bool,
    },
    /// List VPN locations.
    Locations {
        /// Only this instance (id or name).
        #[arg(long)]
        instance: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Instances, their sync state and locations.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget an instance (id or name) with its locations and keys.
    RemoveInstance { instance: String },
    /// Poll every instance once and apply changes.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// Keep the configuration current: poll every --interval seconds (with jitter).
    Daemon {
        #[arg(long, default_value_t = 30)]
        interval: u64,
    },
    /// Write provisioning.json from a directory attribute or a prepared file (installers).
    /// Exit codes: 0 written or nothing to do, 10 directory unreachable, 11 attribute or
    /// user missing, 12 attribute malformed, 13 target not writable, 14 target exists
    /// (--force replaces it), 15 directory refused the credentials.
    Provision(Box<ProvisionArgs>),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Source {
    /// A configured directory (ONRAMP_LDAP_URL) or, without one, nothing to do.
    Auto,
    /// Active Directory over LDAP: the user's sAMAccountName.
    Ad,
    /// An LDAP server: the user's uid.
    Ldap,
    /// Microsoft Entra ID custom security attributes through Microsoft Graph.
    Entra,
    /// A prepared file (--from), snake_case or camelCase.
    File,
}

#[derive(clap::Args)]
struct ProvisionArgs {
    #[arg(long, value_enum, default_value = "auto")]
    source: Source,
    /// The directory attribute holding {"enrollmentUrl","enrollmentToken"}.
    #[arg(long, default_value = onramp_directory::DEFAULT_ATTRIBUTE)]
    ad_attribute: String,
    /// Where to write (default: the target user's app data directory).
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// The user who will run the client (default: the current user); needed when an
    /// installer runs as SYSTEM or root.
    #[arg(long)]
    user: Option<String>,
    /// Replace an existing provisioning.json.
    #[arg(long)]
    force: bool,
    /// Read and check everything, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --source file: the prepared file.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Also append the outcome to this file (installers run without a console).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Directory URL, ldap://host:389 or ldaps://host:636.
    #[arg(long, env = "ONRAMP_LDAP_URL")]
    ldap_url: Option<String>,
    /// Search base for users.
    #[arg(long, env = "ONRAMP_LDAP_BASE_DN")]
    ldap_base_dn: Option<String>,
    /// Bind DN for a simple bind (anonymous without it).
    #[arg(long, env = "ONRAMP_LDAP_BIND_DN")]
    ldap_bind_dn: Option<String>,
    /// File holding the bind password (or ONRAMP_LDAP_PASSWORD).
    #[arg(long, env = "ONRAMP_LDAP_PASSWORD_FILE", value_name = "FILE")]
    ldap_password_file: Option<PathBuf>,
    /// Entra ID attribute set holding EnrollmentToken and EnrollmentUrl.
    #[arg(long, default_value = onramp_client::entra::DEFAULT_ATTRIBUTE_SET)]
    entra_attribute_set: String,
    /// Entra ID tenant (id or domain).
    #[arg(long, env = "ONRAMP_ENTRA_TENANT")]
    entra_tenant: Option<String>,
    /// Application (client) id of the app registration.
    #[arg(long, env = "ONRAMP_ENTRA_CLIENT_ID")]
    entra_client_id: Option<String>,
    /// Client secret file (app sign-in for labs and automation); without it a person signs
    /// in with a device code.
    #[arg(long, env = "ONRAMP_ENTRA_CLIENT_SECRET_FILE", value_name = "FILE")]
    entra_client_secret_file: Option<PathBuf>,
    /// The Entra user (object id or UPN) to read; default: the signed-in user (device code).
    #[arg(long)]
    entra_user: Option<String>,
    #[arg(long, env = "ONRAMP_GRAPH_URL", default_value = onramp_client::entra::DEFAULT_GRAPH_URL)]
    graph_url: String,
    #[arg(long, env = "ONRAMP_ENTRA_LOGIN_URL", default_value = onramp_client::entra::DEFAULT_LOGIN_URL)]
    entra_login_url: String,
}

/// A failure with the exit code that tells scripts what kind it was.
struct Failure(u8, String);

impl From<EnrollError> for Failure {
    fn from(e: EnrollError) -> Self {
        let code = match &e {
            EnrollError::Api(a) if a.is_token_problem() => 4,
            EnrollError::Api(ApiError::Network { .. }) => 5,
            _ => 1,
        };
        Failure(code, e.to_string())
    }
}

impl From<onramp_client::store::StoreError> for Failure {
    fn from(e: onramp_client::store::StoreError) -> Self {
        Failure(1, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONRAMP_CLIENT_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Provision(args) = cli.command {
        let dir = cli.data_dir.clone().or_else(|| dirs::data_dir().ok()).unwrap_or_default();
        let log_file = args.log_file.clone();
        let result = provision(*args, &Settings::load(&dir)).await;
        if let Some(log) = log_file {
            let line = match &result {
                Ok(()) => "done (exit 0)".to_owned(),
                Err(Failure(code, msg)) => format!("{msg} (exit {code})"),
            };
            append_log(&log, &format!("onramp-client provision: {line}"));
        }
        return result;
    }
    let dir = match cli.data_dir {
        Some(d) => d,
        None => dirs::data_dir().map_err(|e| Failure(1, format!("cannot find the app data folder: {e}")))?,
    };
    dirs::ensure_private_dir(&dir).map_err(|e| Failure(1, format!("cannot create {}: {e}", dir.display())))?;
    let settings = Settings::load(&dir);
    let store = Store::open(&dir).await?;
    let result = command(cli.command, &dir, &settings, &store).await;
    store.close().await;
    result
}

async fn command(cmd: Command, dir: &Path, settings: &Settings, store: &Store) -> Result<(), Failure> {
    match cmd {
        Command::Start { enroll, provisioning_file, watch, interval } => {
            if !store.is_initialized().await? {
                let found = provision::find(dir, provisioning_file.as_deref(), settings.allow_http)
                    .map_err(|e| Failure(3, e.to_string()))?;
                let Some((path, prov)) = found else {
                    println!(
                        "This client is not enrolled yet.\nAsk your administrator for an enrollment token, then run\n  \
                         onramp-client add-instance --url <ENROLLMENT URL> --token-file <FILE>\nor place provisioning.json in {}",
                        dir.display()
                    );
                    return Ok(());
                };
                let url = onramp_domain::provisioning::check_url(&prov.enrollment_url, settings.allow_http)
                    .map_err(|e| Failure(3, format!("{path}: {e}")))?;
                println!("Found {path}; enrolling at {url}");
                let done = enroll_with(store, &url, &prov.enrollment_token, &enroll).await?;
                provision::consume(&path);
                report_enrolled(&done);
            } else {
                leftover_provisioning(dir, provisioning_file.as_deref(), settings, store).await?;
            }
            print_status(store, false).await?;
            if watch {
                daemon(store, interval).await?;
            }
            Ok(())
        }
        Command::AddInstance { token, enroll } => {
            let (url, secret) = token_input(&token, settings, None)?;
            let done = enroll_with(store, &url, &secret, &enroll).await?;
            report_enrolled(&done);
            Ok(())
        }
        Command::UpdateInstance { token } => {
            let instances = store.instances().await?;
            let only = match instances.as_slice() {
                [one] => Some(one.edge_url.clone()),
                _ => None,
            };
            let (url, secret) = token_input(&token, settings, only)?;
            let done = match enroll::update_instance(store, &url, &secret).await {
                Ok(d) => d,
                Err(e) => {
                    // A refused token: point at the administrator this instance came from.
                    let mut f = Failure::from(e);
                    let known = instances.iter().find(|i| i.edge_url == url.as_str());
                    if let Some(a) = known.and_then(|i| i.admin_contact.as_deref()).filter(|_| f.0 == 4) {
                        f.1.push_str(&format!(" (administrator: {a})"));
                    }
                    return Err(f);
                }
            };
            println!(
                "Updated {}: {} location(s): {}",
                done.instance_name,
                done.locations.len(),
                done.locations.join(", ")
            );
            Ok(())
        }
        Command::Instances { json } => {
            let list = store.instances().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
            } else if list.is_empty() {
                println!("no instances");
            } else {
                for i in list {
                    println!(
                        "{}  {}  user {}  device {}  edge {}  sync {}",
                        i.id, i.name, i.username, i.device_name, i.edge_url, i.sync_state
                    );
                }
            }
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
            if json {
                let v: Vec<_> = all.iter().map(|(i, l)| serde_json::json!({"instance": i, "location": l})).collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                for (i, l) in all {
                    println!(
                        "{i}: {}  {}  via {}  allowed {}",
                        l.network_name, l.assigned_ip, l.endpoint, l.allowed_ips
                    );
                }
            }
            Ok(())
        }
        Command::Status { json } => print_status(store, json).await,
        Command::RemoveInstance { instance } => {
            let found = store.instances().await?.into_iter().find(|i| i.id == instance || i.name == instance);
            let Some(i) = found else {
                return Err(Failure(1, format!("no instance {instance:?}; see onramp-client instances")));
            };
            store.remove_instance(&i.id).await?;
            println!("removed instance {} ({})", i.name, i.id);
            Ok(())
        }
        Command::Sync { json } => {
            let results = sync::sync_once(store).await?;
            report_sync(&results, json);
            Ok(())
        }
        Command::Daemon { interval } => daemon(store, interval).await,
        Command::Provision(_) => unreachable!("handled before the store is opened"),
    }
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
        println!("Removed {found}: its token was already used to enroll this client.");
    } else {
        println!(
            "Note: {found} was not used because this client is already enrolled; \
             run onramp-client update-instance to apply a new token."
        );
    }
    Ok(())
}

fn append_log(path: &Path, line: &str) {
    use std::io::Write;
    let opened = std::fs::OpenOptions::new().create(true).append(true).open(path);
    if let Ok(mut f) = opened {
        let _ = writeln!(f, "{} {line}", onramp_client::now());
    }
}

/// `provision` runs before any store exists (often as another user than the client's).
async fn provision(a: ProvisionArgs, settings: &Settings) -> Result<(), Failure> {
    use onramp_client::helper::{self, ProvisionError};
    let fail = |e: ProvisionError| Failure(e.exit_code(), e.to_string());
    let username = a
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .ok_or_else(|| Failure(2, "cannot tell the user; pass --user NAME".into()))?;
    let ldap = |user_attribute: &str| -> Result<onramp_directory::LdapConfig, Failure> {
        let ad = user_attribute == "sAMAccountName";
        // On a domain machine the logon domain names the directory and the search base.
        let defaults =
            if ad { std::env::var("USERDNSDOMAIN").ok().and_then(|d| onramp_directory::ad_defaults(&d)) } else { None };
        let url = a
            .ldap_url
            .clone()
            .or_else(|| defaults.clone().map(|d| d.0))
            .ok_or_else(|| Failure(2, "--ldap-url (ONRAMP_LDAP_URL) is required".into()))?;
        let base_dn = a
            .ldap_base_dn
            .clone()
            .or_else(|| defaults.map(|d| d.1))
            .ok_or_else(|| Failure(2, "--ldap-base-dn (ONRAMP_LDAP_BASE_DN) is required".into()))?;
        let password = match &a.ldap_password_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| Failure(2, format!("{}: cannot be read: {e}", f.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => std::env::var("ONRAMP_LDAP_PASSWORD").ok(),
        };
        Ok(onramp_directory::LdapConfig {
            url,
            bind_dn: a.ldap_bind_dn.clone(),
            password,
            base_dn,
            user_attribute: user_attribute.into(),
            kerberos: ad,
        })
    };
    let source = match a.source {
        Source::Auto => match onramp_client::join::detect() {
            onramp_client::join::Join::Domain | onramp_client::join::Join::Hybrid => Source::Ad,
            onramp_client::join::Join::Entra => Source::Entra,
            onramp_client::join::Join::None if a.ldap_url.is_some() => Source::Ldap,
            onramp_client::join::Join::None if a.entra_tenant.is_some() => Source::Entra,
            onramp_client::join::Join::None => {
                println!("{}", ProvisionError::NotJoined);
                return Ok(());
            }
        },
        other => other,
    };
    let file = match source {
        Source::File => {
            let from = a.from.as_deref().ok_or_else(|| Failure(2, "--source file needs --from FILE".into()))?;
            helper::from_file(from, settings.allow_http).map_err(fail)?
        }
        Source::Entra => {
            use onramp_client::entra::{self, Credentials, EntraConfig};
            let tenant = a
                .entra_tenant
                .clone()
                .ok_or_else(|| Failure(2, "--entra-tenant (ONRAMP_ENTRA_TENANT) is required".into()))?;
            let client_id = a
                .entra_client_id
                .clone()
                .ok_or_else(|| Failure(2, "--entra-client-id (ONRAMP_ENTRA_CLIENT_ID) is required".into()))?;
            let credentials = match &a.entra_client_secret_file {
                Some(f) => {
                    if a.entra_user.is_none() {
                        return Err(Failure(2, "an app sign-in (client secret) needs --entra-user UPN".into()));
                    }
                    let secret = std::fs::read_to_string(f)
                        .map_err(|e| Failure(2, format!("{}: cannot be read: {e}", f.display())))?;
                    Credentials::ClientSecret { client_id, secret: secret.trim().to_owned() }
                }
                None => Credentials::DeviceCode { client_id },
            };
            let cfg = EntraConfig {
                tenant,
                credentials,
                graph_url: a.graph_url.clone(),
                login_url: a.entra_login_url.clone(),
                attribute_set: a.entra_attribute_set.clone(),
            };
            let token = entra::access_token(&cfg, &mut |m| eprintln!("{m}")).await.map_err(fail)?;
            entra::read(&cfg, a.entra_user.as_deref(), &token, settings.allow_http).await.map_err(fail)?
        }
        Source::Ad => helper::from_ldap(&ldap("sAMAccountName")?, &username, &a.ad_attribute, settings.allow_http)
            .await
            .map_err(fail)?,
        _ => helper::from_ldap(&ldap("uid")?, &username, &a.ad_attribute, settings.allow_http).await.map_err(fail)?,
    };
    let output = match a.output {
        Some(o) => o,
        None => helper::default_output(a.user.as_deref()).map_err(fail)?,
    };
    if a.dry_run {
        println!(
            "would write {} for {username}: enrollment URL {} (token not shown)",
            output.display(),
            file.enrollment_url
        );
        return Ok(());
    }
    helper::write(&output, &file, a.force, a.user.as_deref()).map_err(fail)?;
    println!("wrote {} for {username}: enrollment URL {}", output.display(), file.enrollment_url);
    Ok(())
}

async fn daemon(store: &Store, interval: u64) -> Result<(), Failure> {
    let interval = Duration::from_secs(interval.max(1));
    loop {
        let results = sync::sync_once(store).await?;
        report_sync(&results, false);
        tokio::select! {
            _ = tokio::time::sleep(sync::jittered(interval)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn report_sync(results: &[(Instance, sync::Outcome)], json: bool) {
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|(i, o)| {
                let (state, detail) = match o {
                    sync::Outcome::Updated(d) => ("updated", serde_json::to_value(d).unwrap_or_default()),
                    sync::Outcome::NeedsToken(m) => ("needs_token", m.clone().into()),
                    sync::Outcome::Stopped => ("stopped", serde_json::Value::Null),
                    sync::Outcome::Skipped(m) => ("skipped", (*m).into()),
                    sync::Outcome::Failed(e) => ("failed", e.to_string().into()),
                };
                serde_json::json!({"instance": i.name, "id": i.id, "state": state, "detail": detail})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    for (i, o) in results {
        match o {
            sync::Outcome::Updated(d) if d.is_empty() => println!("{}: up to date", i.name),
            sync::Outcome::Updated(d) => println!(
                "{}: added [{}] removed [{}] changed [{}]",
                i.name,
                d.added.join(", "),
                d.removed.join(", "),
                d.changed.join(", ")
            ),
            sync::Outcome::NeedsToken(m) => println!(
                "{}: the server no longer accepts this device's token ({m}); ask your administrator{} for a new token and run onramp-client update-instance",
                i.name,
                i.admin_contact.as_deref().map(|a| format!(" ({a})")).unwrap_or_default()
            ),
            sync::Outcome::Stopped => tracing::info!(instance = %i.name, "server stopped serving this client; not polling"),
            sync::Outcome::Skipped(why) => tracing::info!(instance = %i.name, why, "not polled"),
            sync::Outcome::Failed(e) => println!("{}: sync failed: {e}", i.name),
        }
    }
}

async fn print_status(store: &Store, json: bool) -> Result<(), Failure> {
    let instances = store.instances().await?;
    if json {
        let mut v = vec![];
        for i in &instances {
            v.push(serde_json::json!({"instance": i, "locations": store.locations(&i.id).await?}));
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    for i in &instances {
        let state = match i.sync_state.as_str() {
            "needs_token" => " (needs a new token from the administrator)",
            "stopped" => " (server stopped serving this client)",
            _ => "",
        };
        println!("Instance {} as {} (device {}){state}", i.name, i.username, i.device_name);
        for l in store.locations(&i.id).await? {
            println!("  {}  {}  via {}", l.network_name, l.assigned_ip, l.endpoint);
        }
    }
    Ok(())
}

fn report_enrolled(done: &enroll::Enrolled) {
    println!(
        "Enrolled in {} as device {:?} with {} location(s): {}",
        done.instance_name,
        done.device_name,
        done.locations.len(),
        done.locations.join(", ")
    );
}

async fn enroll_with(
    store: &Store,
    url: &url::Url,
    token: &str,
    args: &EnrollArgs,
) -> Result<enroll::Enrolled, Failure> {
    let device = args
        .device_name
        .clone()
        .unwrap_or_else(|| hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default());
    let mut ui = Terminal { password_file: args.password_file.clone(), admin: None };
    enroll::enroll(store, url, token, &device, &mut ui).await.map_err(|e| {
        let mut f = Failure::from(e);
        if f.0 == 4 {
            if let Some(a) = &ui.admin {
                f.1.push_str(&format!(" (administrator: {a})"));
            }
        }
        f
    })
}

/// The edge URL and the token: never from argv.
fn token_input(
    args: &TokenArgs,
    settings: &Settings,
    default_url: Option<String>,
) -> Result<(url::Url, String), Failure> {
    let url = args
        .url
        .clone()
        .or(default_url)
        .ok_or_else(|| Failure(1, "--url is required (the enrollment URL from the invitation)".into()))?;
    let url =
        onramp_domain::provisioning::check_url(&url, settings.allow_http).map_err(|e| Failure(1, e.to_string()))?;
    let raw = if let Some(f) = &args.token_file {
        std::fs::read_to_string(f).map_err(|e| Failure(1, format!("{}: cannot be read: {e}", f.display())))?
    } else if let Ok(t) = std::env::var("ONRAMP_TOKEN") {
        t
    } else {
        if std::io::stdin().is_terminal() {
            eprint!("Enrollment token: ");
        }
        let mut s = String::new();
        std::io::stdin()
            .read_line(&mut s)
            .map_err(|e| Failure(1, format!("cannot read the token from standard input: {e}")))?;
        s
    };
    let token = raw.trim().to_owned();
    if !onramp_domain::token::is_well_formed(&token) {
        return Err(Failure(
            4,
            format!("the token must be 32 letters and digits (got {} characters)", token.chars().count()),
        ));
    }
    Ok((url, token))
}

struct Terminal {
    password_file: Option<PathBuf>,
    admin: Option<String>,
}

impl Interaction for Terminal {
    fn show_start(&mut self, s: &EnrollmentStartResponse) {
        let u = &s.user;
        println!("Welcome to {}, {} {}", s.instance.name, u.first_name, u.last_name);
        println!(
            "  login: {}   e-mail: {}{}",
            u.login,
            u.email,
            u.phone_number.as_deref().map(|p| format!("   phone: {p}")).unwrap_or_default()
        );
        self.admin = enroll::admin_contact(s);
        if let Some(a) = &self.admin {
            println!("  questions? your administrator: {a}");
        }
        let left = s.deadline_timestamp - onramp_client::now();
        println!("  this enrollment session ends in {} min {} s", left.max(0) / 60, left.max(0) % 60);
    }

    fn password(&mut self) -> Result<String, String> {
        if let Some(f) = &self.password_file {
            let p = std::fs::read_to_string(f).map_err(|e| format!("{}: cannot be read: {e}", f.display()))?;
            let p = p.trim_end_matches(['\r', '\n']).to_owned();
            if let Some(why) = onramp_domain::password::explain(&p) {
                return Err(format!("{}: {why}", f.display()));
            }
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            return Err("a new password is needed and there is no terminal to ask on; use --password-file FILE".into());
        }
        println!("Choose your password: 8-128 characters with a lower-case and an upper-case letter, a digit and a special character.");
        loop {
            let p =
                rpassword::prompt_password("New password: ").map_err(|e| format!("cannot read the password: {e}"))?;
            if let Some(why) = onramp_domain::password::explain(&p) {
                println!("  {why}");
                continue;
            }
            let again =
                rpassword::prompt_password("Repeat it: ").map_err(|e| format!("cannot read the password: {e}"))?;
            if again != p {
                println!("  the two entries differ; once more");
                continue;
            }
            return Ok(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_defaults_to_every_30_seconds() {
        let cli = Cli::try_parse_from(["onramp-client", "daemon"]).unwrap();
        assert!(matches!(cli.command, Command::Daemon { interval: 30 }));
        let cli = Cli::try_parse_from(["onramp-client", "start", "--watch"]).unwrap();
        assert!(matches!(cli.command, Command::Start { watch: true, interval: 30, .. }));
    }
}
