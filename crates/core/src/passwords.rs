//! Argon2id password hashing (the crate's default parameters: 19 MiB, t=2, p=1), bounded by
//! a semaphore so a burst of enrollments cannot allocate unbounded memory, and run off the
//! async threads.
//!
//! Each hash needs 19 MiB of working memory. Allocating it per hash on tokio's blocking
//! threads made glibc keep a heap per thread (core reached 870 MB RSS under an enrollment
//! burst), so the working memory is allocated once per permit and reused.

use crate::{CoreError, CoreResult};
use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub(crate) struct Hasher {
    permits: Arc<Semaphore>,
    /// Working memory, at most one buffer per permit.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes with caller-provided working memory; returns the PHC string.
fn hash_with(password: &[u8], memory: &mut [Block]) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw).map_err(|e| e.to_string())?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2().hash_password_into_with_memory(password, salt_bytes, &mut out, memory).map_err(|e| e.to_string())?;
    let params = Params::default();
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e: argon2::password_hash::Error| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

impl Hasher {
    pub fn new(max_concurrent: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max_concurrent.max(1))), buffers: Arc::new(Mutex::new(Vec::new())) }
    }

    pub async fn hash(&self, password: String) -> CoreResult<String> {
        let _permit = self.permits.acquire().await.map_err(|e| CoreError::Internal(e.to_string()))?;
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            let taken = buffers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut memory = taken.unwrap_or_else(|| vec![Block::default(); Params::default().block_count()]);
            let result = hash_with(password.as_bytes(), &mut memory);
            buffers.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
            result.map_err(|e| CoreError::Internal(format!("argon2: {e}")))
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
    }

    /// Whether `password` matches the PHC string `stored`, under the same permits and
    /// working memory as hashing. `None` (no such user or no password) still costs one
    /// hash, so response times do not tell which usernames exist.
    pub async fn verify(&self, password: String, stored: Option<String>) -> CoreResult<bool> {
        let _permit = self.permits.acquire().await.map_err(|e| CoreError::Internal(e.to_string()))?;
        let buffers = self.buffers.clone();
        tokio::task::spawn_blocking(move || {
            let taken = buffers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut memory = taken.unwrap_or_else(|| vec![Block::default(); Params::default().block_count()]);
            let result = match stored.as_deref().map(PasswordHash::new) {
                Some(Ok(phc)) => verify_with(password.as_bytes(), &phc, &mut memory),
                Some(Err(e)) => Err(format!("stored hash: {e}")),
                None => hash_with(password.as_bytes(), &mut memory).map(|_| false),
            };
            buffers.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
            result.map_err(|e| CoreError::Internal(format!("argon2: {e}")))
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
    }
}

/// Recomputes the hash with the stored salt and parameters; constant-time comparison.
fn verify_with(password: &[u8], phc: &PasswordHash<'_>, memory: &mut [Block]) -> Result<bool, String> {
    let params = Params::try_from(phc).map_err(|e| e.to_string())?;
    let expected = phc.hash.ok_or("stored hash has no output")?;
    let salt = phc.salt.ok_or("stored hash has no salt")?;
    let mut raw = [0u8; 64];
    let salt = salt.decode_b64(&mut raw).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; expected.len()];
    if params.block_count() > memory.len() {
        // Hashes made with larger parameters (imported users) get their own memory.
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        a.hash_password_into(password, salt, &mut out).map_err(|e| e.to_string())?;
    } else {
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        a.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..params.block_count()])
            .map_err(|e| e.to_string())?;
    }
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|e| e.to_string())? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[tokio::test]
    async fn hashes_verify_with_the_standard_argon2_and_reuse_memory() {
        let h = Hasher::new(2);
        let a = h.hash("Str0ng!Pass".into()).await.unwrap();
        let b = h.hash("Str0ng!Pass".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "fresh salt each time");
        // Verifiable by the stock implementation, so stored hashes stay portable.
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(Argon2::default().verify_password(b"Str0ng!Pass", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
        assert!(Argon2::default().verify_password(b"Str0ng!Pass", &PasswordHash::new(&b).unwrap()).is_ok());
        assert_eq!(h.buffers.lock().unwrap().len(), 1, "sequential hashes share one buffer");
    }

    #[tokio::test]
    async fn verify_accepts_the_password_only() {
        let h = Hasher::new(1);
        let a = h.hash("Str0ng!Pass".into()).await.unwrap();
        assert!(h.verify("Str0ng!Pass".into(), Some(a.clone())).await.unwrap());
        assert!(!h.verify("Str0ng!Pas".into(), Some(a.clone())).await.unwrap());
        assert!(!h.verify("Str0ng!Pass".into(), None).await.unwrap());
        // A hash made by the stock implementation with other parameters verifies too.
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 3, 1, None).unwrap());
        let salt = SaltString::generate(&mut OsRng);
        let phc = argon2::PasswordHasher::hash_password(&other, b"pw", &salt).unwrap().to_string();
        assert!(h.verify("pw".into(), Some(phc.clone())).await.unwrap());
        assert!(!h.verify("pW".into(), Some(phc)).await.unwrap());
        assert!(h.verify("x".into(), Some("not a hash".into())).await.is_err());
    }
}
