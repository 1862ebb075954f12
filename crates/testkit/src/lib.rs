//! Shared test harness: real PostgreSQL, SMTP and LDAP servers, and a spawned Onramp app.

pub mod app;
pub mod graph;
pub mod ldap;
#[cfg(target_os = "linux")]
pub mod netlab;
pub mod pg;
pub mod smtp;
