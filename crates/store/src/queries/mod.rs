//! The SQL of the store, one file per resource. Every file adds methods to `Store`.

mod api_tokens;
mod audit;
mod devices;
mod directory;
mod gateways;
mod groups;
mod locations;
mod mail;
mod network_devices;
mod settings;
mod tokens;
mod users;
mod web;

pub(crate) use audit::{insert_audit, insert_audits};
pub(crate) use devices::AddressCache;
pub use devices::DeviceLimits;
pub use directory::DirectorySyncRow;
pub use network_devices::NetworkEnrollment;
pub(crate) use tokens::mark_used;
pub use tokens::ResetRequest;
pub(crate) use users::USER_COLS;
pub use web::UserFilter;

pub(crate) use crate::db::{map_err, DatabaseKind, Store, StoreError, StoreResult, UniqueKey, WriteTx};
pub(crate) use crate::records::*;
pub(crate) use sqlx::Row;
pub(crate) use std::collections::{HashMap, HashSet};
pub(crate) use std::net::IpAddr;

/// Fetch-or-not-found: a missing row becomes `StoreError::NotFound`, other errors are mapped.
pub(crate) trait Found<T> {
    fn found(self) -> StoreResult<T>;
}

impl<T> Found<T> for Result<Option<T>, sqlx::Error> {
    fn found(self) -> StoreResult<T> {
        self.map_err(map_err)?.ok_or(StoreError::NotFound)
    }
}

pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;
pub(crate) type AnyQueryAs<'q, T> = sqlx::query::QueryAs<'q, sqlx::Any, T, sqlx::any::AnyArguments<'q>>;

impl Store {
    /// One write statement in its own transaction (under the SQLite writer lock); returns the
    /// number of rows it changed.
    pub(crate) async fn write(&self, q: AnyQuery<'_>) -> StoreResult<u64> {
        let mut w = self.write_tx().await?;
        let n = q.execute(&mut *w.tx).await.map_err(map_err)?.rows_affected();
        w.commit().await?;
        Ok(n)
    }

    /// One write statement with `RETURNING`; `NotFound` when it matched no row.
    pub(crate) async fn write_row<T>(&self, q: AnyQueryAs<'_, T>) -> StoreResult<T>
    where
        T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        let mut w = self.write_tx().await?;
        let row = q.fetch_optional(&mut *w.tx).await.found()?;
        w.commit().await?;
        Ok(row)
    }
}

/// `DELETE FROM table WHERE id = $1` inside `w`; `NotFound` when no row has that id.
pub(crate) async fn delete_id_in(w: &mut WriteTx<'_>, table: &'static str, id: i64) -> StoreResult<()> {
    let n = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
        .bind(id)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// `($1, $2), ($3, $4), ...`: placeholders of a multi-row VALUES list.
pub(crate) fn values_rows(rows: usize, cols: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(r * cols + 1, cols))).collect::<Vec<_>>().join(", ")
}

/// `$first, $first+1, ...`: `n` numbered placeholders.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn prefixed(alias: &str, cols: &str) -> String {
    cols.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholder_lists() {
        assert_eq!(super::placeholders(2, 3), "$2, $3, $4");
        assert_eq!(super::values_rows(2, 2), "($1, $2), ($3, $4)");
    }
}
