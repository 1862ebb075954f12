//! `--masquerade`: NAT for traffic from the tunnel networks leaving by another interface, so
//! the location's hosts answer clients without a route back to the tunnel. The rules carry
//! a comment naming the interface and are removed with it.

use defguard_wireguard_rs::net::IpAddrMask;
use std::net::IpAddr;
use std::process::Command;

/// The rules this process added (or adopted from a killed predecessor).
#[derive(Debug, Default)]
pub struct Masquerade {
    rules: Vec<(&'static str, Vec<String>)>,
}

fn tool(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "iptables"
    } else {
        "ip6tables"
    }
}

fn run(tool: &str, args: &[&str]) -> Result<bool, String> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {tool} (install iptables: apt-get install -y iptables): {e}"))?;
    Ok(out.status.success())
}

fn rule_args<'a>(op: &'a str, spec: &'a [String]) -> Vec<&'a str> {
    // -w: wait for the xtables lock rather than fail when another tool holds it.
    let mut args = vec!["-w", "-t", "nat", op, "POSTROUTING"];
    args.extend(spec.iter().map(String::as_str));
    args
}

/// Fails unless iptables can be run, so `--masquerade` on a host without it stops at start.
pub fn check_available() -> Result<(), String> {
    match run("iptables", &["--version"])? {
        true => Ok(()),
        false => Err("iptables --version failed; --masquerade needs a working iptables".into()),
    }
}

impl Masquerade {
    /// Masquerades each network of `addresses` going out of any interface but `interface`.
    pub fn add(interface: &str, addresses: &[IpAddrMask]) -> Result<Masquerade, String> {
        let mut m = Masquerade::default();
        for a in addresses {
            let net = a.normalized();
            let spec: Vec<String> = [
                "-s",
                &format!("{}/{}", net.address, net.cidr),
                "!",
                "-o",
                interface,
                "-m",
                "comment",
                "--comment",
                &format!("onramp-gateway {interface}"),
                "-j",
                "MASQUERADE",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let tool = tool(&net.address);
            // A rule left by a killed run is adopted rather than doubled.
            if !run(tool, &rule_args("-C", &spec))? && !run(tool, &rule_args("-A", &spec))? {
                m.remove();
                return Err(format!("{tool} refused the MASQUERADE rule for {}/{}", net.address, net.cidr));
            }
            tracing::info!(%interface, network = %format!("{}/{}", net.address, net.cidr), "masquerading traffic from the tunnel");
            m.rules.push((tool, spec));
        }
        Ok(m)
    }

    pub fn remove(&mut self) {
        for (tool, spec) in self.rules.drain(..) {
            match run(tool, &rule_args("-D", &spec)) {
                Ok(true) => {}
                Ok(false) => tracing::warn!(%tool, rule = %spec.join(" "), "could not remove a MASQUERADE rule"),
                Err(e) => tracing::warn!(error = %e, "could not remove a MASQUERADE rule"),
            }
        }
    }
}

impl Drop for Masquerade {
    fn drop(&mut self) {
        self.remove();
    }
}
