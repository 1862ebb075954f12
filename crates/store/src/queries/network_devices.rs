//! Network devices (headless machines of one location, no user) and their enrollment
//! tokens. The rows live in `devices` (see migration 0009).

use super::devices::{allocate_addresses, lock_location_subnets, retry_address_clash, DEVICE_COLS};
use super::*;

/// Why a network device's enrollment did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkEnrollment {
    /// The key is set and the token used.
    Done,
    /// The token was used (its device is enrolled), revoked, or its session ended meanwhile.
    TokenSpent,
}

impl Store {
    /// Creates a network device and its addresses in one transaction: the given ones
    /// (each must lie in a subnet of the location, `AddressOutsideSubnets` otherwise, and
    /// be free, `Conflict { DeviceAddress }` otherwise), or else one free address per
    /// subnet of the location, allocated as for user devices.
    pub async fn create_network_device(
        &self,
        d: &NewNetworkDevice,
        audit: &NewAudit,
    ) -> StoreResult<(DeviceRow, Vec<DeviceAddressRow>)> {
        match &d.addresses {
            None => retry_address_clash(|| self.try_create_network_device(d, audit)).await,
            // Chosen addresses: a clash is the admin's to resolve, not retried.
            Some(_) => self.try_create_network_device(d, audit).await,
        }
    }

    async fn try_create_network_device(
        &self,
        d: &NewNetworkDevice,
        audit: &NewAudit,
    ) -> StoreResult<(DeviceRow, Vec<DeviceAddressRow>)> {
        let mut w = self.write_tx().await?;
        let device = sqlx::query_as::<_, DeviceRow>(&format!(
            "INSERT INTO devices (location_id, name, description, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING {DEVICE_COLS}"
        ))
        .bind(d.location_id)
        .bind(&d.name)
        .bind(&d.description)
        .bind(d.created_at)
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let subnets = lock_location_subnets(self.kind(), &mut w.tx, Some(&[d.location_id])).await?;
        if subnets.is_empty() {
            return Err(StoreError::NotFound);
        }
        let addresses = match &d.addresses {
            None => allocate_addresses(&self.address_cache, &mut w.tx, device.id, &subnets).await?,
            Some(ips) => {
                let mut rows = Vec::new();
                for ip in ips {
                    if !subnets.iter().flat_map(|(_, s)| s).any(|s| s.is_assignable(*ip)) {
                        return Err(StoreError::AddressOutsideSubnets {
                            device: d.name.clone(),
                            address: ip.to_string(),
                        });
                    }
                    let address = ip.to_string();
                    sqlx::query("INSERT INTO device_addresses (device_id, location_id, address) VALUES ($1, $2, $3)")
                        .bind(device.id)
                        .bind(d.location_id)
                        .bind(&address)
                        .execute(&mut *w.tx)
                        .await
                        .map_err(map_err)?;
                    rows.push(DeviceAddressRow { device_id: device.id, location_id: d.location_id, address });
                }
                rows
            }
        };
        insert_audit(&mut w.tx, audit).await?;
        w.commit().await?;
        if d.addresses.is_some() {
            // The allocator's cache does not know the chosen addresses.
            self.address_cache.forget(d.location_id);
        }
        Ok((device, addresses))
    }

    /// Network devices (of one location, or all), oldest first.
    pub async fn list_network_devices(&self, location_id: Option<i64>) -> StoreResult<Vec<DeviceRow>> {
        sqlx::query_as::<_, DeviceRow>(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE location_id IS NOT NULL AND ($1 = 0 OR location_id = $1) ORDER BY id"
        ))
        .bind(location_id.unwrap_or(0))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Stores a `network_device` token for `device_id`, revoking the device's earlier unused
    /// ones (never a user's tokens), with its audit event, in one transaction.
    pub async fn issue_network_device_token(
        &self,
        device_id: i64,
        t: &NewNetworkDeviceToken,
        audit: &NewAudit,
    ) -> StoreResult<TokenRow> {
        let mut w = self.write_tx().await?;
        revoke_device_tokens_in(&mut w, device_id, t.created_at).await?;
        let row = sqlx::query_as::<_, TokenRow>(&format!(
            "INSERT INTO tokens (hash, kind, user_id, issued_by, email, created_at, expires_at, device_id) \
             SELECT $1, 'network_device', NULL, $2, NULL, $3, $4, id FROM devices \
             WHERE id = $5 AND location_id IS NOT NULL RETURNING {}",
            super::tokens::TOKEN_COLS
        ))
        .bind(&t.hash)
        .bind(t.issued_by)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(device_id)
        .fetch_optional(&mut *w.tx)
        .await
        .found()?;
        insert_audit(&mut w.tx, audit).await?;
        w.commit().await?;
        Ok(row)
    }

    /// Revokes a network device's unused tokens (with the audit event when there were any);
    /// returns how many.
    pub async fn revoke_network_device_tokens(&self, device_id: i64, now: i64, audit: &NewAudit) -> StoreResult<u64> {
        let mut w = self.write_tx().await?;
        let n = revoke_device_tokens_in(&mut w, device_id, now).await?;
        if n > 0 {
            insert_audit(&mut w.tx, audit).await?;
        }
        w.commit().await?;
        Ok(n)
    }

    /// Sets a network device's public key and uses its token, in one transaction
    /// conditional on the token being unused, unrevoked and inside its session, so of two
    /// concurrent enrollments one wins. A key another device has is `Conflict { DevicePubkey }`.
    pub async fn enroll_network_device(
        &self,
        token_id: i64,
        device_id: i64,
        pubkey: &str,
        now: i64,
        audit: &NewAudit,
    ) -> StoreResult<NetworkEnrollment> {
        let mut w = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE tokens SET used_at = $1 WHERE id = $2 AND device_id = $3 AND kind = 'network_device' \
             AND used_at IS NULL AND revoked_at IS NULL AND session_deadline > $1",
        )
        .bind(now)
        .bind(token_id)
        .bind(device_id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n != 1 {
            return Ok(NetworkEnrollment::TokenSpent);
        }
        let n = sqlx::query("UPDATE devices SET pubkey = $1 WHERE id = $2 AND location_id IS NOT NULL")
            .bind(pubkey)
            .bind(device_id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        if n != 1 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut w.tx, audit).await?;
        w.commit().await?;
        Ok(NetworkEnrollment::Done)
    }

    /// Deletes a network device (its addresses and polling token go with it; gateways drop
    /// the peer) and revokes its unused tokens, with the audit event, in one transaction.
    pub async fn delete_network_device(&self, id: i64, now: i64, audit: &NewAudit) -> StoreResult<()> {
        let mut w = self.write_tx().await?;
        revoke_device_tokens_in(&mut w, id, now).await?;
        let n = sqlx::query("DELETE FROM devices WHERE id = $1 AND location_id IS NOT NULL")
            .bind(id)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        if n != 1 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut w.tx, audit).await?;
        w.commit().await?;
        self.address_cache.clear();
        Ok(())
    }
}

/// Revokes a network device's unused tokens inside `w`; returns how many.
async fn revoke_device_tokens_in(w: &mut WriteTx<'_>, device_id: i64, now: i64) -> StoreResult<u64> {
    Ok(sqlx::query(
        "UPDATE tokens SET revoked_at = $1 WHERE device_id = $2 AND kind = 'network_device' \
         AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(device_id)
    .execute(&mut *w.tx)
    .await
    .map_err(map_err)?
    .rows_affected())
}
