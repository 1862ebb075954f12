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

/// Curve25519 u-coordinates of small order (1, 2, 4 or 8), little-endian, as X25519 public
/// keys: 0, 1, the two points of order 8, p-1, and the non-canonical p and p+1 (p = 2^255-19),
/// the points X25519 papers list as giving an all-zero (or predictable) shared secret, the
/// same set libsodium refuses. X25519 ignores the top bit, so that bit is masked before
/// comparing: each entry also stands for its encoding with bit 255 set.
const LOW_ORDER_POINTS: [[u8; 32]; 7] = [
    // 0 (order 4) and 1 (order 1)
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    // the two points of order 8
    hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    // p-1 (order 2), then p and p+1: non-canonical encodings of 0 and 1
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
];

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// True for a public key no real peer has: a small-order point (the all-zero key among
/// them), with which the Diffie-Hellman result does not depend on the peer's secret.
pub fn is_low_order_key(key: &[u8; 32]) -> bool {
    let mut k = *key;
    k[31] &= 0x7f;
    LOW_ORDER_POINTS.contains(&k)
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

    /// Checks the list with a real X25519: every listed point (and its top-bit variant)
    /// gives an all-zero shared secret with any secret, so each really is of small order.
    #[test]
    fn listed_points_are_low_order() {
        for p in LOW_ORDER_POINTS {
            for top in [0u8, 0x80] {
                let mut k = p;
                k[31] |= top;
                assert!(is_low_order_key(&k), "{k:02x?}");
                let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
                let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(k));
                assert_eq!(shared.as_bytes(), &[0u8; 32], "{k:02x?}");
            }
        }
        assert!(!is_low_order_key(&[7u8; 32]));
        assert!(!is_low_order_key(&[9u8; 32]));
    }

    proptest::proptest! {
        /// Keys made by X25519 from random secrets are never refused.
        #[test]
        fn real_keys_are_not_low_order(seed in proptest::array::uniform32(proptest::prelude::any::<u8>())) {
            let secret = x25519_dalek::StaticSecret::from(seed);
            let public = x25519_dalek::PublicKey::from(&secret);
            proptest::prop_assert!(!is_low_order_key(public.as_bytes()));
        }

        /// Refused keys are exactly those whose Diffie-Hellman result is all zeros.
        #[test]
        fn refusal_matches_a_zero_shared_secret(k in proptest::array::uniform32(proptest::prelude::any::<u8>())) {
            let secret = x25519_dalek::StaticSecret::from([0x42u8; 32]);
            let zero = secret.diffie_hellman(&x25519_dalek::PublicKey::from(k)).as_bytes() == &[0u8; 32];
            proptest::prop_assert_eq!(is_low_order_key(&k), zero);
        }
    }
}
