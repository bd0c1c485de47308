//! Pure rules of webhook delivery: no I/O lives here, so every rule is tested
//! without a server or a database.

pub mod access;
pub mod catalog;
pub mod clients;
pub mod clock;
pub mod fanout;
pub mod filter;
pub mod format;
pub mod guard;
pub mod headers;
pub mod ids;
pub mod model;
pub mod operational;
pub mod profile;
pub mod rate;
pub mod redacted;
pub mod retry;
pub mod sealing;
pub mod secret;
pub mod signature;
pub mod status;
pub mod target;
pub mod validate;
