use super::*;

impl Store {
    /// The settings document (JSON) and its version, if ever saved.
    pub async fn settings_json(&self) -> StoreResult<Option<(String, i64)>> {
        sqlx::query_as("SELECT value, version FROM settings WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    /// The version of the settings document: bumped by every save, so processes sharing
    /// the database can tell cheaply whether to re-read it.
    pub async fn settings_version(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT version FROM settings WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    /// Saves the document and returns its new version.
    pub async fn save_settings_json(&self, value: &str) -> StoreResult<i64> {
        let (version,): (i64,) = self
            .write_row(
                sqlx::query_as(
                    "INSERT INTO settings (id, value, version) VALUES (1, $1, 1) ON CONFLICT (id) \
                     DO UPDATE SET value = excluded.value, version = settings.version + 1 RETURNING version",
                )
                .bind(value),
            )
            .await?;
        Ok(version)
    }

    /// Saves the settings only if none exist yet; returns whether this call wrote them (so
    /// concurrent first starts agree on one instance id).
    pub async fn init_settings_json(&self, value: &str) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("INSERT INTO settings (id, value, version) VALUES (1, $1, 1) ON CONFLICT (id) DO NOTHING")
                    .bind(value),
            )
            .await?;
        Ok(n == 1)
    }
}
