//! `onramp admin ...`: administration straight on the configured database, through the
//! same core use cases as the REST API.

mod devices;
mod locations;
mod network_devices;
mod ops;
mod users;

use crate::config::Config;
use crate::serve::open_core;
use anyhow::Context;
use clap::Subcommand;
use onramp_core::{Actor, BulkOutcome, BulkRequest, Core, CoreError, GroupInput};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Admin API tokens.
    ApiToken {
        #[command(subcommand)]
        command: ApiTokenCommand,
    },
    /// Tokens gateway agents authenticate with, one or more per location.
    GatewayToken {
        #[command(subcommand)]
        command: GatewayTokenCommand,
    },
    /// Users: list, create, enable/disable, delete, and issue their tokens.
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// Groups: list, create, add members.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Devices: list, delete, show a device's WireGuard config.
    Device {
        #[command(subcommand)]
        command: devices::DeviceCommand,
    },
    /// Network devices (headless machines of one location, no user): create, list,
    /// delete, and issue the token they enroll with.
    NetworkDevice {
        #[command(subcommand)]
        command: network_devices::NetworkDeviceCommand,
    },
    /// VPN locations: list, create, edit.
    Location {
        #[command(subcommand)]
        command: locations::LocationCommand,
    },
    /// Instance settings: show them, change one.
    Settings {
        #[command(subcommand)]
        command: ops::SettingsCommand,
    },
    /// Mail outbox: list messages, retry one, send a test message.
    Mail {
        #[command(subcommand)]
        command: ops::MailCommand,
    },
    /// The audit log, newest first.
    Audit(ops::AuditArgs),
    /// Set a user's password, e.g. the first admin's, to sign in to the web UI. The password
    /// is read from a file or standard input, never from the command line.
    SetPassword {
        username: String,
        /// File holding the password (its first line); `-` or left out: standard input.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Issue an enrollment token for one user and print {enrollment_token, enrollment_url}
    /// (a provisioning.json); `user start-enrollment` has more options.
    StartEnrollment {
        username: String,
        /// Token lifetime such as 12h, 3d, 1w (default: the setting, 24h).
        #[arg(long)]
        expires: Option<String>,
        /// Also e-mail the invitation to the user's address.
        #[arg(long)]
        send_email: bool,
        #[command(flatten)]
        who: As,
    },
    /// Issue tokens for every member of GROUP and write DIR/<username>/provisioning.json
    /// plus DIR/provisioning.csv.
    ProvisionGroup {
        group: String,
        /// Output directory (created 0700; files are 0600).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Token lifetime such as 12h, 3d, 1w (default: the setting, 24h).
        #[arg(long)]
        expires: Option<String>,
        /// Put the token itself into the CSV (it is always in each provisioning.json).
        #[arg(long)]
        include_token: bool,
        /// Also e-mail each member an invitation carrying the same token (SMTP must be
        /// configured; the mail is queued in the outbox).
        #[arg(long)]
        send_email: bool,
        #[command(flatten)]
        who: As,
    },
    /// Issue tokens for a group and write each member's {"enrollmentUrl","enrollmentToken"}
    /// into their directory attribute over LDAP (where the Windows installer reads it).
    ProvisionDirectory {
        #[arg(long)]
        group: String,
        /// ldap://host:389 or ldaps://host:636
        #[arg(long, env = "ONRAMP_LDAP_URL")]
        ldap_url: String,
        /// Search base for users.
        #[arg(long, env = "ONRAMP_LDAP_BASE_DN")]
        base_dn: String,
        /// DN allowed to write the attribute.
        #[arg(long, env = "ONRAMP_LDAP_BIND_DN")]
        bind_dn: String,
        /// File holding the bind password (or ONRAMP_LDAP_PASSWORD).
        #[arg(long, env = "ONRAMP_LDAP_PASSWORD_FILE", value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// How users are found: uid (LDAP) or sAMAccountName (Active Directory).
        #[arg(long, default_value = "uid")]
        user_attribute: String,
        /// The attribute to write (e.g. extensionAttribute4).
        #[arg(long, default_value = onramp_directory::DEFAULT_ATTRIBUTE)]
        attribute: String,
        /// Token lifetime such as 12h, 3d, 1w (default: the setting, 24h).
        #[arg(long)]
        expires: Option<String>,
        /// Print the per-user report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        who: As,
    },
    /// Directory sync (LDAP / Active Directory): run one now, see the last run, link a
    /// user created in Onramp to the directory.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Make a CA and the certificates of the core <-> edge link (and of core's gateway
    /// listener), and print the settings for each side. Needs no database.
    LinkCerts(crate::certs::LinkCertsArgs),
}

#[derive(clap::Args)]
pub struct As {
    /// Admin user recorded as the issuer (shown to users as their contact).
    #[arg(long = "as", value_name = "USERNAME", default_value = "admin")]
    pub user: String,
}

#[derive(Subcommand)]
pub enum ApiTokenCommand {
    /// Create a token and print it on stdout (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// Admin user the token acts as.
        #[arg(long, default_value = "admin")]
        user: String,
    },
    /// List API tokens (never the secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token by id (see `list`).
    Revoke { id: i64 },
}

#[derive(Subcommand)]
pub enum GatewayTokenCommand {
    /// Create a token for a location's gateway; the token is the last line of stdout
    /// (shown once).
    Create {
        /// The location's name.
        #[arg(long)]
        location: String,
        /// A note telling tokens apart, e.g. the gateway's host.
        #[arg(long)]
        name: Option<String>,
    },
    /// A location's tokens (never the secrets).
    List {
        #[arg(long)]
        location: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token; gateways connected with it are disconnected.
    Revoke {
        #[arg(long)]
        location: String,
        /// The token's id (see `list`).
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Sync now and print what changed. LDAP / AD settings: `onramp admin settings set
    /// directory.url ...` (and the other `directory.*` settings) or ONRAMP_LDAP_URL,
    /// ONRAMP_LDAP_BASE_DN, ONRAMP_LDAP_BIND_DN, ONRAMP_LDAP_PASSWORD_FILE,
    /// ONRAMP_LDAP_USER_ATTRIBUTE, ONRAMP_LDAP_SYNC_GROUPS, ONRAMP_LDAP_INVITE_ATTRIBUTE.
    /// Entra ID: `entra.*` or ONRAMP_ENTRA_TENANT, ONRAMP_ENTRA_CLIENT_ID,
    /// ONRAMP_ENTRA_CLIENT_SECRET_FILE, ONRAMP_ENTRA_SYNC_GROUPS, ONRAMP_ENTRA_INVITE_ATTRIBUTES.
    Sync {
        /// Read the directory and print what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        /// `ldap` or `entra` (default: the configured one, LDAP first).
        #[arg(long)]
        source: Option<onramp_core::DirectorySource>,
    },
    /// The last sync's outcome and the schedule.
    Status {
        #[arg(long)]
        json: bool,
        /// `ldap` or `entra` (default: the configured one, LDAP first).
        #[arg(long)]
        source: Option<onramp_core::DirectorySource>,
    },
    /// Hand a user created in Onramp over to the directory (its entry becomes authoritative).
    Link {
        username: String,
        /// `ldap` or `entra` (default: the configured one, LDAP first).
        #[arg(long)]
        source: Option<onramp_core::DirectorySource>,
    },
    /// Make a directory user Onramp's own again (syncs leave them alone).
    Unlink { username: String },
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create {
        name: String,
        /// Members of this group are admins.
        #[arg(long)]
        admin: bool,
    },
    /// Add a user to a group.
    AddMember { group: String, username: String },
    /// List groups with their members.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The CLI acts as an admin user when one exists (so tokens name a contact), else as "cli".
/// A password from a file or standard input (prompted twice, unechoed, on a terminal).
fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let text = match file.filter(|f| *f != Path::new("-")) {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("--password-file {}", f.display()))?,
        None if std::io::stdin().is_terminal() => {
            let a = rpassword::prompt_password("New password: ").context("cannot read the password")?;
            let b = rpassword::prompt_password("Again: ").context("cannot read the password")?;
            anyhow::ensure!(a == b, "the two passwords differ");
            a
        }
        None => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("cannot read standard input")?;
            s
        }
    };
    let password = text.lines().next().unwrap_or_default().to_owned();
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password)
}

pub(crate) async fn actor(core: &Core, username: &str) -> Actor {
    match core.get_user(username).await {
        Ok(u) => Actor { user_id: Some(u.id), name: u.username, ..Actor::default() },
        Err(_) => Actor::system("cli"),
    }
}

/// Core names the API field at fault; the CLI user typed a flag, so the error names that:
/// `flags` maps API field to flag where the names differ, other fields become `--field-name`.
pub(crate) fn flag_error(e: CoreError, flags: &[(&str, &str)]) -> anyhow::Error {
    let flag = |field: &str| {
        flags
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, fl)| (*fl).to_owned())
            .unwrap_or_else(|| format!("--{}", field.replace('_', "-")))
    };
    match e {
        CoreError::Invalid(v) => anyhow::anyhow!("{}: {}", flag(v.field), v.message),
        CoreError::Conflict { field, message } => anyhow::anyhow!("{}: {message}", flag(field)),
        other => other.into(),
    }
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(cfg: Config, cmd: AdminCommand) -> anyhow::Result<()> {
    if let AdminCommand::LinkCerts(args) = cmd {
        return crate::certs::run(args);
    }
    let core = open_core(&cfg, false).await?;
    // A fresh database gets the same admin as a first `serve`, so the CLI works first.
    core.bootstrap(&cfg.bootstrap_admin_email).await?;
    let result = dispatch(&core, cmd).await;
    core.store().close().await;
    result
}

async fn dispatch(core: &Core, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::ApiToken { command } => match command {
            ApiTokenCommand::Create { name, user } => {
                let a = actor(core, &user).await;
                let t = core.create_api_token(&a, &name, &user).await?;
                println!("{}", t.token);
                eprintln!("API token {:?} (id {}) for {} created. It is shown only now.", t.name, t.id, t.username);
            }
            ApiTokenCommand::List { json } => {
                let list = core.list_api_tokens().await?;
                if json {
                    return print_json(&list);
                }
                println!("{:<5} {:<24} {:<14} {:<12} STATE", "ID", "NAME", "PREFIX", "USER");
                for t in list {
                    println!(
                        "{:<5} {:<24} {:<14} {:<12} {}",
                        t.id,
                        t.name,
                        t.prefix,
                        t.username,
                        if t.revoked { "revoked" } else { "active" }
                    );
                }
            }
            ApiTokenCommand::Revoke { id } => {
                core.revoke_api_token(&Actor::system("cli"), id).await?;
                eprintln!("API token {id} revoked");
            }
        },
        AdminCommand::GatewayToken { command } => gateway_token(core, command).await?,
        AdminCommand::User { command } => users::run(core, command).await?,
        AdminCommand::Device { command } => devices::run(core, command).await?,
        AdminCommand::Location { command } => locations::run(core, command).await?,
        AdminCommand::NetworkDevice { command } => network_devices::run(core, command).await?,
        AdminCommand::Settings { command } => ops::settings(core, command).await?,
        AdminCommand::Mail { command } => ops::mail(core, command).await?,
        AdminCommand::Audit(args) => ops::audit(core, args).await?,
        AdminCommand::SetPassword { username, password_file } => {
            let password = read_password(password_file.as_deref())?;
            core.set_password(&Actor::system("cli"), &username, password).await?;
            eprintln!("Password of {username} set. Sign in to the web UI at core's admin address (ONRAMP_HTTP_ADDR).");
        }
        AdminCommand::Group { command } => match command {
            GroupCommand::Create { name, admin } => {
                core.create_group(
                    &Actor::system("cli"),
                    GroupInput { name: name.clone(), is_admin: admin, members: vec![] },
                )
                .await?;
                eprintln!("group {name} created");
            }
            GroupCommand::AddMember { group, username } => {
                core.add_group_member(&Actor::system("cli"), &group, &username).await?;
                eprintln!("{username} added to {group}");
            }
            GroupCommand::List { json } => {
                let groups = core.list_groups().await?;
                if json {
                    return print_json(&groups);
                }
                for g in groups {
                    println!("{}{}: {}", g.name, if g.is_admin { " (admin)" } else { "" }, g.members.join(", "));
                }
            }
        },
        AdminCommand::StartEnrollment { username, expires, send_email, who } => {
            let email = if send_email { Some(core.get_user(&username).await?.email) } else { None };
            print_json(&users::start(core, &who.user, &username, expires, email, false).await?)?;
        }
        AdminCommand::ProvisionGroup { group, out, expires, include_token, send_email, who } => {
            let a = actor(core, &who.user).await;
            provision_group(core, &a, &group, &out, expires, include_token, send_email).await?;
        }
        AdminCommand::ProvisionDirectory {
            group,
            ldap_url,
            base_dn,
            bind_dn,
            password_file,
            user_attribute,
            attribute,
            expires,
            json,
            who,
        } => {
            let password = match password_file {
                Some(f) => std::fs::read_to_string(&f)
                    .with_context(|| format!("--password-file {}", f.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => std::env::var("ONRAMP_LDAP_PASSWORD")
                    .context("the bind password: --password-file FILE or ONRAMP_LDAP_PASSWORD")?,
            };
            let ldap = onramp_directory::LdapConfig {
                url: ldap_url,
                bind_dn: Some(bind_dn),
                password: Some(password),
                base_dn,
                user_attribute,
                kerberos: false,
            };
            let a = actor(core, &who.user).await;
            let report = core.provision_directory(&a, &group, &ldap, &attribute, expires).await?;
            if json {
                return print_json(&report);
            }
            for r in &report {
                println!("{:<24} {:<17} {}", r.username, r.outcome, r.detail.as_deref().unwrap_or(""));
            }
            let written = report.iter().filter(|r| r.outcome == "written").count();
            eprintln!("{written} of {} member(s) of {group} written to {attribute}", report.len());
        }
        AdminCommand::Directory { command } => ops::directory(core, command).await?,
        AdminCommand::LinkCerts(args) => crate::certs::run(args)?,
    }
    Ok(())
}

async fn gateway_token(core: &Core, cmd: GatewayTokenCommand) -> anyhow::Result<()> {
    match cmd {
        GatewayTokenCommand::Create { location, name } => {
            let id = core.location_id_by_name(&location).await?;
            let t = core.create_gateway_token(&Actor::system("cli"), id, name.as_deref()).await?;
            eprintln!(
                "Gateway token {} for location {} created. It is shown only now; hand it to the gateway \
                 in a file or its environment, never on a command line.",
                t.id, t.location
            );
            println!("{}", t.token);
        }
        GatewayTokenCommand::List { location, json } => {
            let id = core.location_id_by_name(&location).await?;
            let list = core.list_gateway_tokens(id).await?;
            if json {
                return print_json(&list);
            }
            println!("{:<5} {:<24} {:<20} {:<20} STATE", "ID", "NAME", "CREATED", "LAST USED");
            for t in list {
                println!(
                    "{:<5} {:<24} {:<20} {:<20} {}",
                    t.id,
                    t.name.as_deref().unwrap_or("-"),
                    time(Some(t.created_at)),
                    time(t.last_used_at),
                    if t.revoked_at.is_some() { "revoked" } else { "active" }
                );
            }
        }
        GatewayTokenCommand::Revoke { location, id } => {
            let location_id = core.location_id_by_name(&location).await?;
            core.revoke_gateway_token(&Actor::system("cli"), location_id, id).await?;
            eprintln!("gateway token {id} of location {location} revoked");
        }
    }
    Ok(())
}

/// Unix seconds as `2026-12-02 08:30:00`, or `-`.
pub(crate) fn time(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn private_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `data` to `path` atomically (temporary file + rename), owner-only.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn provision_group(
    core: &Core,
    actor: &Actor,
    group: &str,
    out: &Path,
    expires: Option<String>,
    include_token: bool,
    send_email: bool,
) -> anyhow::Result<()> {
    private_dir(out)?;
    let outcomes = core
        .issue_bulk(
            actor,
            BulkRequest {
                group: Some(group.to_owned()),
                usernames: vec![],
                token_expiration_time: expires,
                send_enrollment_notification: send_email,
            },
        )
        .await?;
    let bar = indicatif::ProgressBar::new(outcomes.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(BulkOutcome::csv_header(include_token))?;
    let (mut written, mut skipped) = (0, 0);
    for o in outcomes {
        csv.write_record(o.csv_record(include_token))?;
        match (&o, o.provisioning_file()) {
            (BulkOutcome::Issued(t), Some(file)) => {
                bar.set_message(t.username.clone());
                let dir = out.join(&t.username);
                private_dir(&dir)?;
                write_private(&dir.join("provisioning.json"), serde_json::to_string_pretty(&file)?.as_bytes())?;
                written += 1;
            }
            _ => skipped += 1,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    write_private(&out.join("provisioning.csv"), &csv.into_inner()?)?;
    eprintln!(
        "{written} provisioning file(s) written under {}, {skipped} user(s) skipped; summary in {}",
        out.display(),
        out.join("provisioning.csv").display()
    );
    Ok(())
}
