//! `onramp admin device ...`: registered devices and the configs core hands them.

use super::{print_json, time};
use clap::Subcommand;
use onramp_core::{Actor, Core};

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// List devices with their owner and addresses.
    List {
        /// Only this user's devices.
        #[arg(long, value_name = "USERNAME")]
        user: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a device; gateways drop its peer at once.
    Delete {
        /// The device's id (see `list`).
        id: i64,
    },
    /// Print a device's wg-quick config as core hands it out. The private key stays a
    /// placeholder: it never leaves the device, and core never knows it.
    Config {
        /// The device's id (see `list`).
        id: i64,
        /// The location whose config to print (needed when the device has several).
        #[arg(long, value_name = "NAME")]
        location: Option<String>,
        /// Print the config records as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(core: &Core, cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::List { user, json } => {
            let list = core.list_devices(user.as_deref()).await?;
            if json {
                return print_json(&list);
            }
            println!("{:<5} {:<16} {:<24} {:<45} {:<20} ADDRESSES", "ID", "USER", "NAME", "PUBLIC KEY", "CREATED");
            for d in list {
                let addresses: Vec<String> =
                    d.configs.iter().map(|c| format!("{}={}", c.network_name, c.assigned_ip)).collect();
                println!(
                    "{:<5} {:<16} {:<24} {:<45} {:<20} {}",
                    d.id,
                    d.username,
                    d.name,
                    d.pubkey,
                    time(Some(d.created_at)),
                    addresses.join(" ")
                );
            }
        }
        DeviceCommand::Delete { id } => {
            core.delete_device(&Actor::system("cli"), id).await?;
            eprintln!("device {id} deleted");
        }
        DeviceCommand::Config { id, location, json } => {
            let d = core.get_device(id).await?;
            let names = || d.configs.iter().map(|c| c.network_name.as_str()).collect::<Vec<_>>().join(", ");
            let configs: Vec<_> = match &location {
                Some(l) => d.configs.iter().filter(|c| c.network_name == *l).collect(),
                None => d.configs.iter().collect(),
            };
            if let (Some(l), true) = (&location, configs.is_empty()) {
                anyhow::bail!("--location: device {id} has no config for location {l:?} (it has: {})", names());
            }
            if json {
                return print_json(&configs);
            }
            match configs.as_slice() {
                [] => anyhow::bail!("device {id} has no address in any location it may use yet"),
                [one] => print!("{}", one.config),
                _ => {
                    anyhow::bail!("--location: device {id} has configs for several locations ({}); choose one", names())
                }
            }
        }
    }
    Ok(())
}
