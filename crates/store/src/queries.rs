use crate::db::{map_err, Store, StoreError, StoreResult};
use crate::records::*;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

const USER_COLS: &str =
    "id, username, first_name, last_name, email, phone, is_active, enrolled, password_hash, created_at, updated_at";
const LOCATION_COLS: &str = "id, name, addresses, endpoint, port, gateway_pubkey, allowed_ips, dns, keepalive, mfa_mode, created_at, updated_at";
const TOKEN_COLS: &str =
    "id, kind, user_id, issued_by, email, created_at, expires_at, session_deadline, used_at, revoked_at";
const OUTBOX_COLS: &str =
    "id, kind, to_addr, subject, body, attachments, status, attempts, next_attempt_at, last_error, created_at, sent_at";

/// Token kinds a new enrollment/desktop token supersedes.
const ENROLL_KINDS: &str = "('enrollment', 'desktop_config')";

impl Store {
    // ----- users -----------------------------------------------------------------------

    pub async fn create_user(&self, u: &NewUser, now: i64) -> StoreResult<UserRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, UserRow>(&format!(
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
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await?;
        Ok(row)
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
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn user_by_id(&self, id: i64) -> StoreResult<UserRow> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn user_by_email(&self, email: &str) -> StoreResult<UserRow> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn list_users(&self) -> StoreResult<Vec<UserRow>> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    pub async fn count_users(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(map_err)
    }

    /// Writes every mutable profile field of `u` (looked up by id).
    pub async fn update_user(&self, u: &UserRow, now: i64) -> StoreResult<UserRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, UserRow>(&format!(
            "UPDATE users SET first_name = $1, last_name = $2, email = $3, phone = $4, is_active = $5, \
             enrolled = $6, password_hash = $7, updated_at = $8 WHERE id = $9 RETURNING {USER_COLS}"
        ))
        .bind(&u.first_name)
        .bind(&u.last_name)
        .bind(&u.email)
        .bind(&u.phone)
        .bind(i64::from(u.is_active))
        .bind(i64::from(u.enrolled))
        .bind(&u.password_hash)
        .bind(now)
        .bind(u.id)
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        w.commit().await?;
        Ok(row)
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

    async fn delete_by_id(&self, table: &'static str, id: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        let n = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
            .bind(id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        w.commit().await?;
        // Deleting a user, device or location frees addresses: let allocation see them.
        self.address_cache.clear();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ----- groups ----------------------------------------------------------------------

    pub async fn create_group(&self, name: &str, is_admin: bool, now: i64) -> StoreResult<GroupRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, GroupRow>(
            "INSERT INTO groups (name, is_admin, created_at) VALUES ($1, $2, $3) RETURNING id, name, is_admin, created_at",
        )
        .bind(name)
        .bind(i64::from(is_admin))
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn group_by_name(&self, name: &str) -> StoreResult<GroupRow> {
        sqlx::query_as::<_, GroupRow>("SELECT id, name, is_admin, created_at FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn list_groups(&self) -> StoreResult<Vec<GroupRow>> {
        sqlx::query_as::<_, GroupRow>("SELECT id, name, is_admin, created_at FROM groups ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    pub async fn update_group(&self, id: i64, name: &str, is_admin: bool) -> StoreResult<GroupRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, GroupRow>(
            "UPDATE groups SET name = $1, is_admin = $2 WHERE id = $3 RETURNING id, name, is_admin, created_at",
        )
        .bind(name)
        .bind(i64::from(is_admin))
        .bind(id)
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn delete_group(&self, id: i64) -> StoreResult<()> {
        self.delete_by_id("groups", id).await
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
        let mut w = self.write_tx().await?;
        let n = sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        w.commit().await?;
        Ok(n == 1)
    }

    pub async fn remove_member(&self, group_id: i64, user_id: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        w.commit().await?;
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

    // ----- locations -------------------------------------------------------------------

    pub async fn create_location(&self, l: &LocationData, now: i64) -> StoreResult<LocationRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, LocationRow>(&format!(
            "INSERT INTO locations (name, addresses, endpoint, port, gateway_pubkey, allowed_ips, dns, keepalive, mfa_mode, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {LOCATION_COLS}"
        ))
        .bind(&l.name)
        .bind(&l.addresses)
        .bind(&l.endpoint)
        .bind(l.port)
        .bind(&l.gateway_pubkey)
        .bind(&l.allowed_ips)
        .bind(&l.dns)
        .bind(l.keepalive)
        .bind(l.mfa_mode)
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        set_location_groups(&mut w.tx, row.id, &l.allowed_groups).await?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn update_location(&self, id: i64, l: &LocationData, now: i64) -> StoreResult<LocationRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, LocationRow>(&format!(
            "UPDATE locations SET name = $1, addresses = $2, endpoint = $3, port = $4, gateway_pubkey = $5, allowed_ips = $6, \
             dns = $7, keepalive = $8, mfa_mode = $9, updated_at = $10 WHERE id = $11 RETURNING {LOCATION_COLS}"
        ))
        .bind(&l.name)
        .bind(&l.addresses)
        .bind(&l.endpoint)
        .bind(l.port)
        .bind(&l.gateway_pubkey)
        .bind(&l.allowed_ips)
        .bind(&l.dns)
        .bind(l.keepalive)
        .bind(l.mfa_mode)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        set_location_groups(&mut w.tx, id, &l.allowed_groups).await?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn location_by_id(&self, id: i64) -> StoreResult<LocationRow> {
        sqlx::query_as::<_, LocationRow>(&format!("SELECT {LOCATION_COLS} FROM locations WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn location_by_name(&self, name: &str) -> StoreResult<LocationRow> {
        sqlx::query_as::<_, LocationRow>(&format!("SELECT {LOCATION_COLS} FROM locations WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn list_locations(&self) -> StoreResult<Vec<LocationRow>> {
        sqlx::query_as::<_, LocationRow>(&format!("SELECT {LOCATION_COLS} FROM locations ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    pub async fn count_locations(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM locations").fetch_one(&self.pool).await.map_err(map_err)
    }

    pub async fn delete_location(&self, id: i64) -> StoreResult<()> {
        self.delete_by_id("locations", id).await
    }

    /// Names of the groups allowed to use a location (empty = everyone).
    pub async fn location_groups(&self, location_id: i64) -> StoreResult<Vec<GroupRow>> {
        sqlx::query_as::<_, GroupRow>(
            "SELECT g.id, g.name, g.is_admin, g.created_at FROM groups g JOIN location_groups lg ON lg.group_id = g.id \
             WHERE lg.location_id = $1 ORDER BY g.name",
        )
        .bind(location_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Locations a user may use: those open to everyone plus those of the user's groups.
    pub async fn locations_for_user(&self, user_id: i64) -> StoreResult<Vec<LocationRow>> {
        sqlx::query_as::<_, LocationRow>(&format!(
            "SELECT {} FROM locations l WHERE \
               NOT EXISTS (SELECT 1 FROM location_groups lg WHERE lg.location_id = l.id) \
               OR EXISTS (SELECT 1 FROM location_groups lg JOIN group_members gm ON gm.group_id = lg.group_id \
                          WHERE lg.location_id = l.id AND gm.user_id = $1) \
             ORDER BY l.id",
            prefixed("l", LOCATION_COLS)
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    // ----- devices ---------------------------------------------------------------------

    /// Creates a device with one free address per subnet of each location, in one
    /// transaction. `subnets` pairs each location id with its parsed subnets. On a
    /// concurrent address clash (PostgreSQL) the whole attempt is retried.
    pub async fn create_device(
        &self,
        user_id: i64,
        name: &str,
        pubkey: &str,
        subnets: &[(i64, Vec<onramp_domain::net::LocationSubnet>)],
        now: i64,
    ) -> StoreResult<(DeviceRow, Vec<DeviceAddressRow>)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_create_device(user_id, name, pubkey, subnets, now).await {
                Err(StoreError::Conflict { field: "address" }) if attempt < ADDRESS_ATTEMPTS => {
                    clash_backoff(attempt).await
                }
                other => return other,
            }
        }
    }

    async fn try_create_device(
        &self,
        user_id: i64,
        name: &str,
        pubkey: &str,
        subnets: &[(i64, Vec<onramp_domain::net::LocationSubnet>)],
        now: i64,
    ) -> StoreResult<(DeviceRow, Vec<DeviceAddressRow>)> {
        let mut w = self.write_tx().await?;
        let device = sqlx::query_as::<_, DeviceRow>(
            "INSERT INTO devices (user_id, name, pubkey, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, user_id, name, pubkey, created_at",
        )
        .bind(user_id)
        .bind(name)
        .bind(pubkey)
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let addresses = allocate_addresses(&self.address_cache, &mut w.tx, device.id, subnets).await?;
        w.commit().await?;
        Ok((device, addresses))
    }

    /// Gives an existing device addresses in more locations (e.g. one created after the
    /// device, or opened to the user's group later). Retried on a concurrent clash.
    pub async fn add_device_addresses(
        &self,
        device_id: i64,
        subnets: &[(i64, Vec<onramp_domain::net::LocationSubnet>)],
    ) -> StoreResult<Vec<DeviceAddressRow>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut w = self.write_tx().await?;
            match allocate_addresses(&self.address_cache, &mut w.tx, device_id, subnets).await {
                Ok(rows) => {
                    w.commit().await?;
                    return Ok(rows);
                }
                Err(StoreError::Conflict { field: "address" }) if attempt < ADDRESS_ATTEMPTS => {
                    clash_backoff(attempt).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn device_by_id(&self, id: i64) -> StoreResult<DeviceRow> {
        sqlx::query_as::<_, DeviceRow>("SELECT id, user_id, name, pubkey, created_at FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn device_by_pubkey(&self, pubkey: &str) -> StoreResult<DeviceRow> {
        sqlx::query_as::<_, DeviceRow>("SELECT id, user_id, name, pubkey, created_at FROM devices WHERE pubkey = $1")
            .bind(pubkey)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    /// Devices, optionally of one user, oldest first.
    pub async fn list_devices(&self, user_id: Option<i64>) -> StoreResult<Vec<DeviceRow>> {
        let q = match user_id {
            Some(uid) => sqlx::query_as::<_, DeviceRow>(
                "SELECT id, user_id, name, pubkey, created_at FROM devices WHERE user_id = $1 ORDER BY id",
            )
            .bind(uid),
            None => {
                sqlx::query_as::<_, DeviceRow>("SELECT id, user_id, name, pubkey, created_at FROM devices ORDER BY id")
            }
        };
        q.fetch_all(&self.pool).await.map_err(map_err)
    }

    pub async fn device_addresses(&self, device_id: i64) -> StoreResult<Vec<DeviceAddressRow>> {
        sqlx::query_as::<_, DeviceAddressRow>(
            "SELECT device_id, location_id, address FROM device_addresses WHERE device_id = $1 ORDER BY location_id, address",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    pub async fn rename_device(&self, id: i64, name: &str) -> StoreResult<DeviceRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, DeviceRow>(
            "UPDATE devices SET name = $1 WHERE id = $2 RETURNING id, user_id, name, pubkey, created_at",
        )
        .bind(name)
        .bind(id)
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn delete_device(&self, id: i64) -> StoreResult<()> {
        self.delete_by_id("devices", id).await
    }

    // ----- enrollment / desktop tokens --------------------------------------------------

    /// Inserts tokens (each revoking its user's earlier unused enrollment and desktop
    /// tokens) and their audit events, all in one transaction. Statements are batched
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
        for chunk in tokens.chunks(CHUNK) {
            let sql = format!(
                "UPDATE tokens SET revoked_at = $1 WHERE kind IN {ENROLL_KINDS} AND used_at IS NULL \
                 AND revoked_at IS NULL AND user_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(first.created_at);
            for t in chunk {
                q = q.bind(t.user_id);
            }
            q.execute(&mut *w.tx).await.map_err(map_err)?;
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
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn token_by_id(&self, id: i64) -> StoreResult<TokenRow> {
        sqlx::query_as::<_, TokenRow>(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
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
        let mut w = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO polling_tokens (hash, device_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at",
        )
        .bind(hash)
        .bind(device_id)
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await
    }

    pub async fn device_by_polling_hash(&self, hash: &str) -> StoreResult<DeviceRow> {
        sqlx::query_as::<_, DeviceRow>(
            "SELECT d.id, d.user_id, d.name, d.pubkey, d.created_at FROM devices d \
             JOIN polling_tokens p ON p.device_id = d.id WHERE p.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)
    }

    // ----- admin API tokens -------------------------------------------------------------

    pub async fn create_api_token(
        &self,
        name: &str,
        hash: &str,
        prefix: &str,
        user_id: i64,
        now: i64,
    ) -> StoreResult<ApiTokenRow> {
        let mut w = self.write_tx().await?;
        let row = sqlx::query_as::<_, ApiTokenRow>(
            "INSERT INTO api_tokens (name, hash, prefix, user_id, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, name, prefix, user_id, created_at, last_used_at, revoked_at",
        )
        .bind(name)
        .bind(hash)
        .bind(prefix)
        .bind(user_id)
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await?;
        Ok(row)
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
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
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
        let mut w = self.write_tx().await?;
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        w.commit().await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Records use without taking the SQLite writer lock for every request: best effort,
    /// skipped when it was updated within the last minute.
    pub async fn touch_api_token(&self, id: i64, now: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - 60)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await
    }

    // ----- settings --------------------------------------------------------------------

    /// The settings document (JSON), if ever saved.
    pub async fn settings_json(&self) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE id = 1").fetch_optional(&self.pool).await.map_err(map_err)
    }

    pub async fn save_settings_json(&self, value: &str) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO settings (id, value) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET value = excluded.value",
        )
        .bind(value)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await
    }

    /// Saves the settings only if none exist yet; returns whether this call wrote them (so
    /// concurrent first starts agree on one instance id).
    pub async fn init_settings_json(&self, value: &str) -> StoreResult<bool> {
        let mut w = self.write_tx().await?;
        let n = sqlx::query("INSERT INTO settings (id, value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(value)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        w.commit().await?;
        Ok(n == 1)
    }

    // ----- audit -----------------------------------------------------------------------

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

    // ----- mail outbox -----------------------------------------------------------------

    pub async fn enqueue_mail(&self, m: &NewOutbox) -> StoreResult<i64> {
        let mut w = self.write_tx().await?;
        let id = sqlx::query_scalar(
            "INSERT INTO mail_outbox (kind, to_addr, subject, body, attachments, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) RETURNING id",
        )
        .bind(&m.kind)
        .bind(&m.to_addr)
        .bind(&m.subject)
        .bind(&m.body)
        .bind(&m.attachments)
        .bind(m.created_at)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await?;
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
             WHERE status = 'pending' AND next_attempt_at <= $2 ORDER BY id LIMIT $3{lock}) RETURNING {OUTBOX_COLS}"
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

    /// Earliest future attempt among pending messages (for the worker's sleep).
    pub async fn next_mail_attempt(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM mail_outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    /// Delivered: the body (which may hold a token) is erased, only the envelope stays.
    pub async fn mark_mail_sent(&self, id: i64, now: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        sqlx::query(
            "UPDATE mail_outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1, last_error = NULL, \
             body = '', attachments = '[]' WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await
    }

    /// A failed attempt: retry at `next_attempt_at`, or give up (`failed`) when `None`.
    pub async fn mark_mail_attempt_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: Option<i64>,
    ) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        let (status, next) = match next_attempt_at {
            Some(t) => ("pending", t),
            None => ("failed", 0),
        };
        sqlx::query(
            "UPDATE mail_outbox SET status = $1, attempts = attempts + 1, last_error = $2, \
             next_attempt_at = CASE WHEN $1 = 'pending' THEN $3 ELSE next_attempt_at END WHERE id = $4",
        )
        .bind(status)
        .bind(error)
        .bind(next)
        .bind(id)
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

    /// Puts a failed message back in the queue for an immediate attempt.
    pub async fn retry_mail(&self, id: i64, now: i64) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE mail_outbox SET status = 'pending', next_attempt_at = $1 WHERE id = $2 AND status = 'failed'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        w.commit().await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

async fn set_location_groups(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    location_id: i64,
    groups: &[i64],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM location_groups WHERE location_id = $1")
        .bind(location_id)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    for g in groups {
        sqlx::query("INSERT INTO location_groups (location_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(location_id)
            .bind(g)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

/// Addresses in use per location, kept between allocations. The unique index on
/// (location_id, address) stays the authority: a stale entry (another core replica took an
/// address) ends in a clash, which drops the entry and retries with a fresh read. Entries
/// also expire, and deletions clear them, so freed addresses are reused.
#[derive(Default)]
pub(crate) struct AddressCache(std::sync::Mutex<HashMap<i64, (HashSet<IpAddr>, std::time::Instant)>>);

const ADDRESS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl AddressCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (HashSet<IpAddr>, std::time::Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Picks the lowest free address of `subnet` and marks it used at once, so concurrent
    /// allocations in this process never pick the same one. `None` = no fresh entry.
    fn reserve(&self, location_id: i64, subnet: &onramp_domain::net::LocationSubnet) -> Option<Option<IpAddr>> {
        let mut map = self.lock();
        let (used, loaded) = map.get_mut(&location_id)?;
        if loaded.elapsed() > ADDRESS_CACHE_TTL {
            return None;
        }
        let ip = subnet.allocate(used);
        if let Some(ip) = ip {
            used.insert(ip);
        }
        Some(ip)
    }
}

/// One free address per subnet of each location, chosen in memory from the addresses in
/// use (read once per location and cached, not one query per candidate address).
async fn allocate_addresses(
    cache: &AddressCache,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    device_id: i64,
    subnets: &[(i64, Vec<onramp_domain::net::LocationSubnet>)],
) -> StoreResult<Vec<DeviceAddressRow>> {
    let mut addresses = Vec::new();
    for (location_id, location_subnets) in subnets {
        for subnet in location_subnets {
            let picked = match cache.reserve(*location_id, subnet) {
                Some(p) => p,
                None => {
                    let used: HashSet<IpAddr> =
                        sqlx::query_scalar::<_, String>("SELECT address FROM device_addresses WHERE location_id = $1")
                            .bind(location_id)
                            .fetch_all(&mut **tx)
                            .await
                            .map_err(map_err)?
                            .iter()
                            .filter_map(|a| a.parse().ok())
                            .collect();
                    cache.lock().insert(*location_id, (used, std::time::Instant::now()));
                    cache.reserve(*location_id, subnet).flatten()
                }
            };
            let Some(ip) = picked else {
                return Err(StoreError::Conflict { field: "subnet_full" });
            };
            let address = ip.to_string();
            let inserted =
                sqlx::query("INSERT INTO device_addresses (device_id, location_id, address) VALUES ($1, $2, $3)")
                    .bind(device_id)
                    .bind(location_id)
                    .bind(&address)
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err);
            if let Err(e) = inserted {
                // Taken behind our back (another replica): read the location afresh on retry.
                cache.lock().remove(location_id);
                return Err(e);
            }
            addresses.push(DeviceAddressRow { device_id, location_id: *location_id, address });
        }
    }
    Ok(addresses)
}

/// Multi-row insert of audit events (8 columns per row).
async fn insert_audits(tx: &mut sqlx::Transaction<'static, sqlx::Any>, audits: &[NewAudit]) -> StoreResult<()> {
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

async fn insert_audit(tx: &mut sqlx::Transaction<'static, sqlx::Any>, a: &NewAudit) -> StoreResult<()> {
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

/// `($1, $2), ($3, $4), ...`: placeholders of a multi-row VALUES list.
fn values_rows(rows: usize, cols: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(r * cols + 1, cols))).collect::<Vec<_>>().join(", ")
}

/// `$first, $first+1, ...`: `n` numbered placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn prefixed(alias: &str, cols: &str) -> String {
    cols.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

/// How often an allocation that lost an address race is retried. Each loser sees the
/// winners' addresses on its next try, so a burst of N concurrent allocations across
/// replicas can need up to N tries for the unluckiest one.
const ADDRESS_ATTEMPTS: u32 = 32;

/// A short random pause before retrying, so racing allocations stop colliding in step.
async fn clash_backoff(attempt: u32) {
    use rand::Rng;
    let max_ms = u64::from(attempt.min(10)) * 2;
    let ms = rand::thread_rng().gen_range(0..=max_ms);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The first use of a token counts; later ones within its session leave the time alone.
async fn mark_used(w: &mut crate::db::WriteTx<'_>, token_id: i64, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(token_id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholder_lists() {
        assert_eq!(super::placeholders(2, 3), "$2, $3, $4");
        assert_eq!(super::values_rows(2, 2), "($1, $2), ($3, $4)");
    }
}
