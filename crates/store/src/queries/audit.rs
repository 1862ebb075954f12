use super::*;

impl Store {
    pub async fn audit(&self, a: &NewAudit) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        insert_audit(&mut w.tx, a).await?;
        w.commit().await
    }

    pub async fn list_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditRow>> {
        let mut sql = String::from(
            "SELECT id, at, actor_user_id, actor, action, subject, details, ip, user_agent FROM audit_events WHERE 1 = 1",
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if f.action.is_some() {
            sql.push_str(&format!(" AND action = ${}", next()));
        }
        if f.actor.is_some() {
            sql.push_str(&format!(" AND actor = ${}", next()));
        }
        if f.since.is_some() {
            sql.push_str(&format!(" AND at >= ${}", next()));
        }
        if f.before_id.is_some() {
            sql.push_str(&format!(" AND id < ${}", next()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", next()));
        let mut q = sqlx::query_as::<_, AuditRow>(&sql);
        if let Some(v) = &f.action {
            q = q.bind(v);
        }
        if let Some(v) = &f.actor {
            q = q.bind(v);
        }
        if let Some(v) = f.since {
            q = q.bind(v);
        }
        if let Some(v) = f.before_id {
            q = q.bind(v);
        }
        q.bind(f.limit).fetch_all(&self.pool).await.map_err(map_err)
    }
}

/// Multi-row insert of audit events (8 columns per row).
pub(crate) async fn insert_audits(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    audits: &[NewAudit],
) -> StoreResult<()> {
    for chunk in audits.chunks(100) {
        let sql = format!(
            "INSERT INTO audit_events (at, actor_user_id, actor, action, subject, details, ip, user_agent) VALUES {}",
            values_rows(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for a in chunk {
            q = q
                .bind(a.at)
                .bind(a.actor_user_id)
                .bind(&a.actor)
                .bind(&a.action)
                .bind(&a.subject)
                .bind(&a.details)
                .bind(&a.ip)
                .bind(&a.user_agent);
        }
        q.execute(&mut **tx).await.map_err(map_err)?;
    }
    Ok(())
}

pub(crate) async fn insert_audit(tx: &mut sqlx::Transaction<'static, sqlx::Any>, a: &NewAudit) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor_user_id, actor, action, subject, details, ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.at)
    .bind(a.actor_user_id)
    .bind(&a.actor)
    .bind(&a.action)
    .bind(&a.subject)
    .bind(&a.details)
    .bind(&a.ip)
    .bind(&a.user_agent)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}
