//! wg-quick configuration text as PROTOCOL.md section 3 describes it. The private key is the
//! literal placeholder `YOUR_PRIVATE_KEY`: the server never knows it; clients fill it in.

pub const PRIVATE_KEY_PLACEHOLDER: &str = "YOUR_PRIVATE_KEY";

pub struct PeerConfig<'a> {
    pub assigned_ips: &'a [String],
    pub dns: Option<&'a str>,
    pub gateway_pubkey: &'a str,
    pub allowed_ips: &'a [String],
    pub endpoint: &'a str,
    pub keepalive: i32,
}

pub fn render_config(c: &PeerConfig<'_>) -> String {
    let mut s =
        format!("[Interface]\nPrivateKey = {PRIVATE_KEY_PLACEHOLDER}\nAddress = {}\n", c.assigned_ips.join(", "));
    if let Some(dns) = c.dns.filter(|d| !d.is_empty()) {
        s.push_str(&format!("DNS = {dns}\n"));
    }
    s.push_str(&format!("\n[Peer]\nPublicKey = {}\n", c.gateway_pubkey));
    if !c.allowed_ips.is_empty() {
        s.push_str(&format!("AllowedIPs = {}\n", c.allowed_ips.join(", ")));
    }
    s.push_str(&format!("Endpoint = {}\nPersistentKeepalive = {}\n", c.endpoint, c.keepalive));
    s
}

/// `host:port`, bracketing IPv6 literals.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_wg_quick() {
        let ips = vec!["10.0.0.2".to_string()];
        let allowed = vec!["10.0.0.0/24".to_string(), "192.168.0.0/16".to_string()];
        let text = render_config(&PeerConfig {
            assigned_ips: &ips,
            dns: Some("10.0.0.1"),
            gateway_pubkey: "GW=",
            allowed_ips: &allowed,
            endpoint: &endpoint("vpn.example.com", 51820),
            keepalive: 25,
        });
        assert_eq!(
            text,
            "[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = 10.0.0.2\nDNS = 10.0.0.1\n\n[Peer]\nPublicKey = GW=\nAllowedIPs = 10.0.0.0/24, 192.168.0.0/16\nEndpoint = vpn.example.com:51820\nPersistentKeepalive = 25\n"
        );
        assert_eq!(endpoint("fd00::1", 51820), "[fd00::1]:51820");
    }
}
