//! `onramp admin network-device ...`: headless machines (servers, routers) of one location,
//! with no user, and the tokens they enroll with.

use super::{actor, flag_error, print_json, time, As};
use clap::Subcommand;
use onramp_core::{Core, NetworkDeviceInput, StartCliRequest};

#[derive(Subcommand)]
pub enum NetworkDeviceCommand {
    /// Create a network device in a location. Without --ip it gets one free address in each
    /// of the location's subnets.
    Create {
        /// The location's name.
        #[arg(long)]
        location: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// An address for the device, inside the location's subnets and free (repeatable).
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<String>,
        /// Print the device as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        who: As,
    },
    /// List network devices.
    List {
        /// Only this location's devices.
        #[arg(long, value_name = "NAME")]
        location: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a network device; its gateway drops the peer at once.
    Delete {
        /// The device's id (see `list`).
        id: i64,
        #[command(flatten)]
        who: As,
    },
    /// Revoke the device's unused enrollment tokens.
    RevokeTokens {
        /// The device's id (see `list`).
        id: i64,
        #[command(flatten)]
        who: As,
    },
    /// Issue the token a headless client enrolls the device with (`onramp-client start
    /// --token-file`, or any client of the enrollment API). The token is the last line of
    /// stdout (shown once); earlier unused tokens of the device are revoked.
    StartCli {
        /// The device's id (see `list`).
        id: i64,
        /// Token lifetime such as 12h, 3d, 1w (default: the enrollment token setting, 24h).
        #[arg(long)]
        expires: Option<String>,
        /// Print {enrollment_token, enrollment_url, expires_at} as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        who: As,
    },
}

pub async fn run(core: &Core, cmd: NetworkDeviceCommand) -> anyhow::Result<()> {
    match cmd {
        NetworkDeviceCommand::Create { location, name, description, ips, json, who } => {
            let a = actor(core, &who.user).await;
            let location_id = core.location_id_by_name(&location).await?;
            let input = NetworkDeviceInput {
                name,
                description,
                location_id,
                assigned_ips: if ips.is_empty() { None } else { Some(ips) },
            };
            let d = core
                .create_network_device(&a, input)
                .await
                .map_err(|e| flag_error(e, &[("assigned_ips", "--ip"), ("location_id", "--location")]))?;
            if json {
                return print_json(&d);
            }
            eprintln!(
                "network device {:?} (id {}) created in location {} with {}; issue its enrollment token with \
                 `onramp admin network-device start-cli {}`",
                d.name,
                d.id,
                d.location_name,
                d.assigned_ips.join(", "),
                d.id
            );
            println!("{}", d.id);
        }
        NetworkDeviceCommand::List { location, json } => {
            let list = core.list_network_devices(location.as_deref()).await?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<5} {:<24} {:<16} {:<24} {:<11} {:<20} DESCRIPTION",
                "ID", "NAME", "LOCATION", "ADDRESSES", "STATE", "CREATED"
            );
            for d in list {
                println!(
                    "{:<5} {:<24} {:<16} {:<24} {:<11} {:<20} {}",
                    d.id,
                    d.name,
                    d.location_name,
                    d.assigned_ips.join(","),
                    if d.configured { "enrolled" } else { "waiting" },
                    time(Some(d.created_at)),
                    d.description.as_deref().unwrap_or("")
                );
            }
        }
        NetworkDeviceCommand::Delete { id, who } => {
            let a = actor(core, &who.user).await;
            core.delete_network_device(&a, id).await?;
            eprintln!("network device {id} deleted");
        }
        NetworkDeviceCommand::RevokeTokens { id, who } => {
            let a = actor(core, &who.user).await;
            let n = core.revoke_network_device_tokens(&a, id).await?;
            eprintln!("{n} unused token(s) of network device {id} revoked");
        }
        NetworkDeviceCommand::StartCli { id, expires, json, who } => {
            let a = actor(core, &who.user).await;
            let t = core
                .start_network_device_cli(&a, StartCliRequest { device_id: id, token_expiration_time: expires })
                .await
                .map_err(|e| flag_error(e, &[("token_expiration_time", "--expires")]))?;
            if json {
                return print_json(&t);
            }
            eprintln!(
                "Enrollment token for network device {id}, valid until {}. It is shown only now; hand it to the \
                 machine in a file or its environment (ONRAMP_TOKEN), never on a command line. Enrollment URL: {}",
                t.expires_at, t.enrollment_url
            );
            println!("{}", t.enrollment_token);
        }
    }
    Ok(())
}
