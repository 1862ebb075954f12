use super::*;

pub(super) const TOKEN_COLS: &str =
    "id, kind, user_id, issued_by, email, created_at, expires_at, session_deadline, used_at, revoked_at, device_id";

/// The kinds a new token of `kind` supersedes: the unused tokens of the same purpose only.
/// Enrollment and desktop-configuration tokens serve one purpose (an admin gets this
/// user's client configured), so either replaces the other; a password reset (which anyone
/// who knows the address may request) touches only earlier reset tokens, and no admin
/// issuance touches a reset a user is in the middle of.
fn same_purpose(kind: &str) -> &'static str {
    match kind {
        "password_reset" => "('password_reset')",
        _ => "('enrollment', 'desktop_config')",
    }
}

/// Outcome of a password-reset request (see [`Store::request_reset_token`]).
#[derive(Debug, Clone)]
pub enum ResetRequest {
    /// A reset token was stored for this user (earlier unused ones revoked).
    Issued(UserRow),
    /// The user asked less than the cooldown ago: nothing stored.
    Cooldown,
    /// No active, enrolled user has that address: nothing stored.
    NoUser,
}

impl Store {
    /// Inserts tokens (each revoking its user's earlier unused tokens of the same purpose,
    /// see [`same_purpose`]) and their audit events, all in one transaction. Statements are batched
    /// (multi-row VALUES, `IN` lists) so that bulk issuance costs a few hundred statements
    /// for ten thousand tokens, not three per token.
    pub(crate) async fn write_tokens(&self, tokens: &[NewToken], audits: &[NewAudit]) -> StoreResult<()> {
        const CHUNK: usize = 500;
        let mut w = self.write_tx().await?;
        let Some(first) = tokens.first() else {
            return Ok(());
        };
        if self.kind() == crate::DatabaseKind::Postgres {
            // Concurrent issuances for one user must not both miss each other's insert
            // (READ COMMITTED): lock the users' rows, in id order to avoid deadlocks.
            let mut ids: Vec<i64> = tokens.iter().map(|t| t.user_id).collect();
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "SELECT id FROM users WHERE id IN ({}) ORDER BY id FOR UPDATE",
                    placeholders(1, chunk.len())
                );
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *w.tx).await.map_err(map_err)?;
            }
        }
        let mut by_purpose: Vec<(&'static str, Vec<i64>)> = Vec::new();
        for t in tokens {
            let kinds = same_purpose(&t.kind);
            match by_purpose.iter_mut().find(|(k, _)| *k == kinds) {
                Some((_, ids)) => ids.push(t.user_id),
                None => by_purpose.push((kinds, vec![t.user_id])),
            }
        }
        for (kinds, ids) in &by_purpose {
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "UPDATE tokens SET revoked_at = $1 WHERE kind IN {kinds} AND used_at IS NULL \
                     AND revoked_at IS NULL AND user_id IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(first.created_at);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *w.tx).await.map_err(map_err)?;
            }
        }
        for chunk in tokens.chunks(CHUNK / 5) {
            let sql = format!(
                "INSERT INTO tokens (hash, kind, user_id, issued_by, email, created_at, expires_at) VALUES {}",
                values_rows(chunk.len(), 7)
            );
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q
                    .bind(&t.hash)
                    .bind(&t.kind)
                    .bind(t.user_id)
                    .bind(t.issued_by)
                    .bind(&t.email)
                    .bind(t.created_at)
                    .bind(t.expires_at);
            }
            q.execute(&mut *w.tx).await.map_err(map_err)?;
        }
        insert_audits(&mut w.tx, audits).await?;
        w.commit().await
    }

    pub async fn token_by_hash(&self, hash: &str) -> StoreResult<TokenRow> {
        sqlx::query_as::<_, TokenRow>(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    /// Stores a password-reset token for the active, enrolled user with this address, unless
    /// they were sent one after `cooldown_since`; earlier unused reset tokens are revoked.
    /// One transaction, and the same statements whether or not the address is known (an
    /// unknown one runs them against no user), so the answer time does not tell them apart.
    pub async fn request_reset_token(
        &self,
        email: &str,
        t: &NewToken,
        cooldown_since: i64,
        audit: &NewAudit,
    ) -> StoreResult<ResetRequest> {
        let mut w = self.write_tx().await?;
        // The row lock (PostgreSQL) serialises concurrent requests for one user, so the
        // cooldown check below cannot be passed twice.
        let lock = if self.kind() == crate::DatabaseKind::Postgres { " FOR UPDATE" } else { "" };
        let user = sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users WHERE email = $1{lock}"))
            .bind(email)
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(map_err)?
            .filter(|u| u.is_active && u.enrolled);
        // No user: id 0 never exists, so the statements below match nothing.
        let user_id = user.as_ref().map_or(0, |u| u.id);
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tokens WHERE user_id = $1 AND kind = 'password_reset' AND created_at > $2",
        )
        .bind(user_id)
        .bind(cooldown_since)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let target = if recent > 0 { 0 } else { user_id };
        sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND kind = 'password_reset' \
             AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(t.created_at)
        .bind(target)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let inserted = sqlx::query(
            "INSERT INTO tokens (hash, kind, user_id, email, created_at, expires_at) \
             SELECT $1, 'password_reset', id, email, $2, $3 FROM users WHERE id = $4",
        )
        .bind(&t.hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(target)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        let subject = user.as_ref().map(|u| u.username.clone());
        let (outcome, what) = match user {
            Some(u) if inserted == 1 => (ResetRequest::Issued(u), "sent"),
            Some(_) => (ResetRequest::Cooldown, "cooldown"),
            None => (ResetRequest::NoUser, "no_such_account"),
        };
        // Every request is audited (an admin sees attempts on unknown addresses too), which
        // also makes every path commit a write: an empty commit answers measurably faster.
        let mut a = audit.clone();
        a.subject = subject;
        a.details = serde_json::json!({ "outcome": what }).to_string();
        insert_audit(&mut w.tx, &a).await?;
        w.commit().await?;
        Ok(outcome)
    }

    /// Redeems a reset token: sets the password and uses the token in one transaction,
    /// conditional on the token being unused, unrevoked and inside its session. Of
    /// concurrent redemptions exactly one gets `true`.
    pub async fn redeem_reset_token(
        &self,
        token_id: i64,
        user_id: i64,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let mut w = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE tokens SET used_at = $1 WHERE id = $2 AND user_id = $3 AND kind = 'password_reset' \
             AND used_at IS NULL AND revoked_at IS NULL AND session_deadline > $1",
        )
        .bind(now)
        .bind(token_id)
        .bind(user_id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(now)
            .bind(user_id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.commit().await?;
        Ok(true)
    }

    /// Binds a browser session id (its hash) to a token until `expires_at` (again: the same
    /// binding twice is one); expired bindings are swept on the way.
    pub async fn add_token_session(&self, hash: &str, token_id: i64, expires_at: i64, now: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        sqlx::query("DELETE FROM token_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        // Idempotent for the same token: the edge repeats a `start` on another core when the
        // first one died after binding the id but before answering. The id of another token
        // (a collision of 32 random characters) stays refused.
        let n = sqlx::query(
            "INSERT INTO token_sessions (hash, token_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE token_sessions.token_id = excluded.token_id",
        )
        .bind(hash)
        .bind(token_id)
        .bind(expires_at)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict { key: UniqueKey::Other });
        }
        w.commit().await
    }

    /// The token behind a browser session id (by its hash). An ended session still resolves
    /// (until swept), so the caller can say "session ended" rather than "unknown".
    pub async fn token_by_session(&self, hash: &str) -> StoreResult<TokenRow> {
        sqlx::query_as::<_, TokenRow>(&format!(
            "SELECT {} FROM tokens t JOIN token_sessions s ON s.token_id = t.id WHERE s.hash = $1",
            prefixed("t", TOKEN_COLS)
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .found()
    }

    pub async fn token_by_id(&self, id: i64) -> StoreResult<TokenRow> {
        sqlx::query_as::<_, TokenRow>(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    /// Opens the session of an unopened live token. Exactly one concurrent caller gets
    /// `true`; the others re-read the token and find the session already open.
    pub async fn open_session(&self, token_id: i64, deadline: i64, audit: &NewAudit) -> StoreResult<bool> {
        let mut w = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE tokens SET session_deadline = $1 WHERE id = $2 AND session_deadline IS NULL \
             AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(deadline)
        .bind(token_id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n == 1 {
            insert_audit(&mut w.tx, audit).await?;
        }
        w.commit().await?;
        Ok(n == 1)
    }

    /// The device a token's session registered, if any.
    pub async fn session_device(&self, token_id: i64) -> StoreResult<Option<i64>> {
        sqlx::query_scalar::<_, Option<i64>>("SELECT device_id FROM tokens WHERE id = $1")
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn mark_token_used(&self, token_id: i64, now: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        mark_used(&mut w, token_id, now).await?;
        w.commit().await
    }

    /// A user's tokens that can still be used: not used, not revoked, and either unopened
    /// and unexpired or inside an open session.
    pub async fn pending_tokens(&self, user_id: i64, now: i64) -> StoreResult<Vec<TokenRow>> {
        sqlx::query_as::<_, TokenRow>(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL \
             AND ((session_deadline IS NULL AND expires_at > $2) OR session_deadline > $2) ORDER BY id"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Revokes one of a user's tokens (`Some(id)`) or all of their unused ones (`None`);
    /// returns how many were revoked.
    pub async fn revoke_tokens(
        &self,
        user_id: i64,
        token_id: Option<i64>,
        now: i64,
        audit: &NewAudit,
    ) -> StoreResult<u64> {
        let mut w = self.write_tx().await?;
        let base = "UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND used_at IS NULL AND revoked_at IS NULL";
        let one = format!("{base} AND id = $3");
        let n = match token_id {
            Some(id) => sqlx::query(&one).bind(now).bind(user_id).bind(id),
            None => sqlx::query(base).bind(now).bind(user_id),
        }
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n > 0 {
            insert_audit(&mut w.tx, audit).await?;
        }
        w.commit().await?;
        Ok(n)
    }

    /// Sets (or rotates) a device's polling token; the old one stops working at once.
    pub async fn set_polling_token(&self, device_id: i64, hash: &str, now: i64) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "INSERT INTO polling_tokens (hash, device_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at",
            )
            .bind(hash)
            .bind(device_id)
            .bind(now),
        )
        .await?;
        Ok(())
    }

    pub async fn device_by_polling_hash(&self, hash: &str) -> StoreResult<DeviceRow> {
        sqlx::query_as::<_, DeviceRow>(&format!(
            "SELECT {} FROM devices d JOIN polling_tokens p ON p.device_id = d.id WHERE p.hash = $1",
            super::devices::device_cols("d")
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .found()
    }

    /// The admin who issued the token whose session registered `device_id`, if known.
    pub async fn device_token_issuer(&self, device_id: i64) -> StoreResult<Option<i64>> {
        let issuer: Option<Option<i64>> =
            sqlx::query_scalar("SELECT issued_by FROM tokens WHERE device_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(issuer.flatten())
    }

    /// Whether `hash` was the polling token of a device deleted since.
    pub async fn polling_token_removed(&self, hash: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM removed_polling_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(n > 0)
    }
}

/// The first use of a token counts; later ones within its session leave the time alone.
pub(crate) async fn mark_used(w: &mut crate::db::WriteTx<'_>, token_id: i64, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(token_id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
    Ok(())
}
