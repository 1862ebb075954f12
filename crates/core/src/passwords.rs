//! Argon2id password hashing, bounded by a semaphore so a burst of enrollments cannot
//! allocate unbounded memory, and run off the async threads.

use crate::{CoreError, CoreResult};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(crate) struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(max_concurrent: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max_concurrent.max(1))) }
    }

    pub async fn hash(&self, password: String) -> CoreResult<String> {
        let _permit = self.permits.acquire().await.map_err(|e| CoreError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| CoreError::Internal(format!("argon2: {e}")))
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
    }

    #[allow(dead_code)] // used by password login flows (edge issue)
    pub async fn verify(&self, password: String, hash: String) -> CoreResult<bool> {
        let _permit = self.permits.acquire().await.map_err(|e| CoreError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| CoreError::Internal(format!("stored hash: {e}")))?;
            Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))?
    }
}
