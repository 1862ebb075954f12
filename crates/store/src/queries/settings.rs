use super::*;

impl Store {
    /// The settings document (JSON), if ever saved.
    pub async fn settings_json(&self) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE id = 1").fetch_optional(&self.pool).await.map_err(map_err)
    }

    pub async fn save_settings_json(&self, value: &str) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "INSERT INTO settings (id, value) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET value = excluded.value",
            )
            .bind(value),
        )
        .await?;
        Ok(())
    }

    /// Saves the settings only if none exist yet; returns whether this call wrote them (so
    /// concurrent first starts agree on one instance id).
    pub async fn init_settings_json(&self, value: &str) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("INSERT INTO settings (id, value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING").bind(value),
            )
            .await?;
        Ok(n == 1)
    }
}
