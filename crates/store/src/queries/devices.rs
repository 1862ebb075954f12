use super::*;

impl Store {
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

    pub(crate) async fn try_create_device(
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
            .found()
    }

    pub async fn device_by_pubkey(&self, pubkey: &str) -> StoreResult<DeviceRow> {
        sqlx::query_as::<_, DeviceRow>("SELECT id, user_id, name, pubkey, created_at FROM devices WHERE pubkey = $1")
            .bind(pubkey)
            .fetch_optional(&self.pool)
            .await
            .found()
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
        self.write_row(
            sqlx::query_as::<_, DeviceRow>(
                "UPDATE devices SET name = $1 WHERE id = $2 RETURNING id, user_id, name, pubkey, created_at",
            )
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

/// How often an allocation that lost an address race is retried. Each loser sees the
/// winners' addresses on its next try, so a burst of N concurrent allocations across
/// replicas can need up to N tries for the unluckiest one.
pub(crate) const ADDRESS_ATTEMPTS: u32 = 32;

/// A short random pause before retrying, so racing allocations stop colliding in step.
pub(crate) async fn clash_backoff(attempt: u32) {
    use rand::Rng;
    let max_ms = u64::from(attempt.min(10)) * 2;
    let ms = rand::thread_rng().gen_range(0..=max_ms);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
