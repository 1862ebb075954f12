//! Persistence for Onramp core. The only crate that contains SQL.
//!
//! One SQL dialect serves both backends through `sqlx::Any`: numbered `$N` placeholders
//! (SQLite accepts them), unix-second `BIGINT` times, `RETURNING` and `ON CONFLICT`, which
//! both support. Only the DDL differs, so each backend has its own migrations tree.

mod batch;
mod db;
mod queries;
pub mod records;

pub use queries::{DeviceLimits, DirectorySyncRow, NetworkEnrollment, ResetRequest, UserFilter};

pub use db::{DatabaseKind, Store, StoreError, StoreResult, UniqueKey};
pub use records::*;

#[cfg(test)]
mod unique_keys_tests;
