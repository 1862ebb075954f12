//! `onramp admin user ...`: accounts and the tokens that enroll or configure them.

use super::{actor, flag_error, print_json, write_private, As};
use clap::Subcommand;
use onramp_core::{Actor, Core, UserInput, UserPatch};
use onramp_domain::provisioning::ProvisioningFile;
use onramp_proto::StartEnrollmentRequest;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum UserCommand {
    /// List users with their state and groups.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a user; they enroll later with a token from `start-enrollment`.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        first_name: String,
        #[arg(long)]
        last_name: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        phone: Option<String>,
        /// Print the new user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enable a user (recovery: works on the database even when no admin can sign in).
    Enable {
        /// The user's login name.
        username: String,
    },
    /// Disable a user; refused when that would leave no active admin.
    Disable {
        /// The user's login name.
        username: String,
    },
    /// Delete a user with their devices and tokens; refused for the last active admin.
    Delete {
        /// The user's login name.
        username: String,
    },
    /// Issue an enrollment token (replaces the user's unused ones) and print or e-mail it.
    StartEnrollment(IssueArgs),
    /// Issue a desktop-configuration token for an enrolled user (adds this instance to
    /// their client) and print or e-mail it.
    StartDesktop(IssueArgs),
}

/// What `start-enrollment` / `start-desktop` print on stdout.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PrintField {
    /// The token alone.
    Token,
    /// The enrollment URL alone.
    Url,
}

#[derive(clap::Args)]
#[command(after_help = "Output: without --email the token and URL go to stdout as `token: ...` and `url: ...` \
lines; --print token prints the token alone (TOKEN=$(onramp admin user start-enrollment jdoe --print token)); \
--json prints {\"enrollment_token\", \"enrollment_url\"}, which is also a valid provisioning.json. With \
--provisioning-file only the file gets the token, unless --print or --json asks for it too. With --email \
the token goes only into the e-mail.")]
pub struct IssueArgs {
    /// The user's login name.
    username: String,
    /// Token lifetime such as 12h, 3d, 1w (default: the setting, 24h).
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// E-mail the invitation to ADDR through the mail outbox; the token is not printed.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["print", "json", "provisioning_file"])]
    email: Option<String>,
    /// Write the token and URL to PATH as a provisioning.json (owner-only, atomic).
    #[arg(long, value_name = "PATH")]
    provisioning_file: Option<PathBuf>,
    /// Print only this value on stdout, for scripts.
    #[arg(long, value_enum, conflicts_with = "json")]
    print: Option<PrintField>,
    /// Print {"enrollment_token", "enrollment_url"} as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    who: As,
}

pub async fn run(core: &Core, cmd: UserCommand) -> anyhow::Result<()> {
    let cli = Actor::system("cli");
    match cmd {
        UserCommand::List { json } => {
            let users = core.list_users().await?;
            if json {
                return print_json(&users);
            }
            println!("{:<20} {:<30} {:<9} {:<8} GROUPS", "USERNAME", "EMAIL", "STATE", "ACTIVE");
            for u in users {
                println!(
                    "{:<20} {:<30} {:<9} {:<8} {}",
                    u.username,
                    u.email,
                    u.enrollment_state,
                    u.is_active,
                    u.groups.join(",")
                );
            }
        }
        UserCommand::Create { username, first_name, last_name, email, phone, json } => {
            let input = UserInput { username, first_name, last_name, email, phone, password: None, is_active: None };
            let u = core.create_user(&cli, input).await.map_err(|e| flag_error(e, &[]))?;
            if json {
                return print_json(&u);
            }
            eprintln!("user {} created (id {})", u.username, u.id);
        }
        UserCommand::Enable { username } => {
            let patch = UserPatch { is_active: Some(true), ..UserPatch::default() };
            core.update_user(&cli, &username, patch).await?;
            eprintln!("user {username} enabled");
        }
        UserCommand::Disable { username } => {
            let patch = UserPatch { is_active: Some(false), ..UserPatch::default() };
            core.update_user(&cli, &username, patch).await?;
            eprintln!("user {username} disabled");
        }
        UserCommand::Delete { username } => {
            core.delete_user(&cli, &username).await?;
            eprintln!("user {username} deleted");
        }
        UserCommand::StartEnrollment(args) => issue(core, args, false).await?,
        UserCommand::StartDesktop(args) => issue(core, args, true).await?,
    }
    Ok(())
}

/// Issues an enrollment (or desktop-configuration) token as `issuer`, e-mailing it to
/// `email` when given; errors name the CLI flag.
pub(crate) async fn start(
    core: &Core,
    issuer: &str,
    username: &str,
    expires: Option<String>,
    email: Option<String>,
    desktop: bool,
) -> anyhow::Result<ProvisioningFile> {
    let a = actor(core, issuer).await;
    let req =
        StartEnrollmentRequest { send_enrollment_notification: email.is_some(), email, token_expiration_time: expires };
    let result = if desktop {
        core.start_desktop(&a, username, req).await
    } else {
        core.start_enrollment(&a, username, req).await
    };
    let r = result.map_err(|e| flag_error(e, &[("token_expiration_time", "--expires")]))?;
    Ok(ProvisioningFile { enrollment_token: r.enrollment_token, enrollment_url: r.enrollment_url })
}

async fn issue(core: &Core, args: IssueArgs, desktop: bool) -> anyhow::Result<()> {
    let file = start(core, &args.who.user, &args.username, args.expires, args.email.clone(), desktop).await?;
    let what = if desktop { "desktop-configuration" } else { "enrollment" };
    if let Some(to) = &args.email {
        eprintln!(
            "{what} token for {} issued; the message to {to} is queued (see `onramp admin mail list`)",
            args.username
        );
        return Ok(());
    }
    if let Some(path) = &args.provisioning_file {
        write_private(path, serde_json::to_string_pretty(&file)?.as_bytes())?;
        eprintln!("{what} token for {} written to {}", args.username, path.display());
    }
    match (args.print, args.json) {
        (Some(PrintField::Token), _) => println!("{}", file.enrollment_token),
        (Some(PrintField::Url), _) => println!("{}", file.enrollment_url),
        (None, true) => print_json(&file)?,
        // The file already holds the secret: no second copy on the terminal.
        (None, false) if args.provisioning_file.is_some() => {}
        (None, false) => {
            println!("token: {}", file.enrollment_token);
            println!("url: {}", file.enrollment_url);
            eprintln!("{what} token for {} issued; it is shown only now", args.username);
        }
    }
    Ok(())
}
