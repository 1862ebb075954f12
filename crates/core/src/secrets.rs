//! Encryption at rest for secrets kept in the database (mail bodies with tokens, the SMTP
//! password), with a key that is NOT in the database: a key file (32 random bytes as hex,
//! owner-only 0600), created on first start.
//!
//! Stored form: `enc1:<key id>:<base64(nonce || ciphertext)>`, XChaCha20-Poly1305 with a
//! random 24-byte nonce per value, and the column name as associated data (a value copied
//! into another column does not decrypt). The key id (a hash prefix of the key) lets a
//! wrong key be told apart from damaged data, and leaves room for a future rotation.
//! Values without the prefix are legacy plaintext from before encryption and are read as is.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const PREFIX: &str = "enc1:";

/// The instance's data-encryption key. Debug never shows the key.
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    id: String,
    /// Where the key came from, for error messages.
    source: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).field("source", &self.source).finish_non_exhaustive()
    }
}

impl SecretKey {
    fn from_bytes(bytes: &[u8; 32], source: String) -> Self {
        let id = hex::encode(&Sha256::new().chain_update(b"onramp key id\0").chain_update(bytes).finalize()[..4]);
        Self { cipher: XChaCha20Poly1305::new(bytes.into()), id, source }
    }

    /// A random key that lives only as long as this process (for tests and tools that keep
    /// nothing encrypted across restarts).
    pub fn ephemeral() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self::from_bytes(&b, "an ephemeral in-memory key".into())
    }

    /// Reads the key file at `path`, creating it (0600, in a 0700 directory if missing) with
    /// a new random key when it does not exist. Errors name the file.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        match Self::load(path) {
            Err(LoadError::Missing) => {}
            Err(LoadError::Bad(e)) => return Err(e),
            Ok(k) => return Ok(k),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir).map_err(|e| format!("cannot create {} for the secret key file: {e}", dir.display()))?;
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("cannot write secret key file {}: {e}", path.display()))?;
                tracing::info!(file = %path.display(), "created a new secret key file; back it up with the database");
                Ok(Self::from_bytes(&key, key_source(path)))
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path).map_err(|e| match e {
                LoadError::Missing => format!("secret key file {} vanished", path.display()),
                LoadError::Bad(e) => e,
            }),
            Err(e) => Err(format!("cannot create secret key file {}: {e}", path.display())),
        }
    }

    fn load(path: &Path) -> Result<Self, LoadError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Missing),
            Err(e) => return Err(LoadError::Bad(format!("cannot read secret key file {}: {e}", path.display()))),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(LoadError::Bad(format!(
                    "secret key file {} is accessible by others (mode {mode:o}); run chmod 600 on it",
                    path.display()
                )));
            }
        }
        let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
            LoadError::Bad(format!(
                "secret key file {} does not hold a key (expected 64 hex digits: 32 random bytes)",
                path.display()
            ))
        })?;
        Ok(Self::from_bytes(&bytes, key_source(path)))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plain` for the column `context`.
    pub fn seal(&self, context: &str, plain: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{PREFIX}{}:{}", self.id, base64::Engine::encode(&base64::engine::general_purpose::STANDARD, blob))
    }

    /// Decrypts a value written by [`seal`](Self::seal) for `context`; a value without the
    /// prefix is legacy plaintext and returned unchanged.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, data) = rest.split_once(':').ok_or_else(|| format!("{context}: malformed encrypted value"))?;
        if id != self.id {
            return Err(format!(
                "{context} was encrypted with key {id}, but {} holds key {}: every process sharing this \
                 database needs the same key file (ONRAMP_SECRET_KEY_FILE)",
                self.source, self.id
            ));
        }
        let blob = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data)
            .map_err(|_| format!("{context}: malformed encrypted value"))?;
        if blob.len() < 24 {
            return Err(format!("{context}: malformed encrypted value"));
        }
        let (nonce, ct) = blob.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() })
            .map_err(|_| format!("{context}: cannot decrypt with {} (damaged value)", self.source))?;
        String::from_utf8(plain).map_err(|_| format!("{context}: decrypted value is not UTF-8"))
    }

    /// Whether `stored` is encrypted (not legacy plaintext).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

enum LoadError {
    Missing,
    Bad(String),
}

fn key_source(path: &Path) -> String {
    format!("secret key file {}", PathBuf::from(path).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_refusals() {
        let k = SecretKey::ephemeral();
        let s = k.seal("mail_outbox.body", "token abc");
        assert!(s.starts_with("enc1:") && !s.contains("abc"));
        assert_ne!(s, k.seal("mail_outbox.body", "token abc"), "a fresh nonce per value");
        assert_eq!(k.open("mail_outbox.body", &s).unwrap(), "token abc");
        assert!(k.open("settings.smtp.password", &s).is_err(), "bound to its column");
        assert_eq!(k.open("x", "legacy text").unwrap(), "legacy text");
        let other = SecretKey::ephemeral();
        let e = other.open("mail_outbox.body", &s).unwrap_err();
        assert!(e.contains(k.id()) && e.contains("ONRAMP_SECRET_KEY_FILE"), "{e}");
        assert!(!format!("{k:?}").contains("cipher"));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let a = SecretKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let b = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        std::fs::write(&path, "nonsense").unwrap();
        let e = SecretKey::load_or_create(&path).unwrap_err();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
