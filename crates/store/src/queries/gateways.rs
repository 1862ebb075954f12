//! Gateway tokens, the gateways seen, their peers' counters, and what a gateway serves.

use super::*;

const GATEWAY_TOKEN_COLS: &str = "id, location_id, name, created_at, created_by, revoked_at, last_used_at";
const GATEWAY_COLS: &str =
    "id, location_id, pubkey, version, hostname, remote, connected, connected_at, last_seen_at, disconnected_at";
/// Rows per multi-row statement: 7 values each stays far below every backend's bind limit.
const STATS_CHUNK: usize = 100;
const KEYS_CHUNK: usize = 500;

impl Store {
    pub async fn create_gateway_token(
        &self,
        location_id: i64,
        hash: &str,
        name: Option<&str>,
        created_by: &str,
        now: i64,
    ) -> StoreResult<GatewayTokenRow> {
        self.write_row(
            sqlx::query_as::<_, GatewayTokenRow>(&format!(
                "INSERT INTO gateway_tokens (location_id, hash, name, created_at, created_by) VALUES ($1, $2, $3, $4, $5) \
                 RETURNING {GATEWAY_TOKEN_COLS}"
            ))
            .bind(location_id)
            .bind(hash)
            .bind(name)
            .bind(now)
            .bind(created_by),
        )
        .await
    }

    /// A location's tokens, oldest first.
    pub async fn list_gateway_tokens(&self, location_id: i64) -> StoreResult<Vec<GatewayTokenRow>> {
        sqlx::query_as::<_, GatewayTokenRow>(&format!(
            "SELECT {GATEWAY_TOKEN_COLS} FROM gateway_tokens WHERE location_id = $1 ORDER BY id"
        ))
        .bind(location_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Revokes an active token of the location; `NotFound` when it has no such token.
    pub async fn revoke_gateway_token(&self, location_id: i64, id: i64, now: i64) -> StoreResult<()> {
        let n = self
            .write(
                sqlx::query(
                    "UPDATE gateway_tokens SET revoked_at = $1 WHERE id = $2 AND location_id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .bind(location_id),
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn gateway_token_by_hash(&self, hash: &str) -> StoreResult<GatewayTokenRow> {
        sqlx::query_as::<_, GatewayTokenRow>(&format!(
            "SELECT {GATEWAY_TOKEN_COLS} FROM gateway_tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .found()
    }

    pub async fn gateway_token_by_id(&self, id: i64) -> StoreResult<GatewayTokenRow> {
        sqlx::query_as::<_, GatewayTokenRow>(&format!("SELECT {GATEWAY_TOKEN_COLS} FROM gateway_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn touch_gateway_token(&self, id: i64, now: i64) -> StoreResult<()> {
        self.write(sqlx::query("UPDATE gateway_tokens SET last_used_at = $1 WHERE id = $2").bind(now).bind(id)).await?;
        Ok(())
    }

    /// Sets the location's gateway key only if it still is `expected` (`None` = no key), so
    /// two gateways registering at once cannot both win. Returns whether it was set.
    pub async fn replace_gateway_key(
        &self,
        location_id: i64,
        expected: Option<&str>,
        pubkey: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query(
                    "UPDATE locations SET gateway_pubkey = $1, updated_at = $2 \
                     WHERE id = $3 AND COALESCE(gateway_pubkey, '') = $4",
                )
                .bind(pubkey)
                .bind(now)
                .bind(location_id)
                .bind(expected.unwrap_or("")),
            )
            .await?;
        Ok(n == 1)
    }

    /// Records a gateway as connected (one row per location and key); returns the row id.
    pub async fn gateway_connected(&self, g: &GatewaySeen, now: i64) -> StoreResult<i64> {
        let mut w = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO gateways (location_id, pubkey, version, hostname, remote, connected, session_id, connected_at, \
               last_seen_at, disconnected_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7, NULL) \
             ON CONFLICT (location_id, pubkey) DO UPDATE SET version = excluded.version, hostname = excluded.hostname, \
               remote = excluded.remote, connected = 1, session_id = excluded.session_id, \
               connected_at = excluded.connected_at, last_seen_at = excluded.last_seen_at, disconnected_at = NULL \
             RETURNING id",
        )
        .bind(g.location_id)
        .bind(&g.pubkey)
        .bind(&g.version)
        .bind(&g.hostname)
        .bind(&g.remote)
        .bind(&g.session_id)
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.commit().await?;
        Ok(id)
    }

    /// Refreshes `last_seen_at` while `session_id` holds the gateway's row; returns whether
    /// it still does.
    pub async fn touch_gateway(&self, id: i64, session_id: &str, now: i64) -> StoreResult<bool> {
        let n = self
            .write(
                sqlx::query("UPDATE gateways SET last_seen_at = $1 WHERE id = $2 AND session_id = $3")
                    .bind(now)
                    .bind(id)
                    .bind(session_id),
            )
            .await?;
        Ok(n == 1)
    }

    /// Marks the gateway disconnected, unless a newer session took its row over meanwhile.
    pub async fn gateway_disconnected(&self, id: i64, session_id: &str, now: i64) -> StoreResult<()> {
        self.write(
            sqlx::query(
                "UPDATE gateways SET connected = 0, disconnected_at = $1 WHERE id = $2 AND session_id = $3 AND connected = 1",
            )
            .bind(now)
            .bind(id)
            .bind(session_id),
        )
        .await?;
        Ok(())
    }

    /// A location's gateways, most recently seen first.
    pub async fn list_gateways(&self, location_id: i64) -> StoreResult<Vec<GatewayRow>> {
        sqlx::query_as::<_, GatewayRow>(&format!(
            "SELECT {GATEWAY_COLS} FROM gateways WHERE location_id = $1 ORDER BY last_seen_at DESC, id"
        ))
        .bind(location_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Ids of the locations with a gateway marked connected and seen at `seen_since` or later.
    pub async fn locations_with_live_gateway(&self, seen_since: i64) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT DISTINCT location_id FROM gateways WHERE connected = 1 AND last_seen_at >= $1 ORDER BY location_id",
        )
        .bind(seen_since)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Stores reported counters for the devices of `location_id` (unknown keys, and devices
    /// without an address there, are skipped) and refreshes the gateway's `last_seen_at`
    /// while `session_id` still holds its row (a stale session, on another replica say,
    /// must not keep a row alive), in one transaction with a fixed number of statements per
    /// hundred peers. Returns how many peers were stored.
    pub async fn record_peer_stats(
        &self,
        location_id: i64,
        gateway_id: i64,
        session_id: &str,
        peers: &[PeerCounters],
        now: i64,
    ) -> StoreResult<usize> {
        let mut w = self.write_tx().await?;
        // The write comes first (SQLite: a transaction that reads first can hit SQLITE_BUSY).
        sqlx::query("UPDATE gateways SET last_seen_at = $1 WHERE id = $2 AND session_id = $3")
            .bind(now)
            .bind(gateway_id)
            .bind(session_id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let mut devices: HashMap<String, i64> = HashMap::new();
        for chunk in peers.chunks(KEYS_CHUNK) {
            let sql = format!(
                "SELECT DISTINCT d.id, d.pubkey FROM devices d \
                 JOIN device_addresses a ON a.device_id = d.id AND a.location_id = $1 \
                 WHERE d.pubkey IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (i64, String)>(&sql).bind(location_id);
            for p in chunk {
                q = q.bind(&p.pubkey);
            }
            for (id, key) in q.fetch_all(&mut *w.tx).await.map_err(map_err)? {
                devices.insert(key, id);
            }
        }
        // The last report of a key wins if it appears twice.
        let mut known: HashMap<i64, &PeerCounters> = HashMap::new();
        for p in peers {
            if let Some(id) = devices.get(&p.pubkey) {
                known.insert(*id, p);
            }
        }
        let mut rows: Vec<(i64, &PeerCounters)> = known.into_iter().collect();
        rows.sort_unstable_by_key(|(id, _)| *id);
        for chunk in rows.chunks(STATS_CHUNK) {
            let sql = format!(
                "INSERT INTO peer_stats (device_id, location_id, endpoint, latest_handshake, rx_bytes, tx_bytes, updated_at) \
                 VALUES {} ON CONFLICT (device_id, location_id) DO UPDATE SET endpoint = excluded.endpoint, \
                 latest_handshake = excluded.latest_handshake, rx_bytes = excluded.rx_bytes, \
                 tx_bytes = excluded.tx_bytes, updated_at = excluded.updated_at",
                values_rows(chunk.len(), 7)
            );
            let mut q = sqlx::query(&sql);
            for (device_id, p) in chunk {
                q = q
                    .bind(*device_id)
                    .bind(location_id)
                    .bind(&p.endpoint)
                    .bind(p.latest_handshake)
                    .bind(p.rx_bytes)
                    .bind(p.tx_bytes)
                    .bind(now);
            }
            q.execute(&mut *w.tx).await.map_err(map_err)?;
        }
        w.commit().await?;
        Ok(rows.len())
    }

    /// The counters of every device in one location, by device id.
    pub async fn location_peer_stats(&self, location_id: i64) -> StoreResult<Vec<PeerStatsRow>> {
        self.peer_stats_where("s.location_id = $1", &[location_id]).await
    }

    /// The counters of the given devices in every location, by device and location id.
    pub async fn device_peer_stats(&self, device_ids: &[i64]) -> StoreResult<Vec<PeerStatsRow>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.peer_stats_where(&format!("s.device_id IN ({})", placeholders(1, device_ids.len())), device_ids).await
    }

    async fn peer_stats_where(&self, filter: &str, ids: &[i64]) -> StoreResult<Vec<PeerStatsRow>> {
        let sql = format!(
            "SELECT s.device_id, d.name AS device, COALESCE(u.username, '') AS username, s.location_id, \
               l.name AS location, s.endpoint, s.latest_handshake, s.rx_bytes, s.tx_bytes, s.updated_at \
             FROM peer_stats s JOIN devices d ON d.id = s.device_id LEFT JOIN users u ON u.id = d.user_id \
               JOIN locations l ON l.id = s.location_id \
             WHERE {filter} ORDER BY s.device_id, s.location_id"
        );
        let mut q = sqlx::query_as::<_, PeerStatsRow>(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await.map_err(map_err)
    }

    /// (device key, address) of every peer a location's gateway serves, sorted.
    pub async fn gateway_peers(&self, location_id: i64) -> StoreResult<Vec<(String, String)>> {
        let rows = self.gateway_peer_rows(location_id, None).await?;
        Ok(rows.into_iter().map(|r| (r.pubkey, r.address)).collect())
    }

    /// The peer rows a location's gateway serves: devices of active users allowed in the
    /// location (its groups; none = everyone) with an address there, and the location's
    /// enrolled network devices (no user, so no user or group rule). Every one, or (`only`)
    /// those of the given devices and of every device of the given users. One row per
    /// (device, address), in one query.
    pub async fn gateway_peer_rows(
        &self,
        location_id: i64,
        only: Option<(&[i64], &[i64])>,
    ) -> StoreResult<Vec<GatewayPeerRow>> {
        let mut filter = String::new();
        let mut ids: Vec<i64> = Vec::new();
        if let Some((devices, users)) = only {
            if devices.is_empty() && users.is_empty() {
                return Ok(Vec::new());
            }
            let mut parts = Vec::new();
            if !devices.is_empty() {
                parts.push(format!("d.id IN ({})", placeholders(2, devices.len())));
                ids.extend_from_slice(devices);
            }
            if !users.is_empty() {
                parts.push(format!("d.user_id IN ({})", placeholders(2 + ids.len(), users.len())));
                ids.extend_from_slice(users);
            }
            filter = format!(" AND ({})", parts.join(" OR "));
        }
        let sql = format!(
            "SELECT d.id, d.user_id, d.pubkey, a.address FROM device_addresses a \
               JOIN devices d ON d.id = a.device_id LEFT JOIN users u ON u.id = d.user_id \
             WHERE a.location_id = $1 AND d.pubkey IS NOT NULL AND ( \
               d.location_id = $1 OR (u.is_active = 1 AND \
               (NOT EXISTS (SELECT 1 FROM location_groups lg WHERE lg.location_id = $1) \
                OR EXISTS (SELECT 1 FROM location_groups lg JOIN group_members gm ON gm.group_id = lg.group_id \
                           WHERE lg.location_id = $1 AND gm.user_id = d.user_id)))){filter} \
             ORDER BY d.pubkey, a.address"
        );
        let mut q = sqlx::query_as::<_, (i64, Option<i64>, String, String)>(&sql).bind(location_id);
        for id in ids {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(device_id, user_id, pubkey, address)| GatewayPeerRow { device_id, user_id, pubkey, address })
            .collect())
    }

    /// The change counter now, and what the changes after `since` (up to it) touched: at
    /// most `limit` rows of (device, user), both `None` for "anything".
    pub async fn peer_changes_since(
        &self,
        since: i64,
        limit: i64,
    ) -> StoreResult<(i64, Vec<(Option<i64>, Option<i64>)>)> {
        let epoch = self.peer_epoch().await?;
        let rows = sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
            "SELECT device_id, user_id FROM peer_changes WHERE epoch > $1 AND epoch <= $2 LIMIT $3",
        )
        .bind(since)
        .bind(epoch)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok((epoch, rows))
    }

    /// Forgets changes more than `keep` epochs old; returns how many rows went.
    pub async fn prune_peer_changes(&self, keep: i64) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM peer_changes WHERE epoch < (SELECT value FROM peer_epoch WHERE id = 1) - $1")
                .bind(keep)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    /// The change counter of everything a gateway serves (bumped by triggers, see migration
    /// 0005).
    pub async fn peer_epoch(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT value FROM peer_epoch WHERE id = 1").fetch_one(&self.pool).await.map_err(map_err)
    }

    /// True once [`Store::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}
