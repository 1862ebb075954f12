use super::*;
use onramp_domain::directory::Plan;

/// Rows written per transaction when a sync applies its plan, so the SQLite writer lock is
/// never held for a whole 10,000-user import.
const CHUNK: usize = 500;

/// The state of one directory source's sync (see `directory_sync` in the migrations).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DirectorySyncRow {
    pub source: String,
    pub holder: Option<String>,
    pub lease_until: i64,
    pub next_run_at: i64,
    pub failures: i64,
    pub last_started: Option<i64>,
    pub last_finished: Option<i64>,
    pub last_error: Option<String>,
    pub last_summary: Option<String>,
}

/// One plan step: a statement and its audit records, applied in chunks.
enum Step<'a> {
    Group(&'a str),
    User(&'a onramp_domain::directory::NewDirUser),
    Profile(&'a onramp_domain::directory::ProfileChange),
    Active(&'a str, bool),
    Member(&'a str, &'a str, bool),
}

impl Store {
    /// Takes the sync lease of `source` for `holder` until `until`, when nobody holds it
    /// (or its holder's lease ran out) and, with `only_if_due`, the next run is due. One
    /// conditional update: of several cores asking at once, one gets it.
    pub async fn directory_lease_acquire(
        &self,
        source: &str,
        holder: &str,
        now: i64,
        until: i64,
        only_if_due: bool,
    ) -> StoreResult<bool> {
        self.write(
            sqlx::query("INSERT INTO directory_sync (source) VALUES ($1) ON CONFLICT (source) DO NOTHING").bind(source),
        )
        .await?;
        let n = self
            .write(
                sqlx::query(
                    "UPDATE directory_sync SET holder = $2, lease_until = $3, last_started = $4 \
                     WHERE source = $1 AND (lease_until < $4 OR holder = $2) AND ($5 = 0 OR next_run_at <= $4)",
                )
                .bind(source)
                .bind(holder)
                .bind(until)
                .bind(now)
                .bind(i64::from(only_if_due)),
            )
            .await?;
        Ok(n == 1)
    }

    /// Extends a held lease; `false` when it was lost (expired and taken by another).
    pub async fn directory_lease_renew(&self, source: &str, holder: &str, until: i64) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("UPDATE directory_sync SET lease_until = $3 WHERE source = $1 AND holder = $2")
                    .bind(source)
                    .bind(holder)
                    .bind(until),
            )
            .await?;
        Ok(n == 1)
    }

    /// Releases the lease and records the run: its error (counted) or its summary.
    pub async fn directory_lease_finish(
        &self,
        source: &str,
        holder: &str,
        now: i64,
        next_run_at: i64,
        outcome: Result<&str, &str>,
    ) -> StoreResult<()> {
        let (summary, error) = match outcome {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        self.write(
            sqlx::query(
                "UPDATE directory_sync SET holder = NULL, lease_until = 0, last_finished = $3, next_run_at = $4, \
                 failures = CASE WHEN $5 IS NULL THEN 0 ELSE failures + 1 END, last_error = $5, \
                 last_summary = COALESCE($6, last_summary) WHERE source = $1 AND holder = $2",
            )
            .bind(source)
            .bind(holder)
            .bind(now)
            .bind(next_run_at)
            .bind(error)
            .bind(summary),
        )
        .await
        .map(drop)
    }

    pub async fn directory_sync_state(&self, source: &str) -> StoreResult<Option<DirectorySyncRow>> {
        sqlx::query_as::<_, DirectorySyncRow>(
            "SELECT source, holder, lease_until, next_run_at, failures, last_started, last_finished, last_error, \
             last_summary FROM directory_sync WHERE source = $1",
        )
        .bind(source)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Marks a user as a directory's (`ldap`) or Onramp's own (`local`).
    pub async fn set_user_source(&self, user_id: i64, source: &str, now: i64) -> StoreResult<UserRow> {
        self.write_row(
            sqlx::query_as::<_, UserRow>(&format!(
                "UPDATE users SET source = $1, directory_dn = NULL, directory_disabled = 0, updated_at = $2 \
                 WHERE id = $3 RETURNING {USER_COLS}"
            ))
            .bind(source)
            .bind(now)
            .bind(user_id),
        )
        .await
    }

    /// The expiry of each live enrollment token among `hashes`, by hash and user: a token
    /// inside an open enrollment session counts as never expiring (it is being used).
    pub async fn live_enrollment_tokens(&self, hashes: &[String], now: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        let mut out = Vec::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT hash, user_id, CASE WHEN session_deadline IS NULL THEN expires_at ELSE {} END FROM tokens \
                 WHERE hash IN ({}) AND kind = 'enrollment' AND used_at IS NULL AND revoked_at IS NULL \
                 AND ((session_deadline IS NULL AND expires_at > $1) OR session_deadline > $1)",
                i64::MAX,
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, i64, i64)>(&sql).bind(now);
            for h in chunk {
                q = q.bind(h);
            }
            out.extend(q.fetch_all(&self.pool).await.map_err(map_err)?);
        }
        Ok(out)
    }

    /// Applies a sync's plan, in order, `CHUNK` rows per transaction, each chunk with its
    /// audit records. Every transaction keeps an active admin (the plan already does; this
    /// is the last line): `Ok(false)` when one was refused, and the rest is not applied.
    /// Users are created as the directory's (`source`), with the DN their attribute lives at.
    pub async fn apply_directory_plan(
        &self,
        source: &str,
        plan: &Plan,
        audit: &(dyn Fn(&str, &str, serde_json::Value) -> NewAudit + Sync),
        now: i64,
    ) -> StoreResult<bool> {
        let mut steps: Vec<Step<'_>> = Vec::new();
        // Profiles before new users: an update may free the e-mail address a new user takes.
        steps.extend(plan.create_groups.iter().map(|g| Step::Group(g)));
        steps.extend(plan.update_profiles.iter().map(Step::Profile));
        steps.extend(plan.create_users.iter().map(Step::User));
        steps.extend(plan.enable.iter().map(|u| Step::Active(u, true)));
        steps.extend(plan.disable.iter().map(|(u, _)| Step::Active(u, false)));
        steps.extend(plan.add_members.iter().map(|(g, u)| Step::Member(g, u, true)));
        steps.extend(plan.remove_members.iter().map(|(g, u)| Step::Member(g, u, false)));
        let reasons: HashMap<&str, &str> = plan.disable.iter().map(|(u, r)| (u.as_str(), r.as_str())).collect();
        for chunk in steps.chunks(CHUNK) {
            let (mut w, before) = self.admin_guard_begin().await?;
            let mut audits = Vec::with_capacity(chunk.len());
            for step in chunk {
                match step {
                    Step::Group(name) => {
                        sqlx::query(
                            "INSERT INTO groups (name, is_admin, created_at) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING",
                        )
                        .bind(*name)
                        .bind(now)
                        .execute(&mut *w.tx)
                        .await
                        .map_err(map_err)?;
                        audits.push(audit("directory.group_created", name, serde_json::json!({})));
                    }
                    Step::User(u) => {
                        sqlx::query(
                            "INSERT INTO users (username, first_name, last_name, email, phone, is_active, enrolled, \
                             created_at, updated_at, source, directory_dn) VALUES ($1, $2, $3, $4, $5, 1, 0, $6, $6, $7, $8)",
                        )
                        .bind(&u.username)
                        .bind(&u.first_name)
                        .bind(&u.last_name)
                        .bind(&u.email)
                        .bind(&u.phone)
                        .bind(now)
                        .bind(source)
                        .bind(&u.locator)
                        .execute(&mut *w.tx)
                        .await
                        .map_err(map_err)?;
                        audits.push(audit("directory.user_created", &u.username, serde_json::json!({"dn": u.locator})));
                    }
                    Step::Profile(c) => {
                        sqlx::query(
                            "UPDATE users SET first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name), \
                             email = COALESCE($4, email), phone = CASE WHEN $5 = 1 THEN $6 ELSE phone END, updated_at = $7 \
                             WHERE username = $1",
                        )
                        .bind(&c.username)
                        .bind(&c.first_name)
                        .bind(&c.last_name)
                        .bind(&c.email)
                        .bind(i64::from(c.phone.is_some()))
                        .bind(c.phone.clone().flatten())
                        .bind(now)
                        .execute(&mut *w.tx)
                        .await
                        .map_err(map_err)?;
                        audits.push(audit(
                            "directory.user_updated",
                            &c.username,
                            serde_json::json!({"fields": c.fields()}),
                        ));
                    }
                    Step::Active(username, active) => {
                        sqlx::query(
                            "UPDATE users SET is_active = $2, directory_disabled = $3, updated_at = $4 WHERE username = $1",
                        )
                        .bind(*username)
                        .bind(i64::from(*active))
                        .bind(i64::from(!*active))
                        .bind(now)
                        .execute(&mut *w.tx)
                        .await
                        .map_err(map_err)?;
                        if !*active {
                            // Signed out of the web UI everywhere, as an admin's disable does.
                            sqlx::query(
                                "DELETE FROM web_sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)",
                            )
                            .bind(*username)
                            .execute(&mut *w.tx)
                            .await
                            .map_err(map_err)?;
                        }
                        let (action, details) = if *active {
                            ("directory.user_enabled", serde_json::json!({}))
                        } else {
                            ("directory.user_disabled", serde_json::json!({"reason": reasons.get(username)}))
                        };
                        audits.push(audit(action, username, details));
                    }
                    Step::Member(group, username, add) => {
                        let sql = if *add {
                            "INSERT INTO group_members (group_id, user_id) SELECT g.id, u.id FROM groups g, users u \
                             WHERE g.name = $1 AND u.username = $2 ON CONFLICT DO NOTHING"
                        } else {
                            "DELETE FROM group_members WHERE group_id = (SELECT id FROM groups WHERE name = $1) \
                             AND user_id = (SELECT id FROM users WHERE username = $2)"
                        };
                        sqlx::query(sql).bind(*group).bind(*username).execute(&mut *w.tx).await.map_err(map_err)?;
                        let action = if *add { "directory.member_added" } else { "directory.member_removed" };
                        audits.push(audit(action, username, serde_json::json!({"group": group})));
                    }
                }
            }
            insert_audits(&mut w.tx, &audits).await?;
            if !self.admin_guard_finish(w, before).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
