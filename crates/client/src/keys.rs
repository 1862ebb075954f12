//! WireGuard key pairs, made on this machine; the private key never leaves it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub struct KeyPair {
    pub private: String,
    pub public: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

/// A new X25519 key pair from the OS RNG, base64 as WireGuard writes keys.
pub fn generate() -> KeyPair {
    let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
    let public = x25519_dalek::PublicKey::from(&secret);
    KeyPair { private: STANDARD.encode(secret.to_bytes()), public: STANDARD.encode(public.as_bytes()) }
}

/// The public key of a base64 private key (to check a stored pair).
pub fn public_of(private: &str) -> Option<String> {
    let bytes: [u8; 32] = STANDARD.decode(private).ok()?.try_into().ok()?;
    Some(STANDARD.encode(x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes)).as_bytes()))
}

/// A wg-quick config with the private key filled in (the server sends a placeholder).
pub fn fill_private_key(config: &str, private: &str) -> String {
    config.replace(onramp_domain::wg::PRIVATE_KEY_PLACEHOLDER, private)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_match() {
        let k = generate();
        assert_eq!(public_of(&k.private).unwrap(), k.public);
        assert_eq!(STANDARD.decode(&k.public).unwrap().len(), 32);
        assert!(!format!("{k:?}").contains(&k.private));
        assert_ne!(generate().private, k.private);
    }
}
