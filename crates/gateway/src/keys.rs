//! The gateway's WireGuard key pair: made here, on first start, from the OS RNG, kept in
//! `<data dir>/gateway.key` (base64 private key, mode 0600, directory 0700). Only the
//! public key ever leaves the machine.

use anyhow::Context;
use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "gateway.key";

/// A private key. `Debug` never shows it.
#[derive(Clone)]
pub struct PrivateKey(String);

impl PrivateKey {
    /// The base64 form WireGuard configuration takes.
    pub fn base64(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PrivateKey,
    /// base64, as core and the clients know it.
    pub public: String,
    /// True when this start made the key (first start or `--rotate-key`).
    pub new: bool,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn pair(secret: x25519_dalek::StaticSecret, new: bool) -> KeyPair {
    let public = x25519_dalek::PublicKey::from(&secret);
    KeyPair { private: PrivateKey(b64().encode(secret.to_bytes())), public: b64().encode(public.as_bytes()), new }
}

/// Creates `dir` if needed and makes it owner-only.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("data_dir (ONRAMP_GATEWAY_DATA_DIR): cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", dir.display()))?;
    }
    Ok(())
}

/// Writes the key to a fresh 0600 file and renames it over the old one, so a crash leaves
/// either the old key or the new one, never half a key or a readable copy.
fn write_key(path: &Path, key: &PrivateKey) -> anyhow::Result<()> {
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(format!("{}\n", key.base64()).as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<x25519_dalek::StaticSecret> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(file = %path.display(), mode = format!("{:o}", mode & 0o777), "the private key was readable by others; restricting it to 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
        }
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = b64().decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).with_context(|| {
        format!(
            "{} does not hold a base64 WireGuard private key; move it away to make a new key \
             (core then needs --rotate-key)",
            path.display()
        )
    })?;
    Ok(x25519_dalek::StaticSecret::from(bytes))
}

/// The key file's path in `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

/// Loads the key pair from `dir`, making one on first start or when `rotate` asks for a
/// new one.
pub fn load_or_create(dir: &Path, rotate: bool) -> anyhow::Result<KeyPair> {
    prepare_dir(dir)?;
    let path = key_path(dir);
    if !rotate && path.exists() {
        return Ok(pair(read_key(&path)?, false));
    }
    let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
    let kp = pair(secret, true);
    write_key(&path, &kp.private)?;
    Ok(kp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_owner_only_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gw");
        let first = load_or_create(&dir, false).unwrap();
        assert!(first.new);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&key_path(&dir)), 0o600);
        let again = load_or_create(&dir, false).unwrap();
        assert!(!again.new);
        assert_eq!(again.public, first.public, "a restart keeps the key");
        assert_eq!(again.private.base64(), first.private.base64());
        // The public key is the private key's.
        let secret: [u8; 32] = b64().decode(first.private.base64()).unwrap().try_into().unwrap();
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        assert_eq!(b64().encode(public.as_bytes()), first.public);
        assert!(!format!("{first:?}").contains(first.private.base64()), "Debug hides the private key");
    }

    #[test]
    fn rotate_makes_a_new_key_and_keeps_it() {
        let tmp = tempfile::tempdir().unwrap();
        let first = load_or_create(tmp.path(), false).unwrap();
        let rotated = load_or_create(tmp.path(), true).unwrap();
        assert!(rotated.new);
        assert_ne!(rotated.public, first.public);
        assert_eq!(mode(&key_path(tmp.path())), 0o600);
        assert_eq!(load_or_create(tmp.path(), false).unwrap().public, rotated.public);
        assert!(!tmp.path().join("gateway.key.tmp").exists());
    }

    #[test]
    fn loose_permissions_are_tightened_and_garbage_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let kp = load_or_create(tmp.path(), false).unwrap();
        let path = key_path(tmp.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create(tmp.path(), false).unwrap().public, kp.public);
        assert_eq!(mode(&path), 0o600);
        std::fs::write(&path, "not a key\n").unwrap();
        let e = load_or_create(tmp.path(), false).unwrap_err().to_string();
        assert!(e.contains("gateway.key") && e.contains("base64"), "{e}");
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A private key from its base64 text, for tests of the interface.
    pub fn private_key(b64: &str) -> super::PrivateKey {
        super::PrivateKey(b64.to_owned())
    }
}
