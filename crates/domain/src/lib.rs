//! Pure Onramp domain logic. No I/O, no async runtime, no database: everything here is
//! deterministic given its inputs (randomness comes in as an `RngCore`), so it is unit- and
//! property-tested in isolation.

pub mod directory;
pub mod duration;
pub mod link;
pub mod net;
pub mod password;
pub mod provisioning;
pub mod template;
pub mod token;
pub mod validate;
pub mod wg;

pub use validate::ValidationError;
