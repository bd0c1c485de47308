//! Pure rules of webhook delivery: no I/O lives here, so every rule is tested
//! without a server or a database.

pub mod filter;
pub mod ids;
pub mod retry;
pub mod secret;
pub mod signature;
pub mod status;
pub mod target;
pub mod validate;
