use super::*;

const OUTBOX_COLS: &str =
    "id, kind, to_addr, subject, body, attachments, status, attempts, next_attempt_at, last_error, created_at, sent_at, token_id";

impl Store {
    pub async fn enqueue_mail(&self, m: &NewOutbox) -> StoreResult<i64> {
        let (id,) = self
            .write_row(
            sqlx::query_as::<_, (i64,)>(
                "INSERT INTO mail_outbox (kind, to_addr, subject, body, attachments, status, attempts, next_attempt_at, created_at, token_id) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $7) RETURNING id",
            )
            .bind(&m.kind)
            .bind(&m.to_addr)
            .bind(&m.subject)
            .bind(&m.body)
            .bind(&m.attachments)
            .bind(m.created_at)
            .bind(m.token_id),
        )
        .await?;
        Ok(id)
    }

    /// Claims up to `limit` due messages, oldest first, by moving their next attempt to
    /// `lease_until`: one statement, so of several cores sharing the database each message
    /// goes to one (PostgreSQL skips rows another core is claiming). A core that dies while
    /// sending leaves the message due again when the lease ends.
    pub async fn claim_due_mail(&self, now: i64, lease_until: i64, limit: i64) -> StoreResult<Vec<OutboxRow>> {
        let lock = if self.kind() == crate::DatabaseKind::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let mut w = self.write_tx().await?;
        let mut rows = sqlx::query_as::<_, OutboxRow>(&format!(
            "UPDATE mail_outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM mail_outbox \
             WHERE status IN ('pending', 'retrying') AND next_attempt_at <= $2 ORDER BY id LIMIT $3{lock}) RETURNING {OUTBOX_COLS}"
        ))
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Earliest future attempt among queued messages (for the worker's sleep).
    pub async fn next_mail_attempt(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM mail_outbox WHERE status IN ('pending', 'retrying')")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    /// Delivered: the body (which may hold a token) is erased, only the envelope stays.
    pub async fn mark_mail_sent(&self, id: i64, now: i64) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "UPDATE mail_outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1, last_error = NULL, \
                 body = '', attachments = '[]' WHERE id = $2",
            )
            .bind(now)
            .bind(id),
        )
        .await?;
        Ok(())
    }

    /// A failed attempt: `retrying` at `next_attempt_at`, or give up (`failed`) when `None`. A
    /// message given up on loses its body and attachments when `erase` (they hold a token),
    /// keeping the envelope and the error for the admin.
    pub async fn mark_mail_attempt_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: Option<i64>,
        erase: bool,
    ) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        let (status, next, erase) = match next_attempt_at {
            Some(t) => ("retrying", t, false),
            None => ("failed", 0, erase),
        };
        sqlx::query(
            "UPDATE mail_outbox SET status = $1, attempts = attempts + 1, last_error = $2, \
             next_attempt_at = CASE WHEN $1 = 'retrying' THEN $3 ELSE next_attempt_at END, \
             body = CASE WHEN $5 THEN '' ELSE body END, \
             attachments = CASE WHEN $5 THEN '[]' ELSE attachments END WHERE id = $4",
        )
        .bind(status)
        .bind(error)
        .bind(next)
        .bind(id)
        .bind(erase)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await
    }

    pub async fn list_mail(&self, status: Option<&str>, limit: i64) -> StoreResult<Vec<OutboxRow>> {
        let by_status = format!("SELECT {OUTBOX_COLS} FROM mail_outbox WHERE status = $1 ORDER BY id DESC LIMIT $2");
        let all = format!("SELECT {OUTBOX_COLS} FROM mail_outbox ORDER BY id DESC LIMIT $1");
        let q = match status {
            Some(s) => sqlx::query_as::<_, OutboxRow>(&by_status).bind(s.to_owned()).bind(limit),
            None => sqlx::query_as::<_, OutboxRow>(&all).bind(limit),
        };
        q.fetch_all(&self.pool).await.map_err(map_err)
    }

    /// Makes a failed or retrying message due now. `NotFound` when no failed or retrying
    /// message has this id, `MailErased` when its body was erased.
    pub async fn retry_mail(&self, id: i64, now: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        let body: String =
            sqlx::query_scalar("SELECT body FROM mail_outbox WHERE id = $1 AND status IN ('failed', 'retrying')")
                .bind(id)
                .fetch_optional(&mut *w.tx)
                .await
                .found()?;
        if body.is_empty() {
            return Err(StoreError::MailErased);
        }
        // A failed message gets one more attempt; a retrying one keeps its place in the round.
        sqlx::query(
            "UPDATE mail_outbox SET next_attempt_at = $1, \
             status = CASE WHEN status = 'failed' THEN 'pending' ELSE status END WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await
    }

    /// Not sent on purpose (its token died before delivery): `cancelled` with the reason in
    /// `last_error`, body and attachments erased (they hold that token).
    pub async fn cancel_mail(&self, id: i64, reason: &str) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "UPDATE mail_outbox SET status = 'cancelled', last_error = $1, body = '', attachments = '[]' \
                 WHERE id = $2",
            )
            .bind(reason)
            .bind(id),
        )
        .await?;
        Ok(())
    }
}
