//! Sign-in sessions and failed sign-ins of the web UI, and the users list's search.

use super::*;
use sqlx::FromRow;

/// Which users the web UI's list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFilter {
    /// Active and not enrolled yet.
    Pending,
    /// Active and enrolled.
    Enrolled,
    Disabled,
}

/// `%text%` for `LIKE ... ESCAPE '\'`, with the user's `%`, `_` and `\` matched literally.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// One page of users matching a search (username, name or e-mail, case-insensitive)
    /// and a state filter, by username, with the number of matches.
    ///
    /// Without a search this is an index walk plus a count. With one, every row is tested,
    /// so the page and the count come from one scan (`COUNT(*) OVER ()`). SQLite's `LIKE` is
    /// already case-insensitive (ASCII, as its `LOWER` would be); PostgreSQL has `ILIKE`.
    pub async fn search_users_page(
        &self,
        search: Option<&str>,
        filter: Option<UserFilter>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<UserRow>, i64)> {
        let mut conds = Vec::new();
        let pattern = search.map(str::trim).filter(|s| !s.is_empty()).map(like_pattern);
        let like = match self.kind() {
            DatabaseKind::Sqlite => "LIKE",
            DatabaseKind::Postgres => "ILIKE",
        };
        let search_cond = format!(
            "(username {like} $1 ESCAPE '\\' OR email {like} $1 ESCAPE '\\' \
             OR (first_name || ' ' || last_name) {like} $1 ESCAPE '\\')"
        );
        if pattern.is_some() {
            conds.push(search_cond.as_str());
        }
        match filter {
            Some(UserFilter::Pending) => conds.push("is_active = 1 AND enrolled = 0"),
            Some(UserFilter::Enrolled) => conds.push("is_active = 1 AND enrolled = 1"),
            Some(UserFilter::Disabled) => conds.push("is_active = 0"),
            None => {}
        }
        let cond = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        let count_sql = format!("SELECT COUNT(*) FROM users{cond}");
        let Some(p) = pattern else {
            let rows = sqlx::query_as::<_, UserRow>(&format!(
                "SELECT {USER_COLS} FROM users{cond} ORDER BY username LIMIT $1 OFFSET $2"
            ))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            let total = sqlx::query_scalar::<_, i64>(&count_sql).fetch_one(&self.pool).await.map_err(map_err)?;
            return Ok((rows, total));
        };
        let sql = format!(
            "SELECT {USER_COLS}, COUNT(*) OVER () AS total FROM users{cond} ORDER BY username LIMIT $2 OFFSET $3"
        );
        let found =
            sqlx::query(&sql).bind(p.clone()).bind(limit).bind(offset).fetch_all(&self.pool).await.map_err(map_err)?;
        let total = match found.first() {
            Some(r) => r.try_get::<i64, _>("total").map_err(map_err)?,
            // A page past the last match carries no count: ask for it.
            None => sqlx::query_scalar::<_, i64>(&count_sql).bind(p).fetch_one(&self.pool).await.map_err(map_err)?,
        };
        let rows = found.iter().map(UserRow::from_row).collect::<Result<Vec<_>, _>>().map_err(map_err)?;
        Ok((rows, total))
    }

    /// The usable tokens (as [`Store::pending_tokens`]) of several users, in one query.
    pub async fn pending_tokens_of_users(&self, user_ids: &[i64], now: i64) -> StoreResult<Vec<TokenRow>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let n = user_ids.len();
        let sql = format!(
            "SELECT {} FROM tokens WHERE user_id IN ({}) AND used_at IS NULL AND revoked_at IS NULL \
             AND ((session_deadline IS NULL AND expires_at > ${}) OR session_deadline > ${}) ORDER BY id",
            super::tokens::TOKEN_COLS,
            placeholders(1, n),
            n + 1,
            n + 1
        );
        let mut q = sqlx::query_as::<_, TokenRow>(&sql);
        for id in user_ids {
            q = q.bind(id);
        }
        q.bind(now).fetch_all(&self.pool).await.map_err(map_err)
    }

    pub async fn create_web_session(&self, s: &NewWebSession<'_>, now: i64) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "INSERT INTO web_sessions (hash, user_id, csrf, created_at, last_seen_at, ip, user_agent) \
                 VALUES ($1, $2, $3, $4, $4, $5, $6)",
            )
            .bind(s.hash)
            .bind(s.user_id)
            .bind(s.csrf)
            .bind(now)
            .bind(s.ip)
            .bind(s.user_agent),
        )
        .await
        .map(drop)
    }

    /// A session by its secret's hash, with its user and whether they are an admin: one query.
    pub async fn web_session(&self, hash: &str) -> StoreResult<(WebSessionRow, UserRow, bool)> {
        let sql = format!(
            "SELECT s.id, s.csrf, s.created_at, s.last_seen_at, \
               (SELECT COUNT(*) FROM group_members gm JOIN groups g ON g.id = gm.group_id \
                WHERE gm.user_id = u.id AND g.is_admin = 1), {} \
             FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = $1",
            prefixed("u", USER_COLS)
        );
        let row = sqlx::query(&sql).bind(hash).fetch_optional(&self.pool).await.found()?;
        let get = || -> Result<_, sqlx::Error> {
            let session = WebSessionRow {
                id: row.try_get(0)?,
                csrf: row.try_get(1)?,
                created_at: row.try_get(2)?,
                last_seen_at: row.try_get(3)?,
            };
            let admin = row.try_get::<i64, _>(4)? > 0;
            let user = UserRow {
                id: row.try_get(5)?,
                username: row.try_get(6)?,
                first_name: row.try_get(7)?,
                last_name: row.try_get(8)?,
                email: row.try_get(9)?,
                phone: row.try_get(10)?,
                is_active: row.try_get::<i64, _>(11)? != 0,
                enrolled: row.try_get::<i64, _>(12)? != 0,
                password_hash: row.try_get(13)?,
                created_at: row.try_get(14)?,
                updated_at: row.try_get(15)?,
                source: row.try_get(16)?,
                directory_disabled: row.try_get::<i64, _>(17)? != 0,
            };
            Ok((session, user, admin))
        };
        get().map_err(map_err)
    }

    pub async fn touch_web_session(&self, id: i64, now: i64) -> StoreResult<()> {
        self.write(sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE id = $2").bind(now).bind(id))
            .await
            .map(drop)
    }

    pub async fn delete_web_session(&self, id: i64) -> StoreResult<()> {
        self.write(sqlx::query("DELETE FROM web_sessions WHERE id = $1").bind(id)).await.map(drop)
    }

    /// Ends every session of a user except `keep` (after a password change); returns how many.
    pub async fn delete_web_sessions_of_user(&self, user_id: i64, keep: Option<i64>) -> StoreResult<u64> {
        self.write(
            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1 AND id <> $2")
                .bind(user_id)
                .bind(keep.unwrap_or(0)),
        )
        .await
    }

    /// Drops sessions idle since `idle_before` or opened before `created_before`, and
    /// failed sign-ins older than `failures_before`.
    pub async fn prune_web_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
        failures_before: i64,
    ) -> StoreResult<()> {
        self.write(
            sqlx::query("DELETE FROM web_sessions WHERE last_seen_at < $1 OR created_at < $2")
                .bind(idle_before)
                .bind(created_before),
        )
        .await?;
        self.write(sqlx::query("DELETE FROM web_login_failures WHERE at < $1").bind(failures_before)).await.map(drop)
    }

    pub async fn record_login_failure(&self, username: &str, ip: &str, now: i64) -> StoreResult<()> {
        self.write(
            sqlx::query("INSERT INTO web_login_failures (username, ip, at) VALUES ($1, $2, $3)")
                .bind(username)
                .bind(ip)
                .bind(now),
        )
        .await
        .map(drop)
    }

    /// Failed sign-ins since `since`: (for this account, from this address).
    pub async fn login_failures(&self, username: &str, ip: &str, since: i64) -> StoreResult<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM web_login_failures WHERE username = $1 AND at >= $3), \
                    (SELECT COUNT(*) FROM web_login_failures WHERE ip = $2 AND at >= $3)",
        )
        .bind(username)
        .bind(ip)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok((row.try_get(0).map_err(map_err)?, row.try_get(1).map_err(map_err)?))
    }

    /// A successful sign-in forgets the account's failures.
    pub async fn clear_login_failures(&self, username: &str) -> StoreResult<()> {
        self.write(sqlx::query("DELETE FROM web_login_failures WHERE username = $1").bind(username)).await.map(drop)
    }

    /// Sets a user's password hash (and marks them enrolled: they can sign in).
    pub async fn set_password_hash(&self, user_id: i64, hash: &str, now: i64) -> StoreResult<UserRow> {
        self.write_row(
            sqlx::query_as::<_, UserRow>(&format!(
                "UPDATE users SET password_hash = $1, enrolled = 1, updated_at = $2 WHERE id = $3 RETURNING {USER_COLS}"
            ))
            .bind(hash)
            .bind(now)
            .bind(user_id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(super::like_pattern("Jo"), "%jo%");
        assert_eq!(super::like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
