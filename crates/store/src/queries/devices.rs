use super::*;
use crate::db::DatabaseKind;
use onramp_domain::net::LocationSubnet;

/// The columns of a `DeviceRow`. A network device's key is NULL until it enrolls; rows
/// carry it as an empty string.
pub(crate) const DEVICE_COLS: &str =
    "id, user_id, name, COALESCE(pubkey, '') AS pubkey, created_at, location_id, description";

/// [`DEVICE_COLS`] of the table aliased `t`.
pub(crate) fn device_cols(t: &str) -> String {
    format!(
        "{t}.id, {t}.user_id, {t}.name, COALESCE({t}.pubkey, '') AS pubkey, {t}.created_at, {t}.location_id, \
         {t}.description"
    )
}

/// Limits checked inside `create_device`'s transaction.
#[derive(Debug, Clone, Copy)]
pub struct DeviceLimits {
    /// Devices a user may have at most.
    pub max_per_user: i64,
    /// The enrollment or desktop-configuration token whose session registers the device:
    /// a session registers one device.
    pub session_token: Option<i64>,
}

impl Store {
    /// Creates a device with one free address per subnet of each location in
    /// `location_ids`, in one transaction that also checks `limits`. The locations' subnets
    /// are read inside the transaction, under a lock a concurrent subnet change waits for,
    /// so an address is never picked from a subnet that is being replaced. On a concurrent
    /// address clash (PostgreSQL) the whole attempt is retried.
    pub async fn create_device(
        &self,
        user_id: i64,
        name: &str,
        pubkey: &str,
        location_ids: &[i64],
        limits: DeviceLimits,
        now: i64,
    ) -> StoreResult<(DeviceRow, Vec<DeviceAddressRow>)> {
        retry_address_clash(|| self.try_create_device(user_id, name, pubkey, location_ids, limits, now)).await
    }

    async fn try_create_device(
        &self,
        user_id: i64,
        name: &str,
        pubkey: &str,
        location_ids: &[i64],
        limits: DeviceLimits,
        now: i64,
    ) -> StoreResult<(DeviceRow, Vec<DeviceAddressRow>)> {
        let mut w = self.write_tx().await?;
        // PostgreSQL: one user's creates queue here, so the cap and the one-device-per-session
        // rule hold under concurrency (SQLite: the writer lock already serialises them).
        if self.kind() == DatabaseKind::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        }
        // The insert comes first: a SQLite transaction that reads before its first write
        // can fail with SQLITE_BUSY when another process wrote meanwhile. The checks below
        // count the new row and roll it back when they refuse.
        let device = sqlx::query_as::<_, DeviceRow>(&format!(
            "INSERT INTO devices (user_id, name, pubkey, created_at) VALUES ($1, $2, $3, $4) RETURNING {DEVICE_COLS}"
        ))
        .bind(user_id)
        .bind(name)
        .bind(pubkey)
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        if let Some(token_id) = limits.session_token {
            let registered: Option<i64> = sqlx::query_scalar("SELECT device_id FROM tokens WHERE id = $1")
                .bind(token_id)
                .fetch_optional(&mut *w.tx)
                .await
                .found()?;
            if let Some(device_id) = registered {
                return Err(StoreError::SessionHasDevice { device_id });
            }
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if count > limits.max_per_user {
            return Err(StoreError::DeviceLimit { max: limits.max_per_user });
        }
        let subnets = lock_location_subnets(self.kind(), &mut w.tx, Some(location_ids)).await?;
        let addresses = allocate_addresses(&self.address_cache, &mut w.tx, device.id, &subnets).await?;
        if let Some(token_id) = limits.session_token {
            sqlx::query("UPDATE tokens SET device_id = $1 WHERE id = $2")
                .bind(device.id)
                .bind(token_id)
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        }
        w.commit().await?;
        Ok((device, addresses))
    }

    /// Gives every device an address in each subnet of each location its user may use
    /// and it has none in yet (a location created after the device, opened to the user's
    /// group later, or given another subnet). Called by the write paths that change which
    /// locations a device belongs to, so reads never allocate. A full subnet is skipped
    /// (logged), not an error. Returns how many addresses were added.
    pub async fn allocate_missing_addresses(&self) -> StoreResult<usize> {
        retry_address_clash(|| async {
            let mut w = self.write_tx().await?;
            let n = fill_missing_addresses(self, &mut w.tx, None).await?;
            w.commit().await?;
            Ok(n)
        })
        .await
    }

    pub async fn device_by_id(&self, id: i64) -> StoreResult<DeviceRow> {
        sqlx::query_as::<_, DeviceRow>(&format!("SELECT {DEVICE_COLS} FROM devices WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn device_by_pubkey(&self, pubkey: &str) -> StoreResult<DeviceRow> {
        sqlx::query_as::<_, DeviceRow>(&format!("SELECT {DEVICE_COLS} FROM devices WHERE pubkey = $1"))
            .bind(pubkey)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    /// Devices, optionally of one user, oldest first.
    pub async fn list_devices(&self, user_id: Option<i64>) -> StoreResult<Vec<DeviceRow>> {
        let filter = if user_id.is_some() { "WHERE user_id = $1" } else { "WHERE $1 = $1" };
        sqlx::query_as::<_, DeviceRow>(&format!("SELECT {DEVICE_COLS} FROM devices {filter} ORDER BY id"))
            .bind(user_id.unwrap_or(0))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    /// One page of devices (optionally of one user), oldest first, and how many there are
    /// in all: two queries.
    pub async fn list_devices_page(
        &self,
        user_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<DeviceRow>, i64)> {
        let filter = if user_id.is_some() { "WHERE user_id = $3" } else { "WHERE $3 = $3" };
        let page = sqlx::query_as::<_, DeviceRow>(&format!(
            "SELECT {DEVICE_COLS} FROM devices {filter} ORDER BY id LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .bind(user_id.unwrap_or(0))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let count_filter = if user_id.is_some() { "WHERE user_id = $1" } else { "WHERE $1 = $1" };
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM devices {count_filter}"))
            .bind(user_id.unwrap_or(0))
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok((page, total))
    }

    /// The addresses of several devices in one query.
    pub async fn addresses_of_devices(&self, ids: &[i64]) -> StoreResult<Vec<DeviceAddressRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT device_id, location_id, address FROM device_addresses WHERE device_id IN ({}) \
             ORDER BY device_id, location_id, address",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query_as::<_, DeviceAddressRow>(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await.map_err(map_err)
    }

    /// (user id, location id) for every location each of the given users may use, in one
    /// query (see `locations_for_user`).
    pub async fn user_locations(&self, user_ids: &[i64]) -> StoreResult<Vec<(i64, i64)>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT u.id, l.id FROM users u JOIN locations l ON \
               (NOT EXISTS (SELECT 1 FROM location_groups lg WHERE lg.location_id = l.id) \
                OR EXISTS (SELECT 1 FROM location_groups lg JOIN group_members gm ON gm.group_id = lg.group_id \
                           WHERE lg.location_id = l.id AND gm.user_id = u.id)) \
             WHERE u.id IN ({}) ORDER BY u.id, l.id",
            placeholders(1, user_ids.len())
        );
        let mut q = sqlx::query_as::<_, (i64, i64)>(&sql);
        for id in user_ids {
            q = q.bind(id);
        }
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
        self.write_row(
            sqlx::query_as::<_, DeviceRow>(&format!(
                "UPDATE devices SET name = $1 WHERE id = $2 RETURNING {DEVICE_COLS}"
            ))
            .bind(name)
            .bind(id),
        )
        .await
    }

    pub async fn delete_device(&self, id: i64) -> StoreResult<()> {
        self.delete_by_id("devices", id).await
    }
}

/// Addresses in use per location, kept between allocations. The unique index on
/// (location_id, address) stays the authority: a stale entry (another core replica took an
/// address) ends in a clash, which drops the entry and retries with a fresh read. Entries
/// also expire, and deletions clear them, so freed addresses are reused.
#[derive(Default)]
pub(crate) struct AddressCache(std::sync::Mutex<HashMap<i64, (HashSet<IpAddr>, std::time::Instant)>>);

pub(crate) const ADDRESS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl AddressCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (HashSet<IpAddr>, std::time::Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Drops one location's entry (it is read afresh at the next allocation there).
    pub(crate) fn forget(&self, location_id: i64) {
        self.lock().remove(&location_id);
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

    /// Takes `used` (just read from the database) as the location's entry and reserves from
    /// it under the same lock; `None` only when the subnet is full. (Reserving in a second
    /// step let another allocation of this process drop the entry in between, after an
    /// address clash with another replica, and that read as a full subnet: a fleet run
    /// with two cores refused two devices of 10,000 with `subnet_full` in /16 subnets.)
    fn load_and_reserve(
        &self,
        location_id: i64,
        used: HashSet<IpAddr>,
        subnet: &onramp_domain::net::LocationSubnet,
    ) -> Option<IpAddr> {
        let mut map = self.lock();
        let now = std::time::Instant::now();
        let entry = map.entry(location_id).or_insert_with(|| (HashSet::new(), now));
        if entry.1.elapsed() > ADDRESS_CACHE_TTL {
            *entry = (HashSet::new(), now);
        }
        // A fresh entry another allocation loaded meanwhile keeps its reservations.
        entry.0.extend(used);
        let ip = subnet.allocate(&entry.0);
        if let Some(ip) = ip {
            entry.0.insert(ip);
        }
        ip
    }
}

/// One free address per subnet of each location, chosen in memory from the addresses in
/// use (read once per location and cached, not one query per candidate address).
pub(crate) async fn allocate_addresses(
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
                    cache.load_and_reserve(*location_id, used, subnet)
                }
            };
            let Some(ip) = picked else {
                return Err(StoreError::SubnetFull { location: *location_id });
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

/// How often an allocation that lost an address race is retried. Each loser sees the
/// winners' addresses on its next try, so a burst of N concurrent allocations across
/// replicas can need up to N tries for the unluckiest one.
pub(crate) const ADDRESS_ATTEMPTS: u32 = 32;

/// Runs `attempt` again, after a short random pause, while it loses an address race to
/// another replica (up to `ADDRESS_ATTEMPTS` times).
pub(crate) async fn retry_address_clash<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(StoreError::Conflict { key: UniqueKey::DeviceAddress }) if tries < ADDRESS_ATTEMPTS => {
                clash_backoff(tries).await
            }
            other => return other,
        }
    }
}

/// A short random pause before retrying, so racing allocations stop colliding in step.
async fn clash_backoff(attempt: u32) {
    use rand::Rng;
    let max_ms = u64::from(attempt.min(10)) * 2;
    let ms = rand::thread_rng().gen_range(0..=max_ms);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The current subnets of the given locations (all when `None`), read inside the
/// transaction. PostgreSQL: `FOR SHARE` makes a concurrent subnet change (which takes the
/// row `FOR UPDATE`) wait for this transaction, and this one wait for it; SQLite: the
/// writer lock does the same.
pub(crate) async fn lock_location_subnets(
    kind: DatabaseKind,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ids: Option<&[i64]>,
) -> StoreResult<Vec<(i64, Vec<LocationSubnet>)>> {
    if ids.is_some_and(|i| i.is_empty()) {
        return Ok(Vec::new());
    }
    let filter = match ids {
        Some(ids) => format!("WHERE id IN ({})", placeholders(1, ids.len())),
        None => String::new(),
    };
    let lock = if kind == DatabaseKind::Postgres { " FOR SHARE" } else { "" };
    let sql = format!("SELECT id, addresses FROM locations {filter} ORDER BY id{lock}");
    let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
    for id in ids.unwrap_or_default() {
        q = q.bind(id);
    }
    let rows = q.fetch_all(&mut **tx).await.map_err(map_err)?;
    Ok(rows.into_iter().map(|(id, a)| (id, parse_subnets(&a))).collect())
}

/// Parsed subnets of a stored `addresses` column (validated when written).
pub(crate) fn parse_subnets(addresses: &str) -> Vec<LocationSubnet> {
    addresses
        .split(',')
        .filter(|a| !a.trim().is_empty())
        .filter_map(|a| LocationSubnet::parse("address", a).ok())
        .collect()
}

/// See [`Store::allocate_missing_addresses`]; `location` limits it to one location. A fixed
/// number of reads (eligible device/location pairs, their addresses), then one insert per
/// missing address.
pub(crate) async fn fill_missing_addresses(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    location: Option<i64>,
) -> StoreResult<usize> {
    let ids = location.map(|l| vec![l]);
    let subnets: HashMap<i64, Vec<LocationSubnet>> =
        lock_location_subnets(store.kind(), tx, ids.as_deref()).await?.into_iter().collect();
    let only = if location.is_some() { "AND l.id = $1" } else { "" };
    let sql = format!(
        "SELECT d.id, l.id FROM devices d JOIN locations l ON d.location_id = l.id OR (d.user_id IS NOT NULL AND \
           (NOT EXISTS (SELECT 1 FROM location_groups lg WHERE lg.location_id = l.id) \
            OR EXISTS (SELECT 1 FROM location_groups lg JOIN group_members gm ON gm.group_id = lg.group_id \
                       WHERE lg.location_id = l.id AND gm.user_id = d.user_id))) \
         WHERE 1 = 1 {only} ORDER BY l.id, d.id"
    );
    let mut q = sqlx::query_as::<_, (i64, i64)>(&sql);
    if let Some(l) = location {
        q = q.bind(l);
    }
    let pairs = q.fetch_all(&mut **tx).await.map_err(map_err)?;
    let addr_sql = format!(
        "SELECT device_id, location_id, address FROM device_addresses {}",
        if location.is_some() { "WHERE location_id = $1" } else { "" }
    );
    let mut q = sqlx::query_as::<_, DeviceAddressRow>(&addr_sql);
    if let Some(l) = location {
        q = q.bind(l);
    }
    let mut held: HashMap<(i64, i64), Vec<IpAddr>> = HashMap::new();
    for a in q.fetch_all(&mut **tx).await.map_err(map_err)? {
        if let Ok(ip) = a.address.parse() {
            held.entry((a.device_id, a.location_id)).or_default().push(ip);
        }
    }
    let mut added = 0;
    for (device_id, location_id) in pairs {
        let ips = held.get(&(device_id, location_id)).map(Vec::as_slice).unwrap_or_default();
        for subnet in subnets.get(&location_id).map(Vec::as_slice).unwrap_or_default() {
            if ips.iter().any(|ip| subnet.contains(*ip)) {
                continue;
            }
            match allocate_addresses(&store.address_cache, tx, device_id, &[(location_id, vec![*subnet])]).await {
                Ok(rows) => added += rows.len(),
                // A full subnet must not block the admin change that opened the location.
                Err(StoreError::SubnetFull { location }) => {
                    tracing::warn!(device_id, location, "no free address for a device in a location subnet")
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_entry_between_read_and_reserve_is_not_a_full_subnet() {
        let subnet = onramp_domain::net::LocationSubnet::parse("address", "10.0.0.1/29").unwrap();
        let cache = AddressCache::default();
        let used: HashSet<IpAddr> = ["10.0.0.2".parse().unwrap()].into();
        // The read happened; another allocation's clash dropped the entry meanwhile.
        cache.forget(1);
        assert_eq!(cache.load_and_reserve(1, used.clone(), &subnet), Some("10.0.0.3".parse().unwrap()));
        // The reservation is kept for this process's next allocation, and merged with a
        // later read of the same location.
        assert_eq!(cache.reserve(1, &subnet), Some(Some("10.0.0.4".parse().unwrap())));
        assert_eq!(cache.load_and_reserve(1, used, &subnet), Some("10.0.0.5".parse().unwrap()));
        // Full: .6 is the last host of the /29 (.7 is the broadcast).
        assert_eq!(cache.load_and_reserve(1, HashSet::new(), &subnet), Some("10.0.0.6".parse().unwrap()));
        assert_eq!(cache.load_and_reserve(1, HashSet::new(), &subnet), None);
    }
}
