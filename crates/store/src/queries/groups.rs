use super::*;

impl Store {
    pub async fn create_group(&self, name: &str, is_admin: bool, now: i64) -> StoreResult<GroupRow> {
        self.write_row(
            sqlx::query_as::<_, GroupRow>(
                "INSERT INTO groups (name, is_admin, created_at) VALUES ($1, $2, $3) RETURNING id, name, is_admin, created_at",
            )
            .bind(name)
            .bind(i64::from(is_admin))
            .bind(now),
        )
        .await
    }

    pub async fn group_by_name(&self, name: &str) -> StoreResult<GroupRow> {
        sqlx::query_as::<_, GroupRow>("SELECT id, name, is_admin, created_at FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn list_groups(&self) -> StoreResult<Vec<GroupRow>> {
        sqlx::query_as::<_, GroupRow>("SELECT id, name, is_admin, created_at FROM groups ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    /// One page of groups by name, and how many there are.
    pub async fn list_groups_page(&self, limit: i64, offset: i64) -> StoreResult<(Vec<GroupRow>, i64)> {
        let page = sqlx::query_as::<_, GroupRow>(
            "SELECT id, name, is_admin, created_at FROM groups ORDER BY name LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let total = sqlx::query_scalar("SELECT COUNT(*) FROM groups").fetch_one(&self.pool).await.map_err(map_err)?;
        Ok((page, total))
    }

    /// (group id, username) of every member of the given groups, in one query.
    pub async fn members_of_groups(&self, group_ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT gm.group_id, u.username FROM group_members gm JOIN users u ON u.id = gm.user_id \
             WHERE gm.group_id IN ({}) ORDER BY u.username",
            placeholders(1, group_ids.len())
        );
        let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
        for id in group_ids {
            q = q.bind(*id);
        }
        q.fetch_all(&self.pool).await.map_err(map_err)
    }

    /// (user id, group name, group is admin) of every membership of the given users, in one query.
    pub async fn groups_of_users(&self, user_ids: &[i64]) -> StoreResult<Vec<(i64, String, bool)>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT gm.user_id, g.name, g.is_admin FROM group_members gm JOIN groups g ON g.id = gm.group_id \
             WHERE gm.user_id IN ({}) ORDER BY g.name",
            placeholders(1, user_ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in user_ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?, r.try_get::<i64, _>(2)? != 0)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    pub async fn update_group(&self, id: i64, name: &str, is_admin: bool) -> StoreResult<GroupRow> {
        self.write_row(
            sqlx::query_as::<_, GroupRow>(
                "UPDATE groups SET name = $1, is_admin = $2 WHERE id = $3 RETURNING id, name, is_admin, created_at",
            )
            .bind(name)
            .bind(i64::from(is_admin))
            .bind(id),
        )
        .await
    }

    pub async fn delete_group(&self, id: i64) -> StoreResult<()> {
        self.delete_by_id("groups", id).await
    }

    /// `update_group` that refuses (`Ok(None)`) to leave no active admin.
    pub async fn update_group_keeping_admin(
        &self,
        id: i64,
        name: &str,
        is_admin: bool,
    ) -> StoreResult<Option<GroupRow>> {
        let (mut w, before) = self.admin_guard_begin().await?;
        let row = sqlx::query_as::<_, GroupRow>(
            "UPDATE groups SET name = $1, is_admin = $2 WHERE id = $3 RETURNING id, name, is_admin, created_at",
        )
        .bind(name)
        .bind(i64::from(is_admin))
        .bind(id)
        .fetch_optional(&mut *w.tx)
        .await
        .found()?;
        Ok(self.admin_guard_finish(w, before).await?.then_some(row))
    }

    /// `delete_group` that refuses (`Ok(false)`) to leave no active admin.
    pub async fn delete_group_keeping_admin(&self, id: i64) -> StoreResult<bool> {
        let (mut w, before) = self.admin_guard_begin().await?;
        delete_id_in(&mut w, "groups", id).await?;
        self.admin_guard_finish(w, before).await
    }

    /// `remove_member` that refuses (`Ok(false)`) to leave no active admin.
    pub async fn remove_member_keeping_admin(&self, group_id: i64, user_id: i64) -> StoreResult<bool> {
        let (mut w, before) = self.admin_guard_begin().await?;
        let n = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.admin_guard_finish(w, before).await
    }

    /// Members' usernames, sorted.
    pub async fn group_members(&self, group_id: i64) -> StoreResult<Vec<UserRow>> {
        sqlx::query_as::<_, UserRow>(&format!(
            "SELECT {} FROM users u JOIN group_members gm ON gm.user_id = u.id WHERE gm.group_id = $1 ORDER BY u.username",
            prefixed("u", USER_COLS)
        ))
        .bind(group_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Adds a member; `Ok(false)` when already a member.
    pub async fn add_member(&self, group_id: i64, user_id: i64) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(group_id)
                    .bind(user_id),
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn remove_member(&self, group_id: i64, user_id: i64) -> StoreResult<()> {
        let n = self
            .write(
                sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                    .bind(group_id)
                    .bind(user_id),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn user_groups(&self, user_id: i64) -> StoreResult<Vec<GroupRow>> {
        sqlx::query_as::<_, GroupRow>(
            "SELECT g.id, g.name, g.is_admin, g.created_at FROM groups g JOIN group_members gm ON gm.group_id = g.id \
             WHERE gm.user_id = $1 ORDER BY g.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// (user_id, group name) for every membership: lets list views avoid a query per user.
    pub async fn all_memberships(&self) -> StoreResult<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT gm.user_id, g.name FROM group_members gm JOIN groups g ON g.id = gm.group_id ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_err)
    }

    pub async fn is_admin(&self, user_id: i64) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE gm.user_id = $1 AND g.is_admin = 1",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(n > 0)
    }
}
