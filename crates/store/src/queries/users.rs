use super::*;

pub(crate) const USER_COLS: &str =
    "id, username, first_name, last_name, email, phone, is_active, enrolled, password_hash, created_at, updated_at, source, directory_disabled";

/// Counts enabled users who are in at least one admin group.
const ACTIVE_ADMINS: &str = "SELECT COUNT(DISTINCT u.id) FROM users u JOIN group_members gm ON gm.user_id = u.id \
     JOIN groups g ON g.id = gm.group_id WHERE g.is_admin = 1 AND u.is_active = 1";

/// PostgreSQL advisory lock key serialising writes that could remove the last admin
/// (an arbitrary constant: ASCII "onrampAD").
const ADMIN_LOCK_KEY: i64 = 0x6f6e_7261_6d70_4144;

impl Store {
    pub async fn create_user(&self, u: &NewUser, now: i64) -> StoreResult<UserRow> {
        self.write_row(
            sqlx::query_as::<_, UserRow>(&format!(
                "INSERT INTO users (username, first_name, last_name, email, phone, is_active, enrolled, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {USER_COLS}"
            ))
            .bind(&u.username)
            .bind(&u.first_name)
            .bind(&u.last_name)
            .bind(&u.email)
            .bind(&u.phone)
            .bind(i64::from(u.is_active))
            .bind(i64::from(u.password_hash.is_some()))
            .bind(&u.password_hash)
            .bind(now),
        )
        .await
    }

    /// Inserts many users in one transaction (bulk imports and benchmarks).
    pub async fn create_users(&self, users: &[NewUser], now: i64) -> StoreResult<usize> {
        let mut w = self.write_tx().await?;
        for u in users {
            sqlx::query(
                "INSERT INTO users (username, first_name, last_name, email, phone, is_active, enrolled, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(&u.username)
            .bind(&u.first_name)
            .bind(&u.last_name)
            .bind(&u.email)
            .bind(&u.phone)
            .bind(i64::from(u.is_active))
            .bind(i64::from(u.password_hash.is_some()))
            .bind(&u.password_hash)
            .bind(now)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        }
        w.commit().await?;
        Ok(users.len())
    }

    pub async fn user_by_username(&self, username: &str) -> StoreResult<UserRow> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn user_by_id(&self, id: i64) -> StoreResult<UserRow> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn user_by_email(&self, email: &str) -> StoreResult<UserRow> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn list_users(&self) -> StoreResult<Vec<UserRow>> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    /// One page of users by username.
    pub async fn list_users_page(&self, limit: i64, offset: i64) -> StoreResult<Vec<UserRow>> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users ORDER BY username LIMIT $1 OFFSET $2"))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    /// (id, username) of the given users, in one query.
    pub async fn usernames(&self, ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT id, username FROM users WHERE id IN ({})", placeholders(1, ids.len()));
        let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await.map_err(map_err)
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(map_err)
    }

    /// Writes every mutable profile field of `u` (looked up by id).
    pub async fn update_user(&self, u: &UserRow, now: i64) -> StoreResult<UserRow> {
        self.write_row(update_user_query(u, now)).await
    }

    /// Sets the password (and phone) of a user who has none yet, marks them enrolled and the
    /// session's token used, in one transaction. The `password_hash IS NULL` condition makes
    /// concurrent activations race safely: `Ok(None)` for every loser.
    pub async fn activate_user(&self, u: &UserRow, token_id: i64, now: i64) -> StoreResult<Option<UserRow>> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, UserRow>(&format!(
            "UPDATE users SET phone = $1, enrolled = 1, password_hash = $2, updated_at = $3 \
             WHERE id = $4 AND password_hash IS NULL AND enrolled = 0 RETURNING {USER_COLS}"
        ))
        .bind(&u.phone)
        .bind(&u.password_hash)
        .bind(now)
        .bind(u.id)
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?;
        if row.is_none() {
            return Ok(None);
        }
        mark_used(&mut w, token_id, now).await?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.delete_by_id("users", id).await
    }

    /// Enabled users in at least one admin group: those who can hold an admin API token.
    pub async fn count_active_admins(&self) -> StoreResult<i64> {
        sqlx::query_scalar(ACTIVE_ADMINS).fetch_one(&self.pool).await.map_err(map_err)
    }

    /// Begins a write that must not remove the last active admin: takes the admin lock (on
    /// PostgreSQL an advisory lock, on SQLite the single-writer lock `write_tx` holds) so two
    /// concurrent demotions cannot both see the other admin still there, and counts admins.
    pub(crate) async fn admin_guard_begin(&self) -> StoreResult<(WriteTx<'_>, i64)> {
        let mut w = self.write_tx().await?;
        if self.kind() == DatabaseKind::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ADMIN_LOCK_KEY)
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        }
        let before: i64 = sqlx::query_scalar(ACTIVE_ADMINS).fetch_one(&mut *w.tx).await.map_err(map_err)?;
        Ok((w, before))
    }

    /// Commits a guarded write unless it took the active admins from some to none (then it
    /// rolls back and returns `false`). A database that has no active admin already is left
    /// to the CLI's recovery commands, so ordinary edits stay possible there.
    pub(crate) async fn admin_guard_finish(&self, mut w: WriteTx<'_>, before: i64) -> StoreResult<bool> {
        let after: i64 = sqlx::query_scalar(ACTIVE_ADMINS).fetch_one(&mut *w.tx).await.map_err(map_err)?;
        if before > 0 && after == 0 {
            w.tx.rollback().await.map_err(map_err)?;
            return Ok(false);
        }
        w.commit().await?;
        Ok(true)
    }

    /// `update_user` that refuses (`Ok(None)`) to leave no active admin.
    pub async fn update_user_keeping_admin(&self, u: &UserRow, now: i64) -> StoreResult<Option<UserRow>> {
        let (mut w, before) = self.admin_guard_begin().await?;
        let row = update_user_query(u, now).fetch_optional(&mut *w.tx).await.found()?;
        Ok(self.admin_guard_finish(w, before).await?.then_some(row))
    }

    /// `delete_user` that refuses (`Ok(false)`) to leave no active admin.
    pub async fn delete_user_keeping_admin(&self, id: i64) -> StoreResult<bool> {
        let (mut w, before) = self.admin_guard_begin().await?;
        delete_id_in(&mut w, "users", id).await?;
        let kept = self.admin_guard_finish(w, before).await?;
        // Deleting a user frees addresses: let allocation see them.
        self.address_cache.clear();
        Ok(kept)
    }

    pub(crate) async fn delete_by_id(&self, table: &'static str, id: i64) -> StoreResult<()> {
        let n = self.write(sqlx::query(&format!("DELETE FROM {table} WHERE id = $1")).bind(id)).await?;
        // Deleting a user, device or location frees addresses: let allocation see them.
        self.address_cache.clear();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

/// Writes every mutable profile field of `u` (by id), returning the row.
fn update_user_query(u: &UserRow, now: i64) -> AnyQueryAs<'_, UserRow> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "UPDATE users SET first_name = $1, last_name = $2, email = $3, phone = $4, is_active = $5, \
             enrolled = $6, password_hash = $7, updated_at = $8 WHERE id = $9 RETURNING {USER_COLS}"
        )
    });
    sqlx::query_as::<_, UserRow>(&SQL)
        .bind(&u.first_name)
        .bind(&u.last_name)
        .bind(&u.email)
        .bind(&u.phone)
        .bind(i64::from(u.is_active))
        .bind(i64::from(u.enrolled))
        .bind(&u.password_hash)
        .bind(now)
        .bind(u.id)
}
