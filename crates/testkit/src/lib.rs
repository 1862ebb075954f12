//! Shared test harness: real PostgreSQL and SMTP servers, and a spawned Onramp app.

pub mod app;
pub mod pg;
pub mod smtp;
