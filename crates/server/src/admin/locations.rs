//! `onramp admin location ...`: VPN locations (one gateway network each).

use super::{flag_error, print_json};
use clap::Subcommand;
use onramp_core::{Actor, Core, LocationInfo, LocationInput, StringOrList};

/// API field -> flag, where the names differ.
const FLAGS: &[(&str, &str)] = &[
    ("keepalive_interval", "--keepalive"),
    ("mfa_mode", "--mfa"),
    ("allowed_groups", "--groups"),
    ("pubkey", "--gateway-pubkey"),
];

#[derive(Subcommand)]
pub enum LocationCommand {
    /// List locations.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a location.
    Create {
        /// A unique name, shown to users.
        #[arg(long)]
        name: String,
        /// The gateway's address(es) with prefix, comma-separated: 10.10.0.1/24
        #[arg(long, value_name = "CIDR[,CIDR]")]
        address: String,
        /// Host name or IP address clients connect to.
        #[arg(long, value_name = "HOST")]
        endpoint: String,
        /// WireGuard UDP port of the gateway.
        #[arg(long, default_value_t = 51820)]
        port: i64,
        #[command(flatten)]
        opts: Options,
        /// Print the new location as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a location: given flags replace their value, the others stay as they are.
    Edit {
        /// The location's current name.
        location: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// New gateway address(es) with prefix, comma-separated.
        #[arg(long, value_name = "CIDR[,CIDR]")]
        address: Option<String>,
        /// Host name or IP address clients connect to.
        #[arg(long, value_name = "HOST")]
        endpoint: Option<String>,
        /// WireGuard UDP port of the gateway.
        #[arg(long)]
        port: Option<i64>,
        #[command(flatten)]
        opts: Options,
        /// Print the changed location as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Settings shared by `create` and `edit`; absent = the default (create) or unchanged (edit).
#[derive(clap::Args)]
pub struct Options {
    /// Networks routed through the tunnel, comma-separated [default: the location's subnets]
    #[arg(long, value_name = "CIDR[,CIDR]")]
    allowed_ips: Option<String>,
    /// DNS servers and search domains for clients, comma-separated ("" for none).
    #[arg(long, value_name = "IP[,DOMAIN]")]
    dns: Option<String>,
    /// Groups whose members may use the location, comma-separated ("" = everyone).
    #[arg(long, value_name = "GROUP[,GROUP]")]
    groups: Option<String>,
    /// PersistentKeepalive in seconds, 0 for none [default: 25]
    #[arg(long, value_name = "SECS")]
    keepalive: Option<i64>,
    /// Multi-factor authentication for connections [default: disabled]
    #[arg(long, value_enum)]
    mfa: Option<Mfa>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Mfa {
    Disabled,
    Internal,
    External,
}

impl Mfa {
    /// PROTOCOL.md `location_mfa_mode`.
    fn mode(self) -> i64 {
        match self {
            Mfa::Disabled => 1,
            Mfa::Internal => 2,
            Mfa::External => 3,
        }
    }

    fn name(mode: i64) -> &'static str {
        match mode {
            2 => "internal",
            3 => "external",
            _ => "disabled",
        }
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect()
}

pub async fn run(core: &Core, cmd: LocationCommand) -> anyhow::Result<()> {
    let cli = Actor::system("cli");
    let (info, json) = match cmd {
        LocationCommand::List { json } => {
            let all = core.list_locations().await?;
            if json {
                return print_json(&all);
            }
            println!(
                "{:<5} {:<16} {:<20} {:<28} {:<24} {:<9} GATEWAY",
                "ID", "NAME", "ADDRESS", "ENDPOINT", "ALLOWED IPS", "MFA"
            );
            for l in all {
                println!(
                    "{:<5} {:<16} {:<20} {:<28} {:<24} {:<9} {}",
                    l.id,
                    l.name,
                    l.address.join(","),
                    format!("{}:{}", l.endpoint, l.port),
                    l.allowed_ips.join(","),
                    Mfa::name(l.mfa_mode),
                    if l.gateway_connected { "connected" } else { "-" }
                );
            }
            return Ok(());
        }
        LocationCommand::Create { name, address, endpoint, port, opts, json } => {
            let input = LocationInput {
                name,
                address: StringOrList::Many(list(&address)),
                endpoint,
                port,
                allowed_ips: opts.allowed_ips.as_deref().map(|a| StringOrList::Many(list(a))),
                dns: opts.dns,
                allowed_groups: opts.groups.as_deref().map(list).unwrap_or_default(),
                pubkey: None,
                keepalive_interval: opts.keepalive,
                mfa_mode: opts.mfa.map(Mfa::mode),
            };
            (core.create_location(&cli, input).await.map_err(|e| flag_error(e, FLAGS))?, json)
        }
        LocationCommand::Edit { location, name, address, endpoint, port, opts, json } => {
            let id = core.location_id_by_name(&location).await?;
            let cur = core.get_location(id).await?;
            let allowed_ips = match (opts.allowed_ips.as_deref(), &address) {
                (Some(a), _) => Some(list(a)),
                // Allowed IPs that were the old subnets follow the new ones.
                (None, Some(_)) if cur.allowed_ips == subnets(&cur) => None,
                (None, _) => Some(cur.allowed_ips.clone()),
            };
            let input = LocationInput {
                name: name.unwrap_or_else(|| cur.name.clone()),
                address: StringOrList::Many(address.as_deref().map(list).unwrap_or_else(|| cur.address.clone())),
                endpoint: endpoint.unwrap_or_else(|| cur.endpoint.clone()),
                port: port.unwrap_or(cur.port),
                allowed_ips: allowed_ips.map(StringOrList::Many),
                dns: opts.dns.or_else(|| cur.dns.clone()),
                allowed_groups: opts.groups.as_deref().map(list).unwrap_or_else(|| cur.allowed_groups.clone()),
                // Absent keeps the key the gateway registered.
                pubkey: None,
                keepalive_interval: Some(opts.keepalive.unwrap_or(cur.keepalive_interval)),
                mfa_mode: Some(opts.mfa.map(Mfa::mode).unwrap_or(cur.mfa_mode)),
            };
            (core.update_location(&cli, id, input).await.map_err(|e| flag_error(e, FLAGS))?, json)
        }
    };
    if json {
        return print_json(&info);
    }
    eprintln!(
        "location {} saved (id {}): {} via {}:{}",
        info.name,
        info.id,
        info.address.join(","),
        info.endpoint,
        info.port
    );
    Ok(())
}

/// The networks of a location's addresses (10.10.0.1/24 -> 10.10.0.0/24), as allowed IPs
/// default to them.
fn subnets(l: &LocationInfo) -> Vec<String> {
    l.address.iter().filter_map(|a| a.parse::<ipnet::IpNet>().ok()).map(|n| n.trunc().to_string()).collect()
}
