use super::devices::{fill_missing_addresses, parse_subnets, retry_address_clash};
use super::*;

const LOCATION_COLS: &str = "id, name, addresses, endpoint, port, gateway_pubkey, allowed_ips, dns, keepalive, mfa_mode, created_at, updated_at";

impl Store {
    /// Creates a location and gives every device that may use it an address in it.
    pub async fn create_location(&self, l: &LocationData, now: i64) -> StoreResult<LocationRow> {
        retry_address_clash(|| self.try_write_location(None, l, now)).await
    }

    /// Updates a location. In the same transaction, with the location row locked (so no
    /// device is being given an address from the old subnets meanwhile): refuses new
    /// subnets that leave a device's address outside them or on a reserved address
    /// (`AddressOutsideSubnets`), and gives devices addresses in subnets they lack.
    pub async fn update_location(&self, id: i64, l: &LocationData, now: i64) -> StoreResult<LocationRow> {
        retry_address_clash(|| self.try_write_location(Some(id), l, now)).await
    }

    async fn try_write_location(&self, id: Option<i64>, l: &LocationData, now: i64) -> StoreResult<LocationRow> {
        let mut w = self.write_tx().await?;
        let sql = match id {
            None => format!(
                "INSERT INTO locations (name, addresses, endpoint, port, gateway_pubkey, allowed_ips, dns, keepalive, mfa_mode, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {LOCATION_COLS}"
            ),
            Some(_) => format!(
                "UPDATE locations SET name = $1, addresses = $2, endpoint = $3, port = $4, \
                 gateway_pubkey = CASE WHEN $12 = 1 THEN gateway_pubkey ELSE $5 END, allowed_ips = $6, \
                 dns = $7, keepalive = $8, mfa_mode = $9, updated_at = $10 WHERE id = $11 RETURNING {LOCATION_COLS}"
            ),
        };
        let q = sqlx::query_as::<_, LocationRow>(&sql)
            .bind(&l.name)
            .bind(&l.addresses)
            .bind(&l.endpoint)
            .bind(l.port)
            .bind(&l.gateway_pubkey)
            .bind(&l.allowed_ips)
            .bind(&l.dns)
            .bind(l.keepalive)
            .bind(l.mfa_mode)
            .bind(now);
        let q = match id {
            Some(id) => q.bind(id).bind(i64::from(l.keep_gateway_pubkey)),
            None => q,
        };
        // The UPDATE locks the row: concurrent device creations (FOR SHARE on it) wait for
        // this transaction, or it for them. It comes first, before any read (SQLite: see
        // `try_create_device`); a refused check rolls it back.
        let row = q.fetch_optional(&mut *w.tx).await.found()?;
        if id.is_some() {
            check_addresses_fit(&mut w.tx, row.id, &l.addresses).await?;
        }
        set_location_groups(&mut w.tx, row.id, &l.allowed_groups).await?;
        fill_missing_addresses(self, &mut w.tx, Some(row.id)).await?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn location_by_id(&self, id: i64) -> StoreResult<LocationRow> {
        sqlx::query_as::<_, LocationRow>(&format!("SELECT {LOCATION_COLS} FROM locations WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn location_by_name(&self, name: &str) -> StoreResult<LocationRow> {
        sqlx::query_as::<_, LocationRow>(&format!("SELECT {LOCATION_COLS} FROM locations WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .found()
    }

    pub async fn list_locations(&self) -> StoreResult<Vec<LocationRow>> {
        sqlx::query_as::<_, LocationRow>(&format!("SELECT {LOCATION_COLS} FROM locations ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    /// One page of locations by name.
    pub async fn list_locations_page(&self, limit: i64, offset: i64) -> StoreResult<Vec<LocationRow>> {
        sqlx::query_as::<_, LocationRow>(&format!(
            "SELECT {LOCATION_COLS} FROM locations ORDER BY name LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// (location id, group id, group name) of every location's allowed groups, in one query.
    pub async fn location_group_links(&self) -> StoreResult<Vec<(i64, i64, String)>> {
        sqlx::query_as::<_, (i64, i64, String)>(
            "SELECT lg.location_id, g.id, g.name FROM location_groups lg JOIN groups g ON g.id = lg.group_id ORDER BY g.name",
        )
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
}

pub(crate) async fn set_location_groups(
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

/// Every address held in location `id` must be assignable in one of the new subnets
/// (inside, not network, broadcast or gateway): one query for all of them.
async fn check_addresses_fit(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: i64,
    addresses: &str,
) -> StoreResult<()> {
    let subnets = parse_subnets(addresses);
    let held = sqlx::query_as::<_, (String, String)>(
        "SELECT d.name, a.address FROM device_addresses a JOIN devices d ON d.id = a.device_id \
         WHERE a.location_id = $1 ORDER BY a.address",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(map_err)?;
    for (device, address) in held {
        let fits = address.parse::<IpAddr>().is_ok_and(|ip| subnets.iter().any(|s| s.is_assignable(ip)));
        if !fits {
            return Err(StoreError::AddressOutsideSubnets { device, address });
        }
    }
    Ok(())
}
