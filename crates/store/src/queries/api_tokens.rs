use super::*;

impl Store {
    pub async fn create_api_token(
        &self,
        name: &str,
        hash: &str,
        prefix: &str,
        user_id: i64,
        now: i64,
    ) -> StoreResult<ApiTokenRow> {
        self.write_row(
            sqlx::query_as::<_, ApiTokenRow>(
                "INSERT INTO api_tokens (name, hash, prefix, user_id, created_at) VALUES ($1, $2, $3, $4, $5) \
                 RETURNING id, name, prefix, user_id, created_at, last_used_at, revoked_at",
            )
            .bind(name)
            .bind(hash)
            .bind(prefix)
            .bind(user_id)
            .bind(now),
        )
        .await
    }

    /// Everything authentication needs in one query: the token, its owner's state and
    /// whether the owner is in an admin group.
    pub async fn api_token_auth(&self, hash: &str) -> StoreResult<ApiTokenAuth> {
        let row = sqlx::query(
            "SELECT t.id, t.revoked_at, u.id, u.username, u.is_active, \
               (SELECT COUNT(*) FROM group_members gm JOIN groups g ON g.id = gm.group_id \
                WHERE gm.user_id = u.id AND g.is_admin = 1) \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .found()?;
        let get = || -> Result<ApiTokenAuth, sqlx::Error> {
            Ok(ApiTokenAuth {
                token_id: row.try_get(0)?,
                revoked: row.try_get::<Option<i64>, _>(1)?.is_some(),
                user_id: row.try_get(2)?,
                username: row.try_get(3)?,
                user_active: row.try_get::<i64, _>(4)? != 0,
                user_is_admin: row.try_get::<i64, _>(5)? > 0,
            })
        };
        get().map_err(map_err)
    }

    pub async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRow>> {
        sqlx::query_as::<_, ApiTokenRow>(
            "SELECT id, name, prefix, user_id, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    pub async fn revoke_api_token(&self, id: i64, now: i64) -> StoreResult<()> {
        let n = self
            .write(
                sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(id),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Records use without taking the SQLite writer lock for every request: best effort,
    /// skipped when it was updated within the last minute.
    pub async fn touch_api_token(&self, id: i64, now: i64) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now)
            .bind(id)
            .bind(now - 60),
        )
        .await?;
        Ok(())
    }
}
