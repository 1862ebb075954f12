//! The command line: arguments and subcommands (clap).

use clap::{Parser, Subcommand};
use onramp_client::entra;
use onramp_client::helper::{self, EntraOptions, LdapOptions, Request};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "onramp-client",
    version,
    about = "Onramp VPN client: enroll this machine and keep its VPN locations current"
)]
pub struct Cli {
    /// Data directory (default: the per-user app data folder; ONRAMP_CLIENT_DATA_DIR).
    #[arg(long, global = true, env = "ONRAMP_CLIENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The tunnel service's socket (default /run/onramp-client.sock; on Windows the named pipe
    /// \\.\pipe\onramp-client, a bare NAME meaning \\.\pipe\NAME).
    #[arg(long, global = true, env = "ONRAMP_CLIENT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct EnrollArgs {
    /// Read the new password from FILE (unattended runs) instead of asking on the terminal.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Device name (default: this machine's host name).
    #[arg(long)]
    pub device_name: Option<String>,
    /// The token enrolls a network device (a server or router the administrator created
    /// with `onramp admin network-device create`): no device name is sent, the server
    /// keeps the device's own.
    #[arg(long, conflicts_with = "device_name")]
    pub network_device: bool,
}

#[derive(clap::Args, Clone)]
pub struct TokenArgs {
    /// Edge URL (the enrollment URL from the invitation).
    #[arg(long)]
    pub url: Option<String>,
    /// File holding the token. Without it: ONRAMP_TOKEN, else standard input.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Instances and locations, with each tunnel's state (connected, handshake, traffic).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Connect to a VPN location (by name) through the Onramp client service.
    Connect {
        location: String,
        /// The instance (id or name) when several have a location of that name.
        #[arg(long)]
        instance: Option<String>,
    },
    /// Disconnect a VPN location, or every connected location without one.
    Disconnect {
        location: Option<String>,
        /// The instance (id or name) when several have a location of that name.
        #[arg(long)]
        instance: Option<String>,
    },
    /// Run the privileged tunnel service (root; LocalSystem on Windows) that connect,
    /// disconnect and status talk to.
    Service(ServiceArgs),
    /// Internal: one userspace WireGuard device, started by the service.
    #[command(hide = true)]
    ServiceDevice { interface: String },
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

#[derive(clap::Args)]
pub struct ServiceArgs {
    /// Group whose members may use the service (default: "onramp" if it exists, else root only;
    /// on Windows the local group "Onramp Users" if it exists, else Administrators only).
    #[arg(long, env = "ONRAMP_CLIENT_GROUP")]
    pub group: Option<String>,
    /// Interface names: this prefix and a 6-character suffix per location.
    #[arg(long, env = "ONRAMP_CLIENT_INTERFACE_PREFIX", default_value = "onramp")]
    pub interface_prefix: String,
    /// Userspace WireGuard (boringtun) even when the kernel module is loaded (Linux).
    #[arg(long, env = "ONRAMP_CLIENT_USERSPACE")]
    pub userspace: bool,
    /// Windows: run in this console (Ctrl+C stops) instead of under the Service Control
    /// Manager; also what happens when the SCM did not start it.
    #[arg(long)]
    pub console: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Source {
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
pub struct ProvisionArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub source: Source,
    /// The directory attribute holding {"enrollmentUrl","enrollmentToken"}.
    #[arg(long, default_value = onramp_directory::DEFAULT_ATTRIBUTE)]
    pub ad_attribute: String,
    /// Where to write (default: the target user's app data directory).
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The user who will run the client (default: the current user); needed when an
    /// installer runs as SYSTEM or root.
    #[arg(long)]
    pub user: Option<String>,
    /// Replace an existing provisioning.json.
    #[arg(long)]
    pub force: bool,
    /// Read and check everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --source file: the prepared file.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Also append the outcome to this file (installers run without a console).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Directory URL, ldap://host:389 or ldaps://host:636.
    #[arg(long, env = "ONRAMP_LDAP_URL")]
    pub ldap_url: Option<String>,
    /// Search base for users.
    #[arg(long, env = "ONRAMP_LDAP_BASE_DN")]
    pub ldap_base_dn: Option<String>,
    /// Bind DN for a simple bind (anonymous without it).
    #[arg(long, env = "ONRAMP_LDAP_BIND_DN")]
    pub ldap_bind_dn: Option<String>,
    /// File holding the bind password (or ONRAMP_LDAP_PASSWORD).
    #[arg(long, env = "ONRAMP_LDAP_PASSWORD_FILE", value_name = "FILE")]
    pub ldap_password_file: Option<PathBuf>,
    /// Entra ID attribute set holding EnrollmentToken and EnrollmentUrl.
    #[arg(long, default_value = entra::DEFAULT_ATTRIBUTE_SET)]
    pub entra_attribute_set: String,
    /// Entra ID tenant (id or domain).
    #[arg(long, env = "ONRAMP_ENTRA_TENANT")]
    pub entra_tenant: Option<String>,
    /// Application (client) id of the app registration.
    #[arg(long, env = "ONRAMP_ENTRA_CLIENT_ID")]
    pub entra_client_id: Option<String>,
    /// Client secret file (app sign-in for labs and automation); without it a person signs
    /// in with a device code.
    #[arg(long, env = "ONRAMP_ENTRA_CLIENT_SECRET_FILE", value_name = "FILE")]
    pub entra_client_secret_file: Option<PathBuf>,
    /// The Entra user (object id or UPN) to read; default: the signed-in user (device code).
    #[arg(long)]
    pub entra_user: Option<String>,
    #[arg(long, env = "ONRAMP_GRAPH_URL", default_value = entra::DEFAULT_GRAPH_URL)]
    pub graph_url: String,
    #[arg(long, env = "ONRAMP_ENTRA_LOGIN_URL", default_value = entra::DEFAULT_LOGIN_URL)]
    pub entra_login_url: String,
}

impl From<Source> for helper::Source {
    fn from(s: Source) -> Self {
        match s {
            Source::Auto => helper::Source::Auto,
            Source::Ad => helper::Source::Ad,
            Source::Ldap => helper::Source::Ldap,
            Source::Entra => helper::Source::Entra,
            Source::File => helper::Source::File,
        }
    }
}

impl ProvisionArgs {
    /// The library's request; the bind password may also come from ONRAMP_LDAP_PASSWORD
    /// (kept out of `--help`, which would show an `env` value).
    pub fn request(&self) -> Request {
        Request {
            source: self.source.into(),
            attribute: self.ad_attribute.clone(),
            output: self.output.clone(),
            user: self.user.clone(),
            force: self.force,
            dry_run: self.dry_run,
            from: self.from.clone(),
            ldap: LdapOptions {
                url: self.ldap_url.clone(),
                base_dn: self.ldap_base_dn.clone(),
                bind_dn: self.ldap_bind_dn.clone(),
                password_file: self.ldap_password_file.clone(),
                password: std::env::var("ONRAMP_LDAP_PASSWORD").ok(),
            },
            entra: EntraOptions {
                attribute_set: self.entra_attribute_set.clone(),
                tenant: self.entra_tenant.clone(),
                client_id: self.entra_client_id.clone(),
                client_secret_file: self.entra_client_secret_file.clone(),
                user: self.entra_user.clone(),
                graph_url: self.graph_url.clone(),
                login_url: self.entra_login_url.clone(),
            },
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

    #[test]
    fn every_subcommand_has_a_description() {
        use clap::CommandFactory;
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no description", sub.get_name());
        }
    }
}
